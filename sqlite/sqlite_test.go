package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"ratelab/internal/storetest"
	"ratelab/sqlite"
)

func TestConformance(t *testing.T) {
	dir := t.TempDir()
	storetest.Run(t, storetest.Config{
		Open: func(t *testing.T, name string, now func() time.Time) storetest.Store {
			db, err := sqlite.Open(context.Background(), filepath.Join(dir, name+".db"), sqlite.WithClock(now))
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			return db
		},
	})
}
