package sqlstore

import (
	"fmt"

	"ratelab"
)

// Authenticator is the stores' one policy for checking a client's secret.
// An id that fails the id rule is refused without a query, and it and an
// unknown id cost the same PBKDF2 computation as a wrong secret (against
// a hash of a random secret), so that neither the answer nor its time
// tells which ids exist. It is safe for concurrent use.
type Authenticator struct {
	dummyHash string
}

// NewAuthenticator returns an Authenticator with a fresh dummy hash.
func NewAuthenticator() (*Authenticator, error) {
	h, err := ratelab.HashSecret(ratelab.NewSecret())
	if err != nil {
		return nil, fmt.Errorf("dummy hash: %w", err)
	}
	return &Authenticator{dummyHash: h}, nil
}

// Authenticate returns the client that lookup finds for clientID when
// secret matches its stored hash, and ratelab.BadCredentials otherwise.
// lookup returns found=false for an unknown id; its error is returned as
// it is.
func (a *Authenticator) Authenticate(clientID, secret string, lookup func() (c *ratelab.Client, hash string, found bool, err error)) (*ratelab.Client, error) {
	if !ratelab.ValidID(clientID) {
		ratelab.VerifySecret(a.dummyHash, secret)
		return nil, ratelab.BadCredentials()
	}
	c, hash, found, err := lookup()
	switch {
	case err != nil:
		return nil, err
	case !found:
		ratelab.VerifySecret(a.dummyHash, secret)
		return nil, ratelab.BadCredentials()
	case !ratelab.VerifySecret(hash, secret):
		return nil, ratelab.BadCredentials()
	}
	return c, nil
}
