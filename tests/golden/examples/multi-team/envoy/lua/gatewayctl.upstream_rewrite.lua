local NAMES = {["attempt_ns"]="gw.attempt",["body_model_header"]="x-gw-body-model",["budget_charged_key"]="budget_consumer",["budget_descriptor"]="budget",["budget_key"]="budget",["budget_limit"]="budget",["budget_units_key"]="budget_units",["cache_header"]="x-gateway-cache",["cache_key"]="cache",["cache_ns"]="gw.cache",["cache_saved_key"]="cost_saved_usd",["cache_saved_nano_key"]="cost_saved_nano_usd",["client_key_headers"]={"authorization","x-api-key","api-key"},["completion_tokens_key"]="completion_tokens",["consumer_descriptor"]="consumer",["consumer_header"]="x-gw-consumer",["consumer_key"]="consumer",["cost_key"]="cost_nano_usd",["enum_words"]={"system","user","assistant","tool","developer","function","text","image_url","input_audio","file","refusal","custom","input_text","output_text","input_image","input_file","audio_url","video_url","json_object","json_schema","content","allowed_tools","string","number","integer","boolean","object","array","null"},["global_refusal"]="global",["guard_set_key"]="set",["guard_text_key"]="text",["guardrail_response_header"]="x-gateway-guardrail",["internal_ns"]="gw.internal",["limit_response_header"]="x-gateway-limit",["metadata_ns"]="gw",["model_response_header"]="x-gateway-model",["output_guardrail_key"]="output_guardrail",["principal_header"]="x-gw-principal",["prompt_tokens_key"]="prompt_tokens",["prompt_version_header"]="x-gateway-prompt-version",["rbac_filter"]="envoy.filters.http.rbac",["reply_header"]="x-gw-reply",["requests_limit"]="requests",["retry_after_header"]="retry-after",["route_header"]="x-gw-route",["route_key"]="route",["sign_header"]="x-gw-sign",["target_header"]="x-gw-target",["tokens_charged_key"]="tokens_route",["tokens_limit"]="tokens",["tokens_used_key"]="tokens_used"}
local jsonstring = (function()
local M = {}
local byte, find, format, gsub = string.byte, string.find, string.format, string.gsub
local string_escapes = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
local function escape_char(c)
return string_escapes[c] or format("\\u%04x", byte(c))
end
function M.encode(s)
if find(s, '^[]-~ !#-[\128-\255]*$') then return '"' .. s .. '"' end
return '"' .. gsub(s, '[%c"\\]', escape_char) .. '"'
end
function M.string_end(str, i)
while true do
local j = find(str, '["\\]', i)
if j == nil or byte(str, j) == 34 then return j end
i = j + 2
end
end
return M
end)()
local DATA = ...
local secrets = (function()
local M = {}
local gsub = string.gsub
local function read_file(path)
local f = io.open(path, "rb")
if f == nil then return nil end
local value = f:read("*a") or ""
f:close()
return (gsub(gsub(value, "^%s+", ""), "%s+$", ""))
end
local cache = {}
function M.read(path)
local now = os.time()
local hit = cache[path]
if hit ~= nil and now < hit.expires then return hit.value end
local value = read_file(path)
cache[path] = { value = value, expires = now + DATA.secret_ttl_s }
return value
end
local keys = { expires = -1, by_key = {} }
function M.keys(consumers)
local now = os.time()
if now >= keys.expires then
local by_key = {}
for _, c in ipairs(consumers) do
local value = read_file(c.file)
if value ~= nil and value ~= "" then by_key[value] = c.name end
end
keys = { expires = now + DATA.secret_ttl_s, by_key = by_key }
end
return keys.by_key
end
function M.set_credential(h, hdrs, cred)
local value = M.read(cred.file)
if value == nil or value == "" then
h:logErr("gatewayctl: cannot read provider credential " .. cred.file)
else
hdrs:replace(cred.header, cred.prefix .. value)
end
end
return M
end)()
local target = (function()
local M = {}
local find, sub, gsub, match = string.find, string.sub, string.gsub, string.match
local encode_string, string_end = jsonstring.encode, jsonstring.string_end
local TARGET_HEADER = NAMES.target_header
local BODY_MODEL_HEADER = NAMES.body_model_header
local CLIENT_KEY_HEADERS = NAMES.client_key_headers
local function hex_char(hex) return string.char(tonumber(hex, 16)) end
local function unescape(s)
if not find(s, "%", 1, true) then return s end
return (gsub(s, "%%(%x%x)", hex_char))
end
M.unescape = unescape
local function splice_model(raw, upstream_model)
if sub(raw, 1, 10) ~= '{"model":"' then return nil end
local i = string_end(raw, 11)
if i == nil then return nil end
return '{"model":' .. encode_string(upstream_model) .. sub(raw, i + 1)
end
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
function M.send_openai(h, hdrs, provider, model, upstream_model, body_model)
if provider.base_path ~= "" then
hdrs:replace(":path", provider.base_path .. M.client_path(h, hdrs))
end
if body_model ~= nil and body_model == model then return end
local body = h:body()
if body == nil or body:length() == 0 then return end
local rewritten = splice_model(body:getBytes(0, body:length()), upstream_model)
if rewritten ~= nil then body:setBytes(rewritten) end
end
return M
end)()
function envoy_on_request(h)
local hdrs = h:headers()
local model, provider, upstream_model, body_model = target.take(h, hdrs)
if model == nil then return end
target.send_openai(h, hdrs, provider, model, upstream_model, body_model)
end
