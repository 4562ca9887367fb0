"""Importing prompts, completions and preference pairs from JSONL, JSON and CSV files."""
