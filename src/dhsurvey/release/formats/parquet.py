"""The release Parquet file: appended batch by batch in row groups of a fixed size, and read back
one column or one block of rows at a time.

Why fixed row groups: the other formats are written from this file, and a release must be the
same bytes whether its rows came as one table or as many batches (a whole-table write is an
append of one batch). :class:`ParquetAppender` therefore buffers rows and writes row groups of
:func:`row_group_rows` rows, a number that depends only on the table's width, never on the
batches. The bound by cells keeps a row group, which Arrow decodes whole when reading, near
``ROW_GROUP_CELLS`` values however wide the table is.

Labels and missing codes ride in the schema metadata under the ``dhsurvey`` key
(:func:`release_metadata`), so R, pandas and Arrow readers find them next to the data.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import pandas as pd

from dhsurvey.forms.model import FormModel
from dhsurvey.release.labels import (
    ReleaseError,
    column_labels,
    missing_codes,
    resolve_language,
    value_labels,
)

#: At most this many rows in a row group …
ROW_GROUP_ROWS = 65_536
#: … and at most about this many cells (rows × columns), so wide tables get shorter groups.
ROW_GROUP_CELLS = 2_097_152


def row_group_rows(columns: int) -> int:
    """Rows per row group of a table of ``columns`` columns (every group but the last)."""
    return max(1, min(ROW_GROUP_ROWS, ROW_GROUP_CELLS // max(columns, 1)))


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


class ParquetAppender:
    """A release Parquet file written batch by batch, in row groups of a fixed size.

    The first batch (even an empty one) fixes the columns and pandas dtypes; every later batch
    must have the same (:class:`ReleaseError` names the column that differs). Rows are buffered
    and written in row groups of :func:`row_group_rows` rows, and the Arrow schema is taken from
    the first row group, so the file is the same bytes however the rows were batched. ``empty``,
    a frame with the table's columns and dtypes, stands for the schema when no batch came, so a
    table without rows still gets its file.

    The file is written beside ``path`` under a temporary name and renamed into place by
    :meth:`close`, so a failed run leaves no partial file; as a context manager, an error
    discards the file. Memory: the batch being written plus less than one row group.
    """

    def __init__(self, path: str | Path, model: FormModel, language: str | None = None, *,
                 empty: pd.DataFrame | None = None) -> None:
        resolve_language(model, language)
        self.path = Path(path)
        self.model = model
        self.language = language
        self.rows = 0
        self._empty = empty
        self._first: pd.DataFrame | None = None  # no rows, the first batch's columns and dtypes
        self._group = 0
        self._pending: list[pd.DataFrame] = []  # buffered rows, fewer than a row group
        self._buffered = 0
        self._schema: Any = None
        self._writer: Any = None
        self._tmp: Path | None = None
        self._closed = False

    def _check(self, df: pd.DataFrame) -> None:
        """A batch has the first batch's columns and dtypes, or an error names the column."""
        if self._first is None:
            self._first = df.iloc[:0].copy()  # not a view that keeps the batch alive
            self._group = row_group_rows(len(df.columns))
            return
        dtypes = self._first.dtypes
        if list(df.columns) != list(dtypes.index):
            raise ReleaseError(f"{self.path.name}: batch columns {list(df.columns)} differ from "
                               f"the first batch's {list(dtypes.index)}", code="release-batch")
        for column in df.columns:
            if df[column].dtype != dtypes[column]:
                raise ReleaseError(f"{self.path.name}: column {column!r} is {df[column].dtype} "
                                   f"in this batch, {dtypes[column]} in the first",
                                   code="release-batch", field=str(column))

    def _open(self, df: pd.DataFrame) -> None:
        """The schema of ``df`` with the release metadata; opens the temporary file."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.Schema.from_pandas(df, preserve_index=False)
        meta = dict(schema.metadata or {})
        meta[b"dhsurvey"] = json.dumps(release_metadata(df, self.model, self.language),
                                       sort_keys=True, ensure_ascii=False).encode("utf-8")
        self._schema = schema.with_metadata(meta)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp",
                                   dir=self.path.parent)
        os.close(fd)
        self._tmp = Path(tmp)
        self._writer = pq.ParquetWriter(tmp, self._schema, compression="snappy")

    def _table(self, df: pd.DataFrame) -> Any:
        """Rows as an Arrow table of the file's schema, or an error naming the column."""
        import pyarrow as pa

        try:
            return pa.Table.from_pandas(df, schema=self._schema, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as error:
            for field in self._schema:
                try:
                    pa.array(df[field.name], type=field.type, from_pandas=True)
                except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                    raise ReleaseError(
                        f"{self.path.name}: column {field.name!r} does not fit the schema's "
                        f"{field.type} ({error})", code="release-batch",
                        field=field.name) from error
            raise ReleaseError(f"{self.path.name}: rows do not fit the schema ({error})",
                               code="release-batch") from error

    def _write_group(self, rows: pd.DataFrame) -> None:
        """One row group (a contiguous frame, so Arrow cuts its pages the same every time)."""
        rows = rows.reset_index(drop=True)
        if self._writer is None:
            self._open(rows)
        self._writer.write_table(self._table(rows), row_group_size=max(len(rows), 1))

    def write(self, df: pd.DataFrame) -> None:
        """Append the rows of ``df`` (index dropped); full row groups are written at once."""
        if self._closed:
            raise ReleaseError(f"{self.path.name}: appender already closed", code="release-batch")
        self._check(df)
        self.rows += len(df)
        at = 0
        while at < len(df):
            take = min(self._group - self._buffered, len(df) - at)
            part, at = df.iloc[at:at + take], at + take
            if take == self._group:  # a whole group straight from the batch
                self._write_group(part)
                continue
            self._pending.append(part.copy())  # the caller may reuse its frame
            self._buffered += take
            if self._buffered == self._group:
                self._flush()

    def _flush(self) -> None:
        if self._pending:
            rows = pd.concat(self._pending, ignore_index=True)
            self._pending, self._buffered = [], 0
            self._write_group(rows)

    def close(self) -> Path:
        """Write the last row group, finish the file and rename it into place. Without any
        batch, only an ``empty`` frame says what the columns are; without one there is nothing
        to write."""
        if self._closed:
            return self.path
        try:
            if self._first is None:
                if self._empty is None:
                    raise ReleaseError(f"{self.path.name}: no batch written and no empty frame "
                                       "for the schema", code="release-batch")
                self._check(self._empty)
            self._flush()
            if self._writer is None:  # no rows: one empty row group, as pyarrow writes one
                assert self._first is not None
                self._write_group(self._first)
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
        self._pending = []
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


#: Cells of a release Parquet file up to which :class:`ParquetSource` reads it whole (about
#: 40 MB of numbers; a usual country's table is far below, a million children's far above).
WHOLE_CELLS = 5_000_000


class ParquetSource:
    """A release Parquet file read one column, or one block of rows, at a time, with the
    dtypes ``pd.read_parquet`` gives (blocks of at most ``batch_rows`` rows)."""

    def __init__(self, path: str | Path, batch_rows: int) -> None:
        import pyarrow.parquet as pq

        self.path = Path(path)
        # Without pre_buffer=False, Arrow buffers the file's column chunks ahead of reading:
        # the whole file, for a sequential scan.
        self.file = pq.ParquetFile(self.path, pre_buffer=False)
        self.schema = self.file.schema_arrow
        meta = self.schema.metadata or {}
        # The pandas metadata lists every column: parsed once, not at each column read.
        self._pandas: dict[str, Any] | None = json.loads(meta[b"pandas"]) \
            if b"pandas" in meta else None
        index = self._index_columns()
        self.names = [n for n in self.schema.names if n not in index]
        self.rows = self.file.metadata.num_rows
        self.batch_rows = max(1, int(batch_rows))
        self._whole: pd.DataFrame | None = None
        self._group: pd.DataFrame | None = None

    def _index_columns(self) -> set[str]:
        if self._pandas is None:
            return set()
        return {c for c in self._pandas.get("index_columns", []) if isinstance(c, str)}

    def column(self, name: str) -> pd.Series:
        """One whole column.

        A file of at most :data:`WHOLE_CELLS` cells (a usual country's) is read whole at the
        first column asked for and kept: reading a wide table a column at a time costs a
        file read per column, far more than the table itself. A larger file is read a group
        of neighbouring columns at a time (at most :data:`WHOLE_CELLS` cells), the group
        holding ``name`` kept until a column outside it is asked for: the columns are asked
        for in order."""
        if self.rows * len(self.names) <= WHOLE_CELLS:
            if self._whole is None:
                self._whole = self.file.read(use_pandas_metadata=True).to_pandas(
                ).reset_index(drop=True)
            return self._whole[name]
        if self._group is None or name not in self._group.columns:
            self._group = None  # the last group is let go before the next is read
            at = self.names.index(name)
            self._group = self._read(self.names[at:at + max(1, WHOLE_CELLS // max(self.rows, 1))])
        return self._group[name]

    def _read(self, names: list[str]) -> pd.DataFrame:
        """The columns ``names`` as ``pd.read_parquet`` would give them."""
        table = self.file.read(columns=names, use_pandas_metadata=True)
        meta = table.schema.metadata or {}
        if self._pandas is not None:  # the file's metadata, which the table carries
            # The file's pandas metadata lists every column, and converting looks each one
            # up: keep the entries of the columns read (a wide table is read in groups of
            # columns, so that would cost columns² lookups).
            present = set(table.schema.names)
            pandas = {**self._pandas, "columns": [
                c for c in self._pandas.get("columns", [])
                if c.get("field_name", c.get("name")) in present]}
            table = table.replace_schema_metadata({**meta, b"pandas": json.dumps(pandas)})
        return table.to_pandas().reset_index(drop=True)

    def batches(self, limit: int) -> Iterator[pd.DataFrame]:
        """Blocks of at most ``batch_rows`` and ``limit`` rows, in order (none without rows).

        A file already read whole (:meth:`column`) is cut into blocks rather than decoded
        again, unless a column is dictionary-encoded (categoricals), whose categories a block
        decoded alone takes from its own rows."""
        import pyarrow as pa

        size = min(self.batch_rows, limit)
        if self._whole is not None and not any(pa.types.is_dictionary(field.type)
                                               for field in self.schema):
            for at in range(0, self.rows, size):
                yield self._whole.iloc[at:at + size].reset_index(drop=True)
            return
        for batch in self.file.iter_batches(batch_size=size):
            if batch.num_rows:
                table = pa.Table.from_batches([batch]).replace_schema_metadata(
                    self.schema.metadata)
                yield table.to_pandas().reset_index(drop=True)

    def empty(self) -> pd.DataFrame:
        """The table's columns and dtypes, without rows."""
        return self.schema.empty_table().to_pandas().reset_index(drop=True)


class ParquetTable:
    """A release Parquet file as a table read one column at a time.

    Why: the codebook and the manifest read a release's columns one by one (and its shape);
    a country of a million children need not be loaded whole for that. Columns come with
    the dtypes ``pd.read_parquet`` gives.
    """

    def __init__(self, path: str | Path) -> None:
        self.source = ParquetSource(path, 1)

    @property
    def columns(self) -> pd.Index:
        return pd.Index(self.source.names)

    @property
    def shape(self) -> tuple[int, int]:
        return self.source.rows, len(self.source.names)

    @property
    def dtypes(self) -> pd.Series:
        return self.source.empty().dtypes

    def __len__(self) -> int:
        return self.source.rows

    def __getitem__(self, name: str) -> pd.Series:
        return self.source.column(name)

    def reset_index(self, drop: bool = True) -> ParquetTable:
        """Itself: rows are numbered from 0 as read (for code written for DataFrames)."""
        return self


__all__ = [
    "ROW_GROUP_CELLS",
    "WHOLE_CELLS",
    "ROW_GROUP_ROWS",
    "ParquetAppender",
    "ParquetSource",
    "ParquetTable",
    "release_metadata",
    "row_group_rows",
]
