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
from dhsurvey.forms.model import load_form
from dhsurvey.forms.translate import SourceRecord, record_sources, text_hash

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
CG_NAME = "indexed-repeat(${first_name}, ${roster}, ${caregiver_line})"


def _names(cg_pii: str = "direct", **cg_cells: str) -> list[dict[str, str]]:
    """valid_survey() with the household's name pattern inside the consented group: a roster
    of first names (direct), a caregiver line, ``cg_name`` copying the caregiver's name
    (Excel row 12) and ``n_members`` counting the roster (row 13)."""
    return _add(
        q("begin_repeat", "roster", "Household members", "Wanakaya"),
        q("text", "first_name", "First name", "Jina la kwanza", pii="direct"),
        q("end_repeat", "roster"),
        q("integer", "caregiver_line", "Caregiver's line", "Mstari wa mlezi", pii="none"),
        q("calculate", "cg_name", calculation=CG_NAME, pii=cg_pii, **cg_cells),
        q("calculate", "n_members", calculation="count(${roster})", pii="quasi"),
        at=8)

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
    "end-name-mismatch": (lambda p: write_workbook(p, _edit(8, name="other")), 8, {}),
    "survey-empty": (lambda p: write_workbook(p, []), None, {}),
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
    "pii-inherited": (lambda p: write_workbook(p, _names("none")), 12, {}),
    "translation-missing": (lambda p: write_workbook(p, _edit(6, **{f"label::{SW}": ""})), 6,
                            {}),
    "relevant-later": (lambda p: write_workbook(p, _add(
        q("integer", "rooms", "Rooms", pii="quasi", relevant="${beds} > 0"),
        q("integer", "beds", "Beds", pii="quasi"))), 7, {}),
    "select-multiple-equals": (lambda p: write_workbook(p, _add(
        q("select_multiple yes_no", "told", "Told whom?", pii="quasi"),
        q("integer", "rooms", "Rooms", pii="quasi", relevant="${told} = '1'"))), 8, {}),
    "code-not-in-list": (lambda p: write_workbook(p, _edit(5, relevant="${consent} = 3")), 5,
                         {}),
    "constraint-impossible": (lambda p: write_workbook(
        p, _edit(6, constraint=". > 17 and . < 12")), 6, {}),
    # row 7: the draw; row 8 computes with its text (a draw below 0.001 reads back as NaN)
    "random-as-text": (lambda p: write_workbook(p, _add(
        q("calculate", "draw", calculation="once(random())", pii="none"),
        q("calculate", "pick", calculation="int(${draw} * 3) + 1", pii="none"))), 8, {}),
    # 'Umri kwa miaka' was imported for an English label reading otherwise than today's
    "translation-stale": (lambda p: record_sources(write_workbook(p), {
        ("survey", "age", f"label::{SW}"): SourceRecord(
            EN, text_hash("Age at last birthday"), text_hash("Umri kwa miaka"))}), 6, {}),
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


def test_cli_prints_locations_as_written(tmp_path: Path) -> None:
    """A location such as ``…:label::Kiswahili (sw)`` is printed as it is, not read as the
    emoji code ``:label:``."""
    path = write_workbook(tmp_path / "t.xlsx", _edit(6, **{f"label::{SW}": ""}))
    out = CliRunner().invoke(app, ["lint", "--no-validate", str(path)]).output
    assert f"survey:row 6:label::{SW}" in "".join(out.split("\n"))
    assert "\N{LABEL}" not in out


def test_choices_header_variants_are_read(tmp_path: Path) -> None:
    # A workbook whose choices carry an extra filter column still lints clean.
    choices = [{**ch, "country": "404"} for ch in YES_NO]
    path = write_workbook(tmp_path / "t.xlsx", choices=choices,
                          choices_header=[*CHOICES_HEADER, "country"])
    assert [f for f in _lint(path, {}) if f.severity == ERROR] == []


# -- pii classes: every field, and calculations inherit what they copy ---------------------------


@pytest.mark.parametrize("row", [
    {"type": "calculate", "name": "double_age", "calculation": "${age} * 2"},
    {"type": "hidden", "name": "batch"},
    {"type": "deviceid", "name": "deviceid"},
    {k: v for k, v in q("integer", "rooms", "Rooms", "Vyumba").items() if k != "pii"},
], ids=lambda r: r["type"])
def test_every_field_holding_data_needs_a_pii_class(tmp_path: Path, row: dict) -> None:
    path = write_workbook(tmp_path / "t.xlsx", _add(row, at=8))
    hits = [f for f in _lint(path, {}) if f.rule == "pii-missing"]
    assert [(f.row, f.column, f.severity) for f in hits] == [(8, "pii", ERROR)]
    assert f"'{row['name']}'" in hits[0].message


def test_calculation_classed_weaker_than_the_name_it_copies(tmp_path: Path) -> None:
    path = write_workbook(tmp_path / "t.xlsx", _names("none"))
    findings = _lint(path, {})
    (hit,) = [f for f in findings if f.rule == "pii-inherited"]
    assert (hit.row, hit.column, hit.severity) == (12, "pii", ERROR)
    assert hit.message.startswith("'cg_name' references direct field 'first_name' (via ")
    assert hit.message.endswith("but is classed 'none'; class it direct or give a pii_reason")
    # n_members counts the roster that holds the names: it copies none of them.
    assert [f.rule for f in findings if f.severity == ERROR] == ["pii-inherited"]


def test_inheritance_follows_calculations(tmp_path: Path) -> None:
    survey = _names("none")
    survey.insert(12, q("calculate", "cg_greeting", calculation="concat('Dear ', ${cg_name})",
                        pii="none"))
    findings = _lint(write_workbook(tmp_path / "t.xlsx", survey), {})
    hits = {f.row: f.message for f in findings if f.rule == "pii-inherited"}
    assert set(hits) == {12, 14}
    assert hits[14].startswith("'cg_greeting' references direct field 'first_name' (via ")
    assert "cg_name" in hits[14]


def test_pii_reason_allows_a_weaker_class(tmp_path: Path) -> None:
    reason = "only whether a caregiver was named: the form never shows the value"
    path = write_workbook(tmp_path / "t.xlsx", _names("none", pii_reason=reason))
    assert [f for f in _lint(path, {}) if f.severity == ERROR or f.rule == "column-unknown"] == []
    model = load_form(path)
    assert model["cg_name"].pii_reason == reason
    assert model.effective_pii("cg_name") == "none"


def test_effective_class_is_the_inherited_one_without_a_reason(tmp_path: Path) -> None:
    model = load_form(write_workbook(tmp_path / "t.xlsx", _names("none")))
    assert model["cg_name"].pii == "none"
    assert model.effective_pii("cg_name") == "direct"
    assert "cg_name" in {i.name for i in model.by_pii("direct")}
    # Counting the roster's rows is not copying its names.
    assert model.effective_pii("n_members") == "quasi"


def test_a_blank_calculation_is_effectively_what_it_copies(tmp_path: Path) -> None:
    path = write_workbook(tmp_path / "t.xlsx", _names(""))
    (hit,) = [f for f in _lint(path, {}) if f.rule == "pii-missing"]
    assert "'cg_name'" in hit.message and "first_name" in hit.message
    assert load_form(path).effective_pii("cg_name") == "direct"
