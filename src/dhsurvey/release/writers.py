"""Release writers: Parquet, CSV, Stata (.dta 118) and SPSS (.sav) from typed tables.

Why one module: the four formats must agree. Every writer takes the typed table and its form
model, labels variables and values in the release language, and writes through a temporary file
and a rename (``dhsurvey.io``) so a killed run never leaves half a file behind. A rerun on the
same input gives byte-identical files: readstat stamps .dta and .sav headers with the wall
clock, so those stamps are overwritten with :func:`release_timestamp` (``SOURCE_DATE_EPOCH`` if
set, else 2000-01-01 00:00); Parquet and CSV carry no clock.

Missing values: reserved codes 98/99 (:func:`~dhsurvey.release.labels.missing_codes`) stay
codes in Parquet and CSV, become Stata extended missing ``.d``/``.r`` (labelled) and stay 98/99
in SPSS, declared user-missing so SPSS leaves them out of statistics.
"""

from __future__ import annotations

import io
import json
import os
import struct
import tempfile
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from dhsurvey.forms.model import FormModel, Item
from dhsurvey.io import atomic_open, atomic_write_bytes
from dhsurvey.release.labels import (
    LABEL_LIMIT,
    ReleaseError,
    check_names,
    column_labels,
    field_for,
    missing_codes,
    resolve_language,
    truncate,
    truncate_bytes,
    value_labels,
)

FORMATS = ("parquet", "csv", "dta", "sav")
#: Stamp written into .dta/.sav headers when SOURCE_DATE_EPOCH is not set.
FIXED_TIMESTAMP = datetime(2000, 1, 1)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
#: Stata's `long` range (larger values are reserved for missing): codes outside go as double.
_STATA_LONG = (-2_147_483_647, 2_147_483_620)
#: SPSS string and value-label limits, in bytes.
_SPSS_STRING_BYTES = 32_767
_SPSS_VALUE_LABEL_BYTES = 120


class ReleaseWarning(UserWarning):
    """Something was changed to fit a format (e.g. a string truncated for SPSS)."""


class ReleaseFiles(list[Path]):
    """The files written, in order, and the warnings raised while writing them."""

    def __init__(self, paths: Iterable[Path] = (), warnings: Iterable[str] = ()) -> None:
        super().__init__(paths)
        self.warnings: list[str] = list(warnings)


