package ratelab

import (
	"strings"
	"unicode/utf8"
)

// The rules every storage implementation applies the same way, so that
// SQLite and PostgreSQL answer alike; the conformance suite in
// internal/storetest checks them on both.

// Paging defaults and bounds for listings, the same in the API (which
// rejects a pageSize above MaxPageSize) and in storage (which clamps to
// it). The maximum is 100 because a script's text may be 256 KiB: a page
// of 100 is at most about 25 MiB of JSON, one of 500 would be 128 MiB.
const (
	DefaultPageSize = 25
	MaxPageSize     = 100
)

// LimitOffset applies the paging defaults (size DefaultPageSize, at most
// MaxPageSize; page 1)
// and returns the LIMIT and OFFSET of the page. ok is false when the page
// lies beyond any possible row.
func (p Page) LimitOffset() (limit, offset int64, ok bool) {
	limit = int64(p.Size)
	if limit <= 0 {
		limit = DefaultPageSize
	}
	limit = min(limit, MaxPageSize)
	n := int64(p.Number)
	if n <= 0 {
		n = 1
	}
	if n-1 > (1<<62)/limit {
		return limit, 0, false
	}
	return limit, (n - 1) * limit, true
}

// ValidID reports whether id is an acceptable script or client id: 1 to
// 100 characters of [A-Za-z0-9._-], other than "." and "..", so that it is
// safe in a URL path (where "." and ".." would name another path) and in
// HTTP Basic. It is the one id rule: the stores apply it before any query
// (ValidateID), and the HTTP layer uses it to answer before the store.
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > 100 || id == "." || id == ".." {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// ValidateID checks an id chosen by the caller for something to be
// created (what: "script id", "client id"), returning an EUNPROCESSABLE
// error that states the rule. A lookup by an id that fails ValidID is
// not an error of its own: such a thing cannot exist, so the stores
// answer ENOTFOUND (EUNAUTHORIZED for credentials) without a query.
func ValidateID(what, id string) error {
	if !ValidID(id) {
		return Errorf(EUNPROCESSABLE, "%s must be 1 to 100 characters of A-Z, a-z, 0-9, '.', '_' or '-', and not '.' or '..'", what)
	}
	return nil
}

// ValidateUpdate checks a script update: its id, its version and its
// fields (ValidateScript).
func ValidateUpdate(upd ScriptUpdate) error {
	if err := ValidateID("script id", upd.ID); err != nil {
		return err
	}
	if upd.IfVersion < 0 {
		return Errorf(EINVALID, "version must be positive")
	}
	return ValidateScript(upd.Name, upd.Text)
}

// ValidateClientID checks a client id chosen by the caller.
func ValidateClientID(id string) error { return ValidateID("client id", id) }

// ValidateOrgName checks an org's name.
func ValidateOrgName(name string) error {
	if strings.TrimSpace(name) == "" || len(name) > 100 {
		return Errorf(EINVALID, "org name must be 1 to 100 bytes and not blank")
	}
	if err := storableText("org name", name); err != nil {
		return Errorf(EINVALID, "%s", ErrorMessage(err))
	}
	return nil
}

// storableText rejects what one of the stores cannot keep exactly: NUL
// bytes (PostgreSQL text refuses them) and invalid UTF-8 (PostgreSQL
// refuses it too; SQLite would store it as sent).
func storableText(what, s string) error {
	switch {
	case strings.IndexByte(s, 0) >= 0:
		return Errorf(EUNPROCESSABLE, "%s must not contain NUL bytes", what)
	case !utf8.ValidString(s):
		return Errorf(EUNPROCESSABLE, "%s must be valid UTF-8", what)
	}
	return nil
}

// ScriptNotFound is the error for a script that does not exist in the
// caller's org (another org's script does not exist either).
func ScriptNotFound(id string) error { return Errorf(ENOTFOUND, "script %q not found", id) }

// ClientNotFound is the error for a client id that does not exist.
func ClientNotFound(id string) error { return Errorf(ENOTFOUND, "client %q not found", id) }

// BadCredentials is the error for any wrong client id or secret; it says
// nothing about which was wrong.
func BadCredentials() error { return Errorf(EUNAUTHORIZED, "invalid client credentials") }

// NewOrgUsers returns the users a new org starts with (without ids): three
// people with email addresses at a domain derived from the org's name
// under the reserved .example top-level domain.
func NewOrgUsers(orgName string) []User {
	domain := orgDomain(orgName)
	return []User{
		{Name: "Ada Lovelace", Email: "ada.lovelace@" + domain},
		{Name: "Grace Hopper", Email: "grace.hopper@" + domain},
		{Name: "Alan Turing", Email: "alan.turing@" + domain},
	}
}

// orgDomain derives an email domain from an org name: its letters and
// digits, lowercased, with other runs of characters turned into '-'.
func orgDomain(name string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(name) {
		if 'a' <= r && r <= 'z' || '0' <= r && r <= '9' {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	d := strings.TrimSuffix(b.String(), "-")
	if d == "" {
		d = "org"
	}
	return d + ".example"
}
