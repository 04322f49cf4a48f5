-- The gateway's first filter: authentication from the request headers alone, before any body
-- is read. Prepended at render time by `local NAMES = ...` (header names, from names.py),
-- `local DATA = ...` (consumer key files, the body cap of
-- each consumer and of anonymous clients, the body class route key of each cap), `secrets`
-- (secrets.lua: the consumer keys, cached per worker) and, on a
-- gateway with JWT policies, `jwt_principal` (jwt.lua: the consumer a verified token names);
-- this file holds no manifest data itself.
--
-- Every client copy of the internal headers is gone already (the connection manager's early
-- header mutation removes them before any route match or filter). For a POST to an OpenAI
-- endpoint: find the consumer from the presented key (`Authorization: Bearer`, `x-api-key`, `api-key`), and
-- answer at once, without reading the body, when no route could accept the request:
-- 401 (no or an unknown key, and no route is open to anonymous clients), 403 (a consumer that
-- no route allows), 413 (a Content-Length over the largest body any route open to this client
-- accepts), 415 (a Content-Encoding other than identity: the guardrails read the body as sent,
-- and a provider would decode it first). Otherwise the principal goes into x-gw-principal (`c:<consumer>`, `invalid` or
-- `none`; `<provider>:<consumer>` or `token:<why>` for a JWT) for the body filter, and x-gw-route names the body class of that cap: the route
-- table's entry for it configures the buffer filter that comes next to buffer at most that
-- many bytes (413 beyond). The body filter then picks the real route from `model`.

local CLIENT_KEY_HEADERS = NAMES.client_key_headers
local PRINCIPAL_HEADER, ROUTE_HEADER = NAMES.principal_header, NAMES.route_header
local NS, REPLY_HEADER = NAMES.metadata_ns, NAMES.reply_header
local find, sub, byte, match = string.find, string.sub, string.byte, string.match

local function trim(s)
  local first = find(s, "%S")
  if first == nil then return "" end
  local last = #s
  while true do
    local c = byte(s, last)
    if c ~= 32 and (c < 9 or c > 13) then break end
    last = last - 1
  end
  if first == 1 and last == #s then return s end
  return sub(s, first, last)
end

local function presented_key(hdrs)
  local auth = hdrs:get(CLIENT_KEY_HEADERS[1])  -- authorization
  if auth ~= nil then
    -- "Bearer" (any case), whitespace, the key
    local scheme = sub(auth, 1, 6)
    if (scheme == "Bearer" or string.lower(scheme) == "bearer") and find(auth, "^%s", 7) then
      local bearer = trim(sub(auth, 8))
      if bearer ~= "" then return bearer end
    end
  end
  for i = 2, #CLIENT_KEY_HEADERS do
    local v = hdrs:get(CLIENT_KEY_HEADERS[i])
    if v ~= nil then
      v = trim(v)
      if v ~= "" then return v end
    end
  end
  return nil
end

local function reply(h, status, message, err_type, code)
  h:streamInfo():dynamicMetadata():set(NS, "local_reply", true)
  h:headers():replace(REPLY_HEADER, "lua")  -- local_reply mappers leave this reply alone
  local body = '{"error":{"code":"' .. code .. '","message":"' .. message .. '","type":"' .. err_type .. '"}}'
  h:respond({ [":status"] = tostring(status), ["content-type"] = "application/json" }, body)
end

function envoy_on_request(h)
  local hdrs = h:headers()
  if hdrs:get(":method") ~= "POST" then return end
  if DATA.endpoints[match(hdrs:get(":path") or "", "^[^?]*")] == nil then return end

  local key = presented_key(hdrs)
  local consumer = key ~= nil and secrets.keys(DATA.consumers)[key] or nil
  local principal, cap
  if consumer ~= nil then
    principal, cap = "c:" .. consumer, DATA.consumer_caps[consumer]
  elseif DATA.jwt ~= nil then
    -- jwt_authn ran first; a verified token was removed from the request
    local via, failure
    consumer, via = jwt_principal(h, DATA.jwt, DATA.jwt_consumers)
    if consumer ~= nil then
      principal, cap = via .. ":" .. consumer, DATA.jwt_caps[via][consumer]
    elseif via ~= nil then
      failure = via
      principal, cap = "token:" .. failure, DATA.anonymous_cap
      if cap == nil then
        if failure == "unknown" then
          return reply(h, 403, "The bearer token names no consumer of this gateway.",
            "permission_error", "consumer_not_allowed")
        elseif failure == "expired" then
          return reply(h, 401, "The bearer token has expired.", "authentication_error", "token_expired")
        end
        return reply(h, 401, "The bearer token is not valid for this gateway (signature, issuer or audience).",
          "authentication_error", "invalid_token")
      end
    end
  end
  if principal == nil then
    principal = key == nil and "none" or "invalid"
    cap = DATA.anonymous_cap
  end
  if cap == nil then
    if consumer ~= nil then
      return reply(h, 403, "This consumer may not use any model of this gateway.",
        "permission_error", "consumer_not_allowed")
    elseif key == nil then
      return reply(h, 401, "Missing API key or bearer token: send `Authorization: Bearer <key>`.",
        "authentication_error", "missing_api_key")
    end
    return reply(h, 401, "Invalid API key.", "authentication_error", "invalid_api_key")
  end
  local length = tonumber(hdrs:get("content-length") or "")
  if length ~= nil and length > cap then
    return reply(h, 413, "The request body is larger than " .. cap .. " bytes.",
      "invalid_request_error", "request_too_large")
  end
  -- the guardrails read the body as sent: one the provider would decode first is refused
  local coding = hdrs:get("content-encoding")
  if coding ~= nil then
    coding = string.lower(trim(coding))
    if coding ~= "" and coding ~= "identity" then
      return reply(h, 415, "The request body must be sent without Content-Encoding: the gateway reads it as it is.",
        "invalid_request_error", "unsupported_content_encoding")
    end
  end
  hdrs:replace(PRINCIPAL_HEADER, principal)
  if cap ~= DATA.first_cap then
    -- the route matched first (an endpoint POST) already has the default bound
    hdrs:replace(ROUTE_HEADER, DATA.body_classes[tostring(cap)])
    h:clearRouteCache()
  end
end
