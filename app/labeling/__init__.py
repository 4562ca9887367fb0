"""Ranking workflow: slots, leased assignments, the ranking page, idempotent submissions and its JSON API."""
