"""Quality control of rankings. Two halves:

- `app.quality.stats`: the statistics (agreement, consensus, trust, gold scoring, bias, leaderboard,
  active-selection priorities) as pure functions over plain records, no database, no web, no torch;
  `stats.report.compute_quality` assembles them into the report the API returns;
- the feature around them: `queries` (every statement), `service` (the cached report and its views),
  `weights`, `scoring`, `gold_admin`, `picker`, `ai_annotator`, `plots`, and the entry points `routes` and
  `commands`. See docs/quality.md.
"""

# Submodules are imported where used: the CLI must not pay for scipy at start-up.
