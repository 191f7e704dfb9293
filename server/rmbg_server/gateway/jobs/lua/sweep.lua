-- Delete finished jobs whose ttl has passed.
local p, n = KEYS[1], 0
for _, status in ipairs({'completed', 'failed', 'cancelled'}) do
  local done = p .. 'done:' .. status
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', done, '-inf', '(' .. now)) do
    redis.call('DEL', p .. 'job:' .. id)
    redis.call('ZREM', p .. 'notify', id)
    n = n + 1
  end
  redis.call('ZREMRANGEBYSCORE', done, '-inf', '(' .. now)
end
return n
