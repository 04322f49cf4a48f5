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
-- What it decides goes into gw.cache metadata for the cache filter (cache.lua).
local CACHE_NS, NS, CACHE_KEY = NAMES.cache_ns, NAMES.metadata_ns, NAMES.cache_key
local CACHE_HEADER = NAMES.cache_header
local find, lower = string.find, string.lower
local encode = json.encode

-- Neither looked up nor stored: the cache filter marks the answer `bypass`.
local function bypass(md, route_name)
  md:set(NS, CACHE_KEY, "bypass")
  md:set(CACHE_NS, "route", route_name)
end

return function(md, hdrs, cache, route_name, consumer, endpoint, req)
  if cache.on_request and hdrs:get(CACHE_HEADER) ~= "use" then return bypass(md, route_name) end
  local lookup = true
  local control = hdrs:get("cache-control")
  if control ~= nil then
    control = lower(control)
    if find(control, "no-store", 1, true) then return bypass(md, route_name) end
    if find(control, "no-cache", 1, true) then lookup = false end
  end
  local who = cache.shared and "" or consumer
  md:set(CACHE_NS, "route", route_name)
  md:set(CACHE_NS, "lookup", lookup)
  md:set(CACHE_NS, "key", route_name .. "\n" .. endpoint .. "\n" .. who .. "\n" .. encode(req))
end
