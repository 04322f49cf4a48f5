-- A small, strict JSON decoder and encoder for Envoy's Lua (LuaJIT / Lua 5.1 has none).
--
-- decode: objects become tables with metatable json.object, arrays tables with json.array
-- (so that `{}` and `[]` survive a round trip); null is the sentinel json.null; \u escapes,
-- surrogate pairs included, become UTF-8; nesting deeper than MAX_DEPTH is an error.
-- encode: object keys are written sorted (byte order) for a deterministic body, except that
-- `first` (if given) is written first; strings are escaped per RFC 8259; numbers round-trip.
-- decode_members: decode a top-level object and also return where each member's text is, so a
-- caller can forward the original bytes with members left out (see gateway.lua).
-- top_level_member: decode only one member of a top-level object (`usage` of a reply).
-- Bound at render time after jsonstring.lua (the string encoder and scanner it uses).
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
  -- pos is at the opening quote; most strings hold no escape and end at the first quote
  -- (a positive set of ranges is cheaper for Lua's matcher than the negated one below)
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
    -- backslash
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
-- Set by a decode when some object repeats a key (the last value wins, as in most decoders);
-- a caller that forwards the original bytes must not, since a provider may keep the first.
local saw_duplicate = false

local function decode_number(str, pos)
  -- int [frac] [exp], each part checked where it starts (RFC 8259 grammar)
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

-- decode_members(str) -> obj, members, unique: str must be one JSON object. members is a flat
-- list key1, first1, last1, key2, ...: member i's text (key through value, no surrounding
-- whitespace) is sub(str, first_i, last_i). unique is false if any object, at any depth,
-- repeats a key.
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

-- top_level_member(str, key) -> the decoded value of member `key` of the top-level object
-- (the last one if repeated, as decode keeps the last), or nil if there is none or it is not
-- valid JSON. Only that member is decoded. key must need no escaping.
--
-- Fast path: the key's last occurrence, preceded by `{` or `,` and followed by `:`, is a key
-- token (an unescaped quote after it ends a string, so it cannot lie inside one); when its
-- value is followed only by the closing `}`, it is the top-level object's last member. This is
-- where providers put `usage`. Otherwise a structural scan walks the document, skipping
-- strings whole, so text inside a string (message content quoting `"usage":`) or a member of
-- a nested object never matches.
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

-- Object keys repeat from request to request: short ones are encoded once per worker (at most
-- KEY_CACHE_MAX of them, so client-chosen keys cannot grow it without bound).
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

-- Appends v's text to out after index n; returns the new last index.
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

-- encode(value [, first]): `first` names an object key written before the sorted others.
function json.encode(v, first)
  local out = {}
  encode_value(v, out, 0, first)
  return concat(out)
end


return json
