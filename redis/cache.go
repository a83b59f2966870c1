package redis

import (
	"hash/maphash"
	"sync"
	"time"

	"ratelab/limit"
)

// DefaultCacheKeys is how many tiers' states the rejection cache keeps
// when Config.CacheKeys is zero.
const DefaultCacheKeys = 1 << 16

// cacheShards is the number of independently locked parts of the cache.
const cacheShards = 64

// rejectCache holds what Redis last said of each tier's state, as
// absolute instants, so that a decision that Redis is sure to reject can
// be rejected without a round trip (see the package doc, "Local
// rejections"). Only GCRA and fixed-window tiers that do not count
// rejected requests are kept: their state only grows until a known
// instant (a TAT never decreases; a window's count never decreases before
// the window's end), so what the cache holds is a lower bound of what
// Redis holds.
type rejectCache struct {
	seed     maphash.Seed
	perShard int
	shards   [cacheShards]cacheShard
}

type cacheShard struct {
	mu sync.Mutex
	m  map[string]*cacheEntry
	// unknownUntil: the shard dropped an entry that described Redis's
	// state until this instant (unix ns), so for an earlier instant a key
	// the shard does not hold is not known to be empty.
	unknownUntil int64
	_            [40]byte // keeps shards' locks on separate cache lines
}

// cacheEntry is one tier's state as Redis last reported it.
type cacheEntry struct {
	params cacheParams
	until  int64 // unix ns: the TAT (GCRA) or the end of the window (fixed)
	count  int64 // fixed window: the count in the window ending at until
}

// cacheParams identifies the policy an entry was learnt under: an entry is
// used only by a tier whose policy has the same parameters, so that a
// policy change starts afresh.
type cacheParams struct {
	alg   limit.Algorithm
	align bool
	rate  limit.Rate
	burst int64
}

func paramsOf(p *limit.Policy) cacheParams {
	return cacheParams{alg: p.Algorithm, align: p.AlignFirst, rate: p.Rate, burst: p.Burst}
}

// cacheable reports whether a tier's state may be cached and used for a
// local rejection: GCRA or a fixed window, not counting rejected requests.
func cacheable(p *limit.Policy) bool {
	return (p.Algorithm == limit.GCRA || p.Algorithm == limit.FixedWindow) && !p.CountRejected
}

func newRejectCache(keys int) *rejectCache {
	c := &rejectCache{seed: maphash.MakeSeed(), perShard: max(1, keys/cacheShards)}
	for i := range c.shards {
		c.shards[i].m = make(map[string]*cacheEntry)
	}
	return c
}

func (c *rejectCache) shard(key []byte) *cacheShard {
	return &c.shards[maphash.Bytes(c.seed, key)%cacheShards]
}

// lookup returns tier p's state at key as of instant now: until and count
// as cacheEntry holds them, zero for a key the cache knows to be empty.
// ok is false when the cache does not know the state: an entry learnt
// under other parameters, or a key dropped while it still described
// Redis's state at now.
func (c *rejectCache) lookup(key []byte, p *limit.Policy, now int64) (until, count int64, ok bool) {
	sh := c.shard(key)
	sh.mu.Lock()
	e := sh.m[string(key)]
	switch {
	case e != nil && e.params == paramsOf(p):
		until, count, ok = e.until, e.count, true
	case e == nil && now >= sh.unknownUntil:
		ok = true
	}
	sh.mu.Unlock()
	return until, count, ok
}

// update records that Redis reported tier p's state at key as (until,
// count). States only grow, and replies of concurrent decisions arrive in
// any order, so the entry keeps the larger of what it held and what it is
// told: the later TAT; the later window, or the larger count of the same
// one.
//
// now is the decision's instant: a state that ended by then is not
// worth an entry of its own (a missing key reads as empty).
func (c *rejectCache) update(key []byte, p *limit.Policy, now, until, count int64) {
	sh := c.shard(key)
	par := paramsOf(p)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e := sh.m[string(key)]; e != nil {
		switch {
		case e.params != par:
			*e = cacheEntry{params: par, until: until, count: count}
		case p.Algorithm == limit.GCRA:
			e.until = max(e.until, until)
		case until > e.until:
			e.until, e.count = until, count
		case until == e.until:
			e.count = max(e.count, count)
		}
		return
	}
	if until <= now && now >= sh.unknownUntil {
		return // an empty state, which a missing key says already
	}
	if len(sh.m) >= c.perShard {
		sh.evict(now, c.perShard)
	}
	sh.m[string(key)] = &cacheEntry{params: par, until: until, count: count}
}

// evict makes room in a full shard of size entries: first the entries
// whose state ended before now (an instant of the decision being
// recorded), then, if the shard is still more than seven eighths full,
// arbitrary entries. Each
// dropped entry raises unknownUntil to its end, so that no later lookup
// takes the dropped key for an empty one.
func (sh *cacheShard) evict(now int64, size int) {
	for k, e := range sh.m {
		if e.until < now {
			sh.unknownUntil = max(sh.unknownUntil, e.until)
			delete(sh.m, k)
		}
	}
	target := min(size-1, size-size/8)
	for k, e := range sh.m {
		if len(sh.m) <= target {
			break
		}
		sh.unknownUntil = max(sh.unknownUntil, e.until)
		delete(sh.m, k)
	}
}

// clear forgets everything: after an outage or a NOSCRIPT reply Redis may
// have lost its state, and then the cache no longer bounds it from below.
// As with any dropped entry, a key is then unknown, not empty, until the
// end of the state the cache held for it.
func (c *rejectCache) clear() {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for _, e := range sh.m {
			sh.unknownUntil = max(sh.unknownUntil, e.until)
		}
		clear(sh.m)
		sh.mu.Unlock()
	}
}

