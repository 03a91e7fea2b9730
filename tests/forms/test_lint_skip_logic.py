"""Skip-logic rules: conditions that silently hide a question, compare a select_multiple with
``=``, use a code the list does not have, or accept no answer; and one finding per cell."""

from __future__ import annotations

from pathlib import Path

import pytest
from workbooks import EN, SW, YES_NO, c, q, valid_survey, write_workbook

from dhsurvey.forms.lint import ERROR, lint_form

KEY = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"
NEW_RULES = ("relevant-later", "select-multiple-equals", "code-not-in-list",
             "constraint-impossible")
TOLD = q("select_multiple yes_no", "told", "Told whom?", pii="quasi")


def _lint(path: Path) -> list:
    return lint_form(path, validate=False, public_key=KEY)


def _inside_main(*rows: dict[str, str]) -> list[dict[str, str]]:
    """valid_survey() with ``rows`` at the end of the consented group (from Excel row 8)."""
    survey = valid_survey()
    survey[6:6] = list(rows)
    return survey


def _hits(tmp_path: Path, survey: list[dict[str, str]], rule: str | None = None,
          choices: list[dict[str, str]] | None = None) -> list:
    findings = _lint(write_workbook(tmp_path / "t.xlsx", survey, choices))
    return [f for f in findings if (f.rule == rule if rule else f.rule in NEW_RULES)]


def test_correct_skip_logic_stays_clean(tmp_path: Path) -> None:
    survey = _inside_main(
        TOLD,
        q("calculate", "told_any", calculation="if(selected(${told}, '1'), 1, 0)"),
        q("integer", "rooms", "Rooms", pii="quasi", constraint=". >= 1 and . <= 20",
          message="1 to 20.",
          relevant="selected(${told}, 1) and ${told_any} = 1 and ${told} != ''"),
        q("select_one yes_no", "owns", "Owns?", pii="quasi",
          relevant="${uses_internet} = 1 or ${consent} != '0' or ${later_calc} > 0"),
        q("integer", "floor", "Floor", pii="quasi", constraint=". = 3", message="3."),
        # a calculation standing later but computed from earlier answers is fine
        q("calculate", "later_calc", calculation="${age} * 2"),
    )
    assert _hits(tmp_path, survey) == []


def test_relevance_through_a_calculation_of_a_later_question(tmp_path: Path) -> None:
    survey = _inside_main(
        q("calculate", "has_beds", calculation="if(${beds} > 0, 1, 0)"),
        q("integer", "rooms", "Rooms", pii="quasi", relevant="${has_beds} = 1"),
        q("integer", "beds", "Beds", pii="quasi"),
    )
    (hit,) = _hits(tmp_path, survey, "relevant-later")
    assert (hit.sheet, hit.row, hit.column, hit.severity) == ("survey", 9, "relevant", ERROR)
    assert "'beds' (row 10) (through has_beds)" in hit.message
    assert "never asked" in hit.message


def test_group_relevance_on_its_own_question_and_choice_filter(tmp_path: Path) -> None:
    survey = valid_survey()
    survey[3] = {**survey[3], "relevant": "${consent} = 1 and ${age} > 0"}  # age is inside
    survey.append(q("select_one yes_no", "owns", "Owns?", pii="quasi",
                    choice_filter="${rooms} > 0"))
    survey.append(q("integer", "rooms", "Rooms", pii="quasi"))
    hits = _hits(tmp_path, survey, "relevant-later")
    assert [(f.row, f.column) for f in hits] == [(5, "relevant"), (9, "choice_filter")]


def test_later_question_in_the_same_repeat(tmp_path: Path) -> None:
    survey = [*valid_survey(),
              q("begin_repeat", "roster", "Members", "Wanakaya"),
              q("integer", "m_age", "Age", pii="quasi", relevant="${m_works} = 1"),
              q("select_one yes_no", "m_works", "Works?", pii="quasi"),
              q("end_repeat", "roster"),
              # read across instances by position: not a form-order question
              q("calculate", "n_working", calculation="count(${roster})", pii="quasi"),
              q("integer", "rooms", "Rooms", pii="quasi",
                relevant="${consent} = 1 and ${n_working} > 0")]
    hits = _hits(tmp_path, survey, "relevant-later")
    assert [(f.row, f.column) for f in hits] == [(10, "relevant")]


