package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"ratelab"
	"ratelab/internal/sqlstore"
)

const scriptColumns = `id, name, text, version, created_at, modified_at`

func scanScript(row pgx.Row) (*ratelab.Script, error) {
	var s ratelab.Script
	if err := row.Scan(&s.ID, &s.Name, &s.Text, &s.Version, &s.DateCreated, &s.DateModified); err != nil {
		return nil, err
	}
	s.DateCreated, s.DateModified = s.DateCreated.UTC(), s.DateModified.UTC()
	return &s, nil
}

// FindScript returns the org's script with this id, or ENOTFOUND.
func (db *DB) FindScript(ctx context.Context, orgID, id string) (*ratelab.Script, error) {
	if !ratelab.ValidID(id) {
		return nil, ratelab.ScriptNotFound(id) // it cannot exist; no query
	}
	s, err := scanScript(db.pool.QueryRow(ctx,
		`SELECT `+scriptColumns+` FROM scripts WHERE org_id = $1 AND id = $2`, orgID, id))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, ratelab.ScriptNotFound(id)
	case err != nil:
		return nil, db.fail("find script", err)
	}
	return s, nil
}

// FindScripts returns one page of the org's scripts in creation order and
// the total number of the org's scripts.
func (db *DB) FindScripts(ctx context.Context, orgID string, page ratelab.Page) ([]*ratelab.Script, int, error) {
	// One snapshot for the count and the page.
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, 0, db.fail("find scripts", err)
	}
	defer tx.Rollback(ctx)
	var total int
	if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM scripts WHERE org_id = $1`, orgID).Scan(&total); err != nil {
		return nil, 0, db.fail("count scripts", err)
	}
	limit, offset, ok := page.LimitOffset()
	if !ok {
		return []*ratelab.Script{}, total, nil
	}
	rows, err := tx.Query(ctx, `SELECT `+scriptColumns+` FROM scripts WHERE org_id = $1
		ORDER BY seq LIMIT $2 OFFSET $3`, orgID, limit, offset)
	if err != nil {
		return nil, 0, db.fail("find scripts", err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*ratelab.Script, error) { return scanScript(r) })
	if err != nil {
		return nil, 0, db.fail("find scripts", err)
	}
	if list == nil {
		list = []*ratelab.Script{}
	}
	return list, total, nil
}

// CreateScript creates a script with a new random id, at version 1.
func (db *DB) CreateScript(ctx context.Context, orgID string, name, text, clientID string) (*ratelab.Script, error) {
	s, _, err := db.PutScript(ctx, orgID, ratelab.ScriptUpdate{ID: ratelab.NewID(), Name: name, Text: text, ClientID: clientID})
	return s, err
}

// PutScript replaces the org's script upd.ID, or creates it when it does
// not exist and upd.IfVersion is 0. With upd.IfVersion > 0 it is a
// compare-and-swap that fails with ECONFLICT unless the script exists at
// that version. Each accepted write adds a version.
func (db *DB) PutScript(ctx context.Context, orgID string, upd ratelab.ScriptUpdate) (*ratelab.Script, bool, error) {
	if err := ratelab.ValidateUpdate(upd); err != nil {
		return nil, false, err
	}
	var s *ratelab.Script
	var created bool
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		s, created, err = putScript(ctx, tx, orgID, upd, db.clock())
		return err
	})
	if err != nil {
		return nil, false, db.fail("put script", err)
	}
	return s, created, nil
}

// putScript applies one validated update inside a transaction. Each step
// is one statement on the script's row, whose lock serializes concurrent
// writers (see the package comment).
func putScript(ctx context.Context, tx pgx.Tx, orgID string, upd ratelab.ScriptUpdate, now time.Time) (*ratelab.Script, bool, error) {
	const update = `UPDATE scripts SET name = $3, text = $4, version = version + 1, modified_at = $5
		WHERE org_id = $1 AND id = $2 AND ($6::bigint = 0 OR version = $6::bigint) RETURNING seq, version, created_at`
	var seq, version int64
	var createdAt time.Time
	isNew := false
	// Two rounds at most: if the INSERT finds that a concurrent writer
	// created the script, the UPDATE of the second round applies to it.
	// A third round can only follow a concurrent delete.
	for round := 0; ; round++ {
		err := tx.QueryRow(ctx, update, orgID, upd.ID, upd.Name, upd.Text, now, upd.IfVersion).Scan(&seq, &version, &createdAt)
		if err == nil {
			break
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return nil, false, fmt.Errorf("update script: %w", err)
		}
		if upd.IfVersion > 0 {
			return nil, false, casConflict(ctx, tx, orgID, upd)
		}
		if round == 3 {
			return nil, false, errors.New("put script: the script keeps being created and deleted concurrently")
		}
		err = tx.QueryRow(ctx, `INSERT INTO scripts (org_id, id, name, text, version, created_at, modified_at)
			VALUES ($1, $2, $3, $4, 1, $5, $5) ON CONFLICT (org_id, id) DO NOTHING RETURNING seq`,
			orgID, upd.ID, upd.Name, upd.Text, now).Scan(&seq)
		if err == nil {
			isNew, version, createdAt = true, 1, now
			break
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return nil, false, fmt.Errorf("insert script: %w", err)
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO script_versions (script_seq, version, name, text, created_at, client_id)
		VALUES ($1, $2, $3, $4, $5, $6)`, seq, version, upd.Name, upd.Text, now, upd.ClientID); err != nil {
		return nil, false, fmt.Errorf("insert script version: %w", err)
	}
	return &ratelab.Script{ID: upd.ID, Name: upd.Name, Text: upd.Text, Version: version,
		DateCreated: createdAt.UTC(), DateModified: now}, isNew, nil
}

