"""Atomic file writes: a killed run never leaves a half-written file behind."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO


@contextmanager
def atomic_open(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file handle on a temporary file beside ``path``, renamed into place when the
    block ends without error (for files written piece by piece)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place."""
    with atomic_open(path) as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Stable JSON (sorted keys, trailing newline) so reruns give identical bytes."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True,
                                              ensure_ascii=False, default=str) + "\n")


def atomic_write_parquet(path: str | Path, table: Any) -> Path:
    """A DataFrame as Parquet (no index), written atomically; same table → same bytes."""
    import io

    buffer = io.BytesIO()
    table.to_parquet(buffer, index=False)
    return atomic_write_bytes(path, buffer.getvalue())
