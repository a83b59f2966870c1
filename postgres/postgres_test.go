package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"ratelab/internal/storetest"
	"ratelab/internal/testenv"
	"ratelab/postgres"
)

// testDatabase creates a database of its own for this test run, dropped at
// the end, so that concurrent runs never share tables. It returns the
// database's URL.
func testDatabase(t testing.TB) string {
	t.Helper()
	base := testenv.PostgresURL(t)
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to %s: %v", base, err)
	}
	b := make([]byte, 6)
	rand.Read(b)
	name := "ratelab_test_" + hex.EncodeToString(b)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		admin.Close(ctx)
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
		admin.Close(ctx)
	})
	u, err := url.Parse(base)
	if err != nil || u.Scheme == "" {
		t.Fatalf("RATELAB_POSTGRES_URL must be a postgres:// URL")
	}
	u.Path = "/" + name
	return u.String()
}

// schemaURL creates the schema name in the database at dbURL and returns a
// URL whose connections use it (pgx sends unknown URL parameters, here
// search_path, as run-time parameters).
func schemaURL(t testing.TB, dbURL, name string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	u, _ := url.Parse(dbURL)
	q := u.Query()
	q.Set("search_path", name)
	u.RawQuery = q.Encode()
	return u.String()
}

func TestConformance(t *testing.T) {
	dbURL := testDatabase(t)
	storetest.Run(t, storetest.Config{
		Open: func(t *testing.T, name string, now func() time.Time) storetest.Store {
			db, err := postgres.Open(context.Background(), schemaURL(t, dbURL, name), postgres.WithClock(now))
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			return db
		},
	})
}

// TestConcurrentOpen starts several "replicas" on an empty schema at once:
// the advisory lock makes exactly one of them apply the migrations, and
// all of them open.
func TestConcurrentOpen(t *testing.T) {
	ctx := context.Background()
	u := schemaURL(t, testDatabase(t), "replicas")
	const replicas = 4
	var wg sync.WaitGroup
	errs := make(chan error, replicas)
	for range replicas {
		wg.Go(func() {
			db, err := postgres.Open(ctx, u)
			if err != nil {
				errs <- err
				return
			}
			errs <- db.Ping(ctx)
			db.Close()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent Open: %v", err)
		}
	}
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT COUNT(*) FROM schema_migrations`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("schema_migrations has %d rows, %v; want 2 (one per migration, applied once)", n, err)
	}

	// A database migrated by a newer binary is refused, not damaged.
	if _, err := conn.Exec(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, '0099_future.sql', now())`); err != nil {
		t.Fatal(err)
	}
	if db, err := postgres.Open(ctx, u); err == nil || !strings.Contains(err.Error(), "newer") {
		if db != nil {
			db.Close()
		}
		t.Fatalf("Open(newer schema) = %v; want an error about the newer schema", err)
	}
}

// TestOpenErrors checks that a bad URL or an unreachable server is an
// error that does not repeat the password.
func TestOpenErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, u := range []string{
		"postgres://user:hunter2@[::1",                                             // malformed
		"postgres://user:hunter2@127.0.0.1:1/db?sslmode=disable&connect_timeout=1", // nothing listens on port 1
	} {
		db, err := postgres.Open(ctx, u)
		if err == nil {
			db.Close()
			t.Fatalf("Open(%q) succeeded", u)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Open error %q reveals the password", err)
		}
	}
}
