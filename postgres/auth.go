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

// EnsureOrg returns the org with this name, creating it with three users
// when it does not exist.
func (db *DB) EnsureOrg(ctx context.Context, name string) (*ratelab.Org, error) {
	if err := ratelab.ValidateOrgName(name); err != nil {
		return nil, err
	}
	const find = `SELECT id, created_at FROM orgs WHERE name = $1`
	org := &ratelab.Org{Name: name}
	err := db.pool.QueryRow(ctx, find, name).Scan(&org.ID, &org.CreatedAt)
	if err == nil {
		org.CreatedAt = org.CreatedAt.UTC()
		return org, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return nil, db.fail("find org", err)
	}
	err = db.inTx(ctx, func(tx pgx.Tx) error {
		id, now := ratelab.NewID(), db.clock()
		// ON CONFLICT waits for a concurrent creator of the same name to
		// commit, after which the org exists and this insert does nothing.
		tag, err := tx.Exec(ctx, `INSERT INTO orgs (id, name, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING`,
			id, name, now)
		if err != nil {
			return fmt.Errorf("insert org: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return tx.QueryRow(ctx, find, name).Scan(&org.ID, &org.CreatedAt)
		}
		org.ID, org.CreatedAt = id, now
		for _, u := range ratelab.NewOrgUsers(name) {
			if _, err := tx.Exec(ctx, `INSERT INTO users (id, org_id, name, email) VALUES ($1, $2, $3, $4)`,
				ratelab.NewID(), id, u.Name, u.Email); err != nil {
				return fmt.Errorf("insert user: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, db.fail("ensure org", err)
	}
	org.CreatedAt = org.CreatedAt.UTC()
	return org, nil
}

// CreateClient creates an OAuth client in the org and returns it with its
// plain secret. An empty id becomes a UUID and an empty secret a random
// 256-bit one; only the secret's hash is stored. An id already in use is
// ECONFLICT, an unknown org ENOTFOUND.
func (db *DB) CreateClient(ctx context.Context, orgID, id, secret string) (*ratelab.Client, string, error) {
	cred, err := ratelab.PrepareClient(id, secret)
	if err != nil {
		return nil, "", db.fail("create client", err)
	}
	c := &ratelab.Client{ID: cred.ID, OrgID: orgID, CreatedAt: db.clock()}
	err = db.inTx(ctx, func(tx pgx.Tx) error {
		var orgExists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM orgs WHERE id = $1)`, orgID).Scan(&orgExists); err != nil {
			return fmt.Errorf("find org: %w", err)
		}
		if !orgExists {
			return ratelab.Errorf(ratelab.ENOTFOUND, "org %q not found", orgID)
		}
		tag, err := tx.Exec(ctx, `INSERT INTO clients (id, org_id, secret_hash, created_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (id) DO NOTHING`, c.ID, c.OrgID, cred.Hash, c.CreatedAt)
		if err != nil {
			return fmt.Errorf("insert client: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return ratelab.Errorf(ratelab.ECONFLICT, "client %q already exists", c.ID)
		}
		return nil
	})
	if err != nil {
		return nil, "", db.fail("create client", err)
	}
	return c, cred.Secret, nil
}

// CountClients returns the number of clients in all orgs.
func (db *DB) CountClients(ctx context.Context) (int, error) {
	var n int
	if err := db.pool.QueryRow(ctx, `SELECT COUNT(*) FROM clients`).Scan(&n); err != nil {
		return 0, db.fail("count clients", err)
	}
	return n, nil
}

// Authenticate returns the client when secret matches its stored hash, and
// EUNAUTHORIZED otherwise (see sqlstore.Authenticator: an unknown id costs
// the same hash computation as a wrong secret).
func (db *DB) Authenticate(ctx context.Context, clientID, secret string) (*ratelab.Client, error) {
	c, err := db.auth.Authenticate(clientID, secret, func() (*ratelab.Client, string, bool, error) {
		c := &ratelab.Client{ID: clientID}
		var hash string
		err := db.pool.QueryRow(ctx, `SELECT org_id, secret_hash, created_at FROM clients WHERE id = $1`,
			clientID).Scan(&c.OrgID, &hash, &c.CreatedAt)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, "", false, nil
		}
		c.CreatedAt = c.CreatedAt.UTC()
		return c, hash, true, err
	})
	if err != nil {
		return nil, db.fail("authenticate", err)
	}
	return c, nil
}

// IssueToken creates a random access token for the client, valid for ttl
// from now, and stores its hash. It also deletes tokens that have expired.
func (db *DB) IssueToken(ctx context.Context, client *ratelab.Client, ttl time.Duration) (string, time.Time, error) {
	if client == nil || ttl <= 0 {
		return "", time.Time{}, errors.New("postgres: issue token: a client and a positive ttl are required")
	}
	token := ratelab.NewSecret()
	now := db.clock()
	expires := now.Add(ttl)
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM tokens WHERE expires_at <= $1`, now); err != nil {
			return fmt.Errorf("purge tokens: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO tokens (hash, client_id, expires_at, created_at) VALUES ($1, $2, $3, $4)`,
			ratelab.HashToken(token), client.ID, expires, now); err != nil {
			return fmt.Errorf("insert token: %w", err)
		}
		return nil
	})
	if err != nil {
		return "", time.Time{}, db.fail("issue token", err)
	}
	return token, expires, nil
}

// ValidateToken returns the client that token was issued to, or
// EUNAUTHORIZED when the token is unknown, revoked or expired at now (a
// token is valid strictly before its expiry). A token verified before is
// answered from the cache while this replica holds its revocation lease
// and the generation it was verified in is current (authwatch.go).
func (db *DB) ValidateToken(ctx context.Context, token string, now time.Time) (*ratelab.Client, error) {
	key, hash := sqlstore.TokenKey(token)
	gen, cached := db.watch.current()
	if cached {
		if c, valid, ok := db.tokens.Get(key, gen, now); ok {
			if !valid {
				return nil, ratelab.Errorf(ratelab.EUNAUTHORIZED, "invalid or expired token")
			}
			return c, nil
		}
	}
	c := &ratelab.Client{}
	var expires time.Time
	err := db.pool.QueryRow(ctx, `SELECT c.id, c.org_id, c.created_at, t.expires_at
		FROM tokens t JOIN clients c ON c.id = t.client_id WHERE t.hash = $1`,
		hash).Scan(&c.ID, &c.OrgID, &c.CreatedAt, &expires)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, ratelab.Errorf(ratelab.EUNAUTHORIZED, "invalid or expired token")
	case err != nil:
		return nil, db.fail("validate token", err)
	}
	c.CreatedAt = c.CreatedAt.UTC()
	if cached {
		db.tokens.Put(key, gen, c, expires)
	}
	if !now.Before(expires) {
		return nil, ratelab.Errorf(ratelab.EUNAUTHORIZED, "invalid or expired token")
	}
	return c, nil
}

// revoke runs fn, a transaction that takes tokens' validity away and
// reports whether it did, moves the revocation generation on in it, and
// returns once every replica has applied the new generation (revoked).
func (db *DB) revoke(ctx context.Context, fn func(pgx.Tx) (bool, error)) error {
	var g int64
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		g = 0
		did, err := fn(tx)
		if err != nil || !did {
			return err
		}
		g, err = bumpGeneration(ctx, tx)
		return err
	})
	if err != nil || g == 0 {
		return err
	}
	return db.revoked(ctx, g)
}

// FindUsers returns the org's users in creation order (none for an
// unknown org).
func (db *DB) FindUsers(ctx context.Context, orgID string) ([]*ratelab.User, error) {
	rows, err := db.pool.Query(ctx, `SELECT id, name, email FROM users WHERE org_id = $1 ORDER BY seq`, orgID)
	if err != nil {
		return nil, db.fail("find users", err)
	}
	users, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*ratelab.User, error) {
		var u ratelab.User
		err := r.Scan(&u.ID, &u.Name, &u.Email)
		return &u, err
	})
	if err != nil {
		return nil, db.fail("find users", err)
	}
	if users == nil {
		users = []*ratelab.User{}
	}
	return users, nil
}

