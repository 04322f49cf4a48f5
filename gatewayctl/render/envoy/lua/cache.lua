-- The response cache's filter (cache.py): after the limits and guardrails, before the router,
-- switched on only on the routes whose policy has a cache. Prepended at render time by
-- `local NAMES = ...`, `local DATA = ...` ({routes = {[route] = {store, ttl, max_entry}},
-- stores = {[store] = max bytes}}) and the store module (cache_store.lua) as `store`.
--
-- Request: the key the body filter computed (gw.cache metadata, cache_request.lua); an entry
-- under it answers the request here with the stored status line, body and content type
-- (a stream is replayed as the same SSE events), `x-gateway-cache: hit` and `age`. The
-- request goes no further: no upstream call, no token charge (gateway.lua prices the
-- answer as `cost_saved_usd` instead).
-- Response: `x-gateway-cache: miss` (or `bypass`); a 200 that is complete (a stream ending in
-- `data: [DONE]`), not content-filtered, not `cache-control: no-store`, and no larger than the
-- route's entry bound is stored while it passes through unchanged (a stream's chunks are
-- copied as they go; nothing is held back).
--
-- Shared stores (DATA.shared, limits.scope global): the entries live in Redis behind the
-- cache store service (cluster DATA.shared.cluster). The lookup is an httpCall that waits at
-- most lookup_timeout_ms; a store is an asynchronous httpCall sent once the answer is complete
-- (nobody waits for it). A lookup that fails or is late is answered as a miss: the request
-- goes upstream, gw:cache says `error` (log, counters) and a warning is logged (at most once
-- per 10 s per worker). Nothing of the client's request but the key reaches the service.
local NS, CACHE_NS, CACHE_KEY = NAMES.metadata_ns, NAMES.cache_ns, NAMES.cache_key
local CACHE_HEADER, MODEL_HEADER = NAMES.cache_header, NAMES.model_response_header
local find, match, sub, concat = string.find, string.match, string.sub, table.concat
local time = os.time
local get, put = store.get, store.put
local SHARED = DATA.shared
local LOOKUP_FAILED = "error"

-- One store per store name (routes with the same policies share one), per worker; none when
-- the stores are shared.
local STORES = {}
if DATA.shared == nil then
  for name, max_bytes in pairs(DATA.stores) do STORES[name] = store.new(max_bytes) end
end

-- The body filter's value (cache_request.lua): mode letter, then the key "<route>\n...".
local function decision(h)
  local c = h:streamInfo():dynamicMetadata():get(CACHE_NS)
  local value = c ~= nil and c.key or nil
  if value == nil then return nil end
  local route = DATA.routes[match(value, "^.([^\n]*)")]
  if route == nil then return nil end
  return sub(value, 1, 1), sub(value, 2), route
end

local warned = -10
local function warn(h, what)
  local now = time()
  if now - warned >= 10 then
    warned = now
    h:logWarn("gatewayctl cache store: " .. what .. "; requests are answered as misses")
  end
end

-- The shared store's entry under key and its age, nil on a miss, false when the store failed.
local function shared_get(h, store_name, key)
  local headers, body = h:httpCall(SHARED.cluster, {
    [":method"] = "POST",
    [":path"] = "/lookup/" .. store_name,
    [":authority"] = SHARED.cluster,
    ["content-type"] = "application/octet-stream",
  }, key, SHARED.lookup_timeout_ms)
  local status = headers ~= nil and headers[":status"] or nil
  if status == "200" then
    return { body = body or "", ctype = headers["content-type"] or "application/json",
             model = headers[MODEL_HEADER] }, tonumber(headers["age"]) or 0
  end
  if status == "404" then return nil end
  warn(h, "lookup failed (status " .. tostring(status) .. ")")
  return false
end

local function shared_put(h, store_name, route, key, body, ctype, model)
  h:httpCall(SHARED.cluster, {
    [":method"] = "POST",
    [":path"] = "/store/" .. store_name,
    [":authority"] = SHARED.cluster,
    ["content-type"] = ctype,
    [MODEL_HEADER] = model,
    ["x-cache-key-bytes"] = tostring(#key),
    ["x-cache-ttl"] = tostring(route.ttl),
    ["x-cache-max-bytes"] = tostring(DATA.stores[store_name]),
  }, key .. body, SHARED.store_timeout_ms, true)
end

function envoy_on_request(h)
  local mode, key, route = decision(h)
  if mode == nil or mode == "B" then return end
  if mode == "L" then
    local entry, age
    if SHARED ~= nil then
      entry, age = shared_get(h, route.store, key)
      if entry == false then
        h:streamInfo():dynamicMetadata():set(NS, CACHE_KEY, LOOKUP_FAILED)
        return
      end
    else
      local now = time()
      local stored
      entry, stored = get(STORES[route.store], key, now)
      if entry ~= nil then age = now - stored end
    end
    if entry ~= nil then
      h:streamInfo():dynamicMetadata():set(NS, CACHE_KEY, "hit")
      local headers = {
        [":status"] = "200",
        ["content-type"] = entry.ctype,
        [CACHE_HEADER] = "hit",
        ["age"] = tostring(age),
      }
      if entry.model ~= nil then headers[MODEL_HEADER] = entry.model end
      h:respond(headers, entry.body)
      return
    end
  end
  h:streamInfo():dynamicMetadata():set(NS, CACHE_KEY, "miss")
end

-- A stream's bytes while they pass, or nil once they exceed `limit`.
local function copy_stream(h, limit)
  local parts, n, size = {}, 0, 0
  for chunk in h:bodyChunks() do
    if parts ~= nil then
      local data = chunk:getBytes(0, chunk:length())
      size = size + #data
      if size > limit then
        parts = nil
      else
        n = n + 1
        parts[n] = data
      end
    end
  end
  return parts ~= nil and concat(parts) or nil
end

-- A content filter's finish (plain search first: most answers have none).
local function filtered(body)
  return find(body, "content_filter", 1, true) ~= nil
    and find(body, '"finish_reason"%s*:%s*"content_filter"') ~= nil
end

function envoy_on_response(h)
  local hdrs = h:headers()
  if hdrs:get(CACHE_HEADER) == "hit" then return end  -- this filter's own reply
  local mode, key, route = decision(h)
  if mode == nil then return end
  if mode == "B" then
    hdrs:replace(CACHE_HEADER, "bypass")
    return
  end
  hdrs:replace(CACHE_HEADER, "miss")
  if hdrs:get(":status") ~= "200" then return end
  local control = hdrs:get("cache-control")
  if control ~= nil and find(control, "no-store", 1, true) then return end
  local ctype = hdrs:get("content-type") or "application/json"
  local model = hdrs:get(MODEL_HEADER)
  local body
  if find(ctype, "text/event-stream", 1, true) then
    body = copy_stream(h, route.max_entry)
    -- a stream cut short (reset, timeout) never gets here; one that ended without its
    -- last event is not a whole answer
    if body == nil or match(body, "data:%s*%[DONE%]%s*$") == nil then return end
  else
    local b = h:body()
    if b == nil or b:length() > route.max_entry then return end
    body = b:getBytes(0, b:length())
  end
  if filtered(body) then return end
  if SHARED ~= nil then
    shared_put(h, route.store, route, key, body, ctype, model)
  else
    put(STORES[route.store], key, { body = body, ctype = ctype, model = model }, #body, route.ttl,
        time())
  end
end
