"""Records in other tools' export shapes, translated into prefloop's own record shape before validation.

Each dialect recognises its shape from the keys of one record and returns the record prefloop would have
written: `prompt`/`messages`, `completions`, `rankings` (`[{"ranks": [rank or null per completion],
"rationale", "origin"}]`), `metadata`, `id`. Fields a dialect does not map are kept in the prompt's metadata
under `imported` and named in the import's notes; nothing is dropped without a word. The mappings are
documented in docs/imports.md.

| dialect            | recognised by                                   |
| ------------------ | ----------------------------------------------- |
| `label-studio`     | `data` + `annotations`/`predictions` (a task)   |
| `argilla`          | `fields` + `responses` (or flattened `q.responses`) |
| `openai`           | `input` + `preferred_output` + `non_preferred_output` |
| `prefloop-rankings`| `completions` + `ranks` (the `rankings` export) |
| `rm`               | `completion` list + `ranking` (the `rm` export)  |
| `sft`              | `prompt` + `completion` text or assistant messages (TRL; the `sft` export, CSV too) |
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from app.imports.dialects import argilla, kwise, label_studio, openai, sft
from app.imports.dialects.common import Translation
from app.imports.schemas import RawRecord

_DIALECTS: tuple[Callable[[RawRecord], Translation | None], ...] = (
    label_studio.translate, argilla.translate, openai.translate, kwise.translate, sft.translate,
)


def translate(record: RawRecord) -> Translation | None:
    """The record in prefloop's shape, or None when it already is one (or is no known tool's shape). CSV rows
    keep their wide layout; only the `sft` export's header is read as a dialect."""
    if record.tabular:
        return sft.translate(record)
    for dialect in _DIALECTS:
        translation = dialect(record)
        if translation is not None:
            return translation
    return None


@dataclass
class Notes:
    """What the dialects mapped, per tool, and which fields they kept without mapping (with how often)."""

    records: Counter[str] = field(default_factory=Counter)
    unmapped: Counter[tuple[str, str]] = field(default_factory=Counter)
    skipped: Counter[tuple[str, str]] = field(default_factory=Counter)

    def count(self, translation: Translation) -> None:
        self.records[translation.dialect] += 1
        for name in set(translation.unmapped):
            self.unmapped[(translation.dialect, name)] += 1
        for reason in translation.skipped:
            self.skipped[(translation.dialect, reason)] += 1

    def sentences(self) -> list[str]:
        out = [f"read {count} record(s) as {dialect} export(s)" for dialect, count in sorted(self.records.items())]
        out += [
            f"{dialect}: `{name}` is not mapped; kept in the prompt's metadata under `imported` ({count} record(s))"
            for (dialect, name), count in sorted(self.unmapped.items())
        ]
        out += [f"{dialect}: {reason} ({count}×)" for (dialect, reason), count in sorted(self.skipped.items())]
        return out
