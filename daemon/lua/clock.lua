-- clock.lua -- the event clock of a group of instances (clock.mode: event).
--
-- Each instance publishes its own watermark (events up to it are applied);
-- the sweeper may only advance customers to the smallest watermark of the
-- live instances that hold partitions, or it could time out a customer whose
-- event another instance has not applied yet.
--
-- KEYS[1] watermarks (zset: instance -> watermark)
-- KEYS[2] expiries   (hash: instance -> wall ms after which it is gone)
-- ARGV[1] instance id   ARGV[2] own watermark ms, "" when holding no partition
-- ARGV[3] now (wall ms) ARGV[4] time to live ms
--
-- Returns the group watermark as a string, or false when no instance holds
-- a partition.
if ARGV[2] == '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
else
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
  redis.call('HSET', KEYS[2], ARGV[1], tonumber(ARGV[3]) + tonumber(ARGV[4]))
end
local now = tonumber(ARGV[3])
while true do
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if #first == 0 then
    return false
  end
  local exp = tonumber(redis.call('HGET', KEYS[2], first[1]) or '0')
  if exp >= now then
    return first[2]
  end
  redis.call('ZREM', KEYS[1], first[1])
  redis.call('HDEL', KEYS[2], first[1])
end
