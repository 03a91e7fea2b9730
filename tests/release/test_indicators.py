"""Headline indicators from the declared expressions, with design-based CIs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from simulated import weighted_country

from dhsurvey.errors import ConfigError
from dhsurvey.fieldwork.simulate import FORMS
from dhsurvey.forms.model import load_form
from dhsurvey.release.indicators import (
    Indicator,
    compute_indicators,
    domain_values,
    indicator_values,
    join_weights,
    load_indicators,
    logit_interval,
    release_variables,
    unreproducible,
)

INSTRUMENTS = Path(__file__).parents[2] / "instruments"
MODELS = {f: load_form(INSTRUMENTS / f"{f}.xlsx") for f in FORMS}


@pytest.fixture(scope="module")
def table():
    config, _, acc, w = weighted_country("KEN", 8, 1500, replicates=False)
    indicators, domains = load_indicators(INSTRUMENTS / "indicators.yaml", MODELS)
    tables = {f: release_variables(t, f, indicators, domains) for f, t in
              join_weights(acc, {"child": w.child, "caregiver": w.caregiver}).items()}
    margins = {f: config.margins for f in tables}
    return tables, compute_indicators(tables, indicators, domains, margins=margins,
                                      psu="cluster")


def test_every_declared_indicator_overall_and_by_domain(table) -> None:
    _, out = table
    ids = {"ind_ocsea_talk", "ind_ocsea_image_req", "ind_ocsea_offer_img",
           "ind_ocsea_offer_meet", "ind_ocsea_threat", "ind_ocsea_shared", "ind_ocsea_any",
           "ind_told_nobody", "ind_know_helpline", "ind_cg_aware", "ind_cg_know_helpline"}
    assert ids == set(out["indicator"])
    for ind in ids:
        rows = out[out["indicator"] == ind]
        expected = {"all", "cg_sex", "cg_age_group"} if ind.startswith("ind_cg") else \
            {"all", "sex", "age_group"}
        assert set(rows["domain"]) == expected, ind
        overall = rows[rows["domain"] == "all"].iloc[0]
        sex = "sex" if "sex" in expected else "cg_sex"
        assert rows.loc[rows["domain"] == sex, "n"].sum() == overall["n"]
        inside = rows.dropna(subset=["ci_low"])
        assert (inside["ci_low"] < inside["estimate"]).all()
        assert (inside["estimate"] < inside["ci_high"]).all()
        assert (rows["se"] > 0).all()
        # PSUs minus strata of the records: the design's degrees of freedom.
        assert 0 < overall["df"] <= 16 * 11 - 16


def test_overall_estimate_is_the_weighted_share(table) -> None:
    tables, out = table
    child = tables["child"]
    universe = child["ocsea_talk"].isin([0, 1])
    assert (child["ind_ocsea_talk"].notna() == universe).all()
    expected = np.average(child.loc[universe, "ocsea_talk"] == 1,
                          weights=child.loc[universe, "weight"])
    row = out[(out["indicator"] == "ind_ocsea_talk") & (out["domain"] == "all")].iloc[0]
    assert row["estimate"] == pytest.approx(expected, rel=1e-9)
    assert row["n"] == universe.sum()
    assert 0.02 < row["estimate"] < 0.25


def test_the_interval_is_the_logit_interval_with_the_design_df(table) -> None:
    from scipy.stats import t

    _, out = table
    for row in out.dropna(subset=["ci_low"]).head(20).to_dict("records"):
        p, se, df = row["estimate"], row["se"], row["df"]
        half = t.ppf(0.975, df) * se / (p * (1 - p))
        centre = np.log(p / (1 - p))
        assert row["ci_low"] == pytest.approx(1 / (1 + np.exp(-(centre - half))), rel=1e-12)
        assert row["ci_high"] == pytest.approx(1 / (1 + np.exp(-(centre + half))), rel=1e-12)
        # Near 0 the interval reaches further up than down (the Wald one is symmetric).
        if p < 0.2:
            assert row["ci_high"] - p > p - row["ci_low"]
    assert logit_interval(0.0, 0.01, 30) != logit_interval(0.0, 0.01, 30)  # NaN: undefined


def test_calibration_aware_se_differs_from_the_plain_taylor_se(table) -> None:
    """Raking residuals: an indicator of the raking margins themselves has (almost) no
    sampling variance once the weights are raked to them."""
    tables, _ = table
    indicators, domains = load_indicators(INSTRUMENTS / "indicators.yaml", MODELS)
    child = tables["child"].assign(ind_girl=(tables["child"]["sex"] == 2).astype("Int64"))
    girl = Indicator("ind_girl", "child", "Girl", "true()", "true()")
    config, *_ = weighted_country("KEN", 8, 1500, replicates=False)
    raked = compute_indicators({"child": child}, [girl], {}, psu="cluster",
                               margins={"child": config.margins}).iloc[0]
    plain = compute_indicators({"child": child}, [girl], {}, psu="cluster").iloc[0]
    assert raked["estimate"] == pytest.approx(plain["estimate"], rel=1e-9)
    assert raked["se"] < 1e-6 < plain["se"]


def test_definitions_count_refusals_as_declared() -> None:
    """told_nobody: nobody for every experience; prefer not to say (99) out of the universe.
    ocsea_any: a yes counts; no yes with a 99 is out of the universe."""
    import pandas as pd

    indicators, _ = load_indicators(INSTRUMENTS / "indicators.yaml", MODELS)
    by_id = {i.id: i for i in indicators}
    six = ["ocsea_talk", "ocsea_image_req", "ocsea_offer_img", "ocsea_offer_meet",
           "ocsea_threat", "ocsea_shared"]
    told = ["talk_told", "imgreq_told", "offimg_told", "offmeet_told", "threat_told",
            "shared_told"]
    rows = [  # (six answers, told answers)
        ([1, 1, 0, 0, 0, 0], ["1", "2", None, None, None, None]),  # nobody about one -> 0
        ([1, 1, 0, 0, 0, 0], ["1", "1", None, None, None, None]),  # nobody about both -> 1
        ([1, 0, 0, 0, 0, 0], ["99", None, None, None, None, None]),  # refused whom -> out
        ([0, 0, 99, 0, 0, 0], [None] * 6),  # no yes, a refusal -> any: out
        ([0, 0, 0, 0, 0, 0], [None] * 6),  # all no -> any: 0, told_nobody: out
        ([0, 0, 0, 0, None, None], [None] * 6),  # stopped before the last two -> any: out
    ]
    frame = pd.DataFrame([dict(zip(six + told, a + b, strict=True)) for a, b in rows])
    for col in six:
        frame[col] = frame[col].astype("Int64")
    nobody = indicator_values(frame, by_id["ind_told_nobody"])
    assert nobody.tolist()[:2] == [0, 1] and nobody[2:].isna().all()
    anyone = indicator_values(frame, by_id["ind_ocsea_any"])
    assert anyone[:3].tolist() == [1, 1, 1] and pd.isna(anyone[3]) and anyone[4] == 0
    assert pd.isna(anyone[5]) and pd.isna(nobody[5])
    for ind in indicators:
        assert set(ind.definition) == {"numerator", "universe", "refusals"}
    assert "any of their experiences" in by_id["ind_told_nobody"].label


def test_a_recode_across_a_domain_boundary_is_caught() -> None:
    import pandas as pd

    _, domains = load_indicators(INSTRUMENTS / "indicators.yaml", MODELS)
    age = next(d for d in domains["caregiver"] if d.name == "cg_age_group")
    original = pd.DataFrame({"cg_age": pd.array([20, 36, 38, 45, None], dtype="Int64")})
    kept = pd.DataFrame({"cg_age": pd.array([18, 35, 35, 35, None], dtype="Int64")})
    crossed = pd.DataFrame({"cg_age": pd.array([18, 18, 18, 40, 40], dtype="Int64")})
    assert unreproducible(kept, original, [age]) == {}
    assert "2 record(s)" in unreproducible(crossed, original, [age])["cg_age_group"]
    assert domain_values(kept, age).tolist()[:4] == [1, 2, 2, 2]
    assert pd.isna(domain_values(kept, age)[4])  # suppressed: no domain, not level 2


def test_bad_indicator_file_names_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "indicators.yaml"
    path.write_text("indicators:\n  - {id: x, form: child, label: X, value: '${nope} = 1', "
                    "universe: 'true()', definition: {numerator: a, universe: b, "
                    "refusals: c}}\n")
    with pytest.raises(ConfigError, match="no field"):
        load_indicators(path, MODELS)
    path.write_text("indicators:\n  - {id: x, form: child, label: X, value: 'true()', "
                    "universe: 'true()'}\n")
    with pytest.raises(ConfigError, match="definition"):
        load_indicators(path, MODELS)
    path.write_text("indicators:\n  - {id: ocsea_talk, form: child, label: X, value: "
                    "'true()', universe: 'true()', definition: {numerator: a, universe: b, "
                    "refusals: c}}\n")
    with pytest.raises(ConfigError, match="is a field of child"):
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
                    ["KEN", "'=cmd|' /C calc'!A0", "'-all", "-0.5", "-3"],
                    ["KEN", "ocsea_talk", "'@sex", "0.25", "40"]]
    assert pd.read_parquet(parquet).equals(table)
