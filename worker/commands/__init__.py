"""Typer sub-commands contributed by the worker package (torch-side commands of the `prefloop` CLI)."""
