-- AWS Bedrock's Converse and ConverseStream APIs, written from and read into the OpenAI shapes.
-- Bound at render time as `local bedrock = (function() ... end)()` after json.lua, chat,
-- reply and eventstream.lua; holds no manifest data. The request is signed after this (Envoy's
-- aws_request_signing filter, SigV4, service `bedrock`); the model id goes in the path.
--
-- Same functions as anthropic.lua. The stream is AWS event-stream framing
-- (application/vnd.amazon.eventstream), one JSON payload per message; `metadata` (usage)
-- comes after `messageStop`.
local M = {}
local fail, array = chat.fail, reply.array
local find, format, gsub, byte = string.find, string.format, string.gsub, string.byte
local is_object, is_array, null = json.is_object, json.is_array, json.null

M.stream_type = "application/vnd.amazon.eventstream"

-- What the API refuses of the sampling parameters (native_params.py, bound as NATIVE_PARAMS).
local PARAMS = NATIVE_PARAMS.bedrock
local IMAGE_FORMATS = { ["image/jpeg"] = "jpeg", ["image/png"] = "png", ["image/gif"] = "gif", ["image/webp"] = "webp" }
local TOOL_NAME = "^[a-zA-Z0-9_-]+$"

local function tool_id(id, where)
  if #id > 64 or not find(id, TOOL_NAME) then
    fail("invalid_tool_calls", where .. ": tool call ids must be 1-64 letters, digits, _ or - for Bedrock models.", where)
  end
  return id
end

-- A path segment: every byte but the unreserved ones percent-encoded (a model id has `:`, an
-- inference profile ARN `/`), as the AWS SDKs send it.
local function escape_byte(c) return format("%%%02X", byte(c)) end
local function segment(s) return (gsub(s, "[^%w%-%._~]", escape_byte)) end
M.segment = segment

