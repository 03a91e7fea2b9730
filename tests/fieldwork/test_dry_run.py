"""``dhsurvey simulate --dry-run FORM``: a designer tries out one workbook with no country file —
simulated submissions as CSV (a table per repeat), how often each question was reached, and
what the simulator had to give up on."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner
from workbooks import YES_NO, q, valid_survey, write_workbook

from dhsurvey.cli import app


def _form(tmp_path: Path) -> Path:
    survey = [*valid_survey()[:-1],
              q("begin_repeat", "friends", "Friends"),
              q("text", "friend", "Name", pii="direct"),
              q("end_repeat", "friends"),
              q("text", "never", "Never", relevant="${age} > 500"),
              q("integer", "odd", "Odd", constraint=". > 5 and . < 3", message="No."),
              q("end_group", "main")]
    return write_workbook(tmp_path / "try.xlsx", survey, YES_NO)


def test_dry_run_writes_submissions_and_reach(tmp_path: Path) -> None:
    form, out = _form(tmp_path), tmp_path / "out"
    cwd = os.getcwd()
    os.chdir(tmp_path)  # no instruments/ folder, no country file here
    try:
        result = CliRunner().invoke(app, ["simulate", "--dry-run", str(form), "--n", "60",
                                          "--out", str(out), "--seed", "3"])
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, result.output
    root = pd.read_csv(out / "test_form.csv", dtype=str)
    friends = pd.read_csv(out / "test_form-friends.csv", dtype=str)
    assert len(root) == 60 and root["KEY"].is_unique
    assert set(friends["PARENT_KEY"]) <= set(root["KEY"])
    reached = pd.read_csv(out / "reached.csv").set_index("name")
    consented = int((root["consent"] == "1").sum())
    assert 48 <= consented < 60  # most agree, as in fieldwork; a few refuse
    assert reached.loc["consent", "reached"] == 60
    assert reached.loc["age", "reached"] == consented
    assert reached.loc["friend", "reached"] == len(set(friends["PARENT_KEY"]))
    assert reached.loc["never", "reached"] == 0
    assert reached.loc["age", "share"] == round(consented / 60, 4)
    gave_up = pd.read_csv(out / "gave_up.csv")
    assert list(gave_up["field"]) == ["odd"] and gave_up["column"].iloc[0] == "constraint"
    text = " ".join(result.output.split())
    assert "questions reached in 60 simulated interviews" in text
    assert "gave up" in text and "'odd'" in text


def test_dry_run_is_reproducible_and_even_draws_differ(tmp_path: Path) -> None:
    form = _form(tmp_path)
    runner = CliRunner()
    outs = []
    for name, extra in (("a", []), ("b", []), ("c", ["--even"])):
        out = tmp_path / name
        result = runner.invoke(app, ["simulate", "--dry-run", str(form), "--n", "40",
                                     "--out", str(out), *extra])
        assert result.exit_code == 0, result.output
        outs.append((out / "test_form.csv").read_bytes())
    assert outs[0] == outs[1] and outs[0] != outs[2]


def test_dry_run_refuses_fieldwork_options_and_bad_workbooks(tmp_path: Path) -> None:
    runner = CliRunner()
    form = _form(tmp_path)
    mixed = runner.invoke(app, ["simulate", "--dry-run", str(form), "--out", str(tmp_path / "o"),
                                "--country", "KEN"])
    assert mixed.exit_code == 2 and "--dry-run simulates one workbook" in mixed.output
    broken = tmp_path / "broken.xlsx"
    broken.write_bytes(b"not a workbook")
    bad = runner.invoke(app, ["simulate", "--dry-run", str(broken), "--out", str(tmp_path / "o")])
    assert bad.exit_code == 2 and "broken.xlsx" in bad.output
    assert "Traceback" not in bad.output