def release_timestamp() -> datetime:
    """The one timestamp embedded in headers: reproducible builds' SOURCE_DATE_EPOCH or fixed."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch:
        return datetime.fromtimestamp(int(epoch), tz=UTC).replace(tzinfo=None)
    return FIXED_TIMESTAMP


def _warn(message: str, notes: list[str] | None, stacklevel: int = 3) -> None:
    warnings.warn(message, ReleaseWarning, stacklevel=stacklevel)
    if notes is not None:
        notes.append(message)


# -- column preparation --------------------------------------------------------------------------
#
# Every writer is split in two: decisions taken on whole columns (a column's kind, Stata storage,
# SPSS width and format, CSV plan) and the encoding of a block of rows given those decisions. The
# whole-frame writers decide on the frame and encode it as one block; the streaming writers
# (:mod:`dhsurvey.release.stream`) decide column by column and encode batch by batch, so both
# write the same bytes from one set of rules.


@dataclass(frozen=True)
class _Layout:
    """What Stata and SPSS writers decide from the column names, kinds and the form model."""

    names: list[str]
    kinds: dict[str, str]  # int | float | date | datetime | string | empty (no value at all)
    items: dict[str, Item | None]
    labels: dict[str, str]
    value_labels: dict[str, dict[int, str]]
    missing: dict[str, dict[int, str]]
    title: str


def _kind(series: pd.Series) -> str:
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


def _column_kind(series: pd.Series) -> str:
    """The kind a whole column is written as: bools as ints, a column without values "empty"
    (readstat infers a type from the first value; a column without one goes as double)."""
    kind = _kind(series)
    if kind != "string" and not bool(series.notna().any()):
        return "empty"
    return "int" if kind == "bool" else kind


def _values(series: pd.Series, kind: str, item: Item | None) -> pd.Series:
    """Rows of a column of ``kind`` → plain numpy/python values readstat understands (UTC naive
    timestamps); the same for a whole column or any block of its rows."""
    if kind == "empty":
        return pd.Series(np.nan, index=series.index, dtype="float64")
    if kind in ("int", "float"):
        if _kind(series) == "bool":
            series = series.astype("boolean").astype("Int64")
        numbers = pd.to_numeric(series).astype("Float64").to_numpy("float64", na_value=np.nan)
        return pd.Series(numbers, index=series.index)
    if kind in ("datetime", "date"):
        stamps = _stamps(series, kind)
        if isinstance(stamps.dtype, pd.DatetimeTZDtype):
            stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
        if _as_days(kind, item):
            days = [None if pd.isna(v) else v.date() for v in stamps]
            return pd.Series(days, index=series.index, dtype=object)
        return stamps.astype("datetime64[ns]")
    text = series.astype("string").fillna("")  # Stata and SPSS have no missing string: ""
    return text.astype(object)


def _as_days(kind: str, item: Item | None) -> bool:
    """Dates (and ODK date/today fields) are written as days, other times as timestamps."""
    return kind == "date" or (item is not None and item.type in ("date", "today"))


def _stamps(series: pd.Series, kind: str) -> pd.Series:
    """Datetime values of a datetime column or of an object column of datetimes/dates (whose
    whole-column ``kind`` says whether they are times, read as UTC, or dates)."""
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return series
    return pd.to_datetime(series, utc=kind == "datetime")


def _layout(names: list[str], kinds: Mapping[str, str], model: FormModel,
            language: str | None) -> _Layout:
    """Check names and collect labels for the columns present, given each column's kind."""
    check_names(names, model.form_id)
    lang = resolve_language(model, language)
    labels = column_labels(names, model, lang)
    coded = {c: v for c, v in value_labels(model, lang).items()
             if c in kinds and kinds[c] in ("int", "empty")}
    missing = {c: v for c, v in missing_codes(model).items() if c in coded}
    return _Layout(list(names), dict(kinds), {n: field_for(model, n) for n in names}, labels,
                   coded, missing, model.title)


def _prepare(df: pd.DataFrame, model: FormModel,
             language: str | None) -> tuple[_Layout, dict[str, pd.Series]]:
    """The layout of a whole frame and its columns converted for Stata/SPSS."""
    df = df.reset_index(drop=True)
    names = [str(c) for c in df.columns]
    kinds = {n: _column_kind(df[c]) for n, c in zip(names, df.columns, strict=True)}
    layout = _layout(names, kinds, model, language)
    return layout, _convert(df, layout)


def _convert(block: pd.DataFrame, layout: _Layout) -> dict[str, pd.Series]:
    """A block of rows converted for Stata/SPSS with the whole table's kinds."""
    return {name: _values(block[column], layout.kinds[name], layout.items[name])
            for name, column in zip(layout.names, block.columns, strict=True)}


def _python_ints(values: pd.Series) -> pd.Series:
    """Whole numbers as python ints, which pyreadstat writes as Stata ``long``."""
    out = [None if np.isnan(v) else int(v) for v in values.to_numpy()]
    return pd.Series(out, index=values.index, dtype=object)


def _fits_long(values: pd.Series) -> bool:
    finite = values.dropna()
    return finite.empty or bool(finite.between(*_STATA_LONG).all() and
                                (finite == np.floor(finite)).all())


