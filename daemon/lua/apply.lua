-- apply.lua -- compare-and-set of several customers of one shard (SPEC
-- section 4).
--
-- The lifecycle rules run in clvd; this script only checks, customer by
-- customer, that the state clvd read is still current, and then writes
-- everything the update touches, atomically, in the shard (one hash slot).
-- One call carries as many of the shard's customers as clvd's batch has:
-- the fixed cost of a script call, and of the due index, outbox and counter
-- writes, is paid once per shard instead of once per customer.
--
-- KEYS[1] due index   KEYS[2] outbox   KEYS[3] stats
-- KEYS[3 + i] the state of customer i
-- ARGV, for each customer i in turn:
--   version clvd read (first 8 bytes of the state), "" if none
--   new state
--   customer id (due index member)
--   next deadline in ms; "" for none (remove the entry); "-" to leave the
--     entry as it is (the deadline only moved later: an early entry is
--     harmless, the sweeper recomputes the customer when it fires)
--   n outbox entries, then n field/value pairs
--   m counter moves, then m field/increment pairs
--
-- Returns one result per customer: 1 when applied, or (conflict: the state
-- changed since it was read) the current state, or false if there is none,
-- so that clvd can recompute without a GET.
local out, zadd, zrem, incr, order = {}, {}, {}, {}, {}
local results = {}
local a = 1

for i = 4, #KEYS do
  local version, state, id, due = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local nout = tonumber(ARGV[a + 4])
  local nstats = tonumber(ARGV[a + 5 + 2 * nout])
  local cur = redis.call('GET', KEYS[i])
  local ok
  if cur then
    ok = string.sub(cur, 1, 8) == version
  else
    ok = version == ''
  end
  if ok then
    redis.call('SET', KEYS[i], state)
    if due == '' then
      zrem[#zrem + 1] = id
    elseif due ~= '-' then
      zadd[#zadd + 1] = due
      zadd[#zadd + 1] = id
    end
    for j = a + 5, a + 4 + 2 * nout do
      out[#out + 1] = ARGV[j]
    end
    for j = a + 6 + 2 * nout, a + 5 + 2 * nout + 2 * nstats, 2 do
      local f = ARGV[j]
      if incr[f] == nil then
        incr[f] = 0
        order[#order + 1] = f
      end
      incr[f] = incr[f] + tonumber(ARGV[j + 1])
    end
    results[#results + 1] = 1
  else
    results[#results + 1] = cur or false
  end
  a = a + 6 + 2 * nout + 2 * nstats
end

if #zadd > 0 then
  redis.call('ZADD', KEYS[1], unpack(zadd))
end
if #zrem > 0 then
  redis.call('ZREM', KEYS[1], unpack(zrem))
end
if #out > 0 then
  redis.call('HSET', KEYS[2], unpack(out))
end
for _, f in ipairs(order) do
  if incr[f] ~= 0 then
    redis.call('HINCRBY', KEYS[3], f, incr[f])
  end
end
return results
