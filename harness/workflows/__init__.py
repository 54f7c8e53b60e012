"""What a kernel developer runs around the scenarios: a child pytest per kernel (runner.py),
memhp's own worktree of their repository (gittree.py), series verify (series.py) and bisect
(bisection.py)."""
