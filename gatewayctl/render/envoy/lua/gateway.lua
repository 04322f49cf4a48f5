-- The gateway's downstream body filter: route selection, per-route access, guardrails,
-- prompts, token accounting. Prepended at render time by `local json = ...`, `local DATA = ...`
-- (the generated, escaped data table), `read_secret` (secrets.lua) and `decide_access`
-- (access.lua: the route's 401/403 from the principal); this file holds no
-- manifest data itself. The auth filter (auth.lua) runs before it, from the headers alone,
-- and the buffer filter between them has bounded the body by the client's largest route.
--
-- Request: decode the body, pick the route from `model`, then check the route's body limit
-- and access (the principal auth.lua found), inject the prompt, publish every text of the
-- body the provider will read for the RBAC deny-pattern match, redact the same text, charge
-- token debt, rewrite the body (`model` first, for the upstream splice) and set x-gw-route for
-- the route table. The body is re-encoded only when its content changes (redaction, prompt);
-- otherwise the original member bytes are forwarded with `model` moved first and
-- `prompt_variables` left out. A route with one backend gets that model's upstream name
-- written here, and x-gw-body-model tells the upstream filter it need not touch the body; if
-- no attempt can go to another model either (a pinned route), the authority and the provider
-- credential are set here too, and the route skips the per-attempt filters.
-- A route with a provider that does not speak OpenAI (DATA route.native: its APIs) takes chat
-- completions only, and a request it could not translate for every one of those providers is
-- answered 400 here, so retries and fallback never meet a request one of them cannot take and
-- the client's view does not depend on which provider answered. `chat` and the provider
-- modules are bound before this file for such gateways (translate.lua translates per attempt).
-- Response: usage -> metadata for the access log, token debt, x-gateway-prompt-version; only
-- the top-level `usage` member is decoded. A provider's 401/403 (a rejected gateway
-- credential) becomes the gateway's own 502, so nothing of the provider's reply, which may
-- echo the credential, reaches the client.

-- gw: what the access log shows (logged whole, as one object); gw.internal: state no log
-- needs (the guard set and message text for RBAC, token debt carried into the limiter).
local NS = "gw"
local INTERNAL_NS = "gw.internal"
local BODY_MODEL_HEADER = "x-gw-body-model"
local PRINCIPAL_HEADER = "x-gw-principal"
local CLIENT_KEY_HEADERS = { "authorization", "x-api-key", "api-key" }
local find, sub, gsub, match, byte = string.find, string.sub, string.gsub, string.match, string.byte
local concat = table.concat
local is_object, is_array = json.is_object, json.is_array

-- Per worker: tokens used by finished responses and not yet charged to the shared bucket,
-- by "<limit key>|<route>|<consumer>".
local token_debt = {}

math.randomseed(os.time() + math.floor(os.clock() * 1000000))

-- A route's policy fields (api_keys, allow, guard, token_limits, max_bytes, redact) live in
-- DATA.policies, shared by the routes with the same policies; make them read as the route's.
for _, route in pairs(DATA.routes) do
  setmetatable(route, { __index = DATA.policies[route.policy] })
end
-- The metadata key of each token limit's carried debt, made once rather than per request.
for _, policy in pairs(DATA.policies) do
  for i, limit in ipairs(policy.token_limits) do limit.carried_key = "token_carried_" .. i end
end

-- A pinned route (one model for every attempt; see upstream.py pinned_models) has the router's
-- per-attempt filters switched off: what they would set, the authority and the provider's
-- credential, is set here, once per request.
local function set_target(h, hdrs, pinned)
  hdrs:replace(":authority", pinned.authority)
  local cred = DATA.providers[pinned.provider].credential
  if cred == nil then return end
  local value = read_secret(cred.file)
  if value == nil or value == "" then
    h:logErr("gatewayctl: cannot read provider credential " .. cred.file)
  else
    hdrs:replace(cred.header, cred.prefix .. value)
  end
end

-- Handles taken before h:body() are invalid after it: fetch the metadata map after it.
local function reply(h, status, message, err_type, code)
  h:streamInfo():dynamicMetadata():set(NS, "local_reply", true)
  h:headers():replace("x-gw-reply", "lua")  -- local_reply mappers leave this reply alone
  local body = json.encode({ error = { message = message, type = err_type, code = code } })
  h:respond({ [":status"] = tostring(status), ["content-type"] = "application/json" }, body)
