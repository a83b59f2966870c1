package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"ratelab/limit"
)

// Default settings of Config.
const (
	// DefaultPrefix starts every key when Config.Prefix is empty.
	DefaultPrefix = "ratelab:"
	// DefaultTimeout bounds each round trip when Config.Timeout is zero.
	DefaultTimeout = 50 * time.Millisecond
	// DefaultHealthInterval is how often a degraded Store pings Redis when
	// Config.HealthInterval is zero.
	DefaultHealthInterval = 500 * time.Millisecond
	// DefaultFixedTimeGrace lengthens keys written at a given instant when
	// Config.FixedTimeGrace is zero.
	DefaultFixedTimeGrace = time.Second
	// DefaultFallbackKeys caps the keys of the fallback store that New
	// makes when Config.Fallback is nil.
	DefaultFallbackKeys = 1 << 20
)

// ErrUnavailable is returned, wrapped with the cause, by a fail-closed
// Store while Redis is unreachable. It is limit.ErrUnavailable, so that a
// server needs no knowledge of Redis to answer 503.
var ErrUnavailable = limit.ErrUnavailable

// Config configures a Store. Only Client is required.
type Config struct {
	// Client is the Redis connection: a *goredis.Client, a
	// *goredis.ClusterClient or a failover client. The Store does not
	// close it. When the client's options set ContextTimeoutEnabled, the
	// Store hands its deadline to go-redis directly (cheaper, and a
	// connection stuck on a frozen server is dropped at the deadline);
	// otherwise it keeps the deadline itself. The Store reuses a
	// command's arguments once the command has returned, so a hook added
	// to the client must copy any argument it keeps beyond that.
	Client goredis.UniversalClient
	// Prefix starts every key. It must not contain '{' or '}', which would
	// move the hash tag. Default: DefaultPrefix.
	Prefix string
	// FailClosed makes Decide return an error wrapping ErrUnavailable
	// while Redis is unreachable, instead of deciding on Fallback.
	FailClosed bool
	// Timeout bounds each round trip to Redis; a decision that takes longer
	// counts as an outage. Default: DefaultTimeout.
	Timeout time.Duration
	// FixedTimeGrace lengthens the life of keys written by a decision at a
	// caller-given instant (Request.Now set). Redis expires keys on its own
	// clock, so a key whose TAT is reckoned on another clock could otherwise
	// vanish while a caller whose clock runs behind Redis's, or whose
	// instants advance more slowly than real time, still relies on it. Keys
	// written on Redis time need no grace and get none. Default:
	// DefaultFixedTimeGrace; a negative value means no grace.
	FixedTimeGrace time.Duration
	// HealthInterval is how often a degraded Store pings Redis to find out
	// whether it is back. Default: DefaultHealthInterval.
	HealthInterval time.Duration
	// Logger receives one Warn record when Redis becomes unreachable and
	// one Info record when it is back. Default: slog.Default().
	Logger *slog.Logger
	// Fallback takes the decisions while Redis is unreachable (fail open).
	// Default: a new limit.MemoryStore holding at most DefaultFallbackKeys
	// keys.
	Fallback *limit.MemoryStore
	// OnStateChange, when set, is called with true when the Store turns to
	// its fallback and with false when it is back on Redis, one call at a
	// time and in order, e.g. to set a metric. It must not call Close.
	OnStateChange func(degraded bool)
	// CacheKeys bounds the tiers whose state the rejection cache keeps
	// (see the package doc, "Local rejections"). Default:
	// DefaultCacheKeys; a negative value turns local rejections off.
	CacheKeys int
	// MaxBatch bounds the decisions sent to Redis in one pipeline (see
	// the package doc, "Pipelining"). Default: DefaultMaxBatch; a negative
	// value turns pipelining off. Pipelining needs a client with
	// ContextTimeoutEnabled; on any other client every decision is a round
	// trip of its own.
	MaxBatch int
	// MaxInFlight is how many round trips (single decisions or pipelines)
	// may be in flight before further decisions wait to go in the next
	// pipeline. Default: DefaultMaxInFlight, or DefaultClusterMaxInFlight
	// on a *goredis.ClusterClient.
	MaxInFlight int
}

// Stats counts what a Store did since New.
type Stats struct {
	// LocalRejections are decisions rejected from the rejection cache,
	// without a round trip.
	LocalRejections uint64
	// Scripts are the decision scripts sent to Redis (EVALSHA, and EVAL
	// after NOSCRIPT), alone or in pipelines; releases are not counted.
	Scripts uint64
	// Pipelines are the round trips that carried more than one decision,
	// and Pipelined the decisions they carried.
	Pipelines, Pipelined uint64
}

