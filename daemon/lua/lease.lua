-- lease.lua -- take or renew a lease held by one instance.
-- KEYS[1] lease key   ARGV[1] instance id   ARGV[2] lease ms
-- Returns 1 if this instance holds the lease now, 0 if another does.
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
