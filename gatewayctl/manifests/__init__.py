"""Manifests: the user's YAML, read with its positions, validated, and checked as a set.

Owns: finding manifest files under a root (`files`, never following links out of it), reading
YAML with line and column of every value (`yamlsource`), one pydantic model per kind (`kinds`,
`types`), turning each problem into a `Diagnostic` with file, line, column, field path and hint
(`documents`, `schema_errors`), the checks across manifests (`checks`: references, weights,
rollouts, prompts, deny patterns) and the literal-credential check (`credentials`). The result
is a `ManifestSet` and every diagnostic of one pass (`manifest_set.load_manifest_set`).

Must not: compile (weights after rollouts, merged policies: that is `compile/`), know the IR,
Envoy or Kubernetes output, print, or stop at the first problem.
"""
