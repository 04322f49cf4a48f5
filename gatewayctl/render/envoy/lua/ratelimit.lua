-- Which global limit refused a request (global_limits.py), and when it would be admitted:
-- Envoy's rate limit filter answers every refusal alike. over_limit(h, config, descriptors,
-- kinds, periods) -> the kind of limit (kinds[i] is descriptors[i]'s) that refused, or nil when
-- it cannot tell, and the Retry-After seconds (whole, >= 1).
--
-- The service counts in fixed windows aligned to the Unix epoch (periods[i] seconds long for
-- descriptors[i]); the request is admitted again once every descriptor that refuses it has
-- renewed. A request with one descriptor: that one refused, and its window ends in
-- period - now % period seconds (by this process's whole-second clock: the true time rounded
-- up): no call. Otherwise the Lua filter asks the service once more, in its own API
-- (envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit over the service's gRPC
-- cluster), with the request's descriptors and every descriptor's hits_addend 0: a check that
-- counts nothing, which the official service and the local stand-in both answer. Its statuses
-- name the first descriptor over its limit (when every descriptor is of one kind, that kind
-- refused) and carry each one's duration_until_reset, the end of its window: the longest among
-- those that refuse the request (over their limit, or a request limit with nothing remaining:
-- one more hit takes it over, where a token or budget check, 0 hits, passes at its limit). No
-- answer: the longest window left among all the descriptors. descriptors: a list of lists of
-- {key, value}.
local byte, char, floor, sub = string.byte, string.char, math.floor, string.sub

local function varint(n)
  local out = {}
  n = floor(n)
  while n >= 128 do
    out[#out + 1] = char(n % 128 + 128)
    n = floor(n / 128)
  end
  out[#out + 1] = char(n)
  return table.concat(out)
end

local function field(number, text)
  return char(number * 8 + 2) .. varint(#text) .. text
end

local function be32(n)
  return char(floor(n / 16777216) % 256, floor(n / 65536) % 256, floor(n / 256) % 256, n % 256)
end

-- A varint at pos: its value and the position after it (nil past the end).
local function read_varint(data, pos)
  local value, scale = 0, 1
  while pos <= #data do
    local b = byte(data, pos)
    pos = pos + 1
    value = value + (b % 128) * scale
    if b < 128 then return value, pos end
    scale = scale * 128
  end
  return nil, pos
end

-- The fields of a message: calls visit(number, wire type, value) where value is a number
-- (varint) or a string (length-delimited); other wire types are skipped. False when malformed.
local function each_field(data, visit)
  local pos = 1
  while pos <= #data do
    local tag
    tag, pos = read_varint(data, pos)
    if tag == nil then return false end
    local number, wire = floor(tag / 8), tag % 8
    if wire == 0 then
      local value
      value, pos = read_varint(data, pos)
      if value == nil then return false end
      visit(number, wire, value)
    elseif wire == 2 then
      local size
      size, pos = read_varint(data, pos)
      if size == nil or pos + size - 1 > #data then return false end
      visit(number, wire, sub(data, pos, pos + size - 1))
      pos = pos + size
    elseif wire == 1 then pos = pos + 8
    elseif wire == 5 then pos = pos + 4
    else return false end
  end
  return true
end

local OK, OVER_LIMIT = 1, 2
local REQUESTS_LIMIT = NAMES.requests_limit

-- The longest window left among `periods`, by this process's clock (whole seconds: os.time()
-- rounds down, so what is left is rounded up).
local function windows_left(periods)
  local now, wait = os.time(), 1
  for _, period in ipairs(periods) do
    local left = period - now % period
    if left > wait then wait = left end
  end
  return wait
end

-- A DescriptorStatus: its code, whether it has a limit, the remaining count and the seconds
-- until its window renews (rounded up).
local function read_status(data)
  local code, limited, remaining, reset = 0, false, 0, 0
  each_field(data, function(n, w, v)
    if n == 1 and w == 0 then code = v
    elseif n == 2 and w == 2 then limited = true
    elseif n == 3 and w == 0 then remaining = v
    elseif n == 4 and w == 2 then
      local seconds, nanos = 0, 0
      each_field(v, function(dn, dw, dv)
        if dn == 1 and dw == 0 then seconds = dv elseif dn == 2 and dw == 0 then nanos = dv end
      end)
      reset = seconds + (nanos > 0 and 1 or 0)
    end
  end)
  return code, limited, remaining, reset
end

return function(h, config, descriptors, kinds, periods)
  if #descriptors == 1 then return kinds[1], windows_left(periods) end
  local only = kinds[1]
  for i = 2, #kinds do
    if kinds[i] ~= only then only = nil break end
  end
  local parts = { field(1, config.domain) }
  for _, entries in ipairs(descriptors) do
    local d = {}
    for _, e in ipairs(entries) do d[#d + 1] = field(1, field(1, e[1]) .. field(2, e[2])) end
    d[#d + 1] = field(3, "")  -- hits_addend: an empty UInt64Value, i.e. 0
    parts[#parts + 1] = field(2, table.concat(d))
  end
  local message = table.concat(parts)
  local headers, body = h:httpCall(config.cluster, {
    [":method"] = "POST",
    [":path"] = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit",
    [":authority"] = config.cluster,
    ["content-type"] = "application/grpc",
    ["te"] = "trailers",
  }, "\0" .. be32(#message) .. message, config.timeout_ms)
  if headers == nil or headers[":status"] ~= "200" or body == nil or #body < 5 then
    return only, windows_left(periods)
  end
  local statuses = {}
  local ok = each_field(sub(body, 6), function(number, wire, value)
    if number == 2 and wire == 2 then statuses[#statuses + 1] = value end
  end)
  if not ok then return only, windows_left(periods) end
  local over, wait = nil, 1
  for i, data in ipairs(statuses) do
    local code, limited, remaining, reset = read_status(data)
    if code == OVER_LIMIT and over == nil then over = kinds[i] end
    if code == OVER_LIMIT or (code == OK and limited and remaining == 0
        and kinds[i] == REQUESTS_LIMIT) then
      if reset > wait then wait = reset end
    end
  end
  return only or over, wait
end
