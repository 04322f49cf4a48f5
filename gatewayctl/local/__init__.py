"""The embedded default: a local Envoy gateway serving a manifest root (`gatewayctl up`).

gateway    up / down / status (the entry points; re-exports apply_local, read_local)
reload     apply_local (validate, ordered swaps, record) and read_local (served + drift)
rendering  the mock rule, rendering with local ports, `envoy --mode validate`, example curl
publish    the `..data` swap and the LDS/CDS order that never routes to a missing cluster
admin      Envoy's admin API: stats, config_dump summaries, drift comparison
process    child processes, ports, readiness, log tails
state      the state directory: pids, ports, IR, secrets, logs, lock
mock_provider, mock/   the built-in OpenAI-compatible upstream
"""
