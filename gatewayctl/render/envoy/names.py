"""Names shared by the Envoy renderer: resource names, internal headers, type URLs.

Resource names are stable across renders (a listener or cluster keeps its name while its
content changes), so Envoy updates them in place. Cluster names never contain a dot: Envoy's
Prometheus tag extraction splits stat names on dots. Model names may contain dots and never
contain '_', so mapping '.' to '_' keeps the names injective.
"""

from __future__ import annotations

LISTENER_NAME = "gateway"
ROUTE_CONFIG_NAME = "gateway"
VIRTUAL_HOST_NAME = "gateway"
STAT_PREFIX = "gateway"

# Headers the downstream Lua filter sets for the filters and route table after it; a client
# can never set them (Lua removes them first) and they never reach a provider.
ROUTE_HEADER = "x-gw-route"
CONSUMER_HEADER = "x-gw-consumer"
TARGET_HEADER = "x-gw-target"
TOKEN_CHARGE_HEADER = "x-gw-token-charge-{index}"
LUA_REPLY_HEADER = "x-gw-reply"  # marks a reply the Lua filter wrote (already JSON)
# Set by the auth filter for the body filter: `c:<consumer>`, `invalid` or `none`.
PRINCIPAL_HEADER = "x-gw-principal"
# Set by the body filter for the upstream filter: the body already names this model.
BODY_MODEL_HEADER = "x-gw-body-model"
# Set by the translating upstream filter on a Bedrock attempt: the provider whose SigV4 signer
# signs it (translate.py); removed after signing. Gateways with a Bedrock provider also remove
# a client's copy first, with the headers below.
SIGN_HEADER = "x-gw-sign"
# On a gateway whose auth filter is the compiled module's (jwt.py): jwt_authn's verdict for
# each provider, handed over in headers (this ABI reads no nested metadata): the verified
# token's payload (base64url) and the message of a failure. Removed like the others.
JWT_PAYLOAD_HEADER = "x-gw-jwt-{provider}"
JWT_FAILED_HEADER = "x-gw-jwt-{provider}-failed"
# Every internal request header: a client's copy is removed before anything reads it.
INTERNAL_HEADERS = (
    ROUTE_HEADER,
    CONSUMER_HEADER,
    TARGET_HEADER,
    LUA_REPLY_HEADER,
    PRINCIPAL_HEADER,
    BODY_MODEL_HEADER,
)

# Response headers the gateway adds.
ROUTE_RESPONSE_HEADER = "x-gateway-route"
MODEL_RESPONSE_HEADER = "x-gateway-model"
PROMPT_VERSION_HEADER = "x-gateway-prompt-version"
LIMIT_RESPONSE_HEADER = "x-gateway-limit"
# On the gateway's own 429s: the seconds until the request would be admitted (RFC 9110).
RETRY_AFTER_HEADER = "retry-after"
GUARDRAIL_RESPONSE_HEADER = "x-gateway-guardrail"
# The response cache (cache.py): `hit`, `miss` or `bypass` on the responses of a cache route;
# on a request, `use` asks a route whose cache is `mode: on-request` to use it.
CACHE_HEADER = "x-gateway-cache"

# Dynamic metadata namespaces.
# gw: what the access log shows of a request (route, consumer, tokens, cost, prompt version;
# set by Lua, logged whole as one object) and, on endpoints, the model's data (EDS).
METADATA_NS = "gw"
# gw.internal: per-request state no log needs: message text and guard set for the
# deny-pattern RBAC, token debt carried into the token limiter.
INTERNAL_NS = "gw.internal"
# gw.internal key the module's `limits` filter sets on a request it refuses (its 429 cannot
# carry Envoy's RL response flag; the access log writes it from this key: access_log.py).
MODULE_LIMITED_KEY = "rate_limited"
# gw.attempt: what the upstream filters keep across a request's attempts (the client's path,
# the attempt's API, a translated stream's usage for the body filter).
ATTEMPT_NS = "gw.attempt"
# gw.cache: what the body filter hands the cache filter (cache.py): the request's cache key,
# its route, whether to look it up; and the cache filter's mark of a hit it served.
CACHE_NS = "gw.cache"
CACHE_KEY = "cache"  # gw: hit | miss | bypass (access log, cache counters)
CACHE_SAVED_KEY = "cost_saved_usd"  # gw: the price of the cached answer a hit served
CACHE_SAVED_NANO_KEY = "cost_saved_nano_usd"  # gw.internal: the same, for the counter

