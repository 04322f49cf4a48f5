-- What clients receive from a translated provider: OpenAI chat completions, stream chunks,
-- errors and usage. Bound at render time as `local reply = (function() ... end)()` after
-- json.lua; holds no manifest data. The provider modules build their replies only through
-- these functions, so every translated reply has one shape, and the usage the gateway charges
-- and logs is always OpenAI's: prompt_tokens (cached tokens included, as OpenAI counts them),
-- completion_tokens, total_tokens and prompt_tokens_details.cached_tokens.
local M = {}
local null = json.null
local encode, encode_string = json.encode, json.encode_string
local concat, format = table.concat, string.format

local function array(t) return setmetatable(t or {}, json.array) end
M.array = array

-- usage(prompt, completion, cached): OpenAI's usage object. prompt counts every input token,
-- cached ones included; cached is the part read from a prompt cache.
function M.usage(prompt, completion, cached)
  prompt, completion = prompt or 0, completion or 0
  return {
    prompt_tokens = prompt,
    completion_tokens = completion,
    total_tokens = prompt + completion,
    prompt_tokens_details = { cached_tokens = cached or 0 },
  }
end

-- message(text, tool_calls): an assistant message; tool_calls is a list of {id, name, arguments
-- (a JSON text)} or empty.
function M.message(text, tool_calls)
  local msg = { role = "assistant", content = text or null, refusal = null }
  if tool_calls ~= nil and #tool_calls > 0 then
    local calls = array()
    for i, call in ipairs(tool_calls) do
      calls[i] = { id = call.id, type = "function", ["function"] = { name = call.name, arguments = call.arguments } }
    end
    msg.tool_calls = calls
  end
  return msg
end

-- completion(id, model, choices, usage): choices is a list of {message, finish_reason}.
function M.completion(id, model, choices, usage)
  local out = array()
  for i, ch in ipairs(choices) do
    out[i] = { index = i - 1, message = ch.message, finish_reason = ch.finish_reason, logprobs = null }
  end
  return {
    id = id, object = "chat.completion", created = os.time(), model = model,
    choices = out, usage = usage,
  }
end

-- OpenAI's error types by status.
local ERROR_TYPES = {
  [400] = "invalid_request_error", [401] = "authentication_error", [403] = "permission_error",
  [404] = "invalid_request_error", [409] = "invalid_request_error", [413] = "invalid_request_error",
  [422] = "invalid_request_error", [429] = "rate_limit_error",
}

function M.error_body(status, message, code, param)
  local kind = ERROR_TYPES[status] or (status >= 500 and "server_error" or "invalid_request_error")
  return { error = { message = message, type = kind, code = code or null, param = param or null } }
end

-- Streams ------------------------------------------------------------------------------------
-- A writer turns neutral stream events into OpenAI SSE text. Text deltas are the hot path:
-- each is one preformatted prefix, the encoded text and a fixed suffix.

local Writer = {}
Writer.__index = Writer

function M.writer(include_usage)
  return setmetatable({ include_usage = include_usage, out = {}, n = 0, id = "chatcmpl-gateway",
                        model = "", started = false, finished = {}, done = false,
                        prefixes = {} }, Writer)
end

local function emit(w, text)
  w.n = w.n + 1
  w.out[w.n] = text
end

-- take(): the SSE text produced since the last take.
function Writer:take()
  if self.n == 0 then return "" end
  local text = concat(self.out, "", 1, self.n)
  self.out, self.n = {}, 0
  return text
end

local function envelope(w)
  return '{"id":' .. encode_string(w.id) .. ',"object":"chat.completion.chunk","created":'
    .. format("%d", w.created or os.time()) .. ',"model":' .. encode_string(w.model)
end

local function prefix(w, index)
  local p = w.prefixes[index]
  if p == nil then
    p = 'data: ' .. envelope(w) .. ',"choices":[{"index":' .. index .. ',"delta":'
    w.prefixes[index] = p
  end
  return p
end

local OPEN_SUFFIX = ',"logprobs":null,"finish_reason":null}]}\n\n'

local function delta(w, index, fields)
  emit(w, prefix(w, index) .. encode(fields) .. OPEN_SUFFIX)
end

-- start(id, model): the stream's first chunk (the assistant role), once.
function Writer:start(id, model)
  if self.started then return end
  self.started = true
  if id ~= nil then self.id = id end
  if model ~= nil then self.model = model end
  self.created = os.time()
  emit(self, prefix(self, 0) .. '{"role":"assistant","content":""}' .. OPEN_SUFFIX)
end

function Writer:text(text, index)
  if text == nil or text == "" then return end
  emit(self, prefix(self, index or 0) .. '{"content":' .. encode_string(text) .. '}' .. OPEN_SUFFIX)
end

-- tool_start(k, id, name): the k-th tool call (0-based) of a choice begins.
function Writer:tool_start(k, id, name, index)
  delta(self, index or 0, { tool_calls = array({ { index = k, id = id, type = "function",
    ["function"] = { name = name, arguments = "" } } }) })
end

function Writer:tool_arguments(k, text, index)
  if text == nil or text == "" then return end
  delta(self, index or 0, { tool_calls = array({ { index = k, ["function"] = { arguments = text } } }) })
end

function Writer:finish(reason, index)
  index = index or 0
  if self.finished[index] then return end
  self.finished[index] = true
  emit(self, prefix(self, index) .. '{},"logprobs":null,"finish_reason":' .. encode_string(reason) .. '}]}\n\n')
end

function Writer:set_usage(prompt, completion, cached)
  self.usage = M.usage(prompt, completion, cached)
end

-- error(status, message, code): an error event; OpenAI's SDKs raise it. Nothing follows it.
function Writer:error(status, message, code)
  if self.done then return end
  emit(self, 'data: ' .. encode(M.error_body(status, message, code)) .. '\n\n')
  self.done = true
end

-- close(): what ends a stream: the finish chunk if the provider sent none, the usage chunk when
-- the client asked for it, and [DONE].
function Writer:close()
  if self.done then return end
  if not self.started then self:start() end
  if next(self.finished) == nil then self:finish("stop") end
  if self.include_usage and self.usage ~= nil then
    emit(self, 'data: ' .. envelope(self) .. ',"choices":[],"usage":' .. encode(self.usage) .. '}\n\n')
  end
  emit(self, "data: [DONE]\n\n")
  self.done = true
end

return M