// casConflict builds the ECONFLICT error of a failed compare-and-swap,
// naming the script's current version.
func casConflict(ctx context.Context, tx pgx.Tx, orgID string, upd ratelab.ScriptUpdate) error {
	var current int64
	err := tx.QueryRow(ctx, `SELECT version FROM scripts WHERE org_id = $1 AND id = $2`, orgID, upd.ID).Scan(&current)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return ratelab.Errorf(ratelab.ECONFLICT, "script %q does not exist; version %d was expected", upd.ID, upd.IfVersion)
	case err != nil:
		return fmt.Errorf("read script version: %w", err)
	}
	return ratelab.Errorf(ratelab.ECONFLICT, "script %q is at version %d, not %d", upd.ID, current, upd.IfVersion)
}

// UpdateScripts applies the updates in one transaction (one commit). Each
// item runs inside its own SAVEPOINT, so an item that fails rolls back
// only its own changes, and the transaction stays usable after a failed
// statement; the item's error is in its result. The returned error is for
// failures of the whole batch, in which case nothing was written.
func (db *DB) UpdateScripts(ctx context.Context, orgID string, upds []ratelab.ScriptUpdate) ([]ratelab.BulkResult, error) {
	if len(upds) == 0 {
		return []ratelab.BulkResult{}, nil
	}
	var results []ratelab.BulkResult
	now := db.clock()
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		results, err = sqlstore.Bulk(ctx, sqlstore.BulkTx{
			Exec: func(ctx context.Context, stmt string) error {
				_, err := tx.Exec(ctx, stmt)
				return err
			},
			Put: func(ctx context.Context, upd ratelab.ScriptUpdate) (*ratelab.Script, bool, error) {
				return putScript(ctx, tx, orgID, upd, now)
			},
			Abort:   retryable,
			ItemErr: func(err error) error { return db.fail("update scripts", err) },
		}, upds)
		return err
	})
	if err != nil {
		return nil, db.fail("update scripts", err)
	}
	return results, nil
}

// DeleteScript deletes the org's script and all its versions, or returns
// ENOTFOUND.
func (db *DB) DeleteScript(ctx context.Context, orgID, id string) error {
	if !ratelab.ValidID(id) {
		return ratelab.ScriptNotFound(id) // it cannot exist; no query
	}
	tag, err := db.pool.Exec(ctx, `DELETE FROM scripts WHERE org_id = $1 AND id = $2`, orgID, id)
	if err != nil {
		return db.fail("delete script", err)
	}
	if tag.RowsAffected() == 0 {
		return ratelab.ScriptNotFound(id)
	}
	return nil
}

// ScriptVersions returns one page of the script's versions, newest first,
// and their total count; ENOTFOUND when the org has no such script.
func (db *DB) ScriptVersions(ctx context.Context, orgID, id string, page ratelab.Page) ([]*ratelab.ScriptVersion, int, error) {
	if !ratelab.ValidID(id) {
		return nil, 0, ratelab.ScriptNotFound(id) // it cannot exist; no query
	}
	// One snapshot for the count and the page.
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, 0, db.fail("script versions", err)
	}
	defer tx.Rollback(ctx)
	var seq int64
	var total int
	err = tx.QueryRow(ctx, `SELECT seq, (SELECT COUNT(*) FROM script_versions WHERE script_seq = s.seq)
		FROM scripts s WHERE org_id = $1 AND id = $2`, orgID, id).Scan(&seq, &total)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, 0, ratelab.ScriptNotFound(id)
	case err != nil:
		return nil, 0, db.fail("script versions", err)
	}
	limit, offset, ok := page.LimitOffset()
	if !ok {
		return []*ratelab.ScriptVersion{}, total, nil
	}
	rows, err := tx.Query(ctx, `SELECT version, name, text, created_at, client_id FROM script_versions
		WHERE script_seq = $1 ORDER BY version DESC LIMIT $2 OFFSET $3`, seq, limit, offset)
	if err != nil {
		return nil, 0, db.fail("script versions", err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*ratelab.ScriptVersion, error) {
		var v ratelab.ScriptVersion
		err := r.Scan(&v.Version, &v.Name, &v.Text, &v.Date, &v.ClientID)
		v.Date = v.Date.UTC()
		return &v, err
	})
	if err != nil {
		return nil, 0, db.fail("script versions", err)
	}
	if list == nil {
		list = []*ratelab.ScriptVersion{}
	}
	return list, total, nil
}
