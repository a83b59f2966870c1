package ratelab

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// secretIterations is the PBKDF2 work factor for client secrets. Secrets
// that ratelab generates carry 256 bits of entropy, but a bootstrap secret
// is chosen by a person, so it gets a slow hash; the token endpoint is rate
// limited as well.
const secretIterations = 20_000

// HashSecret returns a salted PBKDF2-SHA256 hash of a client secret in the
// form "pbkdf2-sha256$ITERATIONS$SALT$HASH".
func HashSecret(secret string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("salt: %w", err)
	}
	key, err := pbkdf2.Key(sha256.New, secret, salt, secretIterations, 32)
	if err != nil {
		return "", fmt.Errorf("hash secret: %w", err)
	}
	enc := base64.RawStdEncoding
	return "pbkdf2-sha256$" + strconv.Itoa(secretIterations) + "$" + enc.EncodeToString(salt) + "$" + enc.EncodeToString(key), nil
}

// VerifySecret reports whether secret matches a hash from HashSecret. The
// comparison is constant-time; a malformed hash never matches.
func VerifySecret(hash, secret string) bool {
	parts := strings.Split(hash, "$")
	if len(parts) != 4 || parts[0] != "pbkdf2-sha256" {
		return false
	}
	iter, err := strconv.Atoi(parts[1])
	if err != nil || iter < 1 || iter > 10_000_000 {
		return false
	}
	enc := base64.RawStdEncoding
	salt, err1 := enc.DecodeString(parts[2])
	want, err2 := enc.DecodeString(parts[3])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false
	}
	got, err := pbkdf2.Key(sha256.New, secret, salt, iter, len(want))
	return err == nil && subtle.ConstantTimeCompare(got, want) == 1
}

// HashToken returns the SHA-256 of an access token, hex-encoded: the form
// in which tokens are stored and looked up. Tokens are 256-bit random
// values, so a fast hash is enough.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// NewSecret returns a random 256-bit secret or token, base64url-encoded.
func NewSecret() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// NewID returns a random UUID (version 4) in canonical text form.
func NewID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// NewCredentials are the id, plain secret and secret hash of a client
// about to be created.
type NewCredentials struct {
	ID     string
	Secret string // shown to the caller once
	Hash   string // what is stored (HashSecret)
}

// PrepareClient checks or generates the credentials of a new client, the
// same way for every store: an empty id becomes a UUID (NewID), any other
// must pass ValidateClientID; an empty secret becomes a random 256-bit one
// (NewSecret). The secret is hashed with HashSecret.
func PrepareClient(id, secret string) (NewCredentials, error) {
	if id == "" {
		id = NewID()
	} else if err := ValidateClientID(id); err != nil {
		return NewCredentials{}, err
	}
	if secret == "" {
		secret = NewSecret()
	}
	hash, err := HashSecret(secret)
	if err != nil {
		return NewCredentials{}, err
	}
	return NewCredentials{ID: id, Secret: secret, Hash: hash}, nil
}
