-- Token debt of the local token limits (for gateway.lua; docs/data-plane.md, token limits).
-- Bound at render time as `local tokens = (function() ... end)()`; returns { carry, charge,
-- refund, wait }.
--
-- The token limiter charges each request the count in its token-charge header when it
-- arrives. What a finished response used beyond the 1 it was charged is owed, per worker, by
-- "<limit key>|<route>|<consumer>"; the next request of that key carries it (at most the
-- limit's max - 1, so that one request still fits the bucket). A request a limiter rejects
-- consumed nothing: its carried debt is owed again.
local M = {}
local INTERNAL_NS = NAMES.internal_ns
local max, min, ceil = math.max, math.min, math.ceil

-- Per worker: tokens used by finished responses and not yet charged to the shared bucket.
local token_debt = {}

-- The metadata key of each token limit's carried debt, made once rather than per request.
for _, policy in pairs(DATA.policies) do
  for i, limit in ipairs(policy.token_limits) do limit.carried_key = "token_carried_" .. i end
end

local function debt_key(limit, route_name, consumer)
  if limit.by == "consumer" then return limit.key .. "|" .. route_name .. "|" .. consumer end
  return limit.key .. "|" .. route_name .. "|"
end

-- On the request: each limit's debt goes into its charge header (and gw.internal, for a refund).
function M.carry(md, hdrs, route, route_name, consumer)
  for _, limit in ipairs(route.token_limits) do
    local dk = debt_key(limit, route_name, consumer)
    local pending = token_debt[dk] or 0
    local carried = min(pending, limit.max - 1)
    token_debt[dk] = nil
    md:set(INTERNAL_NS, limit.carried_key, carried)
    hdrs:replace(limit.header, tostring(1 + carried))
  end
end

-- On a response that used `used` tokens.
function M.charge(info, route, used)
  for _, limit in ipairs(route.token_limits) do
    local dk = debt_key(limit, info.route, info.consumer)
    token_debt[dk] = (token_debt[dk] or 0) + max(used - 1, 0)
  end
end

-- On a limiter's 429: the debt the request carried (gw.internal) is owed again.
function M.refund(info, route, internal)
  for _, limit in ipairs(route.token_limits) do
    local carried = internal[limit.carried_key] or 0
    if carried > 0 then
      local dk = debt_key(limit, info.route, info.consumer)
      token_debt[dk] = (token_debt[dk] or 0) + carried
    end
  end
end

-- On a local limiter's 429 (Envoy's local_ratelimit, which tells nothing of its buckets): the
-- Retry-After seconds, an upper bound. After that long every bucket of the route's local
-- limits holds what the request is charged from it even if it was empty: 1 token of a request
-- limit, 1 + the carried debt of a token limit, each refilled at max per period. Whole
-- seconds, rounded up, at least 1.
function M.wait(route, internal)
  local wait = 1
  for _, limit in ipairs(route.request_limits or {}) do
    wait = max(wait, ceil(limit.period / limit.max))
  end
  for _, limit in ipairs(route.token_limits) do
    local charge = 1 + (internal[limit.carried_key] or 0)
    wait = max(wait, ceil(charge * limit.period / limit.max))
  end
  return wait
end

return M
