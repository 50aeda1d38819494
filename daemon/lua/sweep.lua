-- sweep.lua -- take (or keep) the sweep lease of one shard and return its
-- due customers.  Instances share the sweeping shard by shard: whoever holds
-- a shard's lease sweeps it; the others skip it until the lease lapses
-- (its holder stopped).  Same slot as the due index: {sN}.
--
-- KEYS[1] lease   KEYS[2] due index
-- ARGV[1] instance id   ARGV[2] lease ms   ARGV[3] now (ms)   ARGV[4] limit
--
-- Returns the due members, or false if another instance holds the lease.
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] then
  return false
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[3], 'LIMIT', 0, ARGV[4])
