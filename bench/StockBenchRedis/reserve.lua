-- reserve.lua: hold `qty` units of one SKU under a caller-made token.
--
-- KEYS[1] avail:{sku}   units on sale
-- KEYS[2] held:{sku}    units reserved
-- KEYS[3] tok:{token}   the token's hash (must not exist yet)
-- KEYS[4] deadlines     sorted set: member token, score deadline (ms)
-- ARGV[1] sku           the SKU name (stored in the token hash)
-- ARGV[2] qty           units to hold, integer >= 1
-- ARGV[3] ttl_ms        hold time in ms; 0 means the default, 90000
-- ARGV[4] token         32 lowercase hex digits
--
-- Replies (an array of integers; the first is the status, unique per outcome):
--   {0, available_after, deadline_ms}   reserved
--   {1, available}                      out of stock (nothing changed)
--   {2}                                 unknown SKU (avail key missing)
--   {3}                                 token id already exists (refused)
--   error reply                         ARGV not integers in range
--
-- Commands: GET (+ EXISTS, TIME, DECRBY, INCRBY, HSET, ZADD when granted):
-- 7 on success, 1 when out of stock or the SKU is unknown, 2 on a reused token.
-- The deadline comes from the server clock (TIME); Redis 7 replicates a
-- script by its effects, so a non-deterministic TIME before writes is allowed.

local qty = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
if not qty or qty < 1 or qty ~= math.floor(qty) then
  return redis.error_reply('ERR reserve: qty must be an integer >= 1')
end
if not ttl or ttl < 0 or ttl ~= math.floor(ttl) then
  return redis.error_reply('ERR reserve: ttl_ms must be an integer >= 0')
end
if ttl == 0 then ttl = 90000 end

-- Check-and-decrement: the script runs alone, so nothing can change avail
-- between this read and the DECRBY below; avail never goes below zero.
local avail = redis.call('GET', KEYS[1])
if not avail then return {2} end
avail = tonumber(avail)
if avail < qty then return {1, avail} end

if redis.call('EXISTS', KEYS[3]) == 1 then return {3} end

local t = redis.call('TIME')
local deadline = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + ttl
local after = redis.call('DECRBY', KEYS[1], qty)
redis.call('INCRBY', KEYS[2], qty)
-- string.format('%d'): a Lua number as a command argument may be printed in
-- exponent form; the hash must hold plain integers.
redis.call('HSET', KEYS[3], 'sku', ARGV[1], 'qty', string.format('%d', qty),
           'state', 'reserved', 'deadline', string.format('%d', deadline))
redis.call('ZADD', KEYS[4], string.format('%d', deadline), ARGV[4])
return {0, after, deadline}
