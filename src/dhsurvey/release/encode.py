"""Column decisions shared by the release formats: a column's kind and its values as the Stata
and SPSS writers take them.

Why a module of its own: every format decides on a *whole column* (its kind, Stata storage, SPSS
width, CSV format) and then encodes *blocks of rows* with those decisions, so that a table
written in one block or in many gives the same bytes. The rules both steps share live here; the
formats (:mod:`dhsurvey.release.formats`) take the per-format decisions.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dhsurvey.forms.model import FormModel, Item
from dhsurvey.release.labels import (
    fields_for,
    file_labels,
    missing_codes,
    resolve_language,
    value_labels,
)


class ReleaseWarning(UserWarning):
    """Something was changed to fit a format (e.g. a string truncated for SPSS)."""


def warn(message: str, notes: list[str] | None, stacklevel: int = 3) -> None:
    """Warn with :class:`ReleaseWarning` and append the message to ``notes`` (if given), so a
    release can list what was changed without catching warnings."""
    warnings.warn(message, ReleaseWarning, stacklevel=stacklevel)
    if notes is not None:
        notes.append(message)


@dataclass(frozen=True)
class Layout:
    """What the Stata and SPSS writers decide from the column names, kinds and the form model."""

    names: list[str]
    kinds: dict[str, str]  # int | float | date | datetime | string | empty (no value at all)
    items: dict[str, Item | None]
    labels: dict[str, str]
    value_labels: dict[str, dict[int, str]]
    missing: dict[str, dict[int, str]]
    title: str


def value_kind(series: pd.Series) -> str:
    """int | float | bool | date | datetime | string, looking inside object columns."""
    dtype = series.dtype
    if isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(dtype):
        return "datetime"
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if pd.api.types.is_object_dtype(dtype):
        inferred = pd.api.types.infer_dtype(series, skipna=True)
        return {"integer": "int", "floating": "float", "mixed-integer-float": "float",
                "boolean": "bool", "datetime64": "datetime", "datetime": "datetime",
                "date": "date"}.get(inferred, "string")
    return "string"


def column_kind(series: pd.Series) -> str:
    """The kind a whole column is written as: bools as ints, a column without values "empty"
    (readstat infers a type from the first value; a column without one goes as double)."""
    kind = value_kind(series)
    if kind != "string" and not bool(series.notna().any()):
        return "empty"
    return "int" if kind == "bool" else kind


def as_days(kind: str, item: Item | None) -> bool:
    """Dates (and ODK date/today fields) are written as days, other times as timestamps."""
    return kind == "date" or (item is not None and item.type in ("date", "today"))


def stamps(series: pd.Series, kind: str) -> pd.Series:
    """Datetime values of a datetime column or of an object column of datetimes/dates (whose
    whole-column ``kind`` says whether they are times, read as UTC, or dates)."""
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return series
    return pd.to_datetime(series, utc=kind == "datetime")


def _floats(series: pd.Series) -> np.ndarray:
    """A numeric (or bool) column as float64 with NaN for every missing value."""
    dtype = series.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "biuf":
        numbers = series.to_numpy().astype("float64")  # a copy: NaN made plain below
        numbers[np.isnan(numbers)] = np.nan
        return numbers
    if isinstance(series.array, pd.api.extensions.ExtensionArray) and dtype.kind in "biuf" \
            and hasattr(series.array, "_mask"):  # Int64, Float64, boolean
        return series.to_numpy("float64", na_value=np.nan)
    if value_kind(series) == "bool":
        series = series.astype("boolean").astype("Int64")
    return pd.to_numeric(series).astype("Float64").to_numpy("float64", na_value=np.nan)


def column_array(series: pd.Series, kind: str, item: Item | None) -> np.ndarray:
    """Rows of a column of ``kind`` → a numpy array of the values readstat understands (UTC
    naive timestamps, dates, text with "" for missing); the same for a whole column or any
    block of its rows."""
    if kind == "empty":
        return np.full(len(series), np.nan, dtype="float64")
    if kind in ("int", "float"):
        return _floats(series)
    if kind in ("datetime", "date"):
        times = stamps(series, kind)
        if isinstance(times.dtype, pd.DatetimeTZDtype):
            times = times.dt.tz_convert("UTC").dt.tz_localize(None)
        if as_days(kind, item):
            days = [None if pd.isna(v) else v.date() for v in times]
            return np.array(days, dtype=object)
        return times.astype("datetime64[ns]").to_numpy()
    if isinstance(series.dtype, pd.StringDtype):
        return series.to_numpy(dtype=object, na_value="")
    text = series.astype("string").fillna("")  # Stata and SPSS have no missing string: ""
    return text.to_numpy(dtype=object)


def column_values(series: pd.Series, kind: str, item: Item | None) -> pd.Series:
    """Rows of a column of ``kind`` → plain numpy/python values readstat understands (UTC naive
    timestamps); the same for a whole column or any block of its rows."""
    return pd.Series(column_array(series, kind, item), index=series.index)


def table_layout(names: list[str], kinds: Mapping[str, str], model: FormModel,
                 language: str | None) -> Layout:
    """Labels and missing codes of the columns present, given each column's kind (the names
    are checked by the caller, once per table: :func:`~dhsurvey.release.labels.check_names`)."""
    lang = resolve_language(model, language)
    labels = file_labels(names, model, lang)
    coded = {c: v for c, v in value_labels(model, lang).items()
             if c in kinds and kinds[c] in ("int", "empty")}
    missing = {c: v for c, v in missing_codes(model).items() if c in coded}
    return Layout(list(names), dict(kinds), fields_for(model, names), labels,
                  coded, missing, model.title)


def convert_block(block: pd.DataFrame, layout: Layout) -> dict[str, np.ndarray]:
    """A block of rows converted for Stata/SPSS with the whole table's kinds
    (:func:`column_array` of each column)."""
    return {name: column_array(block[column], layout.kinds[name], layout.items[name])
            for name, column in zip(layout.names, block.columns, strict=True)}


def byte_lengths(values: pd.Series) -> np.ndarray:
    """UTF-8 byte length of every string of an object column of strings."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if values.empty:
        return np.zeros(0, dtype="int64")
    lengths = pc.binary_length(pa.array(values.to_numpy(object), type=pa.large_string()))
    return lengths.to_numpy(zero_copy_only=False).astype("int64")


__all__ = [
    "Layout",
    "ReleaseWarning",
    "as_days",
    "byte_lengths",
    "column_kind",
    "column_array",
    "column_values",
    "convert_block",
    "stamps",
    "table_layout",
    "value_kind",
    "warn",
]
