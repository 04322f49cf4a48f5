-- The tokens a response used (for gateway.lua), in OpenAI's terms. Bound at render time as
-- `local usage = (function() ... end)()`; returns { numbers, of, scan_stream }.
local M = {}
local find, sub, match = string.find, string.sub, string.match

-- The one reading of usage, in OpenAI's terms: a reply's `usage` (translated replies carry
-- OpenAI's), the last SSE event's, or what translate.lua left for a translated stream. Returns
-- prompt tokens (cached ones included), completion tokens and cached tokens (or nil).
local function usage_numbers(usage)
  if type(usage) ~= "table" then return nil end
  local p = usage.prompt_tokens or usage.input_tokens
  local c = usage.completion_tokens or usage.output_tokens or 0
  if type(p) ~= "number" or type(c) ~= "number" then return nil end
  local details = usage.prompt_tokens_details
  local cached = type(details) == "table" and details.cached_tokens or nil
  return p, c, type(cached) == "number" and cached or nil
end

-- The numbers of the top-level `usage` member of a JSON document (the last one, if repeated):
-- a structural scan finds it and only that member is decoded, so neither a large reply nor
-- text in it that reads `"usage":` (inside a string, or a nested object's member) matters.
local function usage_of(text)
  return usage_numbers(json.top_level_member(text, "usage"))
end

-- Finds the last `usage` object in an SSE stream without holding the stream back: chunks are
-- read as they pass, and only the current incomplete line is kept.
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
    if #pending > 1048576 then pending = "" end  -- not SSE as expected; stop holding it
  end
  return p, c, cached
end

M.numbers, M.of, M.scan_stream = usage_numbers, usage_of, scan_stream_usage
return M
