-- The Redis server's clock, so replicas with skewed clocks agree on when a lease ran out.
local t = redis.call('TIME'); local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
