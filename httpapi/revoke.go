package httpapi

import (
	"net/http"

	"ratelab"
	"ratelab/limit"
)

// handleRevoke is POST /oauth/revoke (RFC 7009): a client revokes one of
// its access tokens. The client authenticates as at the token endpoint,
// under the same failure limits before its secret is hashed (token.go),
// and a revocation is charged to the token-requests tiers of the client
// like a grant. A token that is unknown, expired, already revoked or
// another client's is answered 200 like a revoked one (§2.2), so that the
// answer reveals nothing; the store returns only once no replica sharing
// the database accepts the token any more.
func (s *Server) handleRevoke(c *call) error {
	c.w.Header().Set("Cache-Control", "no-store")
	id, secret, reqErr := clientForm(c)
	if reqErr == nil && (id == "" || secret == "") {
		reqErr = oauthErr("invalid_client", ratelab.EUNAUTHORIZED, "Client credentials are missing: send HTTP Basic or client_id and client_secret.")
	}
	cl, err := s.authenticateRevoker(c, id, secret, reqErr)
	if err != nil || cl == nil {
		return err
	}
	var lease limit.Lease
	if !s.admit(c, nil, &lease) {
		return nil
	}
	defer s.release(&lease)
	token := c.r.PostForm.Get("token")
	if token == "" {
		return oauthErr("invalid_request", ratelab.EINVALID, "token is missing: send token=ACCESS_TOKEN in the form body.")
	}
	// token_type_hint is optional and only a hint (§2.1): there is one
	// kind of token here.
	if err := s.auth.RevokeToken(c.r.Context(), cl.ID, token); err != nil {
		return err
	}
	writeJSON(c.w, http.StatusOK, struct{}{})
	return nil
}

// authenticateRevoker checks the revoking client's secret as handleToken
// does: the look at the failure tiers, the hash and the count of a failure
// are one step per address, so concurrent attempts cannot all pass the look
// before any counts. The address is unlocked before the revocation itself,
// which may wait for other replicas. A nil client with a nil error means the
// answer has been written.
func (s *Server) authenticateRevoker(c *call, id, secret string, reqErr error) (*ratelab.Client, error) {
	unlock, err := s.addrLocks.lock(c.r.Context(), remoteHost(c.r))
	if err != nil {
		return nil, ratelab.Errorf(ratelab.EINVALID, "The request was cancelled.")
	}
	defer unlock()
	ft := s.failureTiers(c)
	if ok, err := s.underFailureLimits(c, ft); err != nil || !ok {
		return nil, err
	}
	if reqErr != nil {
		return nil, s.tokenFailed(c, ft, reqErr)
	}
	cl, err := s.auth.Authenticate(c.r.Context(), id, secret)
	if ratelab.ErrorCode(err) == ratelab.EUNAUTHORIZED {
		return nil, s.tokenFailed(c, ft, oauthErr("invalid_client", ratelab.EUNAUTHORIZED, "Unknown client or wrong secret."))
	}
	if err != nil {
		return nil, err
	}
	return cl, nil
}
