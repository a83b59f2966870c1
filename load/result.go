package load

import (
	"time"
)

// Result is the outcome of one request: what the executor measured and
// the rate-limit information the response carried. Results flow from the
// executor to aggregators and reporters as a stream, and are written to a
// results file (see Encoder) that "ratelab report" reads back.
type Result struct {
	// Seq is the request's index in send order, from 0.
	Seq uint64 `json:"seq"`
	// Thread is the virtual user (closed model) or worker (open model) that
	// sent it, from 1; Iteration its loop iteration, from 0.
	Thread    int `json:"thread"`
	Iteration int `json:"iter"`
	// Label names the request (the scenario's request name, else METHOD path).
	Label  string `json:"label"`
	Method string `json:"method"`
	URL    string `json:"url"`
	// Intended is when the schedule meant the request to go out; Start is
	// when it went out. Latency from Intended counts the time a request
	// waited for a free worker (no coordinated omission); they are equal
	// when nothing paced the request.
	Intended time.Time `json:"intended"`
	Start    time.Time `json:"start"`
	// TTFB is time from Start to the first response byte (JMeter's Latency);
	// Elapsed from Start to the end of the body (JMeter's elapsed); Connect
	// the time spent connecting (0 on a reused connection).
	TTFB    time.Duration `json:"ttfb"`
	Elapsed time.Duration `json:"elapsed"`
	Connect time.Duration `json:"connect"`
	// Status is the HTTP status, 0 when no response arrived (Error says why).
	Status   int    `json:"status"`
	Error    string `json:"error,omitempty"`
	BytesIn  int64  `json:"bytes_in"`
	BytesOut int64  `json:"bytes_out"`
	// RetryAfter is the response's Retry-After (or the 429 body's
	// retryAfterMs when more precise); 0 when absent.
	RetryAfter time.Duration `json:"retry_after,omitempty"`
	// Policy names the rate-limit policy the response reported as decisive:
	// the 429 body's limit.policy, else the RateLimit header's item name.
	Policy string `json:"policy,omitempty"`
	// Remaining is the remaining quota the response advertised (RateLimit
	// r, X-RateLimit-Remaining, inin-ratelimit-*); -1 when none.
	Remaining int64 `json:"remaining"`
	// RateLimitRaw keeps rate-limit headers in formats the parser did not
	// understand, name: value, so nothing is lost.
	RateLimitRaw []string `json:"rl_raw,omitempty"`
	// Waited is how long the thread (or schedule) waited before this
	// request because a previous response said Retry-After, or said that
	// a limit it draws from was spent until its reset (RetryHonor).
	Waited time.Duration `json:"waited,omitempty"`
	// ActiveThreads is the number of active threads when it was sent
	// (JMeter's grpThreads/allThreads).
	ActiveThreads int `json:"threads"`

	// The fields below are set by flows (see Flow) only.

	// Group names the thread group of the user that sent it, and GroupNum
	// is that group's place in the flow, from 1 (JMeter's thread name is
	// "Group GroupNum-Thread").
	Group    string `json:"group,omitempty"`
	GroupNum int    `json:"group_num,omitempty"`
	// Failure says why an assertion failed the sample (or, for a
	// transaction, how many of its samples failed); a sample with a
	// Failure is not a success, whatever its status.
	Failure string `json:"failure,omitempty"`
	// Accepted makes a sample whose assertions passed a success whatever
	// its status (a Response Assertion's "ignore status").
	Accepted bool `json:"accepted,omitempty"`
	// Transaction marks a Transaction's own sample: no request of its
	// own, its Elapsed the time of its children, its bytes theirs, Status
	// 200 (JMeter 2.13 writes an empty response code and the message
	// "Number of samples in transaction : n, number of failing samples :
	// m", which Failure carries when m > 0).
	Transaction bool `json:"tx,omitempty"`
	// Parent, when set, names the transaction whose parent sample holds
	// this one (JMeter's "generate parent sample"): a sub-result that
	// JMeter's listeners do not count on its own.
	Parent string `json:"parent,omitempty"`
}

// Latency returns the latency counted from the intended send time: the
// figure that does not suffer from coordinated omission.
func (r *Result) Latency() time.Duration { return r.Start.Sub(r.Intended) + r.Elapsed }

// Success reports whether the request succeeded: a response with a status
// below 400 (or any response, when Accepted) and no Failure.
func (r *Result) Success() bool {
	return r.Failure == "" && r.Status > 0 && (r.Status < 400 || r.Accepted)
}
