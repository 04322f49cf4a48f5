-- The gateway's downstream Lua filter: route selection, API keys, guardrails, prompts,
-- token accounting. Prepended at render time by `local json = ...` and `local DATA = ...`
-- (the generated, escaped data table); this file holds no manifest data itself.
--
-- Request: buffer the body, decode it, pick the route from `model`, then authenticate,
-- check size, publish the message text for the RBAC deny-pattern match, redact, inject the
-- prompt, charge token debt, rewrite the body (`model` first, for the upstream splice) and
-- set x-gw-route for the route table. Response: usage -> metadata for the access log, token
-- debt, x-gateway-prompt-version.

local NS = "gw"
local INTERNAL_HEADERS = { "x-gw-route", "x-gw-consumer", "x-gw-target", "x-gw-reply" }
local CLIENT_KEY_HEADERS = { "authorization", "x-api-key", "api-key" }

-- Per worker: consumer keys read from the mounted secret files, refreshed after a TTL.
local key_cache = { expires = -1, by_key = {} }
-- Per worker: tokens used by finished responses and not yet charged to the shared bucket,
-- by "<limit key>|<route>|<consumer>".
local token_debt = {}

math.randomseed(os.time() + math.floor(os.clock() * 1000000))

-- A route's policy fields (api_keys, allow, guard, token_limits, max_bytes, redact) live in
-- DATA.policies, shared by the routes with the same policies; make them read as the route's.
for _, route in pairs(DATA.routes) do
  setmetatable(route, { __index = DATA.policies[route.policy] })
end

local function trim(s)
  return (string.gsub((string.gsub(s, "^%s+", "")), "%s+$", ""))
end

local function read_file(path)
  local f = io.open(path, "rb")
  if f == nil then return nil end
  local data = f:read("*a")
  f:close()
  return data
end

local function consumer_for_key(key)
  local now = os.time()
  if now >= key_cache.expires then
    local by_key = {}
    for _, c in ipairs(DATA.consumers) do
      local value = read_file(c.file)
      if value ~= nil then
        value = trim(value)
        if value ~= "" then by_key[value] = c.name end
      end
    end
    key_cache = { expires = now + DATA.secret_ttl_s, by_key = by_key }
  end
  return key_cache.by_key[key]
end

local function presented_key(hdrs)
  local auth = hdrs:get("authorization")
  if auth ~= nil then
    local bearer = string.match(auth, "^[Bb][Ee][Aa][Rr][Ee][Rr]%s+(.-)%s*$")
    if bearer ~= nil and bearer ~= "" then return bearer end
  end
  for _, name in ipairs({ "x-api-key", "api-key" }) do
    local v = hdrs:get(name)
    if v ~= nil and trim(v) ~= "" then return trim(v) end
  end
  return nil
end

-- Fetched per use: handles taken before h:body() are invalid after it.
local function set_md(h, key, value, ns)
  h:streamInfo():dynamicMetadata():set(ns or NS, key, value)
end

local function reply(h, status, message, err_type, code)
  set_md(h, "lua_reply", true)
  h:headers():replace("x-gw-reply", "lua")  -- local_reply mappers leave this reply alone
  local body = json.encode({ error = { message = message, type = err_type, code = code } })
  h:respond({ [":status"] = tostring(status), ["content-type"] = "application/json" }, body)
end