def _byte_lengths(values: pd.Series) -> np.ndarray:
    """UTF-8 byte length of every string of an object column of strings."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if values.empty:
        return np.zeros(0, dtype="int64")
    lengths = pc.binary_length(pa.array(values.to_numpy(object), type=pa.large_string()))
    return lengths.to_numpy(zero_copy_only=False).astype("int64")


def _via_scratch(path: str | Path, write: Callable[[str], None],
                 patch: Callable[[bytearray], None]) -> Path:
    """Let a library write to a scratch file, patch the bytes, then write atomically."""
    with tempfile.TemporaryDirectory(prefix="dhsurvey-release-") as scratch:
        tmp = os.path.join(scratch, Path(path).name)
        write(tmp)
        data = bytearray(Path(tmp).read_bytes())
    patch(data)
    return atomic_write_bytes(path, bytes(data))


# -- Parquet and CSV -----------------------------------------------------------------------------


def release_metadata(df: pd.DataFrame, model: FormModel, language: str | None) -> dict[str, Any]:
    """Labels and missing codes of a table, as stored in the Parquet schema metadata."""
    lang = resolve_language(model, language)
    labels = column_labels(df.columns, model, lang)
    coded = {c: v for c, v in value_labels(model, lang).items() if c in df.columns}
    return {
        "form_id": model.form_id,
        "form_version": model.version,
        "title": model.title,
        "language": lang,
        "variable_labels": {c: labels[c] for c in map(str, df.columns) if labels[c]},
        "value_labels": {c: {str(k): v for k, v in vl.items()} for c, vl in coded.items()},
        "missing_codes": {c: {str(k): v for k, v in m.items()}
                          for c, m in missing_codes(model).items() if c in df.columns},
    }


def write_parquet(df: pd.DataFrame, model: FormModel, path: str | Path, *,
                  language: str | None = None) -> Path:
    """The typed table as Parquet (pandas/R/Arrow keep dtypes); labels in schema metadata.

    Codes 98/99 stay codes here: the ``dhsurvey`` metadata key lists them as missing codes.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[b"dhsurvey"] = json.dumps(release_metadata(df, model, language), sort_keys=True,
                                   ensure_ascii=False).encode("utf-8")
    table = table.replace_schema_metadata(meta)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="snappy")
    return atomic_write_bytes(path, buffer.getvalue())


def _csv_plan(series: pd.Series, item: Item | None) -> str:
    """How a whole column is written: int, bool, float, utc-ms, utc-us, date, datetime or
    string (decided on every value, so blocks of rows are formatted alike)."""
    kind = _kind(series)
    if kind in ("datetime", "date"):
        stamps = _stamps(series, kind)
        if isinstance(stamps.dtype, pd.DatetimeTZDtype):
            whole_ms = bool((stamps.dropna().dt.microsecond % 1000 == 0).all())
            return "utc-ms" if whole_ms else "utc-us"  # ODK records whole milliseconds
        if (item is not None and item.type in ("date", "today")) or kind == "date" or bool(
                (stamps.dropna() == stamps.dropna().dt.normalize()).all()):
            return "date"
        return "datetime"
    return kind


def _csv_column(series: pd.Series, plan: str) -> pd.Series:
    """One column as text: shortest round-trip floats, ISO 8601 dates and UTC times."""
    if plan in ("int", "bool"):
        out = series.astype("boolean" if plan == "bool" else "Int64").astype("string")
    elif plan == "float":
        numbers = pd.to_numeric(series).astype("float64").to_numpy()
        text = np.array(list(map(float.__repr__, numbers.tolist())), dtype=object)
        text[np.isnan(numbers)] = None
        out = pd.Series(text, index=series.index, dtype="string")
    elif plan in ("utc-ms", "utc-us"):
        out = _stamps(series, "datetime").dt.tz_convert("UTC").dt.strftime("%Y-%m-%dT%H:%M:%S.%f")
        out = (out.str[:-3] if plan == "utc-ms" else out) + "Z"
    elif plan == "date":
        out = _stamps(series, "date").dt.strftime("%Y-%m-%d")
    elif plan == "datetime":
        out = _stamps(series, "date").dt.strftime("%Y-%m-%dT%H:%M:%S.%f")
    else:
        out = series.astype("string")
    return out.astype(object).where(out.notna(), None)


def _csv_plans(df: pd.DataFrame, model: FormModel) -> dict[str, str]:
    """The CSV plan of every column of a frame (whole columns, or one column at a time)."""
    return {str(c): _csv_plan(df[c], field_for(model, str(c))) for c in df.columns}


