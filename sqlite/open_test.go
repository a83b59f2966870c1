package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"ratelab/sqlite"
)

// TestConcurrentOpen opens one new database file from several "replicas"
// at once, as `ratelab serve` processes started together do: every one
// must open (the first sets WAL mode and migrates while the others wait),
// and all see one schema.
func TestConcurrentOpen(t *testing.T) {
	ctx := context.Background()
	for round := range 20 {
		path := filepath.Join(t.TempDir(), fmt.Sprintf("r%d.db", round))
		const replicas = 4
		var wg sync.WaitGroup
		errs := make(chan error, replicas)
		for range replicas {
			wg.Go(func() {
				db, err := sqlite.Open(ctx, path)
				if err != nil {
					errs <- err
					return
				}
				if _, err := db.EnsureOrg(ctx, "shared"); err != nil {
					errs <- err
				}
				errs <- db.Close()
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("round %d: concurrent Open: %v", round, err)
			}
		}
	}
}
