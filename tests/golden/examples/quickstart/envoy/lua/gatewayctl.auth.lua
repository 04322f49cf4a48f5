local NAMES = {["attempt_ns"]="gw.attempt",["body_model_header"]="x-gw-body-model",["budget_charged_key"]="budget_consumer",["budget_descriptor"]="budget",["budget_key"]="budget",["budget_limit"]="budget",["budget_units_key"]="budget_units",["cache_header"]="x-gateway-cache",["cache_key"]="cache",["cache_ns"]="gw.cache",["cache_saved_key"]="cost_saved_usd",["cache_saved_nano_key"]="cost_saved_nano_usd",["client_key_headers"]={"authorization","x-api-key","api-key"},["completion_tokens_key"]="completion_tokens",["consumer_descriptor"]="consumer",["consumer_header"]="x-gw-consumer",["consumer_key"]="consumer",["cost_key"]="cost_nano_usd",["enum_words"]={"system","user","assistant","tool","developer","function","text","image_url","input_audio","file","refusal","custom","input_text","output_text","input_image","input_file","audio_url","video_url","json_object","json_schema","content","allowed_tools","string","number","integer","boolean","object","array","null"},["global_refusal"]="global",["guard_set_key"]="set",["guard_text_key"]="text",["guardrail_response_header"]="x-gateway-guardrail",["internal_ns"]="gw.internal",["limit_response_header"]="x-gateway-limit",["metadata_ns"]="gw",["model_response_header"]="x-gateway-model",["output_guardrail_key"]="output_guardrail",["principal_header"]="x-gw-principal",["prompt_tokens_key"]="prompt_tokens",["prompt_version_header"]="x-gateway-prompt-version",["rbac_filter"]="envoy.filters.http.rbac",["reply_header"]="x-gw-reply",["requests_limit"]="requests",["retry_after_header"]="retry-after",["route_header"]="x-gw-route",["route_key"]="route",["sign_header"]="x-gw-sign",["target_header"]="x-gw-target",["tokens_charged_key"]="tokens_route",["tokens_limit"]="tokens",["tokens_used_key"]="tokens_used"}
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
local CLIENT_KEY_HEADERS = NAMES.client_key_headers
local PRINCIPAL_HEADER, ROUTE_HEADER = NAMES.principal_header, NAMES.route_header
local NS, REPLY_HEADER = NAMES.metadata_ns, NAMES.reply_header
local find, sub, byte, match = string.find, string.sub, string.byte, string.match
local function trim(s)
local first = find(s, "%S")
if first == nil then return "" end
local last = #s
while true do
local c = byte(s, last)
if c ~= 32 and (c < 9 or c > 13) then break end
last = last - 1
end
if first == 1 and last == #s then return s end
return sub(s, first, last)
end
local function presented_key(hdrs)
local auth = hdrs:get(CLIENT_KEY_HEADERS[1])
if auth ~= nil then
local scheme = sub(auth, 1, 6)
if (scheme == "Bearer" or string.lower(scheme) == "bearer") and find(auth, "^%s", 7) then
local bearer = trim(sub(auth, 8))
if bearer ~= "" then return bearer end
end
end
for i = 2, #CLIENT_KEY_HEADERS do
local v = hdrs:get(CLIENT_KEY_HEADERS[i])
if v ~= nil then
v = trim(v)
if v ~= "" then return v end
end
end
return nil
end
local function reply(h, status, message, err_type, code)
h:streamInfo():dynamicMetadata():set(NS, "local_reply", true)
h:headers():replace(REPLY_HEADER, "lua")
local body = '{"error":{"code":"' .. code .. '","message":"' .. message .. '","type":"' .. err_type .. '"}}'
h:respond({ [":status"] = tostring(status), ["content-type"] = "application/json" }, body)
end
function envoy_on_request(h)
local hdrs = h:headers()
if hdrs:get(":method") ~= "POST" then return end
if DATA.endpoints[match(hdrs:get(":path") or "", "^[^?]*")] == nil then return end
local key = presented_key(hdrs)
local consumer = key ~= nil and secrets.keys(DATA.consumers)[key] or nil
local principal, cap
if consumer ~= nil then
principal, cap = "c:" .. consumer, DATA.consumer_caps[consumer]
elseif DATA.jwt ~= nil then
local via, failure
consumer, via = jwt_principal(h, DATA.jwt, DATA.jwt_consumers)
if consumer ~= nil then
principal, cap = via .. ":" .. consumer, DATA.jwt_caps[via][consumer]
elseif via ~= nil then
failure = via
principal, cap = "token:" .. failure, DATA.anonymous_cap
if cap == nil then
if failure == "unknown" then
return reply(h, 403, "The bearer token names no consumer of this gateway.",
"permission_error", "consumer_not_allowed")
elseif failure == "expired" then
return reply(h, 401, "The bearer token has expired.", "authentication_error", "token_expired")
end
return reply(h, 401, "The bearer token is not valid for this gateway (signature, issuer or audience).",
"authentication_error", "invalid_token")
end
end
end
if principal == nil then
principal = key == nil and "none" or "invalid"
cap = DATA.anonymous_cap
end
if cap == nil then
if consumer ~= nil then
return reply(h, 403, "This consumer may not use any model of this gateway.",
"permission_error", "consumer_not_allowed")
elseif key == nil then
return reply(h, 401, "Missing API key or bearer token: send `Authorization: Bearer <key>`.",
"authentication_error", "missing_api_key")
end
return reply(h, 401, "Invalid API key.", "authentication_error", "invalid_api_key")
end
local length = tonumber(hdrs:get("content-length") or "")
if length ~= nil and length > cap then
return reply(h, 413, "The request body is larger than " .. cap .. " bytes.",
"invalid_request_error", "request_too_large")
end
local coding = hdrs:get("content-encoding")
if coding ~= nil then
coding = string.lower(trim(coding))
if coding ~= "" and coding ~= "identity" then
return reply(h, 415, "The request body must be sent without Content-Encoding: the gateway reads it as it is.",
"invalid_request_error", "unsupported_content_encoding")
end
end
hdrs:replace(PRINCIPAL_HEADER, principal)
if cap ~= DATA.first_cap then
hdrs:replace(ROUTE_HEADER, DATA.body_classes[tostring(cap)])
h:clearRouteCache()
end
end
