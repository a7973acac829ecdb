-- gatehouse counters: acquire, version 1 (key layout <prefix>v1:<logical key>).
-- KEYS[i]: bucket i. ARGV[1]: lease id, ARGV[2]: lease ttl ms,
-- then per bucket: window code (m|d|M|c), limit, cost.
-- Returns {admitted 0|1, first denied index (1-based) or 0, retry ms,
--          then per bucket: used, reset ms, window id}.
-- All buckets are checked first; only when every one has room are all charged.
-- Time is the Redis server's (TIME), never the caller's.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local DAY = 86400000

local function civil(z)
  z = z + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m
end

local function days_from_civil(y, m)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = m > 2 and m - 3 or m + 9
  local doy = math.floor((153 * mp + 2) / 5)
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local function window(code)
  if code == 'm' then
    local w = math.floor(now / 60000)
    return w, (w + 1) * 60000 - now
  elseif code == 'd' then
    local w = math.floor(now / DAY)
    return w, (w + 1) * DAY - now
  else
    local y, m = civil(math.floor(now / DAY))
    local ny, nm = y, m + 1
    if m == 12 then ny, nm = y + 1, 1 end
    return y * 12 + m - 1, days_from_civil(ny, nm) * DAY - now
  end
end

local lease = ARGV[1]
local ttl = tonumber(ARGV[2])
local n = #KEYS
local used, reset, wid, code, limit, cost = {}, {}, {}, {}, {}, {}
local denied, retry = 0, 0
for i = 1, n do
  code[i] = ARGV[3 * i]
  limit[i] = tonumber(ARGV[3 * i + 1])
  cost[i] = tonumber(ARGV[3 * i + 2])
  if code[i] == 'c' then
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
    used[i] = redis.call('ZCARD', KEYS[i])
    reset[i], wid[i] = 0, 0
    if used[i] + 1 > limit[i] then
      if denied == 0 then denied = i end
      if retry < 1000 then retry = 1000 end
    end
  else
    wid[i], reset[i] = window(code[i])
    local h = redis.call('HMGET', KEYS[i], 'w', 'n')
    used[i] = 0
    if h[1] and tonumber(h[1]) == wid[i] then used[i] = tonumber(h[2]) or 0 end
    if used[i] + cost[i] > limit[i] then
      if denied == 0 then denied = i end
      if retry < reset[i] then retry = reset[i] end
    end
  end
end
if denied == 0 then
  for i = 1, n do
    if code[i] == 'c' then
      redis.call('ZADD', KEYS[i], now + ttl, lease)
      used[i] = redis.call('ZCARD', KEYS[i])
      redis.call('PEXPIRE', KEYS[i], ttl + 60000)
    else
      used[i] = used[i] + cost[i]
      redis.call('HSET', KEYS[i], 'w', wid[i], 'n', used[i])
      redis.call('PEXPIRE', KEYS[i], reset[i] + 60000)
    end
  end
end
local out = {denied == 0 and 1 or 0, denied, retry}
for i = 1, n do
  out[#out + 1] = used[i]
  out[#out + 1] = reset[i]
  out[#out + 1] = wid[i]
end
return out
