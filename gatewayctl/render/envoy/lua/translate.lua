-- The per-attempt translation filter (router-level upstream filter `gatewayctl.upstream_translate`),
-- switched on only for routes with a provider that does not speak OpenAI (anthropic, bedrock,
-- gemini); there it replaces upstream.lua. Prepended at render time by the names (NAMES,
-- from names.py), the JSON library, the data table, secrets, target, chat (openai_chat.lua),
-- reply (openai_reply.lua), sse,
-- eventstream and the provider modules; this file holds no manifest data itself.
--
-- Request: each attempt starts from the OpenAI body the downstream filter wrote (the client's
-- request, checked by the guardrails and already checked to translate for every provider of
-- the route). An attempt on an OpenAI provider is sent as upstream.lua sends it; on another
-- API the body is read (chat.read), written in the provider's API with this attempt's upstream
-- model (and the Model's maxOutputTokens as the default max_tokens), and sent to the API's
-- path under the provider's base path. A Bedrock attempt is marked with x-gw-sign for the
-- SigV4 signer that follows (which signs it with that provider's region and credentials).
--
-- Response: for the attempt's API (dynamic metadata gw.attempt, set on the request), the reply
-- becomes OpenAI's: a JSON body, an error (status mapped where the API's own has no OpenAI
-- meaning, so retries and fallback see the right class), or a stream (SSE or AWS event-stream)
-- rewritten chunk by chunk into chat.completion.chunk events and [DONE]. Everything after this
-- filter (the router's retries, the body filter's usage and cost, the access log) sees only
-- OpenAI's shape. A stream's usage, which OpenAI sends only when the client asked for it, is
-- also left in gw.attempt.usage for the body filter.

local APIS = { anthropic = anthropic, bedrock = bedrock, gemini = gemini }
local ATTEMPT_NS = NAMES.attempt_ns
local SIGN_HEADER = NAMES.sign_header
local find = string.find
-- What an earlier attempt of the request may have left in the header map Envoy re-sends (the
-- other APIs' credential and version headers, the SigV4 signer's, a session token among them),
-- removed before each attempt so no provider gets another's.
local LEFT_BY_OTHER_APIS = { "x-goog-api-key", "anthropic-version", "x-amz-date",
  "x-amz-content-sha256", "x-amz-security-token", SIGN_HEADER }

local function refuse(h, err)
  local status = type(err) == "table" and err.status or 500
  local message = type(err) == "table" and err.message or tostring(err)
  h:respond({ [":status"] = tostring(status), ["content-type"] = "application/json" },
    json.encode(reply.error_body(status, message, type(err) == "table" and err.code or nil)))
end

function envoy_on_request(h)
  local hdrs = h:headers()
  for i = 1, #LEFT_BY_OTHER_APIS do hdrs:remove(LEFT_BY_OTHER_APIS[i]) end
  local model, provider, upstream_model, body_model = target.take(h, hdrs)
  if model == nil then return end
  local client_path = target.client_path(h, hdrs)
  local md = h:streamInfo():dynamicMetadata()
  local earlier = md:get(ATTEMPT_NS).attempt
  local api = APIS[provider.api]
  if api == nil then
    md:set(ATTEMPT_NS, "attempt", { api = "openai" })
    hdrs:replace(":path", client_path)
    -- after another API's attempt the content-length is that body's: write the body again
    if earlier ~= nil then body_model = nil end
    return target.send_openai(h, hdrs, provider, model, upstream_model, body_model)
  end
  local body = h:body()
  hdrs = h:headers()  -- handles taken before body() are invalid after it
  if body == nil or body:length() == 0 then return refuse(h, { status = 400, message = "The request has no body." }) end
  local c, native, path
  local ok, err = pcall(function()
    c = chat.read(json.decode(body:getBytes(0, body:length())))
    native, path = api.request(c, upstream_model, DATA.max_tokens[model])
  end)
  if not ok then return refuse(h, err) end
  body:setBytes(json.encode(native))
  hdrs:replace(":path", provider.base_path .. path)
  hdrs:replace("content-type", "application/json")
  api.headers(hdrs, c)
  if provider.sign then hdrs:replace(SIGN_HEADER, provider.name) end
  h:streamInfo():dynamicMetadata():set(ATTEMPT_NS, "attempt",
    { api = provider.api, stream = c.stream, usage = c.include_usage == true, model = upstream_model })
end

-- Response -----------------------------------------------------------------------------------

local function translate_stream(h, api, attempt, request_id)
  local hdrs = h:headers()
  hdrs:replace("content-type", "text/event-stream")
  hdrs:remove("content-length")
  local w = reply.writer(attempt.usage)
  local st = api.stream_state(request_id, attempt.model)
  local last, last_out, broken = nil, "", false
  for chunk in h:bodyChunks() do
    local out = ""
    if not broken then
      local ok, err = pcall(api.stream, st, w, chunk:getBytes(0, chunk:length()))
      if not ok then
        broken = true
        w:error(502, "The provider's stream could not be read: " .. tostring(err), "bad_upstream_stream")
      end
      out = w:take()
    end
    chunk:setBytes(out)
    last, last_out = chunk, out
  end
  if not w.done then
    if api.ends_with_body then
      w:close()
    else
      w:error(502, "The provider's stream ended before its last event.", "bad_upstream_stream")
    end
  end
  local tail = w:take()
  if last ~= nil and tail ~= "" then last:setBytes(last_out .. tail) end
  if w.usage ~= nil then h:streamInfo():dynamicMetadata():set(ATTEMPT_NS, "usage", w.usage) end
end

function envoy_on_response(h)
  local md = h:streamInfo():dynamicMetadata()
  local ns = md:get(ATTEMPT_NS)
  local attempt = ns and ns.attempt
  if attempt == nil or attempt.api == "openai" then return end
  local api = APIS[attempt.api]
  local hdrs = h:headers()
  local status = tonumber(hdrs:get(":status")) or 0
  local request_id = hdrs:get("x-amzn-requestid")
  local error_type = hdrs:get("x-amzn-errortype")
  local ctype = hdrs:get("content-type") or ""
  if status >= 200 and status < 300 and attempt.stream and find(ctype, api.stream_type, 1, true) then
    return translate_stream(h, api, attempt, request_id)
  end
  local body = h:body(true)
  hdrs = h:headers()
  local raw = body:getBytes(0, body:length())
  local ok, decoded = pcall(json.decode, raw)
  if not ok then decoded = nil end
  local out
  if status >= 200 and status < 300 and json.is_object(decoded) then
    out = api.response(decoded, request_id, attempt.model)
  else
    if status >= 200 and status < 300 then
      status = 502  -- a success that is not the API's JSON cannot be translated
      decoded = { error = { message = "The provider's reply could not be read." } }
    end
    local mapped
    mapped, out = api.error(status, decoded, error_type)
    hdrs:replace(":status", tostring(mapped))
  end
  hdrs:replace("content-type", "application/json")
  body:setBytes(json.encode(out))
end
