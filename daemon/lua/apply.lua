-- apply.lua -- compare-and-set of one customer's update (SPEC section 4).
--
-- The lifecycle rules run in clvd; this script only checks that the state
-- clvd read is still current and then writes everything the update touches,
-- atomically, in the customer's shard (one hash slot).
--
-- KEYS[1] state   KEYS[2] due index   KEYS[3] outbox   KEYS[4] stats
-- ARGV[1] version clvd read (first 8 bytes of the state), "" if none
-- ARGV[2] new state
-- ARGV[3] customer id (due index member)
-- ARGV[4] next deadline in ms, "" for none
-- ARGV[5] number n of outbox entries, then n field/value pairs,
--         then any number of stats field/increment pairs
--
-- Returns 1 when applied, or {0, current state or false} when the state
-- changed since it was read, so that clvd can recompute without a GET.
local cur = redis.call('GET', KEYS[1])
if cur then
  if string.sub(cur, 1, 8) ~= ARGV[1] then
    return {0, cur}
  end
elseif ARGV[1] ~= '' then
  return {0, false}
end

redis.call('SET', KEYS[1], ARGV[2])
if ARGV[4] == '' then
  redis.call('ZREM', KEYS[2], ARGV[3])
else
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
end

local i = 6
local n = tonumber(ARGV[5])
if n > 0 then
  local pairs = {}
  for j = 1, 2 * n do
    pairs[j] = ARGV[i]
    i = i + 1
  end
  redis.call('HSET', KEYS[3], unpack(pairs))
end
while i < #ARGV do
  redis.call('HINCRBY', KEYS[4], ARGV[i], ARGV[i + 1])
  i = i + 2
end
return 1
