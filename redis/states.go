package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"ratelab/limit"
)

// statesSource is the Lua script that takes one decision over tiers of
// any algorithm: the script for every request that is not plain GCRA
// (limit.Request.Plain), which decideSource takes faster. It decides as
// limit.EvaluateStates does and writes the state after the decision.
//
//	KEYS[i]         tier i's key (all in one hash slot; see appendStateKey)
//	ARGV[1]         the request's cost
//	ARGV[2]         the lease ID, the member a concurrency tier adds
//	ARGV[3+5(i-1)…] tier i: kind, flags, x, y, z
//	                  kind 0 GCRA:        x = cost·T, y = τ, z = 2τ (ns)
//	                  kind 1 fixed window aligned to the epoch, kind 2
//	                  aligned to the first request, kind 3 sliding window:
//	                                      x = window in ms, y = quota
//	                  kind 4 concurrency: x = N, y = lease in µs
//	                  flags: 1 shadow, 2 counts rejected requests
//	ARGV[3+5n…]     only when the caller gives the instant: now as unix
//	                seconds, nanoseconds within the second, and the grace
//	                in ms (see decideSource); otherwise Redis TIME
//
// It returns {allowed, now_s, now_ns, then per tier Until, Count, Prev,
// First}: the state before the decision as limit.State describes it, from
// which the Store runs limit.EvaluateStates and checks the verdict.
//
// Values: a GCRA tier's key is its TAT as decideSource writes it (the same
// key, so plain and count-rejected GCRA share state); a window's is a hash
// of e (Until as an instant, written like a TAT), c (count) and, sliding,
// p (previous count); a concurrency tier's is a sorted set of lease IDs
// scored by their expiry in unix microseconds (exact in a double until
// the year 2255), from which expired leases are removed first. Every key
// gets an expiry (PX / PEXPIRE, plus the grace) at the instant its state
// stops carrying information.
//
// All arithmetic stays exact in Lua's doubles: instants are split in
// seconds and nanoseconds as in decideSource, windows are whole
// milliseconds (so now modulo a window is formed in milliseconds), leases
// whole milliseconds, and the sliding window's products, which can exceed
// 2^53, are compared in 18-bit limbs (mulle).
const statesSource = `
if redis.replicate_commands then redis.replicate_commands() end
local n = #KEYS
local cost, id = tonumber(ARGV[1]), ARGV[2]
local base = 2 + 5 * n
local now_s, now_ns, grace
if #ARGV > base then
  now_s, now_ns, grace = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3])
else
  local t = redis.call('TIME')
  now_s, now_ns, grace = tonumber(t[1]), tonumber(t[2]) * 1000, 0
end
local E9, MAXB = 1000000000, 9007199254740992

local function off(v)
  if not v then return 0 end
  local ds, tn
  if #v > 9 then
    ds, tn = tonumber(string.sub(v, 1, -10)) - now_s, tonumber(string.sub(v, -9))
  else
    ds, tn = -now_s, tonumber(v)
  end
  if ds > 9000000 then return MAXB end
  if ds < -9000000 then return -MAXB end
  local b = ds * E9 + (tn - now_ns)
  if b > MAXB then b = MAXB end
  return b
end

local function at(o)
  local total = now_ns + o
  local carry = math.floor(total / E9)
  local ns = total - carry * E9
  if ns < 0 then
    ns, carry = ns + E9, carry - 1
  elseif ns >= E9 then
    ns, carry = ns - E9, carry + 1
  end
  return string.format('%d%09d', now_s + carry, ns)
end

local function px(o)
  local p = math.ceil(o / 1000000) + grace
  if p < 2147483648 then p = string.format('%d', p) end
  return p
end

local function elapsed(wms)
  local ms = now_s * 1000 + math.floor(now_ns / 1000000)
  local r = ms % wms
  if r < 0 then r = r + wms elseif r >= wms then r = r - wms end
  return r * 1000000 + now_ns % 1000000
end

local L = 262144
local function limbs(x)
  local a = x % L
  x = (x - a) / L
  local b = x % L
  return a, b, (x - b) / L
end
local function mul(x, y)
  local x0, x1, x2 = limbs(x)
  local y0, y1, y2 = limbs(y)
  local r = {x0 * y0, x0 * y1 + x1 * y0, x0 * y2 + x1 * y1 + x2 * y0, x1 * y2 + x2 * y1, x2 * y2, 0}
  local c = 0
  for i = 1, 6 do
    local v = r[i] + c
    r[i] = v % L
    c = (v - r[i]) / L
  end
  return r
end
local function mulle(a, b, c, d)
  local x, y = mul(a, b), mul(c, d)
  for i = 6, 1, -1 do
    if x[i] ~= y[i] then return x[i] < y[i] end
  end
  return true
end

local now_us = now_s * 1000000 + math.floor(now_ns / 1000)
local out = {1, now_s, now_ns}
local tiers = {}
for i = 1, n do
  local j = 2 + 5 * (i - 1)
  local kind, flags = tonumber(ARGV[j + 1]), tonumber(ARGV[j + 2])
  local x, y, z = tonumber(ARGV[j + 3]), tonumber(ARGV[j + 4]), tonumber(ARGV[j + 5])
  local key = KEYS[i]
  local U, C, P, F = 0, 0, 0, 0
  local t = {kind = kind, shadow = flags % 2 == 1, counted = flags >= 2, x = x, y = y, z = z}
  if kind == 0 then
    U = off(redis.call('GET', key))
    if U < 0 then U = 0 end
    t.next = U + x
    t.ok = t.next <= y
  elseif kind <= 3 then
    local W = x * 1000000
    local h = redis.call('HMGET', key, 'e', 'c', 'p')
    U = off(h[1])
    if U > 0 then C, P = tonumber(h[2]) or 0, tonumber(h[3]) or 0 else U = 0 end
    if kind <= 2 then
      if U > 0 then
        t.left, t.c = U, C
      elseif kind == 2 then
        t.left, t.c = W, 0
      else
        t.left, t.c = W - elapsed(x), 0
      end
      t.ok = t.c + cost <= y
    else
      if U > W then
        t.left, t.c, t.p = U - W, C, P
      elseif U > 0 then
        t.left, t.c, t.p = U, 0, C
      else
        t.left, t.c, t.p = W - elapsed(x), 0, 0
      end
      local e = W - t.left
      if e < 0 then e = 0 end
      local r = y - t.c - cost
      t.ok = r >= 0 and (t.p == 0 or mulle(t.p, W - e, r, W))
    end
    t.W = W
  else
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now_us)
    C = redis.call('ZCARD', key)
    if C > 0 then
      local f = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
      local l = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
      F = (tonumber(f[2]) - now_s * 1000000) * 1000 - now_ns
      U = (tonumber(l[2]) - now_s * 1000000) * 1000 - now_ns
    end
    t.ok = cost == 0 or C < x -- a check of cost 0 takes no slot
    t.U = U
  end
  if not t.ok and not t.shadow then out[1] = 0 end
  tiers[i] = t
  local k = 4 * i
  out[k], out[k + 1], out[k + 2], out[k + 3] = U, C, P, F
end
if cost > 0 then
  for i = 1, n do
    local t, key = tiers[i], KEYS[i]
    if (out[1] == 1 and t.ok) or (t.counted and t.kind ~= 4) then
      if t.kind == 0 then
        local b = t.next
        if b > t.z then b = t.z end
        if b > 0 then redis.call('SET', key, at(b), 'PX', px(b)) end
      elseif t.kind <= 2 then
        redis.call('HSET', key, 'e', at(t.left), 'c', t.c + cost)
        redis.call('PEXPIRE', key, px(t.left))
      elseif t.kind == 3 then
        redis.call('HSET', key, 'e', at(t.left + t.W), 'c', t.c + cost, 'p', t.p)
        redis.call('PEXPIRE', key, px(t.left + t.W))
      else
        local exp = now_s * 1000000 + math.ceil(now_ns / 1000) + t.y
        redis.call('ZADD', key, exp, id)
        local o = (exp - now_s * 1000000) * 1000 - now_ns
        if t.U > o then o = t.U end
        redis.call('PEXPIRE', key, px(o))
      end
    end
  end
end
return out
`