# Metadata keys the Lua filters set and the configuration reads.
ROUTE_KEY = "route"  # gw: the route (access log, cost counter tag, global limit descriptor)
CONSUMER_KEY = "consumer"  # gw: the consumer (the same three)
PROMPT_TOKENS_KEY = "prompt_tokens"  # gw: the per-backend token counters
COMPLETION_TOKENS_KEY = "completion_tokens"
COST_KEY = "cost_nano_usd"  # gw.internal: the spend counter
BUDGET_KEY = "budget"  # gw.internal: an enforced budget's descriptor (global_limits.py)
# gw.internal: what the rate limit filter charges when the stream is done (global_limits.py):
# the amounts, and the descriptor values of the charges, set only when there is something to
# charge (a descriptor whose metadata is absent is left out without a word from Envoy)
TOKENS_USED_KEY = "tokens_used"
BUDGET_UNITS_KEY = "budget_units"
TOKENS_CHARGED_KEY = "tokens_route"
BUDGET_CHARGED_KEY = "budget_consumer"
OUTPUT_GUARDRAIL_KEY = "output_guardrail"  # gw: blocked | logged (access log, counter)
GUARD_SET_KEY = "set"  # gw.internal: the deny-pattern RBAC's guard set and text
GUARD_TEXT_KEY = "text"

# Rate limit descriptor keys (the rate limit service's configuration, the filter's actions and
# the Lua filter's check of which limit refused), the x-gateway-limit values of each kind of
# limit, and the rate limit filter's own value before the Lua filter names the kind.
CONSUMER_DESCRIPTOR = "consumer"
BUDGET_DESCRIPTOR = "budget"
REQUESTS_LIMIT = "requests"
TOKENS_LIMIT = "tokens"
BUDGET_LIMIT = "budget"
GLOBAL_REFUSAL = "global"

# The request headers a client may present its key in (auth.lua reads them in this order, the
# first as `Bearer <key>`; the body filter and the upstream filters remove them before
# anything goes upstream).
CLIENT_KEY_HEADERS = ("authorization", "x-api-key", "api-key")

ENDPOINTS = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "completions",
    "/v1/embeddings": "embeddings",
}
API_PATH_REGEX = "/v1/(chat/completions|completions|embeddings)"

REQUEST_LIMIT_FILTER = "envoy.filters.http.local_ratelimit"
TOKEN_LIMIT_FILTER = "gatewayctl.token_limit"
RBAC_FILTER = "envoy.filters.http.rbac"
LUA_FILTER = "envoy.filters.http.lua"
AUTH_FILTER = "gatewayctl.auth"
# Copies jwt_authn's failure messages into headers for the compiled auth filter (jwt.py).
JWT_VERDICT_FILTER = "gatewayctl.jwt_verdict"
BODY_MODULE_FILTER = "gatewayctl.body"  # the module's body filter, before the Lua one
LIMITS_MODULE_FILTER = "gatewayctl.limits"  # the module's local limits, before Envoy's
# The response cache's Lua filter (cache.py): off in the listener, on for cache routes.
CACHE_FILTER = "gatewayctl.cache"
# The router's upstream filters have names of their own, so that a route can switch them off
# (typed_per_filter_config) without touching the listener's Lua filter.
UPSTREAM_TARGET_FILTER = "gatewayctl.upstream_target"
UPSTREAM_REWRITE_FILTER = "gatewayctl.upstream_rewrite"
# Switched on only by routes with a provider that does not speak OpenAI (translate.py).
UPSTREAM_TRANSLATE_FILTER = "gatewayctl.upstream_translate"
UPSTREAM_SIGN_FILTER = "gatewayctl.upstream_sign"
UPSTREAM_SIGN_CLEANUP_FILTER = "gatewayctl.upstream_sign_cleanup"

