-- Google's Gemini API (generateContent, and streamGenerateContent with alt=sse), written from
-- and read into the OpenAI shapes. Bound at render time as `local gemini = (function() ...
-- end)()` after json.lua, chat, reply and sse.lua; holds no manifest data. The model goes in
-- the path; roles are `user` and `model` only (a tool result is a user turn's
-- functionResponse); tool parameters go as JSON Schema (parametersJsonSchema).
--
-- Same functions as anthropic.lua. Gemini gives tool calls no id: the gateway makes one per
-- call, and finds a tool result's function name from the earlier call with that id.
local M = {}
local fail, array = chat.fail, reply.array
local find, format, gsub, byte = string.find, string.format, string.gsub, string.byte
local is_object, is_array, null = json.is_object, json.is_array, json.null

M.stream_type = "text/event-stream"

-- What the API refuses of the sampling parameters (native_params.py, bound as NATIVE_PARAMS).
local PARAMS = NATIVE_PARAMS.gemini
local TOOL_NAME = "^[a-zA-Z_][a-zA-Z0-9_%.:%-]*$"

-- A path segment, every byte but the unreserved ones percent-encoded.
local function escape_byte(ch) return format("%%%02X", byte(ch)) end
local function segment(s) return (gsub(s, "[^%w%-%._~]", escape_byte)) end

local function parts_of(list)
  local out = array()
  for i, t in ipairs(list) do out[i] = { text = t } end
  return out
end

local function part_of(b, where)
  local kind = b.kind
  if kind == "text" then
    return { text = b.text }
  elseif kind == "image" then
    if b.url ~= nil then
      fail("unsupported_content", where .. ": Gemini models take images as base64 data URLs.", where)
    end
    return { inlineData = { mimeType = b.media_type, data = b.data } }
  elseif kind == "tool_call" then
    return { functionCall = { name = b.name, args = b.arguments } }
  end
  return { functionResponse = { name = b.name, response = { content = table.concat(b.texts) } } }
end

local ROLES = { user = "user", assistant = "model" }
local MODES = { auto = "AUTO", required = "ANY", none = "NONE" }

function M.request(c, model, default_max)
  chat.refuse_unsupported(c, PARAMS.supported, PARAMS.label)
  if PARAMS.n_max ~= nil and c.n > PARAMS.n_max then
    fail("invalid_value", format("`n` must be at most %d for %s models.", PARAMS.n_max, PARAMS.label), "n")
  end
  if PARAMS.stop_max ~= nil and c.stop ~= nil and #c.stop > PARAMS.stop_max then
    fail("invalid_value", format("`stop` may hold at most %d sequences for %s models.", PARAMS.stop_max, PARAMS.label), "stop")
  end
  local body = { contents = array() }
  if #c.system > 0 then body.systemInstruction = { parts = parts_of(c.system) } end
  for i, turn in ipairs(c.turns) do
    local parts = array()
    for j, b in ipairs(turn.blocks) do parts[j] = part_of(b, turn.at) end
    body.contents[i] = { role = ROLES[turn.role], parts = parts }
  end
  local config = {}
  local max = c.max_tokens or default_max
  if max ~= nil then config.maxOutputTokens = max end
  config.temperature = c.temperature
  config.topP = c.top_p
  config.stopSequences = c.stop
  if c.n ~= 1 then config.candidateCount = c.n end
  config.seed = c.seed
  config.presencePenalty = c.presence_penalty
  config.frequencyPenalty = c.frequency_penalty
  local rf = c.response_format
  if rf ~= nil then
    config.responseMimeType = "application/json"
    if rf.schema ~= nil then config.responseJsonSchema = rf.schema end
  end
  if next(config) ~= nil then body.generationConfig = config end
  if c.tools ~= nil then
    local decls = array()
    for i, t in ipairs(c.tools) do
      if #t.name > 64 or not find(t.name, TOOL_NAME) then
        fail("invalid_tools", t.at .. ".function.name must start with a letter or _ and hold at most 64 letters, digits, _ . : or - for Gemini models.", t.at)
      end
      decls[i] = { name = t.name, description = t.description, parametersJsonSchema = t.parameters }
    end
    body.tools = array({ { functionDeclarations = decls } })
    local choice = c.tool_choice
    if choice ~= nil then
      local fc
      if type(choice) == "table" then
        fc = { mode = "ANY", allowedFunctionNames = array({ choice.name }) }
      else
        fc = { mode = MODES[choice] }
      end
      body.toolConfig = { functionCallingConfig = fc }
    end
  end
  local path = "/v1beta/models/" .. segment(model)
    .. (c.stream and ":streamGenerateContent?alt=sse" or ":generateContent")
  return body, path
end

function M.headers(hdrs) end

-- Replies -----------------------------------------------------------------------------------

