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
--   "" when that is all: the due entry stays, no outbox entry, no counter
--     moves (most updates: activity only pushes the deadline later), or
--   "+" followed by:
--     customer id (due index member)
--     next deadline in ms; "" for none (remove the entry); "-" to leave the
--       entry as it is (the deadline only moved later: an early entry is
--       harmless, the sweeper recomputes the customer when it fires)
--     n outbox entries, then n field/value pairs
--     m counter moves, then m field/increment pairs
-- Every argument is a Lua string made before the script runs, so the short
-- form spares the common update four of them and two tonumber()s
-- (docs/performance.md, eighth session).
--
-- Returns the conflicts only, as pairs: the customer's position in the call
-- (1-based) and its current state, or false if there is none, so that clvd
-- can recompute without a GET.  An empty array: every customer applied.

-- One group: its customers from KEYS[k + 3] and ARGV[a + 1] on, the first
-- at position pos of the call.  Returns where the next group starts.
local function apply_group(k, a, conflicts, pos)
  -- made when first needed: most groups write states only
  local out, zadd, zrem, incr, order
  local n = tonumber(ARGV[a])
  a = a + 1
  for i = k + 3, k + 2 + n do
    local version, state = ARGV[a], ARGV[a + 1]
    local full = ARGV[a + 2] == '+'
    -- written first and put back on a conflict, which is rare: one key
    -- lookup and one command per customer instead of a GET and a SET
    local cur = redis.call('SET', KEYS[i], state, 'GET')
    local ok
    if cur then
      -- the version is the state's first 8 bytes; find() compares them
      -- without making a new string
      ok = version ~= '' and string.find(cur, version, 1, true) == 1
    else
      ok = version == ''
    end
    local nout, nstats = 0, 0
    if full then
      nout = tonumber(ARGV[a + 5])
      nstats = tonumber(ARGV[a + 6 + 2 * nout])
    end
    if not ok then
      if cur then
        redis.call('SET', KEYS[i], cur)
      else
        redis.call('DEL', KEYS[i])
      end
      conflicts[#conflicts + 1] = pos
      conflicts[#conflicts + 1] = cur or false
    elseif full then
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
        local f, prev = ARGV[j], incr[ARGV[j]]
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
    pos = pos + 1
  end

  if zadd then
    redis.call('ZADD', KEYS[k], unpack(zadd))
  end
  if zrem then
    redis.call('ZREM', KEYS[k], unpack(zrem))
  end
  if out then
    redis.call('HSET', KEYS[k + 1], unpack(out))
  end
  if order then
    for _, f in ipairs(order) do
      if incr[f] ~= 0 then
        redis.call('HINCRBY', KEYS[k + 2], f, incr[f])
      end
    end
  end
  return k + 3 + n, a, pos
end

local conflicts = {}
local k, a, pos = 1, 1, 1
while k <= #KEYS do
  k, a, pos = apply_group(k, a, conflicts, pos)
end
return conflicts
