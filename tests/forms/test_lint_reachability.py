"""Rule ``unreachable``: lint simulates interviews (choices drawn evenly, numbers across their
range and at the values the conditions test, then runs steered towards what was not reached)
and reports questions, notes and groups that no interview shows. Rare but legitimate branches
— an "other, specify" behind several gates — must not be reported."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner
from workbooks import INSTRUMENTS, YES_NO, c, q, valid_survey, write_workbook

from dhsurvey.cli import _reach, app
from dhsurvey.fieldwork.answers import dry_run, reachability
from dhsurvey.forms.lint import WARNING, lint_form, unreachable
from dhsurvey.forms.model import load_form

KEY = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"
WHO = [c("who", str(i), f"Person {i}") for i in range(1, 8)] + [
    c("who", "96", "Other"), c("who", "99", "Prefer not to say")]


def _lint(path: Path, n: int = 500) -> list:
    return [f for f in lint_form(path, validate=False, public_key=KEY, reach=_reach(n))
            if f.rule == "unreachable"]


def test_a_question_no_answer_can_show_is_reported(tmp_path: Path) -> None:
    survey = [*valid_survey(),
              q("text", "never", "Never shown", relevant="${consent} = 1 and ${consent} = 0"),
              q("begin_group", "ghost", "Ghost", relevant="${age} > 200"),
              q("note", "ghost_note", "Inside"),
              q("integer", "ghost_q", "Inside too"),
              q("end_group", "ghost")]
    path = write_workbook(tmp_path / "dead.xlsx", survey)
    hits = _lint(path)
    assert [(f.row, f.severity) for f in hits] == [(9, WARNING), (10, WARNING)]
    never, ghost = hits
    assert (never.sheet, never.column) == ("survey", "relevant")
    assert "'never'" in never.message and "none of 500 simulated interviews" in never.message
    # The group is reported once, not again for each row it holds.
    assert "group 'ghost' (holding 2 rows)" in ghost.message


def test_rare_branches_behind_gates_are_reached(tmp_path: Path) -> None:
    """Consent, age ≥ 12, a yes, then "told no one" (alone) or "other, specify": each a
    few percent of real answers, all reached in 500 even draws."""
    survey = [*valid_survey()[:-1],
              q("select_one yes_no", "asked", "Asked?", relevant="${uses_internet} = 1"),
              q("select_multiple who", "told", "Told whom?", relevant="${asked} = 1",
                constraint="not(selected(., '1') and count-selected(.) > 1)", message="Alone."),
              q("text", "told_oth", "Who else?", relevant="selected(${told}, '96')"),
              q("select_multiple who", "why_not", "Why not?", relevant="selected(${told}, '1')"),
              q("note", "old", "Over 100", relevant="${age} >= 100"),
              q("end_group", "main")]
    path = write_workbook(tmp_path / "rare.xlsx", survey, [*YES_NO, *WHO])
    assert _lint(path) == []
    run = dry_run(load_form(path), 500, uniform=True)
    assert min(run.reached[n] for n in ("told_oth", "why_not", "old")) >= 5
    # Drawn as respondents answer (no even draws), the same branches are barely reached.
    plain = dry_run(load_form(path), 500)
    assert plain.reached["why_not"] < run.reached["why_not"] / 2


def test_lint_option_simulate_sets_and_disables_the_check(tmp_path: Path) -> None:
    survey = [*valid_survey(), q("text", "never", "Never", relevant="${age} > 500")]
    path = write_workbook(tmp_path / "opt.xlsx", survey)
    runner = CliRunner()
    base = ["lint", str(path), "--no-validate", "--no-summary"]
    on = runner.invoke(app, [*base, "--simulate", "50"])
    assert "unreachable" in on.output and "none of 50 simulated" in " ".join(on.output.split())
    off = runner.invoke(app, [*base, "--simulate", "0"])
    assert "unreachable" not in off.output


def test_a_workbook_the_simulator_cannot_run_is_reported_not_raised(tmp_path: Path) -> None:
    def broken(model: object) -> tuple[int, dict[str, int]]:
        raise ValueError("no way through")

    path = write_workbook(tmp_path / "any.xlsx")
    findings = lint_form(path, validate=False, public_key=KEY, reach=broken)
    (hit,) = [f for f in findings if f.rule == "simulation-failed"]
    assert "no way through" in hit.message and hit.severity == WARNING


def test_unreachable_skips_what_the_simulator_did_not_count(tmp_path: Path) -> None:
    model = load_form(write_workbook(tmp_path / "counts.xlsx"))
    reached = {"consent": 10, "main": 0, "age": 0}
    hits = list(unreachable(model, 10, reached))
    # 'main' is reported; what it holds is not, and 'uses_internet' was not counted.
    assert [f.row for f in hits] == [5]


@pytest.mark.parametrize("form", ["household", "child", "caregiver", "frontline_worker"])
def test_the_study_instruments_have_no_unreachable_question(form: str) -> None:
    model = load_form(INSTRUMENTS / f"{form}.xlsx")
    n, reached = _reach(500)(model)
    assert [f.message for f in unreachable(model, n, reached)] == []


def test_a_branch_behind_many_gates_is_found_by_steering(tmp_path: Path) -> None:
    """Twelve gates in a row, each open for one code of ten: even draws almost never pass
    them all, a run steered by the conditions on the way does."""
    ten = [c("ten", str(i), f"Option {i}") for i in range(10)]
    gates = [q("select_one ten", f"g{k}", f"Gate {k}",
               relevant=f"${{g{k - 1}}} = {k % 10}" if k else "") for k in range(12)]
    survey = [*gates, q("note", "deep", "Through every gate", relevant="${g11} = 1")]
    path = write_workbook(tmp_path / "deep.xlsx", survey, ten)
    model = load_form(path)
    assert dry_run(model, 500, uniform=True).reached["deep"] <= 3
    assert reachability(model, 500)["deep"] > 0
    assert _lint(path) == []


def test_defaults_and_choices_from_files_do_not_hide_branches(tmp_path: Path) -> None:
    """A prefilled default is an answer the interviewer may change, and a select whose
    choices are in a CSV the workbook does not carry may hold the code its conditions test."""
    survey = [q("select_one yes_no", "owns", "Owns?", default="0"),
              q("text", "what", "What?", relevant="${owns} = 1"),
              q("select_one_from_file species.csv", "species", "Species"),
              q("text", "species_oth", "Which?", relevant="${species} = 'other'")]
    path = write_workbook(tmp_path / "defaults.xlsx", survey)
    model = load_form(path)
    assert dry_run(model, 50).reached["what"] == 0  # as respondents: always the default
    reached = reachability(model, 200)
    assert reached["what"] > 0 and reached["species_oth"] > 0
    assert _lint(path, 200) == []
