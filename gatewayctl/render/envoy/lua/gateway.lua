-- The gateway's downstream body filter: route selection, per-route access, guardrails,
-- prompts, token accounting. Prepended at render time by `local NAMES = ...` (every header
-- and metadata name, from names.py), `local json = ...`, `local DATA = ...` (the generated,
-- escaped data table), and its modules, each bound as `local <name> = (function() ... end)()`:
-- secrets (secrets.lua), decide_access (access.lua: the route's 401/403 from the
-- principal), over_limit (ratelimit.lua), texts (text.lua: what the provider reads),
-- redact (redact.lua), prompts (prompts.lua), usage (usage.lua) and tokens (tokens.lua: token
-- debt), and in gateways with a response cache cache_request (cache_request.lua: the key). This
-- file holds no manifest data and spells no name itself. The auth filter
-- (auth.lua) runs before it, from the headers alone, and the buffer filter between them has
-- bounded the body by the client's largest route.
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
-- the top-level `usage` member is decoded. On routes with output guardrails, the reply or
-- stream goes through outguard.lua (bound only in gateways that have such routes). A
-- provider's 401/403 (a rejected gateway credential) becomes the gateway's own 502, so
-- nothing of the provider's reply, which may echo the credential, reaches the client.

local NS = NAMES.metadata_ns
local INTERNAL_NS = NAMES.internal_ns
local ATTEMPT_NS = NAMES.attempt_ns
local ROUTE_HEADER, CONSUMER_HEADER = NAMES.route_header, NAMES.consumer_header
local BODY_MODEL_HEADER = NAMES.body_model_header
local PRINCIPAL_HEADER = NAMES.principal_header
local REPLY_HEADER = NAMES.reply_header
local CLIENT_KEY_HEADERS = NAMES.client_key_headers
local MODEL_RESPONSE_HEADER = NAMES.model_response_header
local PROMPT_VERSION_HEADER = NAMES.prompt_version_header
local LIMIT_RESPONSE_HEADER = NAMES.limit_response_header
local GUARDRAIL_RESPONSE_HEADER = NAMES.guardrail_response_header
local ROUTE_KEY, CONSUMER_KEY = NAMES.route_key, NAMES.consumer_key
local GUARD_SET_KEY, GUARD_TEXT_KEY = NAMES.guard_set_key, NAMES.guard_text_key
local RBAC_FILTER = NAMES.rbac_filter
local PROMPT_TOKENS_KEY, COMPLETION_TOKENS_KEY = NAMES.prompt_tokens_key, NAMES.completion_tokens_key
local COST_KEY, BUDGET_KEY, BUDGET_LIMIT = NAMES.cost_key, NAMES.budget_key, NAMES.budget_limit
local CONSUMER_DESCRIPTOR, BUDGET_DESCRIPTOR = NAMES.consumer_descriptor, NAMES.budget_descriptor
local REQUESTS_LIMIT, GLOBAL_REFUSAL = NAMES.requests_limit, NAMES.global_refusal
local TOKENS_USED_KEY, BUDGET_UNITS_KEY = NAMES.tokens_used_key, NAMES.budget_units_key
local CACHE_SAVED_KEY, CACHE_SAVED_NANO_KEY = NAMES.cache_saved_key, NAMES.cache_saved_nano_key
local TOKENS_CHARGED_KEY, BUDGET_CHARGED_KEY = NAMES.tokens_charged_key, NAMES.budget_charged_key
local find, sub, match = string.find, string.sub, string.match
local concat = table.concat
local is_object, is_array = json.is_object, json.is_array
local guard_text, carried_text, shown = texts.guard_text, texts.carried_text, texts.shown
local redact_table = redact.table
local usage_numbers, usage_of, scan_stream_usage = usage.numbers, usage.of, usage.scan_stream
local pick_version, render_prompt = prompts.pick_version, prompts.render
local carry_debt, charge_debt, refund_debt = tokens.carry, tokens.charge, tokens.refund
local local_wait = tokens.wait
local RETRY_AFTER_HEADER = NAMES.retry_after_header

-- A route's policy fields (api_keys, allow, guard, token_limits, max_bytes, redact) live in
-- DATA.policies, shared by the routes with the same policies; make them read as the route's.
for _, route in pairs(DATA.routes) do
  setmetatable(route, { __index = DATA.policies[route.policy] })
end