// Store is a limit.Store that keeps every tier's state in Redis, so that
// several processes share one exact limit. Each decision is one round trip
// (see the package documentation for the key layout, the script and the
// failure mode).
//
// The zero Store is not usable; call New. A Store is safe for concurrent
// use.
type Store struct {
	client         goredis.UniversalClient
	ctxDeadlines   bool // client honours context deadlines
	shaArg         any  // the script's SHA1, boxed once
	srcArg         any  // decideSource, boxed once
	calls          sync.Pool
	prefix         string
	failClosed     bool
	timeout        time.Duration
	healthInterval time.Duration
	graceMs        int64
	log            *slog.Logger
	fallback       *limit.MemoryStore
	onStateChange  func(bool)

	degraded atomic.Bool
	scripts  stateScripts  // the states and release scripts (states.go)
	leaseSeq atomic.Uint64 // numbers this Store's lease IDs

	cache *rejectCache // nil when local rejections are off
	clock *redisClock
	batch *batcher // nil when pipelining is off

	localRejects, scriptsSent, pipelines, pipelined atomic.Uint64

	// mu serializes state changes and their OnStateChange calls, and
	// guards the fields below.
	mu       sync.Mutex
	checking bool // a health check goroutine is running
	closed   bool
	stop     chan struct{}
	wg       sync.WaitGroup
}

var _ limit.Store = (*Store)(nil)