-- Text blocks of a list of strings, the blank ones left out (the API refuses blank text).
local function texts(list)
  local out = array()
  for _, t in ipairs(list) do
    if find(t, "%S") then out[#out + 1] = { text = t } end
  end
  return out
end

local function block_of(b, where)
  local kind = b.kind
  if kind == "text" then
    if not find(b.text, "%S") then return nil end  -- Bedrock refuses blank text
    return { text = b.text }
  elseif kind == "image" then
    local fmt = IMAGE_FORMATS[b.media_type or ""]
    if b.url ~= nil or fmt == nil then
      fail("unsupported_content", where .. ": Bedrock models take jpeg, png, gif and webp images as base64 data URLs.", where)
    end
    return { image = { format = fmt, source = { bytes = b.data } } }
  elseif kind == "tool_call" then
    return { toolUse = { toolUseId = tool_id(b.id, where), name = b.name, input = b.arguments } }
  end
  local content = texts(b.texts)
  if #content == 0 then
    fail("empty_content", where .. ": a tool result needs text for Bedrock models.", where)
  end
  return { toolResult = { toolUseId = tool_id(b.id, where), content = content } }
end

local function range(value, name, hi)
  if value ~= nil and hi ~= nil and (value < 0 or value > hi) then
    fail("invalid_value", format("`%s` must be between 0 and %s for %s models.", name, hi, PARAMS.label), name)
  end
end

function M.request(c, model, default_max)
  chat.refuse_unsupported(c, PARAMS.supported, PARAMS.label)
  range(c.temperature, "temperature", PARAMS.temperature_max)
  range(c.top_p, "top_p", PARAMS.top_p_max)
  if c.turns[1].role ~= "user" then
    fail("invalid_messages", "The conversation must start with a user message for Bedrock models.", "messages")
  end
  local body = { messages = array() }
  local system = texts(c.system)
  if #system > 0 then body.system = system end
  for i, turn in ipairs(c.turns) do
    local content = array()
    for _, b in ipairs(turn.blocks) do content[#content + 1] = block_of(b, turn.at) end
    if #content == 0 then
      fail("empty_content", turn.at .. " has only blank text, which Bedrock models refuse.", turn.at)
    end
    body.messages[i] = { role = turn.role, content = content }
  end
  local config = {}
  local max = c.max_tokens or default_max
  if max ~= nil then config.maxTokens = max end
  config.temperature = c.temperature
  config.topP = c.top_p
  if c.stop ~= nil then config.stopSequences = c.stop end
  if next(config) ~= nil then body.inferenceConfig = config end
  local choice = c.tool_choice
  if c.tools ~= nil and choice == "none" then
    if c.has_tool_blocks then
      fail("invalid_tool_choice", "`tool_choice: none` with earlier tool calls is not supported by Bedrock models.", "tool_choice")
    end
  elseif c.tools ~= nil then
    local tools = array()
    for i, t in ipairs(c.tools) do
      if #t.name > 64 or not find(t.name, TOOL_NAME) then
        fail("invalid_tools", t.at .. ".function.name must be 1-64 letters, digits, _ or - for Bedrock models.", t.at)
      end
      local spec = { name = t.name, inputSchema = { json = t.parameters or { type = "object", properties = {} } } }
      spec.description = t.description
      tools[i] = { toolSpec = spec }
    end
    local tc
    if choice == "required" then
      tc = { any = {} }
    elseif type(choice) == "table" then
      tc = { tool = { name = choice.name } }
    elseif choice == "auto" then
      tc = { auto = {} }
    end
    body.toolConfig = { tools = tools, toolChoice = tc }
  elseif c.has_tool_blocks then
    fail("invalid_tools", "Bedrock models need `tools` when the conversation has tool calls.", "tools")
  end
  local path = "/model/" .. segment(model) .. (c.stream and "/converse-stream" or "/converse")
  return body, path
end

function M.headers(hdrs, c)
  hdrs:replace("accept", c.stream and M.stream_type or "application/json")
end

-- Replies -----------------------------------------------------------------------------------

local FINISH = {
  end_turn = "stop", stop_sequence = "stop", max_tokens = "length",
  model_context_window_exceeded = "length", tool_use = "tool_calls",
  guardrail_intervened = "content_filter", content_filtered = "content_filter",
}

local function number(v) return type(v) == "number" and v or 0 end

-- Bedrock counts cache reads and writes apart from inputTokens; OpenAI's prompt_tokens holds
-- them all.
local function usage_of(u)
  if not is_object(u) then return nil end
  local read = number(u.cacheReadInputTokens)
  return number(u.inputTokens) + number(u.cacheWriteInputTokens) + read, number(u.outputTokens), read
end

-- Bedrock's reply has no id and no model: the request id (x-amzn-requestid) and the model id
-- the gateway sent stand in.
function M.response(r, request_id, model)
  local msg = is_object(r.output) and r.output.message or nil
  local content = is_object(msg) and is_array(msg.content) and msg.content or {}
  local text, n, calls = {}, 0, {}
  for _, b in ipairs(content) do
    if is_object(b) then
      if type(b.text) == "string" then
        n = n + 1; text[n] = b.text
      elseif is_object(b.toolUse) then
        local u = b.toolUse
        calls[#calls + 1] = { id = u.toolUseId, name = u.name, arguments = json.encode(u.input or {}) }
      end
    end
  end
  local p, co, cached = usage_of(r.usage)
  return reply.completion("chatcmpl-" .. (request_id or "bedrock"), model,
    { { message = reply.message(n > 0 and table.concat(text) or null, calls),
        finish_reason = FINISH[r.stopReason] or "stop" } },
    reply.usage(p, co, cached))
end

local STATUS = { [408] = 504, [424] = 502 }

-- The error's name is in x-amzn-errortype (`ValidationException:http://...`) and sometimes
-- in the body's `__type`.
function M.error(status, r, error_type)
  local message = is_object(r) and (r.message or r.Message) or nil
  local code = error_type and string.match(error_type, "^[^:]+") or nil
  if code == nil and is_object(r) and type(r.__type) == "string" then code = string.match(r.__type, "[^#]+$") end
  local mapped = STATUS[status] or status
  return mapped, reply.error_body(mapped,
    type(message) == "string" and message or "The provider answered " .. status .. ".", code)
end

-- Streams -----------------------------------------------------------------------------------

function M.stream_state(request_id, model)
  return { frames = eventstream.new(), tools = {}, ntools = 0, id = request_id, model = model }
end

local EXCEPTION_STATUS = {
  throttlingException = 429, validationException = 400, modelStreamErrorException = 502,
  modelTimeoutException = 504, serviceUnavailableException = 503, internalServerException = 500,
}

local function on_event(st, w, name, ev)
  if name == "messageStart" then
    w:start("chatcmpl-" .. (st.id or "bedrock"), st.model)
  elseif name == "contentBlockStart" then
    local start = is_object(ev.start) and ev.start.toolUse or nil
    if is_object(start) then
      local k = st.ntools
      st.ntools = k + 1
      st.tools[ev.contentBlockIndex] = k
      w:tool_start(k, start.toolUseId, start.name)
    end
  elseif name == "contentBlockDelta" then
    local d = ev.delta
    if not is_object(d) then return end
    if type(d.text) == "string" then
      w:text(d.text)
    elseif is_object(d.toolUse) and st.tools[ev.contentBlockIndex] ~= nil then
      w:tool_arguments(st.tools[ev.contentBlockIndex], d.toolUse.input)
    end
  elseif name == "messageStop" then
    w:finish(FINISH[ev.stopReason] or "stop")
  elseif name == "metadata" then
    local p, co, cached = usage_of(ev.usage)
    if p ~= nil then w:set_usage(p, co, cached) end
  end
end

function M.stream(st, w, bytes)
  for _, msg in ipairs(eventstream.feed(st.frames, bytes)) do
    local h = msg.headers
    local ok, data = pcall(json.decode, msg.payload)
    if not ok then data = nil end
    if h[":message-type"] == "exception" or h[":message-type"] == "error" then
      local kind = h[":exception-type"] or h[":error-code"]
      local message = is_object(data) and data.message or h[":error-message"]
      w:error(EXCEPTION_STATUS[kind] or 500,
        type(message) == "string" and message or "The provider's stream failed.", kind)
    elseif is_object(data) then
      on_event(st, w, h[":event-type"], data)
    end
  end
end

-- Bedrock's stream has no end event after `metadata`: the stream ends when the body does.
M.ends_with_body = true

return M