end

-- Text the provider reads -------------------------------------------------------------------
-- A provider reads every string of the body: message text of every role and part (a string,
-- an array of parts or one part object), tool calls (names and arguments), tool and function
-- definitions (descriptions, parameter schemas), `prompt`, `input`, the injected prompt. The
-- deny patterns see all of it, object keys below the top level included (a schema's property
-- names reach the model too). Left out, as not text: the top-level member names (the API's
-- parameters), `model`, and the values of `role` and `type` (enumerations the provider checks).
local NOT_TEXT = { role = true, type = true }
-- Redaction rewrites the same strings except these identifiers, whose rewriting would break
-- the tool round trip (a call's id, a function's name); the deny patterns still see them.
local NOT_REDACTED = { model = true, role = true, type = true, name = true, id = true,
                       tool_call_id = true, call_id = true }

local function add_strings(v, out, n)
  if is_array(v) then
    for i = 1, #v do
      local item = v[i]
      local t = type(item)
      if t == "string" then
        n = n + 1; out[n] = item
      elseif t == "table" then
        n = add_strings(item, out, n)
      end
    end
    return n
  end
  for k, item in pairs(v) do
    n = n + 1; out[n] = k
    if not NOT_TEXT[k] then
      local t = type(item)
      if t == "string" then
        n = n + 1; out[n] = item
      elseif t == "table" then
        n = add_strings(item, out, n)
      end
    end
  end
  return n
end

local function guard_text(req, native)
  local out, n = {}, 0
  for k, v in pairs(req) do
    if k ~= "model" then
      local t = type(v)
      if t == "string" then
        n = n + 1; out[n] = v
      elseif t == "table" then
        n = add_strings(v, out, n)
      end
    end
  end
  -- A tool call's `arguments` is a JSON text that the native APIs get decoded: what its escapes
  -- spell is text the provider reads too.
  if native ~= nil then
    for _, a in ipairs(native) do
      if type(a.value) == "table" then n = add_strings(a.value, out, n) end
    end
  end
  return concat(out, "\n")
end

-- Text that Envoy's dynamic metadata carries whole and RE2 reads as UTF-8. A metadata string
-- ends at its first NUL, so NUL becomes a space; RE2's `.` matches no byte that is outside a
-- valid UTF-8 sequence, so one such byte anywhere would keep `(?s:.*)P(?s:.*)` from matching
-- the whole text: each becomes U+FFFD. Nothing else changes.
local REPLACEMENT = "\239\191\189"
local function carried_text(s)
  local i = find(s, "[%z\128-\255]")
  if i == nil then return s end
  local out, n, from, len = {}, 0, 1, #s
  while i ~= nil do
    local c = byte(s, i)
    local size = 0
    if c >= 0xC2 and c <= 0xDF then size = 2
    elseif c >= 0xE0 and c <= 0xEF then size = 3
    elseif c >= 0xF0 and c <= 0xF4 then size = 4 end
    local ok = size > 0 and i + size - 1 <= len
    if ok then
      for j = i + 1, i + size - 1 do
        local cc = byte(s, j)
        if cc < 0x80 or cc > 0xBF then ok = false; break end
      end
      if ok then
        local c2 = byte(s, i + 1)
        if (c == 0xE0 and c2 < 0xA0) or (c == 0xED and c2 > 0x9F)
            or (c == 0xF0 and c2 < 0x90) or (c == 0xF4 and c2 > 0x8F) then
          ok = false
        end
      end
    end
    if ok then
      i = i + size
    else
      out[n + 1] = sub(s, from, i - 1)
      out[n + 2] = c == 0 and " " or REPLACEMENT
      n = n + 2
      i = i + 1
      from = i
    end
    i = find(s, "[%z\128-\255]", i)
  end
  if n == 0 then return s end
  out[n + 1] = sub(s, from)
  return concat(out)
end

-- Client text shown in an error message or the access log: valid UTF-8 without NUL, at most
-- SHOWN_MAX bytes, and a cut one says so.
local SHOWN_MAX = 256
local function shown(s)
  if #s <= SHOWN_MAX then return carried_text(s) end
  return carried_text(sub(s, 1, SHOWN_MAX)) .. "...(truncated, " .. #s .. " bytes)"
end

-- Redaction ---------------------------------------------------------------------------------

