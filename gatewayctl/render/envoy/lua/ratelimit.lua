-- Charges the rate limit service after a response (global limits; global_limits.py): one
-- envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit call, made by Lua over the
-- service's gRPC cluster and not waited for, with the request's hits_addend set to what the
-- response used (tokens, or budget units). Envoy 1.40's rate limit filter sends a request-level
-- hits_addend only from filter state, which Lua cannot set, and drops a route rate limit's own
-- hits_addend from the call; so the charge is this call, in the service's own API, which the
-- official service and the local stand-in both answer. Returns charge(h, descriptors, hits);
-- descriptors: a list of lists of {key, value}.
local char, floor = string.char, math.floor

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

return function(h, config, descriptors, hits)
  if hits < 1 or config == nil then return end
  local parts = { field(1, config.domain) }
  for _, entries in ipairs(descriptors) do
    local d = {}
    for _, e in ipairs(entries) do d[#d + 1] = field(1, field(1, e[1]) .. field(2, e[2])) end
    parts[#parts + 1] = field(2, table.concat(d))
  end
  parts[#parts + 1] = char(3 * 8) .. varint(hits)
  local message = table.concat(parts)
  h:httpCall(config.cluster, {
    [":method"] = "POST",
    [":path"] = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit",
    [":authority"] = config.cluster,
    ["content-type"] = "application/grpc",
    ["te"] = "trailers",
  }, "\0" .. be32(#message) .. message, config.timeout_ms, true)
end
