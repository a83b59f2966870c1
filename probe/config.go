package probe

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"ratelab/limit"
	"ratelab/load"
)

// Config is one probe. Request, Client, MaxRate and Budget are required:
// a probe refuses to start without both of its bounds.
type Config struct {
	// Request is the request to probe; its URL, headers and body are
	// templates (see load.Template), and may name the Vary variables as
	// {{.NAME}}.
	Request load.RequestSpec
	// Headers are sent with every request before Request.Headers.
	Headers []load.Header
	// Vary gives template variables a fresh value per request during the
	// scope steps and a fixed value otherwise.
	Vary []Vary
	// Client sends the requests (with its credentials, if any).
	Client *http.Client
	// Client2, when set, holds a second credential of the same API: the
	// scope step then tells a per-client limit from a shared one.
	Client2 *http.Client
	// LimitsURL, when set, is read once (GET, with Client) for the limits
	// the server claims, e.g. ratelab's /api/v2/ratelimits.
	LimitsURL string
	// MaxRate is the highest rate the probe ever sends at: consecutive
	// requests are never closer than its interval. Required.
	MaxRate limit.Rate
	// Budget is the most requests the probe sends, the limits endpoint
	// included. Required.
	Budget int
	// MaxErrors is how many consecutive 5xx responses or network errors
	// stop the probe; 0 means 5.
	MaxErrors int
	// MaxWait bounds one refill wait; 0 means 2 minutes. A limit whose
	// bucket takes longer to refill is reported with the burst unmeasured.
	MaxWait time.Duration
	// MaxStep bounds the duration of one measuring step; 0 means 45 s:
	// the boundaries of a fixed window come once a window, and where a
	// 10 s window starts (aligned, or at the first request) takes four or
	// five of them at some start phases.
	MaxStep time.Duration
	// ScopeRequests caps the requests of the scope step that looks for
	// another limit with the resource varied; 0 means max(4·burst+40, 100)
	// for the burst already measured, raised to 4·burst+120 for a broader
	// limit's burst when the step meets one.
	ScopeRequests int
	// InFlight caps concurrent requests; 0 means 64. When the cap is
	// reached the probe sends late, never faster.
	InFlight int
	// Logger receives one line per step; nil discards.
	Logger *slog.Logger
}

// Validate reports the first problem with c.
func (c *Config) Validate() error {
	switch {
	case c.Request.URL == "":
		return errors.New("no URL to probe")
	case c.Client == nil:
		return errors.New("no HTTP client")
	case c.MaxRate.Count <= 0 || c.MaxRate.Period <= 0:
		return errors.New("a maximum rate is required (--max-rate, e.g. 200/s): the probe never sends faster")
	case c.MaxRate.Interval() <= 0:
		return errors.New("maximum rate too high: under 1ns per request")
	case c.Budget <= 0:
		return errors.New("a request budget is required (--budget, e.g. 3000): the probe never sends more")
	case c.Budget < 10:
		return fmt.Errorf("budget %d is too small to measure anything: give at least 10", c.Budget)
	}
	seen := map[string]bool{}
	for _, v := range c.Vary {
		if v.Name == "" || v.next == nil {
			return errors.New("vary: use ParseVary to build a variable")
		}
		if seen[v.Name] {
			return fmt.Errorf("vary: %q given twice", v.Name)
		}
		seen[v.Name] = true
	}
	return nil
}

func (c *Config) maxErrors() int {
	if c.MaxErrors > 0 {
		return c.MaxErrors
	}
	return 5
}

func (c *Config) maxWait() time.Duration {
	if c.MaxWait > 0 {
		return c.MaxWait
	}
	return 2 * time.Minute
}

func (c *Config) maxStep() time.Duration {
	if c.MaxStep > 0 {
		return c.MaxStep
	}
	return 45 * time.Second
}

func (c *Config) inFlight() int {
	if c.InFlight > 0 {
		return c.InFlight
	}
	return 64
}

// Vary is a template variable of the scope steps: {{.Name}} takes a fresh
// value per request while the probe varies the resource, and Fixed
// otherwise. Build one with ParseVary. A Vary is safe for concurrent use.
type Vary struct {
	// Name is the variable's name in templates, without the dot.
	Name string
	// Kind is how values are made: "uuid", "seq" or "csv".
	Kind string
	// Fixed is the value used outside the scope steps.
	Fixed string
	next  func() string
}

// Next returns a fresh value.
func (v *Vary) Next() string { return v.next() }

// ParseVary reads NAME=uuid, NAME=seq or NAME=csv:FILE. A CSV file's
// values come from its column NAME when its first line names one,
// otherwise from its first column (every line then being a value); they
// recycle at the end. The fixed value is a random UUID, "0" for seq, and
// the first value of a CSV file.
func ParseVary(s string) (Vary, error) {
	name, kind, ok := strings.Cut(s, "=")
	name = strings.TrimSpace(name)
	if !ok || name == "" || strings.ContainsAny(name, " .{}") {
		return Vary{}, fmt.Errorf("vary %q: want NAME=uuid, NAME=seq or NAME=csv:FILE", s)
	}
	v := Vary{Name: name}
	switch kind = strings.TrimSpace(kind); {
	case kind == "uuid":
		v.Kind, v.Fixed = "uuid", uuid.NewString()
		v.next = uuid.NewString
	case kind == "seq":
		var n atomic.Int64
		v.Kind, v.Fixed = "seq", "0"
		v.next = func() string { return strconv.FormatInt(n.Add(1), 10) }
	case strings.HasPrefix(kind, "csv:"):
		values, err := readValues(strings.TrimPrefix(kind, "csv:"), name)
		if err != nil {
			return Vary{}, fmt.Errorf("vary %s: %w", name, err)
		}
		var n atomic.Int64
		v.Kind, v.Fixed = "csv", values[0]
		v.next = func() string { return values[(n.Add(1)-1)%int64(len(values))] }
	default:
		return Vary{}, fmt.Errorf("vary %q: kind %q is not uuid, seq or csv:FILE", s, kind)
	}
	return v, nil
}

// readValues reads the values of a --vary CSV file.
func readValues(path, column string) ([]string, error) {
	ds, err := load.ReadDataFile(path, load.DataShared)
	if err != nil {
		return nil, err
	}
	col, ok := ds.Columns()[column]
	var values []string
	if !ok {
		// No header naming the column: the first line is a value too.
		for name, i := range ds.Columns() {
			if i == 0 {
				values = append(values, name)
			}
		}
		col = 0
	}
	for range ds.Len() {
		row := ds.Next(0)
		if col < len(row) && row[col] != "" {
			values = append(values, row[col])
		}
	}
	if len(values) == 0 {
		return nil, errors.New("no values")
	}
	return values, nil
}
