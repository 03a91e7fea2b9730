"""The study's weights on simulated fieldwork: probabilities → nonresponse → raking → trimming."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from simulated import weighted_country

from dhsurvey.errors import DhsurveyError
from dhsurvey.fieldwork.simulate import FORMS
from dhsurvey.forms.model import load_form
from dhsurvey.weight import Design, variance_units
from dhsurvey.weight.study import study_weights

INSTRUMENTS = Path(__file__).parents[2] / "instruments"
MODELS = {f: load_form(INSTRUMENTS / f"{f}.xlsx") for f in FORMS}


@pytest.fixture(scope="module")
def weighted():
    return weighted_country("UGA", 12, 2400)


def test_child_weights_hit_the_margins(weighted) -> None:
    config, _, accepted, w = weighted
    for label, m in w.summary["margins"].items():
        assert m["achieved"] == pytest.approx(m["target"], rel=1e-8), label
    total = sum(config.margins["sex"].values())
    assert w.child["weight"].sum() == pytest.approx(total, rel=1e-8)
    assert w.child["weight_norm"].mean() == pytest.approx(1.0)
    assert set(w.child["KEY"]) <= set(accepted["child"]["KEY"])


def test_trimming_lowers_the_design_effect_and_caps_weights(weighted) -> None:
    _, _, _, w = weighted
    trim = w.summary["trim"]
    assert trim["deff_after"] <= trim["deff_before"]
    assert w.child["weight"].max() <= trim["cap"] * (1 + 1e-9)


def test_household_weights_follow_the_recorded_probabilities(weighted) -> None:
    _, sim, _, w = weighted
    design = sim.sample.households
    # Nonresponse moves weight from non-respondents to respondents within strata, so the
    # respondents' adjusted weights add to the eligible households' design weights.
    eligible = design.merge(sim.forms["household"].root[["cluster", "hh_number",
                                                           "disposition"]]
                            .astype({"cluster": int, "hh_number": int}),
                            on=["cluster", "hh_number"], how="left")
    eligible = eligible[eligible["disposition"] != "6"]
    assert w.household["weight"].sum() == pytest.approx(eligible["base_weight"].sum(),
                                                        rel=1e-9)
    assert (w.household["design_weight"] > 0).all()


def test_replicates_and_a_prevalence_with_its_ci(weighted) -> None:
    _, sim, accepted, w = weighted
    reps = [c for c in w.child.columns if c.startswith("rep_")]
    assert len(reps) == w.child["cluster"].nunique()  # one per PSU with a respondent
    child = accepted["child"].drop(columns=["cluster"]).merge(w.child, on="KEY")
    child = child[child["ocsea_talk"].isin([0, 1])]
    child["talk"] = (child["ocsea_talk"] == 1).astype(float)
    taylor = Design(child, "weight", strata="stratum", psu="cluster").mean("talk")
    assert 0.01 < taylor.estimate < 0.3
    lo, hi = taylor.ci()
    assert lo < taylor.estimate < hi
    assert np.isfinite(taylor.se) and taylor.se > 0


def test_caregiver_weights_are_documented_and_calibrated(weighted) -> None:
    config, _, _, w = weighted
    assert w.caregiver["weight"].sum() == pytest.approx(sum(config.margins["sex"].values()),
                                                        rel=1e-8)
    assert "unweighted" in w.summary["frontline_workers"]


def test_variance_units_deal_psus_round_robin_within_strata() -> None:
    strata = pd.Series(["b", "a", "a", "a", "a", "a", "b", "b"])
    psu = pd.Series([7, 5, 1, 3, 1, 9, 8, 7])
    units = variance_units(strata, psu, per_stratum=2)
    # Stratum a: PSUs 1, 3, 5, 9 → groups 0, 1, 0, 1; stratum b: PSUs 7, 8 → units 2, 3.
    assert units.tolist() == [2, 0, 0, 1, 0, 1, 3, 2]
    with pytest.raises(DhsurveyError):
        variance_units(strata, psu, per_stratum=1)


def test_grouped_replicates_keep_their_count_fixed_and_estimate_the_variance(
        weighted) -> None:
    config, sim, accepted, w = weighted
    capped = replace(config, max_replicates=32)  # 8 strata of ~12 PSUs → 4 groups each
    g = study_weights(sim.sample.households, accepted["household"], accepted["child"],
                      accepted["caregiver"], capped)
    info = g.summary["replicates"]
    reps = [c for c in g.child.columns if c.startswith("rep_")]
    assert len(reps) == info["count"] == 32 and info["grouped_psus"]
    assert info["rscales"] == pytest.approx([3 / 4] * 32)
    units = g.child.groupby("variance_unit").agg(psus=("cluster", "nunique"),
                                                 strata=("stratum", "nunique"),
                                                 stratum=("stratum", "first"))
    assert len(units) == 32 and (units["strata"] == 1).all()
    sizes = units.groupby("stratum")["psus"].agg(["min", "max", "sum"])
    assert (sizes["max"] - sizes["min"] <= 1).all()  # dealt evenly
    assert sizes["sum"].sum() == g.child["cluster"].nunique() > 32
    # The full-sample weights do not depend on how replicates are formed.
    np.testing.assert_allclose(g.child["weight"], w.child["weight"])

    child = accepted["child"].drop(columns=["cluster"])
    yes_no = [c for c in child.columns if child[c].astype(str).eq("1").mean() > 0.05][:15]

    def replicate_se(table, info: dict, y: str) -> float:
        data = child.merge(table, on="KEY")
        v = (data[y].astype(str) == "1").astype(float).to_numpy()
        cols = [c for c in table.columns if c.startswith("rep_")]
        theta = np.array([np.sum(data[c] * v) / np.sum(data[c]) for c in cols])
        return float(np.sqrt(np.sum(np.asarray(info["rscales"]) * (theta - theta.mean()) ** 2)))

    ratios = [replicate_se(g.child, info, y) / se for y in yes_no
              if (se := replicate_se(w.child, w.summary["replicates"], y)) > 1e-9]
    # (A calibration margin such as child_sex has no variance: rounding noise, left out.)
    # 32 units estimate the same variance as ~95 PSUs, less stably: unbiased on average.
    assert len(ratios) >= 10
    assert 0.85 < float(np.mean(ratios)) < 1.2


def test_only_interviews_that_took_place_carry_a_weight(weighted) -> None:
    """A child weight needs consent and a complete or partial result: a child found not aged
    12-17 leaves the sample (not a non-respondent whose weight others carry), a child not at
    home is a non-respondent."""
    _, _, accepted, w = weighted
    child = accepted["child"]
    result = pd.to_numeric(child["ch_result"], errors="coerce")
    weighted_keys = set(w.child["KEY"])
    assert set(child.loc[result.isin([1, 2]), "KEY"]) == weighted_keys
    assert not weighted_keys & set(child.loc[result.isin([3, 4, 5, 6, 7, 96]), "KEY"])
    ineligible = int((result == 7).sum())
    assert ineligible > 0  # the simulation has children who correct their age out of 12-17
    selected = w.summary["children"]["selected"]
    respondents = w.summary["children"]["respondents"]
    hh = accepted["household"]
    disposition = pd.to_numeric(hh["disposition"], errors="coerce")
    chosen = int((disposition.isin([1, 5]) & (pd.to_numeric(hh["n_eligible"]) > 0)).sum())
    # Every other selected child is in the denominator: responded or not.
    assert selected == chosen - ineligible
    assert respondents == len(weighted_keys) and selected > respondents