def test_select_multiple_equals_and_codes(tmp_path: Path) -> None:
    survey = _inside_main(
        TOLD,
        q("integer", "rooms", "Rooms", pii="quasi",
          relevant="${told} = '1' or ${told} != 0 or selected(${told}, '7')"),
        q("select_one yes_no", "owns", "Owns?", pii="quasi", constraint=". != 5",
          message="No 5."),
    )
    findings = _hits(tmp_path, survey)
    got = {(f.rule, f.row, f.column) for f in findings}
    assert got == {("select-multiple-equals", 9, "relevant"), ("code-not-in-list", 9, "relevant"),
                   ("code-not-in-list", 10, "constraint")}
    (equals,) = [f for f in findings if f.rule == "select-multiple-equals"]
    assert "selected(${told}, '1')" in equals.message and "${told} != '0'" in equals.message
    (missing,) = [f for f in findings if f.row == 9 and f.rule == "code-not-in-list"]
    assert "7 for 'told' (list 'yes_no' has 0, 1)" in missing.message


def test_code_not_in_list_names_the_list(tmp_path: Path) -> None:
    choices = [c("consent_list", "1", "Yes", "Ndiyo"), c("consent_list", "2", "No", "Hapana"),
               *YES_NO]
    survey = valid_survey()
    survey[2] = {**survey[2], "type": "select_one consent_list"}
    survey[3] = {**survey[3], "relevant": "${consent} = 3"}
    (hit,) = _hits(tmp_path, survey, "code-not-in-list", choices)
    assert (hit.row, hit.column, hit.severity) == (5, "relevant", ERROR)
    assert "3 for 'consent' (list 'consent_list' has 1, 2)" in hit.message


@pytest.mark.parametrize(("constraint", "impossible"), [
    (". > 17 and . < 12", True),
    ("17 < . and . <= 17", True),
    (". = 3 and . = 4", True),
    (". >= 5 and . <= 5", False),
    (". > 17 or . < 12", False),
    (". >= 0 and . <= 110 and . != 50", False),
])
def test_constraint_impossible(tmp_path: Path, constraint: str, impossible: bool) -> None:
    survey = valid_survey()
    survey[4] = {**survey[4], "constraint": constraint}
    hits = _hits(tmp_path, survey, "constraint-impossible")
    assert [(f.row, f.column) for f in hits] == ([(6, "constraint")] if impossible else [])


# -- one finding per cell ----------------------------------------------------------------------


def _cells(findings: list) -> list[tuple]:
    return [(f.sheet, f.row, f.column) for f in findings]


def test_one_missing_kiswahili_label_is_one_finding(tmp_path: Path) -> None:
    survey = valid_survey()
    survey[4] = {k: v for k, v in survey[4].items() if k != f"label::{SW}"}
    findings = _lint(write_workbook(tmp_path / "t.xlsx", survey))
    assert [(f.rule, *_cells([f])[0]) for f in findings] == [
        ("translation-missing", "survey", 6, f"label::{SW}")]


def test_one_missing_kiswahili_choice_label_is_one_finding(tmp_path: Path) -> None:
    # choice-label-missing says it already; translation-missing used to repeat it.
    choices = [YES_NO[0], {k: v for k, v in YES_NO[1].items() if k != f"label::{SW}"}]
    findings = _lint(write_workbook(tmp_path / "t.xlsx", choices=choices))
    assert [(f.rule, *_cells([f])[0]) for f in findings] == [
        ("choice-label-missing", "choices", 3, f"label::{SW}")]


def test_missing_default_label_is_one_finding(tmp_path: Path) -> None:
    survey = valid_survey()
    survey[4] = {k: v for k, v in survey[4].items() if k != f"label::{EN}"}
    findings = [f for f in _lint(write_workbook(tmp_path / "t.xlsx", survey))
                if f.sheet == "survey" and f.row == 6]
    assert [(f.rule, f.column) for f in findings] == [("label-missing", f"label::{EN}")]
