"""The duplicate-column check of a CSV header is linear: 20,000 columns take milliseconds, not seconds
(issue 16, Low: it counted every name against the whole header)."""

from __future__ import annotations

import io
import time

from app.imports.parsers.csv_rows import parse_csv
from app.imports.schemas import ImportIssue


def test_a_wide_header_with_duplicates_is_reported_quickly() -> None:
    names = [f"c{i}" for i in range(20_000)] + ["c7", "c19999", "c7"]
    data = (",".join(names) + "\n" + ",".join("x" for _ in names) + "\n").encode()
    started = time.perf_counter()
    issues = [item for item in parse_csv(io.BytesIO(data)) if isinstance(item, ImportIssue)]
    elapsed = time.perf_counter() - started
    assert [(i.field, i.reason) for i in issues] == [("header", "duplicate column names: c19999, c7")]
    assert elapsed < 1.5, f"the header check took {elapsed:.2f} s"