def _csv_block(part: pd.DataFrame, plans: Mapping[str, str], *, header: bool) -> bytes:
    """A block of rows as CSV text, formatted by the whole table's plans."""
    text = pd.DataFrame({c: _csv_column(part[c], plans[str(c)]) for c in part.columns},
                        columns=part.columns)
    return text.to_csv(index=False, lineterminator="\n", na_rep="",
                       header=header).encode("utf-8")


#: Rows formatted at a time by :func:`write_csv`.
_CSV_ROWS = 20_000


def write_csv(df: pd.DataFrame, model: FormModel, path: str | Path, *,
              language: str | None = None) -> Path:
    """UTF-8 CSV without index, ``\\n`` line ends and explicit value formatting.

    Floats use Python's shortest round-trip repr and timestamps ISO 8601 (UTC with ``Z``), so
    the text does not depend on pandas display options and reads back to the same values. The
    CSV carries codes, not labels (``language`` is accepted for a uniform signature).
    """
    resolve_language(model, language)
    plans = _csv_plans(df, model)
    # Formatted and written in blocks of rows: the text of a whole large table would take
    # several times the memory of its numbers. Formats are decided per whole column (above),
    # so the blocks join into the same file a single pass would write.
    with atomic_open(path) as fh:
        for start in range(0, max(len(df), 1), _CSV_ROWS):
            fh.write(_csv_block(df.iloc[start:start + _CSV_ROWS], plans, header=start == 0))
    return Path(path)


# -- Stata ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _StataColumn:
    """How a column is stored in a .dta, decided on the whole column."""

    storage: str  # tagged | long | double | string | date | datetime
    width: int = 0  # bytes of the longest string (string storage)


def _stata_column(values: pd.Series, kind: str, tags: Mapping[int, str]) -> _StataColumn:
    """Stata storage of a whole converted column (:func:`_values`)."""
    if tags:
        # Tagged columns go as double: pyreadstat (≤ 1.3.7) misreads a plain missing that
        # follows a tagged one in an int column; Stata reads either the same way.
        return _StataColumn("tagged")
    if kind == "int" and _fits_long(values) and not values.isna().any():
        return _StataColumn("long")
    if kind in ("int", "float", "empty"):
        # pyreadstat takes a column's type from its first value: a leading missing value
        # (a suppressed cell) in an object column made it a string. Doubles hold the codes.
        return _StataColumn("double")
    if kind == "string":
        lengths = _byte_lengths(values)
        return _StataColumn("string", int(lengths.max()) if len(lengths) else 0)
    return _StataColumn(kind)


def _stata_values(values: pd.Series, column: _StataColumn, tags: Mapping[int, str]) -> pd.Series:
    """Rows of a converted column as pyreadstat writes them with the column's storage."""
    if column.storage == "tagged":
        return pd.Series([None if np.isnan(v) else tags.get(int(v), float(v)) for v in values],
                         index=values.index, dtype=object)
    if column.storage == "long":
        return _python_ints(values)
    if column.storage == "double":
        return pd.to_numeric(values, errors="coerce").astype("float64")
    return values


def _dta_alias(names: list[str]) -> dict[str, str]:
    """Placeholder names keep pyreadstat's label-set names short; _patch_dta restores them."""
    return {name: f"v{i + 1}" for i, name in enumerate(names)}


def _dta_frame(columns: Mapping[str, pd.Series], layout: _Layout,
               stata: Mapping[str, _StataColumn]) -> pd.DataFrame:
    """A block of converted rows as the frame handed to pyreadstat (placeholder names)."""
    alias = _dta_alias(layout.names)
    return pd.DataFrame({alias[n]: _stata_values(columns[n], stata[n], layout.missing.get(n, {}))
                         for n in layout.names})


