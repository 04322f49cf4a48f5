"""The local stand-in for Envoy's rate limit service (envoyproxy/ratelimit), for `gatewayctl up`
and the tests: the same gRPC API (envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit),
the same configuration format, fixed windows counted in Redis with the same keys. Kubernetes
runs the official service; this one is to the rate limit service what the mock provider is to
a provider (docs/local-gateway.md).

wire.py encodes the few protobuf messages by hand (no generated code); config.py reads and
matches the configuration; counts.py speaks Redis's protocol itself (no client library);
http2.py serves unary gRPC over cleartext HTTP/2 on asyncio (header blocks decoded by the
`hpack` package); server.py puts them together.
"""
