"""Simulated fieldwork follows the forms' own logic, has structure, and is reproducible."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dhsurvey.errors import DhsurveyError
from dhsurvey.fieldwork.config import load_country
from dhsurvey.fieldwork.faults import KINDS, inject_faults, parse_faults
from dhsurvey.fieldwork.simulate import FORMS, simulate_country
from dhsurvey.forms.frames import PARENT
from dhsurvey.forms.model import load_form
from dhsurvey.ingest.canonical import assert_same_content
from dhsurvey.validate.logic import check_logic

ROOT = Path(__file__).parents[2]
MODELS = {f: load_form(ROOT / "instruments" / f"{f}.xlsx") for f in FORMS}


def _config(iso: str):
    return load_country(ROOT / "instruments" / "countries" / f"{iso}.yaml")


@pytest.fixture(scope="module")
def kenya():
    return simulate_country(_config("KEN"), MODELS, seed=11, households=1500)


@pytest.mark.parametrize("iso", ["KEN", "TZA", "UGA"])
def test_clean_submissions_obey_every_rule_of_the_form(iso: str) -> None:
    sim = simulate_country(_config(iso), MODELS, seed=3, households=300)
    for form, raw in sim.forms.items():
        assert len(raw.root) > 0, form
        violations = check_logic(raw.to_form_data(MODELS[form]), recompute_calculations=True)
        assert violations.empty, violations.head().to_string()


def test_the_selected_child_is_the_forms_choice(kenya) -> None:
    hh = kenya.forms["household"].root.set_index("KEY")
    roster = kenya.forms["household"].repeats["roster"]
    chosen = hh[hh["sel_line"].notna()]
    assert len(chosen) > 100
    members = roster.set_index([PARENT, "line"])
    picked = members.loc[list(zip(chosen.index, chosen["sel_line"], strict=True))]
    assert (picked["eligible"] == "1").all()
    assert (picked["age"].astype(int).between(12, 17)).all()
    # Each eligible position is chosen about equally often: selection is random, not "first".
    n_eligible = chosen["n_eligible"].astype(int)
    two = chosen[n_eligible == 2]
    share_second = (two["sel_idx"] == "2").mean()
    assert 0.35 < share_second < 0.65
    child = kenya.forms["child"].root
    linked = child.merge(hh.reset_index(), on=["cluster", "hh_number"], suffixes=("", "_hh"))
    assert len(linked) == len(child)
    assert (linked["child_line"] == linked["sel_line"]).all()
    assert (linked["child_age"] == linked["sel_age"]).all()


def test_dispositions_and_response(kenya) -> None:
    disp = kenya.forms["household"].root["disposition"].value_counts(normalize=True)
    assert set(disp.index) <= {"1", "2", "3", "4", "5", "6", "7"}
    assert 0.02 < disp.get("6", 0) < 0.08  # vacant
    assert 0.25 < disp.get("1", 0) < 0.55  # complete with an eligible child
    assert disp.get("5", 0) > 0.2  # no eligible child


def test_ocsea_prevalence_has_structure(kenya) -> None:
    child = kenya.forms["child"].root
    answered = child[child["ocsea_talk"].isin(["0", "1"])]
    age = answered["age_now"].astype(int)
    for item in ("ocsea_talk", "ocsea_image_req", "ocsea_offer_img", "ocsea_offer_meet",
                 "ocsea_threat", "ocsea_shared"):
        rate = (answered[item] == "1").mean()
        assert 0.01 < rate < 0.25, (item, rate)
    older = (answered.loc[age >= 15, "ocsea_talk"] == "1").mean()
    younger = (answered.loc[age <= 13, "ocsea_talk"] == "1").mean()
    assert older > younger


def test_timestamps_inside_window_and_enumerators_differ(kenya) -> None:
    config = kenya.config
    child = kenya.forms["child"].root
    start = pd.to_datetime(child["start"].str[:19])
    end = pd.to_datetime(child["end"].str[:19])
    assert start.min().date() >= config.fieldwork_start
    assert end.max().date() <= config.fieldwork_end
    minutes = (end - start).dt.total_seconds() / 60
    by_enum = minutes.groupby(child["enum_id"]).median()
    assert by_enum.max() / by_enum.min() > 1.3
    submitted = pd.to_datetime(child["submission_time"], utc=True)
    assert (submitted > pd.to_datetime(child["end"], utc=True)).all()


def test_same_seed_same_submissions_other_seed_different() -> None:
    a = simulate_country(_config("UGA"), MODELS, seed=5, households=200)
    b = simulate_country(_config("UGA"), MODELS, seed=5, households=200)
    c = simulate_country(_config("UGA"), MODELS, seed=6, households=200)
    for form in FORMS:
        assert_same_content(a.forms[form], b.forms[form])
    assert not a.forms["child"].root["KEY"].equals(c.forms["child"].root["KEY"])


def test_frontline_workers_per_country(kenya) -> None:
    fw = kenya.forms["frontline_worker"].root
    assert len(fw) == 50
    assert set(fw["region"].astype(int)) <= set(kenya.config.regions)


def test_fault_spec_parsing() -> None:
    assert parse_faults("all") == list(KINDS)
    assert parse_faults("speeder,duplicate") == ["speeder", "duplicate"]
    assert parse_faults(None) == []
    with pytest.raises(DhsurveyError, match="unknown fault"):
        parse_faults("speeders")


def test_faults_are_planted_and_listed() -> None:
    sim = simulate_country(_config("TZA"), MODELS, seed=8, households=600)
    clean = {form: check_logic(raw.to_form_data(MODELS[form])) for form, raw in
             sim.forms.items()}
    assert all(v.empty for v in clean.values())
    manifest = inject_faults(sim, MODELS, list(KINDS), np.random.default_rng(1), per_kind=2)
    kinds = pd.Series([f["kind"] for f in manifest]).value_counts()
    assert set(kinds.index) == set(KINDS)
    for fault in manifest:
        keys = set(sim.forms[fault["form"]].root["KEY"])
        assert fault["instanceID"] in keys
    # Logic faults are visible to the form's own rules.
    child = check_logic(sim.forms["child"].to_form_data(MODELS["child"]))
    for kind, rule in (("non_relevant", "not-relevant"), ("missing_required", "required")):
        planted = {f["instanceID"] for f in manifest if f["kind"] == kind}
        assert planted <= set(child.loc[child["rule"] == rule, "KEY"])
    for form in ("household", "child"):
        found = check_logic(sim.forms[form].to_form_data(MODELS[form]))
        planted = {f["instanceID"] for f in manifest
                   if f["kind"] == "out_of_range" and f["form"] == form}
        assert planted and planted <= set(found.loc[found["rule"] == "constraint", "KEY"])
    # Speeders keep a plausible but impossible end time.
    for f in manifest:
        if f["kind"] == "speeder":
            row = sim.forms["child"].root.set_index("KEY").loc[f["instanceID"]]
            length = (dt.datetime.fromisoformat(row["end"])
                      - dt.datetime.fromisoformat(row["start"]))
            assert length == dt.timedelta(minutes=4)
