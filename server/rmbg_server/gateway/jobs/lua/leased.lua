-- Transitions that need the lease: extend, notified, release, finish (ARGV: id, worker, action, args).
local p, id, worker, action = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local key = p .. 'job:' .. id
if redis.call('HGET', key, 'worker') ~= worker then return 0 end
local status, notify = redis.call('HGET', key, 'status'), redis.call('HGET', key, 'notify')
if action == 'extend' then
  local until_ = now + tonumber(ARGV[4])
  if status == 'processing' then
    redis.call('ZADD', p .. 'leases', until_, id)
  elseif notify == 'pending' then
    redis.call('ZADD', p .. 'notify', until_, id)
  else
    return 0
  end
  redis.call('HSET', key, 'lease_until', tostring(until_))
  return 1
end
if action == 'notified' then
  if notify ~= 'pending' then return 0 end
  redis.call('ZREM', p .. 'notify', id)
  redis.call('HDEL', key, 'worker', 'lease_until')
  redis.call('HSET', key, 'notify', 'done')
  return 1
end
if status ~= 'processing' then return 0 end
redis.call('ZREM', p .. 'leases', id)
redis.call('HDEL', key, 'worker', 'lease_until')
if action == 'release' then
  local attempts = math.max(tonumber(redis.call('HGET', key, 'attempts')) - 1, 0)
  redis.call('HSET', key, 'status', 'queued', 'attempts', attempts, 'updated_at', tostring(now))
  redis.call('ZADD', p .. 'queue', tonumber(redis.call('HGET', key, 'seq')), id)
  return 1
end
local column, body, notify_lease = ARGV[5], ARGV[6], tonumber(ARGV[7])
status = ARGV[4]
local expires = now + tonumber(redis.call('HGET', key, 'ttl_s'))
redis.call('HSET', key, 'status', status, column, body, 'updated_at', tostring(now), 'expires_at', tostring(expires))
redis.call('ZADD', p .. 'done:' .. status, expires, id)
if notify_lease >= 0 then
  redis.call('HSET', key, 'worker', worker, 'lease_until', tostring(now + notify_lease), 'notify', 'pending')
  redis.call('ZADD', p .. 'notify', now + notify_lease, id)
end
return 1
