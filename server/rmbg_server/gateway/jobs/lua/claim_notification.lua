-- Lease a finished job whose notifier died before it notified.
local p, worker, lease = KEYS[1], ARGV[1], tonumber(ARGV[2])
local due = redis.call('ZRANGEBYSCORE', p .. 'notify', '-inf', '(' .. now, 'LIMIT', 0, 1)
if #due == 0 then return false end
local id = due[1]
local key = p .. 'job:' .. id
if redis.call('EXISTS', key) == 0 then
  redis.call('ZREM', p .. 'notify', id)
  return false
end
redis.call('HSET', key, 'worker', worker, 'lease_until', tostring(now + lease))
redis.call('ZADD', p .. 'notify', now + lease, id)
return redis.call('HGETALL', key)
