"""Render: the IR as configuration. `envoy/` turns it into Envoy's listeners, clusters, Lua
filters and bootstrap; `k8s/` into Kubernetes objects (and Helm values); `bundle` into the
files of `render --out`, which `output_folder` writes under its safety rules.

Owns: every byte of the configuration gatewayctl produces, deterministically (sorted, no
timestamps), with structured config built as data and serialised; Lua is the only generated
text, fed manifest data only through `envoy.lua.to_lua`.

Must not: read manifests or YAML sources (its input is a `GatewayIR`), talk to a cluster or a
running Envoy, mutate the IR, or print; file I/O only in `output_folder` and `k8s.writer`.
"""