def _dta_options(layout: _Layout) -> dict[str, Any]:
    """pyreadstat.write_dta's labels and options for a table."""
    alias = _dta_alias(layout.names)
    # In column order, as pyreadstat numbers the label sets in the order it is given them.
    dta_labels = {
        alias[name]: {layout.missing.get(name, {}).get(code, code): text
                      for code, text in layout.value_labels[name].items()}
        for name in layout.names if name in layout.value_labels
    }
    return {
        "file_label": truncate(layout.title, LABEL_LIMIT),
        "column_labels": {alias[n]: truncate(layout.labels[n]) or None for n in layout.names},
        "version": 14,  # Stata 14/15 → file format 118
        "variable_value_labels": dta_labels,
        "missing_user_values": {alias[n]: sorted(layout.missing[n].values())
                                for n in layout.names if n in layout.missing},
    }


def _stata_stamp() -> bytes:
    ts = release_timestamp()
    text = f"{ts.day:02d} {_MONTHS[ts.month - 1]} {ts.year:04d} {ts.hour:02d}:{ts.minute:02d}"
    return text.encode("ascii")


def _patch_dta(data: bytearray, names: list[str]) -> None:
    """Fix a readstat .dta 118 in place: header timestamp, real names, label-set names.

    readstat stamps the wall clock into the header, and pyreadstat names each value-label set
    ``<variable><counter>``, which breaks Stata's 32-character limit for long names. The
    variables are therefore written as ``v1``, ``v2`` … and their real names (and a label set
    named like its variable, Stata's own convention) are put back into the fixed-width fields
    here, so no section moves and the map of offsets stays valid.
    """
    head = b"<stata_dta><header><release>"
    if not data.startswith(head) or data[len(head):len(head) + 3] != b"118":
        raise ReleaseError("unexpected .dta layout from pyreadstat (expected release 118)")
    pos = data.index(b"<byteorder>") + len(b"<byteorder>")
    order = "<" if data[pos:pos + 3] == b"LSF" else ">"
    pos = data.index(b"<K>", pos) + 3
    (k,) = struct.unpack(order + "H", data[pos:pos + 2])
    pos = data.index(b"<label>", pos) + len(b"<label>")
    (label_len,) = struct.unpack(order + "H", data[pos:pos + 2])
    pos += 2 + label_len + len(b"</label><timestamp>")
    if data[pos] == 17:
        data[pos + 1:pos + 18] = _stata_stamp()
    pos = data.index(b"<map>", pos) + len(b"<map>")
    offsets = struct.unpack(order + "14Q", data[pos:pos + 14 * 8])
    width = 129
    if k != len(names):
        raise ReleaseError(f".dta has {k} variables, expected {len(names)}")

    def field_at(start: int, i: int) -> tuple[int, bytes]:
        at = start + i * width
        return at, bytes(data[at:at + width]).split(b"\0", 1)[0]

    def put(at: int, text: bytes) -> None:
        data[at:at + width] = text.ljust(width, b"\0")

    for index, tag in ((3, b"<varnames>"), (6, b"<value_label_names>"), (11, b"<value_labels>")):
        if data[offsets[index]:offsets[index] + len(tag)] != tag:
            raise ReleaseError(f"unexpected .dta layout from pyreadstat (no {tag.decode()})")
    varnames = offsets[3] + len(b"<varnames>")
    label_names = offsets[6] + len(b"<value_label_names>")
    renamed: dict[bytes, bytes] = {}
    for i, name in enumerate(names):
        put(field_at(varnames, i)[0], name.encode("utf-8"))
        at, label_set = field_at(label_names, i)
        if label_set:
            renamed[label_set] = name.encode("utf-8")
            put(at, renamed[label_set])
    pos = offsets[11] + len(b"<value_labels>")
    while data[pos:pos + 5] == b"<lbl>":
        (length,) = struct.unpack(order + "i", data[pos + 5:pos + 9])
        at, label_set = pos + 9, bytes(data[pos + 9:pos + 9 + width]).split(b"\0", 1)[0]
        put(at, renamed.get(label_set, label_set))
        pos = at + width + 3 + length + len(b"</lbl>")


