"""Registers the worker's commands on the `prefloop` CLI.

The web package never imports the worker (it must install and run without torch), so the CLI
discovers this module through the `prefloop.cli` entry point instead of importing it.
"""

from __future__ import annotations

import importlib

import typer

# (module under worker.commands, attribute holding a Typer app or a command function, CLI name)
_SUBCOMMANDS: tuple[tuple[str, str], ...] = (
    ("rm", "rm"),
    ("models", "models"),
    ("policy", "policy"),
    ("run", "worker"),
)


_OPTIONAL_DEPENDENCIES = frozenset({"torch", "transformers", "safetensors", "tokenizers"})


def register(app: typer.Typer) -> None:
    """Attach every worker command group whose module is present."""
    for module_name, cli_name in _SUBCOMMANDS:
        try:
            module = importlib.import_module(f"worker.commands.{module_name}")
        except ModuleNotFoundError as exc:
            # Without the [worker] extra the torch commands are simply absent; any other missing module is a bug.
            if exc.name in _OPTIONAL_DEPENDENCIES or exc.name == f"worker.commands.{module_name}":
                continue
            raise
        sub = module.cli
        if isinstance(sub, typer.Typer):
            app.add_typer(sub, name=cli_name)
        else:
            app.command(name=cli_name)(sub)
