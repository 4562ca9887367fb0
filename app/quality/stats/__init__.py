"""Quality statistics as pure functions over plain records: agreement, choice models (Bradley-Terry,
Plackett-Luce), consensus, trust weights, gold scoring, bias, the model leaderboard, active-selection
priorities and the assembled report. No database, no web: the import-linter contract "quality statistics
are pure" keeps sqlalchemy, fastapi, app.models, app.db and the rest of app.quality out.
"""
