// Package sqlstore holds what the SQL stores (sqlite, postgres) do alike
// above their SQL dialects: applying a bulk of script updates inside one
// transaction, one savepoint per item.
package sqlstore

import (
	"context"
	"fmt"

	"ratelab"
)

// BulkTx is one store's transaction as Bulk uses it.
type BulkTx struct {
	// Exec runs a statement without arguments (SAVEPOINT and friends).
	Exec func(ctx context.Context, stmt string) error
	// Put applies one validated update.
	Put func(ctx context.Context, upd ratelab.ScriptUpdate) (*ratelab.Script, bool, error)
	// ItemErr, when set, turns an item's error into the error of its
	// result (to add context to internal errors).
	ItemErr func(error) error
}

// Bulk applies upds inside the caller's transaction and returns their
// results in input order. Each valid item runs inside its own savepoint,
// so one that fails rolls back only its own changes; an invalid one
// (ratelab.ValidateUpdate) never reaches the database. The returned error
// fails the whole batch, and the caller rolls the transaction back.

func Bulk(ctx context.Context, tx BulkTx, upds []ratelab.ScriptUpdate) ([]ratelab.BulkResult, error) {
	results := make([]ratelab.BulkResult, len(upds))
	for i, upd := range upds {
		if err := ratelab.ValidateUpdate(upd); err != nil {
			results[i].Err = err
			continue
		}
		if err := tx.Exec(ctx, `SAVEPOINT item`); err != nil {
			return nil, fmt.Errorf("savepoint: %w", err)
		}
		s, created, err := tx.Put(ctx, upd)
		switch {
		case err != nil:
			if rerr := tx.Exec(ctx, `ROLLBACK TO SAVEPOINT item`); rerr != nil {
				return nil, fmt.Errorf("rollback item: %w", rerr)
			}
			if tx.ItemErr != nil {
				err = tx.ItemErr(err)
			}
			results[i].Err = err
		default:
			results[i] = ratelab.BulkResult{Script: s, Created: created}
		}
		if err := tx.Exec(ctx, `RELEASE SAVEPOINT item`); err != nil {
			return nil, fmt.Errorf("release: %w", err)
		}
	}
	return results, nil
}
