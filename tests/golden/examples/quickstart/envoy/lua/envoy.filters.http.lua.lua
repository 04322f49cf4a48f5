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
