"""translate import records what it translated (hidden sheet translation_sources); lint warns
when that source text changes while the imported translation stays."""

from __future__ import annotations

from pathlib import Path

import openpyxl
from workbooks import EN, SW, valid_survey, write_workbook

from dhsurvey.forms.lint import WARNING, lint_form
from dhsurvey.forms.model import load_form
from dhsurvey.forms.translate import (
    SOURCES_SHEET,
    SourceRecord,
    export,
    import_,
    recorded_sources,
    text_hash,
)

KEY = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"


def _translated(tmp_path: Path) -> Path:
    """A form whose Kiswahili label of 'age' (row 6) came in through translate import."""
    survey = valid_survey()
    survey[4] = {**survey[4], f"label::{SW}": ""}
    form = write_workbook(tmp_path / "form.xlsx", survey)
    sheet = tmp_path / "sw.xlsx"
    assert export(form, sheet, SW, missing_only=True) == 1
    book = openpyxl.load_workbook(sheet)
    ws = book["translations"]
    header = [cell.value for cell in ws[1]]
    ws.cell(row=2, column=header.index("translation") + 1, value="Umri kwa miaka")
    book.save(sheet)
    assert import_(form, sheet).written == 1
    return form


def _set(form: Path, row: int, header: str, value: str, *, insert_row: bool = False) -> None:
    """Edit the survey sheet as a designer would in Excel (other sheets kept as they are)."""
    book = openpyxl.load_workbook(form)
    ws = book["survey"]
    col = [cell.value for cell in ws[1]].index(header) + 1
    ws.cell(row=row, column=col, value=value)
    if insert_row:
        ws.insert_rows(2)
    book.save(form)


def _stale(form: Path) -> list:
    return [f for f in lint_form(form, validate=False, public_key=KEY)
            if f.rule == "translation-stale"]


def test_import_records_the_source_on_a_hidden_sheet(tmp_path: Path) -> None:
    form = _translated(tmp_path)
    book = openpyxl.load_workbook(form)
    assert book[SOURCES_SHEET].sheet_state == "hidden"
    assert recorded_sources(form) == {("survey", "age", f"label::{SW}"): SourceRecord(
        EN, text_hash("Age in years"), text_hash("Umri kwa miaka"))}
    # The sheet is not part of the form: it lints clean and compiles without a warning.
    assert lint_form(form, validate=False, public_key=KEY) == []
    assert load_form(form)["age"].labels[SW] == "Umri kwa miaka"


def test_changed_source_makes_the_translation_stale(tmp_path: Path) -> None:
    form = _translated(tmp_path)
    _set(form, 6, f"label::{EN}", "Age at last birthday")
    (hit,) = _stale(form)
    assert (hit.sheet, hit.row, hit.column, hit.severity) == ("survey", 6, f"label::{SW}",
                                                              WARNING)
    assert "'Age at last birthday' now" in hit.message
    # Rows inserted above in Excel: the record is keyed by name, the finding follows the row.
    _set(form, 6, f"hint::{EN}", "A hint.", insert_row=True)
    assert [(f.row, f.column) for f in _stale(form)] == [(7, f"label::{SW}")]


def test_translation_updated_by_hand_is_not_judged(tmp_path: Path) -> None:
    form = _translated(tmp_path)
    _set(form, 6, f"label::{EN}", "Age at last birthday")
    _set(form, 6, f"label::{SW}", "Umri katika siku ya kuzaliwa iliyopita")
    assert _stale(form) == []


def test_reimport_after_the_change_clears_it(tmp_path: Path) -> None:
    form = _translated(tmp_path)
    _set(form, 6, f"label::{EN}", "Age at last birthday")
    sheet = tmp_path / "again.xlsx"
    export(form, sheet, SW)
    book = openpyxl.load_workbook(sheet)
    ws = book["translations"]
    header = [cell.value for cell in ws[1]]
    for row in ws.iter_rows(min_row=2):
        if row[header.index("source")].value == "Age at last birthday":
            row[header.index("translation")].value = "Umri siku ya kuzaliwa"
    book.save(sheet)
    assert import_(form, sheet).written == 1
    assert _stale(form) == []
    assert len(recorded_sources(form)) == 1
