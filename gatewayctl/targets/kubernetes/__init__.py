"""The Kubernetes target: a cluster reached through the kubeconfig.

`target.py` is the adapter (read, lock, apply, where, close); `api.py` the cluster operations;
`transport.py` the HTTP, and the only importer of the `kubernetes` client; `errors.py` the
typed errors every HTTP failure becomes; `kinds.py` and `lease.py` pure helpers. Importing this
package imports none of them.
"""
