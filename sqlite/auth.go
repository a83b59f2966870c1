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

// EnsureOrg returns the org with this name, creating it with three users
// when it does not exist.
func (db *DB) EnsureOrg(ctx context.Context, name string) (*ratelab.Org, error) {
	if err := ratelab.ValidateOrgName(name); err != nil {
		return nil, err
	}
	const q = `SELECT id, created_at FROM orgs WHERE name = ?`
	org := &ratelab.Org{Name: name}
	var created int64
	err := db.read.QueryRowContext(ctx, q, name).Scan(&org.ID, &created)
	if err == nil {
		org.CreatedAt = fromMicros(created)
		return org, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return nil, db.fail("find org", err)
	}
	err = db.inTx(ctx, func(tx *sql.Tx) error {
		// Another writer may have created it since the read above.
		err := tx.QueryRowContext(ctx, q, name).Scan(&org.ID, &created)
		switch {
		case err == nil:
			org.CreatedAt = fromMicros(created)
			return nil
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("find org: %w", err)
		}
		org.ID, org.CreatedAt = ratelab.NewID(), db.clock()
		if _, err := tx.ExecContext(ctx, `INSERT INTO orgs (id, name, created_at) VALUES (?, ?, ?)`,
			org.ID, name, org.CreatedAt.UnixMicro()); err != nil {
			return fmt.Errorf("insert org: %w", err)
		}
		for _, u := range ratelab.NewOrgUsers(name) {
			if _, err := tx.ExecContext(ctx, `INSERT INTO users (id, org_id, name, email) VALUES (?, ?, ?, ?)`,
				ratelab.NewID(), org.ID, u.Name, u.Email); err != nil {
				return fmt.Errorf("insert user: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, db.fail("ensure org", err)
	}
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
	err = db.inTx(ctx, func(tx *sql.Tx) error {
		var orgExists, idTaken bool
		if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM orgs WHERE id = ?), EXISTS (SELECT 1 FROM clients WHERE id = ?)`,
			orgID, c.ID).Scan(&orgExists, &idTaken); err != nil {
			return err
		}
		switch {
		case !orgExists:
			return ratelab.Errorf(ratelab.ENOTFOUND, "org %q not found", orgID)
		case idTaken:
			return ratelab.Errorf(ratelab.ECONFLICT, "client %q already exists", c.ID)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO clients (id, org_id, secret_hash, created_at) VALUES (?, ?, ?, ?)`,
			c.ID, c.OrgID, cred.Hash, c.CreatedAt.UnixMicro()); err != nil {
			return fmt.Errorf("insert client: %w", err)
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
	if err := db.read.QueryRowContext(ctx, `SELECT COUNT(*) FROM clients`).Scan(&n); err != nil {
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
		var created int64
		err := db.read.QueryRowContext(ctx, `SELECT org_id, secret_hash, created_at FROM clients WHERE id = ?`,
			clientID).Scan(&c.OrgID, &hash, &created)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, "", false, nil
		}
		c.CreatedAt = fromMicros(created)
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
		return "", time.Time{}, errors.New("sqlite: issue token: a client and a positive ttl are required")
	}
	token := ratelab.NewSecret()
	now := db.clock()
	expires := now.Add(ttl)
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE expires_at <= ?`, now.UnixMicro()); err != nil {
			return fmt.Errorf("purge tokens: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO tokens (hash, client_id, expires_at, created_at) VALUES (?, ?, ?, ?)`,
			ratelab.HashToken(token), client.ID, expires.UnixMicro(), now.UnixMicro()); err != nil {
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
// answered from the cache while the revocation generation it was verified
// in is current (see sqlstore.TokenCache); the generation is read from
// the file on every call, so a revocation committed by any process on it
// takes effect at once.
func (db *DB) ValidateToken(ctx context.Context, token string, now time.Time) (*ratelab.Client, error) {
	var gen int64
	if err := db.stmtGen.QueryRowContext(ctx).Scan(&gen); err != nil {
		return nil, db.fail("validate token", err)
	}
	key, hash := sqlstore.TokenKey(token)
	if c, valid, ok := db.tokens.Get(key, gen, now); ok {
		if !valid {
			return nil, ratelab.Errorf(ratelab.EUNAUTHORIZED, "invalid or expired token")
		}
		return c, nil
	}
	c := &ratelab.Client{}
	var created, expires int64
	err := db.stmtToken.QueryRowContext(ctx, hash).Scan(&c.ID, &c.OrgID, &created, &expires)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, ratelab.Errorf(ratelab.EUNAUTHORIZED, "invalid or expired token")
	case err != nil:
		return nil, db.fail("validate token", err)
	}
	c.CreatedAt = fromMicros(created)
	db.tokens.Put(key, gen, c, fromMicros(expires))
	if !now.Before(fromMicros(expires)) {
		return nil, ratelab.Errorf(ratelab.EUNAUTHORIZED, "invalid or expired token")
	}
	return c, nil
}

// bumpGeneration moves the revocation generation on inside a transaction
// that takes tokens' validity away (see sqlstore.TokenCache).
func bumpGeneration(ctx context.Context, tx *sql.Tx) error {
	if _, err := tx.ExecContext(ctx, `UPDATE auth_generation SET gen = gen + 1`); err != nil {
		return fmt.Errorf("revocation generation: %w", err)
	}
	return nil
}

// FindUsers returns the org's users in creation order (none for an
// unknown org).
func (db *DB) FindUsers(ctx context.Context, orgID string) ([]*ratelab.User, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT id, name, email FROM users WHERE org_id = ? ORDER BY seq`, orgID)
	if err != nil {
		return nil, db.fail("find users", err)
	}
	defer rows.Close()
	users := []*ratelab.User{}
	for rows.Next() {
		var u ratelab.User
		if err := rows.Scan(&u.ID, &u.Name, &u.Email); err != nil {
			return nil, db.fail("scan user", err)
		}
		users = append(users, &u)
	}
	if err := rows.Err(); err != nil {
		return nil, db.fail("find users", err)
	}
	return users, nil
}

// RevokeToken deletes the token when it was issued to clientID, and does
// nothing otherwise (see ratelab.AuthService). Deleting it moves the
// revocation generation on in the same transaction.
func (db *DB) RevokeToken(ctx context.Context, clientID, token string) error {
	if !ratelab.ValidID(clientID) {
		return nil
	}
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE hash = ? AND client_id = ?`,
			ratelab.HashToken(token), clientID)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		return bumpGeneration(ctx, tx)
	})
	if err != nil {
		return db.fail("revoke token", err)
	}
	return nil
}

// ListClients returns the clients of all orgs in creation order.
func (db *DB) ListClients(ctx context.Context) ([]*ratelab.Client, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT id, org_id, created_at FROM clients ORDER BY created_at, id`)
	if err != nil {
		return nil, db.fail("list clients", err)
	}
	defer rows.Close()
	list := []*ratelab.Client{}
	for rows.Next() {
		var c ratelab.Client
		var created int64
		if err := rows.Scan(&c.ID, &c.OrgID, &created); err != nil {
			return nil, db.fail("scan client", err)
		}
		c.CreatedAt = fromMicros(created)
		list = append(list, &c)
	}
	if err := rows.Err(); err != nil {
		return nil, db.fail("list clients", err)
	}
	return list, nil
}

// DeleteClient deletes the client; its tokens go with it (ON DELETE
// CASCADE, in the same statement), and the revocation generation moves on
// in the same transaction, so they stop working at once.
func (db *DB) DeleteClient(ctx context.Context, id string) error {
	if !ratelab.ValidID(id) {
		return ratelab.ClientNotFound(id)
	}
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM clients WHERE id = ?`, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ratelab.ClientNotFound(id)
		}
		return bumpGeneration(ctx, tx)
	})
	if err != nil {
		return db.fail("delete client", err)
	}
	return nil
}

// RotateSecret stores the hash of a new secret, deletes the client's
// tokens and moves the revocation generation on, in one transaction.
func (db *DB) RotateSecret(ctx context.Context, id, secret string) (string, error) {
	if !ratelab.ValidID(id) {
		return "", ratelab.ClientNotFound(id)
	}
	cred, err := ratelab.PrepareClient(id, secret)
	if err != nil {
		return "", db.fail("rotate secret", err)
	}
	err = db.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE clients SET secret_hash = ? WHERE id = ?`, cred.Hash, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ratelab.ClientNotFound(id)
		}
		if _, err = tx.ExecContext(ctx, `DELETE FROM tokens WHERE client_id = ?`, id); err != nil {
			return err
		}
		return bumpGeneration(ctx, tx)
	})
	if err != nil {
		return "", db.fail("rotate secret", err)
	}
	return cred.Secret, nil
}