// New returns a Store on cfg.Client.
func New(cfg Config) (*Store, error) {
	if cfg.Client == nil {
		return nil, errors.New("redis store: config has no client")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if strings.ContainsAny(cfg.Prefix, "{}") {
		return nil, fmt.Errorf("redis store: prefix %q must not contain '{' or '}'", cfg.Prefix)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	switch {
	case cfg.FixedTimeGrace == 0:
		cfg.FixedTimeGrace = DefaultFixedTimeGrace
	case cfg.FixedTimeGrace < 0:
		cfg.FixedTimeGrace = 0
	}
	if cfg.HealthInterval <= 0 {
		cfg.HealthInterval = DefaultHealthInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Fallback == nil {
		cfg.Fallback = limit.NewMemoryStore(limit.MemoryConfig{MaxKeys: DefaultFallbackKeys})
	}
	var ctxDeadlines bool
	inFlight := DefaultMaxInFlight
	switch c := cfg.Client.(type) {
	case *goredis.Client:
		ctxDeadlines = c.Options().ContextTimeoutEnabled
	case *goredis.ClusterClient:
		ctxDeadlines = c.Options().ContextTimeoutEnabled
		inFlight = DefaultClusterMaxInFlight
	}
	if cfg.CacheKeys == 0 {
		cfg.CacheKeys = DefaultCacheKeys
	}
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = inFlight
	}
	s := &Store{
		client:         cfg.Client,
		ctxDeadlines:   ctxDeadlines,
		shaArg:         goredis.NewScript(decideSource).Hash(),
		srcArg:         decideSource,
		prefix:         cfg.Prefix,
		failClosed:     cfg.FailClosed,
		timeout:        cfg.Timeout,
		healthInterval: cfg.HealthInterval,
		graceMs:        int64((cfg.FixedTimeGrace + time.Millisecond - 1) / time.Millisecond),
		log:            cfg.Logger,
		fallback:       cfg.Fallback,
		onStateChange:  cfg.OnStateChange,
		scripts:        newStateScripts(),
		clock:          newRedisClock(),
		stop:           make(chan struct{}),
	}
	if cfg.CacheKeys > 0 {
		s.cache = newRejectCache(cfg.CacheKeys)
	}
	if cfg.MaxBatch > 1 && ctxDeadlines {
		s.batch = &batcher{maxBatch: cfg.MaxBatch, maxInFlight: cfg.MaxInFlight}
	}
	return s, nil
}

// Stats returns the Store's counts so far.
func (s *Store) Stats() Stats {
	return Stats{
		LocalRejections: s.localRejects.Load(),
		Scripts:         s.scriptsSent.Load(),
		Pipelines:       s.pipelines.Load(),
		Pipelined:       s.pipelined.Load(),
	}
}

// Degraded reports whether Redis is currently considered unreachable, so
// that decisions go to the fallback (or fail, with FailClosed).
func (s *Store) Degraded() bool { return s.degraded.Load() }

// Check asks Redis, within the Store's timeout, whether it is reachable.
// When it is not, the Store turns degraded as after a failed decision, and
// its health check turns it back once Redis answers: a server can start
// while Redis is down and move to it when it appears. The error wraps
// ErrUnavailable.
func (s *Store) Check() error {
	if err := s.ping(); err != nil {
		s.markDown(err)
		return fmt.Errorf("redis store: %w: %w", ErrUnavailable, err)
	}
	return nil
}

// FailsClosed reports whether the Store was configured with FailClosed:
// while degraded, its decisions fail instead of being taken locally.
func (s *Store) FailsClosed() bool { return s.failClosed }

// Close stops the background health check. It does not close the Redis
// client or the fallback. The Store stays usable, but a Store that is
// degraded when closed, or becomes degraded after, stays on its fallback.
func (s *Store) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.stop)
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// Decide implements limit.Store: it takes the decision for req in one
// round trip to Redis, or on the fallback while Redis is unreachable.
func (s *Store) Decide(ctx context.Context, req *limit.Request, d *limit.Decision) error {
	if err := req.Validate(); err != nil {
		return err
	}
	if !req.Now.IsZero() && req.Now.Unix() < 0 {
		return fmt.Errorf("redis store: instant %v is before 1970", req.Now)
	}
	if s.degraded.Load() {
		if s.failClosed {
			return fmt.Errorf("redis store: %w", ErrUnavailable)
		}
		return s.fallback.Decide(ctx, req, d)
	}
	err := s.decide(ctx, req, d)
	if err == nil {
		return nil
	}
	if !s.isOutage(ctx, err) {
		return fmt.Errorf("redis store: %w", err)
	}
	s.markDown(err)
	if s.failClosed {
		return fmt.Errorf("redis store: %w: %w", ErrUnavailable, err)
	}
	return s.fallback.Decide(ctx, req, d)
}

// decide runs the script and evaluates its backlogs, unless the
// rejection cache rejects the request without a round trip.
func (s *Store) decide(ctx context.Context, req *limit.Request, d *limit.Decision) error {
	n := len(req.Tiers)
	if n == 0 {
		// No keys, no slot: Redis Cluster could not route the script, and
		// there is nothing to decide, so no instant to ask Redis for.
		limit.Evaluate(req, nil, d)
		d.At = req.Now
		if d.At.IsZero() {
			d.At = time.Now()
		}
		return nil
	}
	if !req.Plain() {
		return s.decideStates(ctx, req, d)
	}
	c := s.getCall()
	c.build(s, req)
	if s.rejectLocally(req, c, true, d) {
		s.calls.Put(c)
		return nil
	}
	out, err, reusable := s.roundTrip(ctx, c)
	if err != nil {
		return fmt.Errorf("run script: %w", err)
	}
	if len(out) != 3+n {
		return fmt.Errorf("script returned %d values, want %d", len(out), 3+n)
	}
	var backlog [limit.MaxTiers]time.Duration
	for i := range n {
		backlog[i] = time.Duration(out[3+i])
	}
	limit.Evaluate(req, backlog[:n], d)
	if d.Allowed != (out[0] == 1) {
		return fmt.Errorf("script decided allowed=%v, evaluate %v", out[0] == 1, d.Allowed)
	}
	now := out[1]*int64(time.Second) + out[2]
	d.At = time.Unix(0, now)
	if s.cache != nil {
		s.learn(req, c, now)
		for i := range n {
			s.cache.update(c.keys[i].b, req.Tiers[i].Policy, now, now+int64(d.Tiers[i].ResetAfter), 0)
		}
	}
	if reusable {
		s.calls.Put(c)
	}
	return nil
}

// getCall returns a call from the pool, or a new one.
func (s *Store) getCall() *call {
	c, _ := s.calls.Get().(*call)
	if c == nil {
		c = &call{done: make(chan struct{}, 1)}
	}
	return c
}

// learn records the Redis time a script decided at, when the script read
// it from Redis TIME.
func (s *Store) learn(req *limit.Request, c *call, now int64) {
	if req.Now.IsZero() && c.recv != 0 {
		s.clock.observe(c.sent, c.recv, now)
	}
}

// call is the argument list of one script run, kept in Store.calls and
// reused, so that a decision boxes no value and builds no key string:
// go-redis writes *int64 and encoding.BinaryMarshaler arguments as they
// are, and pointers go into interfaces without allocating.
type call struct {
	args  []any // evalsha, sha, numkeys, the keys, the numbers
	keys  []keyArg
	nums  []int64
	src   any    // the script's source, for EVAL after NOSCRIPT
	lease string // the lease ID argument of the states script

	// sent and recv are the local instants (redisClock.local) at which
	// the round trip that carried the call started and ended; recv is 0
	// when unknown.
	sent, recv int64

	// Pipelining (batch.go): the answer, the signal that it is there (or
	// that this call leads batch), and the instant by which it is due.
	out      []int64
	err      error
	done     chan struct{}
	batch    []*call
	deadline time.Time
}

// grow sizes c's reused buffers to n keys, nnums numbers and nargs
// arguments, allocating only when one is too small.
func (c *call) grow(n, nnums, nargs int) {
	if cap(c.keys) < n {
		c.keys = make([]keyArg, n)
	}
	if cap(c.nums) < nnums {
		c.nums = make([]int64, nnums)
	}
	if cap(c.args) < nargs {
		c.args = make([]any, nargs)
	}
	c.keys, c.nums, c.args = c.keys[:n], c.nums[:nnums], c.args[:nargs]
}

// build fills c with the EVALSHA of decideSource for req.
func (c *call) build(s *Store, req *limit.Request) {
	n := len(req.Tiers)
	nnums := 2 * n
	if !req.Now.IsZero() {
		nnums += 3
	}
	c.grow(n, nnums, 3+n+nnums)
	c.args[0], c.args[1], c.args[2] = "evalsha", s.shaArg, n
	c.src = s.srcArg
	cost := req.Cost
	for i := range req.Tiers {
		t := &req.Tiers[i]
		k := &c.keys[i]
		k.b = appendKey(k.b[:0], s.prefix, req.Group, t.Policy.Name, t.Key)
		c.args[3+i] = k
		// cost·T and τ are below 2^53 for every tier that can admit the
		// request (Validate caps cost at the burst of a non-shadow tier,
		// and τ at limit.MaxWindow); a larger product, possible only on a
		// shadow tier, is clamped where it still rejects.
		interval := int64(t.Policy.Interval())
		inc := int64(maxBacklog)
		if cost <= maxBacklog/interval {
			inc = cost * interval
		}
		tol := interval * t.Policy.Burst
		if t.Policy.Shadow {
			tol = -1 - tol
		}
		c.nums[2*i], c.nums[2*i+1] = inc, tol
	}
	if !req.Now.IsZero() {
		c.nums[2*n], c.nums[2*n+1], c.nums[2*n+2] = req.Now.Unix(), int64(req.Now.Nanosecond()), s.graceMs
	}
	for i := range c.nums {
		c.args[3+n+i] = &c.nums[i]
	}
}

// keyArg is one key of a call, written by go-redis from its bytes.
type keyArg struct{ b []byte }

// MarshalBinary returns the key's bytes, which go-redis writes verbatim.
func (k *keyArg) MarshalBinary() ([]byte, error) { return k.b, nil }

// String returns the key; a ClusterClient hashes it to route the call.
func (k *keyArg) String() string { return string(k.b) }

// exec runs c on Redis: EVALSHA, and EVAL when Redis answers NOSCRIPT (as
// after SCRIPT FLUSH or a restart), which loads the script again.
func (s *Store) exec(ctx context.Context, c *call) ([]int64, error) {
	cmd := goredis.NewIntSliceCmd(ctx, c.args...)
	cmd.SetFirstKeyPos(3)
	s.scriptsSent.Add(1)
	c.sent, c.recv = s.clock.local(), 0
	err := s.client.Process(ctx, cmd)
	if err != nil && goredis.HasErrorPrefix(err, "NOSCRIPT") {
		s.noScript()
		c.args[0], c.args[1] = "eval", c.src
		cmd = goredis.NewIntSliceCmd(ctx, c.args...)
		cmd.SetFirstKeyPos(3)
		s.scriptsSent.Add(1)
		c.sent = s.clock.local()
		err = s.client.Process(ctx, cmd)
	}
	c.recv = s.clock.local()
	return cmd.Val(), err
}

// noScript forgets the rejection cache when Redis has forgotten the
// scripts: a restart or a flush may have taken the keys with them.
func (s *Store) noScript() {
	if s.cache != nil {
		s.cache.clear()
	}
}

// answer is the outcome of one script run.
type answer struct {
	out []int64
	err error
}

// run runs c with a deadline of s.timeout. go-redis honours a context's
// deadline only when the client has ContextTimeoutEnabled, and otherwise
// waits for its ReadTimeout (3s by default), so for such a client the
// wait is bounded here: the call runs in its own goroutine, which
// finishes by itself when the client gives up. Like any timeout, this
// cannot tell whether a late script ran: a decision that times out may
// still have consumed quota on Redis. reusable is false when that
// goroutine may still use c, which must then not go back to the pool.
func (s *Store) run(ctx context.Context, c *call) (out []int64, err error, reusable bool) {
	rctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if s.ctxDeadlines {
		out, err := s.exec(rctx, c)
		if err != nil && rctx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("no answer within %v: %w", s.timeout, err)
		}
		return out, err, true
	}
	ch := make(chan answer, 1)
	go func() {
		out, err := s.exec(rctx, c)
		ch <- answer{out, err}
	}()
	select {
	case a := <-ch:
		return a.out, a.err, true
	case <-rctx.Done():
		return nil, fmt.Errorf("no answer within %v: %w", s.timeout, rctx.Err()), false
	}
}

