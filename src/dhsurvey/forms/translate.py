"""Translation round trip: strings out to a spreadsheet for translators, and back in.

Translators never edit the XLSForm itself: they get one row per string with its location, the
source text and the column it goes to. Rows are matched back by a stable key (field name, or
list and choice name), not by row number, so designers can keep editing the workbook meanwhile;
a source text that changed since the export is reported, never silently overwritten.

Text cells of the translators' sheet are spreadsheet-safe (:func:`~dhsurvey.io.neutralise_formulas`:
a label starting with ``-`` or ``=`` is written with a ``'`` in front); the quote is taken off
again when the sheet comes back, and a text written into the XLSForm is always a text, never a
formula.

What each imported translation was translated from is recorded in the workbook itself, on a
hidden sheet ``translation_sources``: one row per translated cell, keyed like the
translators' sheet (sheet, field or list/choice name, target column), with a hash of the
source-language text and of the translation written. A sheet, not a hidden column or a
sidecar file: it travels with the workbook (e-mail, SurveyCTO, Drive), Excel and LibreOffice
keep hidden sheets when saving, pyxform and the form model read only survey, choices and
settings (so the form's version does not change), and keys by name survive rows being
inserted, moved or sorted in Excel, where a hidden column in the survey sheet would be lost by
copy-paste of visible cells and flagged as an unknown XLSForm column. ``dhsurvey lint`` warns
(``translation-stale``) when a source text changed since its translation was imported while
the translation is still the one imported (a translation edited by hand since is not judged).
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

from dhsurvey.errors import FormError
from dhsurvey.forms.model import STATA, FormModel, load_form, split_header
from dhsurvey.io import atomic_write_bytes, neutralise_formulas

#: pyxform fills a missing translation with this (a translation still to be made).
PYXFORM_FILLER = "-"

COLUMNS = ("sheet", "key", "row", "column", "context", "source", "current", "translation")
_SURVEY_BASES = ("label", "hint", "constraint_message", "required_message")
#: The hidden sheet recording what each imported translation was translated from.
SOURCES_SHEET = "translation_sources"
SOURCES_COLUMNS = ("sheet", "key", "column", "source_language", "source_sha256",
                   "translation_sha256")
#: (sheet, key, target column) of a translated cell.
CellKey = tuple[str, str, str]


@dataclass(frozen=True)
class SourceRecord:
    """What one translated cell was translated from (hashes from :func:`text_hash`)."""

    source_language: str
    source_hash: str
    translation_hash: str


def text_hash(text: str) -> str:
    """A short SHA-256 of a text as the form shows it (outer spaces do not count)."""
    return hashlib.sha256(text.strip().encode("utf-8")).hexdigest()[:16]


def recorded_sources(workbook: str | Path) -> dict[CellKey, SourceRecord]:
    """The workbook's ``translation_sources`` sheet ({} when it has none)."""
    from dhsurvey.forms.model import read_sheets

    rows = read_sheets(Path(workbook)).get(SOURCES_SHEET, [])
    return _parse_sources([tuple(cells) for _, cells in rows])


def _parse_sources(rows: list[tuple]) -> dict[CellKey, SourceRecord]:
    if not rows:
        return {}
    header = [str(h or "").strip() for h in rows[0]]
    if any(c not in header for c in SOURCES_COLUMNS):
        return {}
    idx = [header.index(c) for c in SOURCES_COLUMNS]
    out: dict[CellKey, SourceRecord] = {}
    for values in rows[1:]:
        cells = [str(values[i] or "").strip() if i < len(values) else "" for i in idx]
        if all(cells):
            out[(cells[0], cells[1], cells[2])] = SourceRecord(*cells[3:])
    return out


