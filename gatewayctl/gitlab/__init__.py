"""GitLab: the plan note on merge requests and merge requests for rollout changes.

The only package that imports python-gitlab, and only inside functions (`client.py`), so that
importing gatewayctl stays fast. Modules: `ci_env` (CI variables), `client` (connection,
retries, error conversion), `notes` (the plan note), `merge_requests` (branch, commit, MR),
`comment` (the CLI's entry point), `errors` (the typed errors).
"""
