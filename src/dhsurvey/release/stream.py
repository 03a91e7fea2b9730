"""Release files of tables too large to hold twice: Parquet appended batch by batch, and CSV,
Stata and SPSS written from that Parquet without loading the whole table.

Why: a release table of a million children with replicate weights takes gigabytes as a pandas
frame, and pyreadstat writes only whole frames. :class:`ParquetAppender` writes a table one batch
(row group) at a time; :func:`write_from_parquet` first takes every whole-column decision of the
whole-frame writers (:mod:`dhsurvey.release.writers`) reading one column at a time, then writes
each format batch by batch, so memory stays near one batch plus one column.

The files are byte-identical to what :func:`~dhsurvey.release.writers.write_csv`,
:func:`~dhsurvey.release.writers.write_dta` and :func:`~dhsurvey.release.writers.write_sav` write
for ``pd.read_parquet(path)``. Stata and SPSS rows have a fixed width, so pyreadstat writes each
batch behind a *template* row that forces the whole table's types and string widths; the
template row is cut off and the batches' rows are spliced between the header and trailer of a
template-only file, whose row count (and .dta map of offsets) is then patched. SPSS rows are
written uncompressed by pyreadstat and compressed here with readstat's bytecode scheme.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import struct
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pandas as pd

from dhsurvey.forms.model import FormModel, Item
from dhsurvey.io import atomic_open
from dhsurvey.release.labels import ReleaseError, field_for, resolve_language
from dhsurvey.release.writers import (
    _CSV_ROWS,
    _as_days,
    _column_kind,
    _convert,
    _csv_block,
    _csv_plan,
    _dta_frame,
    _dta_options,
    _layout,
    _patch_dta,
    _patch_sav,
    _sav_column,
    _sav_frame,
    _sav_options,
    _SavColumn,
    _stata_column,
    _StataColumn,
    _values,
    release_metadata,
    write_csv,
    write_dta,
    write_sav,
)

#: Rows handed to pyreadstat at a time: its frame, the row bytes and their compression take
#: several times the memory of the batch's numbers.
_READSTAT_ROWS = 10_000
#: Stata strings of this many bytes or more are strL (pyreadstat, format 118).
_STATA_STR_MAX = 2045
#: SPSS system-missing (-DBL_MAX) and eight spaces, as 8-byte words.
_SAV_SYSMIS = np.frombuffer(struct.pack("<d", -np.finfo("float64").max), "<u8")[0]
_SAV_SPACES = np.frombuffer(b" " * 8, "<u8")[0]
#: Record 7, subtype 16 (64-bit case count): two 8-byte elements follow.
_SAV_CASES64 = struct.pack("<4i", 7, 16, 8, 2)


# -- Parquet -------------------------------------------------------------------------------------


class ParquetAppender:
    """A release Parquet file written one batch (row group) at a time.

    Carries the same ``dhsurvey`` schema metadata as
    :func:`~dhsurvey.release.writers.write_parquet`. The first batch fixes the schema and the
    pandas dtypes; every later batch must have the same (:class:`ReleaseError` names the column
    that differs). ``empty``, a frame with the table's columns and dtypes, is written when no
    batch came, so a table without rows still gets its file. The file is written beside
    ``path`` under a temporary name and renamed into place by :meth:`close`, so a failed run
    leaves no partial file; as a context manager, an error discards the file.
    """

    def __init__(self, path: str | Path, model: FormModel, language: str | None = None, *,
                 empty: pd.DataFrame | None = None) -> None:
        resolve_language(model, language)
        self.path = Path(path)
        self.model = model
        self.language = language
        self.rows = 0
        self._empty = empty
        self._schema: Any = None
        self._writer: Any = None
        self._tmp: Path | None = None
        self._dtypes: pd.Series | None = None
        self._closed = False

    def _open(self, df: pd.DataFrame) -> Any:
        """Schema of the first batch, with the release metadata; opens the temporary file."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(df, preserve_index=False)
        meta = dict(table.schema.metadata or {})
        meta[b"dhsurvey"] = json.dumps(release_metadata(df, self.model, self.language),
                                       sort_keys=True, ensure_ascii=False).encode("utf-8")
        self._schema = table.schema.with_metadata(meta)
        self._dtypes = df.dtypes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp",
                                   dir=self.path.parent)
        os.close(fd)
        self._tmp = Path(tmp)
        self._writer = pq.ParquetWriter(tmp, self._schema, compression="snappy")
        return table.replace_schema_metadata(meta)

    def _fit(self, df: pd.DataFrame) -> Any:
        """A later batch as a table of the fixed schema, or an error naming the column."""
        import pyarrow as pa

        assert self._dtypes is not None
        if list(df.columns) != list(self._dtypes.index):
            raise ReleaseError(f"{self.path.name}: batch columns {list(df.columns)} differ from "
                               f"the first batch's {list(self._dtypes.index)}",
                               code="release-batch")
        for column in df.columns:
            if df[column].dtype != self._dtypes[column]:
                raise ReleaseError(f"{self.path.name}: column {column!r} is {df[column].dtype} "
                                   f"in this batch, {self._dtypes[column]} in the first",
                                   code="release-batch", field=str(column))
        try:
            return pa.Table.from_pandas(df, schema=self._schema, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as error:
            for field in self._schema:
                try:
                    pa.array(df[field.name], type=field.type, from_pandas=True)
                except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                    raise ReleaseError(
                        f"{self.path.name}: column {field.name!r} of this batch does not fit "
                        f"the schema's {field.type} ({error})", code="release-batch",
                        field=field.name) from error
            raise ReleaseError(f"{self.path.name}: batch does not fit the schema ({error})",
                               code="release-batch") from error

    def write(self, df: pd.DataFrame) -> None:
        """Append ``df`` (index dropped) as one row group."""
        if self._closed:
            raise ReleaseError(f"{self.path.name}: appender already closed", code="release-batch")
        table = self._open(df) if self._writer is None else self._fit(df)
        self._writer.write_table(table)
        self.rows += len(df)

    def close(self) -> Path:
        """Finish the file and rename it into place. Without any batch, only an ``empty``
        frame says what the columns are; without one there is nothing to write."""
        if self._closed:
            return self.path
        if self._writer is None:
            if self._empty is None:
                raise ReleaseError(f"{self.path.name}: no batch written and no empty frame "
                                   "for the schema", code="release-batch")
            self.write(self._empty.iloc[:0])
        try:
            self._writer.close()
            os.replace(self._tmp, self.path)  # type: ignore[arg-type]
        except BaseException:
            self.discard()
            raise
        self._closed = True
        return self.path

    def discard(self) -> None:
        """Drop the temporary file; nothing is written to ``path``."""
        self._closed = True
        if self._writer is not None:
            try:
                self._writer.close()
            finally:
                self._writer = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> ParquetAppender:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if kind is None:
            self.close()
        else:
            self.discard()


# -- reading a release Parquet file --------------------------------------------------------------


class _Source:
    """A release Parquet file read one column, or one batch of rows, at a time, with the
    dtypes ``pd.read_parquet`` gives."""

    def __init__(self, path: str | Path, batch_rows: int) -> None:
        import pyarrow.parquet as pq

        self.path = Path(path)
        # Without pre_buffer=False, Arrow buffers the file's column chunks ahead of reading:
        # the whole file, for a sequential scan.
        self.file = pq.ParquetFile(self.path, pre_buffer=False)
        self.schema = self.file.schema_arrow
        self.names = [n for n in self.schema.names if n not in self._index_columns()]
        self.rows = self.file.metadata.num_rows
        self.batch_rows = max(1, int(batch_rows))

    def _index_columns(self) -> set[str]:
        meta = self.schema.metadata or {}
        if b"pandas" not in meta:
            return set()
        return {c for c in json.loads(meta[b"pandas"]).get("index_columns", [])
                if isinstance(c, str)}

    def column(self, name: str) -> pd.Series:
        table = self.file.read(columns=[name], use_pandas_metadata=True)
        return table.to_pandas().reset_index(drop=True)[name]

    def batches(self, limit: int) -> Iterator[pd.DataFrame]:
        """Batches of at most ``batch_rows`` and ``limit`` rows, in order."""
        import pyarrow as pa

        for batch in self.file.iter_batches(batch_size=min(self.batch_rows, limit)):
            table = pa.Table.from_batches([batch]).replace_schema_metadata(self.schema.metadata)
            yield table.to_pandas().reset_index(drop=True)

    def empty(self) -> pd.DataFrame:
        return self.schema.empty_table().to_pandas().reset_index(drop=True)


# -- per-column decisions ------------------------------------------------------------------------


class _Plan:
    """Every whole-column decision of the whole-frame writers, taken one column at a time."""

    def __init__(self, source: _Source, model: FormModel, formats: tuple[str, ...],
                 language: str | None, notes: list[str] | None) -> None:
        self.csv: dict[str, str] = {}
        self.stata: dict[str, _StataColumn] = {}
        self.sav: dict[str, _SavColumn] = {}
        kinds: dict[str, str] = {}
        items = {n: field_for(model, n) for n in source.names}
        labelled = "dta" in formats or "sav" in formats
        for name in source.names:
            column = source.column(name)
            kinds[name] = _column_kind(column)
            if "csv" in formats:
                self.csv[name] = _csv_plan(column, items[name])
            if not labelled:
                continue
            values = _values(column, kinds[name], items[name])
            del column
            if "dta" in formats:
                # Tagged columns are known once the layout is (below); they need no values.
                self.stata[name] = _stata_column(values, kinds[name], {})
                if self.stata[name].width >= _STATA_STR_MAX:
                    raise ReleaseError(
                        f"{model.form_id}.{name}: strings of {self.stata[name].width} bytes "
                        "need Stata strL, which the streaming writer cannot splice; write "
                        "this table with write_dta", code="release-strl", field=name)
            if "sav" in formats:
                self.sav[name] = _sav_column(name, values, kinds[name], model.form_id, notes)
            del values
        self.layout = _layout(source.names, kinds, model, language) if labelled else None
        if self.layout is not None and "dta" in formats:
            for name, tags in self.layout.missing.items():
                self.stata[name] = _stata_column(pd.Series(dtype="float64"), kinds[name], tags)


# -- template rows -------------------------------------------------------------------------------


def _template(kind: str, item: Item | None, storage: str, width: int) -> Any:
    """One value that makes pyreadstat choose the whole column's type and string width."""
    if storage == "string":
        return "x" * width
    if storage == "long":
        return 0
    if kind in ("date", "datetime"):
        return dt.date(1970, 1, 1) if _as_days(kind, item) else pd.Timestamp(0)
    return 0.0


def _with_template(frame: pd.DataFrame, template: Mapping[str, Any]) -> pd.DataFrame:
    """``frame`` behind one template row; every column keeps its dtype."""
    head = {c: pd.Series([template[c]], dtype=frame[c].dtype) for c in frame.columns}
    return pd.concat([pd.DataFrame(head), frame], ignore_index=True)


def _scratch_write(write: Any, frame: pd.DataFrame, options: Mapping[str, Any]) -> bytes:
    with tempfile.TemporaryDirectory(prefix="dhsurvey-release-") as scratch:
        tmp = os.path.join(scratch, "part")
        write(frame, tmp, **options)
        return Path(tmp).read_bytes()


# -- Stata ---------------------------------------------------------------------------------------


def _dta_sections(data: bytes | bytearray) -> tuple[str, tuple[int, ...]]:
    """Byte order and the map of section offsets of a readstat .dta 118."""
    pos = data.index(b"<byteorder>") + len(b"<byteorder>")
    order = "<" if data[pos:pos + 3] == b"LSF" else ">"
    pos = data.index(b"<map>") + len(b"<map>")
    return order, struct.unpack(order + "14Q", data[pos:pos + 14 * 8])


def _dta_rows(data: bytes) -> bytes:
    """The bytes between ``<data>`` and ``</data>``."""
    _, offsets = _dta_sections(data)
    start, end = offsets[9] + len(b"<data>"), offsets[10] - len(b"</data>")
    if data[offsets[9]:start] != b"<data>" or data[end:offsets[10]] != b"</data>":
        raise ReleaseError("unexpected .dta layout from pyreadstat (no <data>)")
    return data[start:end]


def _write_dta(source: _Source, plan: _Plan, path: Path) -> Path:
    import pyreadstat

    layout = plan.layout
    assert layout is not None
    options = _dta_options(layout)
    template = {f"v{i + 1}": _template(layout.kinds[n], layout.items[n], plan.stata[n].storage,
                                       plan.stata[n].width)
                for i, n in enumerate(layout.names)}

    def rows(block: pd.DataFrame) -> pd.DataFrame:
        return _dta_frame(_convert(block, layout), layout, plan.stata)

    # Header, labels and trailer from a template-only file; its one row gives the row width.
    head = bytearray(_scratch_write(pyreadstat.write_dta,
                                    _with_template(rows(source.empty()), template), options))
    _patch_dta(head, layout.names)
    width = len(_dta_rows(head))
    order, offsets = _dta_sections(head)
    n_at = head.index(b"<N>") + len(b"<N>")
    head[n_at:n_at + 8] = struct.pack(order + "Q", source.rows)
    grow = (source.rows - 1) * width
    map_at = head.index(b"<map>") + len(b"<map>")
    head[map_at:map_at + 14 * 8] = struct.pack(
        order + "14Q", *offsets[:10], *(o + grow for o in offsets[10:]))
    start, end = offsets[9] + len(b"<data>"), offsets[10] - len(b"</data>")
    with atomic_open(path) as fh:
        fh.write(head[:start])
        for block in source.batches(_READSTAT_ROWS):
            data = _dta_rows(_scratch_write(pyreadstat.write_dta,
                                            _with_template(rows(block), template), options))
            if len(data) != width * (len(block) + 1):
                raise ReleaseError(f"{path.name}: rows of a batch are not {width} bytes wide")
            fh.write(data[width:])
        fh.write(head[end:])
    return path


# -- SPSS ----------------------------------------------------------------------------------------


def _sav_slots(kind: str, width: int) -> int:
    """8-byte slots a variable takes in a .sav row (readstat: very long strings in segments of
    252 bytes, each stored in 256; other strings rounded up to 8; numbers one slot)."""
    if kind != "string":
        return 1
    width = max(width, 1)
    if width > 255:
        segments = (width + 251) // 252
        return ((segments - 1) * 256 + (width - (segments - 1) * 252 + 7) // 8 * 8) // 8
    return (width + 7) // 8


def _sav_compress(slots: np.ndarray, text: np.ndarray, last: bool) -> bytes:
    """Rows of 8-byte slots (``(rows, slots)`` little-endian words) compressed as readstat
    does: each row starts a block of 8 command bytes followed by the raw words they announce
    (253); 254 eight spaces, 255 system-missing, 1-251 the whole number code-100; a row ends
    with its zero-padded last block, which is a new block if the row filled the previous one;
    252 ends the file."""
    n, width = slots.shape
    blocks = width // 8 + 1
    codes = np.zeros((n, blocks * 8), dtype=np.uint8)
    if n == 0:
        return b""
    values = slots.view("<f8")
    small = ~text & (values > -100) & (values < 152) & (np.trunc(values) == values)
    raw = np.ones((n, width), dtype=bool)
    raw[small] = False
    part = codes[:, :width]
    part[:] = 253
    with np.errstate(invalid="ignore"):
        part[small] = (values[small] + 100).astype(np.uint8)
    missing = ~text & (slots == _SAV_SYSMIS)
    spaces = text & (slots == _SAV_SPACES)
    part[missing | spaces] = np.where(missing, 255, 254)[missing | spaces]
    raw &= ~(missing | spaces)
    if last:
        codes[-1, width] = 252
    raw_full = np.zeros((n, blocks * 8), dtype=bool)
    raw_full[:, :width] = raw
    per_block = raw_full.reshape(n, blocks, 8)
    units = 1 + per_block.sum(axis=2)  # a command word and its raw words, per block
    starts = np.cumsum(units.ravel()) - units.ravel()
    out = np.empty(int(units.sum()), dtype="<u8")
    out[starts] = codes.reshape(n, blocks, 8).copy().view("<u8").ravel()
    rank = np.cumsum(per_block, axis=2) - 1
    where = (starts.reshape(n, blocks)[:, :, None] + 1 + rank)[per_block]
    out[where] = slots[raw]
    return out.tobytes()


def _sav_rows(data: bytes, rows: int) -> np.ndarray:
    """The last ``rows`` rows of an uncompressed readstat .sav as ``(rows, slots)`` words."""
    (slots,) = struct.unpack("<i", data[68:72])
    size = rows * slots * 8
    return np.frombuffer(data[len(data) - size:], dtype="<u8").reshape(rows, slots)


def _write_sav(source: _Source, plan: _Plan, path: Path) -> Path:
    import pyreadstat

    layout = plan.layout
    assert layout is not None
    options = _sav_options(layout, plan.sav)
    flat = {**options, "row_compress": False}
    kinds = {n: "string" if layout.kinds[n] == "string" else "number" for n in layout.names}
    template = {n: _template(layout.kinds[n], layout.items[n], kinds[n], plan.sav[n].width)
                for n in layout.names}
    text = np.concatenate([np.full(_sav_slots(kinds[n], plan.sav[n].width), kinds[n] == "string")
                           for n in layout.names]) if layout.names else np.zeros(0, dtype=bool)

    def rows(block: pd.DataFrame) -> pd.DataFrame:
        return _with_template(_sav_frame(_convert(block, layout), layout, plan.sav), template)

    only = rows(source.empty())
    plain = _scratch_write(pyreadstat.write_sav, only, flat)
    if plain[:4] != b"$FL2" or struct.unpack("<i", plain[64:68])[0] != 2:
        raise ReleaseError("unexpected .sav layout from pyreadstat (expected little-endian)")
    if struct.unpack("<i", plain[68:72])[0] != len(text):
        raise ReleaseError(f"{path.name}: unexpected .sav row width from pyreadstat")
    first = _sav_compress(_sav_rows(plain, 1), text, last=True)
    head = bytearray(_scratch_write(pyreadstat.write_sav, only, options))
    if not head.endswith(first):
        raise ReleaseError(f"{path.name}: .sav compression differs from pyreadstat's")
    del head[len(head) - len(first):]
    _patch_sav(head)
    head[80:84] = struct.pack("<i", source.rows)
    # The extension record 7.16 repeats the case count in 64 bits (after a 64-bit 1).
    at = head.find(_SAV_CASES64 + struct.pack("<q", 1) + struct.pack("<q", 1))
    if at < 0:
        raise ReleaseError(f"{path.name}: no 64-bit case count in pyreadstat's .sav header")
    at += len(_SAV_CASES64) + 8
    head[at:at + 8] = struct.pack("<q", source.rows)
    done = 0
    with atomic_open(path) as fh:
        fh.write(head)
        for block in source.batches(_READSTAT_ROWS):
            data = _scratch_write(pyreadstat.write_sav, rows(block), flat)
            done += len(block)
            fh.write(_sav_compress(_sav_rows(data, len(block)), text, last=done == source.rows))
    return path


# -- CSV -----------------------------------------------------------------------------------------


def _write_csv(source: _Source, plan: _Plan, path: Path) -> Path:
    with atomic_open(path) as fh:
        for i, block in enumerate(source.batches(_CSV_ROWS)):
            fh.write(_csv_block(block, plan.csv, header=i == 0))
    return path


# -- writing ---------------------------------------------------------------------------------------


def write_from_parquet(parquet_path: str | Path, model: FormModel, folder: str | Path, *,
                       name: str | None = None,
                       formats: Iterable[str] = ("csv", "dta", "sav"),
                       language: str | None = None, notes: list[str] | None = None,
                       batch_rows: int = 50_000) -> list[Path]:
    """Write ``<folder>/<name>.csv|.dta|.sav`` from a release Parquet file without loading the
    whole table (``name`` defaults to the file's stem).

    Each column is read once to take the whole-column decisions of the whole-frame writers
    (kinds, CSV plans, Stata storage, SPSS widths, formats and truncation warnings, which go to
    ``notes`` too), then each format is written batch by batch: at most ``batch_rows`` rows,
    and fewer for encoding (20,000 for CSV, 10,000 for pyreadstat), whose text and row bytes
    take several times a batch's numbers. The files are byte-identical to
    ``write_csv``/``write_dta``/``write_sav`` of ``pd.read_parquet(parquet_path)``.

    Memory is about one batch and one column, provided the file's row groups are not much
    larger than the batches (Arrow decodes a row group's column chunks whole);
    :class:`ParquetAppender` writes one row group per batch. Strings that would need Stata strL
    (≥ 2045 bytes) are refused for .dta (:class:`ReleaseError`): splicing rows needs fixed-width
    rows; write such a table with ``write_dta``.
    """
    formats = tuple(formats)
    unknown = [f for f in formats if f not in ("csv", "dta", "sav")]
    if unknown:
        raise ReleaseError(f"unknown streamed format(s) {unknown} (known: csv, dta, sav)",
                           code="release-format")
    resolve_language(model, language)
    source = _Source(parquet_path, batch_rows)
    folder = Path(folder)
    stem = name or Path(parquet_path).stem
    paths = [folder / f"{stem}.{fmt}" for fmt in formats]
    if source.rows == 0:
        # Nothing to stream: the whole-frame writers on the empty table.
        empty = source.empty()
        writers = {"csv": write_csv, "dta": write_dta, "sav": write_sav}
        for fmt, path in zip(formats, paths, strict=True):
            extra: dict[str, Any] = {"notes": notes} if fmt != "csv" else {}
            writers[fmt](empty, model, path, language=language, **extra)
        return paths
    plan = _Plan(source, model, formats, language, notes)
    for fmt, path in zip(formats, paths, strict=True):
        if fmt == "csv":
            _write_csv(source, plan, path)
        elif fmt == "dta":
            _write_dta(source, plan, path)
        else:
            _write_sav(source, plan, path)
    return paths


__all__ = ["ParquetAppender", "write_from_parquet"]
