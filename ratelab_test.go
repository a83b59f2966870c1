package ratelab_test

import (
	"errors"
	"fmt"
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
	} {
		if ratelab.ErrorCode(ratelab.ValidateScript(c.name, c.text)) != ratelab.EUNPROCESSABLE {
			t.Errorf("name %d bytes, text %d bytes: not unprocessable", len(c.name), len(c.text))
		}
	}
}
