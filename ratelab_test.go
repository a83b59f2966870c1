package ratelab_test

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"testing"

	"ratelab"
)

func TestSecretHashing(t *testing.T) {
	h, err := ratelab.HashSecret("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(h, "s3cret") || !strings.HasPrefix(h, "pbkdf2-sha256$") {
		t.Fatalf("hash %q", h)
	}
	if !ratelab.VerifySecret(h, "s3cret") {
		t.Fatal("right secret rejected")
	}
	for _, bad := range []string{"", "s3cret ", "S3cret"} {
		if ratelab.VerifySecret(h, bad) {
			t.Fatalf("wrong secret %q accepted", bad)
		}
	}
	h2, _ := ratelab.HashSecret("s3cret")
	if h2 == h {
		t.Fatal("two hashes of one secret are equal: no salt")
	}
	for _, malformed := range []string{"", "plain", "pbkdf2-sha256$x$y$z", "pbkdf2-sha256$99999999999$AA$AA", "md5$1$AA$AA"} {
		if ratelab.VerifySecret(malformed, "s3cret") {
			t.Fatalf("malformed hash %q matched", malformed)
		}
	}
}

func TestTokensAndIDs(t *testing.T) {
	a, b := ratelab.NewSecret(), ratelab.NewSecret()
	if a == b || len(a) != 43 {
		t.Fatalf("secrets %q %q", a, b)
	}
	if ratelab.HashToken(a) == ratelab.HashToken(b) || len(ratelab.HashToken(a)) != 64 {
		t.Fatal("token hashes collide or have the wrong length")
	}
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	if id := ratelab.NewID(); !uuid.MatchString(id) {
		t.Fatalf("NewID() = %q, not a v4 UUID", id)
	}
}

func TestErrors(t *testing.T) {
	err := fmt.Errorf("put script: %w", ratelab.Errorf(ratelab.ECONFLICT, "script is at version %d", 7))
	if ratelab.ErrorCode(err) != ratelab.ECONFLICT || ratelab.ErrorMessage(err) != "script is at version 7" {
		t.Fatalf("code %q message %q", ratelab.ErrorCode(err), ratelab.ErrorMessage(err))
	}
	internal := errors.New("disk on fire at /var/lib/x")
	if ratelab.ErrorCode(internal) != ratelab.EINTERNAL || strings.Contains(ratelab.ErrorMessage(internal), "disk") {
		t.Fatal("internal error detail leaks")
	}
	if ratelab.ErrorCode(nil) != "" {
		t.Fatal("nil error has a code")
	}
}

func TestValidateScript(t *testing.T) {
	if err := ratelab.ValidateScript("ok", "text"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, text string }{
		{"", "x"},
		{strings.Repeat("n", ratelab.MaxScriptNameLen+1), ""},
		{"n", strings.Repeat("t", ratelab.MaxScriptTextLen+1)},
		{"a\x00b", "x"}, {"n", "a\x00b"}, {"\x00", ""}, // PostgreSQL cannot store NUL
		{"n\xff", "x"}, {"n", "a\xc3"}, // nor invalid UTF-8
	} {
		if ratelab.ErrorCode(ratelab.ValidateScript(c.name, c.text)) != ratelab.EUNPROCESSABLE {
			t.Errorf("name %d bytes, text %d bytes: not unprocessable", len(c.name), len(c.text))
		}
	}
}

func TestNewOrgUsers(t *testing.T) {
	for in, want := range map[string]string{
		"Acme Corp":   "ada.lovelace@acme-corp.example",
		"default":     "ada.lovelace@default.example",
		"  ÜBER--co ": "ada.lovelace@ber-co.example",
		"!!!":         "ada.lovelace@org.example",
	} {
		users := ratelab.NewOrgUsers(in)
		if len(users) != 3 || users[0].Email != want || users[0].Name != "Ada Lovelace" {
			t.Errorf("NewOrgUsers(%q) = %+v, want 3 users, the first %s", in, users, want)
		}
	}
}

func TestPageLimitOffset(t *testing.T) {
	for _, c := range []struct {
		page          ratelab.Page
		limit, offset int64
		ok            bool
	}{
		{ratelab.Page{}, 25, 0, true},
		{ratelab.Page{Size: 10, Number: 3}, 10, 20, true},
		{ratelab.Page{Size: 10_000, Number: 2}, ratelab.MaxPageSize, ratelab.MaxPageSize, true},
		{ratelab.Page{Size: 1, Number: math.MaxInt}, 1, 0, false},
	} {
		l, o, ok := c.page.LimitOffset()
		if l != c.limit || o != c.offset || ok != c.ok {
			t.Errorf("%+v: %d %d %v, want %d %d %v", c.page, l, o, ok, c.limit, c.offset, c.ok)
		}
	}
}

func TestValidID(t *testing.T) {
	for id, want := range map[string]bool{
		"s1": true, "00000000-0000-0000-0000-000000000001": true, "a.b_c-d": true,
		"": false, "a/b": false, "a b": false, "a:b": false, strings.Repeat("x", 101): false,
		".": false, "..": false, "...": true, ".a": true, "a..b": true, // "." and ".." are path segments
		"a\x00b": false, "\x00": false, "\xff": false, "a\xc3": false, "é": false,
	} {
		if got := ratelab.ValidID(id); got != want {
			t.Errorf("ValidID(%q) = %v", id, got)
		}
	}
}

func TestValidateID(t *testing.T) {
	for _, id := range []string{"", ".", "..", "a\x00b", "\xff", "a b"} {
		err := ratelab.ValidateID("script id", id)
		if ratelab.ErrorCode(err) != ratelab.EUNPROCESSABLE || !strings.Contains(ratelab.ErrorMessage(err), "script id must be") {
			t.Errorf("ValidateID(%q) = %v, want an unprocessable error stating the rule", id, err)
		}
	}
	if err := ratelab.ValidateUpdate(ratelab.ScriptUpdate{ID: "..", Name: "n"}); ratelab.ErrorCode(err) != ratelab.EUNPROCESSABLE {
		t.Errorf("ValidateUpdate(id ..) = %v, want unprocessable", err)
	}
	if err := ratelab.ValidateOrgName("a\x00b"); ratelab.ErrorCode(err) != ratelab.EINVALID {
		t.Errorf("ValidateOrgName(NUL) = %v, want invalid", err)
	}
}

func TestUnavailable(t *testing.T) {
	cause := errors.New("dial tcp 127.0.0.1:5432: connect: connection refused")
	err := fmt.Errorf("postgres: find script: %w", ratelab.Unavailable(cause))
	if ratelab.ErrorCode(err) != ratelab.EUNAVAILABLE || !errors.Is(err, cause) {
		t.Fatalf("ErrorCode = %q, errors.Is(cause) = %v; want unavailable with the cause in the chain", ratelab.ErrorCode(err), errors.Is(err, cause))
	}
	if msg := ratelab.ErrorMessage(err); strings.Contains(msg, "127.0.0.1") || msg == "" {
		t.Fatalf("ErrorMessage = %q: must be set and must not show the cause", msg)
	}
	if !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Error() = %q: the log must see the cause", err)
	}
}
