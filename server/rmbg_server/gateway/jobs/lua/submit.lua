-- Store a new job unless its id was used; queued jobs join the FIFO queue unless it holds max_queued
-- (ARGV[4], -1: no bound): then -(queued + 1), checked and inserted in this one script.
local p, id, status, ttl, max_queued = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local key = p .. 'job:' .. id
if redis.call('EXISTS', key) == 1 or redis.call('EXISTS', p .. 'rsv:' .. id) == 1 then return 0 end
if status == 'queued' and max_queued >= 0 then
  local queued = redis.call('ZCARD', p .. 'queue')
  if queued >= max_queued then return -(queued + 1) end
end
redis.call('HSET', key, unpack(ARGV, 5))
if status == 'queued' then
  local seq = redis.call('INCR', p .. 'seq')
  redis.call('HSET', key, 'seq', seq)
  redis.call('ZADD', p .. 'queue', seq, id)
else
  local expires = tonumber(redis.call('HGET', key, 'updated_at')) + ttl
  redis.call('HSET', key, 'expires_at', tostring(expires))
  redis.call('ZADD', p .. 'done:' .. status, expires, id)
end
return 1
