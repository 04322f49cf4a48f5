"""The response cache's shared store for `limits.scope: global`: a small HTTP/1.1 service
(http1.py, server.py) that Envoy's cache filter calls, keeping one gateway's entries in Redis
(store.py) over Redis's own protocol (local/resp.py, shared with the rate limit stand-in).
Kubernetes runs it from gatewayctl's own image (render/k8s/cachestore.py); `gatewayctl up`
runs it as a child process beside redis-server (local/limits.py).
"""