-- Text of a request that guardrails look at: message contents, prompt, input.
local function collect_text(req)
  local out = {}
  local function add(v)
    if type(v) == "string" then
      out[#out + 1] = v
    elseif json.is_array(v) then
      for _, item in ipairs(v) do
        if type(item) == "string" then
          out[#out + 1] = item
        elseif json.is_object(item) and type(item.text) == "string" then
          out[#out + 1] = item.text
        end
      end
    end
  end
  if json.is_array(req.messages) then
    for _, m in ipairs(req.messages) do
      if json.is_object(m) then add(m.content) end
    end
  end
  add(req.prompt)
  add(req.input)
  return table.concat(out, "\n")
end

-- Redaction ---------------------------------------------------------------------------------

local function luhn_ok(digits)
  local sum, alt = 0, false
  for i = #digits, 1, -1 do
    local d = tonumber(string.sub(digits, i, i))
    if alt then d = d * 2; if d > 9 then d = d - 9 end end
    sum = sum + d
    alt = not alt
  end
  return sum % 10 == 0
end

local function redact_digit_runs(s, min_digits, max_digits, mark, check)
  return (string.gsub(s, "%f[%w%+]%+?%d[%d%-%.%s%(%)]*%d%f[%W]", function(run)
    local digits = string.gsub(run, "%D", "")
    if #digits >= min_digits and #digits <= max_digits and (check == nil or check(digits)) then
      return mark
    end
    return nil
  end))
end

local REDACTORS = {
  email = function(s)
    return (string.gsub(s, "[%w%.%%%+%-_]+@[%w%-]+%.[%w%.%-]*%w", "[REDACTED_EMAIL]"))
  end,
  ssn = function(s)
    return (string.gsub(s, "%f[%d]%d%d%d%-%d%d%-%d%d%d%d%f[%D]", "[REDACTED_SSN]"))
  end,
  ["credit-card"] = function(s)
    return redact_digit_runs(s, 13, 19, "[REDACTED_CREDIT_CARD]", luhn_ok)
  end,
  phone = function(s)
    return redact_digit_runs(s, 10, 15, "[REDACTED_PHONE]", nil)
  end,
}
-- Fixed order: the specific shapes first, so a card number is not taken for a phone number.
local REDACT_ORDER = { "email", "ssn", "credit-card", "phone" }

local function redact_string(s, kinds)
  for _, kind in ipairs(REDACT_ORDER) do
    if kinds[kind] then s = REDACTORS[kind](s) end
  end
  return s
end

local function redact_value(v, kinds)
  if type(v) == "string" then return redact_string(v, kinds) end
  if json.is_array(v) then
    for i, item in ipairs(v) do
      if type(item) == "string" then
        v[i] = redact_string(item, kinds)
      elseif json.is_object(item) and type(item.text) == "string" then
        item.text = redact_string(item.text, kinds)
      end
    end
  end
  return v
end

local function redact_request(req, kinds)
  if json.is_array(req.messages) then
    for _, m in ipairs(req.messages) do
      if json.is_object(m) then m.content = redact_value(m.content, kinds) end
    end
  end
  if req.prompt ~= nil then req.prompt = redact_value(req.prompt, kinds) end
  if req.input ~= nil then req.input = redact_value(req.input, kinds) end
end

-- Prompts -----------------------------------------------------------------------------------

local function pick_version(prompt)
  local roll = math.random(1, 100)
  local acc = 0
  for _, v in ipairs(prompt.versions) do
    acc = acc + v.weight
    if roll <= acc then return v end
  end
  return prompt.versions[#prompt.versions]
end

-- Returns the rendered text, or nil and the name of a missing required variable.
local function render_prompt(version, vars)
  for _, name in ipairs(version.required) do
    local v = vars[name]
    if v == nil or v == json.null then return nil, name end
  end
  local out = {}
  for i, part in ipairs(version.parts) do
    if part.var == nil then
      out[i] = part.text
    else
      local v = vars[part.var]
      if v == nil or v == json.null then
        v = part.default or ""
      elseif type(v) ~= "string" then
        v = json.encode(v)
      end
      out[i] = v
    end
  end
  return table.concat(out)
end

-- Token limits ------------------------------------------------------------------------------

local function debt_key(limit, route_name, consumer)
  if limit.by == "consumer" then return limit.key .. "|" .. route_name .. "|" .. consumer end
  return limit.key .. "|" .. route_name .. "|"
end

-- Request ------------------------------------------------------------------------------------

function envoy_on_request(h)
  local hdrs = h:headers()
  for _, name in ipairs(INTERNAL_HEADERS) do hdrs:remove(name) end
  for _, name in ipairs(DATA.token_headers) do hdrs:remove(name) end
  local method = hdrs:get(":method")
  local path = string.match(hdrs:get(":path") or "", "^[^?]*")
  local endpoint = DATA.endpoints[path]
  if endpoint == nil or method ~= "POST" then return end

  local body = h:body()
  hdrs = h:headers()  -- handles taken before body() are invalid after it
  if body == nil or body:length() == 0 then
    return reply(h, 400, "The request body must be a JSON object.", "invalid_request_error", "invalid_body")
  end
  local raw = body:getBytes(0, body:length())
  local ok, req = pcall(json.decode, raw)
  if not ok or not json.is_object(req) then
    return reply(h, 400, "The request body is not a valid JSON object.", "invalid_request_error", "invalid_json")
  end
  local model = req.model
  if type(model) ~= "string" then
    return reply(h, 400, "The request must name a `model`.", "invalid_request_error", "missing_model")
  end
  set_md(h, "requested_model", model)
  local route_name = DATA.models[model]
  if route_name == nil then
    return reply(h, 404, "The model `" .. model .. "` does not exist.", "invalid_request_error", "model_not_found")
  end
  local route = DATA.routes[route_name]
  set_md(h, "route", route_name)

  if route.max_bytes ~= nil and #raw > route.max_bytes then
    return reply(h, 413, "The request body is larger than " .. route.max_bytes .. " bytes.",
      "invalid_request_error", "request_too_large")
  end

  local key = presented_key(hdrs)
  local consumer = nil
  if key ~= nil then consumer = consumer_for_key(key) end
  if route.api_keys then
    if key == nil then
      return reply(h, 401, "Missing API key: send `Authorization: Bearer <key>` or `x-api-key`.",
        "authentication_error", "missing_api_key")
    end
    if consumer == nil then
      return reply(h, 401, "Invalid API key.", "authentication_error", "invalid_api_key")
    end
  end
  if route.allow ~= nil and (consumer == nil or not route.allow[consumer]) then
    return reply(h, 403, "This consumer may not use the model `" .. model .. "`.",
      "permission_error", "consumer_not_allowed")
  end
  consumer = consumer or "anonymous"
  set_md(h, "consumer", consumer)
  for _, name in ipairs(CLIENT_KEY_HEADERS) do hdrs:remove(name) end

  if route.guard ~= nil then
    -- The listener's RBAC matches the deny patterns (RE2) of guard set `set` against `text`;
    -- see guardrails.py.
    set_md(h, "set", route.guard, "gw.guard")
    set_md(h, "text", collect_text(req), "gw.guard")
  end
  if route.redact ~= nil then redact_request(req, route.redact) end

  local variables = req.prompt_variables
  req.prompt_variables = nil
  if route.prompt ~= nil then
    if variables ~= nil and not json.is_object(variables) then
      return reply(h, 400, "`prompt_variables` must be an object.", "invalid_request_error", "invalid_prompt_variables")
    end
    local version = pick_version(route.prompt)
    local text, missing = render_prompt(version, variables or {})
    if text == nil then
      return reply(h, 400, "Missing required prompt variable `" .. missing .. "` in `prompt_variables`.",
        "invalid_request_error", "missing_prompt_variable")
    end
    if endpoint == "chat" then
      if not json.is_array(req.messages) then req.messages = setmetatable({}, json.array) end
      table.insert(req.messages, 1, setmetatable({ role = "system", content = text }, json.object))
    elseif endpoint == "completions" and type(req.prompt) == "string" then
      req.prompt = text .. "\n\n" .. req.prompt
    end
    set_md(h, "prompt", route.prompt.name)
    set_md(h, "prompt_version", version.version)
  end

  for i, limit in ipairs(route.token_limits) do
    local dk = debt_key(limit, route_name, consumer)
    local pending = token_debt[dk] or 0
    local carried = math.min(pending, limit.max - 1)
    token_debt[dk] = nil
    set_md(h, "token_carried_" .. i, carried)
    hdrs:replace(limit.header, tostring(1 + carried))
  end

  body:setBytes(json.encode(req, "model"))
  hdrs = h:headers()
  hdrs:replace("x-gw-route", route_name)
  hdrs:replace("x-gw-consumer", consumer)
  h:clearRouteCache()
end

-- Response -----------------------------------------------------------------------------------

local function usage_numbers(usage)
  if not json.is_object(usage) then return nil end
  local p = usage.prompt_tokens or usage.input_tokens
  local c = usage.completion_tokens or usage.output_tokens or 0
  if type(p) ~= "number" or type(c) ~= "number" then return nil end
  return p, c
end

-- Finds the last `usage` object in an SSE stream without holding the stream back: chunks are
-- read as they pass, and only the current incomplete line is kept.
local function scan_stream_usage(h)
  local pending = ""
  local p, c
  for chunk in h:bodyChunks() do
    local data = pending .. chunk:getBytes(0, chunk:length())
    local start = 1
    while true do
      local nl = string.find(data, "\n", start, true)
      if nl == nil then break end
      local line = string.sub(data, start, nl - 1)
      start = nl + 1
      if string.find(line, '"usage"', 1, true) then
        local payload = string.match(line, "^data:%s*(.-)%s*$")
        if payload ~= nil then
          local ok, event = pcall(json.decode, payload)
          if ok and json.is_object(event) then
            local ep, ec = usage_numbers(event.usage)
            if ep ~= nil then p, c = ep, ec end
          end
        end
      end
    end
    pending = string.sub(data, start)
    if #pending > 1048576 then pending = "" end  -- not SSE as expected; stop holding it
  end
  return p, c
end

local function charge_tokens(info, route, used)
  for _, limit in ipairs(route.token_limits) do
    local dk = debt_key(limit, info.route, info.consumer)
    token_debt[dk] = (token_debt[dk] or 0) + math.max(used - 1, 0)
  end
end

function envoy_on_response(h)
  local info = h:streamInfo():dynamicMetadata():get(NS)
  if info == nil or info.route == nil or info.lua_reply then return end
  local route = DATA.routes[info.route]
  local hdrs = h:headers()
  local status = tonumber(hdrs:get(":status")) or 0
  if info.prompt_version ~= nil then
    hdrs:replace("x-gateway-prompt-version", string.format("%d", info.prompt_version))
  end

  local rbac = h:streamInfo():dynamicMetadata():get("envoy.filters.http.rbac")
  if rbac ~= nil and rbac.shadow_engine_result == "denied" then
    set_md(h, "guardrail", "logged")
  elseif status == 403 and hdrs:get("x-gateway-guardrail") ~= nil then
    set_md(h, "guardrail", "blocked")
  end

  if status == 429 and hdrs:get("x-gateway-limit") ~= nil then
    -- Rejected by a limiter before (or at) the token charge: nothing was consumed, so the
    -- carried debt goes back to wait for the next request.
    for i, limit in ipairs(route.token_limits) do
      local carried = info["token_carried_" .. i] or 0
      if carried > 0 then
        local dk = debt_key(limit, info.route, info.consumer)
        token_debt[dk] = (token_debt[dk] or 0) + carried
      end
    end
    return
  end
  if status < 200 or status >= 300 then return end

  local model = hdrs:get("x-gateway-model")
  local ctype = hdrs:get("content-type") or ""
  local p, c
  if string.find(ctype, "text/event-stream", 1, true) then
    p, c = scan_stream_usage(h)
  else
    local body = h:body()
    if body == nil then return end
    local ok, resp = pcall(json.decode, body:getBytes(0, body:length()))
    if ok and json.is_object(resp) then p, c = usage_numbers(resp.usage) end
  end
  if p == nil then return end
  set_md(h, "prompt_tokens", p)
  set_md(h, "completion_tokens", c)
  local price = model and DATA.prices[model]
  if price ~= nil then
    local cost = (p * price[1] + c * price[2]) / 1000000
    set_md(h, "cost_usd", tonumber(string.format("%.8f", cost)))
  end
  if #route.token_limits > 0 then charge_tokens(info, route, p + c) end
end