// releaseSource removes the lease ARGV[1] from every key: one round trip
// for all the concurrency tiers of one decision, which share a slot.
const releaseSource = `
for i = 1, #KEYS do redis.call('ZREM', KEYS[i], ARGV[1]) end
return 0
`

// Tier kinds and flags of statesSource.
const (
	kindGCRA = iota
	kindFixedEpoch
	kindFixedFirst
	kindSliding
	kindConcurrency
	flagShadow  = 1
	flagCounted = 2
)

// stateScripts are the boxed arguments of the two scripts, made once.
type stateScripts struct {
	statesSHA, statesSrc   any
	releaseSHA, releaseSrc any
	leasePrefix            string // this Store's lease IDs start with it
}

func newStateScripts() stateScripts {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return stateScripts{
		statesSHA: goredis.NewScript(statesSource).Hash(), statesSrc: statesSource,
		releaseSHA: goredis.NewScript(releaseSource).Hash(), releaseSrc: releaseSource,
		// A '.' sets them apart from the fallback MemoryStore's IDs, which
		// are base-36 digits only.
		leasePrefix: hex.EncodeToString(b[:]) + ".",
	}
}

// appendStateKey appends tier's key for the states script: the GCRA key of
// appendKey, and for the other algorithms the same key with a letter
// before the hash tag (f fixed, s sliding, c concurrency), so that a
// policy that changes algorithm under one name starts afresh instead of
// reading a value of another type. The prefix holds no '{', so the tag is
// unchanged: one slot per group still.
func appendStateKey(b []byte, prefix string, alg limit.Algorithm, group, policy, key string) []byte {
	switch alg {
	case limit.FixedWindow:
		prefix += "f"
	case limit.SlidingWindow:
		prefix += "s"
	case limit.Concurrency:
		prefix += "c"
	}
	return appendKey(b, prefix, group, policy, key)
}

