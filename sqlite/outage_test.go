package sqlite_test

import (
	"context"
	"database/sql"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"ratelab"
	"ratelab/internal/testenv"
	"ratelab/sqlite"
)

// TestOutage holds the database's write lock from another connection (as
// another process would) beyond the busy timeout: every write fails with
// EUNAVAILABLE (for a 503 with Retry-After, not a 500), the outage is
// logged once, and when the lock is released the store logs the end with
// the count of failures and writes again.
func TestOutage(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "outage.db")
	logs := &testenv.LogBuffer{}
	db, err := sqlite.Open(ctx, path, sqlite.WithBusyTimeout(50*time.Millisecond),
		sqlite.WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	org, err := db.EnsureOrg(ctx, "outage")
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := db.CreateClient(ctx, org.ID, "", "")
	if err != nil {
		t.Fatal(err)
	}

	other, err := sql.Open("sqlite", path+"?_txlock=immediate&_pragma=busy_timeout(1000)")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	hold, err := other.BeginTx(ctx, nil)
	if err != nil {
		t.Fatalf("take the write lock: %v", err)
	}
	ops := []struct {
		name string
		do   func() error
	}{
		{"PutScript", func() error {
			_, _, err := db.PutScript(ctx, org.ID, ratelab.ScriptUpdate{ID: "s", Name: "n"})
			return err
		}},
		{"UpdateScripts", func() error {
			_, err := db.UpdateScripts(ctx, org.ID, []ratelab.ScriptUpdate{{ID: "s", Name: "n"}})
			return err
		}},
		{"IssueToken", func() error { _, _, err := db.IssueToken(ctx, c, time.Hour); return err }},
		{"CreateClient", func() error { _, _, err := db.CreateClient(ctx, org.ID, "", ""); return err }},
		{"DeleteScript", func() error { return db.DeleteScript(ctx, org.ID, "s") }},
	}
	failures := 0
	for round := range 3 {
		for _, op := range ops {
			err := op.do()
			if ratelab.ErrorCode(err) != ratelab.EUNAVAILABLE {
				t.Fatalf("round %d, %s with the write lock held elsewhere: %v (code %q), want %q", round, op.name, err, ratelab.ErrorCode(err), ratelab.EUNAVAILABLE)
			}
			if msg := ratelab.ErrorMessage(err); strings.Contains(msg, "locked") || strings.Contains(msg, "sqlite") {
				t.Fatalf("%s: message %q shows internal detail", op.name, msg)
			}
			failures++
		}
	}
	if n := strings.Count(logs.String(), "database unavailable"); n != 1 {
		t.Fatalf("%d failures logged %d outage lines, want 1:\n%s", failures, n, logs)
	}
	// Reads go on meanwhile (WAL).
	if _, err := db.Authenticate(ctx, c.ID, "wrong"); ratelab.ErrorCode(err) != ratelab.EUNAUTHORIZED {
		t.Fatalf("Authenticate during the write outage: %v", err)
	}

	if err := hold.Rollback(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(logs.String(), "database available again") {
		if time.Now().After(deadline) {
			t.Fatalf("no recovery logged within 15 s:\n%s", logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if want := "failures=" + strconv.Itoa(failures); !strings.Contains(logs.String(), want) {
		t.Fatalf("recovery line lacks %q:\n%s", want, logs)
	}
	if _, _, err := db.PutScript(ctx, org.ID, ratelab.ScriptUpdate{ID: "s", Name: "n"}); err != nil {
		t.Fatalf("PutScript after the lock is released: %v", err)
	}
	if n := strings.Count(logs.String(), "level=ERROR"); n != 1 {
		t.Fatalf("%d ERROR lines, want exactly one for the outage:\n%s", n, logs)
	}
}
