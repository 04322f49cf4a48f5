"""Plans: what applying the manifests would change, as a value, and its text, Markdown and JSON.

Owns: the plan model (`model`: a flat list of changes with action, before and after, and the
versioned JSON form), computing it from a desired and an observed state (`compute`: manifest
level in the users' terms from two IRs, `manifest_diff` and its helpers; resource level from
two lists of Kubernetes objects, `resource_diff`, the only user of deepdiff), cost estimates
(`cost`) and formatting (`format`, `text_diff`).

Must not: read any live state or know where it came from (no target, no Kubernetes or GitLab
client, no local gateway: `targets/` and `orchestrate.py` hand it plain values), write files,
or mutate its inputs. `lint-imports` holds it to this.
"""
