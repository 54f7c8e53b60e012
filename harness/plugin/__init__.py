"""memhp's pytest plugin (entry point ``harness.plugin.hooks``, which gathers the hooks of
options.py, fixtures.py, verdicts.py and summary.py); harness/__init__.py maps it."""
