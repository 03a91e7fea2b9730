"""Each lint rule has a fixture that triggers it; a clean workbook triggers none."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner
from workbooks import (
    CHOICES_HEADER,
    EN,
    SURVEY_HEADER,
    SW,
    YES_NO,
    c,
    q,
    valid_survey,
    write_workbook,
)

from dhsurvey.cli import app
from dhsurvey.forms.lint import ERROR, RULES, lint_form

KEY = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"  # any non-empty key satisfies the rule


def _edit(row: int, **cells: str) -> list[dict[str, str]]:
    """valid_survey() with cells of Excel row ``row`` changed ('' removes a cell)."""
    survey = valid_survey()
    survey[row - 2] = {k: v for k, v in {**survey[row - 2], **cells}.items() if v != ""}
    return survey


def _add(*rows: dict[str, str], at: int = 7) -> list[dict[str, str]]:
    survey = valid_survey()
    survey[at - 2:at - 2] = list(rows)
    return survey


def _drop_header(*names: str) -> list[str]:
    return [h for h in SURVEY_HEADER if h not in names]


LONG = "x" * 81
ROSTER = [
    q("begin_repeat", "roster", "Household members", "Wanakaya"),
    q("integer", "member_age", "Member age", "Umri", pii="quasi"),
    q("end_repeat", "roster"),
]

# rule → (workbook maker, expected row or None when sheet-level, lint options)
FIXTURES: dict[str, tuple[Callable[[Path], Path], int | None, dict]] = {
    "form": (lambda p: write_workbook(p, _edit(6, type="integr")), 6, {}),
    "pyxform": (lambda p: write_workbook(p, _add(
        {k: v for k, v in q("integer", "nolabel", pii="quasi").items() if "hint" not in k})),
        None, {}),
    "pyxform-warning": (lambda p: write_workbook(
        p, survey_header=_drop_header(f"hint::{SW}")), None, {}),
    "odk-validate": (lambda p: write_workbook(p, _add(
        q("calculate", "loop_a", calculation="${loop_b} + 1"),
        q("calculate", "loop_b", calculation="${loop_a} + 1"))), None, {"validate": True}),
    "expression-syntax": (lambda p: write_workbook(p, _edit(7, relevant="${age} >> 3")), 7, {}),
    "encryption-key-missing": (lambda p: write_workbook(p), None, {"public_key": None}),
    "recommended-column-missing": (lambda p: write_workbook(
        p, survey_header=_drop_header(f"hint::{EN}", f"hint::{SW}")), 1, {}),
    "stata-label-missing": (lambda p: write_workbook(p, _edit(6, **{"label::stata": ""})), 6,
                            {}),
    "label-too-long": (lambda p: write_workbook(p, _edit(6, **{"label::stata": LONG})), 6, {}),
    "choice-list-unused": (lambda p: write_workbook(
        p, choices=[*YES_NO, c("sex", "1", "Male", "Mwanaume")]), 4, {}),
    "choice-name-not-numeric": (lambda p: write_workbook(
        p, choices=[c("yes_no", "yes", "Yes", "Ndiyo"), YES_NO[1]]), 2, {}),
    "choice-name-duplicate": (lambda p: write_workbook(
        p, choices=[*YES_NO, c("yes_no", "1", "Maybe", "Labda")]), 4, {}),
    "choice-label-missing": (lambda p: write_workbook(
        p, choices=[YES_NO[0], {**YES_NO[1], f"label::{SW}": None}]), 3, {}),
    "choice-label-duplicate": (lambda p: write_workbook(
        p, choices=[*YES_NO, c("yes_no", "2", "Yes", "Ndiyo sana")]), 4, {}),
    "whitespace": (lambda p: write_workbook(p, _edit(6, **{f"label::{EN}": "Age "})), 6, {}),
    "outdated-syntax": (lambda p: write_workbook(p, [*valid_survey(), *ROSTER[:1],
                        q("calculate", "line", calculation="position(..)"), *ROSTER[1:]]),
                        10, {}),
    "not-required": (lambda p: write_workbook(p, _edit(6, required="")), 6, {}),
    "required-note": (lambda p: write_workbook(
        p, _add(q("note", "info", "Read this.", "Soma hii.", required="yes"))), 7, {}),
    "label-missing": (lambda p: write_workbook(
        p, _edit(6, **{f"label::{EN}": "", f"label::{SW}": "", "label::stata": ""})), 6, {}),
    "end-name-missing": (lambda p: write_workbook(p, _edit(8, name="")), 8, {}),
    "name-too-long": (lambda p: write_workbook(p, [*valid_survey(), ROSTER[0],
                      q("integer", "n" * 30, "Long", pii="quasi"), ROSTER[2]]), 10, {}),
    "repeat-name-conflict": (lambda p: write_workbook(
        p, [*valid_survey(), *ROSTER, q("integer", "member_age_1", "Oldest", pii="quasi")]),
        12, {}),
    "constraint-message-missing": (lambda p: write_workbook(
        p, _edit(6, **{f"constraint_message::{EN}": "", f"constraint_message::{SW}": ""})),
        6, {}),
    "required-message-missing": (lambda p: write_workbook(
        p, _edit(6, **{f"required_message::{EN}": "", f"required_message::{SW}": ""})), 6, {}),
    "column-unknown": (lambda p: write_workbook(
        p, survey_header=[*SURVEY_HEADER, "lable::English (en)"]), 1, {}),
    "sensitive-no-refusal": (lambda p: write_workbook(p, _edit(7, pii="sensitive")), 7, {}),
    "consent-ungated": (lambda p: write_workbook(
        p, [*valid_survey(), q("integer", "rooms", "Rooms", "Vyumba", pii="quasi")]), 9, {}),
    "pii-missing": (lambda p: write_workbook(
        p, _add(q("text", "nickname", "Nickname", "Jina", pii=""))), 7, {}),
    "pii-invalid": (lambda p: write_workbook(p, _edit(6, pii="secret")), 6, {}),
    "translation-missing": (lambda p: write_workbook(p, _edit(6, **{f"label::{SW}": ""})), 6,
                            {}),
}


def test_every_rule_has_a_fixture() -> None:
    assert set(FIXTURES) == set(RULES)


def _lint(path: Path, options: dict) -> list:
    opts = {"validate": False, "public_key": KEY, **options}
    return lint_form(path, **opts)


def test_clean_workbook_has_no_findings(tmp_path: Path) -> None:
    findings = _lint(write_workbook(tmp_path / "clean.xlsx"), {"validate": True})
    assert findings == []


@pytest.mark.parametrize("rule", sorted(FIXTURES))
def test_rule_triggers(tmp_path: Path, rule: str) -> None:
    make, row, options = FIXTURES[rule]
    path = make(tmp_path / f"{rule}.xlsx")
    findings = _lint(path, options)
    hits = [f for f in findings if f.rule == rule]
    assert hits, f"{rule} not reported; got {[(f.rule, f.row) for f in findings]}"
    assert all(f.severity == RULES[rule][0] for f in hits)
    assert all(f.file == str(path) for f in hits)
    if row is not None:
        assert row in {f.row for f in hits}, [(f.rule, f.row, f.column) for f in hits]


def test_findings_name_sheet_row_column(tmp_path: Path) -> None:
    path = write_workbook(tmp_path / "t.xlsx", _edit(7, pii="sensitive"))
    (hit,) = [f for f in _lint(path, {}) if f.rule == "sensitive-no-refusal"]
    assert (hit.sheet, hit.row, hit.column) == ("survey", 7, "type")
    assert hit.location() == f"{path}:survey:row 7:type"


def test_consent_gate_follows_calculations(tmp_path: Path) -> None:
    survey = [*valid_survey(),
              q("calculate", "ok", calculation="if(${consent} = 1, 1, 0)"),
              q("integer", "rooms", "Rooms", "Vyumba", pii="quasi", relevant="${ok} = 1")]
    assert not [f for f in _lint(write_workbook(tmp_path / "t.xlsx", survey), {})
                if f.rule == "consent-ungated"]


def test_sensitive_with_refusal_is_clean(tmp_path: Path) -> None:
    choices = [*YES_NO, c("yes_no", "99", "Prefer not to say", "Sipendi kusema")]
    path = write_workbook(tmp_path / "t.xlsx", _edit(7, pii="sensitive"), choices)
    assert [f for f in _lint(path, {}) if f.severity == ERROR] == []


def test_pyxform_filler_counts_as_missing(tmp_path: Path) -> None:
    path = write_workbook(tmp_path / "t.xlsx", _edit(6, **{f"hint::{SW}": "-"}))
    hits = [f for f in _lint(path, {}) if f.rule == "translation-missing"]
    assert [(f.row, f.column) for f in hits] == [(6, f"hint::{SW}")]


def test_cli_exit_codes(tmp_path: Path) -> None:
    clean = write_workbook(tmp_path / "clean" / "f.xlsx")
    broken = write_workbook(tmp_path / "broken" / "f.xlsx", _edit(7, pii="sensitive"))
    runner = CliRunner()
    ok = runner.invoke(app, ["lint", "--no-validate", str(clean.parent)])
    assert ok.exit_code == 0, ok.output
    assert "0 error(s)" in ok.output
    bad = runner.invoke(app, ["lint", "--no-validate", "--json", str(broken)])
    assert bad.exit_code == 1
    assert '"rule": "sensitive-no-refusal"' in bad.output


def test_choices_header_variants_are_read(tmp_path: Path) -> None:
    # A workbook whose choices carry an extra filter column still lints clean.
    choices = [{**ch, "country": "404"} for ch in YES_NO]
    path = write_workbook(tmp_path / "t.xlsx", choices=choices,
                          choices_header=[*CHOICES_HEADER, "country"])
    assert [f for f in _lint(path, {}) if f.severity == ERROR] == []
