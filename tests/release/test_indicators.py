"""Headline indicators from the declared expressions, with design-based CIs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from simulated import weighted_country

from dhsurvey.errors import ConfigError
from dhsurvey.fieldwork.simulate import FORMS
from dhsurvey.forms.model import load_form
from dhsurvey.release.indicators import compute_indicators, join_weights, load_indicators

INSTRUMENTS = Path(__file__).parents[2] / "instruments"
MODELS = {f: load_form(INSTRUMENTS / f"{f}.xlsx") for f in FORMS}


@pytest.fixture(scope="module")
def table():
    _, _, acc, w = weighted_country("KEN", 8, 1500, replicates=False)
    tables = join_weights(acc, {"child": w.child, "caregiver": w.caregiver})
    indicators, domains = load_indicators(INSTRUMENTS / "indicators.yaml", MODELS)
    return tables, compute_indicators(tables, indicators, domains)


def test_every_declared_indicator_overall_and_by_domain(table) -> None:
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


def test_overall_estimate_is_the_weighted_share(table) -> None:
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


def test_indicators_csv_text_cannot_run_as_formulas(tmp_path: Path) -> None:
    """indicators.csv quotes text a spreadsheet would run; numbers and the Parquet file are
    as computed."""
    import csv

    import pandas as pd

    from dhsurvey.study import write_indicators

    table = pd.DataFrame({"country": ["KEN", "KEN"],
                          "indicator": ["=cmd|' /C calc'!A0", "ocsea_talk"],
                          "domain": ["-all", "@sex"], "estimate": [-0.5, 0.25], "n": [-3, 40]})
    parquet, path = write_indicators(tmp_path, table)
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows == [["country", "indicator", "domain", "estimate", "n"],
                    ["KEN", "'=cmd|' /C calc'!A0", "'-all", "-0.500000", "-3"],
                    ["KEN", "ocsea_talk", "'@sex", "0.250000", "40"]]
    assert pd.read_parquet(parquet).equals(table)
