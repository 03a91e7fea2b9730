"""The simulator answers forms as found in the wild: an integer with no constraint, a select
whose choices are the answers given in a repeat (``select_one ${name}``), a literal default,
every question type, repeats without a count and nested ones, constraints it cannot meet and
expressions it cannot evaluate (given up on and recorded, the rest of the form answered)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyxform.xls2xform import convert

from dhsurvey.errors import DhsurveyError
from dhsurvey.fieldwork.answers import GaveUp, Presets, answer_form, dry_run, sample_regex
from dhsurvey.forms.frames import PARENT
from dhsurvey.forms.model import load_form


def _workbook(path: Path) -> Path:
    import openpyxl

    book = openpyxl.Workbook()
    ws = book.active
    ws.title = "survey"
    for row in [
        ["type", "name", "label", "default", "repeat_count"],
        ["integer", "members", "How many people?", None, None],
        ["text", "status", "Status", "N/A (none)", None],
        ["begin_repeat", "roster", "Person", None, "3"],
        ["text", "member_name", "Name", None, None],
        ["end_repeat", "roster", None, None, None],
        ["select_one ${member_name}", "head", "Who is the head?", None, None],
    ]:
        ws.append(row)
    book.save(path)
    return path


def test_simulator_answers_forms_from_the_wild(tmp_path: Path) -> None:
    path = _workbook(tmp_path / "wild_roster.xlsx")
    assert "<h:html" in convert(xlsform=str(path), validate=False).xform
    model = load_form(path)
    keys = pd.Index([f"uuid:{i}" for i in range(20)])
    data = answer_form(model, keys, Presets(), np.random.default_rng(7))
    root, roster = data.root, data.repeats["roster"]
    assert pd.to_numeric(root["members"]).between(0, 20).all()
    assert (root["status"] == "N/A (none)").all()
    names = roster.groupby(PARENT)["member_name"].apply(set)
    assert len(roster) == 60
    for key in keys:
        assert root.loc[key, "head"] in names[key]


def _book(path: Path, survey: list[list[object]], choices: list[list[object]] | None = None
          ) -> Path:
    """An .xlsx with these rows (first row: the header), as found in the wild."""
    import openpyxl

    book = openpyxl.Workbook()
    ws = book.active
    ws.title = "survey"
    for row in survey:
        ws.append(row)
    if choices is not None:
        sheet = book.create_sheet("choices")
        for row in choices:
            sheet.append(row)
    book.save(path)
    return path


def test_every_question_type_gets_a_value_of_its_shape(tmp_path: Path) -> None:
    path = _book(tmp_path / "types.xlsx", [
        ["type", "name", "label", "parameters"],
        ["time", "t", "Time", None],
        ["datetime", "dt", "When", None],
        ["geotrace", "trace", "Path", None],
        ["geoshape", "shape", "Area", None],
        ["barcode", "code", "Scan", None],
        ["image", "photo", "Photo", None],
        ["audio", "sound", "Sound", None],
        ["file", "doc", "Document", None],
        ["range", "score", "Score", "start=2 end=8 step=2"],
        ["rank order", "order", "Rank", None],
        ["select_one_from_file towns.csv", "town", "Town", None],
        ["acknowledge", "ok", "OK?", None],
    ], [["list_name", "name", "label"], ["order", "a", "A"], ["order", "b", "B"],
        ["order", "c", "C"]])
    model = load_form(path)
    gave_up: list[GaveUp] = []
    data = answer_form(model, pd.Index([f"uuid:{i}" for i in range(30)]), Presets(),
                       np.random.default_rng(3), gave_up=gave_up)
    root = data.root
    assert gave_up == []
    assert root["t"].str.fullmatch(r"\d\d:\d\d:00\.000\+00:00").all()
    assert root["dt"].str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:00\.000\+00:00").all()
    assert (root["trace"].str.count(";") == 2).all()
    shape = root["shape"].str.split(";")
    assert (shape.str.len() == 4).all() and (shape.str[0] == shape.str[-1]).all()
    assert root["code"].str.fullmatch(r"\d{12}").all()
    assert root["photo"].str.endswith(".jpg").all() and root["sound"].str.endswith(".m4a").all()
    assert set(root["score"]) <= {"2", "4", "6", "8"}
    assert root["order"].map(lambda v: sorted(v.split()) == ["a", "b", "c"]).all()
    assert root["order"].nunique() > 1  # a ranking, not always the sheet's order
    assert root["town"].notna().all() and root["doc"].notna().all()


def test_a_constraint_no_draw_satisfies_is_given_up_on_and_recorded(tmp_path: Path) -> None:
    path = _book(tmp_path / "strict.xlsx", [
        ["type", "name", "label", "constraint"],
        ["integer", "age", "Age", "${age} > 0 and ${age} < 120"],
        ["text", "phone", "Phone", "regex(., '^07[0-9]{8}$')"],
        ["integer", "odd", "Odd", ". mod 2 = 1 and . mod 2 = 0"],
        ["text", "after", "After", None],
    ])
    model = load_form(path)
    keys = pd.Index([f"uuid:{i}" for i in range(25)])
    gave_up: list[GaveUp] = []
    data = answer_form(model, keys, Presets(), np.random.default_rng(1), gave_up=gave_up)
    root = data.root
    # ${age} in its own constraint reads the value being tried; a regex is sampled.
    assert pd.to_numeric(root["age"]).between(1, 119).all()
    assert root["phone"].str.fullmatch(r"07\d{8}").all()
    # The impossible one is left empty, recorded with its cell, and the form goes on.
    assert root["odd"].isna().all() and root["after"].notna().all()
    (record,) = gave_up
    assert (record.field, record.row, record.column, record.rows) == ("odd", 4, "constraint", 25)
    assert "no value satisfies" in str(record)
    # Without a record to keep, the study's simulator is told (a bug in its scenario).
    with pytest.raises(DhsurveyError, match="'odd'"):
        answer_form(model, keys, Presets(), np.random.default_rng(1))


def test_repeats_without_count_and_nested_repeats(tmp_path: Path) -> None:
    path = _book(tmp_path / "nested.xlsx", [
        ["type", "name", "label", "relevant"],
        ["begin_repeat", "plot", "Plot", None],
        ["decimal", "area", "Area", None],
        ["begin_repeat", "tree", "Tree", None],
        ["select_one kind", "species", "Species", None],
        ["text", "species_oth", "Other species", "${species} = 'other'"],
        ["end_repeat", "tree", None, None],
        ["end_repeat", "plot", None, None],
    ], [["list_name", "name", "label"], ["kind", "oak", "Oak"], ["kind", "other", "Other"]])
    model = load_form(path)
    run = dry_run(model, 40, seed=5)
    plots, trees = run.data.repeats["plot"], run.data.repeats["tree"]
    per_submission = plots.groupby(PARENT).size()
    assert len(per_submission) == 40 and per_submission.between(1, 3).all()
    assert set(trees[PARENT]) <= set(plots.index)
    assert trees.groupby(PARENT).size().between(1, 3).all()
    other = trees["species"] == "other"
    assert trees.loc[other, "species_oth"].notna().all()
    assert trees.loc[~other, "species_oth"].isna().all()
    assert run.reached["species_oth"] == len(set(plots.loc[trees.loc[other, PARENT],
                                                             PARENT]))
    assert run.gave_up == []


def test_expressions_the_evaluator_rejects_are_given_up_on(tmp_path: Path) -> None:
    path = _book(tmp_path / "filter.xlsx", [
        ["type", "name", "label", "choice_filter", "constraint"],
        ["integer", "county", "County", None, None],
        # The choices sheet has no 'county' column: the evaluator stops there.
        ["select_one towns", "town", "Town", "county = ${county}", None],
        ["text", "mail", "Mail", None, "regex(., '^[\\w-\\.]+@x$')"],
    ], [["list_name", "name", "label"], ["towns", "1", "A"], ["towns", "2", "B"]])
    model = load_form(path)
    run = dry_run(model, 10)
    assert run.data.root["town"].isin(["1", "2"]).all()
    assert {(g.field, g.column) for g in run.gave_up} == {("town", "choice_filter"),
                                                          ("mail", "constraint")}


def test_sample_regex_matches_its_pattern() -> None:
    rng = np.random.default_rng(0)
    for pattern in [r"^[^@\s]+@[^@\s]+\.[a-z]{2,3}$", r"(07|01)\d{8}", r"[A-Z]{2}-\d{3,4}",
                    r"^\w+( \w+)?$"]:
        for _ in range(20):
            text = sample_regex(pattern, rng)
            assert text is not None and re.fullmatch(pattern, text), (pattern, text)
    assert sample_regex(r"(a)\1", rng) is None  # a back reference cannot be sampled
    assert sample_regex("[", rng) is None


def test_reachability_mode_takes_rare_branches(tmp_path: Path) -> None:
    """An 'other, specify' behind three gates: drawn as respondents answer it is rarely
    reached; drawn evenly (lint's mode) it is reached in a few hundred interviews."""
    yes_no = [["yes_no", "1", "Yes"], ["yes_no", "0", "No"], ["yes_no", "99", "Refuse"]]
    path = _book(tmp_path / "rare.xlsx", [
        ["type", "name", "label", "relevant", "constraint"],
        ["select_one yes_no", "a", "A", None, None],
        ["select_one yes_no", "b", "B", "${a} = 1", None],
        ["integer", "age", "Age", "${b} = 1", ". >= 0 and . <= 110"],
        ["select_multiple who", "who", "Who", "${age} >= 60",
         "not(selected(., '1') and count-selected(.) > 1)"],
        ["text", "who_oth", "Who else", "selected(${who}, '96')", None],
        ["note", "alone", "Told no one", "selected(${who}, '1')", None],
    ], [["list_name", "name", "label"], *yes_no,
        *[["who", str(c), f"W{c}"] for c in (1, 2, 3, 4, 5, 6, 7)], ["who", "96", "Other"]])
    model = load_form(path)
    plain = dry_run(model, 500, seed=1)
    even = dry_run(model, 500, seed=1, uniform=True)
    assert plain.reached["who_oth"] <= 2
    assert even.reached["who_oth"] >= 10 and even.reached["alone"] >= 10
