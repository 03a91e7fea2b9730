"""ODK Central CSV zip exports (``submissions.csv.zip``) → canonical tables.

Central flattens each submission into ``{formId}.csv`` (group paths joined by ``-``, geopoints
split into four columns) and one ``{formId}-{repeat}.csv`` per repeat linked by
``PARENT_KEY``/``KEY``. The layout helpers here are shared with the writer in
:mod:`dhsurvey.fieldwork.exports`, so reader and writer cannot drift apart.
"""

from __future__ import annotations

import csv
import io
import logging
import zipfile
from pathlib import Path

from dhsurvey.errors import DhsurveyError
from dhsurvey.forms.frames import PARENT
from dhsurvey.forms.model import FormModel, Item
from dhsurvey.ingest.builder import TableBuilder, canonical_time, decode_utf8
from dhsurvey.ingest.canonical import RawForm
from dhsurvey.ingest.limits import read_zip_member
from dhsurvey.ingest.odata import form_version

log = logging.getLogger(__name__)

SOURCE_FORMAT = "central-csv"
GEO_PARTS = ("Latitude", "Longitude", "Altitude", "Accuracy")
INSTANCE_ID_COLUMN = "meta-instanceID"
ROOT_TAIL = ["KEY", "SubmitterID", "SubmitterName", "AttachmentsPresent", "AttachmentsExpected",
             "Status", "ReviewState", "DeviceID", "Edits", "FormVersion"]
#: Central's Status for submissions it could not decrypt (the row has metadata only).
NOT_DECRYPTED = ("missing encrypted form data", "not decrypted")


def relative_path(item: Item) -> tuple[str, ...]:
    """The item's path inside its own table: below its innermost repeat, or from the root."""
    path = item.path
    if item.repeat is not None:
        path = path[path.index(item.repeat) + 1:]
    return (*path, item.name)


def field_headers(item: Item) -> list[str]:
    """The column(s) Central writes for one field (four for a geopoint)."""
    base = "-".join(relative_path(item))
    if item.type == "geopoint":
        return [f"{base}-{part}" for part in GEO_PARTS]
    return [base]


def root_header(model: FormModel) -> list[str]:
    cols = ["SubmissionDate"]
    for item in model.fields_in(None):
        cols += field_headers(item)
    return [*cols, INSTANCE_ID_COLUMN, *ROOT_TAIL]


def repeat_header(model: FormModel, repeat: str) -> list[str]:
    cols: list[str] = []
    for item in model.fields_in(repeat):
        cols += field_headers(item)
    return [*cols, PARENT, "KEY"]


def table_name(model: FormModel, repeat: str | None = None) -> str:
    return f"{model.form_id}.csv" if repeat is None else f"{model.form_id}-{repeat}.csv"


def split_geopoint(value: str | None) -> list[str]:
    """``"lat lon alt acc"`` → four cells, as Central splits on whitespace."""
    parts = (value or "").split()
    return (parts + [""] * 4)[:4] if len(parts) <= 4 else [*parts[:3], " ".join(parts[3:])]


def join_geopoint(cells: list[str]) -> str | None:
    parts = list(cells)
    while parts and parts[-1] == "":
        parts.pop()
    return " ".join(parts) or None


# --------------------------------------------------------------------------- reading


