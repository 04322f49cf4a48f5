-- The upstream Lua filter, shared by every route (the router's upstream_http_filters); it runs
-- once per attempt. Prepended at render time by `local NAMES = ...` (header names, from
-- names.py), `jsonstring` (jsonstring.lua), `local DATA = ...` (per provider base path and credential,
-- secret TTL), `secrets` (secrets.lua) and `target` (target.lua); this file holds no
-- manifest data itself.
-- From the attempt's target (target.lua) it sets the authority, the provider's base path and
-- credential and rewrites `model` to the upstream model name. Routes with a provider that does
-- not speak OpenAI switch this filter off and run translate.lua instead.

function envoy_on_request(h)
  local hdrs = h:headers()
  local model, provider, upstream_model, body_model = target.take(h, hdrs)
  if model == nil then return end
  target.send_openai(h, hdrs, provider, model, upstream_model, body_model)
end
