-- An incremental reader of AWS event streams (application/vnd.amazon.eventstream: Bedrock's
-- ConverseStream). Bound at render time as `local eventstream = (function() ... end)()`.
-- feed(state, bytes) returns the messages completed by those bytes, each {headers = {name =
-- value}, payload = bytes}; a partial message waits in the state. A message is
--   total length (uint32) | headers length (uint32) | prelude CRC32 | headers | payload | CRC32
-- big-endian, both CRCs (IEEE) checked: a frame that fails either is an error, as the AWS
-- SDKs treat it. Header values of the string and bytes types are kept as strings, others as
-- numbers or booleans where Lua can hold them.
local M = {}
local bit = bit
local band, bxor, rshift, bnot, tobit = bit.band, bit.bxor, bit.rshift, bit.bnot, bit.tobit
local byte, sub = string.byte, string.sub

local MAX_MESSAGE = 16 * 1024 * 1024  -- AWS's own bound on one event-stream message

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

-- Fixed-size header values by type byte (0 true, 1 false carry none).
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
