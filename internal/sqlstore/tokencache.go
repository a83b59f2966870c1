package sqlstore

import (
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"time"

	"ratelab"
)

// TokenCache remembers verified access tokens, so that a request with a
// known token needs no token query. It is exact because of the
// revocation generation: a counter in the database that every
// transaction taking a token's validity away (revoking a token, deleting
// a client, rotating its secret) increments. An entry is used only under
// the generation it was verified in, and the caller reads the generation
// before it queries the token: a revocation that commits after that read
// moves the generation on, so the entry is never used again; one that
// committed before it is seen by the query. Expiry needs no generation:
// an entry keeps the token's expiry and is refused from that instant on.
//
// Only valid tokens are cached, keyed by their SHA-256 (never the token
// itself), at most MaxTokens of them; a new generation empties the cache.
// It is safe for concurrent use.
type TokenCache struct {
	mu  sync.RWMutex
	gen int64
	m   map[[sha256.Size]byte]cachedToken
}

// MaxTokens bounds a TokenCache; when it is full it starts again empty.
const MaxTokens = 100_000

type cachedToken struct {
	client  ratelab.Client
	expires time.Time
}

// TokenKey returns the cache key of a token and the hex form in which
// tokens are stored (ratelab.HashToken), from one hash computation.
func TokenKey(token string) (key [sha256.Size]byte, stored string) {
	key = sha256.Sum256([]byte(token))
	return key, hex.EncodeToString(key[:])
}

// Get returns the client of a token verified under generation gen. ok is
// false when the cache cannot answer (the caller queries); valid is false
// when the token is known and expired at now.
func (c *TokenCache) Get(key [sha256.Size]byte, gen int64, now time.Time) (client *ratelab.Client, valid, ok bool) {
	c.mu.RLock()
	e, found := c.m[key]
	same := c.gen == gen
	c.mu.RUnlock()
	if !found || !same {
		return nil, false, false
	}
	if !now.Before(e.expires) {
		return nil, false, true
	}
	cl := e.client
	return &cl, true, true
}

// Put records a token that a query found valid, with its expiry, under
// the generation read before that query.
func (c *TokenCache) Put(key [sha256.Size]byte, gen int64, client *ratelab.Client, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case gen < c.gen:
		return // verified under a generation that is already over
	case gen > c.gen || c.m == nil || len(c.m) >= MaxTokens:
		c.gen = gen
		c.m = make(map[[sha256.Size]byte]cachedToken)
	}
	c.m[key] = cachedToken{client: *client, expires: expires}
}