def write_dta(df: pd.DataFrame, model: FormModel, path: str | Path, *,
              language: str | None = None, notes: list[str] | None = None) -> Path:
    """Stata 14+ .dta (format 118, UTF-8) with variable and value labels in ``language``.

    Don't know (98) and refused (99) answers are written as extended missing ``.d`` and ``.r``
    and the value labels label those letters, so ``tab x, missing`` still shows why an answer is
    missing while ``mean x`` leaves it out. Strings over 2045 bytes become strL; missing strings
    are "" as Stata has no other. Times are UTC (``%tc``), dates ``%td``. ``notes`` is accepted
    for symmetry with :func:`write_sav`; nothing needs changing to fit Stata.
    """
    import pyreadstat

    layout, columns = _prepare(df, model, language)
    stata = {n: _stata_column(columns[n], layout.kinds[n], layout.missing.get(n, {}))
             for n in layout.names}
    table = _dta_frame(columns, layout, stata)
    options = _dta_options(layout)
    return _via_scratch(path, lambda tmp: pyreadstat.write_dta(table, tmp, **options),
                        lambda data: _patch_dta(data, layout.names))


# -- SPSS ----------------------------------------------------------------------------------------


class _Measured(Protocol):
    kind: str
    item: Item | None


def measure_level(column: _Measured) -> str:
    """SPSS measurement level from the XLSForm type: what SPSS offers in dialogs and charts.

    rank and ``likert`` selects are ordinal, other selects (and their dummies) and text nominal,
    numbers and dates scale. ``column`` is anything with the column's ``kind`` and form ``item``.
    """
    return _measure(column.kind, column.item)


def _measure(kind: str, item: Item | None) -> str:
    if item is not None and (item.type == "rank" or (
            item.type == "select_one" and "likert" in item.appearance)):
        return "ordinal"
    if kind == "string" or (item is not None and item.is_select):
        return "nominal"
    return "scale"


@dataclass(frozen=True)
class _SavColumn:
    """How a column is stored in a .sav, decided on the whole column."""

    truncate: bool = False  # some strings exceed SPSS's limit and are cut
    width: int = 0  # bytes of the longest string once cut (string columns)
    format: str | None = None  # print format of whole numbers, wide enough for the largest


def _sav_column(name: str, values: pd.Series, kind: str, form_id: str,
                notes: list[str] | None) -> _SavColumn:
    """SPSS storage of a whole converted column; warns (and notes) when strings are cut."""
    if kind == "string":
        lengths = _byte_lengths(values)
        too_long = lengths > _SPSS_STRING_BYTES
        if not bool(too_long.any()):
            return _SavColumn(width=int(lengths.max()) if len(lengths) else 0)
        _warn(f"{form_id}.{name}: {int(too_long.sum())} value(s) longer than "
              f"{_SPSS_STRING_BYTES} bytes truncated for SPSS", notes, stacklevel=4)
        cut = [len(truncate_bytes(s, _SPSS_STRING_BYTES).encode("utf-8"))
               for s in values[too_long]]
        return _SavColumn(True, max([*cut, *lengths[~too_long].tolist()]))
    if kind == "int":
        finite = values.dropna().abs()
        digits = len(str(int(finite.max()))) if not finite.empty else 1
        return _SavColumn(format=f"F{min(40, max(digits + 1, 3))}.0")
    return _SavColumn()


def _sav_values(values: pd.Series, column: _SavColumn) -> pd.Series:
    """Rows of a converted column as pyreadstat writes them to a .sav."""
    if column.truncate:
        return values.map(lambda s: truncate_bytes(s, _SPSS_STRING_BYTES))
    return values


def _sav_frame(columns: Mapping[str, pd.Series], layout: _Layout,
               sav: Mapping[str, _SavColumn]) -> pd.DataFrame:
    """A block of converted rows as the frame handed to pyreadstat."""
    return pd.DataFrame({n: _sav_values(columns[n], sav[n]) for n in layout.names})