local function luhn_ok(digits)
  local sum, alt = 0, false
  for i = #digits, 1, -1 do
    local d = byte(digits, i) - 48
    if alt then d = d * 2; if d > 9 then d = d - 9 end end
    sum = sum + d
    alt = not alt
  end
  return sum % 10 == 0
end

local function redact_digit_runs(s, min_digits, max_digits, mark, check)
  if not find(s, "%d") then return s end
  return (gsub(s, "%f[%w%+]%+?%d[%d%-%.%s%(%)]*%d%f[%W]", function(run)
    local digits = gsub(run, "%D", "")
    if #digits >= min_digits and #digits <= max_digits and (check == nil or check(digits)) then
      return mark
    end
    return nil
  end))
end

-- Bytes of an address's local part: [%w%.%%%+%-_] (ASCII letters and digits, . % + - _).
local LOCAL_PART = {}
for c = 48, 57 do LOCAL_PART[c] = true end
for c = 65, 90 do LOCAL_PART[c] = true end
for c = 97, 122 do LOCAL_PART[c] = true end
for _, c in ipairs({ 46, 37, 43, 45, 95 }) do LOCAL_PART[c] = true end

-- The same result as gsub(s, "[%w%.%%%+%-_]+@[%w%-]+%.[%w%.%-]*%w", "[REDACTED_EMAIL]"),
-- without trying the pattern at every byte: a match needs an `@`, so start from each `@`, take
-- the local-part run before it (not reaching into the previous match) and match the domain
-- after it.
local function redact_email(s)
  local at = find(s, "@", 1, true)
  if at == nil then return s end
  local out, n, from = {}, 0, 1
  while at ~= nil do
    local ls = at
    while ls > from and LOCAL_PART[byte(s, ls - 1)] do ls = ls - 1 end
    if ls < at then
      local _, de = find(s, "^[%w%-]+%.[%w%.%-]*%w", at + 1)
      if de ~= nil then
        out[n + 1] = sub(s, from, ls - 1)
        out[n + 2] = "[REDACTED_EMAIL]"
        n = n + 2
        from = de + 1
      end
    end
    at = find(s, "@", at + 1, true)
  end
  if n == 0 then return s end
  out[n + 1] = sub(s, from)
  return concat(out)
end

