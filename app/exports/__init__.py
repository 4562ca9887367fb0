"""Exporting comparisons, rankings, reward-model and prompt datasets as JSONL, CSV, Parquet or a datasets bundle."""
