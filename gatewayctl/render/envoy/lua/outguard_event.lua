-- A stream event's JSON skimmed for the texts output guardrails check (for outguard.lua, bound
-- before it on gateways with output guardrails): where each choice's `delta.content` (or
-- `text`) and each tool call's `function.arguments` string lies in the event's bytes, so the
-- event can be forwarded as it came, or with only those strings replaced, instead of decoded
-- and re-encoded whole. skim(payload) returns nil for any event it does not fully read, and
-- outguard.lua then decodes it with json.lua as before: JSON that json.lua refuses, a key
-- written with an escape, a member read here repeated or of an unexpected type, a choice with
-- both `delta` and `text`, a `usage` object, no choices, nesting deeper than MAX_DEPTH. What it
-- accepts json.decode accepts too, and reads the same way.
--
-- skim returns { choices = { { index, finish = whether `finish_reason` is set, content = slot,
-- calls = { { index, slot } }, delta = { at = its `{`, empty } when the choice has a `delta`
-- object without `content` } },
-- slots = the slots in the event's order }; a slot is { s = its opening quote, e = its
-- closing quote, esc = whether the string holds an escape }.
local M = {}
local byte, char, gsub, sub = string.byte, string.char, string.gsub, string.sub
local floor = math.floor

local MAX_DEPTH = 32

local HEX = {}
for c = 48, 57 do HEX[c] = true end
for c = 65, 70 do HEX[c] = true; HEX[c + 32] = true end
-- the escapes of one character after the backslash: " \ / b f n r t
local SHORT_ESCAPE = { [34] = true, [92] = true, [47] = true, [98] = true, [102] = true,
                       [110] = true, [114] = true, [116] = true }

local function skip_ws(str, i)
  local c = byte(str, i)
  while c == 32 or c == 10 or c == 13 or c == 9 do
    i = i + 1
    c = byte(str, i)
  end
  return i, c
end

-- i at a string's opening quote: the index of its closing quote and whether the string holds
-- an escape; nil when it is not a valid JSON string.
local function string_end(str, i)
  local esc = false
  i = i + 1
  while true do
    local c = byte(str, i)
    if c == 34 then return i, esc end
    if c == 92 then
      local k = byte(str, i + 1)
      if k == 117 then
        if not (HEX[byte(str, i + 2)] and HEX[byte(str, i + 3)] and HEX[byte(str, i + 4)]
                and HEX[byte(str, i + 5)]) then
          return nil
        end
        i = i + 6
      elseif SHORT_ESCAPE[k] then
        i = i + 2
      else
        return nil
      end
      esc = true
    elseif c == nil or c < 32 then
      return nil
    else
      i = i + 1
    end
  end
end

local function is_digit(c) return c ~= nil and c >= 48 and c <= 57 end

