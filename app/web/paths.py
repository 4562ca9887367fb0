"""Path parameter types: an id in a URL is a positive integer that fits the database's BIGINT.

Without the bound a path like `/api/projects/99999999999999999999` passes validation as a Python int and fails
only in the driver (OverflowError on SQLite, out of range on Postgres): a 500. With it, a 422 that says why,
and the published OpenAPI schema says the same, so generated clients and fuzzers know the range.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

MAX_ID = 2**63 - 1
"""The largest value a BIGINT primary key can hold (every table's id, see app.models.base.BigId)."""

Id = Annotated[int, Path(ge=1, le=MAX_ID, description="a database id: 1 to 2**63 - 1")]
