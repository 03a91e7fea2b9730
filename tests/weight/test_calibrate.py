"""Raking, linear calibration and trimming: R's weights and the properties a report relies on.

Reference values come from ``reference/make_reference.R`` (R ``survey``) stored in
``reference/reference.json``; R is not needed to run these tests.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dhsurvey.errors import DhsurveyError
from dhsurvey.weight import kish_deff, linear_calibrate, normalise, rake, trim

REF_DIR = Path(__file__).parent / "reference"


@cache
def reference() -> dict:
    return json.loads((REF_DIR / "reference.json").read_text(encoding="utf-8"))


def load(name: str) -> pd.DataFrame:
    return pd.read_csv(REF_DIR / f"{name}.csv")


def achieved(df: pd.DataFrame, w: pd.Series, column: str) -> dict[str, float]:
    return {str(k): float(v) for k, v in w.groupby(df[column], observed=True).sum().items()}


def synthetic(seed: int, n: int = 3000) -> tuple[pd.DataFrame, dict]:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "sex": rng.choice(["f", "m"], n),
        "age": rng.choice([1, 2, 3, 4], n, p=[0.4, 0.3, 0.2, 0.1]),
        "region": rng.choice(["north", "south", "east"], n),
        "w": rng.lognormal(4, 0.6, n),
    })
    total = 250_000.0
    margins = {
        "sex": {"f": 0.52 * total, "m": 0.48 * total},
        "age": {1: 0.3 * total, 2: 0.3 * total, 3: 0.25 * total, 4: 0.15 * total},
        "region": {"north": 0.5 * total, "south": 0.3 * total, "east": 0.2 * total},
    }
    return df, margins


# --- agreement with R --------------------------------------------------------------------------


@pytest.mark.parametrize("name, weight", [("apiclus1", "pw"), ("sim", "w")])
def test_rake_matches_r(name: str, weight: str) -> None:
    ref = reference()[name]
    df = load(name)
    w = rake(df, weight, ref["margins"], tol=1e-12)
    np.testing.assert_allclose(w.to_numpy(), ref["raked_weights"], rtol=1e-8)


@pytest.mark.parametrize("key, kwargs", [
    ("linear_weights", {}),
    ("bounded_weights", {"bounds": (0.85, 1.6)}),
    ("logit_weights", {"bounds": (0.8, 1.7), "method": "logit"}),
])
def test_linear_calibration_matches_r(key: str, kwargs: dict) -> None:
    ref = reference()["apiclus1"]
    w = linear_calibrate(load("apiclus1"), "pw", ref["margins"], tol=1e-12, **kwargs)
    np.testing.assert_allclose(w.to_numpy(), ref[key], rtol=1e-8)
    if "bounds" in kwargs:
        g = w.to_numpy() / load("apiclus1")["pw"].to_numpy()
        lo, hi = kwargs["bounds"]
        assert g.min() >= lo - 1e-9 and g.max() <= hi + 1e-9


# --- properties ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("method", ["rake", "linear"])
def test_achieved_margins_within_tolerance(seed: int, method: str) -> None:
    df, margins = synthetic(seed)
    fn = rake if method == "rake" else linear_calibrate
    w = fn(df, "w", margins, tol=1e-10)
    assert w.index.equals(df.index) and w.name == "w"
    for column, spec in margins.items():
        got = achieved(df, w, column)
        for level, total in spec.items():
            assert abs(got[str(level)] - total) <= 1e-10 * 250_000.0
    if method == "rake":
        assert (w > 0).all()


def test_rake_ignores_row_order_and_keeps_index() -> None:
    df, margins = synthetic(4)
    df.index = pd.Index([f"hh{i}" for i in range(len(df))])
    w = rake(df, "w", margins)
    shuffled = df.sample(frac=1.0, random_state=7)
    w2 = rake(shuffled, "w", margins)
    pd.testing.assert_series_equal(w, w2.loc[df.index], rtol=1e-12)


def test_rake_matches_levels_by_string_form() -> None:
    df = pd.DataFrame({"sex": [1, 2, 1, 2, 1], "grp": [1.0, 1.0, 2.0, 2.0, 2.0],
                       "cat": pd.Categorical(["a", "b", "a", "b", "b"]),
                       "w": [1.0, 2.0, 3.0, 4.0, 5.0]})
    margins = {"sex": {"1": 60, "2": 40}, "grp": {1: 30, "2": 70}, "cat": {"a": 50, "b": 50}}
    w = rake(df, "w", margins)
    # tol is relative to the population total (100): margins hold within 1e-10 * 100.
    assert achieved(df, w, "sex") == pytest.approx({"1": 60, "2": 40}, abs=1e-8)
    assert achieved(df, w, "grp") == pytest.approx({"1.0": 30, "2.0": 70}, abs=1e-8)
    assert achieved(df, w, "cat") == pytest.approx({"a": 50, "b": 50}, abs=1e-8)


def test_rake_drops_levels_absent_from_sample_and_population() -> None:
    df = pd.DataFrame({"sex": ["f", "m", "f"], "w": [1.0, 1.0, 1.0]})
    w = rake(df, "w", {"sex": {"f": 20, "m": 10, "x": 0}})
    assert w.tolist() == pytest.approx([10, 10, 10])


# --- errors ----------------------------------------------------------------------------------


def test_rake_level_missing_from_margin() -> None:
    df, margins = synthetic(5)
    del margins["region"]["east"]
    margins["region"]["north"] += 0.2 * 250_000.0
    with pytest.raises(DhsurveyError) as err:
        rake(df, "w", margins)
    assert err.value.code == "rake-level-missing"
    assert err.value.context["column"] == "region" and err.value.context["level"] == "east"


def test_rake_population_level_without_sample_rows() -> None:
    df, margins = synthetic(6)
    margins["age"] = {1: 0.3, 2: 0.3, 3: 0.25, 4: 0.1, 5: 0.05}
    margins["age"] = {k: v * 250_000.0 for k, v in margins["age"].items()}
    with pytest.raises(DhsurveyError) as err:
        rake(df, "w", margins)
    assert err.value.code == "rake-level-missing" and err.value.context["level"] == 5


def test_rake_margin_totals_must_agree() -> None:
    df, margins = synthetic(7)
    margins["region"]["east"] += 1.0
    with pytest.raises(DhsurveyError) as err:
        rake(df, "w", margins)
    assert err.value.code == "rake-margin-mismatch"
    assert err.value.context["column"] == "region"
    assert "region" in str(err.value)


def test_rake_reports_non_convergence() -> None:
    # Structural zeros: 'a' rows are all 'x', so the margins cannot both hold.
    df = pd.DataFrame({"g": ["a", "a", "b", "b"], "h": ["x", "x", "x", "y"],
                       "w": [1.0, 1.0, 1.0, 1.0]})
    with pytest.raises(DhsurveyError) as err:
        rake(df, "w", {"g": {"a": 50, "b": 50}, "h": {"x": 20, "y": 80}}, max_iter=50)
    assert err.value.code == "rake-no-convergence"
    assert err.value.context["column"] in ("g", "h")


def test_rake_rejects_missing_values_and_bad_weights() -> None:
    df = pd.DataFrame({"g": ["a", None, "b"], "w": [1.0, 1.0, 1.0]})
    with pytest.raises(DhsurveyError) as err:
        rake(df, "w", {"g": {"a": 1, "b": 1}})
    assert err.value.code == "rake-missing-value"
    df = pd.DataFrame({"g": ["a", "b"], "w": [1.0, -1.0]})
    with pytest.raises(DhsurveyError) as err:
        rake(df, "w", {"g": {"a": 1, "b": 1}})
    assert err.value.code == "rake-bad-weight"


def test_logit_needs_bounds() -> None:
    df, margins = synthetic(8)
    with pytest.raises(DhsurveyError):
        linear_calibrate(df, "w", margins, method="logit")


# --- trimming, deff, normalising -------------------------------------------------------------


def heavy(seed: int = 11) -> tuple[pd.DataFrame, dict]:
    df, margins = synthetic(seed)
    rng = np.random.default_rng(seed)
    df["w"] = df["w"] * np.where(rng.random(len(df)) < 0.03, 15.0, 1.0)
    return df, margins


def test_trim_cap_holds_margins_hold_and_deff_decreases() -> None:
    df, margins = heavy()
    result = trim(df, "w", margins)
    w = result.weights
    raked = rake(df, "w", margins)
    assert result.cap == pytest.approx(3.5 * float(np.median(raked)))
    assert w.max() <= result.cap * (1 + 1e-9)
    assert result.n_trimmed > 0 and result.rounds >= 1
    for column, spec in margins.items():
        got = achieved(df, w, column)
        for level, total in spec.items():
            assert abs(got[str(level)] - total) <= 1e-9 * 250_000.0
    assert result.deff_after < result.deff_before
    assert result.deff_before == pytest.approx(kish_deff(raked))
    assert result.deff_after == pytest.approx(kish_deff(w))
    assert result.max_before > result.cap >= result.max_after


def test_trim_explicit_cap_and_infeasible_cap() -> None:
    df, margins = heavy(12)
    raked = rake(df, "w", margins)
    cap = float(raked.quantile(0.9))
    result = trim(df, "w", margins, cap=cap)
    assert result.weights.max() <= cap * (1 + 1e-9)
    with pytest.raises(DhsurveyError) as err:
        trim(df, "w", margins, cap=float(raked.mean()) * 0.5)
    assert err.value.code in ("trim-infeasible", "trim-no-convergence")


def test_trim_without_extremes_changes_nothing() -> None:
    df, margins = synthetic(13)
    result = trim(df, "w", margins, cap=1e12)
    assert result.rounds == 0 and result.n_trimmed == 0
    pd.testing.assert_series_equal(result.weights, rake(df, "w", margins))


def test_kish_deff_and_normalise() -> None:
    assert kish_deff([1, 1, 2, 4]) == pytest.approx(4 * 22 / 64)
    assert kish_deff(np.full(10, 3.0)) == pytest.approx(1.0)
    w = pd.Series([2.0, 4.0, 6.0], index=["a", "b", "c"], name="w")
    out = normalise(w)
    assert out.mean() == pytest.approx(1.0) and out.index.equals(w.index) and out.name == "w"
    assert kish_deff(out) == pytest.approx(kish_deff(w))
    with pytest.raises(DhsurveyError):
        normalise([0.0, 0.0])
