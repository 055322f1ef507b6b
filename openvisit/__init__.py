"""openvisit: open-source video visitation for correctional facilities.

This package holds what every process shares: typed settings, the clock and the CLI.
"""
