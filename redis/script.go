package redis

// decideSource is the Lua script that takes one decision over every tier.
//
//	KEYS[i]          the TAT key of tier i (all in one hash slot)
//	ARGV[1], ARGV[2] now as unix seconds and nanoseconds within the second,
//	                 or "" and "" to take now from Redis TIME
//	ARGV[3]          the cost
//	ARGV[4]          milliseconds added to every key's expiry (the grace
//	                 of Config.FixedTimeGrace; 0 on Redis time)
//	ARGV[5+3(i-1)]   tier i's emission interval T in nanoseconds
//	ARGV[6+3(i-1)]   tier i's tolerance τ in nanoseconds
//	ARGV[7+3(i-1)]   "1" when tier i is a shadow tier, "0" otherwise
//
// It returns {allowed (0 or 1), now seconds, now nanoseconds, backlog 1,
// …, backlog n}. Every number it handles is an integer below 2^53, so
// Lua's doubles hold it exactly: absolute instants stay split in
// (seconds, nanoseconds), and only offsets from now are ever formed. A
// backlog is clamped at maxBacklog; such a tier rejects whatever the cost.
const decideSource = `
if redis.replicate_commands then redis.replicate_commands() end
local E9 = 1000000000
local MAXB = 9007199254740992
local now_s, now_ns
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now_s, now_ns = tonumber(t[1]), tonumber(t[2]) * 1000
else
  now_s, now_ns = tonumber(ARGV[1]), tonumber(ARGV[2])
end
local cost = tonumber(ARGV[3])
local grace = tonumber(ARGV[4])
local n = #KEYS
local tats = redis.call('MGET', unpack(KEYS))
local backlog, nexts, ok = {}, {}, {}
local allowed = 1
for i = 1, n do
  local b = 0
  local v = tats[i]
  if v then
    local ts, tn = 0, tonumber(v)
    if #v > 9 then
      ts, tn = tonumber(string.sub(v, 1, -10)), tonumber(string.sub(v, -9))
    end
    local ds = ts - now_s
    if ds > 9000000 then
      b = MAXB
    elseif ds > -9000000 then
      b = ds * E9 + (tn - now_ns)
      if b < 0 then b = 0 end
      if b > MAXB then b = MAXB end
    end
  end
  local j = 5 + 3 * (i - 1)
  local nx = b + cost * tonumber(ARGV[j])
  backlog[i], nexts[i] = b, nx
  ok[i] = nx <= tonumber(ARGV[j + 1])
  if not ok[i] and ARGV[j + 2] ~= '1' then allowed = 0 end
end
if allowed == 1 and cost > 0 then
  for i = 1, n do
    if ok[i] then
      local total = now_ns + nexts[i]
      local carry = math.floor(total / E9)
      local ns = total - carry * E9
      if ns < 0 then ns, carry = ns + E9, carry - 1 end
      if ns >= E9 then ns, carry = ns - E9, carry + 1 end
      redis.call('SET', KEYS[i], string.format('%d%09d', now_s + carry, ns),
        'PX', math.ceil(nexts[i] / 1000000) + grace)
    end
  end
end
local out = {allowed, now_s, now_ns}
for i = 1, n do out[3 + i] = backlog[i] end
return out
`

// maxBacklog is the script's clamp on a backlog: 2^53 ns, about 104 days,
// beyond every policy's window (limit.MaxWindow is 100 days).
const maxBacklog = 1 << 53
