"""memhp's pytest plugin (entry point ``harness.plugin.hooks``): options, validation before
any boot, the ``vm`` fixture, guest reuse, the dmesg watch, kernel vs infrastructure.

    hooks.py      options, markers, the vm fixture, the verdict hooks, the summary table
    pool.py       booted guests shared between compatible scenarios
    recording.py  result records and page-flag pictures for --memhp-results
    stash.py      what the hooks keep on config and items
"""
