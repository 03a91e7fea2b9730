"""Headline indicators from the declared expressions, with design-based CIs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dhsurvey.errors import ConfigError
from dhsurvey.fieldwork.config import load_country
from dhsurvey.fieldwork.simulate import FORMS, simulate_country
from dhsurvey.forms.model import load_form
from dhsurvey.release.indicators import compute_indicators, load_indicators
from dhsurvey.validate.run import validate_forms
from dhsurvey.weight.study import study_weights

INSTRUMENTS = Path(__file__).parents[2] / "instruments"
MODELS = {f: load_form(INSTRUMENTS / f"{f}.xlsx") for f in FORMS}


@pytest.fixture(scope="module")
def table():  # noqa: ANN201
    config = load_country(INSTRUMENTS / "countries" / "KEN.yaml")
    sim = simulate_country(config, MODELS, seed=8, households=1500)
    result = validate_forms(sim.forms, MODELS, config=config)
    acc = {f: r.accepted for f, r in result.forms.items()}
    w = study_weights(sim.sample.households, acc["household"], acc["child"], acc["caregiver"],
                      config, replicates=False)
    tables = {"child": acc["child"].drop(columns=["cluster"]).merge(w.child, on="KEY"),
              "caregiver": acc["caregiver"].drop(columns=["cluster"]).merge(w.caregiver,
                                                                            on="KEY")}
    indicators, domains = load_indicators(INSTRUMENTS / "indicators.yaml", MODELS)
    return tables, compute_indicators(tables, indicators, domains)


def test_every_declared_indicator_overall_and_by_domain(table) -> None:  # noqa: ANN001
    _, out = table
    ids = {"ocsea_talk", "ocsea_image_req", "ocsea_offer", "ocsea_threat", "ocsea_shared",
           "ocsea_any", "told_nobody", "know_helpline", "cg_aware", "cg_know_helpline"}
    assert ids == set(out["indicator"])
    for ind in ids:
        rows = out[out["indicator"] == ind]
        assert set(rows["domain"]) == {"all", "sex", "age_group"}
        overall = rows[rows["domain"] == "all"].iloc[0]
        assert rows.loc[rows["domain"] == "sex", "n"].sum() == overall["n"]
        assert (rows["ci_low"] <= rows["estimate"]).all()
        assert (rows["estimate"] <= rows["ci_high"]).all()
        assert (rows["se"] > 0).all()


def test_overall_estimate_is_the_weighted_share(table) -> None:  # noqa: ANN001
    tables, out = table
    child = tables["child"]
    universe = child["ocsea_talk"].isin([0, 1])
    expected = np.average(child.loc[universe, "ocsea_talk"] == 1,
                          weights=child.loc[universe, "weight"])
    row = out[(out["indicator"] == "ocsea_talk") & (out["domain"] == "all")].iloc[0]
    assert row["estimate"] == pytest.approx(expected, rel=1e-12)
    assert row["n"] == universe.sum()
    assert 0.02 < row["estimate"] < 0.25


def test_bad_indicator_file_names_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "indicators.yaml"
    path.write_text("indicators:\n  - {id: x, form: child, label: X, value: '${nope} = 1', "
                    "universe: 'true()'}\n")
    with pytest.raises(ConfigError, match="no field"):
        load_indicators(path, MODELS)