// ping asks Redis whether it is back, waiting at most s.timeout, and
// gives up early when stop is closed.
func (s *Store) ping() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	ch := make(chan error, 1)
	go func() { ch <- s.client.Ping(ctx).Err() }()
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-s.stop:
		return errors.New("store closed")
	}
}

// isOutage reports whether err means Redis is unreachable or unable to
// serve, as opposed to the caller giving up or a request Redis refused.
func (s *Store) isOutage(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false // the caller cancelled or ran out of time
	}
	var rerr goredis.Error
	if !errors.As(err, &rerr) {
		return true // network error, timeout, closed pool
	}
	for _, p := range []string{"LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "BUSY", "OOM"} {
		if goredis.HasErrorPrefix(err, p) {
			return true
		}
	}
	return false
}

// markDown turns the Store to its fallback, once per outage.
func (s *Store) markDown(cause error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.degraded.Load() {
		return
	}
	s.degraded.Store(true)
	if s.cache != nil {
		// Redis may come back without the state it had.
		s.cache.clear()
	}
	mode := "deciding on the local fallback until it is back"
	if s.failClosed {
		mode = "rejecting decisions until it is back (fail closed)"
	}
	s.log.Warn("redis rate limiter unreachable; "+mode, "err", cause, "timeout", s.timeout)
	if s.onStateChange != nil {
		s.onStateChange(true)
	}
	if !s.checking && !s.closed {
		s.checking = true
		s.wg.Add(1)
		go s.healthCheck()
	}
}

