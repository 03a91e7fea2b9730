"""What each column becomes in a release, decided from the form: effective pii classes and
per-record random draws."""

from __future__ import annotations

import shutil
from pathlib import Path

import openpyxl
import pytest
from workbooks import q, valid_survey, write_workbook

from dhsurvey.anonymise.classify import classify_with_reasons
from dhsurvey.forms.lint import lint_form
from dhsurvey.forms.model import FormModel, load_form

HOUSEHOLD = Path(__file__).parents[2] / "instruments" / "household.xlsx"
DRAW = ("drop", "random draw: would link two releases")


def _with_cells(tmp_path: Path, field: str, **cells: str) -> Path:
    """A copy of the household workbook with survey cells of ``field`` changed (a header is
    added for a column the sheet does not have)."""
    path = tmp_path / HOUSEHOLD.name
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(HOUSEHOLD, path)
    book = openpyxl.load_workbook(path)
    ws = book["survey"]
    header = [c.value for c in ws[1]]
    (row,) = [r for r in range(2, ws.max_row + 1)
              if ws.cell(r, header.index("name") + 1).value == field]
    for column, value in cells.items():
        if column not in header:
            header.append(column)
            ws.cell(1, len(header), column)
        ws.cell(row, header.index(column) + 1, value)
    book.save(path)
    return path


@pytest.fixture(scope="module")
def household() -> FormModel:
    return load_form(HOUSEHOLD)


def test_misclassed_name_is_still_dropped(tmp_path: Path) -> None:
    path = _with_cells(tmp_path, "cg_name", pii="none")
    model = load_form(path)
    assert model["cg_name"].pii == "none"
    assert classify_with_reasons(model)["cg_name"] == ("drop", "direct identifier")
    assert "pii-inherited" in {f.rule for f in lint_form(path, compile=False)}
    # With a reason the workbook's class stands (and lint accepts it).
    reasoned = _with_cells(tmp_path / "reasoned", "cg_name", pii="quasi",
                           pii_reason="reviewed: see the DPIA")
    assert classify_with_reasons(load_form(reasoned))["cg_name"] == ("key", "quasi-identifier")
    assert "pii-inherited" not in {f.rule for f in lint_form(reasoned, compile=False)}


def test_child_selection_draws_are_dropped(household: FormModel) -> None:
    reasons = classify_with_reasons(household)
    assert "random()" in household["sel_rand"].calculation
    assert "${sel_rand}" in household["sel_idx"].calculation
    assert reasons["sel_rand"] == reasons["sel_idx"] == DRAW
    # Interview times keep their month; counts of the roster are not draws.
    assert {reasons[c][0] for c in ("start", "end", "today")} == {"month"}
    assert reasons["n_members"][1] != DRAW[1]


def test_random_and_uuid_calculations_are_dropped(tmp_path: Path) -> None:
    survey = [*valid_survey(),
              q("calculate", "draw", calculation="once(random())"),
              q("calculate", "half", calculation="if(${draw} < 0.5, 1, 2)"),
              q("calculate", "token", calculation="uuid()"),
              q("calculate", "adult", calculation="if(${age} >= 18, 1, 0)")]
    reasons = classify_with_reasons(load_form(write_workbook(tmp_path / "t.xlsx", survey)))
    assert reasons["draw"] == reasons["half"] == reasons["token"] == DRAW
    assert reasons["adult"] == ("keep", "")
