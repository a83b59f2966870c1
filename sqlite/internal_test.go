package sqlite

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"ratelab"
)

// TestPragmas checks the settings that durability and concurrency rest on,
// on the connections that actually run the statements.
func TestPragmas(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "p.db"), WithBusyTimeout(1234*time.Millisecond))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer db.Close()
	for _, tc := range []struct {
		pool   string
		pragma string
		want   string
	}{
		{"write", "journal_mode", "wal"},
		{"write", "synchronous", "2"}, // FULL
		{"write", "foreign_keys", "1"},
		{"write", "busy_timeout", "1234"},
		{"write", "query_only", "0"},
		{"read", "journal_mode", "wal"},
		{"read", "foreign_keys", "1"},
		{"read", "busy_timeout", "1234"},
		{"read", "query_only", "1"},
	} {
		pool := db.write
		if tc.pool == "read" {
			pool = db.read
		}
		var got string
		if err := pool.QueryRowContext(ctx, "PRAGMA "+tc.pragma).Scan(&got); err != nil {
			t.Fatalf("%s PRAGMA %s: %v", tc.pool, tc.pragma, err)
		}
		if got != tc.want {
			t.Errorf("%s pool: PRAGMA %s = %q, want %q", tc.pool, tc.pragma, got, tc.want)
		}
	}
	if n := db.write.Stats().MaxOpenConnections; n != 1 {
		t.Errorf("write pool allows %d connections, want 1", n)
	}
	// The read pool refuses writes, so that no write can bypass the
	// single writer.
	if _, err := db.read.ExecContext(ctx, `INSERT INTO orgs (id, name, created_at) VALUES ('x', 'x', 0)`); err == nil {
		t.Error("the read pool accepted a write")
	}
}

// TestTwoHandlesOneFile models `ratelab clients create` running while a
// server writes the same file: two DBs (two write connections) write
// concurrently, and every write lands, thanks to BEGIN IMMEDIATE and the
// busy timeout.
func TestTwoHandlesOneFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "shared.db")
	server, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open(server): %v", err)
	}
	defer server.Close()
	cli, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open(cli): %v", err)
	}
	defer cli.Close()
	org, err := server.EnsureOrg(ctx, "default")
	if err != nil {
		t.Fatalf("EnsureOrg: %v", err)
	}
	const writes = 100
	var wg sync.WaitGroup
	errs := make(chan error, 2*writes)
	wg.Go(func() {
		for range writes {
			if _, _, err := server.PutScript(ctx, org.ID, ratelab.ScriptUpdate{ID: "hot", Name: "n"}); err != nil {
				errs <- err
			}
		}
	})
	wg.Go(func() {
		for range 5 {
			if _, _, err := cli.CreateClient(ctx, org.ID, "", ""); err != nil {
				errs <- err
			}
			if _, _, err := cli.PutScript(ctx, org.ID, ratelab.ScriptUpdate{ID: "hot", Name: "cli"}); err != nil {
				errs <- err
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent write from two handles: %v", err)
	}
	if n, err := server.CountClients(ctx); err != nil || n != 5 {
		t.Fatalf("server sees %d clients, %v; want the 5 the other handle created", n, err)
	}
	if s, err := cli.FindScript(ctx, org.ID, "hot"); err != nil || s.Version != writes+5 {
		t.Fatalf("script version %v, %v; want %d", s, err, writes+5)
	}
}

func TestMigrations(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "m.db")
	for range 2 { // the second Open finds the schema current
		db, err := Open(ctx, path)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		var n, v int
		if err := db.read.QueryRowContext(ctx, `SELECT COUNT(*), MAX(version) FROM schema_migrations`).Scan(&n, &v); err != nil {
			t.Fatalf("read schema_migrations: %v", err)
		}
		if n != 2 || v != 2 {
			t.Fatalf("schema_migrations has %d rows up to version %d; want 2 rows, version 2", n, v)
		}
		db.Close()
	}
	// A database migrated by a newer binary is refused, not damaged.
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if _, err := db.write.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, '0099_future.sql', 0)`); err != nil {
		t.Fatalf("insert: %v", err)
	}
	db.Close()
	if _, err := Open(ctx, path); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("Open(newer schema) = %v; want an error about the newer schema", err)
	}
}

func TestOpenRejects(t *testing.T) {
	for _, p := range []string{"", ":memory:", "file::memory:?cache=shared", filepath.Join(t.TempDir(), "a?b.db")} {
		if db, err := Open(context.Background(), p); err == nil {
			db.Close()
			t.Errorf("Open(%q) succeeded; want an error", p)
		}
	}
	if _, err := Open(context.Background(), filepath.Join(t.TempDir(), "no", "such", "dir", "x.db")); err == nil {
		t.Error("Open in a missing directory succeeded")
	}
}

// TestOnlyHashesStored checks that neither a client secret nor an access
// token is stored in plain form.
func TestOnlyHashesStored(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "h.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer db.Close()
	org, err := db.EnsureOrg(ctx, "hashes")
	if err != nil {
		t.Fatal(err)
	}
	c, secret, err := db.CreateClient(ctx, org.ID, "", "")
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := db.IssueToken(ctx, c, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var storedSecret, storedToken string
	if err := db.read.QueryRowContext(ctx, `SELECT secret_hash FROM clients WHERE id = ?`, c.ID).Scan(&storedSecret); err != nil {
		t.Fatal(err)
	}
	if err := db.read.QueryRowContext(ctx, `SELECT hash FROM tokens`).Scan(&storedToken); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(storedSecret, secret) || !ratelab.VerifySecret(storedSecret, secret) {
		t.Errorf("stored secret %q is not a hash of the secret", storedSecret)
	}
	if storedToken != ratelab.HashToken(tok) {
		t.Errorf("stored token %q is not HashToken of the token", storedToken)
	}
}
