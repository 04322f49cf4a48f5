-- The text of a request that the provider reads, as the guardrails see it, and client text
-- made safe to carry (for gateway.lua). Bound at render time as
-- `local texts = (function() ... end)()`; returns { guard_text, carried_text, shown }.
-- gatewayctl/explain/text.py computes the same for `gatewayctl explain`.
--
-- A provider reads every string of the body: message text of every role and part (a string,
-- an array of parts or one part object), tool calls (names and arguments), tool and function
-- definitions (descriptions, parameter schemas), `prompt`, `input`, the injected prompt. The
-- deny patterns see all of it, object keys below the top level included (a schema's property
-- names reach the model too). Left out, as not text: the top-level member names (the API's
-- parameters), `model`, and a `role` or `type` whose value is one of the API's enumeration words
-- (ENUM_WORDS: the provider checks those). Any other value there is text: a provider may render
-- a custom role into the prompt (vLLM), and a schema property named `type` or `role` holds a
-- schema whose description the model reads.
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
  -- A tool call's `arguments` is a JSON text that the native APIs get decoded: what its escapes
  -- spell is text the provider reads too.
  if native ~= nil then
    for _, a in ipairs(native) do
      if type(a.value) == "table" then n = add_strings(a.value, out, n) end
    end
  end
  return concat(out, "\n")
end

-- Text that Envoy's dynamic metadata carries whole and RE2 reads as UTF-8. A metadata string
-- ends at its first NUL, so NUL becomes a space; RE2's `.` matches no byte that is outside a
-- valid UTF-8 sequence, so one such byte anywhere would keep `(?s:.*)P(?s:.*)` from matching
-- the whole text: each becomes U+FFFD. Nothing else changes.
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

-- Client text shown in an error message or the access log: valid UTF-8 without NUL, at most
-- SHOWN_MAX bytes, and a cut one says so.
local SHOWN_MAX = 256
local function shown(s)
  if #s <= SHOWN_MAX then return carried_text(s) end
  return carried_text(sub(s, 1, SHOWN_MAX)) .. "...(truncated, " .. #s .. " bytes)"
end

M.guard_text, M.carried_text, M.shown = guard_text, carried_text, shown
return M
