-- queued -> cancelled.
local p, id = KEYS[1], ARGV[1]
local key = p .. 'job:' .. id
if redis.call('HGET', key, 'status') ~= 'queued' then return 0 end
local expires = now + tonumber(redis.call('HGET', key, 'ttl_s'))
redis.call('ZREM', p .. 'queue', id)
redis.call('HSET', key, 'status', 'cancelled', 'updated_at', tostring(now), 'expires_at', tostring(expires))
redis.call('ZADD', p .. 'done:cancelled', expires, id)
return 1
