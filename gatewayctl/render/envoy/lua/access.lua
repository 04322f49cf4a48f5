-- Per-route access for the body filter (gateway.lua), from the principal the auth filter
-- found (x-gw-principal): `c:<consumer>` (an API key), `<provider>:<consumer>` (a JWT that
-- jwt_authn verified), `token:expired`, `token:invalid`, `token:unknown` (a verified token
-- naming no consumer), `invalid` (an unknown key) or `none`. Bound at render time as
-- `local decide_access = (function() ... end)()`.
--
-- A route that needs authentication (api_keys, or JWT issuers) accepts API keys when it has
-- api_keys or takes no JWTs (keys_ok), and tokens of its own providers (jwt). A credential
-- the route does not accept makes the client anonymous on a route that needs none, and gets
-- 401 on one that does. Returns the consumer (or "anonymous"); or nil and the error reply's
-- status, message, type and code.
local match = string.match

local function unauthenticated(route, principal)
  if principal == "token:expired" then
    return nil, 401, "The bearer token has expired.", "authentication_error", "token_expired"
  elseif principal == "token:invalid" then
    return nil, 401, "The bearer token is not valid for this gateway (signature, issuer or audience).",
      "authentication_error", "invalid_token"
  elseif principal == "token:unknown" then
    return nil, 403, "The bearer token names no consumer of this gateway.",
      "permission_error", "consumer_not_allowed"
  elseif principal == "invalid" then
    return nil, 401, "Invalid API key.", "authentication_error", "invalid_api_key"
  end
  if route.jwt ~= nil and not route.keys_ok then
    return nil, 401, "Missing bearer token: send `Authorization: Bearer <token>`.",
      "authentication_error", "missing_api_key"
  end
  return nil, 401, "Missing API key: send `Authorization: Bearer <key>` or `x-api-key`.",
    "authentication_error", "missing_api_key"
end

return function(route, principal, model)
  local via, name = match(principal, "^([^:]+):(.*)$")
  local consumer = nil
  if via == "c" then
    if route.keys_ok then consumer = name end
  elseif via ~= nil and via ~= "token" then
    if route.jwt ~= nil and route.jwt[via] then consumer = name end
  end
  if consumer == nil and route.needs_auth then
    if via == "c" then
      return nil, 401, "This model does not accept API keys: send a bearer token from its issuer.",
        "authentication_error", "invalid_api_key"
    elseif via ~= nil and via ~= "token" then
      return nil, 401, "This model does not accept tokens from this issuer.",
        "authentication_error", "invalid_token"
    end
    return unauthenticated(route, principal)
  end
  if route.allow ~= nil and (consumer == nil or not route.allow[consumer]) then
    return nil, 403, "This consumer may not use the model `" .. model .. "`.",
      "permission_error", "consumer_not_allowed"
  end
  return consumer or "anonymous"
end
