-- The OpenAI chat request read into a neutral form that each provider module (anthropic.lua,
-- bedrock.lua, gemini.lua) writes in its own API. Bound at render time as
-- `local chat = (function() ... end)()` after json.lua; holds no manifest data.
--
-- read(req) -> c, or raises {status = 400, code, message, param}: what no native API can take
-- (an unknown parameter, a malformed message, a tool call without its result). The neutral
-- form keeps only text the request carried: every string a provider module writes is one of
-- the request's strings (or a part of one, like the base64 of a data URL), or a tool call's
-- decoded `arguments`, whose strings the body filter adds to the guardrails' text.
--
--   c.system      { text, ... }            system and developer messages, in order
--   c.turns       { {role = "user"|"assistant", blocks = {...}}, ... }, consecutive turns of
--                 one role merged (a tool result is the user's); blocks:
--                   {kind = "text", text}
--                   {kind = "image", media_type, data} (a data URL) | {kind = "image", url}
--                   {kind = "tool_call", id, name, arguments (decoded object)}
--                   {kind = "tool_result", id, name, texts = {text, ...}}
--   c.tools       { {name, description, parameters}, ... } or nil
--   c.tool_choice nil | "auto" | "required" | "none" | {name = ...}
--   c.set         { [parameter] = true } for each sampling parameter the request sets to
--                 something other than its no-op value; provider modules refuse the ones
--                 their API has no equivalent for
--   c.max_tokens, c.temperature, c.top_p, c.stop ({...} or nil), c.n, c.seed,
--   c.presence_penalty, c.frequency_penalty, c.response_format, c.parallel_tool_calls,
--   c.user, c.stream, c.include_usage, c.has_tool_blocks
local M = {}
local is_object, is_array, null = json.is_object, json.is_array, json.null
local find, match, lower, format = string.find, string.match, string.lower, string.format

local function fail(code, message, param)
  error({ status = 400, code = code, message = message, param = param }, 0)
end
M.fail = fail

local function present(v) return v ~= nil and v ~= null end

-- Parameters that change nothing a provider generates: accepted and not sent.
local DROPPED = { metadata = true, store = true, service_tier = true, prompt_cache_key = true }
-- Parameters read below; any other top-level member is refused.
local KNOWN = {
  model = true, messages = true, max_tokens = true, max_completion_tokens = true,
  temperature = true, top_p = true, stop = true, n = true, stream = true, stream_options = true,
  tools = true, tool_choice = true, parallel_tool_calls = true, user = true,
  safety_identifier = true, response_format = true, seed = true, presence_penalty = true,
  frequency_penalty = true, logit_bias = true, logprobs = true, top_logprobs = true,
}

local function number_param(req, name, c, lo, hi)
  local v = req[name]
  if not present(v) then return nil end
  if type(v) ~= "number" then fail("invalid_type", format("`%s` must be a number.", name), name) end
  if (lo ~= nil and v < lo) or (hi ~= nil and v > hi) then
    fail("invalid_value", format("`%s` must be between %s and %s.", name, lo, hi), name)
  end
  return v
end

local function integer_param(req, name, lo)
  local v = req[name]
  if not present(v) then return nil end
  if type(v) ~= "number" or v ~= math.floor(v) or v < lo or v > 2147483647 then
    fail("invalid_value", format("`%s` must be an integer of at least %d.", name, lo), name)
  end
  return v
end

local function string_param(req, name)
  local v = req[name]
  if not present(v) then return nil end
  if type(v) ~= "string" then fail("invalid_type", format("`%s` must be a string.", name), name) end
  return v
end

-- Content -----------------------------------------------------------------------------------

local DATA_URL = "^data:([%w%.%+%-]+/[%w%.%+%-]+);base64,(.+)$"

local function image_block(part, where)
  local iu = part.image_url
  local url = is_object(iu) and iu.url or nil
  if type(url) ~= "string" then
    fail("invalid_content", where .. ".image_url.url must be a string.", where)
  end
  local media_type, data = match(url, DATA_URL)
  if media_type ~= nil then return { kind = "image", media_type = lower(media_type), data = data } end
  if find(url, "^https?://") then return { kind = "image", url = url } end
  fail("invalid_content", where .. ".image_url.url must be an https URL or a base64 data URL.", where)
end

-- Appends the blocks of a message's `content` (a string, an array of parts or null) to
-- blocks; `kinds` says which part types the role may carry. Empty text adds nothing.
local function add_content(content, where, blocks, kinds)
  if content == nil or content == null then return end
  if type(content) == "string" then
    if content ~= "" then blocks[#blocks + 1] = { kind = "text", text = content } end
    return
  end
  if not is_array(content) then
    fail("invalid_content", where .. " must be a string or an array of content parts.", where)
  end
  for i = 1, #content do
    local part, at = content[i], where .. "[" .. (i - 1) .. "]"
    if not is_object(part) then fail("invalid_content", at .. " must be an object.", at) end
    local t = part.type
    if t == "text" or (t == "refusal" and kinds.refusal) then
      local text = t == "text" and part.text or part.refusal
      if type(text) ~= "string" then fail("invalid_content", at .. "." .. t .. " must be a string.", at) end
      if text ~= "" then blocks[#blocks + 1] = { kind = "text", text = text } end
    elseif t == "image_url" and kinds.image then
      blocks[#blocks + 1] = image_block(part, at)
    else
      fail("unsupported_content",
        format("%s: content parts of type `%s` cannot be sent to this model's provider.", at, tostring(t)), at)
    end
  end
end

local TEXT_ONLY = {}
local USER_PARTS = { image = true }
local ASSISTANT_PARTS = { refusal = true }

local function tool_calls_of(msg, where, blocks, names)
  local calls = msg.tool_calls
  if not present(calls) then return end
  if not is_array(calls) then fail("invalid_tool_calls", where .. ".tool_calls must be an array.", where) end
  for i = 1, #calls do
    local call, at = calls[i], where .. ".tool_calls[" .. (i - 1) .. "]"
    local fn = is_object(call) and call["function"] or nil
    if not is_object(call) or call.type ~= "function" or not is_object(fn) then
      fail("invalid_tool_calls", at .. " must be {type: function, function: {name, arguments}}.", at)
    end
    if type(call.id) ~= "string" or call.id == "" then fail("invalid_tool_calls", at .. ".id must be a non-empty string.", at) end
    if type(fn.name) ~= "string" or fn.name == "" then fail("invalid_tool_calls", at .. ".function.name must be a non-empty string.", at) end
    if type(fn.arguments) ~= "string" then fail("invalid_tool_calls", at .. ".function.arguments must be a string.", at) end
    local ok, args = pcall(json.decode, fn.arguments == "" and "{}" or fn.arguments)
    if not ok or not is_object(args) then
      fail("invalid_tool_arguments", at .. ".function.arguments must be a JSON object.", at)
    end
    if names[call.id] ~= nil then fail("invalid_tool_calls", at .. ".id repeats an earlier tool call's id.", at) end
    names[call.id] = fn.name
    blocks[#blocks + 1] = { kind = "tool_call", id = call.id, name = fn.name, arguments = args }
  end
end

local function tool_result_of(msg, where, names)
  local id = msg.tool_call_id
  if type(id) ~= "string" or id == "" then
    fail("invalid_tool_message", where .. ".tool_call_id must be a non-empty string.", where)
  end
  local name = names[id]
  if name == nil then
    fail("invalid_tool_message", where .. ".tool_call_id does not name a tool call of an earlier assistant message.", where)
  end
  local parts = {}
  add_content(msg.content, where .. ".content", parts, TEXT_ONLY)
  local texts = {}
  for i = 1, #parts do texts[i] = parts[i].text end
  return { kind = "tool_result", id = id, name = name, texts = texts }
end

-- Messages ----------------------------------------------------------------------------------

local function read_messages(messages, c)
  if not is_array(messages) or #messages == 0 then
    fail("invalid_messages", "`messages` must be a non-empty array.", "messages")
  end
  local system, turns, names = {}, {}, {}
  for i = 1, #messages do
    local msg, where = messages[i], "messages[" .. (i - 1) .. "]"
    if not is_object(msg) then fail("invalid_messages", where .. " must be an object.", where) end
    local role, role_of, blocks = msg.role, nil, {}
    if role == "system" or role == "developer" then
      local parts = {}
      add_content(msg.content, where .. ".content", parts, TEXT_ONLY)
      for j = 1, #parts do system[#system + 1] = parts[j].text end
    elseif role == "user" then
      role_of = "user"
      add_content(msg.content, where .. ".content", blocks, USER_PARTS)
      if #blocks == 0 then fail("empty_content", where .. " has no content.", where) end
    elseif role == "assistant" then
      role_of = "assistant"
      add_content(msg.content, where .. ".content", blocks, ASSISTANT_PARTS)
      if present(msg.function_call) then
        fail("unsupported_parameter", where .. ".function_call is deprecated; use tool_calls.", where)
      end
      tool_calls_of(msg, where, blocks, names)
      if #blocks == 0 then fail("empty_content", where .. " has neither content nor tool calls.", where) end
    elseif role == "tool" then
      role_of = "user"
      blocks[1] = tool_result_of(msg, where, names)
      c.has_tool_blocks = true
    elseif role == "function" then
      fail("unsupported_content", where .. ": role `function` is deprecated; use tool messages.", where)
    else
      fail("invalid_role", format("%s.role must be system, developer, user, assistant or tool.", where), where)
    end
    if role_of ~= nil then
      local last = turns[#turns]
      if last ~= nil and last.role == role_of then
        for j = 1, #blocks do last.blocks[#last.blocks + 1] = blocks[j] end
      else
        turns[#turns + 1] = { role = role_of, blocks = blocks, at = where }
      end
    end
  end
  if #turns == 0 then
    fail("invalid_messages", "`messages` needs at least one user or assistant message.", "messages")
  end
  -- Every tool call is answered in the very next turn, its results first, and a result only
  -- follows its call (OpenAI's own rule; the native APIs enforce it too).
  for i = 1, #turns do
    local turn, pending = turns[i], {}
    local count = 0
    for _, b in ipairs(turn.blocks) do
      if b.kind == "tool_call" then pending[b.id] = true; count = count + 1; c.has_tool_blocks = true end
    end
    local after = turns[i + 1]
    if count > 0 then
      if after == nil then
        fail("invalid_tool_message", turn.at .. ": every tool call needs a tool message with its result after it.", turn.at)
      end
      local j = 1
      while after.blocks[j] ~= nil and after.blocks[j].kind == "tool_result" do
        local id = after.blocks[j].id
        if not pending[id] then
          fail("invalid_tool_message", after.at .. ": a tool result answers a tool call of another turn.", after.at)
        end
        pending[id] = nil
        count = count - 1
        j = j + 1
      end
      if count > 0 then
        fail("invalid_tool_message", turn.at .. ": every tool call needs a tool message with its result, before any other message.", turn.at)
      end
    end
    if turn.role == "user" then
      -- results only at the start of the turn that follows their call
      local leading = true
      for _, b in ipairs(turn.blocks) do
        if b.kind ~= "tool_result" then
          leading = false
        elseif not leading or i == 1 or turns[i - 1].role ~= "assistant" then
          fail("invalid_tool_message", turn.at .. ": a tool message must follow the assistant message with its tool call.", turn.at)
        end
      end
    end
  end
  c.system, c.turns = system, turns
end

-- Tools -------------------------------------------------------------------------------------

local function read_tools(req, c)
  local tools = req.tools
  if present(tools) then
    if not is_array(tools) then fail("invalid_tools", "`tools` must be an array.", "tools") end
    local out = {}
    for i = 1, #tools do
      local tool, at = tools[i], "tools[" .. (i - 1) .. "]"
      local fn = is_object(tool) and tool["function"] or nil
      if not is_object(tool) or tool.type ~= "function" or not is_object(fn) then
        fail("invalid_tools", at .. " must be {type: function, function: {name, ...}}.", at)
      end
      if type(fn.name) ~= "string" or fn.name == "" then fail("invalid_tools", at .. ".function.name must be a non-empty string.", at) end
      local description = fn.description
      if present(description) and type(description) ~= "string" then
        fail("invalid_tools", at .. ".function.description must be a string.", at)
      end
      local parameters = fn.parameters
      if present(parameters) and not is_object(parameters) then
        fail("invalid_tools", at .. ".function.parameters must be a JSON schema object.", at)
      end
      out[i] = { name = fn.name, description = present(description) and description or nil,
                 parameters = present(parameters) and parameters or nil, at = at }
    end
    if #out > 0 then c.tools = out end
  end
  local choice = req.tool_choice
  if present(choice) then
    if choice == "auto" or choice == "required" or choice == "none" then
      c.tool_choice = choice
    elseif is_object(choice) and choice.type == "function" and is_object(choice["function"])
        and type(choice["function"].name) == "string" then
      c.tool_choice = { name = choice["function"].name }
    else
      fail("invalid_tool_choice", "`tool_choice` must be none, auto, required or {type: function, function: {name}}.", "tool_choice")
    end
    if c.tools == nil and choice ~= "none" then
      fail("invalid_tool_choice", "`tool_choice` is only allowed when `tools` are given.", "tool_choice")
    end
    if type(c.tool_choice) == "table" then
      local found = false
      for _, t in ipairs(c.tools) do if t.name == c.tool_choice.name then found = true end end
      if not found then fail("invalid_tool_choice", "`tool_choice` names a function that is not in `tools`.", "tool_choice") end
    end
  end
  local parallel = req.parallel_tool_calls
  if present(parallel) then
    if type(parallel) ~= "boolean" then fail("invalid_type", "`parallel_tool_calls` must be a boolean.", "parallel_tool_calls") end
    c.parallel_tool_calls = parallel
  end
end

-- Sampling and output -----------------------------------------------------------------------

local function read_stop(req, c)
  local stop = req.stop
  if not present(stop) then return end
  if type(stop) == "string" then
    c.stop = { stop }
  elseif is_array(stop) then
    for i = 1, #stop do
      if type(stop[i]) ~= "string" then fail("invalid_type", "`stop` must be a string or an array of strings.", "stop") end
    end
    if #stop > 0 then c.stop = stop end
  else
    fail("invalid_type", "`stop` must be a string or an array of strings.", "stop")
  end
  if c.stop ~= nil then c.set.stop = true end
end

local function read_response_format(req, c)
  local rf = req.response_format
  if not present(rf) then return end
  if not is_object(rf) then fail("invalid_type", "`response_format` must be an object.", "response_format") end
  if rf.type == "text" then return end
  if rf.type == "json_object" then
    c.response_format = { type = "json_object" }
  elseif rf.type == "json_schema" and is_object(rf.json_schema) then
    local schema = rf.json_schema.schema
    if present(schema) and not is_object(schema) then
      fail("invalid_type", "`response_format.json_schema.schema` must be an object.", "response_format")
    end
    c.response_format = { type = "json_schema", schema = present(schema) and schema or nil }
  else
    fail("invalid_value", "`response_format.type` must be text, json_object or json_schema.", "response_format")
  end
  c.set.response_format = true
end

function M.read(req)
  if not is_object(req) then fail("invalid_body", "The request body must be a JSON object.") end
  for k in pairs(req) do
    if not KNOWN[k] and not DROPPED[k] then
      fail("unsupported_parameter", format("`%s` is not supported by this model's provider.", k), k)
    end
  end
  local c = { set = {} }
  read_messages(req.messages, c)
  read_tools(req, c)

  local max = integer_param(req, "max_completion_tokens", 1)
  if max == nil then max = integer_param(req, "max_tokens", 1) end
  c.max_tokens = max
  c.temperature = number_param(req, "temperature", c, 0, 2)
  c.top_p = number_param(req, "top_p", c, 0, 1)
  c.presence_penalty = number_param(req, "presence_penalty", c, -2, 2)
  c.frequency_penalty = number_param(req, "frequency_penalty", c, -2, 2)
  c.seed = integer_param(req, "seed", -2147483648)
  c.n = integer_param(req, "n", 1) or 1
  if c.n > 128 then fail("invalid_value", "`n` must be at most 128.", "n") end
  read_stop(req, c)
  read_response_format(req, c)
  if c.n ~= 1 then c.set.n = true end
  if c.seed ~= nil then c.set.seed = true end
  -- a zero penalty is no penalty: not sent
  if c.presence_penalty == 0 then c.presence_penalty = nil end
  if c.frequency_penalty == 0 then c.frequency_penalty = nil end
  if c.presence_penalty ~= nil then c.set.presence_penalty = true end
  if c.frequency_penalty ~= nil then c.set.frequency_penalty = true end
  if present(req.logit_bias) then
    if not is_object(req.logit_bias) then fail("invalid_type", "`logit_bias` must be an object.", "logit_bias") end
    if next(req.logit_bias) ~= nil then c.set.logit_bias = true end
  end
  if present(req.logprobs) then
    if type(req.logprobs) ~= "boolean" then fail("invalid_type", "`logprobs` must be a boolean.", "logprobs") end
    if req.logprobs then c.set.logprobs = true end
  end
  if present(req.top_logprobs) then c.set.logprobs = true end
  c.user = string_param(req, "user") or string_param(req, "safety_identifier")

  local stream = req.stream
  if present(stream) and type(stream) ~= "boolean" then fail("invalid_type", "`stream` must be a boolean.", "stream") end
  c.stream = stream == true
  local options = req.stream_options
  if present(options) then
    if not c.stream then fail("invalid_value", "`stream_options` is only allowed when `stream` is true.", "stream_options") end
    if not is_object(options) then fail("invalid_type", "`stream_options` must be an object.", "stream_options") end
    local usage = options.include_usage
    if present(usage) and type(usage) ~= "boolean" then
      fail("invalid_type", "`stream_options.include_usage` must be a boolean.", "stream_options")
    end
    c.include_usage = usage == true
  end
  return c
end

-- For provider modules: refuse the sampling parameters their API has no equivalent for.
function M.refuse_unsupported(c, supported, provider)
  local refused = {}
  for name in pairs(c.set) do
    if not supported[name] then refused[#refused + 1] = name end
  end
  if #refused == 0 then return end
  table.sort(refused)
  local names = "`" .. table.concat(refused, "`, `") .. "`"
  fail("unsupported_parameter", format("%s %s not supported by %s models.", names,
    #refused == 1 and "is" or "are", provider), refused[1])
end

-- The decoded `arguments` of every tool call that holds an escape (a `\`): only there can the
-- decoded text differ from the string the guardrails read. The body filter adds their strings
-- to the guardrails' text and redacts them.
function M.escaped_arguments(req)
  local out, messages = {}, req.messages
  if not is_array(messages) then return out end
  for i = 1, #messages do
    local calls = is_object(messages[i]) and messages[i].tool_calls or nil
    if is_array(calls) then
      for j = 1, #calls do
        local fn = is_object(calls[j]) and calls[j]["function"] or nil
        local args = is_object(fn) and fn.arguments or nil
        if type(args) == "string" and find(args, "\\", 1, true) then
          local ok, decoded = pcall(json.decode, args)
          if ok and type(decoded) == "table" then out[#out + 1] = { fn = fn, value = decoded } end
        end
      end
    end
  end
  return out
end

return M
