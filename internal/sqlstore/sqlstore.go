// Package sqlstore holds what the SQL stores (sqlite, postgres) do alike
// above their SQL dialects: applying a bulk of script updates inside one
// transaction, one savepoint per item, in a deadlock-free order; the one
// policy for checking a client secret (Authenticator); and
// Outage, which turns failures to reach the database into EUNAVAILABLE
// errors and logs an outage once, not once per request.
package sqlstore

import (
	"context"
	"fmt"
	"sort"

	"ratelab"
)

// BulkTx is one store's transaction as Bulk uses it.
type BulkTx struct {
	// Exec runs a statement without arguments (SAVEPOINT and friends).
	Exec func(ctx context.Context, stmt string) error
	// Put applies one validated update.
	Put func(ctx context.Context, upd ratelab.ScriptUpdate) (*ratelab.Script, bool, error)
	// Abort, when set, reports whether an item's error must fail the
	// whole batch instead of that item alone: a deadlock or serialization
	// failure, after which the caller retries the whole transaction.
	Abort func(error) bool
	// ItemErr, when set, turns an item's error into the error of its
	// result (to add context to internal errors).
	ItemErr func(error) error
}

// Bulk applies upds inside the caller's transaction and returns their
// results in input order. Each valid item runs inside its own savepoint,
// so one that fails rolls back only its own changes; an invalid one
// (ratelab.ValidateUpdate) never reaches the database. The returned error
// fails the whole batch, and the caller rolls the transaction back.
//
// Items run in the order of their ids (items of one id keep their order),
// so that every transaction takes its row locks in the same order: two
// bulks of the same ids in opposite orders would otherwise each hold a row
// the other waits for, which PostgreSQL breaks by failing one of them
// (deadlock detected, SQLSTATE 40P01). Items of different ids are
// independent, so the order changes no result.

func Bulk(ctx context.Context, tx BulkTx, upds []ratelab.ScriptUpdate) ([]ratelab.BulkResult, error) {
	results := make([]ratelab.BulkResult, len(upds))
	for _, i := range LockOrder(upds) {
		upd := upds[i]
		if err := ratelab.ValidateUpdate(upd); err != nil {
			results[i].Err = err
			continue
		}
		if err := tx.Exec(ctx, `SAVEPOINT item`); err != nil {
			return nil, fmt.Errorf("savepoint: %w", err)
		}
		s, created, err := tx.Put(ctx, upd)
		switch {
		case err != nil && tx.Abort != nil && tx.Abort(err):
			return nil, err
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

// LockOrder returns the indexes of upds sorted by id, stable, so that
// items of one id keep their input order.
func LockOrder(upds []ratelab.ScriptUpdate) []int {
	order := make([]int, len(upds))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return upds[order[a]].ID < upds[order[b]].ID })
	return order
}
