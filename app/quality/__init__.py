"""Quality control of rankings: agreement, consensus, trust, gold items, bias, leaderboard and
active selection, as pure functions over plain records (no database, no web, no torch).

`compute_quality` assembles everything into the report the API returns; see docs/quality.md.
"""

# Submodules are imported where used: the CLI must not pay for scipy at start-up.