def _sav_options(layout: _Layout, sav: Mapping[str, _SavColumn]) -> dict[str, Any]:
    """pyreadstat.write_sav's labels and options for a table (row-compressed)."""
    return {
        "file_label": truncate_bytes(layout.title, 64),
        "column_labels": {n: layout.labels[n] or None for n in layout.names},
        "variable_value_labels": {
            name: {code: truncate_bytes(text, _SPSS_VALUE_LABEL_BYTES)
                   for code, text in v.items()}
            for name, v in layout.value_labels.items()
        },
        "missing_ranges": {n: sorted(tags) for n, tags in layout.missing.items()},
        "variable_measure": {n: _measure(layout.kinds[n], layout.items[n]) for n in layout.names},
        "variable_format": {n: c.format for n, c in sav.items() if c.format},
        "row_compress": True,
    }


def _patch_sav(data: bytearray) -> None:
    """Overwrite readstat's creation date and time (header bytes 92-108) with the fixed stamp."""
    if data[:4] not in (b"$FL2", b"$FL3"):
        raise ReleaseError("unexpected .sav layout from pyreadstat")
    ts = release_timestamp()
    stamp = (f"{ts.day:02d} {_MONTHS[ts.month - 1]} {ts.year % 100:02d}"
             f"{ts.hour:02d}:{ts.minute:02d}:{ts.second:02d}")
    data[92:109] = stamp.encode("ascii")


def write_sav(df: pd.DataFrame, model: FormModel, path: str | Path, *,
              language: str | None = None, notes: list[str] | None = None) -> Path:
    """SPSS .sav (UTF-8) with variable and value labels, user-missing codes and measure levels.

    98/99 stay as values and are declared missing (``MISSING VALUES x (98, 99)``), so SPSS
    excludes them from statistics but still shows them, labelled, in frequency tables. Strings
    longer than SPSS's 32,767 bytes are truncated with a warning (also appended to ``notes``).
    """
    import pyreadstat

    layout, columns = _prepare(df, model, language)
    sav = {n: _sav_column(n, columns[n], layout.kinds[n], model.form_id, notes)
           for n in layout.names}
    table = _sav_frame(columns, layout, sav)
    options = _sav_options(layout, sav)
    return _via_scratch(path, lambda tmp: pyreadstat.write_sav(table, tmp, **options),
                        _patch_sav)


# -- a whole release -----------------------------------------------------------------------------

_WRITERS: dict[str, Callable[..., Path]] = {
    "parquet": write_parquet, "csv": write_csv, "dta": write_dta, "sav": write_sav,
}


def model_for(table: str, models: Mapping[str, FormModel]) -> FormModel:
    """The model of a release table: ``form`` (root) or ``form.repeat`` (a repeat's table)."""
    if table in models:
        return models[table]
    form, _, repeat = table.partition(".")
    if form in models and repeat in models[form].by_name and models[form][repeat].is_repeat:
        return models[form]
    raise ReleaseError(f"no form model for table {table!r} (name it 'form' or 'form.repeat')",
                       code="release-table", form=table)


def write_release(tables: Mapping[str, pd.DataFrame], models: Mapping[str, FormModel],
                  folder: str | Path, *, language: str | None = None,
                  formats: Iterable[str] = FORMATS) -> ReleaseFiles:
    """Write ``<folder>/<table>.<ext>`` for every table and format; the files in that order.

    The result is a list of paths whose ``warnings`` attribute lists what had to be changed to
    fit a format (nothing is changed silently).
    """
    formats = tuple(formats)
    unknown = [f for f in formats if f not in _WRITERS]
    if unknown:
        raise ReleaseError(f"unknown release format(s) {unknown} (known: {', '.join(FORMATS)})",
                           code="release-format")
    folder = Path(folder)
    out = ReleaseFiles()
    for name, df in tables.items():
        model = model_for(name, models)
        for fmt in formats:
            path = folder / f"{name}.{fmt}"
            if fmt in ("dta", "sav"):
                out.append(_WRITERS[fmt](df, model, path, language=language, notes=out.warnings))
            else:
                out.append(_WRITERS[fmt](df, model, path, language=language))
    return out


__all__ = [
    "FORMATS",
    "ReleaseFiles",
    "ReleaseWarning",
    "measure_level",
    "model_for",
    "release_metadata",
    "release_timestamp",
    "write_csv",
    "write_dta",
    "write_parquet",
    "write_release",
    "write_sav",
]
