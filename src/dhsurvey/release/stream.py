"""CSV, Stata and SPSS release files written from a release Parquet file, a block of rows at a
time: the one write path of every release file.

Why: a release table of a million children with replicate weights takes gigabytes as a pandas
frame, and pyreadstat writes only whole frames. The table is therefore appended to Parquet batch
by batch (:class:`~dhsurvey.release.formats.parquet.ParquetAppender`), and
:func:`write_formats` first takes every whole-column decision (kinds, CSV formats, Stata
storage, SPSS widths and truncation) reading one column at a time, then writes each format block
by block, so memory stays near one block plus one column. A whole table is the same stream with
one batch (:mod:`dhsurvey.release.writers`). The Parquet file's row groups do not depend on the
batches, and no format depends on the blocks, so the files are the same bytes however the rows
came.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from dhsurvey.forms.model import FormModel
from dhsurvey.release.encode import Layout, column_kind, column_values, table_layout
from dhsurvey.release.formats.csv import csv_plan, stream_csv
from dhsurvey.release.formats.parquet import ParquetAppender, ParquetSource
from dhsurvey.release.formats.spss import SavColumn, sav_column, stream_sav
from dhsurvey.release.formats.stata import StataColumn, stata_column, stream_dta
from dhsurvey.release.labels import ReleaseError, check_names, fields_for, resolve_language

#: Formats written from the Parquet file.
STREAMED = ("csv", "dta", "sav")
#: Rows read from the Parquet file at a time (encoding takes fewer: CSV_ROWS, READSTAT_ROWS).
BATCH_ROWS = 50_000


class _Plan:
    """Every whole-column decision of the formats asked for, taken one column at a time."""

    def __init__(self, source: ParquetSource, model: FormModel, formats: tuple[str, ...],
                 language: str | None, notes: list[str] | None) -> None:
        self.csv: dict[str, str] = {}
        self.stata: dict[str, StataColumn] = {}
        self.sav: dict[str, SavColumn] = {}
        self.layout: Layout | None = None
        labelled = "dta" in formats or "sav" in formats
        if labelled:
            check_names(source.names, model.form_id)
        kinds: dict[str, str] = {}
        items = fields_for(model, source.names)
        for name in source.names:
            column = source.column(name)
            kinds[name] = column_kind(column)
            if "csv" in formats:
                self.csv[name] = csv_plan(column, items[name])
            if not labelled:
                continue
            values = column_values(column, kinds[name], items[name])
            del column
            if "dta" in formats:
                # Tagged columns are known once the layout is (below); they need no values.
                self.stata[name] = stata_column(values, kinds[name], {})
            if "sav" in formats:
                self.sav[name] = sav_column(name, values, kinds[name], model.form_id, notes)
            del values
        if labelled:
            self.layout = table_layout(source.names, kinds, model, language)
        if self.layout is not None and "dta" in formats:
            for name, tags in self.layout.missing.items():
                self.stata[name] = stata_column(pd.Series(dtype="float64"), kinds[name], tags)


def write_formats(parquet_path: str | Path, model: FormModel,
                  targets: Mapping[str, str | Path], *, language: str | None = None,
                  notes: list[str] | None = None, batch_rows: int = BATCH_ROWS) -> list[Path]:
    """Write each ``format → path`` of ``targets`` (csv, dta, sav) from a release Parquet file
    without loading the whole table; the paths in that order.

    Each column is read once for the whole-column decisions (SPSS truncation warnings go to
    ``notes`` too), then each format is written atomically block by block: at most
    ``batch_rows`` rows, and fewer for encoding (``CSV_ROWS`` for CSV, ``READSTAT_ROWS`` for
    pyreadstat), whose text and row bytes take several times a block's numbers. Memory is about
    one block, one row group and one column.
    """
    unknown = [f for f in targets if f not in STREAMED]
    if unknown:
        raise ReleaseError(f"unknown streamed format(s) {unknown} (known: {', '.join(STREAMED)})",
                           code="release-format")
    resolve_language(model, language)
    if not targets:
        return []
    source = ParquetSource(parquet_path, batch_rows)
    plan = _Plan(source, model, tuple(targets), language, notes)
    out = []
    for fmt, path in targets.items():
        if fmt == "csv":
            out.append(stream_csv(source, plan.csv, path))
        elif fmt == "dta":
            assert plan.layout is not None
            out.append(stream_dta(source, plan.layout, plan.stata, path))
        else:
            assert plan.layout is not None
            out.append(stream_sav(source, plan.layout, plan.sav, path))
    return out


def write_from_parquet(parquet_path: str | Path, model: FormModel, folder: str | Path, *,
                       name: str | None = None, formats: Iterable[str] = STREAMED,
                       language: str | None = None, notes: list[str] | None = None,
                       batch_rows: int = BATCH_ROWS) -> list[Path]:
    """Write ``<folder>/<name>.csv|.dta|.sav`` from a release Parquet file (``name`` defaults
    to the file's stem): :func:`write_formats` with those paths."""
    stem = name or Path(parquet_path).stem
    return write_formats(parquet_path, model, {f: Path(folder) / f"{stem}.{f}" for f in formats},
                         language=language, notes=notes, batch_rows=batch_rows)


__all__ = ["BATCH_ROWS", "STREAMED", "ParquetAppender", "write_formats", "write_from_parquet"]
