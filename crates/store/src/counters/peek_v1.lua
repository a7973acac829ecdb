-- gatehouse counters: peek, version 1 (read only). KEYS[i]: bucket, ARGV[i]: window code.
-- Returns per bucket: used, reset ms, window id (server time).
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
local out = {}
for i = 1, #KEYS do
  local code = ARGV[i]
  local used, reset, w = 0, 0, 0
  if code == 'c' then
    used = redis.call('ZCOUNT', KEYS[i], '(' .. now, '+inf')
  else
    if code == 'm' then
      w = math.floor(now / 60000); reset = (w + 1) * 60000 - now
    elseif code == 'd' then
      w = math.floor(now / DAY); reset = (w + 1) * DAY - now
    else
      local y, m = civil(math.floor(now / DAY))
      local ny, nm = y, m + 1
      if m == 12 then ny, nm = y + 1, 1 end
      w = y * 12 + m - 1; reset = days_from_civil(ny, nm) * DAY - now
    end
    local h = redis.call('HMGET', KEYS[i], 'w', 'n')
    if h[1] and tonumber(h[1]) == w then used = tonumber(h[2]) or 0 end
  end
  out[#out + 1] = used
  out[#out + 1] = reset
  out[#out + 1] = w
end
return out
