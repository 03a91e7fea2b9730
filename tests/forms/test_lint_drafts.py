"""Draft languages: while a translation is under way its missing texts are information, not
errors, and lint prints per language how many labels, hints, messages and choice labels are
translated, missing and stale."""

from __future__ import annotations

from pathlib import Path

import openpyxl
from typer.testing import CliRunner
from workbooks import EN, SW, YES_NO, c, valid_survey, write_workbook

from dhsurvey.cli import app
from dhsurvey.forms.lint import (
    ERROR,
    INFO,
    draft_languages,
    lint_form,
    translation_summary,
)
from dhsurvey.forms.model import load_form
from dhsurvey.forms.translate import export, import_

KEY = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"


def _half_translated(tmp_path: Path) -> Path:
    """valid_survey() with the Kiswahili label of 'age' (row 6), its hint and one choice
    label missing."""
    survey = valid_survey()
    survey[4] = {**survey[4], f"label::{SW}": "", f"hint::{SW}": ""}
    choices = [YES_NO[0], {**YES_NO[1], f"label::{SW}": ""}]
    return write_workbook(tmp_path / "draft.xlsx", survey, choices)


def _missing(findings: list) -> list:
    return [f for f in findings if f.rule in ("translation-missing", "choice-label-missing")]


def test_missing_translations_are_errors_unless_the_language_is_a_draft(tmp_path: Path) -> None:
    path = _half_translated(tmp_path)
    plain = _missing(lint_form(path, validate=False, public_key=KEY))
    assert {(f.row, f.column) for f in plain} == {(6, f"label::{SW}"), (6, f"hint::{SW}"),
                                                  (3, f"label::{SW}")}
    assert {f.severity for f in plain} == {ERROR}
    for name in ("sw", "Kiswahili", "kiswahili (SW)"):
        draft = _missing(lint_form(path, validate=False, public_key=KEY, drafts=(name,)))
        assert {(f.row, f.column) for f in draft} == {(f.row, f.column) for f in plain}
        assert {f.severity for f in draft} == {INFO}, name


def test_a_draft_only_downgrades_its_own_language(tmp_path: Path) -> None:
    survey = valid_survey()
    survey[4] = {**survey[4], f"label::{EN}": "", f"label::{SW}": "Umri"}
    path = write_workbook(tmp_path / "en_missing.xlsx", survey)
    findings = lint_form(path, validate=False, public_key=KEY, drafts=("sw",))
    english = [f for f in findings if f.column == f"label::{EN}" and f.row == 6]
    assert english and all(f.severity == ERROR for f in english)


def test_an_unknown_draft_language_is_reported(tmp_path: Path) -> None:
    path = write_workbook(tmp_path / "clean.xlsx")
    findings = lint_form(path, validate=False, public_key=KEY, drafts=("fr",))
    (hit,) = [f for f in findings if f.rule == "draft-language-unknown"]
    assert "'fr'" in hit.message and SW in hit.message
    assert draft_languages(load_form(path), ["fr", "SW", "English"]) == [EN, SW]


def test_summary_counts_translated_missing_and_stale(tmp_path: Path) -> None:
    path = _half_translated(tmp_path)
    (sw, stata) = translation_summary(load_form(path), drafts=("sw",))
    assert (sw.language, sw.draft, stata.language, stata.draft) == (SW, True, "stata", False)
    labels, hints, messages, choices = (sw.counts[k] for k in ("labels", "hints", "messages",
                                                               "choices"))
    assert labels == (3, 1, 0)  # consent, main, age, uses_internet: age missing
    assert hints == (2, 1, 0) and choices == (1, 1, 0)
    assert messages[1] == 0 and messages[0] > 0
    assert sw.total()[1] == 3
    assert set(stata.counts) == {"labels", "choices"}  # Stata labels have no hints

    # A translation imported, then its English source edited: stale, still translated.
    sheet = tmp_path / "sw.xlsx"
    export(path, sheet, SW, missing_only=True)
    book = openpyxl.load_workbook(sheet)
    ws = book["translations"]
    column = [cell.value for cell in ws[1]].index("translation") + 1
    for row in range(2, ws.max_row + 1):
        ws.cell(row=row, column=column, value="Tafsiri")
    book.save(sheet)
    assert import_(path, sheet).written == 3
    book = openpyxl.load_workbook(path)
    survey = book["survey"]
    column = [cell.value for cell in survey[1]].index(f"label::{EN}") + 1
    survey.cell(row=6, column=column, value="Age in completed years")
    book.save(path)
    (sw, _) = translation_summary(load_form(path))
    assert sw.counts["labels"] == (4, 0, 1) and sw.total() == (sw.total()[0], 0, 1)


def test_cli_prints_the_summary_and_passes_on_draft_gaps(tmp_path: Path) -> None:
    path = _half_translated(tmp_path)
    runner = CliRunner()
    args = ["lint", str(path), "--no-validate", "--simulate", "0"]
    strict = runner.invoke(app, args)
    assert strict.exit_code == 1
    draft = runner.invoke(app, [*args, "--draft", "sw"])
    out = " ".join(draft.output.split())
    assert "info translation-missing" in out
    assert "(draft)" in out and "3/4" in out  # labels translated / total
    assert "3 info" in out
    quiet = runner.invoke(app, [*args, "--draft", "sw", "--no-summary"])
    assert "(draft)" not in quiet.output


def test_choice_labels_of_a_list_in_one_language_only_are_counted(tmp_path: Path) -> None:
    choices = [*YES_NO, c("extra", "1", "One")]
    path = write_workbook(tmp_path / "lists.xlsx", choices=choices)
    (sw, _) = translation_summary(load_form(path))
    assert sw.counts["choices"] == (3, 0, 0)