// len returns how many entries the cache holds.
func (c *rejectCache) len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// redisClock bounds Redis's clock from this process's monotonic clock,
// from the TIME each script reports: a script that ran between the local
// instants s (sent) and r (answered) and read Redis time t puts the offset
// Redis − local in [t − r, t − s]. The bounds come from the replies of the
// last one to two clockEpochs only, so that the drift between the two
// clocks over that time is within clockMargin, which widens them.
type redisClock struct {
	base time.Time // origin of local instants; carries the monotonic reading

	mu    sync.Mutex
	epoch int64       // the epoch of cur
	cur   clockBounds // offsets seen in epoch
	prev  clockBounds // offsets seen in epoch − 1
}

type clockBounds struct {
	lo, hi int64 // the largest t − r and the smallest t − s seen
	ok     bool
}

const (
	clockEpoch = 250 * time.Millisecond
	// clockMargin bounds the drift of two clocks over two epochs: NTP
	// slews a clock by at most 500 ppm, 250µs in 500ms.
	clockMargin = 250 * time.Microsecond
)

func newRedisClock() *redisClock { return &redisClock{base: time.Now()} }

// local returns the local monotonic instant in ns since base.
func (c *redisClock) local() int64 { return int64(time.Since(c.base)) }

// observe records a script run sent at local s, answered at local r, that
// read Redis time t (unix ns).
func (c *redisClock) observe(s, r, t int64) {
	lo, hi := t-r, t-s
	e := r / int64(clockEpoch)
	c.mu.Lock()
	if e != c.epoch {
		if e == c.epoch+1 {
			c.prev = c.cur
		} else {
			c.prev = clockBounds{}
		}
		c.cur, c.epoch = clockBounds{}, e
	}
	b := &c.cur
	if !b.ok {
		*b = clockBounds{lo: lo, hi: hi, ok: true}
	} else {
		b.lo, b.hi = max(b.lo, lo), min(b.hi, hi)
	}
	c.mu.Unlock()
}

// now returns bounds on Redis's clock (unix ns) at this instant: Redis
// reads at least lo and at most hi. ok is false without a reply in the
// last epoch or two.
func (c *redisClock) now() (lo, hi int64, ok bool) {
	l := c.local()
	e := l / int64(clockEpoch)
	c.mu.Lock()
	var b clockBounds
	if c.epoch >= e-1 && c.cur.ok {
		b = c.cur
	}
	if c.epoch >= e && c.prev.ok {
		if !b.ok {
			b = c.prev
		} else {
			b.lo, b.hi = max(b.lo, c.prev.lo), min(b.hi, c.prev.hi)
		}
	}
	c.mu.Unlock()
	if !b.ok || b.lo > b.hi {
		// No recent reply, or replies that contradict each other (a clock
		// stepped): no bounds.
		return 0, 0, false
	}
	return l + b.lo - int64(clockMargin), l + b.hi + int64(clockMargin), true
}

// rejectLocally decides req from the cache when that is exact: when the
// state the cache holds, a lower bound of Redis's, already rejects the
// request at the latest instant Redis's clock can read now. It then fills
// d as Redis would at the earliest such instant (so that the retry-after
// is never short), which d.At reports, and returns true. c holds req's
// keys, built for the script req would run.
func (s *Store) rejectLocally(req *limit.Request, c *call, plain bool, d *limit.Decision) bool {
	if s.cache == nil || req.Cost == 0 {
		return false
	}
	for i := range req.Tiers {
		if !cacheable(req.Tiers[i].Policy) {
			return false
		}
	}
	var lo, hi int64
	if req.Now.IsZero() {
		var ok bool
		if lo, hi, ok = s.clock.now(); !ok {
			return false
		}
	} else {
		lo = req.Now.UnixNano()
		hi = lo
	}
	n := len(req.Tiers)
	var until, count [limit.MaxTiers]int64
	for i := range n {
		var ok bool
		if until[i], count[i], ok = s.cache.lookup(c.keys[i].b, req.Tiers[i].Policy, lo); !ok {
			return false
		}
	}
	if evalCached(req, plain, hi, until[:n], count[:n], d) {
		return false
	}
	if lo != hi && evalCached(req, plain, lo, until[:n], count[:n], d) {
		return false // cannot be: a tier that rejects at hi rejects earlier too
	}
	d.At = time.Unix(0, lo)
	s.localRejects.Add(1)
	return true
}

// evalCached decides req at instant now (unix ns) on the cached states,
// as the scripts read them from Redis, and reports whether it admits it.
func evalCached(req *limit.Request, plain bool, now int64, until, count []int64, d *limit.Decision) bool {
	n := len(req.Tiers)
	if plain {
		var backlog [limit.MaxTiers]time.Duration
		for i := range n {
			backlog[i] = time.Duration(min(max(until[i]-now, 0), maxBacklog))
		}
		limit.Evaluate(req, backlog[:n], d)
		return d.Allowed
	}
	var st [limit.MaxTiers]limit.State
	for i := range n {
		if u := min(until[i]-now, maxBacklog); u > 0 {
			st[i] = limit.State{Until: time.Duration(u), Count: count[i]}
			if req.Tiers[i].Policy.Algorithm == limit.GCRA {
				st[i].Count = 0
			}
		}
	}
	limit.EvaluateStates(req, now, st[:n], d)
	return d.Allowed
}
