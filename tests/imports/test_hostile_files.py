"""Files that used to crash an import (a 500) are reported line by line instead, on both dialects.

Each case is what a black-box probe sent: lone surrogates, NaN/Infinity, `1e999`, an integer over 4,300
digits, a 5,000-character column name, metadata nested 980 deep. Every one must end as a failed import with
its line and field, or as a clean import where the value is harmless, and never as an exception.
"""

from __future__ import annotations

import io
import json

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.imports.schemas import ImportOptions
from app.imports.service import run_import
from app.models import ImportRecord, Prompt
from tests.factories import make_project

SURROGATE = "\\ud800"  # as JSON writes it: json.loads turns it into a lone surrogate


def _line(**fields: str) -> str:
    return "{" + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + "}"


CASES = {
    "surrogate in prompt": (_line(prompt=f'"hi {SURROGATE}"'), "prompt"),
    "surrogate in completion": (_line(prompt='"p"', completions=f'["a", "b {SURROGATE}"]'), "completions[1]"),
    "surrogate in metadata value": (_line(prompt='"p"', metadata=f'{{"m": "{SURROGATE}"}}'), "metadata.m"),
    "surrogate in a metadata key": (_line(prompt='"p"', metadata=f'{{"{SURROGATE}": 1}}'), "metadata"),
    "surrogate in id": (_line(id=f'"{SURROGATE}"', prompt='"p"'), "id"),
    "surrogate in HH chosen": (_line(chosen=f'"\\n\\nHuman: q\\n\\nAssistant: a{SURROGATE}"',
                                     rejected='"\\n\\nHuman: q\\n\\nAssistant: b"'), "chosen"),
    "NaN in metadata": (_line(prompt='"p"', metadata='{"score": NaN}'), "json"),
    "Infinity in metadata": (_line(prompt='"p"', metadata='{"score": -Infinity}'), "json"),
    "integer over 4300 digits": (_line(prompt='"p"', metadata='{"n": ' + "7" * 5000 + "}"), "json"),
    "metadata nested 200 deep": (_line(prompt='"p"', metadata="[" * 200 + "]" * 200), "metadata"),
    # Deeper than the parser's own recursion allows: refused while parsing.
    "metadata nested 980 deep": (_line(prompt='"p"', metadata="[" * 980 + "]" * 980), "json"),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_bad_values_fail_their_line_not_the_request(db: Session, dialect: str, case: str, fmt: str) -> None:
    project = make_project(db, k_min=2, k_max=9)
    good = _line(prompt='"a fine prompt"')
    text, field = CASES[case]
    data = f"{good}\n{text}\n" if fmt == "jsonl" else f"[{good},\n{text}]"
    outcome = run_import(db, project, io.BytesIO(data.encode()), f"bad.{fmt}", ImportOptions())
    db.commit()
    assert not outcome.ok
    assert [(i.line, i.field.split(".")[0].split("[")[0]) for i in outcome.issues] == [(2, field.split(".")[0]
                                                                                         .split("[")[0])], outcome.issues
    if field != "json":
        assert outcome.issues[0].field.startswith(field)
    assert db.scalars(select(Prompt)).first() is None
    record = db.scalars(select(ImportRecord)).one()
    assert record.status == "failed" and record.errors[0]["line"] == 2


def test_csv_cells_that_look_like_huge_numbers_stay_text(db: Session, dialect: str) -> None:
    project = make_project(db, k_min=2, k_max=9)
    wide = "w" * 5000
    data = f"prompt,completion_1,completion_2,score,serial,{wide}\np,a,b,1e999,{'9' * 5000},x\n"
    outcome = run_import(db, project, io.BytesIO(data.encode()), "wide.csv", ImportOptions())
    db.commit()
    assert outcome.ok, outcome.issues
    prompt = db.scalars(select(Prompt)).one()
    assert prompt.meta["score"] == "1e999" and prompt.meta["serial"] == "9" * 5000
    assert prompt.meta[wide] == "x"


def test_long_integers_in_csv_keep_every_digit(db: Session, dialect: str) -> None:
    project = make_project(db, k_min=2, k_max=9)
    data = "prompt,completion_1,completion_2,user\np,a,b,123456789012345678901\n"
    assert run_import(db, project, io.BytesIO(data.encode()), "ids.csv", ImportOptions()).ok
    db.commit()
    assert json.dumps(db.scalars(select(Prompt)).one().meta["user"]) == "123456789012345678901"
