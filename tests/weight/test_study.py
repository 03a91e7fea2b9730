"""The study's weights on simulated fieldwork: probabilities → nonresponse → raking → trimming."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from simulated import weighted_country

from dhsurvey.fieldwork.simulate import FORMS
from dhsurvey.forms.model import load_form
from dhsurvey.weight import Design

INSTRUMENTS = Path(__file__).parents[2] / "instruments"
MODELS = {f: load_form(INSTRUMENTS / f"{f}.xlsx") for f in FORMS}


@pytest.fixture(scope="module")
def weighted():  # noqa: ANN201
    return weighted_country("TZA", 12, 1500)


def test_child_weights_hit_the_margins(weighted) -> None:  # noqa: ANN001
    config, _, accepted, w = weighted
    for label, m in w.summary["margins"].items():
        assert m["achieved"] == pytest.approx(m["target"], rel=1e-8), label
    total = sum(config.margins["sex"].values())
    assert w.child["weight"].sum() == pytest.approx(total, rel=1e-8)
    assert w.child["weight_norm"].mean() == pytest.approx(1.0)
    assert set(w.child["KEY"]) <= set(accepted["child"]["KEY"])


def test_trimming_lowers_the_design_effect_and_caps_weights(weighted) -> None:  # noqa: ANN001
    _, _, _, w = weighted
    trim = w.summary["trim"]
    assert trim["deff_after"] <= trim["deff_before"]
    assert w.child["weight"].max() <= trim["cap"] * (1 + 1e-9)


def test_household_weights_follow_the_recorded_probabilities(weighted) -> None:  # noqa: ANN001
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


def test_replicates_and_a_prevalence_with_its_ci(weighted) -> None:  # noqa: ANN001
    _, sim, accepted, w = weighted
    reps = [c for c in w.child.columns if c.startswith("rep_")]
    assert len(reps) == sim.sample.psus["cluster"].nunique()
    child = accepted["child"].drop(columns=["cluster"]).merge(w.child, on="KEY")
    child = child[child["ocsea_talk"].isin([0, 1])]
    child["talk"] = (child["ocsea_talk"] == 1).astype(float)
    taylor = Design(child, "weight", strata="stratum", psu="cluster").mean("talk")
    assert 0.01 < taylor.estimate < 0.3
    lo, hi = taylor.ci()
    assert lo < taylor.estimate < hi
    assert np.isfinite(taylor.se) and taylor.se > 0


def test_caregiver_weights_are_documented_and_calibrated(weighted) -> None:  # noqa: ANN001
    config, _, _, w = weighted
    assert w.caregiver["weight"].sum() == pytest.approx(sum(config.margins["sex"].values()),
                                                        rel=1e-8)
    assert "unweighted" in w.summary["frontline_workers"]
