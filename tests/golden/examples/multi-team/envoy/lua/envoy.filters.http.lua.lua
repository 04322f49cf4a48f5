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
local json = (function()
local json = {}
json.null = setmetatable({}, { __tostring = function() return "null" end })
json.object = { __jsontype = "object" }
json.array = { __jsontype = "array" }
local MAX_DEPTH = 64
local byte, sub, char, find, format = string.byte, string.sub, string.char, string.find, string.format
local concat = table.concat
local function decode_error(str, pos, msg)
error(format("invalid JSON at byte %d: %s", pos, msg), 0)
end
local function skip_ws(str, pos)
local c = byte(str, pos)
if c ~= 32 and c ~= 9 and c ~= 10 and c ~= 13 then return pos end
local _, e = find(str, "^[ \t\r\n]*", pos)
return e + 1
end
local function utf8_char(cp)
if cp < 0x80 then return char(cp) end
if cp < 0x800 then return char(0xC0 + math.floor(cp / 0x40), 0x80 + cp % 0x40) end
if cp < 0x10000 then
return char(0xE0 + math.floor(cp / 0x1000), 0x80 + math.floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
end
return char(0xF0 + math.floor(cp / 0x40000), 0x80 + math.floor(cp / 0x1000) % 0x40,
0x80 + math.floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
end
local escapes = { [34] = '"', [92] = "\\", [47] = "/", [98] = "\b", [102] = "\f",
[110] = "\n", [114] = "\r", [116] = "\t" }
local function decode_string(str, pos)
local _, e = find(str, '^[]-\127 !#-[\128-\255]*', pos + 1)
if byte(str, e + 1) == 34 then return sub(str, pos + 1, e), e + 2 end
local parts, n = {}, 0
local i = pos + 1
while true do
local s, e = find(str, '^[^"\\%z\1-\31]+', i)
if s then
n = n + 1; parts[n] = sub(str, s, e); i = e + 1
end
local c = byte(str, i)
if c == nil then decode_error(str, i, "unterminated string") end
if c == 34 then return concat(parts), i + 1 end
if c < 32 then decode_error(str, i, "control character in string") end
local esc = byte(str, i + 1)
if esc == 117 then
local hex = sub(str, i + 2, i + 5)
if not find(hex, "^%x%x%x%x$") then decode_error(str, i, "bad \\u escape") end
local cp = tonumber(hex, 16)
local used = 6
if cp >= 0xD800 and cp <= 0xDBFF then
local lo = sub(str, i + 6, i + 11)
if find(lo, "^\\u[dD][c-fC-F]%x%x$") then
cp = 0x10000 + (cp - 0xD800) * 0x400 + (tonumber(sub(lo, 3), 16) - 0xDC00)
used = 12
else
cp = 0xFFFD
end
elseif cp >= 0xDC00 and cp <= 0xDFFF then
cp = 0xFFFD
end
n = n + 1; parts[n] = utf8_char(cp); i = i + used
else
local rep = esc and escapes[esc]
if rep == nil then decode_error(str, i, "bad escape") end
n = n + 1; parts[n] = rep; i = i + 2
end
end
end
local decode_value
local saw_duplicate = false
local function decode_number(str, pos)
local s, e = find(str, "^-?%d+", pos)
if not s then decode_error(str, pos, "unexpected character") end
local d = byte(str, s) == 45 and s + 1 or s
if byte(str, d) == 48 and e > d then decode_error(str, pos, "leading zero") end
local c = byte(str, e + 1)
if c == 46 then
local _, fe = find(str, "^%d+", e + 2)
if not fe then decode_error(str, pos, "bad number") end
e = fe
c = byte(str, e + 1)
end
if c == 101 or c == 69 then
local _, xe = find(str, "^[-+]?%d+", e + 2)
if not xe then decode_error(str, pos, "bad number") end
e = xe
end
return tonumber(sub(str, s, e)), e + 1
end
local function decode_array(str, pos, depth)
local arr, n = setmetatable({}, json.array), 0
pos = skip_ws(str, pos + 1)
if byte(str, pos) == 93 then return arr, pos + 1 end
while true do
local v
v, pos = decode_value(str, pos, depth)
n = n + 1; arr[n] = v
pos = skip_ws(str, pos)
local c = byte(str, pos)
if c == 93 then return arr, pos + 1 end
if c ~= 44 then decode_error(str, pos, "expected ',' or ']'") end
pos = skip_ws(str, pos + 1)
end
end
local function decode_object(str, pos, depth)
local obj = setmetatable({}, json.object)
pos = skip_ws(str, pos + 1)
if byte(str, pos) == 125 then return obj, pos + 1 end
while true do
if byte(str, pos) ~= 34 then decode_error(str, pos, "expected a string key") end
local k
k, pos = decode_string(str, pos)
pos = skip_ws(str, pos)
if byte(str, pos) ~= 58 then decode_error(str, pos, "expected ':'") end
pos = skip_ws(str, pos + 1)
local v
v, pos = decode_value(str, pos, depth)
if obj[k] ~= nil then saw_duplicate = true end
obj[k] = v
pos = skip_ws(str, pos)
local c = byte(str, pos)
if c == 125 then return obj, pos + 1 end
if c ~= 44 then decode_error(str, pos, "expected ',' or '}'") end
pos = skip_ws(str, pos + 1)
end
end
decode_value = function(str, pos, depth)
local c = byte(str, pos)
if c == 123 then
if depth >= MAX_DEPTH then decode_error(str, pos, "nested too deeply") end
return decode_object(str, pos, depth + 1)
elseif c == 91 then
if depth >= MAX_DEPTH then decode_error(str, pos, "nested too deeply") end
return decode_array(str, pos, depth + 1)
elseif c == 34 then
return decode_string(str, pos)
elseif c == 116 and sub(str, pos, pos + 3) == "true" then
return true, pos + 4
elseif c == 102 and sub(str, pos, pos + 4) == "false" then
return false, pos + 5
elseif c == 110 and sub(str, pos, pos + 3) == "null" then
return json.null, pos + 4
elseif c == nil then
decode_error(str, pos, "unexpected end of input")
end
return decode_number(str, pos)
end
function json.decode(str)
local pos = skip_ws(str, 1)
local value
value, pos = decode_value(str, pos, 0)
pos = skip_ws(str, pos)
if pos <= #str then decode_error(str, pos, "trailing characters") end
return value
end
function json.decode_members(str)
saw_duplicate = false
local pos = skip_ws(str, 1)
if byte(str, pos) ~= 123 then decode_error(str, pos, "expected an object") end
local obj, members, n = setmetatable({}, json.object), {}, 0
pos = skip_ws(str, pos + 1)
if byte(str, pos) == 125 then
pos = pos + 1
else
while true do
if byte(str, pos) ~= 34 then decode_error(str, pos, "expected a string key") end
local first = pos
local k
k, pos = decode_string(str, pos)
pos = skip_ws(str, pos)
if byte(str, pos) ~= 58 then decode_error(str, pos, "expected ':'") end
pos = skip_ws(str, pos + 1)
local v
v, pos = decode_value(str, pos, 1)
if obj[k] ~= nil then saw_duplicate = true end
obj[k] = v
members[n + 1], members[n + 2], members[n + 3] = k, first, pos - 1
n = n + 3
pos = skip_ws(str, pos)
local c = byte(str, pos)
if c == 125 then pos = pos + 1; break end
if c ~= 44 then decode_error(str, pos, "expected ',' or '}'") end
pos = skip_ws(str, pos + 1)
end
end
pos = skip_ws(str, pos)
if pos <= #str then decode_error(str, pos, "trailing characters") end
return obj, members, not saw_duplicate
end
local function is_ws(c) return c == 32 or c == 9 or c == 10 or c == 13 end
local function value_at(str, pos)
local ok, value, after = pcall(decode_value, str, pos, 1)
if ok then return value, after end
return nil, nil
end
local string_end = jsonstring.string_end
local function scan_top_level(str, quoted)
local klen, first = #quoted, byte(quoted, 2)
local depth, i, found = 0, 1, nil
while true do
local c = byte(str, i)
if c == nil then return found end
if c == 34 then
if depth == 0 then return nil end
if depth == 1 and byte(str, i + 1) == first and sub(str, i, i + klen - 1) == quoted then
local _, e = find(str, "^[ \t\r\n]*:[ \t\r\n]*", i + klen)
if e ~= nil then found = e + 1 end
end
i = string_end(str, i + 1)
if i == nil then return found end
elseif c == 123 or c == 91 then
if depth == 0 and c == 91 then return nil end
depth = depth + 1
elseif c == 125 or c == 93 then
depth = depth - 1
if depth <= 0 then return found end
end
i = i + 1
end
end
function json.top_level_member(str, key)
local quoted = '"' .. key .. '"'
local last, from = nil, 1
while true do
local s = find(str, quoted, from, true)
if s == nil then break end
last, from = s, s + 1
end
if last == nil then return nil end
local b = last - 1
while b > 0 and is_ws(byte(str, b)) do b = b - 1 end
local before = byte(str, b)
if before == 123 or before == 44 then
local _, e = find(str, "^[ \t\r\n]*:[ \t\r\n]*", last + #quoted)
if e ~= nil then
local value, after = value_at(str, e + 1)
if after ~= nil and find(str, "^[ \t\r\n]*}[ \t\r\n]*$", after) then return value end
end
end
local at = scan_top_level(str, quoted)
if at == nil then return nil end
return (value_at(str, at))
end
function json.is_object(v)
return type(v) == "table" and getmetatable(v) == json.object
end
function json.is_array(v)
return type(v) == "table" and getmetatable(v) == json.array
end
local encode_string = jsonstring.encode
json.encode_string = encode_string
local KEY_CACHE_MAX = 256
local key_cache, key_cache_n = {}, 0
local function encode_key(k)
local e = key_cache[k]
if e ~= nil then return e end
e = encode_string(k)
if key_cache_n < KEY_CACHE_MAX and #k <= 32 then
key_cache[k] = e
key_cache_n = key_cache_n + 1
end
return e
end
local function encode_number(v)
if v ~= v or v == math.huge or v == -math.huge then error("cannot encode a non-finite number", 0) end
if v == math.floor(v) and v > -1e15 and v < 1e15 then return format("%d", v) end
local s = format("%.14g", v)
if tonumber(s) ~= v then s = format("%.17g", v) end
return s
end
local encode_value
local function is_sequence(t)
local n = #t
for k in pairs(t) do
if type(k) ~= "number" or k < 1 or k > n or k ~= math.floor(k) then return false end
end
return true
end
encode_value = function(v, out, n, first)
local tv = type(v)
if v == json.null or v == nil then
n = n + 1; out[n] = "null"
elseif tv == "boolean" then
n = n + 1; out[n] = v and "true" or "false"
elseif tv == "number" then
n = n + 1; out[n] = encode_number(v)
elseif tv == "string" then
n = n + 1; out[n] = encode_string(v)
elseif tv == "table" then
local mt = getmetatable(v)
if mt == json.array or (mt ~= json.object and next(v) ~= nil and is_sequence(v)) then
n = n + 1; out[n] = "["
for i = 1, #v do
if i > 1 then n = n + 1; out[n] = "," end
n = encode_value(v[i], out, n)
end
n = n + 1; out[n] = "]"
else
local keys, nk = {}, 0
for k in pairs(v) do
if type(k) ~= "string" then error("object keys must be strings", 0) end
if k ~= first then nk = nk + 1; keys[nk] = k end
end
if nk > 1 then table.sort(keys) end
if first ~= nil and v[first] ~= nil then table.insert(keys, 1, first); nk = nk + 1 end
n = n + 1; out[n] = "{"
for i = 1, nk do
local k = keys[i]
if i > 1 then n = n + 1; out[n] = "," end
n = n + 1; out[n] = encode_key(k)
n = n + 1; out[n] = ":"
n = encode_value(v[k], out, n)
end
n = n + 1; out[n] = "}"
end
else
error("cannot encode a " .. tv, 0)
end
return n
end
function json.encode(v, first)
local out = {}
encode_value(v, out, 0, first)
return concat(out)
end
return json
end)()
local DATA = ...
local NATIVE_PARAMS = {["anthropic"]={["label"]="Anthropic",["supported"]={["stop"]=true},["temperature_max"]=1,["top_p_max"]=1},["bedrock"]={["label"]="Bedrock",["supported"]={["stop"]=true},["temperature_max"]=1,["top_p_max"]=1},["gemini"]={["label"]="Gemini",["n_max"]=8,["stop_max"]=5,["supported"]={["frequency_penalty"]=true,["n"]=true,["presence_penalty"]=true,["response_format"]=true,["seed"]=true,["stop"]=true}}}
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
local decide_access = (function()
local match = string.match
local function unauthenticated(route, principal)
if principal == "token:expired" then
return nil, 401, "The bearer token has expired.", "authentication_error", "token_expired"
elseif principal == "token:invalid" then
return nil, 401, "The bearer token is not valid for this gateway (signature, issuer or audience).",
"authentication_error", "invalid_token"
elseif principal == "token:unknown" then
return nil, 403, "The bearer token names no consumer of this gateway.",
"permission_error", "consumer_not_allowed"
elseif principal == "invalid" then
return nil, 401, "Invalid API key.", "authentication_error", "invalid_api_key"
end
if route.jwt ~= nil and not route.keys_ok then
return nil, 401, "Missing bearer token: send `Authorization: Bearer <token>`.",
"authentication_error", "missing_api_key"
end
return nil, 401, "Missing API key: send `Authorization: Bearer <key>` or `x-api-key`.",
"authentication_error", "missing_api_key"
end
return function(route, principal, model)
local via, name = match(principal, "^([^:]+):(.*)$")
local consumer = nil
if via == "c" then
if route.keys_ok then consumer = name end
elseif via ~= nil and via ~= "token" then
if route.jwt ~= nil and route.jwt[via] then consumer = name end
end
if consumer == nil and route.needs_auth then
if via == "c" then
return nil, 401, "This model does not accept API keys: send a bearer token from its issuer.",
"authentication_error", "invalid_api_key"
elseif via ~= nil and via ~= "token" then
return nil, 401, "This model does not accept tokens from this issuer.",
"authentication_error", "invalid_token"
end
return unauthenticated(route, principal)
end
if route.allow ~= nil and (consumer == nil or not route.allow[consumer]) then
return nil, 403, "This consumer may not use the model `" .. model .. "`.",
"permission_error", "consumer_not_allowed"
end
return consumer or "anonymous"
end
end)()
local over_limit = (function()
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
local function windows_left(periods)
local now, wait = os.time(), 1
for _, period in ipairs(periods) do
local left = period - now % period
if left > wait then wait = left end
end
return wait
end
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
d[#d + 1] = field(3, "")
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
end)()
local texts = (function()
local M = {}
local find, sub, byte = string.find, string.sub, string.byte
local concat = table.concat
local is_array = json.is_array
local NOT_TEXT = { role = true, type = true }
local ENUM_WORDS = {}
for _, w in ipairs(NAMES.enum_words) do ENUM_WORDS[w] = true end
local function add_strings(v, out, n)
if is_array(v) then
for i = 1, #v do
local item = v[i]
local t = type(item)
if t == "string" then
n = n + 1; out[n] = item
elseif t == "table" then
n = add_strings(item, out, n)
end
end
return n
end
for k, item in pairs(v) do
n = n + 1; out[n] = k
local t = type(item)
if t == "string" then
if not (NOT_TEXT[k] and ENUM_WORDS[item]) then n = n + 1; out[n] = item end
elseif t == "table" then
n = add_strings(item, out, n)
end
end
return n
end
local function guard_text(req, native)
local out, n = {}, 0
for k, v in pairs(req) do
if k ~= "model" then
local t = type(v)
if t == "string" then
n = n + 1; out[n] = v
elseif t == "table" then
n = add_strings(v, out, n)
end
end
end
if native ~= nil then
for _, a in ipairs(native) do
if type(a.value) == "table" then n = add_strings(a.value, out, n) end
end
end
return concat(out, "\n")
end
local REPLACEMENT = "\239\191\189"
local function carried_text(s)
local i = find(s, "[%z\128-\255]")
if i == nil then return s end
local out, n, from, len = {}, 0, 1, #s
while i ~= nil do
local c = byte(s, i)
local size = 0
if c >= 0xC2 and c <= 0xDF then size = 2
elseif c >= 0xE0 and c <= 0xEF then size = 3
elseif c >= 0xF0 and c <= 0xF4 then size = 4 end
local ok = size > 0 and i + size - 1 <= len
if ok then
for j = i + 1, i + size - 1 do
local cc = byte(s, j)
if cc < 0x80 or cc > 0xBF then ok = false; break end
end
if ok then
local c2 = byte(s, i + 1)
if (c == 0xE0 and c2 < 0xA0) or (c == 0xED and c2 > 0x9F)
or (c == 0xF0 and c2 < 0x90) or (c == 0xF4 and c2 > 0x8F) then
ok = false
end
end
end
if ok then
i = i + size
else
out[n + 1] = sub(s, from, i - 1)
out[n + 2] = c == 0 and " " or REPLACEMENT
n = n + 2
i = i + 1
from = i
end
i = find(s, "[%z\128-\255]", i)
end
if n == 0 then return s end
out[n + 1] = sub(s, from)
return concat(out)
end
local SHOWN_MAX = 256
local function shown(s)
if #s <= SHOWN_MAX then return carried_text(s) end
return carried_text(sub(s, 1, SHOWN_MAX)) .. "...(truncated, " .. #s .. " bytes)"
end
M.guard_text, M.carried_text, M.shown = guard_text, carried_text, shown
return M
end)()
local redact = (function()
local M = {}
local find, sub, gsub, byte = string.find, string.sub, string.gsub, string.byte
local concat = table.concat
local is_array = json.is_array
local NOT_REDACTED = { model = true, role = true, type = true, name = true, id = true,
tool_call_id = true, call_id = true }
local function luhn_ok(digits)
local sum, alt = 0, false
for i = #digits, 1, -1 do
local d = byte(digits, i) - 48
if alt then d = d * 2; if d > 9 then d = d - 9 end end
sum = sum + d
alt = not alt
end
return sum % 10 == 0
end
local function redact_digit_runs(s, min_digits, max_digits, mark, check)
if not find(s, "%d") then return s end
return (gsub(s, "%f[%w%+]%+?%d[%d%-%.%s%(%)]*%d%f[%W]", function(run)
local digits = gsub(run, "%D", "")
if #digits >= min_digits and #digits <= max_digits and (check == nil or check(digits)) then
return mark
end
return nil
end))
end
local LOCAL_PART = {}
for c = 48, 57 do LOCAL_PART[c] = true end
for c = 65, 90 do LOCAL_PART[c] = true end
for c = 97, 122 do LOCAL_PART[c] = true end
for _, c in ipairs({ 46, 37, 43, 45, 95 }) do LOCAL_PART[c] = true end
local function redact_email(s)
local at = find(s, "@", 1, true)
if at == nil then return s end
local out, n, from = {}, 0, 1
while at ~= nil do
local ls = at
while ls > from and LOCAL_PART[byte(s, ls - 1)] do ls = ls - 1 end
if ls < at then
local _, de = find(s, "^[%w%-]+%.[%w%.%-]*%w", at + 1)
if de ~= nil then
out[n + 1] = sub(s, from, ls - 1)
out[n + 2] = "[REDACTED_EMAIL]"
n = n + 2
from = de + 1
end
end
at = find(s, "@", at + 1, true)
end
if n == 0 then return s end
out[n + 1] = sub(s, from)
return concat(out)
end
local REDACTORS = {
email = redact_email,
ssn = function(s)
return (gsub(s, "%f[%d]%d%d%d%-%d%d%-%d%d%d%d%f[%D]", "[REDACTED_SSN]"))
end,
["credit-card"] = function(s)
return redact_digit_runs(s, 13, 19, "[REDACTED_CREDIT_CARD]", luhn_ok)
end,
phone = function(s)
return redact_digit_runs(s, 10, 15, "[REDACTED_PHONE]", nil)
end,
}
local REDACT_ORDER = { "email", "ssn", "credit-card", "phone" }
local function redact_string(s, kinds)
for _, kind in ipairs(REDACT_ORDER) do
if kinds[kind] then s = REDACTORS[kind](s) end
end
return s
end
local function redact_table(v, kinds)
local changed = false
if is_array(v) then
for i = 1, #v do
local item = v[i]
local t = type(item)
if t == "string" then
local r = redact_string(item, kinds)
if r ~= item then v[i] = r; changed = true end
elseif t == "table" and redact_table(item, kinds) then
changed = true
end
end
return changed
end
for k, item in pairs(v) do
local t = type(item)
if t == "string" then
if not NOT_REDACTED[k] then
local r = redact_string(item, kinds)
if r ~= item then v[k] = r; changed = true end
end
elseif t == "table" and redact_table(item, kinds) then
changed = true
end
end
return changed
end
M.table, M.email, M.string = redact_table, redact_email, redact_string
return M
end)()
local prompts = (function()
local M = {}
local concat = table.concat
math.randomseed(os.time() + math.floor(os.clock() * 1000000))
local function pick_version(prompt)
local roll = math.random(1, 100)
local acc = 0
for _, v in ipairs(prompt.versions) do
acc = acc + v.weight
if roll <= acc then return v end
end
return prompt.versions[#prompt.versions]
end
local function render_prompt(version, vars, limit)
for _, name in ipairs(version.required) do
local v = vars[name]
if v == nil or v == json.null then return nil, name end
end
local out, size = {}, 0
for i, part in ipairs(version.parts) do
local v
if part.var == nil then
v = part.text
else
v = vars[part.var]
if v == nil or v == json.null then
v = part.default or ""
elseif type(v) ~= "string" then
v = json.encode(v)
end
end
size = size + #v
if size > limit then return nil, nil, true end
out[i] = v
end
return concat(out)
end
M.pick_version, M.render = pick_version, render_prompt
return M
end)()
local usage = (function()
local M = {}
local find, sub, match = string.find, string.sub, string.match
local function usage_numbers(usage)
if type(usage) ~= "table" then return nil end
local p = usage.prompt_tokens or usage.input_tokens
local c = usage.completion_tokens or usage.output_tokens or 0
if type(p) ~= "number" or type(c) ~= "number" then return nil end
local details = usage.prompt_tokens_details
local cached = type(details) == "table" and details.cached_tokens or nil
return p, c, type(cached) == "number" and cached or nil
end
local function usage_of(text)
return usage_numbers(json.top_level_member(text, "usage"))
end
local function scan_stream_usage(h)
local pending = ""
local p, c, cached
for chunk in h:bodyChunks() do
local data = chunk:getBytes(0, chunk:length())
if pending ~= "" then data = pending .. data end
local start = 1
while true do
local nl = find(data, "\n", start, true)
if nl == nil then break end
local line = sub(data, start, nl - 1)
start = nl + 1
if find(line, '"usage"', 1, true) then
local payload = match(line, "^data:%s*(.-)%s*$")
if payload ~= nil then
local ep, ec, ecached = usage_of(payload)
if ep ~= nil then p, c, cached = ep, ec, ecached end
end
end
end
pending = sub(data, start)
if #pending > 1048576 then pending = "" end
end
return p, c, cached
end
M.numbers, M.of, M.scan_stream = usage_numbers, usage_of, scan_stream_usage
return M
end)()
local tokens = (function()
local M = {}
local INTERNAL_NS = NAMES.internal_ns
local max, min, ceil = math.max, math.min, math.ceil
local token_debt = {}
for _, policy in pairs(DATA.policies) do
for i, limit in ipairs(policy.token_limits) do limit.carried_key = "token_carried_" .. i end
end
local function debt_key(limit, route_name, consumer)
if limit.by == "consumer" then return limit.key .. "|" .. route_name .. "|" .. consumer end
return limit.key .. "|" .. route_name .. "|"
end
function M.carry(md, hdrs, route, route_name, consumer)
for _, limit in ipairs(route.token_limits) do
local dk = debt_key(limit, route_name, consumer)
local pending = token_debt[dk] or 0
local carried = min(pending, limit.max - 1)
token_debt[dk] = nil
md:set(INTERNAL_NS, limit.carried_key, carried)
hdrs:replace(limit.header, tostring(1 + carried))
end
end
function M.charge(info, route, used)
for _, limit in ipairs(route.token_limits) do
local dk = debt_key(limit, info.route, info.consumer)
token_debt[dk] = (token_debt[dk] or 0) + max(used - 1, 0)
end
end
function M.refund(info, route, internal)
for _, limit in ipairs(route.token_limits) do
local carried = internal[limit.carried_key] or 0
if carried > 0 then
local dk = debt_key(limit, info.route, info.consumer)
token_debt[dk] = (token_debt[dk] or 0) + carried
end
end
end
function M.wait(route, internal)
local wait = 1
for _, limit in ipairs(route.request_limits or {}) do
wait = max(wait, ceil(limit.period / limit.max))
end
for _, limit in ipairs(route.token_limits) do
local charge = 1 + (internal[limit.carried_key] or 0)
wait = max(wait, ceil(charge * limit.period / limit.max))
end
return wait
end
return M
end)()
local chat = (function()
local M = {}
local is_object, is_array, null = json.is_object, json.is_array, json.null
local find, match, lower, format = string.find, string.match, string.lower, string.format
local function fail(code, message, param)
error({ status = 400, code = code, message = message, param = param }, 0)
end
M.fail = fail
local function present(v) return v ~= nil and v ~= null end
local DROPPED = { metadata = true, store = true, service_tier = true, prompt_cache_key = true }
local KNOWN = {
model = true, messages = true, max_tokens = true, max_completion_tokens = true,
temperature = true, top_p = true, stop = true, n = true, stream = true, stream_options = true,
tools = true, tool_choice = true, parallel_tool_calls = true, user = true,
safety_identifier = true, response_format = true, seed = true, presence_penalty = true,
frequency_penalty = true, logit_bias = true, logprobs = true, top_logprobs = true,
}
local function number_param(req, name, c, lo, hi)
local v = req[name]
if not present(v) then return nil end
if type(v) ~= "number" then fail("invalid_type", format("`%s` must be a number.", name), name) end
if (lo ~= nil and v < lo) or (hi ~= nil and v > hi) then
fail("invalid_value", format("`%s` must be between %s and %s.", name, lo, hi), name)
end
return v
end
local function integer_param(req, name, lo)
local v = req[name]
if not present(v) then return nil end
if type(v) ~= "number" or v ~= math.floor(v) or v < lo or v > 2147483647 then
fail("invalid_value", format("`%s` must be an integer of at least %d.", name, lo), name)
end
return v
end
local function string_param(req, name)
local v = req[name]
if not present(v) then return nil end
if type(v) ~= "string" then fail("invalid_type", format("`%s` must be a string.", name), name) end
return v
end
local DATA_URL = "^data:([%w%.%+%-]+/[%w%.%+%-]+);base64,(.+)$"
local function image_block(part, where)
local iu = part.image_url
local url = is_object(iu) and iu.url or nil
if type(url) ~= "string" then
fail("invalid_content", where .. ".image_url.url must be a string.", where)
end
local media_type, data = match(url, DATA_URL)
if media_type ~= nil then return { kind = "image", media_type = lower(media_type), data = data } end
if find(url, "^https?://") then return { kind = "image", url = url } end
fail("invalid_content", where .. ".image_url.url must be an https URL or a base64 data URL.", where)
end
local function add_content(content, where, blocks, kinds)
if content == nil or content == null then return end
if type(content) == "string" then
if content ~= "" then blocks[#blocks + 1] = { kind = "text", text = content } end
return
end
if not is_array(content) then
fail("invalid_content", where .. " must be a string or an array of content parts.", where)
end
for i = 1, #content do
local part, at = content[i], where .. "[" .. (i - 1) .. "]"
if not is_object(part) then fail("invalid_content", at .. " must be an object.", at) end
local t = part.type
if t == "text" or (t == "refusal" and kinds.refusal) then
local text = t == "text" and part.text or part.refusal
if type(text) ~= "string" then fail("invalid_content", at .. "." .. t .. " must be a string.", at) end
if text ~= "" then blocks[#blocks + 1] = { kind = "text", text = text } end
elseif t == "image_url" and kinds.image then
blocks[#blocks + 1] = image_block(part, at)
else
fail("unsupported_content",
format("%s: content parts of type `%s` cannot be sent to this model's provider.", at, tostring(t)), at)
end
end
end
local TEXT_ONLY = {}
local USER_PARTS = { image = true }
local ASSISTANT_PARTS = { refusal = true }
local function tool_calls_of(msg, where, blocks, names)
local calls = msg.tool_calls
if not present(calls) then return end
if not is_array(calls) then fail("invalid_tool_calls", where .. ".tool_calls must be an array.", where) end
for i = 1, #calls do
local call, at = calls[i], where .. ".tool_calls[" .. (i - 1) .. "]"
local fn = is_object(call) and call["function"] or nil
if not is_object(call) or call.type ~= "function" or not is_object(fn) then
fail("invalid_tool_calls", at .. " must be {type: function, function: {name, arguments}}.", at)
end
if type(call.id) ~= "string" or call.id == "" then fail("invalid_tool_calls", at .. ".id must be a non-empty string.", at) end
if type(fn.name) ~= "string" or fn.name == "" then fail("invalid_tool_calls", at .. ".function.name must be a non-empty string.", at) end
if type(fn.arguments) ~= "string" then fail("invalid_tool_calls", at .. ".function.arguments must be a string.", at) end
local ok, args = pcall(json.decode, fn.arguments == "" and "{}" or fn.arguments)
if not ok or not is_object(args) then
fail("invalid_tool_arguments", at .. ".function.arguments must be a JSON object.", at)
end
if names[call.id] ~= nil then fail("invalid_tool_calls", at .. ".id repeats an earlier tool call's id.", at) end
names[call.id] = fn.name
blocks[#blocks + 1] = { kind = "tool_call", id = call.id, name = fn.name, arguments = args }
end
end
local function tool_result_of(msg, where, names)
local id = msg.tool_call_id
if type(id) ~= "string" or id == "" then
fail("invalid_tool_message", where .. ".tool_call_id must be a non-empty string.", where)
end
local name = names[id]
if name == nil then
fail("invalid_tool_message", where .. ".tool_call_id does not name a tool call of an earlier assistant message.", where)
end
local parts = {}
add_content(msg.content, where .. ".content", parts, TEXT_ONLY)
local texts = {}
for i = 1, #parts do texts[i] = parts[i].text end
return { kind = "tool_result", id = id, name = name, texts = texts }
end
local function read_messages(messages, c)
if not is_array(messages) or #messages == 0 then
fail("invalid_messages", "`messages` must be a non-empty array.", "messages")
end
local system, turns, names = {}, {}, {}
for i = 1, #messages do
local msg, where = messages[i], "messages[" .. (i - 1) .. "]"
if not is_object(msg) then fail("invalid_messages", where .. " must be an object.", where) end
local role, role_of, blocks = msg.role, nil, {}
if role == "system" or role == "developer" then
local parts = {}
add_content(msg.content, where .. ".content", parts, TEXT_ONLY)
for j = 1, #parts do system[#system + 1] = parts[j].text end
elseif role == "user" then
role_of = "user"
add_content(msg.content, where .. ".content", blocks, USER_PARTS)
if #blocks == 0 then fail("empty_content", where .. " has no content.", where) end
elseif role == "assistant" then
role_of = "assistant"
add_content(msg.content, where .. ".content", blocks, ASSISTANT_PARTS)
if present(msg.function_call) then
fail("unsupported_parameter", where .. ".function_call is deprecated; use tool_calls.", where)
end
tool_calls_of(msg, where, blocks, names)
if #blocks == 0 then fail("empty_content", where .. " has neither content nor tool calls.", where) end
elseif role == "tool" then
role_of = "user"
blocks[1] = tool_result_of(msg, where, names)
c.has_tool_blocks = true
elseif role == "function" then
fail("unsupported_content", where .. ": role `function` is deprecated; use tool messages.", where)
else
fail("invalid_role", format("%s.role must be system, developer, user, assistant or tool.", where), where)
end
if role_of ~= nil then
local last = turns[#turns]
if last ~= nil and last.role == role_of then
for j = 1, #blocks do last.blocks[#last.blocks + 1] = blocks[j] end
else
turns[#turns + 1] = { role = role_of, blocks = blocks, at = where }
end
end
end
if #turns == 0 then
fail("invalid_messages", "`messages` needs at least one user or assistant message.", "messages")
end
for i = 1, #turns do
local turn, pending = turns[i], {}
local count = 0
for _, b in ipairs(turn.blocks) do
if b.kind == "tool_call" then pending[b.id] = true; count = count + 1; c.has_tool_blocks = true end
end
local after = turns[i + 1]
if count > 0 then
if after == nil then
fail("invalid_tool_message", turn.at .. ": every tool call needs a tool message with its result after it.", turn.at)
end
local j = 1
while after.blocks[j] ~= nil and after.blocks[j].kind == "tool_result" do
local id = after.blocks[j].id
if not pending[id] then
fail("invalid_tool_message", after.at .. ": a tool result answers a tool call of another turn.", after.at)
end
pending[id] = nil
count = count - 1
j = j + 1
end
if count > 0 then
fail("invalid_tool_message", turn.at .. ": every tool call needs a tool message with its result, before any other message.", turn.at)
end
end
if turn.role == "user" then
local leading = true
for _, b in ipairs(turn.blocks) do
if b.kind ~= "tool_result" then
leading = false
elseif not leading or i == 1 or turns[i - 1].role ~= "assistant" then
fail("invalid_tool_message", turn.at .. ": a tool message must follow the assistant message with its tool call.", turn.at)
end
end
end
end
c.system, c.turns = system, turns
end
local function read_tools(req, c)
local tools = req.tools
if present(tools) then
if not is_array(tools) then fail("invalid_tools", "`tools` must be an array.", "tools") end
local out = {}
for i = 1, #tools do
local tool, at = tools[i], "tools[" .. (i - 1) .. "]"
local fn = is_object(tool) and tool["function"] or nil
if not is_object(tool) or tool.type ~= "function" or not is_object(fn) then
fail("invalid_tools", at .. " must be {type: function, function: {name, ...}}.", at)
end
if type(fn.name) ~= "string" or fn.name == "" then fail("invalid_tools", at .. ".function.name must be a non-empty string.", at) end
local description = fn.description
if present(description) and type(description) ~= "string" then
fail("invalid_tools", at .. ".function.description must be a string.", at)
end
local parameters = fn.parameters
if present(parameters) and not is_object(parameters) then
fail("invalid_tools", at .. ".function.parameters must be a JSON schema object.", at)
end
out[i] = { name = fn.name, description = present(description) and description or nil,
parameters = present(parameters) and parameters or nil, at = at }
end
if #out > 0 then c.tools = out end
end
local choice = req.tool_choice
if present(choice) then
if choice == "auto" or choice == "required" or choice == "none" then
c.tool_choice = choice
elseif is_object(choice) and choice.type == "function" and is_object(choice["function"])
and type(choice["function"].name) == "string" then
c.tool_choice = { name = choice["function"].name }
else
fail("invalid_tool_choice", "`tool_choice` must be none, auto, required or {type: function, function: {name}}.", "tool_choice")
end
if c.tools == nil and choice ~= "none" then
fail("invalid_tool_choice", "`tool_choice` is only allowed when `tools` are given.", "tool_choice")
end
if type(c.tool_choice) == "table" then
local found = false
for _, t in ipairs(c.tools) do if t.name == c.tool_choice.name then found = true end end
if not found then fail("invalid_tool_choice", "`tool_choice` names a function that is not in `tools`.", "tool_choice") end
end
end
local parallel = req.parallel_tool_calls
if present(parallel) then
if type(parallel) ~= "boolean" then fail("invalid_type", "`parallel_tool_calls` must be a boolean.", "parallel_tool_calls") end
c.parallel_tool_calls = parallel
end
end
local function read_stop(req, c)
local stop = req.stop
if not present(stop) then return end
if type(stop) == "string" then
c.stop = { stop }
elseif is_array(stop) then
for i = 1, #stop do
if type(stop[i]) ~= "string" then fail("invalid_type", "`stop` must be a string or an array of strings.", "stop") end
end
if #stop > 0 then c.stop = stop end
else
fail("invalid_type", "`stop` must be a string or an array of strings.", "stop")
end
if c.stop ~= nil then c.set.stop = true end
end
local function read_response_format(req, c)
local rf = req.response_format
if not present(rf) then return end
if not is_object(rf) then fail("invalid_type", "`response_format` must be an object.", "response_format") end
if rf.type == "text" then return end
if rf.type == "json_object" then
c.response_format = { type = "json_object" }
elseif rf.type == "json_schema" and is_object(rf.json_schema) then
local schema = rf.json_schema.schema
if present(schema) and not is_object(schema) then
fail("invalid_type", "`response_format.json_schema.schema` must be an object.", "response_format")
end
c.response_format = { type = "json_schema", schema = present(schema) and schema or nil }
else
fail("invalid_value", "`response_format.type` must be text, json_object or json_schema.", "response_format")
end
c.set.response_format = true
end
function M.read(req)
if not is_object(req) then fail("invalid_body", "The request body must be a JSON object.") end
for k in pairs(req) do
if not KNOWN[k] and not DROPPED[k] then
fail("unsupported_parameter", format("`%s` is not supported by this model's provider.", k), k)
end
end
local c = { set = {} }
read_messages(req.messages, c)
read_tools(req, c)
local max = integer_param(req, "max_completion_tokens", 1)
if max == nil then max = integer_param(req, "max_tokens", 1) end
c.max_tokens = max
c.temperature = number_param(req, "temperature", c, 0, 2)
c.top_p = number_param(req, "top_p", c, 0, 1)
c.presence_penalty = number_param(req, "presence_penalty", c, -2, 2)
c.frequency_penalty = number_param(req, "frequency_penalty", c, -2, 2)
c.seed = integer_param(req, "seed", -2147483648)
c.n = integer_param(req, "n", 1) or 1
if c.n > 128 then fail("invalid_value", "`n` must be at most 128.", "n") end
read_stop(req, c)
read_response_format(req, c)
if c.n ~= 1 then c.set.n = true end
if c.seed ~= nil then c.set.seed = true end
if c.presence_penalty == 0 then c.presence_penalty = nil end
if c.frequency_penalty == 0 then c.frequency_penalty = nil end
if c.presence_penalty ~= nil then c.set.presence_penalty = true end
if c.frequency_penalty ~= nil then c.set.frequency_penalty = true end
if present(req.logit_bias) then
if not is_object(req.logit_bias) then fail("invalid_type", "`logit_bias` must be an object.", "logit_bias") end
if next(req.logit_bias) ~= nil then c.set.logit_bias = true end
end
if present(req.logprobs) then
if type(req.logprobs) ~= "boolean" then fail("invalid_type", "`logprobs` must be a boolean.", "logprobs") end
if req.logprobs then c.set.logprobs = true end
end
if present(req.top_logprobs) then c.set.logprobs = true end
c.user = string_param(req, "user") or string_param(req, "safety_identifier")
local stream = req.stream
if present(stream) and type(stream) ~= "boolean" then fail("invalid_type", "`stream` must be a boolean.", "stream") end
c.stream = stream == true
local options = req.stream_options
if present(options) then
if not c.stream then fail("invalid_value", "`stream_options` is only allowed when `stream` is true.", "stream_options") end
if not is_object(options) then fail("invalid_type", "`stream_options` must be an object.", "stream_options") end
local usage = options.include_usage
if present(usage) and type(usage) ~= "boolean" then
fail("invalid_type", "`stream_options.include_usage` must be a boolean.", "stream_options")
end
c.include_usage = usage == true
end
return c
end
function M.refuse_unsupported(c, supported, provider)
local refused = {}
for name in pairs(c.set) do
if not supported[name] then refused[#refused + 1] = name end
end
if #refused == 0 then return end
table.sort(refused)
local names = "`" .. table.concat(refused, "`, `") .. "`"
fail("unsupported_parameter", format("%s %s not supported by %s models.", names,
#refused == 1 and "is" or "are", provider), refused[1])
end
function M.escaped_arguments(req)
local out, messages = {}, req.messages
if not is_array(messages) then return out end
for i = 1, #messages do
local calls = is_object(messages[i]) and messages[i].tool_calls or nil
if is_array(calls) then
for j = 1, #calls do
local fn = is_object(calls[j]) and calls[j]["function"] or nil
local args = is_object(fn) and fn.arguments or nil
if type(args) == "string" and find(args, "\\", 1, true) then
local ok, decoded = pcall(json.decode, args)
if ok and type(decoded) == "table" then out[#out + 1] = { fn = fn, value = decoded } end
end
end
end
end
return out
end
return M
end)()
local reply = (function()
local M = {}
local null = json.null
local encode, encode_string = json.encode, json.encode_string
local concat, format = table.concat, string.format
local function array(t) return setmetatable(t or {}, json.array) end
M.array = array
function M.usage(prompt, completion, cached)
prompt, completion = prompt or 0, completion or 0
return {
prompt_tokens = prompt,
completion_tokens = completion,
total_tokens = prompt + completion,
prompt_tokens_details = { cached_tokens = cached or 0 },
}
end
function M.message(text, tool_calls)
local msg = { role = "assistant", content = text or null, refusal = null }
if tool_calls ~= nil and #tool_calls > 0 then
local calls = array()
for i, call in ipairs(tool_calls) do
calls[i] = { id = call.id, type = "function", ["function"] = { name = call.name, arguments = call.arguments } }
end
msg.tool_calls = calls
end
return msg
end
function M.completion(id, model, choices, usage)
local out = array()
for i, ch in ipairs(choices) do
out[i] = { index = i - 1, message = ch.message, finish_reason = ch.finish_reason, logprobs = null }
end
return {
id = id, object = "chat.completion", created = os.time(), model = model,
choices = out, usage = usage,
}
end
local ERROR_TYPES = {
[400] = "invalid_request_error", [401] = "authentication_error", [403] = "permission_error",
[404] = "invalid_request_error", [409] = "invalid_request_error", [413] = "invalid_request_error",
[422] = "invalid_request_error", [429] = "rate_limit_error",
}
function M.error_body(status, message, code, param)
local kind = ERROR_TYPES[status] or (status >= 500 and "server_error" or "invalid_request_error")
return { error = { message = message, type = kind, code = code or null, param = param or null } }
end
local Writer = {}
Writer.__index = Writer
function M.writer(include_usage)
return setmetatable({ include_usage = include_usage, out = {}, n = 0, id = "chatcmpl-gateway",
model = "", started = false, finished = {}, done = false,
prefixes = {} }, Writer)
end
local function emit(w, text)
w.n = w.n + 1
w.out[w.n] = text
end
function Writer:take()
if self.n == 0 then return "" end
local text = concat(self.out, "", 1, self.n)
self.out, self.n = {}, 0
return text
end
local function envelope(w)
return '{"id":' .. encode_string(w.id) .. ',"object":"chat.completion.chunk","created":'
.. format("%d", w.created or os.time()) .. ',"model":' .. encode_string(w.model)
end
local function prefix(w, index)
local p = w.prefixes[index]
if p == nil then
p = 'data: ' .. envelope(w) .. ',"choices":[{"index":' .. index .. ',"delta":'
w.prefixes[index] = p
end
return p
end
local OPEN_SUFFIX = ',"logprobs":null,"finish_reason":null}]}\n\n'
local function delta(w, index, fields)
emit(w, prefix(w, index) .. encode(fields) .. OPEN_SUFFIX)
end
function Writer:start(id, model)
if self.started then return end
self.started = true
if id ~= nil then self.id = id end
if model ~= nil then self.model = model end
self.created = os.time()
emit(self, prefix(self, 0) .. '{"role":"assistant","content":""}' .. OPEN_SUFFIX)
end
function Writer:text(text, index)
if text == nil or text == "" then return end
emit(self, prefix(self, index or 0) .. '{"content":' .. encode_string(text) .. '}' .. OPEN_SUFFIX)
end
function Writer:tool_start(k, id, name, index)
delta(self, index or 0, { tool_calls = array({ { index = k, id = id, type = "function",
["function"] = { name = name, arguments = "" } } }) })
end
function Writer:tool_arguments(k, text, index)
if text == nil or text == "" then return end
delta(self, index or 0, { tool_calls = array({ { index = k, ["function"] = { arguments = text } } }) })
end
function Writer:finish(reason, index)
index = index or 0
if self.finished[index] then return end
self.finished[index] = true
emit(self, prefix(self, index) .. '{},"logprobs":null,"finish_reason":' .. encode_string(reason) .. '}]}\n\n')
end
function Writer:set_usage(prompt, completion, cached)
self.usage = M.usage(prompt, completion, cached)
end
function Writer:error(status, message, code)
if self.done then return end
emit(self, 'data: ' .. encode(M.error_body(status, message, code)) .. '\n\n')
self.done = true
end
function Writer:close()
if self.done then return end
if not self.started then self:start() end
if next(self.finished) == nil then self:finish("stop") end
if self.include_usage and self.usage ~= nil then
emit(self, 'data: ' .. envelope(self) .. ',"choices":[],"usage":' .. encode(self.usage) .. '}\n\n')
end
emit(self, "data: [DONE]\n\n")
self.done = true
end
return M
end)()
local sse = (function()
local M = {}
local find, sub, gsub = string.find, string.sub, string.gsub
local concat = table.concat
local MAX_PENDING = 4 * 1024 * 1024
function M.new() return { pending = "" } end
local function parse(block)
local name, data, n = nil, {}, 0
for line in string.gmatch(block .. "\n", "([^\n]*)\n") do
if sub(line, -1) == "\r" then line = sub(line, 1, -2) end
local field, value = string.match(line, "^([^:]*):? ?(.*)$")
if field == "data" then
n = n + 1; data[n] = value
elseif field == "event" then
name = value
end
end
if n == 0 then return nil end
return { event = name, data = concat(data, "\n") }
end
function M.feed(state, bytes)
local buf = state.pending
if buf ~= "" then bytes = buf .. bytes end
local events, pos = {}, 1
while true do
local s, e = find(bytes, "\r?\n\r?\n", pos)
if s == nil then break end
local ev = parse(sub(bytes, pos, s - 1))
if ev ~= nil then events[#events + 1] = ev end
pos = e + 1
end
state.pending = pos == 1 and bytes or sub(bytes, pos)
if #state.pending > MAX_PENDING then error("the provider's event stream has an event over 4 MiB", 0) end
return events
end
return M
end)()
local eventstream = (function()
local M = {}
local bit = bit
local band, bxor, rshift, bnot, tobit = bit.band, bit.bxor, bit.rshift, bit.bnot, bit.tobit
local byte, sub = string.byte, string.sub
local MAX_MESSAGE = 16 * 1024 * 1024
local CRC = {}
for i = 0, 255 do
local c = i
for _ = 1, 8 do
if band(c, 1) ~= 0 then c = bxor(rshift(c, 1), 0xEDB88320) else c = rshift(c, 1) end
end
CRC[i] = c
end
local function crc32(s, i, j)
local c = bnot(0)
for k = i, j do c = bxor(rshift(c, 8), CRC[band(bxor(c, byte(s, k)), 0xFF)]) end
return bnot(c)
end
M.crc32 = crc32
local function u32(s, i)
local a, b, c, d = byte(s, i, i + 3)
return ((a * 256 + b) * 256 + c) * 256 + d
end
local function u16(s, i)
local a, b = byte(s, i, i + 1)
return a * 256 + b
end
local FIXED = { [2] = 1, [3] = 2, [4] = 4, [5] = 8, [8] = 8, [9] = 16 }
local function headers_of(s, i, j)
local out = {}
while i <= j do
local nlen = byte(s, i)
local name = sub(s, i + 1, i + nlen)
local kind = byte(s, i + nlen + 1)
i = i + nlen + 2
if kind == 0 or kind == 1 then
out[name] = kind == 0
elseif kind == 6 or kind == 7 then
local len = u16(s, i)
out[name] = sub(s, i + 2, i + 1 + len)
i = i + 2 + len
elseif FIXED[kind] ~= nil then
local size = FIXED[kind]
if size == 4 then out[name] = u32(s, i) elseif size == 1 then out[name] = byte(s, i) end
i = i + size
else
error("event stream header of unknown type " .. tostring(kind), 0)
end
end
if i ~= j + 1 then error("event stream headers overrun their length", 0) end
return out
end
function M.new() return { pending = "" } end
function M.feed(state, bytes)
local s = state.pending
if s ~= "" then bytes = s .. bytes end
local messages, pos, len = {}, 1, #bytes
while len - pos + 1 >= 12 do
local total, hlen = u32(bytes, pos), u32(bytes, pos + 4)
if tobit(crc32(bytes, pos, pos + 7)) ~= tobit(u32(bytes, pos + 8)) then
error("event stream prelude CRC mismatch", 0)
end
if total < 16 or total > MAX_MESSAGE or hlen > total - 16 then
error("event stream message length out of bounds", 0)
end
if len - pos + 1 < total then break end
local last = pos + total - 1
if tobit(crc32(bytes, pos, last - 4)) ~= tobit(u32(bytes, last - 3)) then
error("event stream message CRC mismatch", 0)
end
local hstart = pos + 12
messages[#messages + 1] = {
headers = headers_of(bytes, hstart, hstart + hlen - 1),
payload = sub(bytes, hstart + hlen, last - 4),
}
pos = last + 1
end
state.pending = pos == 1 and bytes or sub(bytes, pos)
return messages
end
return M
end)()
local anthropic = (function()
local M = {}
local fail, array = chat.fail, reply.array
local find, format = string.find, string.format
local is_object, is_array, null = json.is_object, json.is_array, json.null
M.version = "2023-06-01"
M.default_max_tokens = 4096
M.stream_type = "text/event-stream"
local PARAMS = NATIVE_PARAMS.anthropic
local IMAGE_TYPES = { ["image/jpeg"] = true, ["image/png"] = true, ["image/gif"] = true, ["image/webp"] = true }
local TOOL_NAME = "^[a-zA-Z0-9_-]+$"
local TOOL_ID = "^[a-zA-Z0-9_-]+$"
local function tool_id(id, where)
if not find(id, TOOL_ID) then
fail("invalid_tool_calls", where .. ": tool call ids must be letters, digits, _ or - for Anthropic models.", where)
end
return id
end
local function texts(list)
local out = array()
for _, t in ipairs(list) do
if find(t, "%S") then out[#out + 1] = { type = "text", text = t } end
end
return out
end
local function block_of(b, where)
local kind = b.kind
if kind == "text" then
if not find(b.text, "%S") then return nil end
return { type = "text", text = b.text }
elseif kind == "image" then
if b.url ~= nil then return { type = "image", source = { type = "url", url = b.url } } end
if not IMAGE_TYPES[b.media_type] then
fail("unsupported_content", where .. ": Anthropic models take jpeg, png, gif and webp images.", where)
end
return { type = "image", source = { type = "base64", media_type = b.media_type, data = b.data } }
elseif kind == "tool_call" then
return { type = "tool_use", id = tool_id(b.id, where), name = b.name, input = b.arguments }
end
local out = { type = "tool_result", tool_use_id = tool_id(b.id, where) }
local content = texts(b.texts)
if #content > 0 then out.content = content end
return out
end
local function range(value, name, hi)
if value ~= nil and hi ~= nil and (value < 0 or value > hi) then
fail("invalid_value", format("`%s` must be between 0 and %s for %s models.", name, hi, PARAMS.label), name)
end
end
function M.request(c, model, default_max)
chat.refuse_unsupported(c, PARAMS.supported, PARAMS.label)
range(c.temperature, "temperature", PARAMS.temperature_max)
range(c.top_p, "top_p", PARAMS.top_p_max)
local body = {
model = model,
max_tokens = c.max_tokens or default_max or M.default_max_tokens,
messages = array(),
}
local system = texts(c.system)
if #system > 0 then body.system = system end
for i, turn in ipairs(c.turns) do
local content = array()
for _, b in ipairs(turn.blocks) do content[#content + 1] = block_of(b, turn.at) end
if #content == 0 then
fail("empty_content", turn.at .. " has only blank text, which Anthropic models refuse.", turn.at)
end
body.messages[i] = { role = turn.role, content = content }
end
local last = c.turns[#c.turns]
if last.role == "assistant" then
local tail = last.blocks[#last.blocks]
if tail.kind == "text" and find(tail.text, "%s$") then
fail("invalid_content", last.at .. ": a final assistant message cannot end with whitespace for Anthropic models.", last.at)
end
end
if c.has_tool_blocks and c.tools == nil then
fail("invalid_tools", "Anthropic models need `tools` when the conversation has tool calls.", "tools")
end
if c.tools ~= nil then
local tools = array()
for i, t in ipairs(c.tools) do
if #t.name > 64 or not find(t.name, TOOL_NAME) then
fail("invalid_tools", t.at .. ".function.name must be 1-64 letters, digits, _ or - for Anthropic models.", t.at)
end
local schema = t.parameters or { type = "object", properties = {} }
if schema.type ~= "object" then
fail("invalid_tools", t.at .. ".function.parameters must be an object schema for Anthropic models.", t.at)
end
tools[i] = { name = t.name, description = t.description, input_schema = schema }
end
body.tools = tools
local choice = c.tool_choice
local tc
if choice == "required" then
tc = { type = "any" }
elseif choice == "none" then
tc = { type = "none" }
elseif type(choice) == "table" then
tc = { type = "tool", name = choice.name }
elseif choice == "auto" or c.parallel_tool_calls == false then
tc = { type = "auto" }
end
if tc ~= nil and c.parallel_tool_calls == false and tc.type ~= "none" then
tc.disable_parallel_tool_use = true
end
body.tool_choice = tc
end
if c.stop ~= nil then body.stop_sequences = c.stop end
body.temperature = c.temperature
body.top_p = c.top_p
if c.user ~= nil then body.metadata = { user_id = c.user } end
if c.stream then body.stream = true end
return body, "/v1/messages"
end
function M.headers(hdrs)
hdrs:replace("anthropic-version", M.version)
end
local FINISH = {
end_turn = "stop", stop_sequence = "stop", pause_turn = "stop",
max_tokens = "length", model_context_window_exceeded = "length",
tool_use = "tool_calls", refusal = "content_filter",
}
local function number(v) return type(v) == "number" and v or 0 end
local function usage_of(u)
if not is_object(u) then return nil end
local read = number(u.cache_read_input_tokens)
local prompt = number(u.input_tokens) + number(u.cache_creation_input_tokens) + read
return prompt, number(u.output_tokens), read
end
function M.response(r)
local text, n, calls = {}, 0, {}
local content = is_array(r.content) and r.content or {}
for _, b in ipairs(content) do
if is_object(b) then
if b.type == "text" and type(b.text) == "string" then
n = n + 1; text[n] = b.text
elseif b.type == "tool_use" then
calls[#calls + 1] = { id = b.id, name = b.name, arguments = json.encode(b.input or {}) }
end
end
end
local p, co, cached = usage_of(r.usage)
return reply.completion("chatcmpl-" .. tostring(r.id or ""), r.model,
{ { message = reply.message(n > 0 and table.concat(text) or null, calls),
finish_reason = FINISH[r.stop_reason] or "stop" } },
reply.usage(p, co, cached))
end
local STATUS = { [529] = 503 }
function M.error(status, r)
local e = is_object(r) and r.error or nil
local message = is_object(e) and e.message or nil
local code = is_object(e) and e.type or nil
return STATUS[status] or status, reply.error_body(STATUS[status] or status,
type(message) == "string" and message or "The provider answered " .. status .. ".",
type(code) == "string" and code or nil)
end
function M.stream_state() return { sse = sse.new(), tools = {}, ntools = 0 } end
local function on_event(st, w, name, ev)
if name == "message_start" then
local msg = ev.message or {}
w:start("chatcmpl-" .. tostring(msg.id or ""), msg.model)
st.prompt, st.completion, st.cached = usage_of(msg.usage)
elseif name == "content_block_start" then
local b = ev.content_block
if is_object(b) and b.type == "tool_use" then
local k = st.ntools
st.ntools = k + 1
st.tools[ev.index] = k
w:tool_start(k, b.id, b.name)
elseif is_object(b) and b.type == "text" then
w:text(b.text)
end
elseif name == "content_block_delta" then
local d = ev.delta
if not is_object(d) then return end
if d.type == "text_delta" then
w:text(d.text)
elseif d.type == "input_json_delta" and st.tools[ev.index] ~= nil then
w:tool_arguments(st.tools[ev.index], d.partial_json)
end
elseif name == "message_delta" then
local d = ev.delta
if is_object(d) and d.stop_reason ~= nil and d.stop_reason ~= null then
st.finish = FINISH[d.stop_reason] or "stop"
end
if is_object(ev.usage) and type(ev.usage.output_tokens) == "number" then
st.completion = ev.usage.output_tokens
end
elseif name == "message_stop" then
w:finish(st.finish or "stop")
w:set_usage(st.prompt, st.completion, st.cached)
w:close()
elseif name == "error" then
local e = ev.error or {}
local status = e.type == "overloaded_error" and 503 or 500
w:error(status, type(e.message) == "string" and e.message or "The provider's stream failed.", e.type)
end
end
function M.stream(st, w, bytes)
for _, ev in ipairs(sse.feed(st.sse, bytes)) do
local ok, data = pcall(json.decode, ev.data)
if ok and is_object(data) then on_event(st, w, ev.event or data.type, data) end
end
end
return M
end)()
local bedrock = (function()
local M = {}
local fail, array = chat.fail, reply.array
local find, format, gsub, byte = string.find, string.format, string.gsub, string.byte
local is_object, is_array, null = json.is_object, json.is_array, json.null
M.stream_type = "application/vnd.amazon.eventstream"
local PARAMS = NATIVE_PARAMS.bedrock
local IMAGE_FORMATS = { ["image/jpeg"] = "jpeg", ["image/png"] = "png", ["image/gif"] = "gif", ["image/webp"] = "webp" }
local TOOL_NAME = "^[a-zA-Z0-9_-]+$"
local function tool_id(id, where)
if #id > 64 or not find(id, TOOL_NAME) then
fail("invalid_tool_calls", where .. ": tool call ids must be 1-64 letters, digits, _ or - for Bedrock models.", where)
end
return id
end
local function escape_byte(c) return format("%%%02X", byte(c)) end
local function segment(s) return (gsub(s, "[^%w%-%._~]", escape_byte)) end
M.segment = segment
local function texts(list)
local out = array()
for _, t in ipairs(list) do
if find(t, "%S") then out[#out + 1] = { text = t } end
end
return out
end
local function block_of(b, where)
local kind = b.kind
if kind == "text" then
if not find(b.text, "%S") then return nil end
return { text = b.text }
elseif kind == "image" then
local fmt = IMAGE_FORMATS[b.media_type or ""]
if b.url ~= nil or fmt == nil then
fail("unsupported_content", where .. ": Bedrock models take jpeg, png, gif and webp images as base64 data URLs.", where)
end
return { image = { format = fmt, source = { bytes = b.data } } }
elseif kind == "tool_call" then
return { toolUse = { toolUseId = tool_id(b.id, where), name = b.name, input = b.arguments } }
end
local content = texts(b.texts)
if #content == 0 then
fail("empty_content", where .. ": a tool result needs text for Bedrock models.", where)
end
return { toolResult = { toolUseId = tool_id(b.id, where), content = content } }
end
local function range(value, name, hi)
if value ~= nil and hi ~= nil and (value < 0 or value > hi) then
fail("invalid_value", format("`%s` must be between 0 and %s for %s models.", name, hi, PARAMS.label), name)
end
end
function M.request(c, model, default_max)
chat.refuse_unsupported(c, PARAMS.supported, PARAMS.label)
range(c.temperature, "temperature", PARAMS.temperature_max)
range(c.top_p, "top_p", PARAMS.top_p_max)
if c.turns[1].role ~= "user" then
fail("invalid_messages", "The conversation must start with a user message for Bedrock models.", "messages")
end
local body = { messages = array() }
local system = texts(c.system)
if #system > 0 then body.system = system end
for i, turn in ipairs(c.turns) do
local content = array()
for _, b in ipairs(turn.blocks) do content[#content + 1] = block_of(b, turn.at) end
if #content == 0 then
fail("empty_content", turn.at .. " has only blank text, which Bedrock models refuse.", turn.at)
end
body.messages[i] = { role = turn.role, content = content }
end
local config = {}
local max = c.max_tokens or default_max
if max ~= nil then config.maxTokens = max end
config.temperature = c.temperature
config.topP = c.top_p
if c.stop ~= nil then config.stopSequences = c.stop end
if next(config) ~= nil then body.inferenceConfig = config end
local choice = c.tool_choice
if c.tools ~= nil and choice == "none" then
if c.has_tool_blocks then
fail("invalid_tool_choice", "`tool_choice: none` with earlier tool calls is not supported by Bedrock models.", "tool_choice")
end
elseif c.tools ~= nil then
local tools = array()
for i, t in ipairs(c.tools) do
if #t.name > 64 or not find(t.name, TOOL_NAME) then
fail("invalid_tools", t.at .. ".function.name must be 1-64 letters, digits, _ or - for Bedrock models.", t.at)
end
local spec = { name = t.name, inputSchema = { json = t.parameters or { type = "object", properties = {} } } }
spec.description = t.description
tools[i] = { toolSpec = spec }
end
local tc
if choice == "required" then
tc = { any = {} }
elseif type(choice) == "table" then
tc = { tool = { name = choice.name } }
elseif choice == "auto" then
tc = { auto = {} }
end
body.toolConfig = { tools = tools, toolChoice = tc }
elseif c.has_tool_blocks then
fail("invalid_tools", "Bedrock models need `tools` when the conversation has tool calls.", "tools")
end
local path = "/model/" .. segment(model) .. (c.stream and "/converse-stream" or "/converse")
return body, path
end
function M.headers(hdrs, c)
hdrs:replace("accept", c.stream and M.stream_type or "application/json")
end
local FINISH = {
end_turn = "stop", stop_sequence = "stop", max_tokens = "length",
model_context_window_exceeded = "length", tool_use = "tool_calls",
guardrail_intervened = "content_filter", content_filtered = "content_filter",
}
local function number(v) return type(v) == "number" and v or 0 end
local function usage_of(u)
if not is_object(u) then return nil end
local read = number(u.cacheReadInputTokens)
return number(u.inputTokens) + number(u.cacheWriteInputTokens) + read, number(u.outputTokens), read
end
function M.response(r, request_id, model)
local msg = is_object(r.output) and r.output.message or nil
local content = is_object(msg) and is_array(msg.content) and msg.content or {}
local text, n, calls = {}, 0, {}
for _, b in ipairs(content) do
if is_object(b) then
if type(b.text) == "string" then
n = n + 1; text[n] = b.text
elseif is_object(b.toolUse) then
local u = b.toolUse
calls[#calls + 1] = { id = u.toolUseId, name = u.name, arguments = json.encode(u.input or {}) }
end
end
end
local p, co, cached = usage_of(r.usage)
return reply.completion("chatcmpl-" .. (request_id or "bedrock"), model,
{ { message = reply.message(n > 0 and table.concat(text) or null, calls),
finish_reason = FINISH[r.stopReason] or "stop" } },
reply.usage(p, co, cached))
end
local STATUS = { [408] = 504, [424] = 502 }
function M.error(status, r, error_type)
local message = is_object(r) and (r.message or r.Message) or nil
local code = error_type and string.match(error_type, "^[^:]+") or nil
if code == nil and is_object(r) and type(r.__type) == "string" then code = string.match(r.__type, "[^#]+$") end
local mapped = STATUS[status] or status
return mapped, reply.error_body(mapped,
type(message) == "string" and message or "The provider answered " .. status .. ".", code)
end
function M.stream_state(request_id, model)
return { frames = eventstream.new(), tools = {}, ntools = 0, id = request_id, model = model }
end
local EXCEPTION_STATUS = {
throttlingException = 429, validationException = 400, modelStreamErrorException = 502,
modelTimeoutException = 504, serviceUnavailableException = 503, internalServerException = 500,
}
local function on_event(st, w, name, ev)
if name == "messageStart" then
w:start("chatcmpl-" .. (st.id or "bedrock"), st.model)
elseif name == "contentBlockStart" then
local start = is_object(ev.start) and ev.start.toolUse or nil
if is_object(start) then
local k = st.ntools
st.ntools = k + 1
st.tools[ev.contentBlockIndex] = k
w:tool_start(k, start.toolUseId, start.name)
end
elseif name == "contentBlockDelta" then
local d = ev.delta
if not is_object(d) then return end
if type(d.text) == "string" then
w:text(d.text)
elseif is_object(d.toolUse) and st.tools[ev.contentBlockIndex] ~= nil then
w:tool_arguments(st.tools[ev.contentBlockIndex], d.toolUse.input)
end
elseif name == "messageStop" then
w:finish(FINISH[ev.stopReason] or "stop")
elseif name == "metadata" then
local p, co, cached = usage_of(ev.usage)
if p ~= nil then w:set_usage(p, co, cached) end
end
end
function M.stream(st, w, bytes)
for _, msg in ipairs(eventstream.feed(st.frames, bytes)) do
local h = msg.headers
local ok, data = pcall(json.decode, msg.payload)
if not ok then data = nil end
if h[":message-type"] == "exception" or h[":message-type"] == "error" then
local kind = h[":exception-type"] or h[":error-code"]
local message = is_object(data) and data.message or h[":error-message"]
w:error(EXCEPTION_STATUS[kind] or 500,
type(message) == "string" and message or "The provider's stream failed.", kind)
elseif is_object(data) then
on_event(st, w, h[":event-type"], data)
end
end
end
M.ends_with_body = true
return M
end)()
local gemini = (function()
local M = {}
local fail, array = chat.fail, reply.array
local find, format, gsub, byte = string.find, string.format, string.gsub, string.byte
local is_object, is_array, null = json.is_object, json.is_array, json.null
M.stream_type = "text/event-stream"
local PARAMS = NATIVE_PARAMS.gemini
local TOOL_NAME = "^[a-zA-Z_][a-zA-Z0-9_%.:%-]*$"
local function escape_byte(ch) return format("%%%02X", byte(ch)) end
local function segment(s) return (gsub(s, "[^%w%-%._~]", escape_byte)) end
local function parts_of(list)
local out = array()
for i, t in ipairs(list) do out[i] = { text = t } end
return out
end
local function part_of(b, where)
local kind = b.kind
if kind == "text" then
return { text = b.text }
elseif kind == "image" then
if b.url ~= nil then
fail("unsupported_content", where .. ": Gemini models take images as base64 data URLs.", where)
end
return { inlineData = { mimeType = b.media_type, data = b.data } }
elseif kind == "tool_call" then
return { functionCall = { name = b.name, args = b.arguments } }
end
return { functionResponse = { name = b.name, response = { content = table.concat(b.texts) } } }
end
local ROLES = { user = "user", assistant = "model" }
local MODES = { auto = "AUTO", required = "ANY", none = "NONE" }
function M.request(c, model, default_max)
chat.refuse_unsupported(c, PARAMS.supported, PARAMS.label)
if PARAMS.n_max ~= nil and c.n > PARAMS.n_max then
fail("invalid_value", format("`n` must be at most %d for %s models.", PARAMS.n_max, PARAMS.label), "n")
end
if PARAMS.stop_max ~= nil and c.stop ~= nil and #c.stop > PARAMS.stop_max then
fail("invalid_value", format("`stop` may hold at most %d sequences for %s models.", PARAMS.stop_max, PARAMS.label), "stop")
end
local body = { contents = array() }
if #c.system > 0 then body.systemInstruction = { parts = parts_of(c.system) } end
for i, turn in ipairs(c.turns) do
local parts = array()
for j, b in ipairs(turn.blocks) do parts[j] = part_of(b, turn.at) end
body.contents[i] = { role = ROLES[turn.role], parts = parts }
end
local config = {}
local max = c.max_tokens or default_max
if max ~= nil then config.maxOutputTokens = max end
config.temperature = c.temperature
config.topP = c.top_p
config.stopSequences = c.stop
if c.n ~= 1 then config.candidateCount = c.n end
config.seed = c.seed
config.presencePenalty = c.presence_penalty
config.frequencyPenalty = c.frequency_penalty
local rf = c.response_format
if rf ~= nil then
config.responseMimeType = "application/json"
if rf.schema ~= nil then config.responseJsonSchema = rf.schema end
end
if next(config) ~= nil then body.generationConfig = config end
if c.tools ~= nil then
local decls = array()
for i, t in ipairs(c.tools) do
if #t.name > 64 or not find(t.name, TOOL_NAME) then
fail("invalid_tools", t.at .. ".function.name must start with a letter or _ and hold at most 64 letters, digits, _ . : or - for Gemini models.", t.at)
end
decls[i] = { name = t.name, description = t.description, parametersJsonSchema = t.parameters }
end
body.tools = array({ { functionDeclarations = decls } })
local choice = c.tool_choice
if choice ~= nil then
local fc
if type(choice) == "table" then
fc = { mode = "ANY", allowedFunctionNames = array({ choice.name }) }
else
fc = { mode = MODES[choice] }
end
body.toolConfig = { functionCallingConfig = fc }
end
end
local path = "/v1beta/models/" .. segment(model)
.. (c.stream and ":streamGenerateContent?alt=sse" or ":generateContent")
return body, path
end
function M.headers(hdrs) end
local FINISH = {
STOP = "stop", MAX_TOKENS = "length", SAFETY = "content_filter", RECITATION = "content_filter",
BLOCKLIST = "content_filter", PROHIBITED_CONTENT = "content_filter", SPII = "content_filter",
IMAGE_SAFETY = "content_filter", MALFORMED_FUNCTION_CALL = "stop",
}
local function number(v) return type(v) == "number" and v or 0 end
local function usage_of(u)
if not is_object(u) then return nil end
return number(u.promptTokenCount), number(u.candidatesTokenCount) + number(u.thoughtsTokenCount),
number(u.cachedContentTokenCount)
end
local call_seq = 0
local function call_id()
call_seq = (call_seq + 1) % 1000000
return format("call_%x%06d", os.time(), call_seq)
end
local function candidate_parts(cand)
local content = is_object(cand) and cand.content or nil
return is_object(content) and is_array(content.parts) and content.parts or {}
end
local function finish_of(cand, has_calls)
local reason = cand.finishReason
if reason == nil or reason == null then return nil end
local f = FINISH[reason] or "stop"
if f == "stop" and has_calls then f = "tool_calls" end
return f
end
function M.response(r, _, model)
local choices = {}
local cands = is_array(r.candidates) and r.candidates or {}
for i, cand in ipairs(cands) do
local text, n, calls = {}, 0, {}
for _, part in ipairs(candidate_parts(cand)) do
if is_object(part) and part.thought ~= true then
if type(part.text) == "string" then
n = n + 1; text[n] = part.text
elseif is_object(part.functionCall) then
local fc = part.functionCall
calls[#calls + 1] = { id = call_id(), name = fc.name, arguments = json.encode(fc.args or {}) }
end
end
end
choices[i] = { message = reply.message(n > 0 and table.concat(text) or null, calls),
finish_reason = finish_of(cand, #calls > 0) or "stop" }
end
if #choices == 0 then
choices[1] = { message = reply.message(null), finish_reason = "content_filter" }
end
local p, co, cached = usage_of(r.usageMetadata)
return reply.completion("chatcmpl-" .. tostring(r.responseId or "gemini"), r.modelVersion or model,
choices, reply.usage(p, co, cached))
end
function M.error(status, r)
local e = is_object(r) and r.error or nil
local message = is_object(e) and e.message or nil
local code = is_object(e) and e.status or nil
if status == 400 and is_object(e) and is_array(e.details) then
for _, d in ipairs(e.details) do
if is_object(d) and d.reason == "API_KEY_INVALID" then status = 401 end
end
end
return status, reply.error_body(status,
type(message) == "string" and message or "The provider answered " .. status .. ".",
type(code) == "string" and code or nil)
end
function M.stream_state(_, model)
return { sse = sse.new(), tools = {}, model = model }
end
local function on_chunk(st, w, r)
w:start("chatcmpl-" .. tostring(r.responseId or "gemini"), r.modelVersion or st.model)
local cands = is_array(r.candidates) and r.candidates or {}
for i, cand in ipairs(cands) do
local index = type(cand.index) == "number" and cand.index or i - 1
for _, part in ipairs(candidate_parts(cand)) do
if is_object(part) and part.thought ~= true then
if type(part.text) == "string" then
w:text(part.text, index)
elseif is_object(part.functionCall) then
local k = st.tools[index] or 0
st.tools[index] = k + 1
w:tool_start(k, call_id(), part.functionCall.name, index)
w:tool_arguments(k, json.encode(part.functionCall.args or {}), index)
end
end
end
local f = finish_of(cand, (st.tools[index] or 0) > 0)
if f ~= nil then w:finish(f, index) end
end
local p, co, cached = usage_of(r.usageMetadata)
if p ~= nil then w:set_usage(p, co, cached) end
end
function M.stream(st, w, bytes)
for _, ev in ipairs(sse.feed(st.sse, bytes)) do
local ok, data = pcall(json.decode, ev.data)
if ok and is_object(data) then
if is_object(data.error) then
local status, body = M.error(type(data.error.code) == "number" and data.error.code or 500, data)
w:error(status, body.error.message, body.error.code)
else
on_chunk(st, w, data)
end
end
end
end
M.ends_with_body = true
return M
end)()
local NS = NAMES.metadata_ns
local INTERNAL_NS = NAMES.internal_ns
local ATTEMPT_NS = NAMES.attempt_ns
local ROUTE_HEADER, CONSUMER_HEADER = NAMES.route_header, NAMES.consumer_header
local BODY_MODEL_HEADER = NAMES.body_model_header
local PRINCIPAL_HEADER = NAMES.principal_header
local REPLY_HEADER = NAMES.reply_header
local CLIENT_KEY_HEADERS = NAMES.client_key_headers
local MODEL_RESPONSE_HEADER = NAMES.model_response_header
local PROMPT_VERSION_HEADER = NAMES.prompt_version_header
local LIMIT_RESPONSE_HEADER = NAMES.limit_response_header
local GUARDRAIL_RESPONSE_HEADER = NAMES.guardrail_response_header
local ROUTE_KEY, CONSUMER_KEY = NAMES.route_key, NAMES.consumer_key
local GUARD_SET_KEY, GUARD_TEXT_KEY = NAMES.guard_set_key, NAMES.guard_text_key
local RBAC_FILTER = NAMES.rbac_filter
local PROMPT_TOKENS_KEY, COMPLETION_TOKENS_KEY = NAMES.prompt_tokens_key, NAMES.completion_tokens_key
local COST_KEY, BUDGET_KEY, BUDGET_LIMIT = NAMES.cost_key, NAMES.budget_key, NAMES.budget_limit
local CONSUMER_DESCRIPTOR, BUDGET_DESCRIPTOR = NAMES.consumer_descriptor, NAMES.budget_descriptor
local REQUESTS_LIMIT, GLOBAL_REFUSAL = NAMES.requests_limit, NAMES.global_refusal
local TOKENS_USED_KEY, BUDGET_UNITS_KEY = NAMES.tokens_used_key, NAMES.budget_units_key
local CACHE_SAVED_KEY, CACHE_SAVED_NANO_KEY = NAMES.cache_saved_key, NAMES.cache_saved_nano_key
local TOKENS_CHARGED_KEY, BUDGET_CHARGED_KEY = NAMES.tokens_charged_key, NAMES.budget_charged_key
local find, sub, match = string.find, string.sub, string.match
local concat = table.concat
local is_object, is_array = json.is_object, json.is_array
local guard_text, carried_text, shown = texts.guard_text, texts.carried_text, texts.shown
local redact_table = redact.table
local usage_numbers, usage_of, scan_stream_usage = usage.numbers, usage.of, usage.scan_stream
local pick_version, render_prompt = prompts.pick_version, prompts.render
local carry_debt, charge_debt, refund_debt = tokens.carry, tokens.charge, tokens.refund
local local_wait = tokens.wait
local RETRY_AFTER_HEADER = NAMES.retry_after_header
for _, route in pairs(DATA.routes) do
setmetatable(route, { __index = DATA.policies[route.policy] })
end
local function set_target(h, hdrs, pinned)
hdrs:replace(":authority", pinned.authority)
local cred = DATA.providers[pinned.provider].credential
if cred ~= nil then secrets.set_credential(h, hdrs, cred) end
end
local function reply(h, status, message, err_type, code)
h:streamInfo():dynamicMetadata():set(NS, "local_reply", true)
h:headers():replace(REPLY_HEADER, "lua")
local body = json.encode({ error = { message = message, type = err_type, code = code } })
h:respond({ [":status"] = tostring(status), ["content-type"] = "application/json" }, body)
end
local NATIVE = chat ~= nil and { anthropic = anthropic, bedrock = bedrock, gemini = gemini } or nil
local function check_native(req, apis)
local ok, err = pcall(function()
local c = chat.read(req)
for _, api in ipairs(apis) do NATIVE[api].request(c, "model", nil) end
end)
if ok then return nil end
if type(err) ~= "table" then return { status = 400, message = tostring(err), code = "untranslatable" } end
return err
end
local function rebuild(raw, members, model)
local out, n = { '{"model":', json.encode_string(model) }, 2
for i = 1, #members, 3 do
local k = members[i]
if k ~= "model" and k ~= "prompt_variables" then
out[n + 1] = ","
out[n + 2] = sub(raw, members[i + 1], members[i + 2])
n = n + 2
end
end
out[n + 1] = "}"
return concat(out)
end
function envoy_on_request(h)
local hdrs = h:headers()
local endpoint = DATA.endpoints[match(hdrs:get(":path") or "", "^[^?]*")]
if endpoint == nil or hdrs:get(":method") ~= "POST" then return end
local body = h:body()
hdrs = h:headers()
local principal = hdrs:get(PRINCIPAL_HEADER) or "none"
hdrs:remove(PRINCIPAL_HEADER)
if body == nil or body:length() == 0 then
return reply(h, 400, "The request body must be a JSON object.", "invalid_request_error", "invalid_body")
end
local raw = body:getBytes(0, body:length())
local ok, req, members, unique = pcall(json.decode_members, raw)
if not ok then
return reply(h, 400, "The request body is not a valid JSON object.", "invalid_request_error", "invalid_json")
end
local model = req.model
if type(model) ~= "string" then
return reply(h, 400, "The request must name a `model`.", "invalid_request_error", "missing_model")
end
local md = h:streamInfo():dynamicMetadata()
local route_name = DATA.models[model]
if route_name == nil then
local text = shown(model)
md:set(NS, "requested_model", text)
return reply(h, 404, "The model `" .. text .. "` does not exist.", "invalid_request_error", "model_not_found")
end
md:set(NS, "requested_model", model)
local route = DATA.routes[route_name]
md:set(NS, ROUTE_KEY, route_name)
if route.native ~= nil and endpoint ~= "chat" then
return reply(h, 400, "The model `" .. model .. "` serves only /v1/chat/completions.",
"invalid_request_error", "unsupported_endpoint")
end
if #raw > route.max_bytes then
return reply(h, 413, "The request body is larger than " .. route.max_bytes .. " bytes.",
"invalid_request_error", "request_too_large")
end
local consumer, status, message, err_type, code = decide_access(route, principal, model)
if consumer == nil then return reply(h, status, message, err_type, code) end
md:set(NS, CONSUMER_KEY, consumer)
if DATA.budgets ~= nil and DATA.budgets[consumer] then md:set(INTERNAL_NS, BUDGET_KEY, consumer) end
for _, name in ipairs(CLIENT_KEY_HEADERS) do hdrs:remove(name) end
local reencode = not unique
local variables = req.prompt_variables
req.prompt_variables = nil
if route.prompt ~= nil then
if variables ~= nil and not is_object(variables) then
return reply(h, 400, "`prompt_variables` must be an object.", "invalid_request_error", "invalid_prompt_variables")
end
local version = pick_version(route.prompt)
local text, missing, too_large = render_prompt(version, variables or {}, route.max_bytes)
if too_large then
return reply(h, 413, "The rendered prompt would be larger than " .. route.max_bytes .. " bytes.",
"invalid_request_error", "prompt_too_large")
end
if text == nil then
return reply(h, 400, "Missing required prompt variable `" .. missing .. "` in `prompt_variables`.",
"invalid_request_error", "missing_prompt_variable")
end
if endpoint == "chat" then
if not is_array(req.messages) then req.messages = setmetatable({}, json.array) end
table.insert(req.messages, 1, setmetatable({ role = "system", content = text }, json.object))
reencode = true
elseif endpoint == "completions" and type(req.prompt) == "string" then
req.prompt = text .. "\n\n" .. req.prompt
reencode = true
end
md:set(NS, "prompt", route.prompt.name)
md:set(NS, "prompt_version", version.version)
end
local args = route.native ~= nil and chat.escaped_arguments(req) or nil
if route.guard ~= nil then
md:set(INTERNAL_NS, GUARD_SET_KEY, route.guard)
md:set(INTERNAL_NS, GUARD_TEXT_KEY, carried_text(guard_text(req, args)))
end
if route.redact ~= nil then
if redact_table(req, route.redact) then reencode = true end
if args ~= nil then
for _, a in ipairs(args) do
if redact_table(a.value, route.redact) then
a.fn.arguments = json.encode(a.value)
reencode = true
end
end
end
end
if route.native ~= nil then
local err = check_native(req, route.native)
if err ~= nil then
return reply(h, err.status or 400, err.message or tostring(err), "invalid_request_error", err.code)
end
end
if route.cache ~= nil then cache_request(md, hdrs, route.cache, route_name, consumer, endpoint, req) end
carry_debt(md, hdrs, route, route_name, consumer)
local direct = route.direct
local forward_model = direct and direct.upstream or model
local out
if reencode then
req.model = forward_model
out = json.encode(req, "model")
else
out = rebuild(raw, members, forward_model)
end
if out ~= raw then body:setBytes(out) end
hdrs = h:headers()
hdrs:replace(ROUTE_HEADER, route_name)
hdrs:replace(CONSUMER_HEADER, consumer)
if direct ~= nil then
if direct.pinned ~= nil then
set_target(h, hdrs, direct.pinned)
else
hdrs:replace(BODY_MODEL_HEADER, direct.model)
end
end
h:clearRouteCache()
end
local UPSTREAM_AUTH_ERROR = json.encode({ error = {
message = "The provider rejected the gateway's credentials for this model; the gateway's operators have to fix them.",
type = "server_error",
code = "upstream_authentication_failed",
} })
local BUDGET_ERROR = json.encode({ error = {
message = "This consumer's monthly budget is spent; requests are refused until it renews.",
type = "rate_limit_error",
code = "budget_exceeded",
} })
local function global_descriptors(route, info)
local descriptors, kinds, periods = {}, {}, {}
for _, limit in ipairs(route.global or {}) do
if limit.by ~= "consumer" or info.consumer ~= nil then
local d = { { limit.key, info.route } }
if limit.by == "consumer" then d[2] = { CONSUMER_DESCRIPTOR, info.consumer } end
descriptors[#descriptors + 1] = d
kinds[#kinds + 1] = limit.kind
periods[#periods + 1] = limit.period
end
end
if DATA.budgets ~= nil and info.consumer ~= nil and DATA.budgets[info.consumer] then
descriptors[#descriptors + 1] = { { BUDGET_DESCRIPTOR, info.consumer } }
kinds[#kinds + 1] = BUDGET_LIMIT
periods[#periods + 1] = DATA.budget_period
end
return descriptors, kinds, periods
end
local function global_limit_hit(h, route, info)
local descriptors, kinds, periods = global_descriptors(route, info)
if #descriptors == 0 then return REQUESTS_LIMIT, 1 end
local kind, wait = over_limit(h, DATA.ratelimit, descriptors, kinds, periods)
return kind or REQUESTS_LIMIT, wait
end
local function limit_error(kind)
return json.encode({ error = {
message = "Rate limit exceeded: too many " .. kind .. " for this route.",
type = "rate_limit_error",
code = "rate_limit_exceeded",
} })
end
local UPSTREAM_HEADERS_DROPPED = { "content-encoding", "www-authenticate", "set-cookie", "etag", "last-modified" }
local function replace_upstream_auth_error(h, hdrs, md, status)
md:set(NS, "upstream_status", status)
hdrs:replace(":status", "502")
hdrs:replace("content-type", "application/json")
for _, name in ipairs(UPSTREAM_HEADERS_DROPPED) do hdrs:remove(name) end
local body = h:body()
if body ~= nil then
body:setBytes(UPSTREAM_AUTH_ERROR)
end
end
function envoy_on_response(h)
local md = h:streamInfo():dynamicMetadata()
local info = md:get(NS)
if info == nil or info.route == nil or info.local_reply then return end
local route = DATA.routes[info.route]
local hdrs = h:headers()
local status = tonumber(hdrs:get(":status")) or 0
if (status == 401 or status == 403) and hdrs:get(MODEL_RESPONSE_HEADER) ~= nil
and hdrs:get(GUARDRAIL_RESPONSE_HEADER) == nil then
return replace_upstream_auth_error(h, hdrs, md, status)
end
if info.prompt_version ~= nil then
hdrs:replace(PROMPT_VERSION_HEADER, string.format("%d", info.prompt_version))
end
if route.guard_logs then
local rbac = md:get(RBAC_FILTER)
if rbac ~= nil and rbac.shadow_engine_result == "denied" then md:set(NS, "guardrail", "logged") end
elseif route.guard ~= nil and status == 403 and hdrs:get(GUARDRAIL_RESPONSE_HEADER) ~= nil then
md:set(NS, "guardrail", "blocked")
end
local limit_hit = status == 429 and hdrs:get(LIMIT_RESPONSE_HEADER)
if limit_hit == GLOBAL_REFUSAL then
if h:body() == nil then return end
local wait
limit_hit, wait = global_limit_hit(h, route, info)
local out = h:headers()
out:replace(LIMIT_RESPONSE_HEADER, limit_hit)
out:replace(RETRY_AFTER_HEADER, string.format("%d", wait))
h:body():setBytes(limit_hit == BUDGET_LIMIT and BUDGET_ERROR or limit_error(limit_hit))
return
end
if limit_hit then
local internal = md:get(INTERNAL_NS) or {}
refund_debt(info, route, internal)
if hdrs:get(RETRY_AFTER_HEADER) == nil then
hdrs:replace(RETRY_AFTER_HEADER, string.format("%d", local_wait(route, internal)))
end
return
end
if status < 200 or status >= 300 then return end
local model = hdrs:get(MODEL_RESPONSE_HEADER)
local ctype = hdrs:get("content-type") or ""
local p, c, cached
local og = route.outguard
if og ~= nil then og = DATA.outguards[og] end
if find(ctype, "text/event-stream", 1, true) then
if og == nil then p, c, cached = scan_stream_usage(h) else p, c, cached = outguard.stream(h, og) end
if p == nil and route.native ~= nil then
local attempt = h:streamInfo():dynamicMetadata():get(ATTEMPT_NS)
if attempt ~= nil then p, c, cached = usage_numbers(attempt.usage) end
end
else
local body = h:body()
if body == nil then return end
local raw = body:getBytes(0, body:length())
if og ~= nil then
local out = outguard.reply(h, og, raw)
if out ~= nil then h:body():setBytes(out) end
end
p, c, cached = usage_of(raw)
end
if p == nil then return end
md = h:streamInfo():dynamicMetadata()
local price = model and DATA.prices[model]
local cost = price ~= nil and (p * price[1] + c * price[2]) / 1000000 or 0
if info.cache == "hit" then
if price ~= nil then
md:set(NS, CACHE_SAVED_KEY, tonumber(string.format("%.8f", cost)))
md:set(INTERNAL_NS, CACHE_SAVED_NANO_KEY, math.floor(cost * 1e9 + 0.5))
end
return
end
md:set(NS, PROMPT_TOKENS_KEY, p)
md:set(NS, COMPLETION_TOKENS_KEY, c)
if cached ~= nil and cached > 0 then md:set(NS, "cached_tokens", cached) end
if price ~= nil then md:set(NS, "cost_usd", tonumber(string.format("%.8f", cost))) end
md:set(INTERNAL_NS, COST_KEY, math.floor(cost * 1e9 + 0.5))
if #route.token_limits > 0 then charge_debt(info, route, p + c) end
if route.global_tokens and p + c > 0 then
md:set(INTERNAL_NS, TOKENS_USED_KEY, p + c)
md:set(INTERNAL_NS, TOKENS_CHARGED_KEY, info.route)
end
if DATA.budgets ~= nil and DATA.budgets[info.consumer] and cost > 0 then
md:set(INTERNAL_NS, BUDGET_UNITS_KEY, math.ceil(cost / DATA.budget_unit_usd - 1e-9))
md:set(INTERNAL_NS, BUDGET_CHARGED_KEY, info.consumer)
end
end
