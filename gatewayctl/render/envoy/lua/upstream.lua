-- The upstream Lua filter, shared by every route (the router's upstream_http_filters); it runs
-- once per attempt. Prepended at render time by `local DATA = ...` (header names, per provider
-- base path and credential, secret TTL); this file holds no manifest data itself.
-- header_mutation, which runs first, copies the chosen endpoint's metadata (gw.model,
-- gw.provider, gw.upstream_model, gw.authority; see upstream.py) into the x-gw-target*
-- headers; from them this filter sets the authority, the provider's base path and credential
-- (read from the mounted secret file, cached per worker for DATA.secret_ttl_s so a rotated
-- secret applies without a reload) and rewrites `model` to the upstream model name.

local secret_cache = {}

local STRING_ESCAPES = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

local function encode_string(s)
  return '"' .. string.gsub(s, '[%c"\\]', function(c)
    return STRING_ESCAPES[c] or string.format("\\u%04x", string.byte(c))
  end) .. '"'
end

local function unescape(s)
  return (string.gsub(s, "%%(%x%x)", function(hex) return string.char(tonumber(hex, 16)) end))
end

local function read_secret(path)
  local now = os.time()
  local hit = secret_cache[path]
  if hit ~= nil and now < hit.expires then return hit.value end
  local value = nil
  local f = io.open(path, "rb")
  if f ~= nil then
    value = f:read("*a")
    f:close()
    value = string.gsub(string.gsub(value, "^%s+", ""), "%s+$", "")
  end
  secret_cache[path] = { value = value, expires = now + DATA.secret_ttl_s }
  return value
end

-- The downstream filter wrote the body with `model` as its first member, so the rewrite is a
-- splice of that one string; anything else is left alone.
local function splice_model(raw, upstream_model)
  if string.sub(raw, 1, 10) ~= '{"model":"' then return nil end
  local i = 11
  while true do
    local c = string.byte(raw, i)
    if c == nil then return nil end
    if c == 92 then
      i = i + 2
    elseif c == 34 then
      break
    else
      i = i + 1
    end
  end
  return '{"model":' .. encode_string(upstream_model) .. string.sub(raw, i + 1)
end

function envoy_on_request(h)
  local hdrs = h:headers()
  local ep = {}
  for key, name in pairs(DATA.headers) do
    local value = hdrs:get(name)
    hdrs:remove(name)
    if value ~= nil and value ~= "" then ep[key] = unescape(value) end
  end
  hdrs:remove("authorization")
  hdrs:remove("x-api-key")
  hdrs:remove("api-key")
  local provider = ep.provider and DATA.providers[ep.provider]
  if provider == nil or ep.upstream_model == nil or ep.authority == nil then
    h:logErr("gatewayctl: no endpoint data for upstream model " .. tostring(ep.model))
    return
  end
  hdrs:replace(":authority", ep.authority)
  if provider.base_path ~= "" then
    hdrs:replace(":path", provider.base_path .. (hdrs:get(":path") or ""))
  end
  local cred = provider.credential
  if cred ~= nil then
    local value = read_secret(cred.file)
    if value == nil or value == "" then
      h:logErr("gatewayctl: cannot read provider credential " .. cred.file)
    else
      hdrs:replace(cred.header, cred.prefix .. value)
    end
  end
  local body = h:body()
  if body == nil or body:length() == 0 then return end
  local rewritten = splice_model(body:getBytes(0, body:length()), ep.upstream_model)
  if rewritten ~= nil then body:setBytes(rewritten) end
end
