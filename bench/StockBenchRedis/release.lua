-- release.lua: give a reservation's units back to sale (held -> avail), exactly once.
--
-- KEYS[1] tok:{token}   the token's hash: sku, qty, state, deadline (ms)
-- KEYS[2] avail:{sku}   \
-- KEYS[3] held:{sku}     } the counters of the token's SKU
-- KEYS[4] sold:{sku}    /  (unused here; same KEYS as confirm.lua)
-- KEYS[5] deadlines     sorted set of live reservations
-- ARGV[1] token         32 lowercase hex digits
--
-- Replies (an array of integers; the first is the status, unique per outcome):
--   {10, qty}  released: qty units moved held -> avail
--   {4}        token unknown (never made, or forgotten 10 min after its fate)
--   {5}        already confirmed
--   {6}        already released
--   {7}        expired: either earlier, or now (TIME >= deadline) — then this
--              script expires it itself (units held -> avail, state expired)
--   {8}        KEYS name another SKU than the token's (nothing changed)
--
-- Only a token in state `reserved` changes, and it changes once (the script
-- runs alone). After the decision the hash is kept for 10 minutes
-- (PEXPIRE 600000) to answer repeats, and leaves `deadlines`.
--
-- Commands: HMGET, TIME, INCRBY, DECRBY, HSET, PEXPIRE, ZREM = 7 on a
-- decision (released or expired now); 1 (HMGET) when already decided.

local tok = redis.call('HMGET', KEYS[1], 'sku', 'qty', 'state', 'deadline')
local sku, qty, state, deadline = tok[1], tok[2], tok[3], tok[4]
if not state then return {4} end
if state == 'confirmed' then return {5} end
if state == 'released' then return {6} end
if state == 'expired' then return {7} end
if state ~= 'reserved' or not sku or not qty or not deadline then
  return redis.error_reply('ERR release: corrupt token hash ' .. KEYS[1])
end
if KEYS[2] ~= 'avail:{' .. sku .. '}' or KEYS[3] ~= 'held:{' .. sku .. '}'
   or KEYS[4] ~= 'sold:{' .. sku .. '}' then
  return {8}
end
qty = tonumber(qty)

-- Units go back to avail either way; only the state and the reply differ.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expired = now >= tonumber(deadline)
redis.call('INCRBY', KEYS[2], qty)
redis.call('DECRBY', KEYS[3], qty)
redis.call('HSET', KEYS[1], 'state', expired and 'expired' or 'released')
redis.call('PEXPIRE', KEYS[1], 600000)
redis.call('ZREM', KEYS[5], ARGV[1])
if expired then return {7} end
return {10, qty}