// buildStates fills c with the EVALSHA of statesSource for req.
func (c *call) buildStates(s *Store, req *limit.Request, leaseID string) {
	n := len(req.Tiers)
	nnums := 1 + 5*n
	if !req.Now.IsZero() {
		nnums += 3
	}
	c.grow(n, nnums, 4+n+nnums)
	c.args[0], c.args[1], c.args[2] = "evalsha", s.scripts.statesSHA, n
	c.src = s.scripts.statesSrc
	for i := range req.Tiers {
		t := &req.Tiers[i]
		p := t.Policy
		k := &c.keys[i]
		k.b = appendStateKey(k.b[:0], s.prefix, p.Algorithm, req.Group, p.Name, t.Key)
		c.args[3+i] = k
		var kind, flags, x, y, z int64
		if p.Shadow {
			flags |= flagShadow
		}
		if p.CountRejected {
			flags |= flagCounted
		}
		switch p.Algorithm {
		case limit.GCRA:
			interval := int64(p.Interval())
			x = maxBacklog
			if req.Cost <= maxBacklog/interval {
				x = req.Cost * interval
			}
			y = int64(p.Tolerance())
			z = 2 * y
		case limit.FixedWindow, limit.SlidingWindow:
			kind = kindFixedEpoch
			if p.AlignFirst {
				kind = kindFixedFirst
			}
			if p.Algorithm == limit.SlidingWindow {
				kind = kindSliding
			}
			x, y = int64(p.Rate.Period/time.Millisecond), p.Rate.Count
		case limit.Concurrency:
			kind, x, y = kindConcurrency, p.Concurrency, int64(p.Lease/time.Microsecond)
		}
		c.nums[1+5*i], c.nums[2+5*i], c.nums[3+5*i], c.nums[4+5*i], c.nums[5+5*i] = kind, flags, x, y, z
	}
	c.nums[0] = req.Cost
	if !req.Now.IsZero() {
		c.nums[1+5*n], c.nums[2+5*n], c.nums[3+5*n] = req.Now.Unix(), int64(req.Now.Nanosecond()), s.graceMs
	}
	// ARGV: cost, lease ID, then the numbers after the cost.
	c.args[3+n] = &c.nums[0]
	c.lease = leaseID
	c.args[4+n] = c.lease
	for i := 1; i < nnums; i++ {
		c.args[4+n+i] = &c.nums[i]
	}
}