TYPE_PREFIX = "type.googleapis.com/"
LISTENER_TYPE = TYPE_PREFIX + "envoy.config.listener.v3.Listener"
CLUSTER_TYPE = TYPE_PREFIX + "envoy.config.cluster.v3.Cluster"
ROUTE_CONFIG_TYPE = TYPE_PREFIX + "envoy.config.route.v3.RouteConfiguration"
# The route table's own file (RDS): a route-only change (weights, a rollout step, backends,
# retries) updates it alone, and the listener, whose filters hold the local rate limiters'
# counts, stays as it is.
RDS_FILE = "rds.json"
HCM_TYPE = (
    TYPE_PREFIX
    + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)
LUA_TYPE = TYPE_PREFIX + "envoy.extensions.filters.http.lua.v3.Lua"
LUA_PER_ROUTE_TYPE = TYPE_PREFIX + "envoy.extensions.filters.http.lua.v3.LuaPerRoute"
AWS_SIGNING_TYPE = (
    TYPE_PREFIX + "envoy.extensions.filters.http.aws_request_signing.v3.AwsRequestSigning"
)
EXTENSION_WITH_MATCHER_TYPE = (
    TYPE_PREFIX + "envoy.extensions.common.matching.v3.ExtensionWithMatcher"
)
EXTENSION_WITH_MATCHER_PER_ROUTE_TYPE = (
    TYPE_PREFIX + "envoy.extensions.common.matching.v3.ExtensionWithMatcherPerRoute"
)
COMPOSITE_FILTER_TYPE = TYPE_PREFIX + "envoy.extensions.filters.http.composite.v3.Composite"
EXECUTE_FILTER_ACTION_TYPE = (
    TYPE_PREFIX + "envoy.extensions.filters.http.composite.v3.ExecuteFilterAction"
)
RBAC_TYPE = TYPE_PREFIX + "envoy.extensions.filters.http.rbac.v3.RBAC"
RBAC_PER_ROUTE_TYPE = TYPE_PREFIX + "envoy.extensions.filters.http.rbac.v3.RBACPerRoute"
LOCAL_RATELIMIT_TYPE = (
    TYPE_PREFIX + "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
)
ROUTER_TYPE = TYPE_PREFIX + "envoy.extensions.filters.http.router.v3.Router"
ROUTE_LIST_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteList"
HEADER_INPUT_TYPE = "type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput"
FILTER_CONFIG_TYPE = "type.googleapis.com/envoy.config.route.v3.FilterConfig"
EARLY_HEADER_MUTATION_TYPE = (
    TYPE_PREFIX + "envoy.extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation"
)
HEADER_MUTATION_TYPE = (
    TYPE_PREFIX + "envoy.extensions.filters.http.header_mutation.v3.HeaderMutation"
)
HEADER_MUTATION_PER_ROUTE_TYPE = (
    TYPE_PREFIX + "envoy.extensions.filters.http.header_mutation.v3.HeaderMutationPerRoute"
)
UPSTREAM_CODEC_TYPE = TYPE_PREFIX + "envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec"
COMPOSITE_CLUSTER_TYPE = TYPE_PREFIX + "envoy.extensions.clusters.composite.v3.ClusterConfig"
TLS_UPSTREAM_TYPE = TYPE_PREFIX + "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
FILE_LOG_TYPE = TYPE_PREFIX + "envoy.extensions.access_loggers.file.v3.FileAccessLog"
STDOUT_LOG_TYPE = TYPE_PREFIX + "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"
STATS_LOG_TYPE = TYPE_PREFIX + "envoy.extensions.access_loggers.stats.v3.Config"


