-- A small, strict JSON decoder and encoder for Envoy's Lua (LuaJIT / Lua 5.1 has none).
--
-- decode: objects become tables with metatable json.object, arrays tables with json.array
-- (so that `{}` and `[]` survive a round trip); null is the sentinel json.null; \u escapes,
-- surrogate pairs included, become UTF-8; nesting deeper than MAX_DEPTH is an error.
-- encode: object keys are written sorted (byte order) for a deterministic body, except that
-- `first` (if given) is written first; strings are escaped per RFC 8259; numbers round-trip.
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
  -- pos is at the opening quote
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

local function decode_number(str, pos)
  local s, e = find(str, "^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
  if not s then decode_error(str, pos, "unexpected character") end
  local text = sub(str, s, e)
  if not find(text, "^-?0$") and not find(text, "^-?0[.eE]") and find(text, "^-?0") then
    decode_error(str, pos, "leading zero")
  end
  if not (find(text, "^-?%d+$") or find(text, "^-?%d+%.%d+$") or find(text, "^-?%d+[eE][-+]?%d+$")
          or find(text, "^-?%d+%.%d+[eE][-+]?%d+$")) then
    decode_error(str, pos, "bad number")
  end
  return tonumber(text), e + 1
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

function json.is_object(v)
  return type(v) == "table" and getmetatable(v) == json.object
end

function json.is_array(v)
  return type(v) == "table" and getmetatable(v) == json.array
end

local string_escapes = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
                         ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

local function encode_string(s)
  return '"' .. string.gsub(s, '[%c"\\]', function(c)
    return string_escapes[c] or format("\\u%04x", byte(c))
  end) .. '"'
end
json.encode_string = encode_string

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

encode_value = function(v, out, first)
  local tv = type(v)
  if v == json.null or v == nil then
    out[#out + 1] = "null"
  elseif tv == "boolean" then
    out[#out + 1] = v and "true" or "false"
  elseif tv == "number" then
    out[#out + 1] = encode_number(v)
  elseif tv == "string" then
    out[#out + 1] = encode_string(v)
  elseif tv == "table" then
    local mt = getmetatable(v)
    if mt == json.array or (mt ~= json.object and next(v) ~= nil and is_sequence(v)) then
      out[#out + 1] = "["
      for i = 1, #v do
        if i > 1 then out[#out + 1] = "," end
        encode_value(v[i], out)
      end
      out[#out + 1] = "]"
    else
      local keys = {}
      for k in pairs(v) do
        if type(k) ~= "string" then error("object keys must be strings", 0) end
        if k ~= first then keys[#keys + 1] = k end
      end
      table.sort(keys)
      if first ~= nil and v[first] ~= nil then table.insert(keys, 1, first) end
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = encode_string(k)
        out[#out + 1] = ":"
        encode_value(v[k], out)
      end
      out[#out + 1] = "}"
    end
  else
    error("cannot encode a " .. tv, 0)
  end
end

-- encode(value [, first]): `first` names an object key written before the sorted others.
function json.encode(v, first)
  local out = {}
  encode_value(v, out, first)
  return concat(out)
end

return json
