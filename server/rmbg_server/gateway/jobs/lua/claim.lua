-- Lease the job whose lease expired first, else the head of the queue.
local p, worker, lease = KEYS[1], ARGV[1], tonumber(ARGV[2])
local id
local expired = redis.call('ZRANGEBYSCORE', p .. 'leases', '-inf', '(' .. now, 'LIMIT', 0, 1)
if #expired > 0 then
  id = expired[1]
else
  local head = redis.call('ZRANGE', p .. 'queue', 0, 0)
  if #head == 0 then return false end
  id = head[1]
  redis.call('ZREM', p .. 'queue', id)
end
local key = p .. 'job:' .. id
if redis.call('EXISTS', key) == 0 then
  redis.call('ZREM', p .. 'leases', id)
  return false
end
redis.call('HSET', key, 'status', 'processing', 'worker', worker, 'lease_until', tostring(now + lease),
           'updated_at', tostring(now))
redis.call('HINCRBY', key, 'attempts', 1)
redis.call('ZADD', p .. 'leases', now + lease, id)
return redis.call('HGETALL', key)
