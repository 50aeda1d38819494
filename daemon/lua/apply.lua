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
-- KEYS: the state of each customer of the call, group after group; then,
--   for each group with a customer in the full form ("+" below), in turn,
--   its due index, outbox and counters (a group of short forms touches
--   none of them: its keys would be Lua strings for nothing)
-- ARGV[1]: the number of customers in the call (a customer comes once)
-- ARGV, from 2, for each group in turn: the number of its customers, then
-- for each customer:
--   version clvd read (first 8 bytes of the state), "" if none
--   new state
--   "" when that is all: the due entry stays, no outbox entry, no counter
--     moves (most updates: activity only pushes the deadline later), or
--   "+" followed by:
--     customer id (due index member)
--     next deadline in ms; "" for none (remove the entry); "-" to leave the
--       entry as it is (the deadline only moved later: an early entry is
--       harmless, the sweeper recomputes the customer when it fires)
--     n outbox entries, then n field/value pairs
--     m counter moves, then m field/increment pairs
--
-- What the script costs Redis is mostly Lua, not the commands: every
-- argument is made a Lua string before the script runs, and every
-- redis.call converts its arguments and its reply.  So the short form
-- spares the common update four arguments, and the states are read with
-- one MGET and written with one MSET for the whole call rather than a
-- command per customer (docs/performance.md, eighth session).
--
-- Returns the conflicts only, as pairs: the customer's position in the call
-- (1-based) and its current state, or false if there is none, so that clvd
-- can recompute without a GET.  An empty array: every customer applied.

-- One group: its customers from position i and ARGV[a + 1] on, its keys
-- (if it has any) from KEYS[g].  The states it may write go to `set`;
-- returns where the next group's customers, arguments and keys start.
local function apply_group(i, a, g, current, set, conflicts)
  -- made when first needed: most groups write states only
  local out, zadd, zrem, incr, order, any_full
  local n = tonumber(ARGV[a])
  a = a + 1
  for c = i, i + n - 1 do
    local version, state, cur = ARGV[a], ARGV[a + 1], current[c]
    local full = ARGV[a + 2] == '+'
    local ok, nout, nstats = version == '', 0, 0
    if cur then
      -- the version is the state's first 8 bytes; find() compares them
      -- without making a new string
      ok = not ok and string.find(cur, version, 1, true) == 1
    end
    if full then
      any_full = true
      nout = tonumber(ARGV[a + 5])
      nstats = tonumber(ARGV[a + 6 + 2 * nout])
    end
    if not ok then
      conflicts[#conflicts + 1] = c
      conflicts[#conflicts + 1] = cur
    else
      set[#set + 1] = KEYS[c]
      set[#set + 1] = state
    end
    if ok and full then
      local id, due = ARGV[a + 3], ARGV[a + 4]
      if due == '' then
        zrem = zrem or {}
        zrem[#zrem + 1] = id
      elseif due ~= '-' then
        zadd = zadd or {}
        zadd[#zadd + 1] = due
        zadd[#zadd + 1] = id
      end
      if nout > 0 then
        out = out or {}
        for j = a + 6, a + 5 + 2 * nout do
          out[#out + 1] = ARGV[j]
        end
      end
      if nstats > 0 then
        incr, order = incr or {}, order or {}
      end
      for j = a + 7 + 2 * nout, a + 6 + 2 * nout + 2 * nstats, 2 do
        -- kept as the argument's string until a second move of the same
        -- counter: no number to format back for HINCRBY
        local f = ARGV[j]
        local prev = incr[f]
        if prev == nil then
          incr[f] = ARGV[j + 1]
          order[#order + 1] = f
        else
          incr[f] = prev + ARGV[j + 1]
        end
      end
    end
    if full then
      a = a + 7 + 2 * nout + 2 * nstats
    else
      a = a + 3
    end
  end

  if zadd then
    redis.call('ZADD', KEYS[g], unpack(zadd))
  end
  if zrem then
    redis.call('ZREM', KEYS[g], unpack(zrem))
  end
  if out then
    redis.call('HSET', KEYS[g + 1], unpack(out))
  end
  if order then
    for _, f in ipairs(order) do
      if incr[f] ~= 0 then
        redis.call('HINCRBY', KEYS[g + 2], f, incr[f])
      end
    end
  end
  return i + n, a, any_full and g + 3 or g
end

local n = tonumber(ARGV[1])
local conflicts, set = {}, {}
if n == 0 then
  return conflicts
end
-- a missing state is false here, and false in the reply
local current = redis.call('MGET', unpack(KEYS, 1, n))
local i, a, g = 1, 2, n + 1
while i <= n do
  i, a, g = apply_group(i, a, g, current, set, conflicts)
end
if #set > 0 then
  redis.call('MSET', unpack(set))
end
return conflicts
