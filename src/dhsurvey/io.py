"""Files the tool writes: atomically, owner-only, and safe to open in a spreadsheet.

- Atomic: a temporary file beside the target renamed into place, so a killed run never leaves a
  half-written file behind.
- Owner-only: ``mkstemp`` makes files 0600 and missing folders are created 0700
  (:func:`private_dirs`); files written by other libraries through a handle go through
  :func:`open_private`.
- Spreadsheet-safe: :func:`neutralise_formulas` is the one rule for text cells of every CSV and
  XLSX file written for people.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

#: What a text cell may not start with in a CSV or XLSX file: a spreadsheet would run it as
#: a formula (``=``, ``+``, ``-``, ``@``) or take a hidden one after tab or carriage return.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: A text cell that is a plain decimal number is a number, not a formula: kept as it is.
_NUMBER = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
_IS_NUMBER = re.compile(_NUMBER)

Cells = TypeVar("Cells")


def neutralise_formulas(values: Cells) -> Cells:
    """Text cells that a spreadsheet would run as a formula, made inert (OWASP's CSV injection
    rule): a text starting with ``= + - @``, tab or carriage return gets a single quote ``'``
    in front, unless it is a plain number (``-3``, ``+2.5e3``), which a spreadsheet reads as
    the number anyway. Numbers (int, float, numeric columns) are never changed.

    ``values``: one cell (a ``str``; anything else is returned as it is), a pandas Series
    (text values of an object or string column; other dtypes as they are) or a DataFrame
    (every column, and the column names).
    """
    if isinstance(values, str):
        if values.startswith(FORMULA_START) and not _IS_NUMBER.fullmatch(values):
            return "'" + values  # type: ignore[return-value]
        return values
    import pandas as pd

    if isinstance(values, pd.DataFrame):
        out = values.copy(deep=False)
        for position in range(out.shape[1]):
            column = out.iloc[:, position]
            neutral = neutralise_formulas(column)
            if neutral is not column:
                out.isetitem(position, neutral.array)
        out.columns = pd.Index([neutralise_formulas(c) for c in out.columns])
        return out
    if isinstance(values, pd.Series):
        if not (values.dtype == object or pd.api.types.is_string_dtype(values.dtype)):
            return values
        text = values.astype("string")  # non-text cells of an object column are left below
        is_text = values.map(lambda v: isinstance(v, str)) if values.dtype == object else \
            values.notna()
        risky = (text.str.startswith(FORMULA_START).fillna(False)
                 & ~text.str.fullmatch(_NUMBER).fillna(False) & is_text).astype(bool)
        if not risky.any():
            return values
        out_series = values.copy()
        out_series[risky] = "'" + text[risky]
        return out_series  # type: ignore[return-value]
    return values


def private_dirs(path: str | Path) -> Path:
    """``path`` and its missing parents, each created owner-only (0700); existing folders
    are left as they are."""
    path = Path(path)
    missing, folder = [], path
    while not folder.is_dir() and folder.parent != folder:
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            continue  # made meanwhile by another process
        os.chmod(folder, 0o700)  # whatever the umask
    return path


def open_private(path: str | Path) -> BinaryIO:
    """``path`` opened for writing, readable by its owner only (created 0600, or truncated
    and set to 0600), for writers that take a file handle (pyarrow's ParquetWriter)."""
    path = Path(path)
    private_dirs(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "wb")


@contextmanager
def atomic_open(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file handle on a temporary file beside ``path``, renamed into place when the
    block ends without error (for files written piece by piece). The file is 0600 and
    missing folders are made 0700."""
    path = Path(path)
    private_dirs(path.parent)
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