local REDACTORS = {
  email = redact_email,
  ssn = function(s)
    return (gsub(s, "%f[%d]%d%d%d%-%d%d%-%d%d%d%d%f[%D]", "[REDACTED_SSN]"))
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

-- Redacts every string of v in place but those under NOT_REDACTED keys; true if any changed.
local function redact_table(v, kinds)
  local changed = false
  if is_array(v) then
    for i = 1, #v do
      local item = v[i]
      local t = type(item)
      if t == "string" then
        local r = redact_string(item, kinds)
        if r ~= item then v[i] = r; changed = true end
      elseif t == "table" and redact_table(item, kinds) then
        changed = true
      end
    end
    return changed
  end
  for k, item in pairs(v) do
    if not NOT_REDACTED[k] then
      local t = type(item)
      if t == "string" then
        local r = redact_string(item, kinds)
        if r ~= item then v[k] = r; changed = true end
      elseif t == "table" and redact_table(item, kinds) then
        changed = true
      end
    end
  end
  return changed
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

-- Returns the rendered text; or nil and the name of a missing required variable; or nil,
-- nil and true when the text would be longer than `limit` bytes (checked before it is built,
-- so a variable used many times cannot make a worker allocate more than that).
local function render_prompt(version, vars, limit)
  for _, name in ipairs(version.required) do
    local v = vars[name]
    if v == nil or v == json.null then return nil, name end
  end
  local out, size = {}, 0
  for i, part in ipairs(version.parts) do
    local v
    if part.var == nil then
      v = part.text
    else
      v = vars[part.var]
      if v == nil or v == json.null then
        v = part.default or ""
      elseif type(v) ~= "string" then
        v = json.encode(v)
      end
    end
    size = size + #v
    if size > limit then return nil, nil, true end
    out[i] = v
  end
  return concat(out)
end

-- Native APIs -------------------------------------------------------------------------------

-- The provider modules, bound before this file only in gateways with a native provider.
local NATIVE = chat ~= nil and { anthropic = anthropic, bedrock = bedrock, gemini = gemini } or nil

-- nil if the request translates for every API in `apis`; else the error (a table from
-- chat.fail, or a message).
local function check_native(req, apis)
  local ok, err = pcall(function()
    local c = chat.read(req)
    for _, api in ipairs(apis) do NATIVE[api].request(c, "model", nil) end
  end)
  if ok then return nil end
  if type(err) ~= "table" then return { status = 400, message = tostring(err), code = "untranslatable" } end
  return err
end

-- Token limits ------------------------------------------------------------------------------

local function debt_key(limit, route_name, consumer)
  if limit.by == "consumer" then return limit.key .. "|" .. route_name .. "|" .. consumer end
  return limit.key .. "|" .. route_name .. "|"
end

-- Request ------------------------------------------------------------------------------------

-- The forwarded body when nothing but `model` and `prompt_variables` change: `model` first
-- (the upstream splice expects it there), then the client's other members byte for byte.
local function rebuild(raw, members, model)
  local out, n = { '{"model":', json.encode_string(model) }, 2
  for i = 1, #members, 3 do
    local k = members[i]
    if k ~= "model" and k ~= "prompt_variables" then
      out[n + 1] = ","
      out[n + 2] = sub(raw, members[i + 1], members[i + 2])
      n = n + 2
    end
  end
  out[n + 1] = "}"
  return concat(out)
end

function envoy_on_request(h)
  local hdrs = h:headers()
  -- auth.lua removed every client copy of the internal headers and, for these requests, set
  -- x-gw-principal; requests it let pass without one are not the gateway's.
  local endpoint = DATA.endpoints[match(hdrs:get(":path") or "", "^[^?]*")]
  if endpoint == nil or hdrs:get(":method") ~= "POST" then return end

  local body = h:body()
  hdrs = h:headers()  -- handles taken before body() are invalid after it
  local principal = hdrs:get(PRINCIPAL_HEADER) or "none"
  hdrs:remove(PRINCIPAL_HEADER)
  if body == nil or body:length() == 0 then
    return reply(h, 400, "The request body must be a JSON object.", "invalid_request_error", "invalid_body")
  end
  local raw = body:getBytes(0, body:length())
  local ok, req, members, unique = pcall(json.decode_members, raw)
  if not ok then
    return reply(h, 400, "The request body is not a valid JSON object.", "invalid_request_error", "invalid_json")
  end
  local model = req.model
  if type(model) ~= "string" then
    return reply(h, 400, "The request must name a `model`.", "invalid_request_error", "missing_model")
  end
  local md = h:streamInfo():dynamicMetadata()
  local route_name = DATA.models[model]
  if route_name == nil then
    local text = shown(model)
    md:set(NS, "requested_model", text)
    return reply(h, 404, "The model `" .. text .. "` does not exist.", "invalid_request_error", "model_not_found")
  end
  -- A route's public name: known, short, valid UTF-8.
  md:set(NS, "requested_model", model)
  local route = DATA.routes[route_name]
  md:set(NS, "route", route_name)

  if route.native ~= nil and endpoint ~= "chat" then
    return reply(h, 400, "The model `" .. model .. "` serves only /v1/chat/completions.",
      "invalid_request_error", "unsupported_endpoint")
  end
  if #raw > route.max_bytes then
    return reply(h, 413, "The request body is larger than " .. route.max_bytes .. " bytes.",
      "invalid_request_error", "request_too_large")
  end

  local consumer, status, message, err_type, code = decide_access(route, principal, model)
  if consumer == nil then return reply(h, status, message, err_type, code) end
  md:set(NS, "consumer", consumer)
  -- Global limits: an enforced budget's descriptor (global_limits.py).
  if DATA.budgets ~= nil and DATA.budgets[consumer] then md:set(INTERNAL_NS, "budget", consumer) end
  for _, name in ipairs(CLIENT_KEY_HEADERS) do hdrs:remove(name) end

  -- Whether the body's content changes (then it is re-encoded) beyond `model` and
  -- `prompt_variables`; a repeated key anywhere also re-encodes, so what the provider reads is
  -- what the gateway checked (the decoder keeps a repeated key's last value).
  local reencode = not unique

  local variables = req.prompt_variables
  req.prompt_variables = nil
  if route.prompt ~= nil then
    if variables ~= nil and not is_object(variables) then
      return reply(h, 400, "`prompt_variables` must be an object.", "invalid_request_error", "invalid_prompt_variables")
    end
    local version = pick_version(route.prompt)
    local text, missing, too_large = render_prompt(version, variables or {}, route.max_bytes)
    if too_large then
      return reply(h, 413, "The rendered prompt would be larger than " .. route.max_bytes .. " bytes.",
        "invalid_request_error", "prompt_too_large")
    end
    if text == nil then
      return reply(h, 400, "Missing required prompt variable `" .. missing .. "` in `prompt_variables`.",
        "invalid_request_error", "missing_prompt_variable")
    end
    if endpoint == "chat" then
      if not is_array(req.messages) then req.messages = setmetatable({}, json.array) end
      table.insert(req.messages, 1, setmetatable({ role = "system", content = text }, json.object))
      reencode = true
    elseif endpoint == "completions" and type(req.prompt) == "string" then
      req.prompt = text .. "\n\n" .. req.prompt
      reencode = true
    end
    md:set(NS, "prompt", route.prompt.name)
    md:set(NS, "prompt_version", version.version)
  end

  local args = route.native ~= nil and chat.escaped_arguments(req) or nil
  if route.guard ~= nil then
    -- The listener's RBAC matches the deny patterns (RE2) of guard set `set` against `text`,
    -- which is what the provider would read, before redaction; see guardrails.py.
    md:set(INTERNAL_NS, "set", route.guard)
    md:set(INTERNAL_NS, "text", carried_text(guard_text(req, args)))
  end
  if route.redact ~= nil then
    if redact_table(req, route.redact) then reencode = true end
    if args ~= nil then
      for _, a in ipairs(args) do
        if redact_table(a.value, route.redact) then
          a.fn.arguments = json.encode(a.value)
          reencode = true
        end
      end
    end
  end
  if route.native ~= nil then
    local err = check_native(req, route.native)
    if err ~= nil then
      return reply(h, err.status or 400, err.message or tostring(err), "invalid_request_error", err.code)
    end
  end

  for _, limit in ipairs(route.token_limits) do
    local dk = debt_key(limit, route_name, consumer)
    local pending = token_debt[dk] or 0
    local carried = math.min(pending, limit.max - 1)
    token_debt[dk] = nil
    md:set(INTERNAL_NS, limit.carried_key, carried)
    hdrs:replace(limit.header, tostring(1 + carried))
  end

  -- One backend: its upstream model now, so the upstream filter leaves the body alone on the
  -- attempts that go to it (retries; a fallback model still gets its name spliced in).
  local direct = route.direct
  local forward_model = direct and direct.upstream or model
  local out
  if reencode then
    req.model = forward_model
    out = json.encode(req, "model")
  else
    out = rebuild(raw, members, forward_model)
  end
  if out ~= raw then body:setBytes(out) end
  hdrs = h:headers()
  hdrs:replace("x-gw-route", route_name)
  hdrs:replace("x-gw-consumer", consumer)
  if direct ~= nil then
    if direct.pinned ~= nil then
      set_target(h, hdrs, direct.pinned)
    else
      hdrs:replace(BODY_MODEL_HEADER, direct.model)
    end
  end
  h:clearRouteCache()
end

-- Response -----------------------------------------------------------------------------------

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

local function charge_tokens(info, route, used)
  for _, limit in ipairs(route.token_limits) do
    local dk = debt_key(limit, info.route, info.consumer)
    token_debt[dk] = (token_debt[dk] or 0) + math.max(used - 1, 0)
  end
end

-- A 401/403 from a provider (x-gateway-model names the model whose endpoint answered; the
-- gateway's own 401/403 never come from an upstream) means it rejected the gateway's
-- credential: the client's own authentication passed. The provider's reply may echo the
-- credential, so none of it is passed on: the client gets the gateway's 502, and the log the
-- provider's status.
local UPSTREAM_AUTH_ERROR = json.encode({ error = {
  message = "The provider rejected the gateway's credentials for this model; the gateway's operators have to fix them.",
  type = "server_error",
  code = "upstream_authentication_failed",
} })
local BUDGET_ERROR = json.encode({ error = {
  message = "This consumer's monthly budget is spent; requests are refused until it renews.",
  type = "rate_limit_error",
  code = "budget_exceeded",
} })
local UPSTREAM_HEADERS_DROPPED = { "content-encoding", "www-authenticate", "set-cookie", "etag", "last-modified" }

local function replace_upstream_auth_error(h, hdrs, md, status)
  md:set(NS, "upstream_status", status)
  hdrs:replace(":status", "502")
  hdrs:replace("content-type", "application/json")
  for _, name in ipairs(UPSTREAM_HEADERS_DROPPED) do hdrs:remove(name) end
  local body = h:body()
  if body ~= nil then
    body:setBytes(UPSTREAM_AUTH_ERROR)
  end
end

function envoy_on_response(h)
  local md = h:streamInfo():dynamicMetadata()
  local info = md:get(NS)
  if info == nil or info.route == nil or info.local_reply then return end
  local route = DATA.routes[info.route]
  local hdrs = h:headers()
  local status = tonumber(hdrs:get(":status")) or 0
  if (status == 401 or status == 403) and hdrs:get("x-gateway-model") ~= nil
      and hdrs:get("x-gateway-guardrail") == nil then
    return replace_upstream_auth_error(h, hdrs, md, status)
  end
  if info.prompt_version ~= nil then
    hdrs:replace("x-gateway-prompt-version", string.format("%d", info.prompt_version))
  end

  if route.guard_logs then
    -- action log: the RBAC shadow rules record a match without denying
    local rbac = md:get("envoy.filters.http.rbac")
    if rbac ~= nil and rbac.shadow_engine_result == "denied" then md:set(NS, "guardrail", "logged") end
  elseif route.guard ~= nil and status == 403 and hdrs:get("x-gateway-guardrail") ~= nil then
    md:set(NS, "guardrail", "blocked")
  end

  local limit_hit = status == 429 and hdrs:get("x-gateway-limit")
  if limit_hit == "budget" then
    -- The rate limit filter's 429 for an enforced budget (global limits) says so.
    local body = h:body()
    if body ~= nil then body:setBytes(BUDGET_ERROR) end
    return
  end
  if limit_hit then
    -- Rejected by a limiter before (or at) the token charge: nothing was consumed, so the
    -- carried debt goes back to wait for the next request.
    local internal = md:get(INTERNAL_NS) or {}
    for _, limit in ipairs(route.token_limits) do
      local carried = internal[limit.carried_key] or 0
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
  local p, c, cached
  if find(ctype, "text/event-stream", 1, true) then
    p, c, cached = scan_stream_usage(h)
    if p == nil and route.native ~= nil then
      -- a translated stream whose client did not ask for usage: translate.lua kept it
      local attempt = h:streamInfo():dynamicMetadata():get("gw.attempt")
      if attempt ~= nil then p, c, cached = usage_numbers(attempt.usage) end
    end
  else
    local body = h:body()
    if body == nil then return end
    p, c, cached = usage_of(body:getBytes(0, body:length()))
  end
  if p == nil then return end
  md = h:streamInfo():dynamicMetadata()  -- handles taken before body() are invalid after it
  md:set(NS, "prompt_tokens", p)
  md:set(NS, "completion_tokens", c)
  if cached ~= nil and cached > 0 then md:set(NS, "cached_tokens", cached) end
  local price = model and DATA.prices[model]
  local cost = 0
  if price ~= nil then
    cost = (p * price[1] + c * price[2]) / 1000000
    md:set(NS, "cost_usd", tonumber(string.format("%.8f", cost)))
  end
  -- The spend counter (access_log.py): integer nano-USD, as Envoy's counters are integers.
  md:set(INTERNAL_NS, "cost_nano_usd", math.floor(cost * 1e9 + 0.5))
  if #route.token_limits > 0 then charge_tokens(info, route, p + c) end
  -- Global limits: the rate limit service is charged what the response used, beyond the 1
  -- each request was charged when it arrived (global_limits.py).
  if route.global_tokens ~= nil then
    local descriptors = {}
    for i, limit in ipairs(route.global_tokens) do
      local d = { { limit.key, info.route } }
      if limit.by == "consumer" then d[2] = { "consumer", info.consumer } end
      descriptors[i] = d
    end
    charge_limits(h, DATA.ratelimit, descriptors, p + c - 1)
  end
  if DATA.budgets ~= nil and DATA.budgets[info.consumer] and cost > 0 then
    local units = math.ceil(cost / DATA.budget_unit_usd - 1e-9) - 1
    charge_limits(h, DATA.ratelimit, { { { "budget", info.consumer } } }, units)
  end
end
