package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
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
func testDatabase(t *testing.T) string {
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
func schemaURL(t *testing.T, dbURL, name string) string {
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
