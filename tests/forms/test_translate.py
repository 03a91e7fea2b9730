"""Translation round trip: export for translators, import back, lint sees the difference."""

from __future__ import annotations

from pathlib import Path

import openpyxl
from typer.testing import CliRunner
from workbooks import EN, SW, valid_survey, write_workbook

from dhsurvey.cli import app
from dhsurvey.forms.lint import lint_form
from dhsurvey.forms.model import load_form
from dhsurvey.forms.translate import COLUMNS, export, import_


def _untranslated(tmp_path: Path) -> Path:
    survey = valid_survey()
    survey[4] = {**survey[4], f"label::{SW}": "", f"hint::{SW}": "-"}
    return write_workbook(tmp_path / "form.xlsx", survey)


def _fill(sheet: Path, translations: dict[str, str]) -> None:
    book = openpyxl.load_workbook(sheet)
    ws = book["translations"]
    header = [c.value for c in ws[1]]
    for row in ws.iter_rows(min_row=2):
        source = row[header.index("source")].value
        if source in translations:
            row[header.index("translation")].value = translations[source]
    book.save(sheet)


def test_round_trip_fills_missing_strings(tmp_path: Path) -> None:
    form = _untranslated(tmp_path)
    before = {(f.row, f.column) for f in lint_form(form, compile=False)
              if f.rule == "translation-missing"}
    assert before == {(6, f"label::{SW}"), (6, f"hint::{SW}")}

    sheet = tmp_path / "sw.xlsx"
    n = export(form, sheet, SW, missing_only=True)
    assert n == 2
    rows = list(openpyxl.load_workbook(sheet)["translations"].iter_rows(values_only=True))
    assert rows[0] == COLUMNS
    assert {(r[1], r[3], r[5]) for r in rows[1:]} == {
        ("age", f"label::{SW}", "Age in years"), ("age", f"hint::{SW}", "A hint.")}

    _fill(sheet, {"Age in years": "Umri kwa miaka", "A hint.": "Dokezo."})
    result = import_(form, sheet)
    assert (result.written, result.conflicts) == (2, [])
    model = load_form(form)
    assert model["age"].labels[SW] == "Umri kwa miaka"
    assert model["age"].hints[SW] == "Dokezo."
    assert model["age"].labels[EN] == "Age in years"
    assert not [f for f in lint_form(form, compile=False) if f.rule == "translation-missing"]


def test_stale_source_is_a_conflict_not_overwritten(tmp_path: Path) -> None:
    form = _untranslated(tmp_path)
    sheet = tmp_path / "sw.xlsx"
    export(form, sheet, SW)
    _fill(sheet, {"Age in years": "Umri kwa miaka"})
    # The designer rewords the question after the export.
    survey = valid_survey()
    survey[4] = {**survey[4], f"label::{EN}": "Age at last birthday", f"label::{SW}": ""}
    write_workbook(form, survey)
    result = import_(form, sheet)
    assert result.written == 0
    assert len(result.conflicts) == 1 and "source changed" in result.conflicts[0]
    assert load_form(form)["age"].labels.get(SW, "") == ""


def test_cli_round_trip(tmp_path: Path) -> None:
    form = _untranslated(tmp_path)
    sheet = tmp_path / "sw.xlsx"
    runner = CliRunner()
    out = runner.invoke(app, ["translate", "export", str(form), "--out", str(sheet),
                              "--language", SW])
    assert out.exit_code == 0, out.output
    _fill(sheet, {"Age in years": "Umri kwa miaka"})
    back = runner.invoke(app, ["translate", "import", str(form), str(sheet),
                               "--out", str(tmp_path / "new.xlsx")])
    assert back.exit_code == 0, back.output
    assert "1 strings written" in back.output
    assert load_form(tmp_path / "new.xlsx")["age"].labels[SW] == "Umri kwa miaka"
    assert load_form(form)["age"].labels.get(SW, "") == ""  # --out leaves the source alone


def test_formula_like_text_is_inert_both_ways(tmp_path: Path) -> None:
    """A label starting with - or @ goes to translators with a quote in front (a spreadsheet
    would run it) and matches its source again on import; a translation starting with = is
    written into the XLSForm as text, not as a formula."""
    survey = valid_survey()
    survey[4] = {**survey[4], f"label::{EN}": "-Age in years", f"label::{SW}": "",
                 f"hint::{EN}": "@ last birthday", f"hint::{SW}": "-"}
    form = write_workbook(tmp_path / "form.xlsx", survey)
    sheet = tmp_path / "sw.xlsx"
    assert export(form, sheet, SW, missing_only=True) == 2
    ws = openpyxl.load_workbook(sheet)["translations"]
    sources = {r[5].value: r[5].data_type for r in ws.iter_rows(min_row=2)}
    assert sources == {"'-Age in years": "s", "'@ last birthday": "s"}

    book = openpyxl.load_workbook(sheet)
    header = [c.value for c in book["translations"][1]]
    for row in book["translations"].iter_rows(min_row=2):
        cell = row[header.index("translation")]
        # A translator copying the quoted source, and one typing a formula-like text.
        cell.value = "'-Umri kwa miaka" if "Age" in row[5].value else "=siku ya kuzaliwa"
        cell.data_type = "s"
    book.save(sheet)
    result = import_(form, sheet)
    assert (result.written, result.conflicts) == (2, [])
    model = load_form(form)
    assert model["age"].labels[SW] == "-Umri kwa miaka"
    assert model["age"].hints[SW] == "=siku ya kuzaliwa"