# Every name above that the Lua filters use, as the generated `local NAMES = {...}` line each
# filter starts with (lua.py): the shipped Lua spells none of them itself.
# The API's enumeration words: as the value of `role` or `type` they are no text for the deny
# patterns (the provider checks them); any other value there is (a custom role a provider
# renders, a schema property named `type`). One list for text.lua (NAMES.enum_words), the
# explain mirror (explain/text.py) and module/gw_text.c (tests/render/test_attacks.py checks
# the C copy against this one).
ENUM_WORDS = (
    "system", "user", "assistant", "tool", "developer", "function", "text", "image_url",
    "input_audio", "file", "refusal", "custom", "input_text", "output_text", "input_image",
    "input_file", "audio_url", "video_url", "json_object", "json_schema", "content",
    "allowed_tools", "string", "number", "integer", "boolean", "object", "array", "null")

LUA_NAMES: dict[str, str | tuple[str, ...]] = {
    "enum_words": ENUM_WORDS,
    "metadata_ns": METADATA_NS,
    "internal_ns": INTERNAL_NS,
    "attempt_ns": ATTEMPT_NS,
    "route_header": ROUTE_HEADER,
    "consumer_header": CONSUMER_HEADER,
    "target_header": TARGET_HEADER,
    "reply_header": LUA_REPLY_HEADER,
    "principal_header": PRINCIPAL_HEADER,
    "body_model_header": BODY_MODEL_HEADER,
    "sign_header": SIGN_HEADER,
    "client_key_headers": CLIENT_KEY_HEADERS,
    "model_response_header": MODEL_RESPONSE_HEADER,
    "prompt_version_header": PROMPT_VERSION_HEADER,
    "limit_response_header": LIMIT_RESPONSE_HEADER,
    "retry_after_header": RETRY_AFTER_HEADER,
    "guardrail_response_header": GUARDRAIL_RESPONSE_HEADER,
    "cache_header": CACHE_HEADER,
    "cache_ns": CACHE_NS,
    "cache_key": CACHE_KEY,
    "cache_saved_key": CACHE_SAVED_KEY,
    "cache_saved_nano_key": CACHE_SAVED_NANO_KEY,
    "rbac_filter": RBAC_FILTER,
    "route_key": ROUTE_KEY,
    "consumer_key": CONSUMER_KEY,
    "prompt_tokens_key": PROMPT_TOKENS_KEY,
    "completion_tokens_key": COMPLETION_TOKENS_KEY,
    "cost_key": COST_KEY,
    "budget_key": BUDGET_KEY,
    "tokens_used_key": TOKENS_USED_KEY,
    "budget_units_key": BUDGET_UNITS_KEY,
    "tokens_charged_key": TOKENS_CHARGED_KEY,
    "budget_charged_key": BUDGET_CHARGED_KEY,
    "guard_set_key": GUARD_SET_KEY,
    "output_guardrail_key": OUTPUT_GUARDRAIL_KEY,
    "guard_text_key": GUARD_TEXT_KEY,
    "consumer_descriptor": CONSUMER_DESCRIPTOR,
    "budget_descriptor": BUDGET_DESCRIPTOR,
    "requests_limit": REQUESTS_LIMIT,
    "tokens_limit": TOKENS_LIMIT,
    "budget_limit": BUDGET_LIMIT,
    "global_refusal": GLOBAL_REFUSAL,
}


def _model_part(model: str) -> str:
    return model.replace(".", "_")


def model_cluster_name(model: str) -> str:
    """The member cluster of one Model: its provider's endpoint, stats per model."""
    return "m_" + _model_part(model)


def backend_cluster_name(route: str, model: str) -> str:
    """The composite parent of one (route, backend): the backend, its retries, the fallbacks."""
    return f"r_{route}_{_model_part(model)}"
