// Package migrate applies the embedded SQL schema migrations of a storage
// package (sqlite, postgres): the one runner both use, so that they agree
// on how files are named, ordered, recorded and refused.
//
// A migration is a file NNNN_name.sql; its numeric prefix is its version.
// Apply runs, in the caller's transaction, every migration above the
// highest version the database has recorded, and refuses a database whose
// recorded version is newer than any file (written by a newer binary).
package migrate

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"sort"
	"strconv"
	"strings"
)

// Tx is the part of a database transaction that Apply needs, in the
// store's own SQL dialect.
type Tx interface {
	// Version creates the table of applied migrations if missing and
	// returns the highest version recorded in it (0 for none).
	Version(ctx context.Context) (int, error)
	// Apply runs a migration's SQL and records its version and name.
	Apply(ctx context.Context, version int, name, sql string) error
}

// Apply applies, through tx, every migration in dir of fsys whose version
// is above the recorded one, in version order, logging each one applied
// with the attribute db=dbName. The caller commits tx.
func Apply(ctx context.Context, tx Tx, fsys fs.FS, dir, dbName string, log *slog.Logger) error {
	files, err := fs.Glob(fsys, path.Join(dir, "*.sql"))
	if err != nil {
		return fmt.Errorf("list migrations: %w", err)
	}
	sort.Strings(files)
	current, err := tx.Version(ctx)
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	latest := 0
	for _, f := range files {
		name := path.Base(f)
		v, err := strconv.Atoi(strings.SplitN(name, "_", 2)[0])
		if err != nil {
			return fmt.Errorf("migration %s: name must start with a number: %w", name, err)
		}
		latest = max(latest, v)
		if v <= current {
			continue
		}
		body, err := fs.ReadFile(fsys, f)
		if err != nil {
			return fmt.Errorf("read migration %s: %w", name, err)
		}
		if err := tx.Apply(ctx, v, name, string(body)); err != nil {
			return fmt.Errorf("apply migration %s: %w", name, err)
		}
		log.Info("applied migration", "db", dbName, "migration", name)
	}
	if current > latest {
		return fmt.Errorf("database schema version %d is newer than this binary's %d", current, latest)
	}
	return nil
}
