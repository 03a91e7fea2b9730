"""Broken workbooks: each gives one clear error naming file, sheet, row and column."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner
from workbooks import (
    CHOICES_HEADER,
    EN,
    SETTINGS,
    SURVEY_HEADER,
    c,
    q,
    valid_survey,
    write_workbook,
)

from dhsurvey.cli import app
from dhsurvey.errors import FormError
from dhsurvey.forms.model import load_form

# valid_survey() rows sit on Excel rows 2..8: start, end, consent, begin main, age,
# uses_internet, end main.


def _replace(row: int, new: dict[str, str]) -> list[dict[str, str]]:
    survey = valid_survey()
    survey[row - 2] = new
    return survey


def _insert(row: int, new: dict[str, str]) -> list[dict[str, str]]:
    survey = valid_survey()
    survey.insert(row - 2, new)
    return survey


def _without(row: int) -> list[dict[str, str]]:
    survey = valid_survey()
    del survey[row - 2]
    return survey


def _garbage(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"PK\x03\x04 this is not really a zip file")
    return path


Case = tuple[str, Callable[[Path], Path], str, str | None, int | None, str | None]

CASES: list[Case] = [
    ("survey sheet missing",
     lambda p: write_workbook(p, sheets=("choices", "settings")),
     "sheet-missing", "survey", None, None),
    ("choices sheet missing",
     lambda p: write_workbook(p, sheets=("survey", "settings")),
     "sheet-missing", "survey", 4, "type"),
    ("unknown type",
     lambda p: write_workbook(p, _replace(6, q("integr", "age", "Age"))),
     "type-unknown", "survey", 6, "type"),
    ("begin group never closed",
     lambda p: write_workbook(p, _without(8)),
     "unmatched-begin", "survey", 5, "type"),
    ("end group with nothing open",
     lambda p: write_workbook(p, _insert(2, q("end_group", "main"))),
     "unmatched-end", "survey", 2, "type"),
    ("end repeat closes a group",
     lambda p: write_workbook(p, _replace(8, q("end_repeat", "main"))),
     "unmatched-end", "survey", 8, "type"),
    ("undefined reference",
     lambda p: write_workbook(p, _replace(7, q("select_one yes_no", "uses_internet", "Online?",
                                              relevant="${agee} >= 12", pii="quasi"))),
     "reference-undefined", "survey", 7, "relevant"),
    ("XPath syntax error",
     lambda p: write_workbook(p, _replace(7, q("select_one yes_no", "uses_internet", "Online?",
                                              relevant="${age} > = 12", pii="quasi"))),
     "expression-syntax", "survey", 7, "relevant"),
    ("unbalanced parenthesis",
     lambda p: write_workbook(p, _replace(6, q("integer", "age", "Age",
                                              constraint="(. >= 0 and . <= 110",
                                              pii="quasi"))),
     "expression-syntax", "survey", 6, "constraint"),
    ("duplicate name",
     lambda p: write_workbook(p, _insert(7, q("integer", "age", "Age again", pii="quasi"))),
     "name-duplicate", "survey", 7, "name"),
    ("choice list missing",
     lambda p: write_workbook(p, _replace(7, q("select_one yes_no_dk", "uses_internet",
                                              "Online?", pii="quasi"))),
     "choice-list-missing", "survey", 7, "type"),
    ("select without a list name",
     lambda p: write_workbook(p, _replace(7, q("select_one", "uses_internet", "Online?"))),
     "choice-list-missing", "survey", 7, "type"),
    ("empty choice list (list_name without choices)",
     lambda p: write_workbook(p, choices=[*_yes_no(), {"list_name": "empty",
                                                        f"label::{EN}": "x"}]),
     "choice-no-name", "choices", 4, "name"),
    ("choice without list name",
     lambda p: write_workbook(p, choices=[*_yes_no(), {"name": "3", f"label::{EN}": "x"}]),
     "choice-no-list", "choices", 4, "list_name"),
    ("language column without a language",
     lambda p: write_workbook(p, survey_header=[*SURVEY_HEADER, "hint::"]),
     "bad-language-column", "survey", 1, "hint::"),
    ("choices language column without a language",
     lambda p: write_workbook(p, choices_header=[*CHOICES_HEADER, "label::"]),
     "bad-language-column", "choices", 1, "label::"),
    ("default language with no column",
     lambda p: write_workbook(p, settings={**SETTINGS, "default_language": "French (fr)"}),
     "bad-language-column", "settings", None, "default_language"),
    ("unreadable file",
     lambda p: _garbage(p),
     "file-unreadable", None, None, None),
    ("not a workbook",
     lambda p: _garbage(p.with_suffix(".csv")),
     "file-unreadable", None, None, None),
    ("no type column",
     lambda p: write_workbook(p, survey_header=[h for h in SURVEY_HEADER if h != "type"]),
     "column-missing", "survey", 1, "type"),
    ("row without a type",
     lambda p: write_workbook(p, _insert(6, {"name": "orphan", f"label::{EN}": "x"})),
     "type-missing", "survey", 6, "type"),
    ("row without a name",
     lambda p: write_workbook(p, _insert(6, q("integer", "", "Nameless"))),
     "name-missing", "survey", 6, "name"),
    ("invalid name",
     lambda p: write_workbook(p, _replace(6, q("integer", "1age", "Age"))),
     "name-invalid", "survey", 6, "name"),
    ("calculate without calculation",
     lambda p: write_workbook(p, _insert(6, q("calculate", "score"))),
     "calculation-missing", "survey", 6, "calculation"),
]


def _yes_no() -> list[dict[str, str]]:
    return [c("yes_no", "1", "Yes", "Ndiyo"), c("yes_no", "0", "No", "Hapana")]


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_broken_workbook_gives_one_located_error(tmp_path: Path, case: Case) -> None:
    _, make, code, sheet, row, column = case
    path = make(tmp_path / "broken.xlsx")
    with pytest.raises(FormError) as info:
        load_form(path)
    err = info.value
    assert err.code == code, str(err)
    assert Path(err.context["file"]) == path
    assert err.context.get("sheet") == sheet, str(err)
    assert err.context.get("row") == row, str(err)
    assert err.context.get("column") == column, str(err)
    assert str(path) in str(err)


def test_at_least_fifteen_broken_fixtures() -> None:
    assert len(CASES) >= 15
    assert len({case[2] for case in CASES}) >= 12


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FormError) as info:
        load_form(tmp_path / "nowhere.xlsx")
    assert info.value.code == "file-missing"


@pytest.mark.parametrize("case", [c for c in CASES if c[0] in (
    "unknown type", "undefined reference", "unreadable file")], ids=lambda c: c[0])
def test_cli_prints_the_error_without_traceback(tmp_path: Path, case: Case) -> None:
    _, make, code, sheet, row, column = case
    path = make(tmp_path / "in" / "broken.xlsx")
    result = CliRunner().invoke(app, ["build", "--instruments", str(path.parent),
                                      "--out", str(tmp_path / "out"), "--no-validate"])
    assert result.exit_code == 2
    output = result.output
    assert "Traceback" not in output
    assert f"[{code}]" in output
    assert str(path) in output
    if row is not None:
        assert f"row      {row}" in output
    assert not (tmp_path / "out" / "forms").exists()
