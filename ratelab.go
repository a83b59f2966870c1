// Package ratelab holds the domain of the ratelab scripts API: orgs, OAuth
// clients, users, scripts and their versions, the service interfaces that
// storage packages implement (sqlite, postgres) and the HTTP layer uses
// (httpapi), and the one application error type.
//
// The package imports only the standard library. The rate-limit engine is
// its own package, ratelab/limit.
package ratelab

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Version is the version of the ratelab binary, set at build time with
// -ldflags "-X ratelab.Version=…".
var Version = "dev"

// Application error codes. Each maps to one HTTP status in httpapi; the
// codes are what clients see in the "code" field of an error body.
const (
	EINVALID       = "invalid"             // 400: malformed request
	EUNPROCESSABLE = "unprocessable"       // 422: well-formed but unacceptable values
	EUNAUTHORIZED  = "unauthorized"        // 401: missing, invalid or expired credentials
	ENOTFOUND      = "not_found"           // 404
	ECONFLICT      = "conflict"            // 409: version mismatch from the body
	EPRECONDITION  = "precondition_failed" // 412: If-Match mismatch
	ETOOLARGE      = "payload_too_large"   // 413
	EMEDIATYPE     = "unsupported_media_type"
	ERATELIMITED   = "too_many_requests" // 429
	EUNAVAILABLE   = "unavailable"       // 503: a dependency is unreachable; retry later
	EINTERNAL      = "internal"          // 500: never carries internal detail
)

// Error is ratelab's application error: a code from the list above and a
// message safe to show to the API's user. Any other error reaching the
// HTTP layer is internal: logged, and shown to the user only as "internal".
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("ratelab error: code=%s message=%s", e.Code, e.Message)
}

// Errorf returns an *Error with the code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL
// for any other non-nil error, and "" for nil.
func ErrorCode(err error) string {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the message of the first *Error in err's chain, or
// "Internal error." for any other error, so internal detail never leaks.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "Internal error."
}

// Unavailable returns an EUNAVAILABLE error for a failure to reach the
// database (refused or dropped connection, timeout, a lock held too
// long): the request may succeed if retried later. The user sees only a
// fixed message; cause stays in the chain (errors.Is, errors.As, Error)
// for the operator's log.
func Unavailable(cause error) error {
	return &unavailable{cause: cause, err: &Error{Code: EUNAVAILABLE, Message: "The database is unavailable; retry later."}}
}

type unavailable struct {
	cause error
	err   *Error
}

func (u *unavailable) Error() string   { return "unavailable: " + u.cause.Error() }
func (u *unavailable) Unwrap() []error { return []error{u.err, u.cause} }