-- i at a number: the index after it, or nil (RFC 8259's grammar, as json.lua reads it).
local function number_end(str, i)
  local c = byte(str, i)
  if c == 45 then i = i + 1; c = byte(str, i) end
  if c == 48 then
    i = i + 1; c = byte(str, i)
  elseif is_digit(c) then
    repeat i = i + 1; c = byte(str, i) until not is_digit(c)
  else
    return nil
  end
  if c == 46 then
    i = i + 1; c = byte(str, i)
    if not is_digit(c) then return nil end
    repeat i = i + 1; c = byte(str, i) until not is_digit(c)
  end
  if c == 101 or c == 69 then
    i = i + 1; c = byte(str, i)
    if c == 43 or c == 45 then i = i + 1; c = byte(str, i) end
    if not is_digit(c) then return nil end
    repeat i = i + 1; c = byte(str, i) until not is_digit(c)
  end
  return i
end

-- i at any value: the index after it, or nil.
local function skip_value(str, i, depth)
  local c = byte(str, i)
  if c == 34 then
    local e = string_end(str, i)
    return e and e + 1
  elseif c == 123 or c == 91 then
    if depth >= MAX_DEPTH then return nil end
    local close = c == 123 and 125 or 93
    i, c = skip_ws(str, i + 1)
    if c == close then return i + 1 end
    while true do
      if close == 125 then
        if c ~= 34 then return nil end
        local e = string_end(str, i)
        if e == nil then return nil end
        i, c = skip_ws(str, e + 1)
        if c ~= 58 then return nil end
        i = skip_ws(str, i + 1)
      end
      i = skip_value(str, i, depth + 1)
      if i == nil then return nil end
      i, c = skip_ws(str, i)
      if c == close then return i + 1 end
      if c ~= 44 then return nil end
      i, c = skip_ws(str, i + 1)
    end
  elseif c == 116 then
    return sub(str, i, i + 3) == "true" and i + 4 or nil
  elseif c == 102 then
    return sub(str, i, i + 4) == "false" and i + 5 or nil
  elseif c == 110 then
    return sub(str, i, i + 3) == "null" and i + 4 or nil
  end
  return number_end(str, i)
end

local function is_null(str, i) return sub(str, i, i + 3) == "null" end

-- The object at i, member by member: on(ctx, str, key, value index, depth) returns the index
-- after the value, or nil to give up. Returns the index after the object, or nil.
local function read_object(str, i, depth, on, ctx)
  if byte(str, i) ~= 123 or depth >= MAX_DEPTH then return nil end
  local c
  i, c = skip_ws(str, i + 1)
  if c == 125 then return i + 1 end
  while true do
    if c ~= 34 then return nil end
    local e, esc = string_end(str, i)
    -- a key with an escape may spell a member read here: left to json.decode
    if e == nil or esc then return nil end
    local key = sub(str, i + 1, e - 1)
    i, c = skip_ws(str, e + 1)
    if c ~= 58 then return nil end
    i = on(ctx, str, key, skip_ws(str, i + 1), depth + 1)
    if i == nil then return nil end
    i, c = skip_ws(str, i)
    if c == 125 then return i + 1 end
    if c ~= 44 then return nil end
    i, c = skip_ws(str, i + 1)
  end
end

-- The array at i, item by item: on(ctx, str, item index, depth, position from 1).
local function read_array(str, i, depth, on, ctx)
  if byte(str, i) ~= 91 or depth >= MAX_DEPTH then return nil end
  local c
  i, c = skip_ws(str, i + 1)
  if c == 93 then return i + 1 end
  local position = 0
  while true do
    position = position + 1
    i = on(ctx, str, i, depth + 1, position)
    if i == nil then return nil end
    i, c = skip_ws(str, i)
    if c == 93 then return i + 1 end
    if c ~= 44 then return nil end
    i = skip_ws(str, i + 1)
  end
end

-- A string member read as a text: its slot (in the event's order) and the index after it.
local function text_slot(ev, str, i)
  if byte(str, i) ~= 34 then return nil end
  local e, esc = string_end(str, i)
  if e == nil then return nil end
  local slot = { s = i, e = e, esc = esc }
  ev.slots[#ev.slots + 1] = slot
  return slot, e + 1
end

-- A number member (an index): its value and the index after it.
local function number_at(str, i)
  local e = number_end(str, i)
  if e == nil then return nil end
  return tonumber(sub(str, i, e - 1)), e
end

local function on_function(call, str, key, i, depth)
  if key ~= "arguments" then return skip_value(str, i, depth) end
  if call.seen_arguments or is_null(str, i) then return nil end
  call.seen_arguments = true
  local slot, after = text_slot(call.ev, str, i)
  call.slot = slot
  return after
end

local function on_call_member(call, str, key, i, depth)
  if key == "index" then
    if call.index ~= nil then return nil end
    local n, after = number_at(str, i)
    call.index = n
    return after
  elseif key == "function" then
    if call.seen_function then return nil end
    call.seen_function = true
    return read_object(str, i, depth, on_function, call)
  end
  return skip_value(str, i, depth)
end

local function on_call(choice, str, i, depth, position)
  local call = { ev = choice.ev }
  local after = read_object(str, i, depth, on_call_member, call)
  if after == nil then return nil end
  if call.slot ~= nil then
    local calls = choice.calls
    calls[#calls + 1] = { index = call.index or position - 1, slot = call.slot }
  end
  return after
end

local function on_delta(choice, str, key, i, depth)
  choice.delta_members = choice.delta_members + 1
  if key == "content" then
    if choice.seen_content then return nil end
    choice.seen_content = true
    if is_null(str, i) then return i + 4 end
    local slot, after = text_slot(choice.ev, str, i)
    choice.content = slot
    return after
  elseif key == "tool_calls" then
    if choice.seen_calls then return nil end
    choice.seen_calls = true
    if is_null(str, i) then return i + 4 end
    return read_array(str, i, depth, on_call, choice)
  end
  return skip_value(str, i, depth)
end

local function on_choice_member(choice, str, key, i, depth)
  if key == "delta" then
    if choice.seen_delta then return nil end
    choice.seen_delta, choice.delta_at = true, i
    return read_object(str, i, depth, on_delta, choice)
  elseif key == "text" then
    if choice.seen_text then return nil end
    choice.seen_text = true
    if is_null(str, i) then return i + 4 end
    local slot, after = text_slot(choice.ev, str, i)
    choice.text = slot
    return after
  elseif key == "finish_reason" then
    if choice.seen_finish then return nil end
    choice.seen_finish = true
    if is_null(str, i) then return i + 4 end
    choice.finish = true
    return skip_value(str, i, depth)
  elseif key == "index" then
    if choice.index ~= nil then return nil end
    local n, after = number_at(str, i)
    choice.index = n
    return after
  end
  return skip_value(str, i, depth)
end

local function on_choice(ev, str, i, depth, position)
  local choice = { ev = ev, calls = {}, delta_members = 0 }
  local after = read_object(str, i, depth, on_choice_member, choice)
  if after == nil or (choice.seen_delta and choice.seen_text) then return nil end
  local choices = ev.choices
  -- delta: where a `delta` object without `content` opens, and whether it has members
  local delta = nil
  if choice.delta_at ~= nil and not choice.seen_content then
    delta = { at = choice.delta_at, empty = choice.delta_members == 0 }
  end
  choices[#choices + 1] = { index = choice.index or position - 1, finish = choice.finish,
                            content = choice.content or choice.text, calls = choice.calls,
                            delta = delta }
  return after
end

local function on_top(ev, str, key, i, depth)
  if key == "choices" then
    if ev.seen_choices then return nil end
    ev.seen_choices = true
    return read_array(str, i, depth, on_choice, ev)
  elseif key == "usage" then
    -- a usage object: the event is decoded (its numbers are the stream's usage)
    if not is_null(str, i) then return nil end
    return i + 4
  end
  return skip_value(str, i, depth)
end

-- The event's JSON text (payload) skimmed, or nil: see the top of this file.
function M.skim(payload)
  local ev = { choices = {}, slots = {} }
  local i = skip_ws(payload, 1)
  i = read_object(payload, i, 0, on_top, ev)
  if i == nil or #ev.choices == 0 or skip_ws(payload, i) <= #payload then return nil end
  return ev
end

-- The one-character escapes, decoded.
local UNESCAPE = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n",
                   r = "\r", t = "\t" }

-- An escape (its character, and the hexadecimal digits after it) decoded; a surrogate's `\u`
-- escape is left to json.lua (its pair is decoded as one character), and flagged.
local surrogate = false
local function unescape(c, hex)
  if c ~= "u" then return UNESCAPE[c] .. hex end
  local cp = tonumber(hex, 16)
  if cp < 0x80 then return char(cp) end
  if cp < 0x800 then return char(0xC0 + floor(cp / 0x40), 0x80 + cp % 0x40) end
  if cp >= 0xD800 and cp <= 0xDFFF then surrogate = true; return "" end
  return char(0xE0 + floor(cp / 0x1000), 0x80 + floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
end

-- The text of the string from s (its opening quote) to e (its closing quote), decoded as
-- json.lua decodes it (its escapes were checked by string_end; one with a surrogate is
-- decoded by json.lua).
local function text(str, s, e, esc)
  local inner = sub(str, s + 1, e - 1)
  if not esc then return inner end
  surrogate = false
  local out = gsub(inner, "\\(.)(%x?%x?%x?%x?)", unescape)
  if surrogate then return json.decode(sub(str, s, e)) end
  return out
end

-- A slot's text.
function M.text(payload, slot) return text(payload, slot.s, slot.e, slot.esc) end

-- The string in str from its opening quote at s: its text, and the index of its closing
-- quote; nil when it is not a valid JSON string.
function M.string_at(str, s)
  local e, esc = string_end(str, s)
  if e == nil then return nil end
  return text(str, s, e, esc), e
end

return M
