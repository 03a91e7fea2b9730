"""Release CSV: UTF-8 without index, ``\\n`` line ends and explicit value formatting.

Floats use Python's shortest round-trip repr and timestamps ISO 8601 (UTC with ``Z``), so the
text does not depend on pandas display options and reads back to the same values. The CSV
carries codes, not labels. How a column is formatted (:func:`csv_plan`) is decided on the whole
column, so blocks of rows formatted one at a time join into the file one pass would write; the
text of a whole large table would take several times the memory of its numbers. Text cells a
spreadsheet would run as a formula are made inert (:func:`~dhsurvey.io.neutralise_formulas`,
cell by cell, so the same in any block); numeric columns are written as they are.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dhsurvey.forms.model import Item
from dhsurvey.io import atomic_open, neutralise_formulas
from dhsurvey.release.encode import stamps, value_kind
from dhsurvey.release.formats.parquet import ParquetSource

#: Rows formatted at a time.
CSV_ROWS = 20_000


def csv_plan(series: pd.Series, item: Item | None) -> str:
    """How a whole column is written: int, bool, float, utc-ms, utc-us, date, datetime or
    string (decided on every value, so blocks of rows are formatted alike)."""
    kind = value_kind(series)
    if kind in ("datetime", "date"):
        times = stamps(series, kind)
        if isinstance(times.dtype, pd.DatetimeTZDtype):
            whole_ms = bool((times.dropna().dt.microsecond % 1000 == 0).all())
            return "utc-ms" if whole_ms else "utc-us"  # ODK records whole milliseconds
        if (item is not None and item.type in ("date", "today")) or kind == "date" or bool(
                (times.dropna() == times.dropna().dt.normalize()).all()):
            return "date"
        return "datetime"
    return kind


def _masked(series: pd.Series) -> bool:
    """A numpy-backed numeric column, or a pandas masked one (Int64, Float64, boolean)."""
    dtype = series.dtype
    return dtype.kind in "biuf" and (isinstance(dtype, np.dtype)
                                     or hasattr(series.array, "_mask"))


def _cells(series: pd.Series, plan: str) -> list[Any]:
    """One column's CSV cells (None: missing), as :func:`_column_text` gives them, without a
    pandas conversion per column where a list does (numeric float columns: a block's are
    formatted together, :func:`_float_cells`)."""
    if plan == "int" and series.dtype.kind == "i" and _masked(series):
        # Signed integers (Int64 holds them all): their decimal text.
        values = series.array.to_numpy(dtype=object, na_value=None).tolist()
        return [None if v is None else str(v) for v in values]
    if plan == "string" and isinstance(series.dtype, pd.StringDtype):
        return [None if v is None else neutralise_formulas(v)
                for v in series.array.to_numpy(dtype=object, na_value=None).tolist()]
    return _column_text(series, plan).tolist()


def _column_text(series: pd.Series, plan: str) -> pd.Series:
    """One column as text: shortest round-trip floats, ISO 8601 dates and UTC times."""
    if plan in ("int", "bool"):
        out = series.astype("boolean" if plan == "bool" else "Int64").astype("string")
    elif plan == "float":
        numbers = pd.to_numeric(series).astype("float64").to_numpy()
        text = np.array(list(map(float.__repr__, numbers.tolist())), dtype=object)
        text[np.isnan(numbers)] = None
        out = pd.Series(text, index=series.index, dtype="string")
    elif plan in ("utc-ms", "utc-us"):
        out = stamps(series, "datetime").dt.tz_convert("UTC").dt.strftime("%Y-%m-%dT%H:%M:%S.%f")
        out = (out.str[:-3] if plan == "utc-ms" else out) + "Z"
    elif plan == "date":
        out = stamps(series, "date").dt.strftime("%Y-%m-%d")
    elif plan == "datetime":
        out = stamps(series, "date").dt.strftime("%Y-%m-%dT%H:%M:%S.%f")
    else:
        out = neutralise_formulas(series.astype("string"))
    # The stubs reject other=None, which pandas accepts.
    return out.astype(object).where(out.notna(), None)  # type: ignore[call-overload]


class _Records:
    """What :func:`csv.writer` writes, a record per call, each ended by ``\\n``.

    The writer is given ``\\r\\n`` as its line end because it quotes a field holding a
    character of the line end, and only then: with ``\\n`` a text holding a bare carriage
    return went out unquoted and a spreadsheet started a new row (and a formula) there.
    """

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, record: str) -> None:
        self.parts.append(record[:-2] + "\n")


def _float_cells(part: pd.DataFrame, at: list[int]) -> dict[int, list[str | None]]:
    """The cells of the float columns at positions ``at``, each distinct value formatted
    once: replicate weights repeat a few values across a row and down a stratum."""
    matrix = np.column_stack([part.iloc[:, i].to_numpy(dtype="float64", na_value=np.nan)
                              for i in at])
    # Distinct bit patterns, so -0.0 keeps its sign; every NaN is a missing cell. Hashed, not
    # sorted: a block of a pooled file holds millions of weights and a few thousand values.
    inverse, distinct = pd.factorize(matrix.view(np.int64).ravel())
    values = np.asarray(distinct, dtype=np.int64).view(np.float64)
    text = np.array(list(map(float.__repr__, values.tolist())), dtype=object)
    text[np.isnan(values)] = None
    cells = text[inverse.reshape(matrix.shape)]
    return {i: cells[:, j].tolist() for j, i in enumerate(at)}


#: What makes :func:`csv.writer` quote a field (its delimiter, quote and line-end characters).
_QUOTED = (",", '"', "\r", "\n")


def _fields(column: list[str | None]) -> list[str]:
    """A column's cells as :func:`csv.writer` writes them in a row of several fields: missing
    as empty, quoted (quotes doubled) when holding a delimiter, a quote or a line end."""
    cells = ["" if v is None else v for v in column]
    whole = "".join(cells)  # one search per character for the column, in C
    if not any(c in whole for c in _QUOTED):
        return cells
    return ['"' + v.replace('"', '""') + '"' if any(c in v for c in _QUOTED) else v
            for v in cells]


#: Rows joined into one piece of text at a time (a block's text is not held whole).
_ROWS_AT_ONCE = 1000


def _block_parts(part: pd.DataFrame, plans: Mapping[str, str], *, header: bool
                 ) -> Iterator[bytes]:
    """A block of rows as CSV text in pieces, formatted by the whole table's plans (missing:
    empty)."""
    kinds = [plans[str(c)] for c in part.columns]
    floats = [i for i, kind in enumerate(kinds) if kind == "float" and _masked(part.iloc[:, i])]
    known = _float_cells(part, floats) if floats else {}
    columns = [known.pop(i) if i in known else _cells(part.iloc[:, i], kind)
               for i, kind in enumerate(kinds)]
    out = _Records()
    writer = csv.writer(out, lineterminator="\r\n")
    if header:
        writer.writerow([neutralise_formulas(str(c)) for c in part.columns])
    if len(columns) == 1:  # a row of one empty field is written "" (else it would be blank)
        writer.writerows(zip(*columns, strict=True))
        columns = []
    yield "".join(out.parts).encode("utf-8")
    # Rows of several fields joined here, as the writer would write them, a few times faster
    # than it: a licensed file holds hundreds of replicate weights per row.
    for j, column in enumerate(columns):
        columns[j] = _fields(column)  # each column's list replaced, not copied beside it
    rows = len(columns[0]) if columns else 0
    for at in range(0, rows, _ROWS_AT_ONCE):
        lines = zip(*(c[at:at + _ROWS_AT_ONCE] for c in columns), strict=True)
        yield ("\n".join(map(",".join, lines)) + "\n").encode("utf-8")


def _block(part: pd.DataFrame, plans: Mapping[str, str], *, header: bool) -> bytes:
    """A block of rows as CSV text (see :func:`_block_parts`)."""
    return b"".join(_block_parts(part, plans, header=header))


def stream_csv(source: ParquetSource, plans: Mapping[str, str], path: str | Path) -> Path:
    """Write the CSV of ``source`` atomically, :data:`CSV_ROWS` rows at a time, with the plans
    of its columns (:func:`csv_plan`); a table without rows gets its header line."""
    header = True
    with atomic_open(path) as fh:
        for block in source.batches(CSV_ROWS):
            fh.writelines(_block_parts(block, plans, header=header))
            header = False
        if header:
            fh.write(_block(source.empty(), plans, header=True))
    return Path(path)


__all__ = ["CSV_ROWS", "csv_plan", "stream_csv"]
