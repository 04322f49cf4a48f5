-- The attempt's target, shared by the two per-attempt upstream filters: upstream.lua (OpenAI
-- providers) and translate.lua (routes with a provider of another API). Bound at render time
-- as `local target = (function() ... end)()` after jsonstring, the data table and secrets.
--
-- header_mutation, which runs first, copies the chosen endpoint's metadata gw.target (model,
-- provider, upstream model and authority, percent-encoded and joined by `|`; see upstream.py)
-- into the x-gw-target header. take() reads and removes it (and the client's key headers, and
-- x-gw-body-model), sets the authority and the provider's credential header, and returns the
-- attempt's model, provider data, upstream model and the body-model mark. send_openai() then
-- prefixes the provider's base path and rewrites `model` to the upstream model name, unless
-- x-gw-body-model (set by the downstream filter for a route with one backend) says the body
-- already carries this attempt's model: then the body is neither buffered nor touched.
--
-- Envoy sends a retry with the header map the previous attempt left, so an attempt that sets
-- the path (a base path, another API's) takes it from the client's, which the first such
-- attempt keeps in dynamic metadata (gw.attempt, path).
local M = {}
local find, sub, gsub, match = string.find, string.sub, string.gsub, string.match
local encode_string, string_end = jsonstring.encode, jsonstring.string_end
local TARGET_HEADER = NAMES.target_header
-- Set by the downstream filter when the body already carries this model's upstream name.
local BODY_MODEL_HEADER = NAMES.body_model_header
local CLIENT_KEY_HEADERS = NAMES.client_key_headers

local function hex_char(hex) return string.char(tonumber(hex, 16)) end

-- Undoes upstream.py's encode_value (percent-encoding of the endpoint metadata values).
local function unescape(s)
  if not find(s, "%", 1, true) then return s end
  return (gsub(s, "%%(%x%x)", hex_char))
end
M.unescape = unescape

-- The downstream filter wrote the body with `model` as its first member, so the rewrite is a
-- splice of that one string; anything else is left alone.
local function splice_model(raw, upstream_model)
  if sub(raw, 1, 10) ~= '{"model":"' then return nil end
  local i = string_end(raw, 11)
  if i == nil then return nil end
  return '{"model":' .. encode_string(upstream_model) .. sub(raw, i + 1)
end

-- take(h, hdrs) -> model, provider, upstream model, body model (or nil when the attempt has no
-- endpoint data: logged, and the request goes on unchanged).
function M.take(h, hdrs)
  local target = hdrs:get(TARGET_HEADER)
  if target ~= nil then hdrs:remove(TARGET_HEADER) end
  local model, provider_name, upstream_model, authority =
    match(target or "", "^([^|]+)|([^|]+)|([^|]+)|([^|]+)$")
  local body_model = hdrs:get(BODY_MODEL_HEADER)
  if body_model ~= nil then hdrs:remove(BODY_MODEL_HEADER) end
  for i = 1, #CLIENT_KEY_HEADERS do hdrs:remove(CLIENT_KEY_HEADERS[i]) end
  if model == nil then
    h:logErr("gatewayctl: no endpoint data for this attempt")
    return nil
  end
  model = unescape(model)
  local provider = DATA.providers[unescape(provider_name)]
  if provider == nil then
    h:logErr("gatewayctl: no provider data for upstream model " .. model)
    return nil
  end
  hdrs:replace(":authority", unescape(authority))
  if provider.credential ~= nil then secrets.set_credential(h, hdrs, provider.credential) end
  return model, provider, unescape(upstream_model), body_model
end

local ATTEMPT_NS = NAMES.attempt_ns

-- The path the client sent (see above).
function M.client_path(h, hdrs)
  local md = h:streamInfo():dynamicMetadata()
  local ns = md:get(ATTEMPT_NS)
  local path = ns and ns.path
  if path == nil then
    path = hdrs:get(":path") or ""
    md:set(ATTEMPT_NS, "path", path)
  end
  return path
end

-- An attempt on a provider that speaks OpenAI: its base path, and its model name in the body.
function M.send_openai(h, hdrs, provider, model, upstream_model, body_model)
  if provider.base_path ~= "" then
    hdrs:replace(":path", provider.base_path .. M.client_path(h, hdrs))
  end
  -- The body already names this attempt's upstream model: leave it (and its buffering) alone.
  if body_model ~= nil and body_model == model then return end
  local body = h:body()
  if body == nil or body:length() == 0 then return end
  local rewritten = splice_model(body:getBytes(0, body:length()), upstream_model)
  if rewritten ~= nil then body:setBytes(rewritten) end
end

return M