def record_sources(workbook: str | Path, records: dict[CellKey, SourceRecord]) -> Path:
    """Add ``records`` to the workbook's ``translation_sources`` sheet (replacing rows of the
    same cells) and save it."""
    import openpyxl

    book = openpyxl.load_workbook(workbook)
    _write_sources(book, records)
    buffer = io.BytesIO()
    book.save(buffer)
    return atomic_write_bytes(workbook, buffer.getvalue())


def _write_sources(book, records: dict[CellKey, SourceRecord]) -> None:
    if SOURCES_SHEET in book.sheetnames:
        ws = book[SOURCES_SHEET]
        merged = {**_parse_sources(list(ws.iter_rows(values_only=True))), **records}
        book.remove(ws)
    else:
        merged = dict(records)
    ws = book.create_sheet(SOURCES_SHEET)
    ws.sheet_state = "hidden"
    ws.append(list(SOURCES_COLUMNS))
    for (sheet, key, column), rec in sorted(merged.items()):
        ws.append([sheet, key, column, rec.source_language, rec.source_hash,
                   rec.translation_hash])
        for cell in ws[ws.max_row]:
            cell.data_type = "s"


@dataclass(frozen=True)
class Entry:
    """One translatable string."""

    sheet: str
    key: str  # field name, or "list_name/choice_name"
    row: int
    column: str  # target header, e.g. "label::Kiswahili (sw)"
    context: str
    source: str
    current: str


def entries(model: FormModel, language: str, source: str | None = None) -> list[Entry]:
    """Every string that has a source text, with its current text in ``language``."""
    source = source or model.default_language
    new = re.fullmatch(r"\S.*\s\([A-Za-z]{2,3}(?:-[A-Za-z0-9]+)*\)", language)
    if language not in model.languages and language.lower() != STATA and not new:
        raise FormError(f"language '{language}' is not in the workbook (languages: "
                        f"{', '.join(model.languages)}); a new one is named like "
                        "'Khmer (km)'", code="language-unknown", file=model.path)
    out: list[Entry] = []
    for item in model.items:
        for base, texts in zip(_SURVEY_BASES, (item.labels, item.hints,
                                               item.constraint_messages,
                                               item.required_messages), strict=True):
            if texts.get(source):
                out.append(Entry("survey", item.name, item.row, f"{base}::{language}",
                                 f"{item.type} {item.name}", texts[source],
                                 texts.get(language, "")))
    for lst in model.choice_lists.values():
        for ch in lst.choices:
            if ch.labels.get(source):
                out.append(Entry("choices", f"{lst.name}/{ch.name}", ch.row,
                                 f"label::{language}", f"choice list {lst.name}",
                                 ch.labels[source], ch.labels.get(language, "")))
    return out


def _missing(text: str) -> bool:
    return text.strip() in ("", PYXFORM_FILLER)


def export(workbook: str | Path, out: str | Path, language: str, *,
           missing_only: bool = False) -> int:
    """Write the translator's spreadsheet; returns the number of strings written."""
    import openpyxl
    from openpyxl.styles import Font

    model = load_form(workbook)
    rows = [e for e in entries(model, language) if not missing_only or _missing(e.current)]
    book = openpyxl.Workbook()
    ws = book.worksheets[0]  # a new workbook's one (active) sheet
    ws.title = "translations"
    ws.append(list(COLUMNS))
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for e in rows:
        ws.append([neutralise_formulas(v) for v in (
            e.sheet, e.key, e.row, e.column, e.context, e.source,
            "" if _missing(e.current) else e.current, "")])
    ws.freeze_panes = "A2"
    for letter, width in zip("ABCDEFGH", (9, 28, 6, 30, 30, 60, 60, 60), strict=True):
        ws.column_dimensions[letter].width = width
    meta = book.create_sheet("about")
    for line in (["workbook", model.path.name], ["form_id", model.form_id],
                 ["source language", model.default_language], ["target language", language],
                 ["how", "Fill the 'translation' column; leave it empty to keep 'current'."]):
        meta.append([neutralise_formulas(v) for v in line])
    buffer = io.BytesIO()
    book.save(buffer)
    atomic_write_bytes(out, buffer.getvalue())
    return len(rows)


