// Package storetest is the conformance suite for ratelab's storage: every
// implementation of ratelab.ScriptService and ratelab.AuthService (sqlite,
// postgres) runs Run from its own tests, so that both behave the same.
//
// The suite covers every method, isolation between orgs, compare-and-swap
// semantics, the concurrency properties the HTTP layer relies on (no lost
// or duplicated version under concurrent writers, no deadlock between
// bulks of the same ids in opposite orders), bulk updates with partial
// failure, the id and text rules (the same answer on every store, before
// any query), paging, token expiry and revocation, client management, and
// durability across a close and reopen.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ratelab"
)

// Store is what the suite needs of an implementation: both services and a
// Close that releases it.
type Store interface {
	ratelab.ScriptService
	ratelab.AuthService
	Close() error
}

// Config tells Run how to open the implementation under test. The zero
// values of the counts select the defaults.
type Config struct {
	// Open opens the store called name with now as its clock, creating
	// it empty the first time. Opening the same name again after Close
	// must see the same data, as a restarted server would, and so must a
	// second store opened on the name while the first is open, as a
	// second replica sharing the database would. Names are
	// distinct per subtest. Open reports its own failures with t.Fatal
	// and removes what it created in t.Cleanup; the suite closes the
	// stores it opens.
	Open func(t *testing.T, name string, now func() time.Time) Store
	// Writers is the number of concurrent goroutines in the concurrency
	// tests (default 20).
	Writers int
	// UpdatesPerWriter is how many updates each of them makes (default
	// 50). A store whose durable write is slow may lower it to keep the
	// suite quick.
	UpdatesPerWriter int
}

// Clock is a manual clock for tests: Now returns the set time, which only
// Advance changes. The zero value starts at the zero time; it is safe for
// concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a Clock set to t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// t0 is the suite's starting instant: whole seconds, so that every store's
// time precision represents it exactly.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type suite struct {
	cfg Config
}

// Run runs the conformance suite against the implementation cfg opens.
func Run(t *testing.T, cfg Config) {
	if cfg.Open == nil {
		t.Fatal("storetest: Config.Open is required")
	}
	if cfg.Writers <= 0 {
		cfg.Writers = 20
	}
	if cfg.UpdatesPerWriter <= 0 {
		cfg.UpdatesPerWriter = 50
	}
	s := &suite{cfg: cfg}
	for _, tc := range []struct {
		name string
		fn   func(*testing.T)
	}{
		{"Ping", s.testPing},
		{"EnsureOrg", s.testEnsureOrg},
		{"Clients", s.testClients},
		{"Tokens", s.testTokens},
		{"ClientManagement", s.testClientManagement},
		{"RevocationAcrossReplicas", s.testRevocationAcrossReplicas},
		{"ScriptLifecycle", s.testScriptLifecycle},
		{"ScriptValidation", s.testScriptValidation},
		{"CompareAndSwap", s.testCompareAndSwap},
		{"OrgIsolation", s.testOrgIsolation},
		{"Paging", s.testPaging},
		{"Bulk", s.testBulk},
		{"ConcurrentCompareAndSwap", s.testConcurrentCAS},
		{"ConcurrentUnconditional", s.testConcurrentUnconditional},
		{"ConcurrentCreate", s.testConcurrentCreate},
		{"ConcurrentEnsureOrg", s.testConcurrentEnsureOrg},
		{"ConcurrentOppositeBulks", s.testConcurrentOppositeBulks},
		{"Restart", s.testRestart},
	} {
		t.Run(tc.name, tc.fn)
	}
}

// open opens the subtest's store and closes it at the end of the test.
func (s *suite) open(t *testing.T, clock *Clock) Store {
	t.Helper()
	st := s.cfg.Open(t, storeName(t), clock.Now)
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return st
}

// storeName turns the subtest's name into a name safe for any store: a
// file name or an SQL identifier.
func storeName(t *testing.T) string {
	name := strings.ToLower(t.Name())
	return regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(name, "_")
}

// newOrg creates an org with a name unique to the test.
func newOrg(t *testing.T, st Store, name string) *ratelab.Org {
	t.Helper()
	org, err := st.EnsureOrg(context.Background(), name)
	if err != nil {
		t.Fatalf("EnsureOrg(%q): %v", name, err)
	}
	return org
}