local FINISH = {
  STOP = "stop", MAX_TOKENS = "length", SAFETY = "content_filter", RECITATION = "content_filter",
  BLOCKLIST = "content_filter", PROHIBITED_CONTENT = "content_filter", SPII = "content_filter",
  IMAGE_SAFETY = "content_filter", MALFORMED_FUNCTION_CALL = "stop",
}

local function number(v) return type(v) == "number" and v or 0 end

-- Gemini's promptTokenCount holds the cached tokens, as OpenAI's prompt_tokens does; its
-- thinking tokens are output the client pays for, as OpenAI's reasoning tokens are.
local function usage_of(u)
  if not is_object(u) then return nil end
  return number(u.promptTokenCount), number(u.candidatesTokenCount) + number(u.thoughtsTokenCount),
    number(u.cachedContentTokenCount)
end

local call_seq = 0
local function call_id()
  call_seq = (call_seq + 1) % 1000000
  return format("call_%x%06d", os.time(), call_seq)
end

local function candidate_parts(cand)
  local content = is_object(cand) and cand.content or nil
  return is_object(content) and is_array(content.parts) and content.parts or {}
end

local function finish_of(cand, has_calls)
  local reason = cand.finishReason
  if reason == nil or reason == null then return nil end
  local f = FINISH[reason] or "stop"
  if f == "stop" and has_calls then f = "tool_calls" end
  return f
end

function M.response(r, _, model)
  local choices = {}
  local cands = is_array(r.candidates) and r.candidates or {}
  for i, cand in ipairs(cands) do
    local text, n, calls = {}, 0, {}
    for _, part in ipairs(candidate_parts(cand)) do
      if is_object(part) and part.thought ~= true then
        if type(part.text) == "string" then
          n = n + 1; text[n] = part.text
        elseif is_object(part.functionCall) then
          local fc = part.functionCall
          calls[#calls + 1] = { id = call_id(), name = fc.name, arguments = json.encode(fc.args or {}) }
        end
      end
    end
    choices[i] = { message = reply.message(n > 0 and table.concat(text) or null, calls),
                   finish_reason = finish_of(cand, #calls > 0) or "stop" }
  end
  if #choices == 0 then
    -- a prompt Gemini blocked (promptFeedback.blockReason) has no candidate
    choices[1] = { message = reply.message(null), finish_reason = "content_filter" }
  end
  local p, co, cached = usage_of(r.usageMetadata)
  return reply.completion("chatcmpl-" .. tostring(r.responseId or "gemini"), r.modelVersion or model,
    choices, reply.usage(p, co, cached))
end

-- Gemini answers a bad API key with 400 (reason API_KEY_INVALID): that is the gateway's
-- credential failing, so it becomes the 401 the body filter turns into the gateway's 502.
function M.error(status, r)
  local e = is_object(r) and r.error or nil
  local message = is_object(e) and e.message or nil
  local code = is_object(e) and e.status or nil
  if status == 400 and is_object(e) and is_array(e.details) then
    for _, d in ipairs(e.details) do
      if is_object(d) and d.reason == "API_KEY_INVALID" then status = 401 end
    end
  end
  return status, reply.error_body(status,
    type(message) == "string" and message or "The provider answered " .. status .. ".",
    type(code) == "string" and code or nil)
end

-- Streams -----------------------------------------------------------------------------------

function M.stream_state(_, model)
  return { sse = sse.new(), tools = {}, model = model }
end

local function on_chunk(st, w, r)
  w:start("chatcmpl-" .. tostring(r.responseId or "gemini"), r.modelVersion or st.model)
  local cands = is_array(r.candidates) and r.candidates or {}
  for i, cand in ipairs(cands) do
    local index = type(cand.index) == "number" and cand.index or i - 1
    for _, part in ipairs(candidate_parts(cand)) do
      if is_object(part) and part.thought ~= true then
        if type(part.text) == "string" then
          w:text(part.text, index)
        elseif is_object(part.functionCall) then
          local k = st.tools[index] or 0
          st.tools[index] = k + 1
          w:tool_start(k, call_id(), part.functionCall.name, index)
          w:tool_arguments(k, json.encode(part.functionCall.args or {}), index)
        end
      end
    end
    local f = finish_of(cand, (st.tools[index] or 0) > 0)
    if f ~= nil then w:finish(f, index) end
  end
  local p, co, cached = usage_of(r.usageMetadata)
  if p ~= nil then w:set_usage(p, co, cached) end
end

function M.stream(st, w, bytes)
  for _, ev in ipairs(sse.feed(st.sse, bytes)) do
    local ok, data = pcall(json.decode, ev.data)
    if ok and is_object(data) then
      if is_object(data.error) then
        local status, body = M.error(type(data.error.code) == "number" and data.error.code or 500, data)
        w:error(status, body.error.message, body.error.code)
      else
        on_chunk(st, w, data)
      end
    end
  end
end

M.ends_with_body = true

return M
