-- Store a file unless its tenant's live bytes would pass the quota: checked and stored in this one
-- script, so replicas never overshoot it together.
-- KEYS[1] prefix; ARGV: uuid, tenant ('' for none), name, content type, ttl seconds, quota (-1: none), data.
local t = redis.call('TIME'); local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local p, id, tenant, name, ctype, ttl, quota, data = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4],
  tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local live, sizes, total = p .. 'usage:' .. tenant, p .. 'sizes:' .. tenant, p .. 'bytes:' .. tenant
-- forget what expired (Redis dropped the files themselves)
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', live, '-inf', now)) do
  local size = tonumber(redis.call('HGET', sizes, gone) or '0')
  redis.call('DECRBY', total, size)
  redis.call('HDEL', sizes, gone)
end
redis.call('ZREMRANGEBYSCORE', live, '-inf', now)
local used = tonumber(redis.call('GET', total) or '0')
local old = tonumber(redis.call('HGET', sizes, id) or '0')
if quota >= 0 and used - old + #data > quota then return -(used + 1) end
local key = p .. 'file:' .. id
redis.call('DEL', key)
redis.call('HSET', key, 'data', data, 'content_type', ctype, 'name', name, 'tenant', tenant)
redis.call('EXPIRE', key, math.max(math.floor(ttl), 1))
redis.call('ZADD', live, now + ttl, id)
redis.call('HSET', sizes, id, #data)
redis.call('INCRBY', total, #data - old)
return 1