func wantCode(t *testing.T, err error, code string, what string) {
	t.Helper()
	if got := ratelab.ErrorCode(err); got != code {
		t.Fatalf("%s: error %v has code %q, want %q", what, err, got, code)
	}
	if code != ratelab.EINTERNAL && code != "" {
		var e *ratelab.Error
		if !errors.As(err, &e) || e.Message == "" {
			t.Fatalf("%s: error %v carries no user-facing message", what, err)
		}
	}
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func (s *suite) testPing(t *testing.T) {
	st := s.open(t, NewClock(t0))
	if err := st.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func (s *suite) testEnsureOrg(t *testing.T) {
	ctx := context.Background()
	clock := NewClock(t0)
	st := s.open(t, clock)

	a := newOrg(t, st, "Acme Corp")
	if !uuidRE.MatchString(a.ID) || a.Name != "Acme Corp" || !a.CreatedAt.Equal(t0) {
		t.Fatalf("EnsureOrg = %+v, want a UUID id, the name and created at %v", a, t0)
	}
	clock.Advance(time.Second)
	again := newOrg(t, st, "Acme Corp")
	if again.ID != a.ID || !again.CreatedAt.Equal(t0) {
		t.Fatalf("EnsureOrg again = %+v, want the existing org %+v", again, a)
	}
	b := newOrg(t, st, "Other")
	if b.ID == a.ID {
		t.Fatalf("two orgs share id %s", a.ID)
	}
	_, err := st.EnsureOrg(ctx, "")
	wantCode(t, err, ratelab.EINVALID, "EnsureOrg(\"\")")

	users, err := st.FindUsers(ctx, a.ID)
	if err != nil {
		t.Fatalf("FindUsers: %v", err)
	}
	if len(users) < 3 {
		t.Fatalf("FindUsers = %d users, want at least 3", len(users))
	}
	seen := map[string]bool{}
	for _, u := range users {
		if u.ID == "" || u.Name == "" || !strings.Contains(u.Email, "@") || seen[u.ID] {
			t.Fatalf("bad or duplicate user %+v", u)
		}
		seen[u.ID] = true
	}
	// Creating the org again must not add users.
	if again, err := st.FindUsers(ctx, a.ID); err != nil || len(again) != len(users) {
		t.Fatalf("FindUsers after second EnsureOrg = %d users, %v; want %d", len(again), err, len(users))
	}
	other, err := st.FindUsers(ctx, b.ID)
	if err != nil {
		t.Fatalf("FindUsers(other): %v", err)
	}
	for _, u := range other {
		if seen[u.ID] {
			t.Fatalf("user %+v belongs to two orgs", u)
		}
	}
	if none, err := st.FindUsers(ctx, "no-such-org"); err != nil || len(none) != 0 {
		t.Fatalf("FindUsers(unknown org) = %v, %v; want none", none, err)
	}
}

func (s *suite) testClients(t *testing.T) {
	ctx := context.Background()
	clock := NewClock(t0)
	st := s.open(t, clock)
	org := newOrg(t, st, "clients")

	if n, err := st.CountClients(ctx); err != nil || n != 0 {
		t.Fatalf("CountClients on an empty store = %d, %v; want 0", n, err)
	}
	gen, secret, err := st.CreateClient(ctx, org.ID, "", "")
	if err != nil {
		t.Fatalf("CreateClient: %v", err)
	}
	if !uuidRE.MatchString(gen.ID) || gen.OrgID != org.ID || len(secret) < 32 || !gen.CreatedAt.Equal(t0) {
		t.Fatalf("CreateClient = %+v, secret %q; want a UUID id in org %s, a long secret, created at %v", gen, secret, org.ID, t0)
	}
	got, err := st.Authenticate(ctx, gen.ID, secret)
	if err != nil {
		t.Fatalf("Authenticate(generated): %v", err)
	}
	if got.ID != gen.ID || got.OrgID != org.ID {
		t.Fatalf("Authenticate = %+v, want %+v", got, gen)
	}

	mine, secret2, err := st.CreateClient(ctx, org.ID, "load-test", "s3cret-chosen-by-a-person")
	if err != nil {
		t.Fatalf("CreateClient(explicit): %v", err)
	}
	if mine.ID != "load-test" || secret2 != "s3cret-chosen-by-a-person" {
		t.Fatalf("CreateClient(explicit) = %+v, %q", mine, secret2)
	}
	if _, err := st.Authenticate(ctx, "load-test", "s3cret-chosen-by-a-person"); err != nil {
		t.Fatalf("Authenticate(explicit): %v", err)
	}
	_, err = st.Authenticate(ctx, "load-test", "s3cret-chosen-by-a-persoN")
	wantCode(t, err, ratelab.EUNAUTHORIZED, "Authenticate(wrong secret)")
	_, err = st.Authenticate(ctx, "load-test", "")
	wantCode(t, err, ratelab.EUNAUTHORIZED, "Authenticate(empty secret)")
	_, err = st.Authenticate(ctx, "no-such-client", "s3cret-chosen-by-a-person")
	wantCode(t, err, ratelab.EUNAUTHORIZED, "Authenticate(unknown id)")
	_, err = st.Authenticate(ctx, gen.ID, "s3cret-chosen-by-a-person")
	wantCode(t, err, ratelab.EUNAUTHORIZED, "Authenticate(another client's secret)")

	_, _, err = st.CreateClient(ctx, org.ID, "load-test", "other")
	wantCode(t, err, ratelab.ECONFLICT, "CreateClient(duplicate id)")
	if _, err := st.Authenticate(ctx, "load-test", "s3cret-chosen-by-a-person"); err != nil {
		t.Fatalf("a rejected duplicate changed the first client's secret: %v", err)
	}
	for _, id := range []string{"bad id:with colon", "..", "a\x00b", "\xff"} {
		_, _, err = st.CreateClient(ctx, org.ID, id, "x")
		wantCode(t, err, ratelab.EUNPROCESSABLE, fmt.Sprintf("CreateClient(invalid id %q)", id))
	}
	_, _, err = st.CreateClient(ctx, "no-such-org", "", "")
	wantCode(t, err, ratelab.ENOTFOUND, "CreateClient(unknown org)")

	other := newOrg(t, st, "clients-other")
	if _, _, err := st.CreateClient(ctx, other.ID, "", ""); err != nil {
		t.Fatalf("CreateClient(other org): %v", err)
	}
	if n, err := st.CountClients(ctx); err != nil || n != 3 {
		t.Fatalf("CountClients = %d, %v; want 3", n, err)
	}
}

func (s *suite) testTokens(t *testing.T) {
	ctx := context.Background()
	clock := NewClock(t0)
	st := s.open(t, clock)
	org := newOrg(t, st, "tokens")
	c, _, err := st.CreateClient(ctx, org.ID, "", "")
	if err != nil {
		t.Fatalf("CreateClient: %v", err)
	}
	tok, exp, err := st.IssueToken(ctx, c, time.Hour)
	if err != nil {
		t.Fatalf("IssueToken: %v", err)
	}
	if len(tok) < 32 || !exp.Equal(t0.Add(time.Hour)) {
		t.Fatalf("IssueToken = %q, %v; want a long token expiring at %v", tok, exp, t0.Add(time.Hour))
	}
	tok2, _, err := st.IssueToken(ctx, c, time.Hour)
	if err != nil || tok2 == tok {
		t.Fatalf("second IssueToken = %q, %v; want a different token", tok2, err)
	}
	for _, now := range []time.Time{t0, exp.Add(-time.Microsecond)} {
		got, err := st.ValidateToken(ctx, tok, now)
		if err != nil {
			t.Fatalf("ValidateToken at %v: %v", now, err)
		}
		if got.ID != c.ID || got.OrgID != org.ID {
			t.Fatalf("ValidateToken = %+v, want client %s of org %s", got, c.ID, org.ID)
		}
	}
	for _, now := range []time.Time{exp, exp.Add(time.Minute)} {
		_, err := st.ValidateToken(ctx, tok, now)
		wantCode(t, err, ratelab.EUNAUTHORIZED, fmt.Sprintf("ValidateToken at %v (expiry %v)", now, exp))
	}
	_, err = st.ValidateToken(ctx, "not-a-token", t0)
	wantCode(t, err, ratelab.EUNAUTHORIZED, "ValidateToken(unknown)")
	_, err = st.ValidateToken(ctx, "", t0)
	wantCode(t, err, ratelab.EUNAUTHORIZED, "ValidateToken(empty)")

	// Issuing a token later purges or keeps old ones, but never breaks a
	// valid one.
	clock.Advance(30 * time.Minute)
	if _, _, err := st.IssueToken(ctx, c, time.Minute); err != nil {
		t.Fatalf("IssueToken later: %v", err)
	}
	if _, err := st.ValidateToken(ctx, tok2, clock.Now()); err != nil {
		t.Fatalf("ValidateToken(second token) after another issue: %v", err)
	}
}

// testClientManagement covers what `ratelab clients` and POST
// /oauth/revoke need: listing, revoking one token, rotating a secret and
// deleting a client, each taking effect at once.
func (s *suite) testClientManagement(t *testing.T) {
	ctx := context.Background()
	clock := NewClock(t0)
	st := s.open(t, clock)
	org := newOrg(t, st, "management")
	if list, err := st.ListClients(ctx); err != nil || list == nil || len(list) != 0 {
		t.Fatalf("ListClients on an empty store = %v, %v; want an empty list", list, err)
	}
	a, _, err := st.CreateClient(ctx, org.ID, "mgmt-a", "secret-a")
	if err != nil {
		t.Fatalf("CreateClient(a): %v", err)
	}
	clock.Advance(time.Second)
	other := newOrg(t, st, "management-other")
	b, bSecret, err := st.CreateClient(ctx, other.ID, "", "")
	if err != nil {
		t.Fatalf("CreateClient(b): %v", err)
	}
	list, err := st.ListClients(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("ListClients = %v, %v; want 2 clients", list, err)
	}
	for i, want := range []*ratelab.Client{a, b} {
		if got := list[i]; got.ID != want.ID || got.OrgID != want.OrgID || !got.CreatedAt.Equal(want.CreatedAt) {
			t.Fatalf("ListClients[%d] = %+v, want %+v (oldest first)", i, got, want)
		}
	}

	issue := func(c *ratelab.Client) string {
		t.Helper()
		tok, _, err := st.IssueToken(ctx, c, time.Hour)
		if err != nil {
			t.Fatalf("IssueToken(%s): %v", c.ID, err)
		}
		return tok
	}
	valid := func(tok string, want bool, what string) {
		t.Helper()
		_, err := st.ValidateToken(ctx, tok, clock.Now())
		if want && err != nil {
			t.Fatalf("%s: ValidateToken: %v; want valid", what, err)
		}
		if !want {
			wantCode(t, err, ratelab.EUNAUTHORIZED, what)
		}
	}
	ta1, ta2, tb := issue(a), issue(a), issue(b)

	// Revoking: only the owner's revocation counts; revoking what does
	// not exist is not an error.
	for _, c := range []struct{ client, token string }{
		{b.ID, ta1}, {"no-such-client", ta1}, {"a\x00b", ta1}, {a.ID, "not-a-token"}, {a.ID, ""}, {a.ID, tb},
	} {
		if err := st.RevokeToken(ctx, c.client, c.token); err != nil {
			t.Fatalf("RevokeToken(%q, …): %v; want no error", c.client, err)
		}
	}
	valid(ta1, true, "a's token after others tried to revoke it")
	valid(tb, true, "b's token after a tried to revoke it")
	if err := st.RevokeToken(ctx, a.ID, ta1); err != nil {
		t.Fatalf("RevokeToken(a, its token): %v", err)
	}
	valid(ta1, false, "a revoked token")
	valid(ta2, true, "a's other token")
	if err := st.RevokeToken(ctx, a.ID, ta1); err != nil {
		t.Fatalf("RevokeToken twice: %v", err)
	}

	// Rotating: the old secret and every token stop working.
	newSecret, err := st.RotateSecret(ctx, a.ID, "")
	if err != nil || len(newSecret) < 32 || newSecret == "secret-a" {
		t.Fatalf("RotateSecret(a) = %q, %v; want a new long secret", newSecret, err)
	}
	_, err = st.Authenticate(ctx, a.ID, "secret-a")
	wantCode(t, err, ratelab.EUNAUTHORIZED, "Authenticate(old secret after rotation)")
	if _, err := st.Authenticate(ctx, a.ID, newSecret); err != nil {
		t.Fatalf("Authenticate(new secret): %v", err)
	}
	valid(ta2, false, "a token issued before the rotation")
	valid(tb, true, "another client's token after a's rotation")
	if got, err := st.RotateSecret(ctx, a.ID, "chosen-secret"); err != nil || got != "chosen-secret" {
		t.Fatalf("RotateSecret(a, chosen) = %q, %v", got, err)
	}
	if _, err := st.Authenticate(ctx, a.ID, "chosen-secret"); err != nil {
		t.Fatalf("Authenticate(chosen secret): %v", err)
	}
	for _, id := range []string{"no-such-client", "a\x00b", "\xff", ".."} {
		_, err := st.RotateSecret(ctx, id, "")
		wantCode(t, err, ratelab.ENOTFOUND, fmt.Sprintf("RotateSecret(%q)", id))
		err = st.DeleteClient(ctx, id)
		wantCode(t, err, ratelab.ENOTFOUND, fmt.Sprintf("DeleteClient(%q)", id))
	}

	// Deleting: the client's tokens stop working at once.
	ta3 := issue(a)
	if err := st.DeleteClient(ctx, b.ID); err != nil {
		t.Fatalf("DeleteClient(b): %v", err)
	}
	valid(tb, false, "a deleted client's token")
	_, err = st.Authenticate(ctx, b.ID, bSecret)
	wantCode(t, err, ratelab.EUNAUTHORIZED, "Authenticate(deleted client)")
	err = st.DeleteClient(ctx, b.ID)
	wantCode(t, err, ratelab.ENOTFOUND, "DeleteClient twice")
	valid(ta3, true, "another client's token after b's deletion")
	if list, err := st.ListClients(ctx); err != nil || len(list) != 1 || list[0].ID != a.ID {
		t.Fatalf("ListClients after delete = %v, %v; want only %s", list, err, a.ID)
	}
	if n, err := st.CountClients(ctx); err != nil || n != 1 {
		t.Fatalf("CountClients after delete = %d, %v; want 1", n, err)
	}
	// A deleted id may be created again; nothing of the old client comes back.
	if err := st.DeleteClient(ctx, a.ID); err != nil {
		t.Fatalf("DeleteClient(a): %v", err)
	}
	if _, _, err := st.CreateClient(ctx, org.ID, a.ID, "fresh"); err != nil {
		t.Fatalf("CreateClient(a's id again): %v", err)
	}
	valid(ta3, false, "a token of the deleted client, after its id was reused")
}

func (s *suite) testScriptLifecycle(t *testing.T) {
	ctx := context.Background()
	clock := NewClock(t0)
	st := s.open(t, clock)
	org := newOrg(t, st, "lifecycle")

	created, err := st.CreateScript(ctx, org.ID, "greeting", "say hello", "client-1")
	if err != nil {
		t.Fatalf("CreateScript: %v", err)
	}
	want := ratelab.Script{ID: created.ID, Name: "greeting", Text: "say hello", Version: 1, DateCreated: t0, DateModified: t0}
	if !uuidRE.MatchString(created.ID) || !sameScript(created, &want) {
		t.Fatalf("CreateScript = %+v, want %+v with a UUID id", created, want)
	}
	found, err := st.FindScript(ctx, org.ID, created.ID)
	if err != nil || !sameScript(found, &want) {
		t.Fatalf("FindScript = %+v, %v; want %+v", found, err, want)
	}

	clock.Advance(time.Minute)
	t1 := clock.Now()
	upd, isNew, err := st.PutScript(ctx, org.ID, ratelab.ScriptUpdate{ID: created.ID, Name: "greeting v2", Text: "say hi", ClientID: "client-2"})
	if err != nil || isNew {
		t.Fatalf("PutScript(existing) = %+v, created=%v, %v", upd, isNew, err)
	}
	want = ratelab.Script{ID: created.ID, Name: "greeting v2", Text: "say hi", Version: 2, DateCreated: t0, DateModified: t1}
	if !sameScript(upd, &want) {
		t.Fatalf("PutScript = %+v, want %+v", upd, want)
	}
	if found, err := st.FindScript(ctx, org.ID, created.ID); err != nil || !sameScript(found, &want) {
		t.Fatalf("FindScript after put = %+v, %v; want %+v", found, err, want)
	}

	// PUT to an unknown, valid id creates the script with that id.
	clock.Advance(time.Minute)
	t2 := clock.Now()
	put, isNew, err := st.PutScript(ctx, org.ID, ratelab.ScriptUpdate{ID: "my-script_1.0", Name: "chosen", Text: ""})
	if err != nil || !isNew {
		t.Fatalf("PutScript(new id) = %+v, created=%v, %v; want created", put, isNew, err)
	}
	want2 := ratelab.Script{ID: "my-script_1.0", Name: "chosen", Version: 1, DateCreated: t2, DateModified: t2}
	if !sameScript(put, &want2) {
		t.Fatalf("PutScript(new id) = %+v, want %+v", put, want2)
	}

	versions, total, err := st.ScriptVersions(ctx, org.ID, created.ID, ratelab.Page{})
	if err != nil || total != 2 || len(versions) != 2 {
		t.Fatalf("ScriptVersions = %d of %d, %v; want 2 of 2", len(versions), total, err)
	}
	wantVersions := []ratelab.ScriptVersion{
		{Version: 2, Name: "greeting v2", Text: "say hi", Date: t1, ClientID: "client-2"},
		{Version: 1, Name: "greeting", Text: "say hello", Date: t0, ClientID: "client-1"},
	}
	for i, v := range versions {
		w := wantVersions[i]
		if v.Version != w.Version || v.Name != w.Name || v.Text != w.Text || !v.Date.Equal(w.Date) || v.ClientID != w.ClientID {
			t.Fatalf("version %d = %+v, want %+v", i, v, w)
		}
	}

	list, total, err := st.FindScripts(ctx, org.ID, ratelab.Page{})
	if err != nil || total != 2 || len(list) != 2 || list[0].ID != created.ID || list[1].ID != "my-script_1.0" {
		t.Fatalf("FindScripts = %v (total %d), %v; want the two scripts in creation order", ids(list), total, err)
	}

	if err := st.DeleteScript(ctx, org.ID, created.ID); err != nil {
		t.Fatalf("DeleteScript: %v", err)
	}
	_, err = st.FindScript(ctx, org.ID, created.ID)
	wantCode(t, err, ratelab.ENOTFOUND, "FindScript after delete")
	_, _, err = st.ScriptVersions(ctx, org.ID, created.ID, ratelab.Page{})
	wantCode(t, err, ratelab.ENOTFOUND, "ScriptVersions after delete")
	err = st.DeleteScript(ctx, org.ID, created.ID)
	wantCode(t, err, ratelab.ENOTFOUND, "DeleteScript twice")
	_, err = st.FindScript(ctx, org.ID, "never-existed")
	wantCode(t, err, ratelab.ENOTFOUND, "FindScript(unknown)")

	// A deleted id can be created again and starts over at version 1,
	// with none of the old versions.
	again, isNew, err := st.PutScript(ctx, org.ID, ratelab.ScriptUpdate{ID: created.ID, Name: "reborn"})
	if err != nil || !isNew || again.Version != 1 {
		t.Fatalf("PutScript(deleted id) = %+v, created=%v, %v; want a new script at version 1", again, isNew, err)
	}
	if _, total, err := st.ScriptVersions(ctx, org.ID, created.ID, ratelab.Page{}); err != nil || total != 1 {
		t.Fatalf("ScriptVersions(recreated) total = %d, %v; want 1", total, err)
	}
	if list, total, err := st.FindScripts(ctx, org.ID, ratelab.Page{}); err != nil || total != 2 {
		t.Fatalf("FindScripts after recreate = %v (total %d), %v; want 2", ids(list), total, err)
	}
}

func (s *suite) testScriptValidation(t *testing.T) {
	ctx := context.Background()
	st := s.open(t, NewClock(t0))
	org := newOrg(t, st, "validation")

	_, err := st.CreateScript(ctx, org.ID, "", "text", "")
	wantCode(t, err, ratelab.EUNPROCESSABLE, "CreateScript(empty name)")
	_, err = st.CreateScript(ctx, org.ID, "n", strings.Repeat("x", ratelab.MaxScriptTextLen+1), "")
	wantCode(t, err, ratelab.EUNPROCESSABLE, "CreateScript(oversized text)")
	big, err := st.CreateScript(ctx, org.ID, strings.Repeat("n", ratelab.MaxScriptNameLen), strings.Repeat("x", ratelab.MaxScriptTextLen), "")
	if err != nil {
		t.Fatalf("CreateScript(largest allowed): %v", err)
	}
	if got, err := st.FindScript(ctx, org.ID, big.ID); err != nil || len(got.Text) != ratelab.MaxScriptTextLen {
		t.Fatalf("FindScript(largest allowed) = %d bytes of text, %v", len(got.Text), err)
	}
	// Text is stored exactly, including non-ASCII and NUL-free control
	// characters.
	odd := "línea 1\n\tñ ☃ \"quoted\" 'single' \\ back; DROP TABLE scripts; --"
	put, _, err := st.PutScript(ctx, org.ID, ratelab.ScriptUpdate{ID: "odd", Name: "名前", Text: odd})
	if err != nil {
		t.Fatalf("PutScript(odd text): %v", err)
	}
	if got, err := st.FindScript(ctx, org.ID, "odd"); err != nil || got.Text != odd || got.Name != "名前" {
		t.Fatalf("FindScript(odd) = %+v, %v; want the text stored exactly", got, err)
	}
	_ = put

	badIDs := []string{"", strings.Repeat("a", 101), "has space", "slash/", "semi;colon", "ünïcode", "a\x00b", "\x00", "\xff", "a\xffb", ".", ".."}
	for _, id := range badIDs {
		_, _, err := st.PutScript(ctx, org.ID, ratelab.ScriptUpdate{ID: id, Name: "n", Text: "t"})
		wantCode(t, err, ratelab.EUNPROCESSABLE, fmt.Sprintf("PutScript(id %q)", id))
		res, err := st.UpdateScripts(ctx, org.ID, []ratelab.ScriptUpdate{{ID: id, Name: "n"}})
		if err != nil {
			t.Fatalf("UpdateScripts(id %q): %v", id, err)
		}
		wantCode(t, res[0].Err, ratelab.EUNPROCESSABLE, fmt.Sprintf("bulk item with id %q", id))
		// An id that fails the rule names no script: lookups are
		// ENOTFOUND on every store, without reaching the database (where
		// PostgreSQL would fail on NUL or invalid UTF-8).
		_, err = st.FindScript(ctx, org.ID, id)
		wantCode(t, err, ratelab.ENOTFOUND, fmt.Sprintf("FindScript(id %q)", id))
		_, _, err = st.ScriptVersions(ctx, org.ID, id, ratelab.Page{})
		wantCode(t, err, ratelab.ENOTFOUND, fmt.Sprintf("ScriptVersions(id %q)", id))
		err = st.DeleteScript(ctx, org.ID, id)
		wantCode(t, err, ratelab.ENOTFOUND, fmt.Sprintf("DeleteScript(id %q)", id))
	}
	// NUL bytes and invalid UTF-8 in a name or text are refused alike by
	// every store (PostgreSQL cannot store them, SQLite could).
	for _, f := range []struct{ name, text string }{
		{"a\x00b", "t"}, {"n", "a\x00b"}, {"n", "\x00"}, {"n\xff", "t"}, {"n", "a\xc3(b"},
	} {
		_, _, err := st.PutScript(ctx, org.ID, ratelab.ScriptUpdate{ID: "odd", Name: f.name, Text: f.text})
		wantCode(t, err, ratelab.EUNPROCESSABLE, fmt.Sprintf("PutScript(name %q, text %q)", f.name, f.text))
		_, err = st.CreateScript(ctx, org.ID, f.name, f.text, "")
		wantCode(t, err, ratelab.EUNPROCESSABLE, fmt.Sprintf("CreateScript(name %q, text %q)", f.name, f.text))
		res, err := st.UpdateScripts(ctx, org.ID, []ratelab.ScriptUpdate{{ID: "odd", Name: f.name, Text: f.text}, {ID: "fine", Name: "n"}})
		if err != nil {
			t.Fatalf("UpdateScripts(name %q, text %q): %v", f.name, f.text, err)
		}
		wantCode(t, res[0].Err, ratelab.EUNPROCESSABLE, fmt.Sprintf("bulk item with name %q, text %q", f.name, f.text))
		wantCode(t, res[1].Err, "", "the valid item beside it")
	}
	_, err = st.EnsureOrg(ctx, "a\x00b")
	wantCode(t, err, ratelab.EINVALID, "EnsureOrg(name with NUL)")
	for _, id := range badIDs {
		_, err := st.Authenticate(ctx, id, "secret")
		wantCode(t, err, ratelab.EUNAUTHORIZED, fmt.Sprintf("Authenticate(id %q)", id))
	}
	if _, _, err := st.PutScript(ctx, org.ID, ratelab.ScriptUpdate{ID: strings.Repeat("a", 100), Name: "n"}); err != nil {
		t.Fatalf("PutScript(100-char id): %v", err)
	}
	_, _, err = st.PutScript(ctx, org.ID, ratelab.ScriptUpdate{ID: "odd", Name: ""})
	wantCode(t, err, ratelab.EUNPROCESSABLE, "PutScript(empty name)")
	if got, err := st.FindScript(ctx, org.ID, "odd"); err != nil || got.Version != 1 {
		t.Fatalf("a rejected update changed the script: %+v, %v", got, err)
	}
}

func (s *suite) testCompareAndSwap(t *testing.T) {
	ctx := context.Background()
	st := s.open(t, NewClock(t0))
	org := newOrg(t, st, "cas")
	sc, err := st.CreateScript(ctx, org.ID, "n", "v1", "")
	if err != nil {
		t.Fatalf("CreateScript: %v", err)
	}
	up, created, err := st.PutScript(ctx, org.ID, ratelab.ScriptUpdate{ID: sc.ID, Name: "n", Text: "v2", IfVersion: 1})
	if err != nil || created || up.Version != 2 {
		t.Fatalf("PutScript(IfVersion 1) = %+v, %v, %v; want version 2", up, created, err)
	}
	for _, stale := range []int64{1, 3, 99} {
		_, _, err = st.PutScript(ctx, org.ID, ratelab.ScriptUpdate{ID: sc.ID, Name: "n", Text: "lost", IfVersion: stale})
		wantCode(t, err, ratelab.ECONFLICT, fmt.Sprintf("PutScript(IfVersion %d at version 2)", stale))
		if msg := ratelab.ErrorMessage(err); !strings.Contains(msg, "2") {
			t.Fatalf("conflict message %q does not name the current version 2", msg)
		}
	}
	_, _, err = st.PutScript(ctx, org.ID, ratelab.ScriptUpdate{ID: sc.ID, Name: "n", IfVersion: -1})
	wantCode(t, err, ratelab.EINVALID, "PutScript(IfVersion -1)")
	got, err := st.FindScript(ctx, org.ID, sc.ID)
	if err != nil || got.Version != 2 || got.Text != "v2" {
		t.Fatalf("after failed CAS: %+v, %v; want version 2 with text v2", got, err)
	}
	if _, total, err := st.ScriptVersions(ctx, org.ID, sc.ID, ratelab.Page{}); err != nil || total != 2 {
		t.Fatalf("failed CAS added a version: total %d, %v", total, err)
	}
	// A CAS on a script that does not exist never creates it.
	_, _, err = st.PutScript(ctx, org.ID, ratelab.ScriptUpdate{ID: "missing", Name: "n", IfVersion: 1})
	wantCode(t, err, ratelab.ECONFLICT, "PutScript(IfVersion on a missing script)")
	_, err = st.FindScript(ctx, org.ID, "missing")
	wantCode(t, err, ratelab.ENOTFOUND, "FindScript after CAS on missing")
}

func (s *suite) testOrgIsolation(t *testing.T) {
	ctx := context.Background()
	st := s.open(t, NewClock(t0))
	a := newOrg(t, st, "org-a")
	b := newOrg(t, st, "org-b")

	sa, err := st.CreateScript(ctx, a.ID, "a's", "secret text", "")
	if err != nil {
		t.Fatalf("CreateScript: %v", err)
	}
	if _, _, err := st.PutScript(ctx, a.ID, ratelab.ScriptUpdate{ID: "shared-id", Name: "a's named"}); err != nil {
		t.Fatalf("PutScript(a): %v", err)
	}
	_, err = st.FindScript(ctx, b.ID, sa.ID)
	wantCode(t, err, ratelab.ENOTFOUND, "FindScript(other org's script)")
	_, _, err = st.ScriptVersions(ctx, b.ID, sa.ID, ratelab.Page{})
	wantCode(t, err, ratelab.ENOTFOUND, "ScriptVersions(other org's script)")
	err = st.DeleteScript(ctx, b.ID, sa.ID)
	wantCode(t, err, ratelab.ENOTFOUND, "DeleteScript(other org's script)")
	_, _, err = st.PutScript(ctx, b.ID, ratelab.ScriptUpdate{ID: sa.ID, Name: "x", IfVersion: 1})
	wantCode(t, err, ratelab.ECONFLICT, "PutScript(IfVersion, other org's script)")
	if list, total, err := st.FindScripts(ctx, b.ID, ratelab.Page{}); err != nil || total != 0 || len(list) != 0 {
		t.Fatalf("FindScripts(b) = %v (total %d), %v; want none", ids(list), total, err)
	}

	// The same id in another org is another script.
	sb, created, err := st.PutScript(ctx, b.ID, ratelab.ScriptUpdate{ID: "shared-id", Name: "b's named", Text: "b"})
	if err != nil || !created || sb.Version != 1 {
		t.Fatalf("PutScript(b, shared id) = %+v, created=%v, %v; want a new script", sb, created, err)
	}
	res, err := st.UpdateScripts(ctx, b.ID, []ratelab.ScriptUpdate{{ID: sa.ID, Name: "b bulk", IfVersion: 1}})
	if err != nil {
		t.Fatalf("UpdateScripts(b): %v", err)
	}
	wantCode(t, res[0].Err, ratelab.ECONFLICT, "bulk CAS on other org's script")

	ga, err := st.FindScript(ctx, a.ID, "shared-id")
	if err != nil || ga.Name != "a's named" || ga.Version != 1 {
		t.Fatalf("a's script changed by b: %+v, %v", ga, err)
	}
	if err := st.DeleteScript(ctx, b.ID, "shared-id"); err != nil {
		t.Fatalf("DeleteScript(b): %v", err)
	}
	if _, err := st.FindScript(ctx, a.ID, "shared-id"); err != nil {
		t.Fatalf("b's delete removed a's script: %v", err)
	}
	if got, err := st.FindScript(ctx, a.ID, sa.ID); err != nil || got.Text != "secret text" {
		t.Fatalf("FindScript(a) = %+v, %v", got, err)
	}
}

func (s *suite) testPaging(t *testing.T) {
	ctx := context.Background()
	clock := NewClock(t0)
	st := s.open(t, clock)
	org := newOrg(t, st, "paging")
	var want []string
	for i := range 7 {
		sc, err := st.CreateScript(ctx, org.ID, fmt.Sprintf("script %d", i), "", "")
		if err != nil {
			t.Fatalf("CreateScript: %v", err)
		}
		want = append(want, sc.ID)
	}
	// A later update must not change the creation order.
	if _, _, err := st.PutScript(ctx, org.ID, ratelab.ScriptUpdate{ID: want[0], Name: "renamed"}); err != nil {
		t.Fatalf("PutScript: %v", err)
	}
	for _, tc := range []struct {
		page ratelab.Page
		want []string
	}{
		{ratelab.Page{Size: 3, Number: 1}, want[0:3]},
		{ratelab.Page{Size: 3, Number: 2}, want[3:6]},
		{ratelab.Page{Size: 3, Number: 3}, want[6:7]},
		{ratelab.Page{Size: 3, Number: 4}, nil},
		{ratelab.Page{Size: 3, Number: 0}, want[0:3]},
		{ratelab.Page{Size: 0, Number: 1}, want},
		{ratelab.Page{Size: -5, Number: -5}, want},
		{ratelab.Page{Size: 10_000, Number: 1}, want},
		{ratelab.Page{Size: ratelab.MaxPageSize, Number: 1 << 62}, nil},
	} {
		list, total, err := st.FindScripts(ctx, org.ID, tc.page)
		if err != nil || total != 7 || strings.Join(ids(list), ",") != strings.Join(tc.want, ",") {
			t.Fatalf("FindScripts(%+v) = %v (total %d), %v; want %v (total 7)", tc.page, ids(list), total, err, tc.want)
		}
		if list == nil {
			t.Fatalf("FindScripts(%+v) returned a nil slice; want an empty one", tc.page)
		}
	}

	// Versions: page through more than the largest page.
	const n = 560
	var batch []ratelab.ScriptUpdate
	for i := 2; i <= n; i++ {
		batch = append(batch, ratelab.ScriptUpdate{ID: want[1], Name: fmt.Sprintf("v%d", i)})
		if len(batch) == 50 || i == n {
			if _, err := st.UpdateScripts(ctx, org.ID, batch); err != nil {
				t.Fatalf("UpdateScripts: %v", err)
			}
			batch = batch[:0]
		}
	}
	all, total, err := st.ScriptVersions(ctx, org.ID, want[1], ratelab.Page{Size: 10_000})
	const end = ratelab.MaxPageSize - 1
	if err != nil || total != n || len(all) != ratelab.MaxPageSize {
		t.Fatalf("ScriptVersions(size 10000) = %d items of %d, %v; want %d (the cap) of %d", len(all), total, err, ratelab.MaxPageSize, n)
	}
	if all[0].Version != n || all[end].Version != n-end {
		t.Fatalf("ScriptVersions order: first %d last %d; want %d..%d newest first", all[0].Version, all[end].Version, n, n-end)
	}
	def, _, err := st.ScriptVersions(ctx, org.ID, want[1], ratelab.Page{})
	if err != nil || len(def) != 25 || def[0].Version != n {
		t.Fatalf("ScriptVersions(default page) = %d items, %v; want 25 from version %d", len(def), err, n)
	}
	last, total, err := st.ScriptVersions(ctx, org.ID, want[1], ratelab.Page{Size: 100, Number: 6})
	if err != nil || total != n || len(last) != 60 || last[59].Version != 1 || last[0].Version != 60 {
		t.Fatalf("ScriptVersions(page 6 of 100) = %d items, %v; want versions 60..1", len(last), err)
	}
}

func (s *suite) testBulk(t *testing.T) {
	ctx := context.Background()
	clock := NewClock(t0)
	st := s.open(t, clock)
	org := newOrg(t, st, "bulk")
	existing, err := st.CreateScript(ctx, org.ID, "existing", "v1", "")
	if err != nil {
		t.Fatalf("CreateScript: %v", err)
	}
	if res, err := st.UpdateScripts(ctx, org.ID, nil); err != nil || len(res) != 0 {
		t.Fatalf("UpdateScripts(empty) = %v, %v", res, err)
	}
	clock.Advance(time.Second)
	upds := []ratelab.ScriptUpdate{
		{ID: existing.ID, Name: "existing", Text: "v2", IfVersion: 1, ClientID: "bulk-client"}, // ok → 2
		{ID: "new-one", Name: "new", Text: "created in bulk"},                                  // created
		{ID: existing.ID, Name: "existing", Text: "stale", IfVersion: 1},                       // conflict
		{ID: "bad id", Name: "x"},                                 // unprocessable
		{ID: "nameless", Name: ""},                                // unprocessable
		{ID: existing.ID, Name: "existing", Text: "v3"},           // ok → 3
		{ID: "never", Name: "n", IfVersion: 4},                    // conflict (missing)
		{ID: "new-one", Name: "new", Text: "again", IfVersion: 1}, // ok → 2
	}
	res, err := st.UpdateScripts(ctx, org.ID, upds)
	if err != nil {
		t.Fatalf("UpdateScripts: %v", err)
	}
	if len(res) != len(upds) {
		t.Fatalf("UpdateScripts returned %d results for %d items", len(res), len(upds))
	}
	type outcome struct {
		code    string
		version int64
		created bool
	}
	want := []outcome{
		{"", 2, false}, {"", 1, true}, {ratelab.ECONFLICT, 0, false}, {ratelab.EUNPROCESSABLE, 0, false},
		{ratelab.EUNPROCESSABLE, 0, false}, {"", 3, false}, {ratelab.ECONFLICT, 0, false}, {"", 2, false},
	}
	for i, w := range want {
		r := res[i]
		wantCode(t, r.Err, w.code, fmt.Sprintf("item %d", i))
		if w.code != "" {
			if r.Script != nil {
				t.Fatalf("item %d failed but has a script %+v", i, r.Script)
			}
			continue
		}
		if r.Script == nil || r.Script.ID != upds[i].ID || r.Script.Version != w.version || r.Created != w.created ||
			r.Script.Text != upds[i].Text || !r.Script.DateModified.Equal(clock.Now()) {
			t.Fatalf("item %d = %+v (created %v), want %s at version %d (created %v)", i, r.Script, r.Created, upds[i].ID, w.version, w.created)
		}
	}
	got, err := st.FindScript(ctx, org.ID, existing.ID)
	if err != nil || got.Version != 3 || got.Text != "v3" {
		t.Fatalf("after bulk: %+v, %v; want version 3", got, err)
	}
	vs, total, err := st.ScriptVersions(ctx, org.ID, existing.ID, ratelab.Page{})
	if err != nil || total != 3 || vs[1].ClientID != "bulk-client" || vs[1].Text != "v2" {
		t.Fatalf("versions after bulk: %d, %v; want 3 with version 2 by bulk-client", total, err)
	}
	for _, id := range []string{"nameless", "never"} {
		_, err := st.FindScript(ctx, org.ID, id)
		wantCode(t, err, ratelab.ENOTFOUND, "a failed bulk item left script "+id)
	}
	if _, total, err := st.ScriptVersions(ctx, org.ID, "new-one", ratelab.Page{}); err != nil || total != 2 {
		t.Fatalf("new-one versions = %d, %v; want 2", total, err)
	}
}

func (s *suite) testConcurrentCAS(t *testing.T) {
	ctx := context.Background()
	st := s.open(t, NewClock(t0))
	org := newOrg(t, st, "concurrent-cas")
	sc, err := st.CreateScript(ctx, org.ID, "contended", "0", "")
	if err != nil {
		t.Fatalf("CreateScript: %v", err)
	}
	var ok, conflicts atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, s.cfg.Writers)
	for w := range s.cfg.Writers {
		wg.Go(func() {
			for i := range s.cfg.UpdatesPerWriter {
				cur, err := st.FindScript(ctx, org.ID, sc.ID)
				if err != nil {
					errs <- fmt.Errorf("writer %d: FindScript: %w", w, err)
					return
				}
				_, _, err = st.PutScript(ctx, org.ID, ratelab.ScriptUpdate{
					ID: sc.ID, Name: "contended", Text: fmt.Sprintf("w%d-%d", w, i), IfVersion: cur.Version,
				})
				switch ratelab.ErrorCode(err) {
				case "":
					ok.Add(1)
				case ratelab.ECONFLICT:
					conflicts.Add(1)
				default:
					errs <- fmt.Errorf("writer %d: PutScript: %w", w, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	attempts := int64(s.cfg.Writers * s.cfg.UpdatesPerWriter)
	if ok.Load()+conflicts.Load() != attempts {
		t.Fatalf("successes %d + conflicts %d != attempts %d", ok.Load(), conflicts.Load(), attempts)
	}
	if ok.Load() == 0 {
		t.Fatal("no conditional update succeeded")
	}
	got, err := st.FindScript(ctx, org.ID, sc.ID)
	if err != nil || got.Version != 1+ok.Load() {
		t.Fatalf("final version %d, %v; want 1 + %d successes", got.Version, err, ok.Load())
	}
	checkDenseVersions(t, st, org.ID, sc.ID, 1+ok.Load())
	t.Logf("%d conditional updates by %d writers: %d applied, %d conflicts", attempts, s.cfg.Writers, ok.Load(), conflicts.Load())
}

func (s *suite) testConcurrentUnconditional(t *testing.T) {
	ctx := context.Background()
	st := s.open(t, NewClock(t0))
	org := newOrg(t, st, "concurrent-put")
	sc, err := st.CreateScript(ctx, org.ID, "contended", "", "")
	if err != nil {
		t.Fatalf("CreateScript: %v", err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, s.cfg.Writers)
	texts := make(chan string, s.cfg.Writers*s.cfg.UpdatesPerWriter)
	for w := range s.cfg.Writers {
		wg.Go(func() {
			for i := range s.cfg.UpdatesPerWriter {
				text := fmt.Sprintf("w%d-%d", w, i)
				if _, _, err := st.PutScript(ctx, org.ID, ratelab.ScriptUpdate{ID: sc.ID, Name: "contended", Text: text}); err != nil {
					errs <- fmt.Errorf("writer %d: PutScript: %w", w, err)
					return
				}
				texts <- text
			}
		})
	}
	wg.Wait()
	close(errs)
	close(texts)
	for err := range errs {
		t.Fatal(err)
	}
	n := int64(1 + s.cfg.Writers*s.cfg.UpdatesPerWriter)
	vs := checkDenseVersions(t, st, org.ID, sc.ID, n)
	// Every acknowledged write is one of the stored versions.
	stored := map[string]bool{}
	for _, v := range vs {
		stored[v.Text] = true
	}
	for text := range texts {
		if !stored[text] {
			t.Fatalf("acknowledged write %q is not among the versions", text)
		}
	}
}

func (s *suite) testConcurrentCreate(t *testing.T) {
	ctx := context.Background()
	st := s.open(t, NewClock(t0))
	org := newOrg(t, st, "concurrent-create")
	var created atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, s.cfg.Writers)
	for w := range s.cfg.Writers {
		wg.Go(func() {
			_, isNew, err := st.PutScript(ctx, org.ID, ratelab.ScriptUpdate{ID: "same-new-id", Name: fmt.Sprintf("w%d", w)})
			if err != nil {
				errs <- fmt.Errorf("writer %d: PutScript: %w", w, err)
				return
			}
			if isNew {
				created.Add(1)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if created.Load() != 1 {
		t.Fatalf("%d writers reported creating the script; want exactly 1", created.Load())
	}
	checkDenseVersions(t, st, org.ID, "same-new-id", int64(s.cfg.Writers))
}

func (s *suite) testConcurrentEnsureOrg(t *testing.T) {
	st := s.open(t, NewClock(t0))
	ids := make([]string, s.cfg.Writers)
	var wg sync.WaitGroup
	errs := make(chan error, s.cfg.Writers)
	for w := range s.cfg.Writers {
		wg.Go(func() {
			org, err := st.EnsureOrg(context.Background(), "racing org")
			if err != nil {
				errs <- err
				return
			}
			ids[w] = org.ID
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("EnsureOrg: %v", err)
	}
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("concurrent EnsureOrg returned different orgs: %v", ids)
		}
	}
	users, err := st.FindUsers(context.Background(), ids[0])
	if err != nil || len(users) != 3 {
		t.Fatalf("FindUsers = %d, %v; want the 3 users created once", len(users), err)
	}
}

// testConcurrentOppositeBulks runs bulks of the same ten ids, half of the
// writers in one order and half in the reverse one, at once: every item
// must succeed (no deadlock reaches an item) and every script must end
// with one dense version per acknowledged write.
func (s *suite) testConcurrentOppositeBulks(t *testing.T) {
	ctx := context.Background()
	st := s.open(t, NewClock(t0))
	org := newOrg(t, st, "opposite-bulks")
	const nIDs = 10
	ids := make([]string, nIDs)
	for i := range ids {
		ids[i] = fmt.Sprintf("bulk-%02d", i)
	}
	writers := max(2, s.cfg.Writers/5)
	rounds := max(5, s.cfg.UpdatesPerWriter/2)
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for r := range rounds {
				upds := make([]ratelab.ScriptUpdate, nIDs)
				for i := range upds {
					id := ids[i]
					if w%2 == 1 {
						id = ids[nIDs-1-i]
					}
					upds[i] = ratelab.ScriptUpdate{ID: id, Name: "n", Text: fmt.Sprintf("w%d-r%d", w, r)}
				}
				res, err := st.UpdateScripts(ctx, org.ID, upds)
				if err != nil {
					errs <- fmt.Errorf("writer %d round %d: UpdateScripts: %w", w, r, err)
					return
				}
				for i, it := range res {
					if it.Err != nil || it.Script == nil || it.Script.ID != upds[i].ID {
						errs <- fmt.Errorf("writer %d round %d item %d (%s): %+v, %v", w, r, i, upds[i].ID, it.Script, it.Err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, id := range ids {
		checkDenseVersions(t, st, org.ID, id, int64(writers*rounds))
	}
}

func (s *suite) testRestart(t *testing.T) {
	ctx := context.Background()
	clock := NewClock(t0)
	name := storeName(t)
	st := s.cfg.Open(t, name, clock.Now)
	org := newOrg(t, st, "restart")
	c, secret, err := st.CreateClient(ctx, org.ID, "", "")
	if err != nil {
		t.Fatalf("CreateClient: %v", err)
	}
	tok, exp, err := st.IssueToken(ctx, c, time.Hour)
	if err != nil {
		t.Fatalf("IssueToken: %v", err)
	}
	sc, err := st.CreateScript(ctx, org.ID, "durable", "v1", c.ID)
	if err != nil {
		t.Fatalf("CreateScript: %v", err)
	}
	if _, err := st.UpdateScripts(ctx, org.ID, []ratelab.ScriptUpdate{{ID: sc.ID, Name: "durable", Text: "v2"}}); err != nil {
		t.Fatalf("UpdateScripts: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	st = s.open(t, clock) // the same name: the same data
	if again := newOrg(t, st, "restart"); again.ID != org.ID {
		t.Fatalf("org after reopen = %+v, want %+v", again, org)
	}
	if _, err := st.Authenticate(ctx, c.ID, secret); err != nil {
		t.Fatalf("Authenticate after reopen: %v", err)
	}
	got, err := st.ValidateToken(ctx, tok, exp.Add(-time.Second))
	if err != nil || got.ID != c.ID || got.OrgID != org.ID {
		t.Fatalf("ValidateToken after reopen = %+v, %v; want client %s", got, err, c.ID)
	}
	s2, err := st.FindScript(ctx, org.ID, sc.ID)
	if err != nil || s2.Version != 2 || s2.Text != "v2" {
		t.Fatalf("FindScript after reopen = %+v, %v; want version 2", s2, err)
	}
	if n, err := st.CountClients(ctx); err != nil || n != 1 {
		t.Fatalf("CountClients after reopen = %d, %v; want 1", n, err)
	}
	// Writes continue from the stored version.
	s3, _, err := st.PutScript(ctx, org.ID, ratelab.ScriptUpdate{ID: sc.ID, Name: "durable", Text: "v3", IfVersion: 2})
	if err != nil || s3.Version != 3 {
		t.Fatalf("PutScript after reopen = %+v, %v; want version 3", s3, err)
	}
}

// checkDenseVersions reads all of a script's versions and checks that they
// are exactly n..1, newest first, with no gap or duplicate, and that the
// script is at version n. It returns the versions.
func checkDenseVersions(t *testing.T, st Store, orgID, id string, n int64) []*ratelab.ScriptVersion {
	t.Helper()
	ctx := context.Background()
	var all []*ratelab.ScriptVersion
	for page := 1; ; page++ {
		vs, total, err := st.ScriptVersions(ctx, orgID, id, ratelab.Page{Size: ratelab.MaxPageSize, Number: page})
		if err != nil {
			t.Fatalf("ScriptVersions: %v", err)
		}
		if int64(total) != n {
			t.Fatalf("ScriptVersions total = %d, want %d", total, n)
		}
		all = append(all, vs...)
		if len(vs) < ratelab.MaxPageSize {
			break
		}
	}
	if int64(len(all)) != n {
		t.Fatalf("read %d versions, want %d", len(all), n)
	}
	for i, v := range all {
		if want := n - int64(i); v.Version != want {
			t.Fatalf("version at position %d is %d, want %d (versions must be dense)", i, v.Version, want)
		}
	}
	sc, err := st.FindScript(ctx, orgID, id)
	if err != nil || sc.Version != n {
		t.Fatalf("script version = %v, %v; want %d", sc, err, n)
	}
	return all
}

func sameScript(got, want *ratelab.Script) bool {
	return got != nil && got.ID == want.ID && got.Name == want.Name && got.Text == want.Text &&
		got.Version == want.Version && got.DateCreated.Equal(want.DateCreated) && got.DateModified.Equal(want.DateModified)
}

func ids(list []*ratelab.Script) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = s.ID
	}
	return out
}

// testRevocationAcrossReplicas opens the store twice, as two replicas
// sharing one database, lets both verify every token many times (so that
// a store caching verified tokens has cached them), and checks that a
// revocation, a client deletion and a secret rotation on either take
// effect on both as soon as the call returns, and that a token expires on
// both at its expiry instant, not before.
func (s *suite) testRevocationAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	clock := NewClock(t0)
	a := s.open(t, clock)
	b := s.open(t, clock)
	org := newOrg(t, a, "replicas")
	var clients []*ratelab.Client
	for _, id := range []string{"rep-revoke", "rep-delete", "rep-rotate", "rep-expire"} {
		c, _, err := a.CreateClient(ctx, org.ID, id, "secret-"+id)
		if err != nil {
			t.Fatalf("CreateClient(%s): %v", id, err)
		}
		clients = append(clients, c)
	}
	issue := func(c *ratelab.Client, ttl time.Duration) string {
		t.Helper()
		tok, _, err := b.IssueToken(ctx, c, ttl)
		if err != nil {
			t.Fatalf("IssueToken(%s): %v", c.ID, err)
		}
		return tok
	}
	revoked, kept := issue(clients[0], time.Hour), issue(clients[0], time.Hour)
	deleted, rotated := issue(clients[1], time.Hour), issue(clients[2], time.Hour)
	expiring := issue(clients[3], time.Hour)
	all := []string{revoked, kept, deleted, rotated, expiring}
	replicas := map[string]Store{"a": a, "b": b}
	valid := func(tok string, want bool, what string) {
		t.Helper()
		for name, st := range replicas {
			c, err := st.ValidateToken(ctx, tok, clock.Now())
			switch {
			case want && err != nil:
				t.Fatalf("%s: replica %s: ValidateToken: %v; want valid", what, name, err)
			case want && c.OrgID != org.ID:
				t.Fatalf("%s: replica %s: ValidateToken = %+v; want a client of org %s", what, name, c, org.ID)
			case !want:
				wantCode(t, err, ratelab.EUNAUTHORIZED, what+": replica "+name)
			}
		}
	}
	// Warm up: many verifications over half a second, long enough for a
	// store to start whatever keeps its cache current.
	for start := time.Now(); time.Since(start) < 500*time.Millisecond; {
		for _, tok := range all {
			valid(tok, true, "before any revocation")
		}
	}

	if err := a.RevokeToken(ctx, clients[0].ID, revoked); err != nil {
		t.Fatalf("RevokeToken on a: %v", err)
	}
	valid(revoked, false, "a token revoked on a")
	valid(kept, true, "the client's other token")
	if err := b.DeleteClient(ctx, clients[1].ID); err != nil {
		t.Fatalf("DeleteClient on b: %v", err)
	}
	valid(deleted, false, "a token of a client deleted on b")
	if _, err := a.RotateSecret(ctx, clients[2].ID, ""); err != nil {
		t.Fatalf("RotateSecret on a: %v", err)
	}
	valid(rotated, false, "a token of a client rotated on a")
	valid(expiring, true, "a token unrelated to the revocations")

	clock.Advance(time.Hour - time.Microsecond)
	valid(expiring, true, "a token 1 µs before its expiry")
	clock.Advance(time.Microsecond)
	valid(expiring, false, "a token at its expiry")
	valid(kept, false, "another token at its expiry")
}