def _read_table(zf: zipfile.ZipFile, member: str, label: str,
                path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and records of one CSV member: BOM stripped, CRLF accepted, UTF-8 enforced; a
    member over the size cap (:data:`~dhsurvey.ingest.limits.ZIP_MEMBER`) is refused before
    it is decompressed."""
    data = read_zip_member(zf, member, file=path)
    text = decode_utf8(data, label)
    del data
    if not text.strip():
        raise DhsurveyError("table is empty (not even a header row)", code="export-empty",
                            file=label)
    first_end = text.find("\n")
    crlf = first_end > 0 and text[first_end - 1] == "\r"
    try:
        records = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error as exc:
        raise DhsurveyError(f"malformed CSV ({exc})", code="export-malformed",
                            file=label) from None
    if crlf:  # a file converted to CRLF had its in-cell line breaks converted too
        records = [[cell.replace("\r\n", "\n") for cell in rec] for rec in records]
    header = records[0]
    if len(set(header)) != len(header):
        dup = next(h for h in header if header.count(h) > 1)
        raise DhsurveyError(f"column '{dup}' appears twice in the header",
                            code="export-malformed", file=label, row=1, column=dup)
    rows = records[1:]
    for number, rec in enumerate(rows, start=2):
        if rec and len(rec) != len(header):
            raise DhsurveyError(
                f"record {number} has {len(rec)} cells but the header has {len(header)} "
                "(truncated or shifted row)", code="export-malformed", file=label, row=number)
    return header, rows


def _require(header: list[str], expected: list[str], label: str,
             optional: tuple[str, ...] = ()) -> dict[str, int]:
    """Column positions; a missing expected column is an error, an unknown one a warning."""
    index = {name: i for i, name in enumerate(header)}
    for name in expected:
        if name not in index:
            raise DhsurveyError(
                f"expected column '{name}' is missing (exported from another form version, or "
                "edited?)", code="export-missing-column", file=label, row=1, column=name)
    extra = [h for h in header if h not in expected and h not in optional]
    if extra:
        log.warning("%s: ignoring %d column(s) the form does not have: %s", label, len(extra),
                    ", ".join(extra))
    return index


def _field_columns(model: FormModel, repeat: str | None,
                   index: dict[str, int]) -> list[tuple[str, list[int] | None, int]]:
    """Where each field of a table is in its rows: (name, the four columns of a geopoint or
    None, the column of any other field). Worked out once per table, not once per row."""
    plan: list[tuple[str, list[int] | None, int]] = []
    for item in model.fields_in(repeat):
        cols = field_headers(item)
        if item.type == "geopoint":
            plan.append((item.name, [index[c] for c in cols], -1))
        else:
            plan.append((item.name, None, index[cols[0]]))
    return plan


def _field_values(plan: list[tuple[str, list[int] | None, int]],
                  rec: list[str]) -> dict[str, str | None]:
    return {name: rec[at] if geo is None else join_geopoint([rec[i] for i in geo])
            for name, geo, at in plan}


def read_central_zip(path: str | Path, model: FormModel) -> RawForm:
    """Read a Central CSV zip of ``model``'s form into canonical tables.

    Rows Central could not decrypt, later copies of a KEY and repeat rows without a parent go to
    quarantine; values are kept as text (typing is validation's job). Unreadable files, other
    encodings than UTF-8, a CSV member over the size cap (``DHSURVEY_MAX_ZIP_MEMBER_MB``) and
    missing columns are errors naming the file (and member, row or column).
    """
    path = Path(path)
    builder = TableBuilder(model, SOURCE_FORMAT, path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DhsurveyError(f"not a readable zip file ({exc})", code="export-unreadable",
                            file=str(path)) from None
    with zf:
        names = set(zf.namelist())
        for repeat in [None, *(r.name for r in model.repeats)]:
            member = table_name(model, repeat)
            if member not in names:
                raise DhsurveyError(
                    f"no '{member}' in the zip (files: {', '.join(sorted(names)) or 'none'})",
                    code="export-missing-table", file=str(path), form=model.form_id)
            label = f"{path}/{member}"
            header, rows = _read_table(zf, member, label, path)
            if repeat is None:
                _read_root(model, builder, header, rows, label)
            else:
                index = _require(header, repeat_header(model, repeat), label)
                plan = _field_columns(model, repeat, index)
                for number, rec in enumerate(rows, start=2):
                    if not rec:
                        continue
                    values = _field_values(plan, rec)
                    values.update(KEY=rec[index["KEY"]], PARENT_KEY=rec[index[PARENT]])
                    builder.add_repeat(repeat, values, source_file=label, row=number)
    return builder.finish()


def _read_root(model: FormModel, builder: TableBuilder, header: list[str],
               rows: list[list[str]], label: str) -> None:
    optional = (INSTANCE_ID_COLUMN, *ROOT_TAIL)
    expected = [c for c in root_header(model) if c not in optional]
    # Older Central versions lack some trailing metadata columns; only KEY is indispensable.
    index = _require(header, [*expected, "KEY"], label, optional)

    def get(rec: list[str], column: str) -> str | None:
        return rec[index[column]] if column in index else None

    plan = _field_columns(model, None, index)
    for number, rec in enumerate(rows, start=2):
        if not rec:
            continue
        status = (get(rec, "Status") or "").strip()
        if status in NOT_DECRYPTED:
            builder.quarantine("not-decrypted", f"Central could not decrypt it: '{status}'",
                               source_file=label, row=number, key=get(rec, "KEY") or None,
                               column="Status", value=status)
            continue
        values: dict[str, str | None] = _field_values(plan, rec)
        values.update(
            KEY=get(rec, "KEY"),
            form_version=form_version(get(rec, "FormVersion")),
            submission_time=canonical_time(get(rec, "SubmissionDate") or None),
            submitter=get(rec, "SubmitterName"),
            review_state=get(rec, "ReviewState"),
        )
        builder.add_root(values, source_file=label, row=number)