// RevokeToken deletes the token when it was issued to clientID, and does
// nothing otherwise (see ratelab.AuthService). It returns once no replica
// accepts the token any more (see revoke).
func (db *DB) RevokeToken(ctx context.Context, clientID, token string) error {
	if !ratelab.ValidID(clientID) {
		return nil
	}
	err := db.revoke(ctx, func(tx pgx.Tx) (bool, error) {
		tag, err := tx.Exec(ctx, `DELETE FROM tokens WHERE hash = $1 AND client_id = $2`, ratelab.HashToken(token), clientID)
		return err == nil && tag.RowsAffected() > 0, err
	})
	if err != nil {
		return db.fail("revoke token", err)
	}
	return nil
}

// ListClients returns the clients of all orgs in creation order.
func (db *DB) ListClients(ctx context.Context) ([]*ratelab.Client, error) {
	rows, err := db.pool.Query(ctx, `SELECT id, org_id, created_at FROM clients ORDER BY created_at, id`)
	if err != nil {
		return nil, db.fail("list clients", err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*ratelab.Client, error) {
		var c ratelab.Client
		err := r.Scan(&c.ID, &c.OrgID, &c.CreatedAt)
		c.CreatedAt = c.CreatedAt.UTC()
		return &c, err
	})
	if err != nil {
		return nil, db.fail("list clients", err)
	}
	if list == nil {
		list = []*ratelab.Client{}
	}
	return list, nil
}

// DeleteClient deletes the client; its tokens go with it (ON DELETE
// CASCADE, in the same statement). It returns once no replica accepts
// them any more (see revoke).
func (db *DB) DeleteClient(ctx context.Context, id string) error {
	if !ratelab.ValidID(id) {
		return ratelab.ClientNotFound(id)
	}
	err := db.revoke(ctx, func(tx pgx.Tx) (bool, error) {
		tag, err := tx.Exec(ctx, `DELETE FROM clients WHERE id = $1`, id)
		if err == nil && tag.RowsAffected() == 0 {
			err = ratelab.ClientNotFound(id)
		}
		return err == nil, err
	})
	if err != nil {
		return db.fail("delete client", err)
	}
	return nil
}

// RotateSecret stores the hash of a new secret and deletes the client's
// tokens in one transaction, and returns once no replica accepts them any
// more (see revoke).
func (db *DB) RotateSecret(ctx context.Context, id, secret string) (string, error) {
	if !ratelab.ValidID(id) {
		return "", ratelab.ClientNotFound(id)
	}
	cred, err := ratelab.PrepareClient(id, secret)
	if err != nil {
		return "", db.fail("rotate secret", err)
	}
	err = db.revoke(ctx, func(tx pgx.Tx) (bool, error) {
		tag, err := tx.Exec(ctx, `UPDATE clients SET secret_hash = $1 WHERE id = $2`, cred.Hash, id)
		if err != nil {
			return false, err
		}
		if tag.RowsAffected() == 0 {
			return false, ratelab.ClientNotFound(id)
		}
		_, err = tx.Exec(ctx, `DELETE FROM tokens WHERE client_id = $1`, id)
		return err == nil, err
	})
	if err != nil {
		return "", db.fail("rotate secret", err)
	}
	return cred.Secret, nil
}
