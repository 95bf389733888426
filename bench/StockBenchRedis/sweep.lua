-- sweep.lua: expire reservations whose deadline has passed (TIME >= deadline).
--
-- KEYS[1] deadlines     sorted set: member token, score deadline (ms)
-- ARGV[1] limit         most tokens to examine in this call, integer >= 1
--
-- Reply: {expired, examined}. `examined` tokens were due and left
-- `deadlines`; `expired` of them were still `reserved` and had their units
-- moved back (held -> avail), state set to expired and PEXPIRE 600000 (the
-- others were decided already, or their hash is gone). A production
-- sweeper calls this every 100 ms and again at once while examined == limit.
--
-- Commands: TIME, ZRANGEBYSCORE, then per due token HMGET and, if it was
-- still reserved, INCRBY, DECRBY, HSET, PEXPIRE; one ZREM per 1000 tokens.
-- That is 2 + 5 per expired token + 1 per 1000 examined.
--
-- NOT CLUSTER-SAFE: the keys of each token (tok:{token}, avail:{sku},
-- held:{sku}) are derived inside the script from `deadlines` and the token
-- hash, not passed in KEYS. That is fine on one Redis instance (with or
-- without replicas), the standard deployment for this design; a Redis
-- Cluster would reject the cross-slot access.

local limit = tonumber(ARGV[1])
if not limit or limit < 1 or limit ~= math.floor(limit) then
  return redis.error_reply('ERR sweep: limit must be an integer >= 1')
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now),
                       'LIMIT', 0, string.format('%d', limit))
local expired = 0
for _, token in ipairs(due) do
  local key = 'tok:{' .. token .. '}'
  local tok = redis.call('HMGET', key, 'sku', 'qty', 'state')
  if tok[3] == 'reserved' and tok[1] and tok[2] then
    local sku, qty = tok[1], tok[2]
    redis.call('INCRBY', 'avail:{' .. sku .. '}', qty)
    redis.call('DECRBY', 'held:{' .. sku .. '}', qty)
    redis.call('HSET', key, 'state', 'expired')
    redis.call('PEXPIRE', key, 600000)
    expired = expired + 1
  end
end
for i = 1, #due, 1000 do
  redis.call('ZREM', KEYS[1], unpack(due, i, math.min(i + 999, #due)))
end
return {expired, #due}
