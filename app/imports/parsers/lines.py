"""Splitting a binary stream into decoded lines, reporting invalid UTF-8 with its line and byte offset."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from app.imports.schemas import ImportIssue

BOM = "\ufeff"


@dataclass
class LineReader:
    """Iterates the lines of `source` as text (line endings kept), collecting encoding problems in `issues`.

    A line that is not valid UTF-8 is decoded with replacement characters so parsing can go on and report
    every other problem too; the import fails anyway because of the recorded issue. `line` is the number
    of the last line handed out (1-based).
    """

    source: BinaryIO
    issues: list[ImportIssue] = field(default_factory=list)
    line: int = 0
    offset: int = 0

    def __iter__(self) -> Iterator[str]:
        for raw in self.source:
            self.line += 1
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                self.issues.append(
                    ImportIssue(
                        self.line,
                        "encoding",
                        f"not valid UTF-8 at byte {self.offset + exc.start} of the file "
                        f"(byte {exc.start + 1} of the line); save the file as UTF-8",
                    )
                )
                text = raw.decode("utf-8", errors="replace")
            self.offset += len(raw)
            if self.line == 1 and text.startswith(BOM):
                text = text[1:]
            yield text

    def drain(self) -> list[ImportIssue]:
        """The encoding issues found since the last call."""
        found, self.issues = self.issues, []
        return found
