-- Anthropic's Messages API, written from and read into the OpenAI shapes. Bound at render time
-- as `local anthropic = (function() ... end)()` after json.lua, openai_chat.lua (chat),
-- openai_reply.lua (reply) and sse.lua; holds no manifest data.
--
-- request(c, model, default_max) -> body, path: c is chat.read()'s neutral request.
-- response(body, headers) -> an OpenAI chat.completion; error(status, body) -> status, OpenAI
-- error body; stream_state(), stream(state, writer, bytes): the SSE events of a stream, fed as
-- they arrive, written as OpenAI chunks.
local M = {}
local fail, array = chat.fail, reply.array
local find, format = string.find, string.format
local is_object, is_array, null = json.is_object, json.is_array, json.null

M.version = "2023-06-01"
M.default_max_tokens = 4096
M.stream_type = "text/event-stream"

-- What the API refuses of the sampling parameters (native_params.py, bound as NATIVE_PARAMS).
local PARAMS = NATIVE_PARAMS.anthropic
local IMAGE_TYPES = { ["image/jpeg"] = true, ["image/png"] = true, ["image/gif"] = true, ["image/webp"] = true }
local TOOL_NAME = "^[a-zA-Z0-9_-]+$"
local TOOL_ID = "^[a-zA-Z0-9_-]+$"

local function tool_id(id, where)
  if not find(id, TOOL_ID) then
    fail("invalid_tool_calls", where .. ": tool call ids must be letters, digits, _ or - for Anthropic models.", where)
  end
  return id
end

