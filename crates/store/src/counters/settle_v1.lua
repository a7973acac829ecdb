-- gatehouse counters: settle, version 1. KEYS[i]: a rate bucket;
-- ARGV[2i-1]: the window id it was charged in, ARGV[2i]: delta (may be negative).
-- Applied only while the bucket is still in that window; never below 0.
for i = 1, #KEYS do
  local w = tonumber(ARGV[2 * i - 1])
  local delta = tonumber(ARGV[2 * i])
  local h = redis.call('HMGET', KEYS[i], 'w', 'n')
  if h[1] and tonumber(h[1]) == w then
    local v = (tonumber(h[2]) or 0) + delta
    if v < 0 then v = 0 end
    redis.call('HSET', KEYS[i], 'n', v)
  end
end
return {}
