-- The request side of the response cache (for gateway.lua, on routes with a cache only).
-- Bound at render time as `local cache_request = (function() ... end)()`; returns a function.
--
-- The key is what the provider would receive, normalised: the route, the endpoint, the
-- consumer (unless the cache is shared by the route's consumers) and the request body after
-- prompt injection and redaction, re-encoded by json.lua (object keys sorted, no spaces,
-- numbers in one form), so key order and whitespace do not split the cache. The body's
-- `model` is the route's public name: whichever backend the split would choose, one entry.
--
-- The client may opt out the HTTP way: `cache-control: no-store` (neither looked up nor
-- stored: `bypass`), `cache-control: no-cache` (not looked up; the fresh answer is stored).
-- On a `mode: on-request` cache only requests that send `x-gateway-cache: use` take part.
-- What it decides goes into gw.cache metadata for the cache filter (cache.lua), as one value
-- (each metadata value costs the filters a conversion).
local CACHE_NS, NS, CACHE_KEY = NAMES.cache_ns, NAMES.metadata_ns, NAMES.cache_key
local CACHE_HEADER = NAMES.cache_header
local find, lower = string.find, string.lower
local encode = json.encode

-- One metadata value for the cache filter: a mode letter (L: look up and store, S: store only,
-- B: bypass, neither) and then the store key, which starts with the route's name and a newline.
return function(md, hdrs, cache, route_name, consumer, endpoint, req)
  local mode = "L"
  if cache.on_request and hdrs:get(CACHE_HEADER) ~= "use" then mode = "B" end
  local control = hdrs:get("cache-control")
  if control ~= nil and mode == "L" then
    control = lower(control)
    if find(control, "no-store", 1, true) then
      mode = "B"
    elseif find(control, "no-cache", 1, true) then
      mode = "S"
    end
  end
  if mode == "B" then
    md:set(NS, CACHE_KEY, "bypass")
    md:set(CACHE_NS, "key", "B" .. route_name .. "\n")
    return
  end
  local who = cache.shared and "" or consumer
  md:set(CACHE_NS, "key", mode .. route_name .. "\n" .. endpoint .. "\n" .. who .. "\n" .. encode(req))
end