// healthCheck pings Redis until it answers, then turns the Store back to
// Redis. It runs only while the Store is degraded.
func (s *Store) healthCheck() {
	defer s.wg.Done()
	t := time.NewTicker(s.healthInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			s.mu.Lock()
			s.checking = false
			s.mu.Unlock()
			return
		case <-t.C:
		}
		if err := s.ping(); err != nil {
			continue
		}
		s.mu.Lock()
		s.checking = false
		s.degraded.Store(false)
		s.log.Info("redis rate limiter reachable again; deciding on redis")
		if s.onStateChange != nil {
			s.onStateChange(false)
		}
		s.mu.Unlock()
		return
	}
}

// appendKey appends the Redis key of one tier to b:
//
//	<prefix>{<group>}<policy>\x00<key>
//
// In the group, '%' is written %25 and '}' %7D, so the hash tag ends at
// the group's end; the empty group is written "%" (which no escaped
// non-empty group equals), so the tag is never empty. In the policy name,
// '%' is written %25 and NUL %00, so the first NUL ends it. The key comes
// last, verbatim. Distinct (group, policy, key) therefore give distinct
// keys, and every key of one group hashes to the same Cluster slot.
func appendKey(b []byte, prefix, group, policy, key string) []byte {
	b = append(b, prefix...)
	b = append(b, '{')
	if group == "" {
		b = append(b, '%')
	}
	for i := 0; i < len(group); i++ {
		switch c := group[i]; c {
		case '%':
			b = append(b, "%25"...)
		case '}':
			b = append(b, "%7D"...)
		default:
			b = append(b, c)
		}
	}
	b = append(b, '}')
	for i := 0; i < len(policy); i++ {
		switch c := policy[i]; c {
		case '%':
			b = append(b, "%25"...)
		case 0:
			b = append(b, "%00"...)
		default:
			b = append(b, c)
		}
	}
	b = append(b, 0)
	return append(b, key...)
}
