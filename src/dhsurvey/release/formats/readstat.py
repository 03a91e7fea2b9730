"""What the Stata and SPSS writers share: pyreadstat writes to scratch files, template rows that
fix a whole column's type, and the reproducible header stamp.

Why: pyreadstat writes only whole frames and takes a column's type (and string width) from its
values, so each block of rows is written behind a *template* row that forces the whole table's
types and widths, and the block's rows are cut out of the result and spliced into one file.
readstat also stamps .dta and .sav headers with the wall clock; those stamps are overwritten with
:func:`release_timestamp` (``SOURCE_DATE_EPOCH`` if set, else 2000-01-01 00:00) so a rerun gives
the same bytes.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dhsurvey.forms.model import Item
from dhsurvey.release.encode import as_days

#: Stamp written into .dta/.sav headers when SOURCE_DATE_EPOCH is not set.
FIXED_TIMESTAMP = datetime(2000, 1, 1)
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
#: Rows handed to pyreadstat at a time: its frame, the row bytes and their compression take
#: several times the memory of the block's numbers.
READSTAT_ROWS = 10_000


def release_timestamp() -> datetime:
    """The one timestamp embedded in headers: reproducible builds' SOURCE_DATE_EPOCH or fixed."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch:
        return datetime.fromtimestamp(int(epoch), tz=UTC).replace(tzinfo=None)
    return FIXED_TIMESTAMP


def header_stamp(pattern: str) -> bytes:
    """:func:`release_timestamp` in ``pattern`` (strftime codes, ``%b`` in English whatever
    the locale), as readstat writes its clock into a header."""
    ts = release_timestamp()
    return ts.strftime(pattern.replace("%b", MONTHS[ts.month - 1])).encode("ascii")


def template_value(kind: str, item: Item | None, storage: str, width: int) -> Any:
    """One value that makes pyreadstat choose the whole column's type and string width
    (``storage``: string, long, or anything else for a number or a date)."""
    if storage == "string":
        return "x" * width
    if storage == "long":
        return 0
    if kind in ("date", "datetime"):
        return dt.date(1970, 1, 1) if as_days(kind, item) else pd.Timestamp(0)
    return 0.0


def template_frame(columns: Mapping[str, np.ndarray], template: Mapping[str, Any]
                   ) -> pd.DataFrame:
    """The frame of a block's converted columns behind one template row; every column keeps
    its dtype."""
    return pd.DataFrame({name: np.concatenate([np.array([template[name]], dtype=values.dtype),
                                               values])
                         for name, values in columns.items()})


def scratch_write(write: Callable[..., Any], frame: pd.DataFrame,
                  options: Mapping[str, Any]) -> bytes:
    """The bytes pyreadstat's ``write`` gives for ``frame``, by way of a scratch file."""
    with tempfile.TemporaryDirectory(prefix="dhsurvey-release-") as scratch:
        tmp = os.path.join(scratch, "part")
        write(frame, tmp, **options)
        return Path(tmp).read_bytes()


__all__ = [
    "FIXED_TIMESTAMP",
    "MONTHS",
    "READSTAT_ROWS",
    "header_stamp",
    "release_timestamp",
    "scratch_write",
    "template_frame",
    "template_value",
]