-- Text blocks of a list of strings, the blank ones left out (the API refuses blank text).
local function texts(list)
  local out = array()
  for _, t in ipairs(list) do
    if find(t, "%S") then out[#out + 1] = { type = "text", text = t } end
  end
  return out
end

local function block_of(b, where)
  local kind = b.kind
  if kind == "text" then
    if not find(b.text, "%S") then return nil end  -- Anthropic refuses blank text blocks
    return { type = "text", text = b.text }
  elseif kind == "image" then
    if b.url ~= nil then return { type = "image", source = { type = "url", url = b.url } } end
    if not IMAGE_TYPES[b.media_type] then
      fail("unsupported_content", where .. ": Anthropic models take jpeg, png, gif and webp images.", where)
    end
    return { type = "image", source = { type = "base64", media_type = b.media_type, data = b.data } }
  elseif kind == "tool_call" then
    return { type = "tool_use", id = tool_id(b.id, where), name = b.name, input = b.arguments }
  end
  local out = { type = "tool_result", tool_use_id = tool_id(b.id, where) }
  local content = texts(b.texts)
  if #content > 0 then out.content = content end
  return out
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
  local body = {
    model = model,
    max_tokens = c.max_tokens or default_max or M.default_max_tokens,
    messages = array(),
  }
  local system = texts(c.system)
  if #system > 0 then body.system = system end
  for i, turn in ipairs(c.turns) do
    local content = array()
    for _, b in ipairs(turn.blocks) do content[#content + 1] = block_of(b, turn.at) end
    if #content == 0 then
      fail("empty_content", turn.at .. " has only blank text, which Anthropic models refuse.", turn.at)
    end
    body.messages[i] = { role = turn.role, content = content }
  end
  local last = c.turns[#c.turns]
  if last.role == "assistant" then
    local tail = last.blocks[#last.blocks]
    if tail.kind == "text" and find(tail.text, "%s$") then
      fail("invalid_content", last.at .. ": a final assistant message cannot end with whitespace for Anthropic models.", last.at)
    end
  end
  if c.has_tool_blocks and c.tools == nil then
    fail("invalid_tools", "Anthropic models need `tools` when the conversation has tool calls.", "tools")
  end
  if c.tools ~= nil then
    local tools = array()
    for i, t in ipairs(c.tools) do
      if #t.name > 64 or not find(t.name, TOOL_NAME) then
        fail("invalid_tools", t.at .. ".function.name must be 1-64 letters, digits, _ or - for Anthropic models.", t.at)
      end
      local schema = t.parameters or { type = "object", properties = {} }
      if schema.type ~= "object" then
        fail("invalid_tools", t.at .. ".function.parameters must be an object schema for Anthropic models.", t.at)
      end
      tools[i] = { name = t.name, description = t.description, input_schema = schema }
    end
    body.tools = tools
    local choice = c.tool_choice
    local tc
    if choice == "required" then
      tc = { type = "any" }
    elseif choice == "none" then
      tc = { type = "none" }
    elseif type(choice) == "table" then
      tc = { type = "tool", name = choice.name }
    elseif choice == "auto" or c.parallel_tool_calls == false then
      tc = { type = "auto" }
    end
    if tc ~= nil and c.parallel_tool_calls == false and tc.type ~= "none" then
      tc.disable_parallel_tool_use = true
    end
    body.tool_choice = tc
  end
  if c.stop ~= nil then body.stop_sequences = c.stop end
  body.temperature = c.temperature
  body.top_p = c.top_p
  if c.user ~= nil then body.metadata = { user_id = c.user } end
  if c.stream then body.stream = true end
  return body, "/v1/messages"
end

function M.headers(hdrs)
  hdrs:replace("anthropic-version", M.version)
end

-- Replies -----------------------------------------------------------------------------------

local FINISH = {
  end_turn = "stop", stop_sequence = "stop", pause_turn = "stop",
  max_tokens = "length", model_context_window_exceeded = "length",
  tool_use = "tool_calls", refusal = "content_filter",
}

local function number(v) return type(v) == "number" and v or 0 end

-- Anthropic counts cache reads and writes apart from input_tokens; OpenAI's prompt_tokens
-- holds them all.
local function usage_of(u)
  if not is_object(u) then return nil end
  local read = number(u.cache_read_input_tokens)
  local prompt = number(u.input_tokens) + number(u.cache_creation_input_tokens) + read
  return prompt, number(u.output_tokens), read
end

function M.response(r)
  local text, n, calls = {}, 0, {}
  local content = is_array(r.content) and r.content or {}
  for _, b in ipairs(content) do
    if is_object(b) then
      if b.type == "text" and type(b.text) == "string" then
        n = n + 1; text[n] = b.text
      elseif b.type == "tool_use" then
        calls[#calls + 1] = { id = b.id, name = b.name, arguments = json.encode(b.input or {}) }
      end
    end
  end
  local p, co, cached = usage_of(r.usage)
  return reply.completion("chatcmpl-" .. tostring(r.id or ""), r.model,
    { { message = reply.message(n > 0 and table.concat(text) or null, calls),
        finish_reason = FINISH[r.stop_reason] or "stop" } },
    reply.usage(p, co, cached))
end

local STATUS = { [529] = 503 }

function M.error(status, r)
  local e = is_object(r) and r.error or nil
  local message = is_object(e) and e.message or nil
  local code = is_object(e) and e.type or nil
  return STATUS[status] or status, reply.error_body(STATUS[status] or status,
    type(message) == "string" and message or "The provider answered " .. status .. ".",
    type(code) == "string" and code or nil)
end

-- Streams -----------------------------------------------------------------------------------

function M.stream_state() return { sse = sse.new(), tools = {}, ntools = 0 } end

local function on_event(st, w, name, ev)
  if name == "message_start" then
    local msg = ev.message or {}
    w:start("chatcmpl-" .. tostring(msg.id or ""), msg.model)
    st.prompt, st.completion, st.cached = usage_of(msg.usage)
  elseif name == "content_block_start" then
    local b = ev.content_block
    if is_object(b) and b.type == "tool_use" then
      local k = st.ntools
      st.ntools = k + 1
      st.tools[ev.index] = k
      w:tool_start(k, b.id, b.name)
    elseif is_object(b) and b.type == "text" then
      w:text(b.text)
    end
  elseif name == "content_block_delta" then
    local d = ev.delta
    if not is_object(d) then return end
    if d.type == "text_delta" then
      w:text(d.text)
    elseif d.type == "input_json_delta" and st.tools[ev.index] ~= nil then
      w:tool_arguments(st.tools[ev.index], d.partial_json)
    end
  elseif name == "message_delta" then
    local d = ev.delta
    if is_object(d) and d.stop_reason ~= nil and d.stop_reason ~= null then
      st.finish = FINISH[d.stop_reason] or "stop"
    end
    if is_object(ev.usage) and type(ev.usage.output_tokens) == "number" then
      st.completion = ev.usage.output_tokens
    end
  elseif name == "message_stop" then
    w:finish(st.finish or "stop")
    w:set_usage(st.prompt, st.completion, st.cached)
    w:close()
  elseif name == "error" then
    local e = ev.error or {}
    local status = e.type == "overloaded_error" and 503 or 500
    w:error(status, type(e.message) == "string" and e.message or "The provider's stream failed.", e.type)
  end
end

function M.stream(st, w, bytes)
  for _, ev in ipairs(sse.feed(st.sse, bytes)) do
    local ok, data = pcall(json.decode, ev.data)
    if ok and is_object(data) then on_event(st, w, ev.event or data.type, data) end
  end
end

return M
