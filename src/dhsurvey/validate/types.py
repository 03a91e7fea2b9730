"""Typed tables: raw strings converted to the dtype each XLSForm type implies.

Accepted data are typed — numeric choice codes as integers (Stata and SPSS value labels need
them), numbers as numbers, dates and times as timestamps — so analysis never re-parses strings.
A value that does not convert is a type error with the row's KEY, the column and the value, and
the row goes to quarantine rather than being coerced to missing.

Dtypes: integer → ``Int64``; decimal → ``Float64``; select_one with integer codes → ``Int64``
(else string); select_multiple, text, geopoint, barcode → ``string``; date/today → ``datetime64``
(day); start/end/datetime → ``datetime64[ns, UTC]``; calculate → numeric when every value is,
else string. Meta columns stay strings except ``submission_time`` (UTC timestamp).
"""

from __future__ import annotations

import re
from collections.abc import Collection

import numpy as np
import pandas as pd

from dhsurvey.forms.model import FormModel, Item

TYPE_ERROR_COLUMNS = ["KEY", "rule", "column", "value", "message"]
_INT = re.compile(r"^-?\d+$")
_NUMBER = re.compile(r"^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)?$")


def dtype_for(item: Item, model: FormModel) -> str:
    """The pandas dtype name a field's values take in typed tables."""
    if item.type == "integer":
        return "Int64"
    if item.type in ("decimal", "range"):
        return "Float64"
    if item.is_select_one:
        lst = model.choices_for(item)
        if lst is not None and all(_INT.match(c) for c in lst.codes()):
            return "Int64"
        return "string"
    if item.type in ("date", "today"):
        return "datetime64[ns]"
    if item.type in ("start", "end", "datetime"):
        return "datetime64[ns, UTC]"
    if item.type == "calculate":
        return "calculate"
    return "string"


def _matches(raw: np.ndarray, pattern: re.Pattern[str], index: pd.Index) -> pd.Series:
    """Whether each text (None: missing, no match) starts with a match of ``pattern``."""
    return pd.Series(np.fromiter((x is not None and pattern.match(x) is not None for x in raw),
                                 dtype=bool, count=len(raw)), index=index)


def _convert(values: pd.Series, dtype: str) -> tuple[pd.Series, pd.Series]:
    """Converted values and a mask of values that could not be converted."""
    text = values.astype("string")
    # The texts as Python strings, matched one by one (what the .str accessor would do).
    # The stubs reject na_value=None, which pandas accepts.
    raw = text.to_numpy(dtype=object, na_value=None)  # type: ignore[call-overload]
    present = pd.Series(np.fromiter((x is not None and len(x) > 0 for x in raw), dtype=bool,
                                    count=len(raw)), index=text.index)
    if dtype == "Int64":
        ok = _matches(raw, _INT, text.index)
        out = pd.to_numeric(text.where(ok), errors="coerce").astype("Int64")
        return out, present & ~ok
    if dtype == "Float64":
        ok = _matches(raw, _NUMBER, text.index)
        return pd.to_numeric(text.where(ok), errors="coerce").astype("Float64"), present & ~ok
    if dtype == "datetime64[ns]":
        ok = _matches(raw, _DATE, text.index)
        dates = pd.to_datetime(text.where(ok), format="%Y-%m-%d", errors="coerce")
        return dates, present & ~(ok & dates.notna())
    if dtype == "datetime64[ns, UTC]":
        ok = _matches(raw, _DATETIME, text.index)
        dates = pd.to_datetime(text.where(ok), utc=True, errors="coerce", format="ISO8601")
        return dates, present & ~(ok & dates.notna())
    if dtype == "calculate":
        numeric = _matches(raw, _NUMBER, text.index)
        if bool((numeric | ~present).all()):
            return pd.to_numeric(text, errors="coerce").astype("Float64"), present & False
        return text, present & False
    return text, present & False


def to_typed(table: pd.DataFrame, model: FormModel, repeat: str | None = None
             ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(typed table, type errors) for a canonical root or repeat table."""
    typed = table.copy()
    errors = []
    keys = table["KEY"].to_numpy() if "KEY" in table else np.asarray(table.index)
    for item in model.fields_in(repeat):
        if item.name not in table.columns:
            continue
        dtype = dtype_for(item, model)
        converted, bad = _convert(table[item.name], dtype)
        typed[item.name] = converted
        if bad.any():
            mask = bad.to_numpy()
            errors.append(pd.DataFrame({
                "KEY": keys[mask], "rule": "type", "column": item.name,
                "value": table[item.name].to_numpy()[mask],
                "message": f"not a valid {item.type} ({dtype})",
            }))
    if "submission_time" in typed.columns:
        typed["submission_time"] = pd.to_datetime(typed["submission_time"], utc=True,
                                                  errors="coerce", format="ISO8601")
    out = pd.concat(errors, ignore_index=True) if errors else pd.DataFrame(
        columns=TYPE_ERROR_COLUMNS)
    return typed, out


def retyped(typed: pd.DataFrame, table: pd.DataFrame, model: FormModel,
            columns: Collection[str], repeat: str | None = None) -> pd.DataFrame:
    """``to_typed(table)[0]`` from ``typed``, the typed form of a table that differs from
    ``table`` only in the fields ``columns``: those alone are converted again (a calculation's
    dtype follows all of its values, so a whole column is)."""
    out = typed.copy()
    for item in model.fields_in(repeat):
        if item.name in columns and item.name in table.columns:
            out[item.name] = _convert(table[item.name], dtype_for(item, model))[0]
    return out