// Org is a tenant: limits and data are per org.
type Org struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"dateCreated"`
}

// Client is an OAuth client of an org (client-credentials grant).
type Client struct {
	ID        string    `json:"client_id"`
	OrgID     string    `json:"org_id"`
	CreatedAt time.Time `json:"dateCreated"`
}

// User is a user of an org, listed by GET /api/v2/users.
type User struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Email string `json:"email"`
}

// Script is a script of an org. Version starts at 1 and grows by one with
// every accepted write.
type Script struct {
	ID           string    `json:"id"`
	Name         string    `json:"name"`
	Text         string    `json:"text"`
	Version      int64     `json:"version"`
	DateCreated  time.Time `json:"dateCreated"`
	DateModified time.Time `json:"dateModified"`
}

// ScriptVersion is one stored version of a script.
type ScriptVersion struct {
	Version  int64     `json:"version"`
	Name     string    `json:"name"`
	Text     string    `json:"text"`
	Date     time.Time `json:"dateModified"`
	ClientID string    `json:"clientId,omitempty"`
}

// Limits on script fields, checked by ValidateScript.
const (
	MaxScriptNameLen = 200
	MaxScriptTextLen = 256 << 10
)

// ScriptUpdate replaces a script's name and text.
type ScriptUpdate struct {
	ID   string
	Name string
	Text string
	// IfVersion, when positive, makes the update a compare-and-swap: it is
	// applied only if the script's current version equals IfVersion, and
	// fails with ECONFLICT otherwise (also when the script does not exist).
	IfVersion int64
	// ClientID records who wrote the version.
	ClientID string
}

// ValidateScript checks a script's name and text, returning an
// EUNPROCESSABLE error that names the field. Both must be valid UTF-8
// without NUL bytes, which PostgreSQL cannot store in text and SQLite
// would, so that every store accepts the same scripts.
func ValidateScript(name, text string) error {
	switch {
	case name == "":
		return Errorf(EUNPROCESSABLE, "name must not be empty")
	case len(name) > MaxScriptNameLen:
		return Errorf(EUNPROCESSABLE, "name is %d bytes; at most %d allowed", len(name), MaxScriptNameLen)
	case len(text) > MaxScriptTextLen:
		return Errorf(EUNPROCESSABLE, "text is %d bytes; at most %d allowed", len(text), MaxScriptTextLen)
	}
	if err := storableText("name", name); err != nil {
		return err
	}
	return storableText("text", text)
}

// Page selects a page of a listing: Number counts from 1, and Size is
// the number of items on a page (see LimitOffset for the defaults).
type Page struct {
	Size   int
	Number int
}

// BulkResult is the outcome of one item of UpdateScripts: the script as
// stored, or the item's error (an *Error).
type BulkResult struct {
	Script  *Script
	Created bool
	Err     error
}

// ScriptService stores scripts. Every method is scoped to an org: a
// script of another org does not exist (ENOTFOUND). Implementations are
// safe for concurrent use, and a method that returns without error has
// made its write durable.
type ScriptService interface {
	FindScript(ctx context.Context, orgID, id string) (*Script, error)
	// FindScripts returns one page of the org's scripts, by creation order,
	// and the total count.
	FindScripts(ctx context.Context, orgID string, page Page) ([]*Script, int, error)
	// CreateScript creates a script with a new id, at version 1.
	CreateScript(ctx context.Context, orgID string, name, text, clientID string) (*Script, error)
	// PutScript replaces a script, creating it (version 1, created=true)
	// when the id is unknown and upd.IfVersion is 0.
	PutScript(ctx context.Context, orgID string, upd ScriptUpdate) (s *Script, created bool, err error)
	// UpdateScripts applies several updates in one transaction; each item
	// succeeds or fails on its own, and the results are in input order.
	UpdateScripts(ctx context.Context, orgID string, upds []ScriptUpdate) ([]BulkResult, error)
	DeleteScript(ctx context.Context, orgID, id string) error
	// ScriptVersions returns one page of a script's versions, newest first,
	// and the total count.
	ScriptVersions(ctx context.Context, orgID, id string, page Page) ([]*ScriptVersion, int, error)
}

// AuthService stores orgs, OAuth clients, tokens and users. Secrets and
// tokens are stored only as hashes (see HashSecret, HashToken).
type AuthService interface {
	// EnsureOrg returns the org with this name, creating it (with a few
	// users) when missing.
	EnsureOrg(ctx context.Context, name string) (*Org, error)
	// CreateClient creates an OAuth client in the org. An empty id or
	// secret is generated. It returns the plain secret, shown only once.
	CreateClient(ctx context.Context, orgID, id, secret string) (*Client, string, error)
	// CountClients returns how many clients exist in all orgs.
	CountClients(ctx context.Context) (int, error)
	// Authenticate checks a client's secret in constant time; a wrong id or
	// secret is EUNAUTHORIZED.
	Authenticate(ctx context.Context, clientID, secret string) (*Client, error)
	// IssueToken creates an access token for the client, valid for ttl.
	IssueToken(ctx context.Context, client *Client, ttl time.Duration) (token string, expires time.Time, err error)
	// ValidateToken returns the client a token belongs to; an unknown,
	// expired or revoked token, or one of a deleted client, is
	// EUNAUTHORIZED.
	ValidateToken(ctx context.Context, token string, now time.Time) (*Client, error)
	// RevokeToken revokes a token issued to the client clientID, at once
	// (RFC 7009). An unknown or expired token, or one issued to another
	// client, is left alone without an error, so that the answer reveals
	// nothing about other clients' tokens.
	RevokeToken(ctx context.Context, clientID, token string) error
	// ListClients returns the clients of all orgs, oldest first.
	ListClients(ctx context.Context) ([]*Client, error)
	// DeleteClient deletes a client and, at once, every token issued to
	// it; an unknown id is ENOTFOUND.
	DeleteClient(ctx context.Context, id string) error
	// RotateSecret replaces a client's secret (a random one when secret is
	// empty) and revokes its tokens, returning the plain new secret, shown
	// only once; an unknown id is ENOTFOUND.
	RotateSecret(ctx context.Context, id, secret string) (string, error)
	FindUsers(ctx context.Context, orgID string) ([]*User, error)
	// Ping reports whether the database is reachable.
	Ping(ctx context.Context) error
}