// decideStates runs statesSource and evaluates the states it returns.
func (s *Store) decideStates(ctx context.Context, req *limit.Request, d *limit.Decision) error {
	n := len(req.Tiers)
	c := s.getCall()
	leaseID := ""
	for i := range req.Tiers {
		if req.Tiers[i].Policy.Algorithm == limit.Concurrency {
			leaseID = fmt.Sprintf("%s%x", s.scripts.leasePrefix, s.leaseSeq.Add(1))
			break
		}
	}
	c.buildStates(s, req, leaseID)
	if s.rejectLocally(req, c, false, d) {
		s.calls.Put(c)
		return nil
	}
	out, err, reusable := s.roundTrip(ctx, c)
	if err != nil {
		return fmt.Errorf("run script: %w", err)
	}
	if len(out) != 3+4*n {
		return fmt.Errorf("script returned %d values, want %d", len(out), 3+4*n)
	}
	var st [limit.MaxTiers]limit.State
	for i := range n {
		o := out[3+4*i:]
		st[i] = limit.State{Until: time.Duration(o[0]), Count: o[1], Prev: o[2], First: time.Duration(o[3])}
	}
	now := out[1]*int64(time.Second) + out[2]
	limit.EvaluateStates(req, now, st[:n], d)
	d.At = time.Unix(0, now)
	if d.Allowed != (out[0] == 1) {
		return fmt.Errorf("script decided allowed=%v, evaluate %v", out[0] == 1, d.Allowed)
	}
	for i := range n {
		if d.Tiers[i].Consumed && req.Tiers[i].Policy.Algorithm == limit.Concurrency {
			if !d.Lease.Held() {
				d.Lease = limit.Lease{ID: leaseID, Group: req.Group}
			}
			d.Lease.Tiers = append(d.Lease.Tiers, req.Tiers[i])
		}
	}
	if s.cache != nil {
		s.learn(req, c, now)
		// st holds each tier's state after the decision.
		for i := range n {
			if p := req.Tiers[i].Policy; cacheable(p) {
				s.cache.update(c.keys[i].b, p, now, now+int64(max(st[i].Until, 0)), st[i].Count)
			}
		}
	}
	if reusable {
		s.calls.Put(c)
	}
	return nil
}

// Release implements limit.Releaser: it removes the lease from its
// concurrency tiers in one round trip. A lease taken on the fallback while
// Redis was unreachable is released there. An error (Redis unreachable)
// leaves the slots to expire after their lease.
func (s *Store) Release(ctx context.Context, l *limit.Lease) error {
	if !l.Held() || len(l.Tiers) == 0 {
		return nil
	}
	if !strings.Contains(l.ID, ".") {
		// Every Store's lease IDs hold a '.', the fallback's never do.
		return s.fallback.Release(ctx, l)
	}
	args := make([]any, 0, 4+len(l.Tiers))
	args = append(args, "evalsha", s.scripts.releaseSHA, len(l.Tiers))
	for _, t := range l.Tiers {
		args = append(args, string(appendStateKey(nil, s.prefix, limit.Concurrency, l.Group, t.Policy.Name, t.Key)))
	}
	args = append(args, l.ID)
	rctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	cmd := goredis.NewCmd(rctx, args...)
	cmd.SetFirstKeyPos(3)
	err := s.client.Process(rctx, cmd)
	if err != nil && goredis.HasErrorPrefix(err, "NOSCRIPT") {
		args[0], args[1] = "eval", s.scripts.releaseSrc
		cmd = goredis.NewCmd(rctx, args...)
		cmd.SetFirstKeyPos(3)
		err = s.client.Process(rctx, cmd)
	}
	if err != nil {
		return fmt.Errorf("redis store: release lease: %w", err)
	}
	return nil
}
