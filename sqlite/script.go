package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"ratelab"
	"ratelab/internal/sqlstore"
)

type scanner interface{ Scan(dest ...any) error }

func scanScript(row scanner) (*ratelab.Script, error) {
	var s ratelab.Script
	var created, modified int64
	if err := row.Scan(&s.ID, &s.Name, &s.Text, &s.Version, &created, &modified); err != nil {
		return nil, err
	}
	s.DateCreated, s.DateModified = fromMicros(created), fromMicros(modified)
	return &s, nil
}

const scriptColumns = `id, name, text, version, created_at, modified_at`

// FindScript returns the org's script with this id, or ENOTFOUND.
func (db *DB) FindScript(ctx context.Context, orgID, id string) (*ratelab.Script, error) {
	if !ratelab.ValidID(id) {
		return nil, ratelab.ScriptNotFound(id) // it cannot exist; no query
	}
	s, err := scanScript(db.stmtScript.QueryRowContext(ctx, orgID, id))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, ratelab.ScriptNotFound(id)
	case err != nil:
		return nil, db.fail("find script", err)
	}
	return s, nil
}

// FindScripts returns one page of the org's scripts in creation order and
// the total number of the org's scripts.
func (db *DB) FindScripts(ctx context.Context, orgID string, page ratelab.Page) ([]*ratelab.Script, int, error) {
	tx, err := db.read.BeginTx(ctx, nil)
	if err != nil {
		return nil, 0, db.fail("find scripts", err)
	}
	defer tx.Rollback()
	var total int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM scripts WHERE org_id = ?`, orgID).Scan(&total); err != nil {
		return nil, 0, db.fail("count scripts", err)
	}
	limit, offset, ok := page.LimitOffset()
	if !ok {
		return []*ratelab.Script{}, total, nil
	}
	rows, err := tx.QueryContext(ctx, `SELECT `+scriptColumns+` FROM scripts WHERE org_id = ?
		ORDER BY seq LIMIT ? OFFSET ?`, orgID, limit, offset)
	if err != nil {
		return nil, 0, db.fail("find scripts", err)
	}
	defer rows.Close()
	list := []*ratelab.Script{}
	for rows.Next() {
		s, err := scanScript(rows)
		if err != nil {
			return nil, 0, db.fail("scan script", err)
		}
		list = append(list, s)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, db.fail("find scripts", err)
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
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		s, created, err = putScript(ctx, tx, orgID, upd, db.clock())
		return err
	})
	if err != nil {
		return nil, false, db.fail("put script", err)
	}
	return s, created, nil
}

// putScript applies one validated update inside a write transaction. The
// write pool's single connection and BEGIN IMMEDIATE make the read of the
// current version and the write that follows atomic.
func putScript(ctx context.Context, tx *sql.Tx, orgID string, upd ratelab.ScriptUpdate, now time.Time) (*ratelab.Script, bool, error) {
	var seq, version, created int64
	err := tx.QueryRowContext(ctx, `SELECT seq, version, created_at FROM scripts WHERE org_id = ? AND id = ?`,
		orgID, upd.ID).Scan(&seq, &version, &created)
	isNew := errors.Is(err, sql.ErrNoRows)
	switch {
	case isNew && upd.IfVersion > 0:
		return nil, false, ratelab.Errorf(ratelab.ECONFLICT, "script %q does not exist; version %d was expected", upd.ID, upd.IfVersion)
	case isNew:
		version, created = 1, now.UnixMicro()
		err = tx.QueryRowContext(ctx, `INSERT INTO scripts (org_id, id, name, text, version, created_at, modified_at)
			VALUES (?, ?, ?, ?, 1, ?, ?) RETURNING seq`,
			orgID, upd.ID, upd.Name, upd.Text, created, created).Scan(&seq)
		if err != nil {
			return nil, false, fmt.Errorf("insert script: %w", err)
		}
	case err != nil:
		return nil, false, fmt.Errorf("read script version: %w", err)
	case upd.IfVersion > 0 && upd.IfVersion != version:
		return nil, false, ratelab.Errorf(ratelab.ECONFLICT, "script %q is at version %d, not %d", upd.ID, version, upd.IfVersion)
	default:
		version++
		if _, err := tx.ExecContext(ctx, `UPDATE scripts SET name = ?, text = ?, version = ?, modified_at = ? WHERE seq = ?`,
			upd.Name, upd.Text, version, now.UnixMicro(), seq); err != nil {
			return nil, false, fmt.Errorf("update script: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO script_versions (script_seq, version, name, text, created_at, client_id)
		VALUES (?, ?, ?, ?, ?, ?)`, seq, version, upd.Name, upd.Text, now.UnixMicro(), upd.ClientID); err != nil {
		return nil, false, fmt.Errorf("insert script version: %w", err)
	}
	return &ratelab.Script{ID: upd.ID, Name: upd.Name, Text: upd.Text, Version: version,
		DateCreated: fromMicros(created), DateModified: now}, isNew, nil
}

// UpdateScripts applies the updates in one transaction (one fsync). Each
// item runs inside its own SAVEPOINT, so an item that fails rolls back
// only its own changes; its error is in its result. The returned error is
// for failures of the whole batch, in which case nothing was written.
func (db *DB) UpdateScripts(ctx context.Context, orgID string, upds []ratelab.ScriptUpdate) ([]ratelab.BulkResult, error) {
	if len(upds) == 0 {
		return []ratelab.BulkResult{}, nil
	}
	var results []ratelab.BulkResult
	now := db.clock()
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		results, err = sqlstore.Bulk(ctx, sqlstore.BulkTx{
			Exec: func(ctx context.Context, stmt string) error {
				_, err := tx.ExecContext(ctx, stmt)
				return err
			},
			Put: func(ctx context.Context, upd ratelab.ScriptUpdate) (*ratelab.Script, bool, error) {
				return putScript(ctx, tx, orgID, upd, now)
			},
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
	res, err := db.write.ExecContext(ctx, `DELETE FROM scripts WHERE org_id = ? AND id = ?`, orgID, id)
	if err != nil {
		return db.fail("delete script", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return db.fail("delete script", err)
	}
	if n == 0 {
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
	tx, err := db.read.BeginTx(ctx, nil)
	if err != nil {
		return nil, 0, db.fail("script versions", err)
	}
	defer tx.Rollback()
	var seq int64
	var total int
	err = tx.QueryRowContext(ctx, `SELECT seq, (SELECT COUNT(*) FROM script_versions WHERE script_seq = s.seq)
		FROM scripts s WHERE org_id = ? AND id = ?`, orgID, id).Scan(&seq, &total)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, 0, ratelab.ScriptNotFound(id)
	case err != nil:
		return nil, 0, db.fail("script versions", err)
	}
	limit, offset, ok := page.LimitOffset()
	if !ok {
		return []*ratelab.ScriptVersion{}, total, nil
	}
	rows, err := tx.QueryContext(ctx, `SELECT version, name, text, created_at, client_id FROM script_versions
		WHERE script_seq = ? ORDER BY version DESC LIMIT ? OFFSET ?`, seq, limit, offset)
	if err != nil {
		return nil, 0, db.fail("script versions", err)
	}
	defer rows.Close()
	list := []*ratelab.ScriptVersion{}
	for rows.Next() {
		var v ratelab.ScriptVersion
		var at int64
		if err := rows.Scan(&v.Version, &v.Name, &v.Text, &at, &v.ClientID); err != nil {
			return nil, 0, db.fail("scan script version", err)
		}
		v.Date = fromMicros(at)
		list = append(list, &v)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, db.fail("script versions", err)
	}
	return list, total, nil
}
