-- apply.lua -- compare-and-set of a batch's customers (SPEC section 4).
--
-- The lifecycle rules run in clvd; this script only checks, customer by
-- customer, that the state clvd read is still current, and then writes
-- everything the update touches, atomically.  A call carries one or more
-- groups, each the customers of one shard: on a Redis Cluster one group
-- (a call must stay in one hash slot), on a single Redis as many groups as
-- fill the call, because the fixed cost of a call is as large as the work
-- of one customer (docs/performance.md, seventh session).  The due index,
-- outbox and counter writes are paid once per group.
--
-- KEYS, for each group in turn:
--   due index, outbox, stats, then the state of each of its customers
-- ARGV, for each group in turn: the number of its customers, then for each
-- customer:
--   version clvd read (first 8 bytes of the state), "" if none
--   new state
--   customer id (due index member)
--   next deadline in ms; "" for none (remove the entry); "-" to leave the
--     entry as it is (the deadline only moved later: an early entry is
--     harmless, the sweeper recomputes the customer when it fires)
--   n outbox entries, then n field/value pairs
--   m counter moves, then m field/increment pairs
--
-- Returns one result per customer, in order: 1 when applied, or (conflict:
-- the state changed since it was read) the current state, or false if there
-- is none, so that clvd can recompute without a GET.

-- One group: its customers from KEYS[k + 3] and ARGV[a + 1] on.  Returns
-- where the next group starts.
local function apply_group(k, a, results)
  local out, zadd, zrem, incr, order = {}, {}, {}, {}, {}
  local n = tonumber(ARGV[a])
  a = a + 1
  for i = k + 3, k + 2 + n do
    local version, state, id, due = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
    local nout = tonumber(ARGV[a + 4])
    local nstats = tonumber(ARGV[a + 5 + 2 * nout])
    -- written first and put back on a conflict, which is rare: one key
    -- lookup and one command per customer instead of a GET and a SET
    local cur = redis.call('SET', KEYS[i], state, 'GET')
    local ok
    if cur then
      ok = string.sub(cur, 1, 8) == version
    else
      ok = version == ''
    end
    if ok then
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
      if cur then
        redis.call('SET', KEYS[i], cur)
      else
        redis.call('DEL', KEYS[i])
      end
      results[#results + 1] = cur or false
    end
    a = a + 6 + 2 * nout + 2 * nstats
  end

  if #zadd > 0 then
    redis.call('ZADD', KEYS[k], unpack(zadd))
  end
  if #zrem > 0 then
    redis.call('ZREM', KEYS[k], unpack(zrem))
  end
  if #out > 0 then
    redis.call('HSET', KEYS[k + 1], unpack(out))
  end
  for _, f in ipairs(order) do
    if incr[f] ~= 0 then
      redis.call('HINCRBY', KEYS[k + 2], f, incr[f])
    end
  end
  return k + 3 + n, a
end

local results = {}
local k, a = 1, 1
while k <= #KEYS do
  k, a = apply_group(k, a, results)
end
return results
