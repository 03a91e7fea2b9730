"""Semantic diff between two versions of a workbook."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner
from workbooks import EN, YES_NO, c, q, valid_survey, write_workbook

from dhsurvey.cli import app
from dhsurvey.forms.diff import diff_files


def test_reports_each_kind_of_change(tmp_path: Path) -> None:
    old = write_workbook(tmp_path / "old.xlsx")
    survey = valid_survey()
    survey[4] = {**survey[4], f"label::{EN}": "Age at last birthday",
                 "constraint": ". >= 0 and . <= 120"}
    survey[5] = {**survey[5], "relevant": "${age} >= 10"}
    uses = survey.pop(5)
    survey.insert(3, {**uses, "relevant": "${consent} = 1"})  # moved out of the group
    survey.append(q("note", "thanks", "Thank you", "Asante"))
    new = write_workbook(tmp_path / "new.xlsx", survey,
                         [*YES_NO, c("yes_no", "99", "Prefer not to say", "Sipendi kusema")])
    changes = diff_files(old, new)
    kinds = {(ch.kind, ch.name) for ch in changes}
    assert ("label", "age") in kinds
    assert ("logic", "age") in kinds
    assert ("moved", "uses_internet") in kinds
    assert ("logic", "uses_internet") in kinds
    assert ("added", "thanks") in kinds
    assert ("choices", "yes_no") in kinds
    assert not [ch for ch in changes if ch.name in ("start", "end", "consent")]


def test_identical_workbooks_have_no_changes(tmp_path: Path) -> None:
    a = write_workbook(tmp_path / "a.xlsx")
    b = write_workbook(tmp_path / "b.xlsx")
    assert diff_files(a, b) == []


def test_removed_field_and_cli(tmp_path: Path) -> None:
    old = write_workbook(tmp_path / "old.xlsx")
    survey = valid_survey()
    del survey[5]
    new = write_workbook(tmp_path / "new.xlsx", survey)
    result = CliRunner().invoke(app, ["diff", str(old), str(new)])
    assert result.exit_code == 0
    assert "removed   uses_internet" in result.output
    assert "1 change(s)" in result.output
