-- Output guardrails: deny patterns and redaction on what the model returns (for gateway.lua,
-- only on gateways with a route that has outputGuardrails). Bound at render time as
-- `local outguard = (function() ... end)()`; returns { reply, stream, walk }.
--
-- The texts are what a client reads of a reply: each choice's message content (`text` on
-- /v1/completions) and each tool call's `arguments`, whole or as a stream's deltas; the reply
-- is OpenAI's shape for every provider (translate.lua runs before this filter).
-- Deny patterns are one automaton per guard (DATA.outguards[k].dfa, compiled at render time
-- by manifests/output_dfa.py, whose docstring gives the table layout), walked byte by byte
-- without yielding, so a stream keeps streaming; its state is kept per text across events
-- and chunks, so a phrase split between chunks is still found. The walks are in
-- outguard_walk.lua: content as the reply's JSON decodes it, tool-call arguments with their
-- own JSON escapes decoded too (as the tool reads them), an escape cut between events included.
-- A stream never sends matched text: the text since the automaton was last idle (a match in
-- progress) is held back and released when it returns there; a block ends the stream with a
-- `content_filter` finish and `data: [DONE]`. Redaction (redact.lua's kinds) holds back the
-- text after the last position no redaction can span (after a whitespace byte that does not
-- continue a digit run), so streamed redaction equals redaction of the whole text; a stream's
-- tool-call arguments are redacted whole (decoded, redacted, re-encoded) at the call's end.
-- A stream's events are skimmed (outguard_event.lua), not decoded: one whose texts go out as
-- they came is sent byte for byte, one whose text is held back or redacted has that string
-- alone re-encoded in place; an event that differs from the one before only by its text is
-- read by comparing the bytes around it. Events the skim does not read are decoded and
-- re-encoded by json.lua.
local M = {}
local byte, find, sub = string.byte, string.find, string.sub
local concat = table.concat
local redact_string, redact_table = redact.string, redact.table
local usage_numbers = usage.numbers
local NS = NAMES.metadata_ns
local OUTPUT_GUARDRAIL_KEY = NAMES.output_guardrail_key

local BLOCKED_ERROR = json.encode({ error = {
  message = "The model's answer was withheld: it matched this route's output guardrails.",
  type = "invalid_request_error",
  code = "output_blocked",
} })

-- The states in which a text that ends there matches (`$`), as a set.
for _, g in pairs(DATA.outguards or {}) do
  if g.dfa ~= nil then
    local set = {}
    for _, s in ipairs(g.dfa.ends) do set[s] = true end
    g.dfa.end_set = set
  end
end

local walk, walk_json, end_json = outguard_walk.walk, outguard_walk.walk_json,
  outguard_walk.end_json
local skim, slot_text, string_at = outguard_event.skim, outguard_event.text,
  outguard_event.string_at
local encode_string = json.encode_string
M.walk, M.walk_json = walk, walk_json

local function matched_at_end(dfa, s)
  return s == 0 or dfa.end_set[s] == true
end

local function arguments_match(g, text)
  local dfa = g.dfa
  local s, esc = walk_json(dfa, dfa.start, "", text)
  return matched_at_end(dfa, end_json(dfa, s, esc))
end

-- Whole replies -------------------------------------------------------------------------------

-- The verdict goes to the access log (`gateway.output_guardrail`) and the counter.
local function record(h, verdict)
  h:streamInfo():dynamicMetadata():set(NS, OUTPUT_GUARDRAIL_KEY, verdict)
end

local function text_matches(g, text, kind)
  if g.dfa == nil or type(text) ~= "string" then return false end
  if kind == "arguments" then return arguments_match(g, text) end
  return matched_at_end(g.dfa, walk(g.dfa, g.dfa.start, text))
end

-- Redacts a tool call's arguments (a JSON text): its strings, decoded and re-encoded, so a
-- number is never taken for a phone number; text that is not JSON is redacted as text.
local function redact_arguments(args, kinds)
  local ok, value = pcall(json.decode, args)
  if ok and type(value) == "table" then
    if redact_table(value, kinds) then return json.encode(value) end
    return args
  end
  return redact_string(args, kinds)
end

-- Each text a client reads of a decoded reply: fn(holder, key, kind) for holder[key].
local function each_text(reply, fn)
  local choices = reply.choices
  if type(choices) ~= "table" then return end
  for _, choice in ipairs(choices) do
    if type(choice) == "table" then
      if type(choice.text) == "string" then fn(choice, "text", "text") end
      local message = choice.message
      if type(message) == "table" then
        if type(message.content) == "string" then fn(message, "content", "text") end
        if type(message.tool_calls) == "table" then
          for _, call in ipairs(message.tool_calls) do
            local fn_ = type(call) == "table" and call["function"]
            if type(fn_) == "table" and type(fn_.arguments) == "string" then
              fn(fn_, "arguments", "arguments")
            end
          end
        end
      end
    end
  end
end

-- A whole JSON reply: returns the body to send, or nil to leave it as it is. A block also
-- sets the status; the caller reads usage from the original.
function M.reply(h, g, raw)
  local ok, reply = pcall(json.decode, raw)
  if not ok or type(reply) ~= "table" then return nil end
  local hit = false
  each_text(reply, function(holder, key, kind)
    if not hit and text_matches(g, holder[key], kind) then hit = true end
  end)
  if hit then
    if g.block then
      record(h, "blocked")
      local hdrs = h:headers()
      hdrs:replace(":status", "403")
      hdrs:replace("content-type", "application/json")
      hdrs:replace(NAMES.guardrail_response_header, "output-blocked")
      return BLOCKED_ERROR
    end
    record(h, "logged")
  end
  if g.redact == nil then return nil end
  local changed = false
  each_text(reply, function(holder, key, kind)
    local v = holder[key]
    local r = kind == "arguments" and redact_arguments(v, g.redact) or redact_string(v, g.redact)
    if r ~= v then holder[key] = r; changed = true end
  end)
  if changed then return json.encode(reply) end
  return nil
end

-- Streams ------------------------------------------------------------------------------------

local SEPARATOR = { [45] = true, [46] = true, [40] = true, [41] = true, [32] = true,
                    [9] = true, [10] = true, [11] = true, [12] = true, [13] = true }
local function is_space(b) return b == 32 or (b >= 9 and b <= 13) end

-- The largest c <= limit such that pending[1..c-1] can be redacted apart from what follows:
-- 1, or just after a whitespace byte that is not inside a digit run (a phone or card number
-- may hold spaces); no other redaction kind holds whitespace (redact.lua).
local function redaction_cut(p, limit)
  local c = limit
  while c > 1 do
    if is_space(byte(p, c - 1)) then
      local j = c - 1
      while j >= 1 and SEPARATOR[byte(p, j)] do j = j - 1 end
      local b = j >= 1 and byte(p, j) or 0
      if not (b >= 48 and b <= 57) then return c end
      c = j
    else
      c = c - 1
    end
  end
  return 1
end
M.redaction_cut = redaction_cut

-- One streamed text: a choice's content, or a tool call's arguments (whole: redacted whole,
-- walked with JSON escapes decoded; esc: the escape being read). held: how many bytes are held
-- back, in `pending`; arguments under redaction, held whole until the call's end, keep them
-- as `pieces` instead, joined once at the end.
local function new_text(g, whole)
  return { s = g.dfa and g.dfa.start or nil, pending = "", cut = 1, whole = whole, esc = "",
           held = 0, pieces = (whole and g.redact ~= nil) and {} or nil }
end

-- The text of a choice's tool call `ci`, started (and its order noted) on its first event.
local function call_text(g, ct, ci)
  local t = ct.calls[ci]
  if t == nil then
    t = new_text(g, true)
    ct.calls[ci] = t
    ct.order[#ct.order + 1] = ci
  end
  return t
end

-- Adds text; returns what may be sent now (redacted) and whether a pattern matched; on a
-- match under `block` nothing is returned. `final`: the text ends here (its choice finished),
-- so everything held is released.
local function feed(g, t, text, final)
  local dfa = g.dfa
  local base = t.held
  local all = base + #text + 1
  local cut, hit = all, false
  if dfa ~= nil and t.s ~= 0 then
    -- the idle states (no match in progress) are the first rows: offsets 1..idle
    local s, nxt, classes, idle = t.s, dfa.next, dfa.classes, dfa.idle
    if t.whole then
      cut = (s <= idle and t.esc == "") and base + 1 or t.cut
      local esc, last
      s, esc, last = walk_json(dfa, s, t.esc, text)
      if last > 0 then cut = base + last end
      if final then s, esc = end_json(dfa, s, esc), "" end
      t.esc = esc
    else
      cut = s <= idle and base + 1 or t.cut
      for i = 1, #text do
        s = nxt[s + classes[byte(text, i) + 1]]
        if s == 0 then break end
        if s <= idle then cut = base + i + 1 end
      end
    end
    hit = s == 0 or (final and dfa.end_set[s] == true)
    t.s = hit and 0 or s
    if hit and g.block then return nil, true end
    if not g.block or hit then cut = all end
  elseif dfa ~= nil then
    hit = true  -- matched before (log only)
  end
  local kinds = g.redact
  local pieces = t.pieces
  local pending
  if pieces ~= nil then
    pieces[#pieces + 1] = text
    if not final then  -- nothing is released before the call's end (nor is `cut` read)
      t.held = all - 1
      return "", hit
    end
    pending = concat(pieces)
    t.pieces = {}
  else
    pending = base > 0 and t.pending .. text or text
  end
  local release = cut
  if final then
    release = all
  elseif kinds ~= nil then
    release = t.whole and 1 or redaction_cut(pending, cut)
  end
  local out = sub(pending, 1, release - 1)
  t.pending = sub(pending, release)
  t.held = #t.pending
  t.cut = cut - release + 1
  if kinds ~= nil and out ~= "" then
    out = t.whole and redact_arguments(out, kinds) or redact_string(out, kinds)
  end
  return out, hit
end
M.feed, M.new_text = feed, new_text

local function is_set(v) return v ~= nil and v ~= json.null end

-- The choice's texts: content, then each tool call's arguments by its index.
local function choice_texts(g, texts, index)
  local ct = texts[index]
  if ct == nil then
    ct = { content = new_text(g, false), calls = {}, order = {} }
    texts[index] = ct
  end
  return ct
end

local MAX_EVENT = 4 * 1024 * 1024

local function event_of(chunk) return "data: " .. json.encode(chunk) .. "\n\n" end

-- The last event with choices, decoded (id, object, created, model for the events written
-- here): an event forwarded as it came is decoded only when one is written.
local function template_of(st)
  local raw = st.template_raw
  if raw ~= nil then
    local ok, chunk = pcall(json.decode, raw)
    st.template, st.template_raw = ok and type(chunk) == "table" and chunk or {}, nil
  end
  return st.template
end

-- The events that end a blocked stream: a chunk finishing each open choice with
-- content_filter, then [DONE].
local function blocked_tail(template, texts)
  local choices = setmetatable({}, json.array)
  for index, ct in pairs(texts) do
    if not ct.finished then
      choices[#choices + 1] = { index = index, delta = setmetatable({}, json.object),
                                logprobs = json.null, finish_reason = "content_filter" }
    end
  end
  table.sort(choices, function(a, b) return a.index < b.index end)
  local chunk = { id = template.id, object = template.object or "chat.completion.chunk",
                  created = template.created, model = template.model, choices = choices }
  return event_of(chunk) .. "data: [DONE]\n\n"
end

-- Feeds one text and notes a match in st; nil when the stream is to be blocked.
local function feed_noted(g, st, t, text, final)
  local out, hit = feed(g, t, text, final)
  if hit then st.hit = true end
  return out
end

-- Feeds one choice of a chunk; false when the stream is to be blocked.
local function feed_choice(g, st, choice, position)
  local index = type(choice.index) == "number" and choice.index or position - 1
  local ct = choice_texts(g, st.texts, index)
  local finish = is_set(choice.finish_reason)
  local delta = choice.delta
  local holder, key = nil, nil
  if type(delta) == "table" then
    holder, key = delta, "content"
  elseif type(choice.text) == "string" then
    holder, key = choice, "text"
  end
  local text = holder ~= nil and holder[key] or nil
  if type(text) == "string" or finish then
    local out = feed_noted(g, st, ct.content, type(text) == "string" and text or "", finish)
    if out == nil then return false end
    if type(text) == "string" or out ~= "" then
      if holder == nil then holder, key = choice, "text" end
      holder[key] = out
    end
  end
  local calls = type(delta) == "table" and delta.tool_calls or nil
  local seen = {}
  if type(calls) == "table" then
    for k, call in ipairs(calls) do
      local fn = type(call) == "table" and call["function"]
      if type(fn) == "table" and type(fn.arguments) == "string" then
        local ci = type(call.index) == "number" and call.index or k - 1
        local t = call_text(g, ct, ci)
        local out = feed_noted(g, st, t, fn.arguments, finish)
        if out == nil then return false end
        fn.arguments = out
        seen[ci] = true
      end
    end
  end
  if finish then
    ct.finished = true
    -- held arguments of calls this chunk did not carry are released with the finish
    for _, ci in ipairs(ct.order) do
      if not seen[ci] then
        local out = feed_noted(g, st, ct.calls[ci], "", true)
        if out == nil then return false end
        if out ~= "" then
          if type(delta) ~= "table" then delta = setmetatable({}, json.object); choice.delta = delta end
          if type(delta.tool_calls) ~= "table" then delta.tool_calls = setmetatable({}, json.array) end
          delta.tool_calls[#delta.tool_calls + 1] = { index = ci, ["function"] = { arguments = out } }
        end
      end
    end
  end
  return true
end

-- Text still held when the stream ends without a finish (before [DONE], or at its end): the
-- events that carry it, or nil when the stream is to be blocked.
local function flush(g, st)
  local choices = setmetatable({}, json.array)
  local indexes = {}
  for index in pairs(st.texts) do indexes[#indexes + 1] = index end
  table.sort(indexes)
  for _, index in ipairs(indexes) do
    local ct = st.texts[index]
    if not ct.finished then
      ct.finished = true
      local out = feed_noted(g, st, ct.content, "", true)
      if out == nil then return nil end
      local delta = setmetatable({}, json.object)
      if out ~= "" then delta.content = out end
      for _, ci in ipairs(ct.order) do
        local a = feed_noted(g, st, ct.calls[ci], "", true)
        if a == nil then return nil end
        if a ~= "" then
          delta.tool_calls = delta.tool_calls or setmetatable({}, json.array)
          delta.tool_calls[#delta.tool_calls + 1] = { index = ci, ["function"] = { arguments = a } }
        end
      end
      if next(delta) ~= nil then
        choices[#choices + 1] = { index = index, delta = delta, finish_reason = json.null }
      end
    end
  end
  if #choices == 0 then return "" end
  local template = template_of(st)
  return event_of({ id = template.id, object = template.object or "chat.completion.chunk",
                    created = template.created, model = template.model, choices = choices })
end

-- An event decoded whole (json.lua): its texts fed, the event re-encoded.
local function on_decoded_event(g, st, ev, payload)
  local ok, chunk = pcall(json.decode, payload)
  if not ok or type(chunk) ~= "table" then return ev end
  if type(chunk.usage) == "table" then
    local p, c, cached = usage_numbers(chunk.usage)
    if p ~= nil then st.p, st.c, st.cached = p, c, cached end
  end
  local choices = chunk.choices
  if type(choices) ~= "table" or #choices == 0 then return ev end
  st.template, st.template_raw = chunk, nil
  for position, choice in ipairs(choices) do
    if type(choice) == "table" and not feed_choice(g, st, choice, position) then return nil end
  end
  return event_of(chunk)
end

-- Feeds one skimmed text; false when the stream is to be blocked. A text sent otherwise than
-- it came (held back, redacted) is noted in slot.out.
local function feed_slot(g, st, t, payload, slot, final)
  local text = slot_text(payload, slot)
  local out = feed_noted(g, st, t, text, final)
  if out == nil then return false end
  if out ~= text then slot.out = out end
  return true
end

-- Whether the skimmed event's texts can be fed in place: a finishing choice releases what it
-- holds, which must then be nothing outside the event's own strings but content its `delta`
-- object can take (other text to add to the event is left to the decoded path), and no choice
-- comes twice.
local function fits_in_place(st, skimmed)
  local seen = {}
  for _, choice in ipairs(skimmed.choices) do
    local index = choice.index
    if seen[index] then return false end
    seen[index] = true
    local ct = st.texts[index]
    if choice.finish and ct ~= nil then
      if choice.content == nil and choice.delta == nil and ct.content.held > 0 then
        return false
      end
      local here = {}
      for _, call in ipairs(choice.calls) do here[call.index] = true end
      for _, ci in ipairs(ct.order) do
        if not here[ci] and ct.calls[ci].held > 0 then return false end
      end
    end
  end
  return true
end

-- An event skimmed (outguard_event.lua): its texts fed as the decoded path feeds them; the
-- event's bytes are sent as they came, or with only the texts that changed re-encoded in
-- place. off: where the payload starts in ev.
local function on_skimmed_event(g, st, ev, payload, off, skimmed)
  st.template, st.template_raw = nil, payload
  local texts = st.texts
  for _, choice in ipairs(skimmed.choices) do
    local ct = choice_texts(g, texts, choice.index)
    local finish = choice.finish == true
    if choice.content ~= nil then
      if not feed_slot(g, st, ct.content, payload, choice.content, finish) then return nil end
    elseif finish then
      local out = feed_noted(g, st, ct.content, "", true)
      if out == nil then return nil end
      if out ~= "" then
        -- released content: added to the delta object (fits_in_place), before its members
        local delta = choice.delta
        local slots = skimmed.slots
        slots[#slots + 1] = { s = delta.at, e = delta.at, out = out, add = true,
                              comma = not delta.empty }
        skimmed.added = true
      end
    end
    local here = {}
    for _, call in ipairs(choice.calls) do
      local ci = call.index
      local t = call_text(g, ct, ci)
      if not feed_slot(g, st, t, payload, call.slot, finish) then return nil end
      here[ci] = true
    end
    if finish then
      ct.finished = true
      -- the calls this event does not carry end here too; they hold nothing (fits_in_place)
      for _, ci in ipairs(ct.order) do
        if not here[ci] and feed_noted(g, st, ct.calls[ci], "", true) == nil then return nil end
      end
    end
  end
  local slots = skimmed.slots
  if skimmed.added then table.sort(slots, function(a, b) return a.s < b.s end) end
  local parts, n, from = nil, 0, 1
  for _, slot in ipairs(slots) do
    if slot.add then
      parts = parts or {}
      parts[n + 1] = sub(ev, from, off + slot.s)
      parts[n + 2] = '"content":' .. encode_string(slot.out) .. (slot.comma and "," or "")
      n = n + 2
      from = off + slot.s + 1
    elseif slot.out ~= nil then
      parts = parts or {}
      parts[n + 1] = sub(ev, from, off + slot.s - 1)
      parts[n + 2] = encode_string(slot.out)
      n = n + 2
      from = off + slot.e + 1
    end
  end
  if parts == nil then return ev end
  parts[n + 1] = sub(ev, from)
  return concat(parts)
end

-- The shape of a skimmed event with one text and no finish (one choice; its content or one
-- call's arguments): the event's bytes before the text's string (its opening quote included)
-- and after it (its closing quote on), and what the skim read; nil for other events. off:
-- where the payload starts in ev.
local function shape_of(ev, off, payload, skimmed)
  local choice, slot = skimmed.choices[1], skimmed.slots[1]
  if #skimmed.choices ~= 1 or #skimmed.slots ~= 1 or choice.finish then return nil end
  local call = choice.calls[1]
  return { prefix = sub(ev, 1, off + slot.s), suffix = sub(ev, off + slot.e),
           index = choice.index, call = call and call.index, payload = payload }
end

-- An event of the stream's last shape: the same bytes but for its text's string (a valid
-- one), so the same JSON but for that text, read as the shape's event was without reading
-- the rest again (a stream's events mostly differ only by their text). Returns the bytes to
-- send, nil when the stream is to be blocked, or false when the event has another shape.
local function on_shaped_event(g, st, ev, shape)
  local prefix, suffix = shape.prefix, shape.suffix
  local s, last = #prefix, #ev - #suffix + 1
  if last <= s or sub(ev, 1, s) ~= prefix or sub(ev, last) ~= suffix then return false end
  local text, e = string_at(ev, s)
  if e ~= last then return false end
  st.template, st.template_raw = nil, shape.payload  -- the same id, object, created, model
  local ct = st.texts[shape.index]
  local t = shape.call == nil and ct.content or ct.calls[shape.call]
  local out = feed_noted(g, st, t, text, false)
  if out == nil then return nil end
  if out == text then return ev end
  return sub(ev, 1, s - 1) .. encode_string(out) .. sub(ev, e + 1)
end

local function is_space_byte(b) return b == 32 or (b ~= nil and b >= 9 and b <= 13) end

-- One SSE event (its bytes, blank line included): the bytes to send instead, or nil when the
-- stream is to be blocked. Usage, when the event has one, is kept in st. The payload is what
-- follows `data:` (and one space) up to the trailing whitespace.
local function on_event(g, st, ev)
  local shape = st.shape
  if shape ~= nil then
    local out = on_shaped_event(g, st, ev, shape)
    if out ~= false then return out end
  end
  if sub(ev, 1, 5) ~= "data:" then return ev end
  local first = byte(ev, 6) == 32 and 7 or 6
  local last = #ev
  while last >= first and is_space_byte(byte(ev, last)) do last = last - 1 end
  local payload = sub(ev, first, last)
  if payload == "[DONE]" then
    local tail = flush(g, st)
    if tail == nil then return nil end
    return tail .. ev
  end
  local skimmed = skim(payload)
  if skimmed == nil or not fits_in_place(st, skimmed) then
    st.shape = nil
    return on_decoded_event(g, st, ev, payload)
  end
  st.shape = shape_of(ev, first - 1, payload, skimmed)
  return on_skimmed_event(g, st, ev, payload, first - 1, skimmed)
end

-- The end of the first event in data from pos (its blank line's last byte: LF or CRLF lines,
-- as SSE has them), or nil.
local function event_end(data, pos)
  while true do
    local j = find(data, "\n", pos, true)
    if j == nil then return nil end
    local b = byte(data, j + 1)
    if b == 10 then return j + 1 end
    if b == 13 and byte(data, j + 2) == 10 then return j + 2 end
    pos = j + 1
  end
end

-- Reads, checks and rewrites a stream as it passes. Returns its usage (prompt, completion,
-- cached tokens) as usage.scan_stream does.
function M.stream(h, g)
  -- the events are rewritten: a length (a reply replayed by the response cache has one) no
  -- longer holds
  h:headers():remove("content-length")
  local st = { texts = {}, template = {}, template_raw = nil, hit = false }
  local buf = ""
  local blocked = false
  local last, last_out = nil, ""
  for chunk in h:bodyChunks() do
    if blocked then
      chunk:setBytes("")
    else
      local data = chunk:getBytes(0, chunk:length())
      -- a chunk whose events all go out as they came is left as it is
      local same = buf == ""
      if not same then data = buf .. data end
      local out, n, pos = {}, 0, 1
      while true do
        local e = event_end(data, pos)
        if e == nil then break end
        local ev = sub(data, pos, e)
        local text = on_event(g, st, ev)
        pos = e + 1
        if text == nil then
          n = n + 1; out[n] = blocked_tail(template_of(st), st.texts)
          blocked = true
          break
        end
        if text ~= ev then same = false end
        n = n + 1; out[n] = text
      end
      buf = blocked and "" or sub(data, pos)
      if #buf > MAX_EVENT then
        -- not an event stream as expected: a blocking route does not pass on what it cannot
        -- read; a logging one passes it on unread
        if g.block then
          st.hit = true
          n = n + 1; out[n] = blocked_tail(template_of(st), st.texts)
          blocked = true
        else
          n = n + 1; out[n] = buf
        end
        buf = ""
      end
      if same and not blocked and buf == "" then
        last_out = data
      else
        last_out = concat(out)
        chunk:setBytes(last_out)
      end
      last = chunk
    end
  end
  if not blocked and last ~= nil then
    -- a stream that ended without [DONE]: what is still held goes out with the last chunk
    local tail = flush(g, st)
    if tail == nil then
      blocked = true
      tail = blocked_tail(template_of(st), st.texts)
    end
    if tail ~= "" then last:setBytes(last_out .. tail) end
  end
  if st.hit then record(h, blocked and "blocked" or "logged") end
  return st.p, st.c, st.cached
end

return M
