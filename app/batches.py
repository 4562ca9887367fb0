"""Bounded `IN (...)` lists: a statement over an unbounded list of ids is run once per batch of ids.

Postgres (psycopg) refuses a statement with more than 65,535 bind parameters and SQLite builds allow as few
as 32,766; one id is one parameter, so a project of 120,000 prompts needs its lists cut. 10,000 ids a batch
stays far below both limits, leaves room for the statement's other parameters, and keeps round trips few.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

BIND_BATCH = 10_000


def batched(values: Iterable[T], size: int = BIND_BATCH) -> Iterator[list[T]]:
    """The values in order, in lists of at most `size` (none for no values)."""
    if size < 1:
        raise ValueError("batch size must be at least 1")
    batch: list[T] = []
    for value in values:
        batch.append(value)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
