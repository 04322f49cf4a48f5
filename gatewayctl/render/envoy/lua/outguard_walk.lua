-- The output guardrails' automaton walks (for outguard.lua, bound before it on gateways with
-- output guardrails): over a text's bytes as they are (message content, decoded once by the
-- reply's JSON), and over tool-call arguments with their own JSON escapes decoded. The table
-- layout is manifests/output_dfa.py's; state 0 is the match.
local M = {}
local byte, char, find, sub = string.byte, string.char, string.find, string.sub

-- Walks the automaton over text from state s; returns the state (0: matched).
local function walk(dfa, s, text)
  local nxt, classes = dfa.next, dfa.classes
  for i = 1, #text do
    s = nxt[s + classes[byte(text, i) + 1]]
    if s == 0 then return 0 end
  end
  return s
end

-- Tool-call arguments are a JSON text that the client decodes once more (the tool reads its
-- values), so they are walked with their escapes decoded: `\u0070` is walked as `p`, `\n` as
-- a line break, a surrogate pair as the character's UTF-8 bytes (a lone surrogate as U+FFFD,
-- as json.lua decodes it). The escape being read is kept in the text's state (its raw
-- bytes), so an escape cut between two events is decoded whole.
local ESCAPED = { [34] = '"', [92] = "\\", [47] = "/", [98] = "\b", [102] = "\f",
                  [110] = "\n", [114] = "\r", [116] = "\t" }
-- a \u escape (or a pair of them) is decoded by json.lua, as the reply's own escapes are
local function decode_u(esc) return json.decode('"' .. esc .. '"') end
local REPLACEMENT = decode_u("\\uFFFD")
-- hexadecimal digits' values, by byte
local HEX = {}
for k = 0, 9 do HEX[48 + k] = k end
for k = 0, 5 do HEX[65 + k] = 10 + k; HEX[97 + k] = 10 + k end
-- what may follow a high surrogate's escape, byte by byte, for a pair: \uDC00-\uDFFF
local LOW = { "^\\$", "^u$", "^[dD]$", "^[c-fC-F]$", "^%x$", "^%x$" }

-- What an escape's raw bytes (a backslash first) decode to: (bytes, rest), rest being raw
-- bytes still to read (what followed a lone high surrogate); nil while it is incomplete.
local function decode_escape(esc)
  local n, kind = #esc, byte(esc, 2)
  if kind == nil then return nil end
  if kind ~= 117 then return ESCAPED[kind] or esc, "" end  -- a bad escape: its bytes
  if not find(sub(esc, 3, 6), "^%x*$") then return esc, "" end
  if n < 6 then return nil end
  local cp = tonumber(sub(esc, 3, 6), 16)
  if cp < 0x80 then return char(cp), "" end
  if cp < 0xD800 or cp > 0xDFFF then return decode_u(esc), "" end
  if cp >= 0xDC00 then return REPLACEMENT, "" end
  local tail = sub(esc, 7)
  for k = 1, #tail do
    if not find(sub(tail, k, k), LOW[k]) then return REPLACEMENT, tail end
  end
  if #tail < 6 then return nil end
  return decode_u(esc), ""
end

-- Walks arguments text from state s with the escape state esc (raw bytes of an escape not
-- yet complete, "" when none). Returns the state, the escape state, and the position after
-- the last byte at which the walk was idle with no escape open (0: none), for the hold-back.
local function walk_json(dfa, s, esc, text)
  local nxt, classes, idle = dfa.next, dfa.classes, dfa.idle
  local last_idle = 0
  local i, n = 1, #text
  while i <= n do
    local b = byte(text, i)
    if esc == "" then
      -- a run of plain bytes: the content walk's loop
      while b ~= 92 do
        s = nxt[s + classes[b + 1]]
        if s == 0 then return 0, "", last_idle end
        if s <= idle then last_idle = i + 1 end
        i = i + 1
        if i > n then return s, esc, last_idle end
        b = byte(text, i)
      end
      -- an escape of an ASCII character whole in this text is read in place: no string
      local c, ascii = byte(text, i + 1), nil
      if c == 117 then
        local h3 = HEX[byte(text, i + 4)]
        if h3 ~= nil and h3 < 8 and HEX[byte(text, i + 2)] == 0
            and HEX[byte(text, i + 3)] == 0 then
          local h4 = HEX[byte(text, i + 5)]
          if h4 ~= nil then ascii = h3 * 16 + h4 end
        end
      elseif c ~= nil and ESCAPED[c] ~= nil then
        ascii = byte(ESCAPED[c])
      end
      if ascii ~= nil then
        s = nxt[s + classes[ascii + 1]]
        if s == 0 then return 0, "", last_idle end
        i = i + (c == 117 and 6 or 2)
        if s <= idle then last_idle = i end
      else
        esc, i = "\\", i + 1
      end
    else
      -- an escape cut by the text's end, or above ASCII: its bytes are gathered, as many at
      -- once as it still needs (6 bytes for \uXXXX, 12 for a surrogate pair, 2 for the others)
      local need = 2
      if byte(esc, 2) == 117 or (esc == "\\" and b == 117) then need = #esc >= 6 and 12 or 6 end
      local last = i + need - #esc - 1
      if last < i then last = i elseif last > n then last = n end
      esc = esc .. sub(text, i, last)
      i = last
      local out, rest = decode_escape(esc)
      while out ~= nil do
        for k = 1, #out do
          s = nxt[s + classes[byte(out, k) + 1]]
          if s == 0 then return 0, "", last_idle end
        end
        esc = ""
        -- bytes that followed a lone high surrogate: plain ones, or a new escape
        local j = 1
        while j <= #rest and byte(rest, j) ~= 92 do
          s = nxt[s + classes[byte(rest, j) + 1]]
          if s == 0 then return 0, "", last_idle end
          j = j + 1
        end
        if j > #rest then break end
        esc = sub(rest, j)
        out, rest = decode_escape(esc)
      end
      i = i + 1
      if esc == "" and s <= idle then last_idle = i end
    end
  end
  return s, esc, last_idle
end

-- The end of arguments text: an escape still open is read as its bytes, a lone high
-- surrogate (the only open escape of 6 bytes or more) as U+FFFD.
local function end_json(dfa, s, esc)
  if esc == "" or s == 0 then return s end
  if #esc >= 6 then
    s = walk(dfa, s, REPLACEMENT)
    esc = sub(esc, 7)
  end
  return walk(dfa, s, esc)
end

M.walk, M.walk_json, M.end_json = walk, walk_json, end_json
return M
