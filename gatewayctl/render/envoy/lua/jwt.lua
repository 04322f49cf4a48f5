-- JWT principals for the auth filter (auth.lua): what Envoy's jwt_authn, which runs before it
-- with `allow_missing_or_failed`, found in the request's bearer token. Bound at render time,
-- after the data table, as `local jwt_principal = (function() ... end)()`.
--
-- Returns the consumer named by the first provider (in DATA.jwt.providers order) whose
-- verification succeeded, and that provider's name; or nil and why no consumer:
-- "expired" / "invalid" (a token that failed verification), "unknown" (a verified token
-- whose consumer claim is missing, not a string or names no consumer), or nil (no token, or
-- a bearer value that is not a JWT at all: an API key).
local find = string.find
-- jwt_authn's messages for a bearer value that is not a token (left to the API-key path).
local NOT_A_TOKEN = { "not in the form", "Jwt is missing", "Jwt header is an invalid" }

local function not_a_token(message)
  for _, text in ipairs(NOT_A_TOKEN) do
    if find(message, text, 1, true) then return true end
  end
  return false
end

return function(h, cfg, consumers)
  local md = h:streamInfo():dynamicMetadata():get(cfg.namespace)
  if md == nil then return nil, nil end
  local failure = nil
  for _, p in ipairs(cfg.providers) do
    local payload = md[p.name]
    if payload ~= nil then
      local value = payload[p.claim]
      if type(value) == "string" and consumers[value] then return value, p.name end
      return nil, "unknown"
    end
    local failed = md[p.failed]
    if failed ~= nil then
      local message = tostring(failed.message or "")
      -- The provider whose issuer the token names says why; the others only that it is
      -- not theirs.
      if find(message, "expired", 1, true) then
        failure = "expired"
      elseif not not_a_token(message) and not find(message, "issuer is not configured", 1, true) then
        failure = failure or "invalid"
      elseif failure == nil and find(message, "issuer is not configured", 1, true) then
        failure = "other-issuer"
      end
    end
  end
  if failure == "other-issuer" then failure = "invalid" end
  return nil, failure
end
