"""Translation round trip: strings out to a spreadsheet for translators, and back in.

Translators never edit the XLSForm itself: they get one row per string with its location, the
source text and the column it goes to. Rows are matched back by a stable key (field name, or
list and choice name), not by row number, so designers can keep editing the workbook meanwhile;
a source text that changed since the export is reported, never silently overwritten.

Text cells of the translators' sheet are spreadsheet-safe (:func:`~dhsurvey.io.neutralise_formulas`:
a label starting with ``-`` or ``=`` is written with a ``'`` in front); the quote is taken off
again when the sheet comes back, and a text written into the XLSForm is always a text, never a
formula.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from dhsurvey.errors import FormError
from dhsurvey.forms.lint import PYXFORM_FILLER
from dhsurvey.forms.model import STATA, FormModel, load_form, split_header
from dhsurvey.io import atomic_write_bytes, neutralise_formulas

COLUMNS = ("sheet", "key", "row", "column", "context", "source", "current", "translation")
_SURVEY_BASES = ("label", "hint", "constraint_message", "required_message")


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
    if language not in model.languages and language.lower() != STATA:
        raise FormError(f"language '{language}' is not in the workbook "
                        f"(languages: {', '.join(model.languages)})",
                        code="language-unknown", file=model.path)
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
    not written, so a stale translation never replaces a label that has since changed.
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
        written += 1
    if written:
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
