-- confirm.lua: make a reservation's sale final (held -> sold), exactly once.
--
-- KEYS[1] tok:{token}   the token's hash: sku, qty, state, deadline (ms)
-- KEYS[2] avail:{sku}   \
-- KEYS[3] held:{sku}     } the counters of the token's SKU
-- KEYS[4] sold:{sku}    /
-- KEYS[5] deadlines     sorted set of live reservations
-- ARGV[1] token         32 lowercase hex digits
--
-- Replies (an array of integers; the first is the status, unique per outcome):
--   {9, qty}   confirmed: qty units moved held -> sold
--   {4}        token unknown (never made, or forgotten 10 min after its fate)
--   {5}        already confirmed
--   {6}        already released
--   {7}        expired: either earlier, or now (TIME >= deadline) — then this
--              script expires it itself: units held -> avail, state expired
--   {8}        KEYS name another SKU than the token's (nothing changed)
--
-- Only a token in state `reserved` changes, and it changes once: the script
-- runs alone, so the state read and the state write cannot interleave with
-- another confirm, release or sweep. After the decision the hash is kept
-- for 10 minutes (PEXPIRE 600000) to answer repeats, and leaves `deadlines`.
--
-- Commands: HMGET, TIME, DECRBY, INCRBY, HSET, PEXPIRE, ZREM = 7 on a
-- decision (confirmed or expired now); 1 (HMGET) when already decided.

local tok = redis.call('HMGET', KEYS[1], 'sku', 'qty', 'state', 'deadline')
local sku, qty, state, deadline = tok[1], tok[2], tok[3], tok[4]
if not state then return {4} end
if state == 'confirmed' then return {5} end
if state == 'released' then return {6} end
if state == 'expired' then return {7} end
if state ~= 'reserved' or not sku or not qty or not deadline then
  return redis.error_reply('ERR confirm: corrupt token hash ' .. KEYS[1])
end
if KEYS[2] ~= 'avail:{' .. sku .. '}' or KEYS[3] ~= 'held:{' .. sku .. '}'
   or KEYS[4] ~= 'sold:{' .. sku .. '}' then
  return {8}
end
qty = tonumber(qty)

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now >= tonumber(deadline) then
  -- Expiry on access: exactly what the sweeper would have done.
  redis.call('INCRBY', KEYS[2], qty)
  redis.call('DECRBY', KEYS[3], qty)
  redis.call('HSET', KEYS[1], 'state', 'expired')
  redis.call('PEXPIRE', KEYS[1], 600000)
  redis.call('ZREM', KEYS[5], ARGV[1])
  return {7}
end

redis.call('DECRBY', KEYS[3], qty)
redis.call('INCRBY', KEYS[4], qty)
redis.call('HSET', KEYS[1], 'state', 'confirmed')
redis.call('PEXPIRE', KEYS[1], 600000)
redis.call('ZREM', KEYS[5], ARGV[1])
return {9, qty}
