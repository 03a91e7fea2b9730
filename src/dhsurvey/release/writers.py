"""Release files of whole tables: Parquet, CSV, Stata (.dta 118) and SPSS (.sav).

Why this is thin: the four formats must agree, and a table too large to hold twice is written
batch by batch (:mod:`dhsurvey.release.stream`). So a whole table takes the same path as one
batch: it is appended to the release Parquet file, and CSV, Stata and SPSS are written from that
file; the bytes are those of any batching of the same rows. Every file is labelled in the
release language and written through a temporary file and a rename (``dhsurvey.io``), so a
killed run never leaves half a file behind, and a rerun gives byte-identical files (readstat's
header clock is overwritten with :func:`release_timestamp`).

Missing values: reserved codes 98/99 (:func:`~dhsurvey.release.labels.missing_codes`) stay
codes in Parquet and CSV, become Stata extended missing ``.d``/``.r`` (labelled) and stay 98/99
in SPSS, declared user-missing so SPSS leaves them out of statistics.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from dhsurvey.forms.model import FormModel
from dhsurvey.release.encode import ReleaseWarning
from dhsurvey.release.formats.parquet import ParquetAppender, release_metadata
from dhsurvey.release.formats.readstat import release_timestamp
from dhsurvey.release.formats.spss import measure_level
from dhsurvey.release.labels import ReleaseError
from dhsurvey.release.stream import write_formats

FORMATS = ("parquet", "csv", "dta", "sav")
#: Cells of a release from which its formats are written on every core (below, forking costs
#: more than it saves).
PARALLEL_CELLS = 2_000_000


class ReleaseFiles(list[Path]):
    """The files written, in order, and the warnings raised while writing them."""

    def __init__(self, paths: Iterable[Path] = (), warnings: Iterable[str] = ()) -> None:
        super().__init__(paths)
        self.warnings: list[str] = list(warnings)


@contextmanager
def _as_parquet(df: pd.DataFrame, model: FormModel, language: str | None,
                path: str | Path | None = None) -> Iterator[Path]:
    """``df`` appended as one batch to the release Parquet file ``path``, or to a scratch
    file (removed afterwards) when no Parquet file is wanted."""
    with tempfile.TemporaryDirectory(prefix="dhsurvey-release-") as scratch:
        target = Path(path) if path is not None else Path(scratch) / "table.parquet"
        with ParquetAppender(target, model, language) as appender:
            appender.write(df)
        yield target


def _write(fmt: str, df: pd.DataFrame, model: FormModel, path: str | Path,
           language: str | None, notes: list[str] | None = None) -> Path:
    with _as_parquet(df, model, language) as source:
        return write_formats(source, model, {fmt: path}, language=language, notes=notes)[0]


def write_parquet(df: pd.DataFrame, model: FormModel, path: str | Path, *,
                  language: str | None = None) -> Path:
    """The typed table as Parquet (pandas/R/Arrow keep dtypes); labels in schema metadata.

    Codes 98/99 stay codes here: the ``dhsurvey`` metadata key lists them as missing codes.
    """
    with _as_parquet(df, model, language, path):
        return Path(path)


def write_csv(df: pd.DataFrame, model: FormModel, path: str | Path, *,
              language: str | None = None) -> Path:
    """UTF-8 CSV (:mod:`~dhsurvey.release.formats.csv`): codes, not labels (``language`` is
    accepted for a uniform signature)."""
    return _write("csv", df, model, path, language)


def write_dta(df: pd.DataFrame, model: FormModel, path: str | Path, *,
              language: str | None = None, notes: list[str] | None = None) -> Path:
    """Stata 14+ .dta (:mod:`~dhsurvey.release.formats.stata`) with variable and value labels
    in ``language``; ``notes`` is accepted for symmetry with :func:`write_sav`: nothing needs
    changing to fit Stata."""
    return _write("dta", df, model, path, language, notes)


def write_sav(df: pd.DataFrame, model: FormModel, path: str | Path, *,
              language: str | None = None, notes: list[str] | None = None) -> Path:
    """SPSS .sav (:mod:`~dhsurvey.release.formats.spss`) with variable and value labels,
    user-missing codes and measure levels; what was truncated is warned and added to
    ``notes``."""
    return _write("sav", df, model, path, language, notes)


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

    Each table is appended to ``<table>.parquet`` as one batch (a scratch file if Parquet is not
    asked for) and the other formats are written from it; for a large release on every core,
    a table's CSV beside its Stata and SPSS files (which share their column decisions), the
    largest first. The result is a list of paths whose ``warnings`` attribute lists what had
    to be changed to fit a format (nothing is changed silently).
    """
    from dhsurvey.parallel import forked_map

    formats = tuple(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ReleaseError(f"unknown release format(s) {unknown} (known: {', '.join(FORMATS)})",
                           code="release-format")
    folder = Path(folder)
    paths = {name: {fmt: folder / f"{name}.{fmt}" for fmt in formats} for name in tables}
    streamed = [group for group in (("csv",), ("dta", "sav"))
                if any(fmt in formats for fmt in group)]
    with ExitStack() as scratch:  # every table's Parquet file, kept until all are written
        sources = {name: scratch.enter_context(_as_parquet(
            df, model_for(name, models), language, paths[name].get("parquet")))
            for name, df in tables.items()}

        def write(piece: tuple[str, tuple[str, ...]]) -> tuple[list[str], list[Any]]:
            # The notes and warnings come back to be given in order (from a forked process,
            # a warning would not reach the caller).
            name, group = piece
            notes: list[str] = []
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                write_formats(sources[name], model_for(name, models),
                              {f: paths[name][f] for f in group if f in formats},
                              language=language, notes=notes)
            return notes, [(str(w.message), w.category) for w in caught]

        pieces = [(name, group) for name in tables for group in streamed]
        large = sum(t.size for t in tables.values()) >= PARALLEL_CELLS
        written = dict(forked_map(write, pieces, size=lambda piece: len(piece[1]) * float(
            sources[piece[0]].stat().st_size), workers=None if large else 1))
    out = ReleaseFiles()
    for name in tables:
        out.extend(paths[name].values())
        for group in streamed:
            notes, caught = written[(name, group)]
            out.warnings += notes
            for message, category in caught:
                warnings.warn(message, category, stacklevel=2)
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
