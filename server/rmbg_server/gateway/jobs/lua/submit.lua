-- Store a new job unless its id was used; queued jobs join the FIFO queue.
local p, id, status, ttl = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
local key = p .. 'job:' .. id
if redis.call('EXISTS', key) == 1 or redis.call('EXISTS', p .. 'rsv:' .. id) == 1 then return 0 end
redis.call('HSET', key, unpack(ARGV, 4))
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
