"""Storing an upload under the data directory before its import runs: streamed in chunks, hashed on the way."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_CHUNK = 1 << 20
HEAD_BYTES = 4096


@dataclass(frozen=True)
class StoredUpload:
    """Where the upload now lies, its SHA-256 and its first bytes (for format detection)."""

    path: Path
    sha256: str
    head: bytes


def store_upload(source: BinaryIO, directory: Path) -> StoredUpload:
    """Copy `source` to a new file in `directory`, one megabyte at a time (never the whole file in memory)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{uuid.uuid4().hex}.upload"
    digest = hashlib.sha256()
    head = b""
    source.seek(0)
    try:
        with path.open("wb") as target:
            while chunk := source.read(_CHUNK):
                if len(head) < HEAD_BYTES:
                    head += chunk[: HEAD_BYTES - len(head)]
                digest.update(chunk)
                target.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return StoredUpload(path, digest.hexdigest(), head)
