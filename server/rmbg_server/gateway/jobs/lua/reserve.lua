-- Reserve a sync task id unless a job or a reservation has it.
local p, id = KEYS[1], ARGV[1]
if redis.call('EXISTS', p .. 'job:' .. id) == 1 then return 0 end
if redis.call('SET', p .. 'rsv:' .. id, '1', 'NX', 'EX', ARGV[2]) then return 1 end
return 0
