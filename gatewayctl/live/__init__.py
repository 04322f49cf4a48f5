"""Live cluster state: the only place gatewayctl talks to Kubernetes.

`kube` imports the `kubernetes` client and is imported lazily by callers; `errors`,
`objects` and `lease` are pure and cheap to import.
"""