-- A pinned route (one model for every attempt; see upstream.py pinned_models) has the router's
-- per-attempt filters switched off: what they would set, the authority and the provider's
-- credential, is set here, once per request.
local function set_target(h, hdrs, pinned)
  hdrs:replace(":authority", pinned.authority)
  local cred = DATA.providers[pinned.provider].credential
  if cred ~= nil then secrets.set_credential(h, hdrs, cred) end
end

-- Handles taken before h:body() are invalid after it: fetch the metadata map after it.
local function reply(h, status, message, err_type, code)
  h:streamInfo():dynamicMetadata():set(NS, "local_reply", true)
  h:headers():replace(REPLY_HEADER, "lua")  -- local_reply mappers leave this reply alone
  local body = json.encode({ error = { message = message, type = err_type, code = code } })
  h:respond({ [":status"] = tostring(status), ["content-type"] = "application/json" }, body)
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
  md:set(NS, ROUTE_KEY, route_name)

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
  md:set(NS, CONSUMER_KEY, consumer)
  -- Global limits: an enforced budget's descriptor (global_limits.py).
  if DATA.budgets ~= nil and DATA.budgets[consumer] then md:set(INTERNAL_NS, BUDGET_KEY, consumer) end
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
    md:set(INTERNAL_NS, GUARD_SET_KEY, route.guard)
    md:set(INTERNAL_NS, GUARD_TEXT_KEY, carried_text(guard_text(req, args)))
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

  -- Response cache (cache_request.lua; bound only in gateways with a cache)
  if route.cache ~= nil then cache_request(md, hdrs, route.cache, route_name, consumer, endpoint, req) end

  carry_debt(md, hdrs, route, route_name, consumer)

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
  hdrs:replace(ROUTE_HEADER, route_name)
  hdrs:replace(CONSUMER_HEADER, consumer)
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
-- The rate limit service's descriptors of a request, as the rate limit filter sent them before
-- the request went on (global_limits.py route_rate_limits), and the kind of each.
local function global_descriptors(route, info)
  local descriptors, kinds, periods = {}, {}, {}
  for _, limit in ipairs(route.global or {}) do
    -- Envoy leaves out a descriptor whose metadata is missing (no consumer): so does this
    if limit.by ~= "consumer" or info.consumer ~= nil then
      local d = { { limit.key, info.route } }
      if limit.by == "consumer" then d[2] = { CONSUMER_DESCRIPTOR, info.consumer } end
      descriptors[#descriptors + 1] = d
      kinds[#kinds + 1] = limit.kind
      periods[#periods + 1] = limit.period
    end
  end
  if DATA.budgets ~= nil and info.consumer ~= nil and DATA.budgets[info.consumer] then
    descriptors[#descriptors + 1] = { { BUDGET_DESCRIPTOR, info.consumer } }
    kinds[#kinds + 1] = BUDGET_LIMIT
    periods[#periods + 1] = DATA.budget_period
  end
  return descriptors, kinds, periods
end

-- Which kind of limit refused the request: the only kind it sent, else the first descriptor the
-- service finds over its limit; "requests" when it cannot tell (no answer, or the window has
-- just turned). And the Retry-After seconds (ratelimit.lua).
local function global_limit_hit(h, route, info)
  local descriptors, kinds, periods = global_descriptors(route, info)
  if #descriptors == 0 then return REQUESTS_LIMIT, 1 end
  local kind, wait = over_limit(h, DATA.ratelimit, descriptors, kinds, periods)
  return kind or REQUESTS_LIMIT, wait
end

local function limit_error(kind)
  return json.encode({ error = {
    message = "Rate limit exceeded: too many " .. kind .. " for this route.",
    type = "rate_limit_error",
    code = "rate_limit_exceeded",
  } })
end

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
  if (status == 401 or status == 403) and hdrs:get(MODEL_RESPONSE_HEADER) ~= nil
      and hdrs:get(GUARDRAIL_RESPONSE_HEADER) == nil then
    return replace_upstream_auth_error(h, hdrs, md, status)
  end
  if info.prompt_version ~= nil then
    hdrs:replace(PROMPT_VERSION_HEADER, string.format("%d", info.prompt_version))
  end

  if route.guard_logs then
    -- action log: the RBAC shadow rules record a match without denying
    local rbac = md:get(RBAC_FILTER)
    if rbac ~= nil and rbac.shadow_engine_result == "denied" then md:set(NS, "guardrail", "logged") end
  elseif route.guard ~= nil and status == 403 and hdrs:get(GUARDRAIL_RESPONSE_HEADER) ~= nil then
    md:set(NS, "guardrail", "blocked")
  end

  local limit_hit = status == 429 and hdrs:get(LIMIT_RESPONSE_HEADER)
  if limit_hit == GLOBAL_REFUSAL then
    -- The rate limit filter's refusal (global limits): which limit it was, and its reply.
    -- (the whole reply first: a body read after the call is the one already gone)
    if h:body() == nil then return end
    local wait
    limit_hit, wait = global_limit_hit(h, route, info)
    local out = h:headers()
    out:replace(LIMIT_RESPONSE_HEADER, limit_hit)
    out:replace(RETRY_AFTER_HEADER, string.format("%d", wait))
    h:body():setBytes(limit_hit == BUDGET_LIMIT and BUDGET_ERROR or limit_error(limit_hit))
    return
  end
  if limit_hit then
    -- Rejected by a limiter before (or at) the token charge: nothing was consumed, so the
    -- carried debt goes back to wait for the next request.
    local internal = md:get(INTERNAL_NS) or {}
    refund_debt(info, route, internal)
    -- Envoy's local_ratelimit says nothing of when (the module's `limits` filter has said it)
    if hdrs:get(RETRY_AFTER_HEADER) == nil then
      hdrs:replace(RETRY_AFTER_HEADER, string.format("%d", local_wait(route, internal)))
    end
    return
  end
  if status < 200 or status >= 300 then return end

  local model = hdrs:get(MODEL_RESPONSE_HEADER)
  local ctype = hdrs:get("content-type") or ""
  local p, c, cached
  -- Output guardrails (outguard.lua), only on routes that have them.
  local og = route.outguard
  if og ~= nil then og = DATA.outguards[og] end
  if find(ctype, "text/event-stream", 1, true) then
    if og == nil then p, c, cached = scan_stream_usage(h) else p, c, cached = outguard.stream(h, og) end
    if p == nil and route.native ~= nil then
      -- a translated stream whose client did not ask for usage: translate.lua kept it
      local attempt = h:streamInfo():dynamicMetadata():get(ATTEMPT_NS)
      if attempt ~= nil then p, c, cached = usage_numbers(attempt.usage) end
    end
  else
    local body = h:body()
    if body == nil then return end
    local raw = body:getBytes(0, body:length())
    if og ~= nil then
      local out = outguard.reply(h, og, raw)
      if out ~= nil then h:body():setBytes(out) end
    end
    p, c, cached = usage_of(raw)
  end
  if p == nil then return end
  md = h:streamInfo():dynamicMetadata()  -- handles taken before body() are invalid after it
  local price = model and DATA.prices[model]
  local cost = price ~= nil and (p * price[1] + c * price[2]) / 1000000 or 0
  if info.cache == "hit" then
    -- Answered by the response cache (cache.lua): no tokens used or charged; its price saved.
    if price ~= nil then
      md:set(NS, CACHE_SAVED_KEY, tonumber(string.format("%.8f", cost)))
      md:set(INTERNAL_NS, CACHE_SAVED_NANO_KEY, math.floor(cost * 1e9 + 0.5))
    end
    return
  end
  md:set(NS, PROMPT_TOKENS_KEY, p)
  md:set(NS, COMPLETION_TOKENS_KEY, c)
  if cached ~= nil and cached > 0 then md:set(NS, "cached_tokens", cached) end
  if price ~= nil then md:set(NS, "cost_usd", tonumber(string.format("%.8f", cost))) end
  -- The spend counter (access_log.py): integer nano-USD, as Envoy's counters are integers.
  md:set(INTERNAL_NS, COST_KEY, math.floor(cost * 1e9 + 0.5))
  if #route.token_limits > 0 then charge_debt(info, route, p + c) end
  -- Global limits: what the rate limit filter charges when the stream is done, beyond the
  -- check made when the request arrived (global_limits.py).
  -- (the descriptor's value last: its presence is what makes Envoy send the charge)
  if route.global_tokens and p + c > 0 then
    md:set(INTERNAL_NS, TOKENS_USED_KEY, p + c)
    md:set(INTERNAL_NS, TOKENS_CHARGED_KEY, info.route)
  end
  if DATA.budgets ~= nil and DATA.budgets[info.consumer] and cost > 0 then
    md:set(INTERNAL_NS, BUDGET_UNITS_KEY, math.ceil(cost / DATA.budget_unit_usd - 1e-9))
    md:set(INTERNAL_NS, BUDGET_CHARGED_KEY, info.consumer)
  end
end
