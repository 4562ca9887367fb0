"""`python -m worker`: the worker loop, same as `prefloop worker`."""

from __future__ import annotations

import typer

from worker.commands.run import cli


def main() -> None:
    typer.run(cli)


if __name__ == "__main__":
    main()
