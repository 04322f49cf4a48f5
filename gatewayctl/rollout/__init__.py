"""Canary rollouts: step logic, in-place manifest edits, Prometheus analysis, delivery.

Modules, from the bottom up:
  steps.py       pure: what promote/abort/pause/resume do; when a step's pause has elapsed
  edit.py        in-place text edits of a Rollout manifest (the only ruamel.yaml user)
  analysis.py    pure: a window's figures per backend -> pass / fail / inconclusive per metric
  prometheus.py  the only Prometheus client (urllib, the HTTP query API)
  measure.py     the gateway's metric names; raw samples -> per-backend window figures
  source.py      the Rollout in Git: load it, its step start, checked writes, the last analysis
  advance.py     analyze a rollout; the rule that picks promote, abort or wait
  deliver.py     commit, merge request (gatewayctl.gitlab), break-glass apply (gatewayctl.plan)
  report.py      text / Markdown / JSON output
  run.py         the command bodies behind `gatewayctl rollout ...` (commands/rollout.py)

See docs/rollouts.md.
"""
