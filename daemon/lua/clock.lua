-- clock.lua -- the event clock of a group of instances (clock.mode: event).
--
-- Each instance publishes its own watermark (events up to it are applied)
-- and whether all its partitions are idle.  The sweeper may only advance
-- customers to the smallest watermark of the live, active instances, or it
-- could time out a customer whose event another instance has not applied
-- yet.  Idle instances do not hold the clock back (as idle partitions do
-- not, SPEC section 7); when every instance is idle the clock is the
-- largest watermark: nothing is on its way.
--
-- KEYS[1] watermarks (zset: instance -> watermark)
-- KEYS[2] info       (hash: instance -> "<expiry wall ms>:<idle 0|1>")
-- ARGV[1] instance id   ARGV[2] own watermark ms, "" when holding no partition
-- ARGV[3] now (wall ms) ARGV[4] time to live ms   ARGV[5] "1" if idle, else "0"
--
-- Returns the group watermark as a string, or false when no live instance
-- holds a partition.
if ARGV[2] == '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
else
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
  redis.call('HSET', KEYS[2], ARGV[1], (tonumber(ARGV[3]) + tonumber(ARGV[4])) .. ':' .. ARGV[5])
end
local now = tonumber(ARGV[3])
local all = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local active, idle = false, false
for i = 1, #all, 2 do
  local info = redis.call('HGET', KEYS[2], all[i]) or '0:0'
  local expiry = tonumber(string.match(info, '^(%d+)')) or 0
  if expiry < now then
    redis.call('ZREM', KEYS[1], all[i])
    redis.call('HDEL', KEYS[2], all[i])
  elseif string.sub(info, -1) == '1' then
    idle = all[i + 1] -- ascending: the last one seen is the largest
  elseif not active then
    active = all[i + 1]
  end
end
return active or idle
