-- An incremental reader of server-sent events (the text/event-stream of Anthropic and Gemini).
-- Bound at render time as `local sse = (function() ... end)()`. feed(state, bytes) returns the
-- events completed by those bytes, each {event = name or nil, data = text}; a partial event
-- waits in the state for the next bytes. Lines end with LF or CRLF; an event ends at a blank
-- line; several data lines join with LF (as the SSE specification says); comments (`:`) and
-- other fields are skipped.
local M = {}
local find, sub, gsub = string.find, string.sub, string.gsub
local concat = table.concat

-- More than this without an event boundary is not an event stream.
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