@dataclass(frozen=True)
class ImportResult:
    written: int
    unchanged: int
    conflicts: list[str]


def import_(workbook: str | Path, translations: str | Path, *,
            out: str | Path | None = None) -> ImportResult:
    """Write translated strings back into the workbook (in place unless ``out`` is given).

    A row whose source text no longer matches the workbook is a conflict: it is reported and
    not written, so a stale translation never replaces a label that has since changed. What
    each written translation was translated from is recorded on the hidden sheet
    ``translation_sources`` (see the module's docstring).
    """
    import openpyxl

    workbook = Path(workbook)
    translations = Path(translations)
    model = load_form(workbook)
    try:
        tbook = openpyxl.load_workbook(translations, read_only=True, data_only=True)
    except Exception as exc:
        raise FormError(f"cannot read the translation file ({exc})",
                        code="file-unreadable", file=translations) from None
    ws = tbook["translations"] if "translations" in tbook.sheetnames else tbook.worksheets[0]
    rows = list(ws.iter_rows(values_only=True))
    tbook.close()
    header = [str(h or "").strip() for h in rows[0]] if rows else []
    missing = [c for c in ("sheet", "key", "column", "source", "translation") if c not in header]
    if missing:
        raise FormError(f"translation file lacks column(s) {', '.join(missing)}",
                        code="column-missing", file=translations, sheet=ws.title, row=1)
    idx = {name: header.index(name) for name in header if name}
    current = {(e.sheet, e.key, e.column.split("::", 1)[0]): e
               for e in entries(model, model.default_language)}

    book = openpyxl.load_workbook(workbook)
    written = unchanged = 0
    conflicts: list[str] = []
    records: dict[CellKey, SourceRecord] = {}
    for number, values in enumerate(rows[1:], start=2):
        def cell(name: str, values: tuple = values) -> str:
            value = values[idx[name]] if idx[name] < len(values) else None
            return "" if value is None else _as_exported(str(value))

        text = cell("translation").strip()
        if not text:
            unchanged += 1
            continue
        sheet, key, column = cell("sheet"), cell("key"), cell("column")
        base, lang = split_header(column, True)
        entry = current.get((sheet, key, base))
        where = f"{translations.name} row {number} ({sheet} {key} {column})"
        if entry is None:
            conflicts.append(f"{where}: no such string in {workbook.name}")
            continue
        if entry.source != cell("source"):
            conflicts.append(f"{where}: source changed since export "
                             f"('{cell('source')}' → '{entry.source}')")
            continue
        _set_cell(book[sheet], entry.row, column, text)
        records[(sheet, key, f"{base}::{lang}")] = SourceRecord(
            model.default_language, text_hash(entry.source), text_hash(text))
        written += 1
    if written:
        _write_sources(book, records)
        buffer = io.BytesIO()
        book.save(buffer)
        atomic_write_bytes(out or workbook, buffer.getvalue())
    return ImportResult(written, unchanged, conflicts)


def _as_exported(text: str) -> str:
    """A cell of the translators' sheet without the quote :func:`export` put in front of a
    text a spreadsheet would run as a formula (a translator copying it copies the quote)."""
    if text.startswith("'") and neutralise_formulas(text[1:]) == text:
        return text[1:]
    return text


def _set_cell(ws, row: int, column: str, text: str) -> None:
    """Set ``column`` (a header) on ``row``; add the column at the end if it is new. The
    value is stored as text even when it starts with ``=`` (openpyxl would make a formula)."""
    headers = [str(c.value or "").strip() for c in ws[1]]
    if column in headers:
        col = headers.index(column) + 1
    else:
        col = len(headers) + 1
        ws.cell(row=1, column=col, value=column)
    cell = ws.cell(row=row, column=col, value=text)
    cell.data_type = "s"
