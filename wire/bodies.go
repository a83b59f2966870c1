package wire

import "ratelab"

// Token is the body of a successful token request (RFC 6749 §5.1).
type Token struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
}

// Page is a page of a listing.
type Page[T any] struct {
	Entities   []T `json:"entities"`
	PageSize   int `json:"pageSize"`
	PageNumber int `json:"pageNumber"`
	Total      int `json:"total"`
	PageCount  int `json:"pageCount"`
}

// ScriptCreate is the body of POST /api/v2/architect/scripts.
type ScriptCreate struct {
	Name string `json:"name"`
	Text string `json:"text"`
}

// ScriptPut is the body of PUT /api/v2/architect/scripts/{scriptId} and
// one item of a bulk request. Version, when set, makes the write a
// compare-and-swap.
type ScriptPut struct {
	ID      string `json:"id,omitempty"`
	Name    string `json:"name"`
	Text    string `json:"text"`
	Version *int64 `json:"version,omitempty"`
}

// BulkRequest is the body of POST /api/v2/architect/scripts/bulk.
type BulkRequest struct {
	Scripts []ScriptPut `json:"scripts"`
}

// BulkItem is one item's outcome in a bulk response: the stored script, or
// the item's error in the API's error shape.
type BulkItem struct {
	ID      string          `json:"id"`
	Status  int             `json:"status"`
	Version int64           `json:"version,omitempty"`
	Script  *ratelab.Script `json:"script,omitempty"`
	Error   *ErrorBody      `json:"error,omitempty"`
}

// BulkResponse is the body of a bulk response.
type BulkResponse struct {
	Results   []BulkItem `json:"results"`
	Succeeded int        `json:"succeeded"`
	Failed    int        `json:"failed"`
}

// UserList is the body of GET /api/v2/users.
type UserList struct {
	Entities []*ratelab.User `json:"entities"`
	Total    int             `json:"total"`
}

// RateLimits is the body of GET /api/v2/ratelimits.
type RateLimits struct {
	Policies []LimitState `json:"policies"`
}

// Health is the body of /healthz and /readyz. Degraded is set while the
// limiter store's backend is unreachable and the store decides locally:
// the replica still serves, with limits per process instead of shared.
type Health struct {
	Status   string            `json:"status"`
	Degraded bool              `json:"degraded,omitempty"`
	Checks   map[string]string `json:"checks,omitempty"`
}

// NewPage returns the page p of a listing of total items, items being
// the page's own.
func NewPage[T any](items []T, p ratelab.Page, total int) Page[T] {
	if items == nil {
		items = []T{}
	}
	return Page[T]{Entities: items, PageSize: p.Size, PageNumber: p.Number, Total: total, PageCount: (total + p.Size - 1) / p.Size}
}
