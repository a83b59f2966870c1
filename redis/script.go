package redis

// decideSource is the Lua script that takes one decision over every tier.
//
//	KEYS[i]       the TAT key of tier i (all in one hash slot)
//	ARGV[2i-1]    tier i's increment cost·T in nanoseconds: 0 for a
//	              request of cost 0, at most maxBacklog
//	ARGV[2i]      tier i's tolerance τ in nanoseconds, written −1−τ for a
//	              shadow tier
//	ARGV[2n+1..3] only when the caller gives the instant: now as unix
//	              seconds, nanoseconds within the second, and the
//	              milliseconds added to every key's expiry (the grace of
//	              Config.FixedTimeGrace); without them the script reads
//	              Redis TIME and adds no grace
//
// It returns {allowed (0 or 1), now_s, now_ns, backlog 1, …, backlog n}:
// the instant it decided at (Redis TIME, or the caller's), which the Store
// reports as Decision.At and from which it learns the offset to Redis's
// clock and each tier's TAT for its rejection cache, and every tier's
// backlog. Every number it
// handles is an integer below 2^53, so Lua's doubles hold it exactly:
// absolute instants stay split in (seconds, nanoseconds), and only offsets
// from now are ever formed. A backlog is clamped at maxBacklog; such a tier
// rejects whatever the cost.
//
// The script is written for Redis's cost model rather than for beauty:
// each redis.call, tonumber, string function and table growth costs Redis
// a measurable fraction of a microsecond, and Redis runs one script at a
// time. So it makes no table but the reply (sized in one step from the
// MGET reply, whose slots then hold each tier's next TAT offset), passes
// shadow in the tolerance's sign instead of an argument of its own, takes
// cost·T precomputed, and leaves remaining, reset and retry-after to the
// Go side. Number conversions are the dearest part of the arithmetic: it
// never hands a whole TAT (19 digits) to tonumber, whose strtod then takes
// a multi-precision path, reads a TAT's nine nanosecond digits with one
// string.byte (5333333328 is the nine '0's, 48·111111111), and hands
// redis.call a PX made with %d rather than a Lua number, which Redis would
// print with %.17g (except beyond 2^31 ms, which %d's C long may not hold
// on every platform, and which %.17g still prints exactly).
const decideSource = `
if redis.replicate_commands then redis.replicate_commands() end
local n = #KEYS
local now_s, now_ns, grace
if #ARGV > 2 * n then
  now_s, now_ns, grace = tonumber(ARGV[2 * n + 1]), tonumber(ARGV[2 * n + 2]), tonumber(ARGV[2 * n + 3])
else
  local t = redis.call('TIME')
  now_s, now_ns, grace = tonumber(t[1]), tonumber(t[2]) * 1000, 0
end
local tats = redis.call('MGET', unpack(KEYS))
local out = {1, now_s, now_ns, unpack(tats)}
for i = 1, n do
  local v, b = tats[i], 0
  if v then
    local ds, tn
    if #v > 9 then
      local a, b, c, d, e, f, g, h, j = string.byte(v, -9, -1)
      ds = tonumber(string.sub(v, 1, -10)) - now_s
      tn = (((((((a * 10 + b) * 10 + c) * 10 + d) * 10 + e) * 10 + f) * 10 + g) * 10 + h) * 10 + j - 5333333328
    else
      ds, tn = -now_s, tonumber(v)
    end
    if ds > 9000000 then
      b = 9007199254740992
    elseif ds > -9000000 then
      b = ds * 1000000000 + (tn - now_ns)
      if b < 0 then b = 0 elseif b > 9007199254740992 then b = 9007199254740992 end
    end
  end
  out[i + 3] = b
  local inc, tol = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local nx = b + inc
  if tol < 0 then
    if nx > -1 - tol then nx = false end
  elseif nx > tol then
    out[1], nx = 0, false
  end
  if inc == 0 then nx = false end
  tats[i] = nx
end
if out[1] == 1 then
  for i = 1, n do
    local nx = tats[i]
    if nx then
      local total = now_ns + nx
      local carry = math.floor(total / 1000000000)
      local ns = total - carry * 1000000000
      if ns < 0 then
        ns, carry = ns + 1000000000, carry - 1
      elseif ns >= 1000000000 then
        ns, carry = ns - 1000000000, carry + 1
      end
      local px = math.ceil(nx / 1000000) + grace
      if px < 2147483648 then px = string.format('%d', px) end
      redis.call('SET', KEYS[i], string.format('%d%09d', now_s + carry, ns), 'PX', px)
    end
  end
end
return out
`

// maxBacklog is the script's clamp on a backlog: 2^53 ns, about 104 days,
// beyond every policy's window (limit.MaxWindow is 100 days).
const maxBacklog = 1 << 53
