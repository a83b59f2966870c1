package httpapi_test

import (
	"context"
	"testing"
	"time"
)

// testRevoke checks POST /oauth/revoke (RFC 7009) through the real
// server: a revoked token stops working at once, also after the server
// has verified (and cached) it many times; an unknown, foreign or
// already revoked token is a 200 too and changes nothing; the client must
// authenticate, and every failure is the JSON error shape with its OAuth
// error; deleting or rotating a client and expiry stop its tokens at once.
func testRevoke(t *testing.T, lf limiterFactory) {
	clk := newClock()
	e := newEnv(t, lf, options{clock: clk, policies: generous(t)})
	a, b := e.client("acme"), e.client("other")
	ta, ta2, tb := e.token(a), e.token(a), e.token(b)
	for range 50 {
		for _, tok := range []string{ta, ta2, tb} {
			e.do("GET", "/api/v2/users", tok, nil).want(200)
		}
	}
	form := "application/x-www-form-urlencoded"
	revoke := func(c creds, body string) *resp {
		return e.do("POST", "/oauth/revoke", "", body, "Content-Type", form, "basic", c.id+":"+c.secret)
	}

	// Another client's token, an unknown one, a hint: 200, nothing revoked.
	revoke(b, "token="+ta).want(200)
	revoke(a, "token=no-such-token&token_type_hint=access_token").want(200)
	e.do("GET", "/api/v2/users", ta, nil).want(200)

	r := revoke(a, "token="+ta).want(200)
	if r.header.Get("Cache-Control") != "no-store" || r.header.Get("Content-Type") != "application/json" {
		t.Errorf("revoke: Cache-Control %q, Content-Type %q", r.header.Get("Cache-Control"), r.header.Get("Content-Type"))
	}
	if eb := e.do("GET", "/api/v2/users", ta, nil).want(401).errBody(); eb.Error != "invalid_token" {
		t.Errorf("revoked token: error %q, want invalid_token", eb.Error)
	}
	e.do("GET", "/api/v2/users", ta2, nil).want(200)
	e.do("GET", "/api/v2/users", tb, nil).want(200)
	revoke(a, "token="+ta).want(200) // twice

	// Client authentication is required, in form fields too.
	for _, tc := range []struct {
		name, body string
		hdr        []string
		status     int
		oauth      string
	}{
		{"no credentials", "token=" + ta2, []string{"Content-Type", form}, 401, "invalid_client"},
		{"wrong secret", "token=" + ta2, []string{"Content-Type", form, "basic", a.id + ":wrong"}, 401, "invalid_client"},
		{"unknown client", "token=" + ta2, []string{"Content-Type", form, "basic", "nobody:secret"}, 401, "invalid_client"},
		{"form, wrong secret", "client_id=" + a.id + "&client_secret=x&token=" + ta2, []string{"Content-Type", form}, 401, "invalid_client"},
		{"no token", "", []string{"Content-Type", form, "basic", a.id + ":" + a.secret}, 400, "invalid_request"},
		{"JSON body", `{"token":"x"}`, []string{"Content-Type", "application/json", "basic", a.id + ":" + a.secret}, 415, ""},
	} {
		r := e.do("POST", "/oauth/revoke", "", tc.body, tc.hdr...).want(tc.status)
		if eb := r.errBody(); eb.Error != tc.oauth {
			t.Errorf("%s: error %q, want %q", tc.name, eb.Error, tc.oauth)
		}
		if tc.status == 401 && r.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without WWW-Authenticate", tc.name)
		}
	}
	e.do("GET", "/api/v2/users", ta2, nil).want(200)
	e.do("POST", "/oauth/revoke", "", "client_id="+a.id+"&client_secret="+a.secret+"&token="+ta2, "Content-Type", form).want(200)
	e.do("GET", "/api/v2/users", ta2, nil).want(401)

	// Rotating and deleting a client, beside the server (as `ratelab
	// clients` does), stop its cached tokens at once.
	ctx := context.Background()
	ta3 := e.token(a)
	e.do("GET", "/api/v2/users", ta3, nil).want(200)
	if _, err := e.db.RotateSecret(ctx, a.id, ""); err != nil {
		t.Fatal(err)
	}
	e.do("GET", "/api/v2/users", ta3, nil).want(401)
	e.do("GET", "/api/v2/users", tb, nil).want(200)
	if err := e.db.DeleteClient(ctx, b.id); err != nil {
		t.Fatal(err)
	}
	e.do("GET", "/api/v2/users", tb, nil).want(401)

	// Expiry: valid until the instant, refused from it on.
	c := e.client("third")
	tc := e.token(c)
	e.do("GET", "/api/v2/users", tc, nil).want(200)
	clk.Advance(24*time.Hour - time.Microsecond)
	e.do("GET", "/api/v2/users", tc, nil).want(200)
	clk.Advance(time.Microsecond)
	e.do("GET", "/api/v2/users", tc, nil).want(401)
}
