"""Design-based estimates and SEs against R ``survey`` (stored in reference/reference.json).

Every estimate and SE is compared at 1e-10 relative; the sanity values of
``shared/REFERENCE.md`` are asserted to their printed precision. Property tests cover domains,
row order, nesting and the error paths.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from dhsurvey.errors import DhsurveyError
from dhsurvey.weight import Design, Estimate, Replicates, linear_calibrate, rake

REF_DIR = Path(__file__).parent / "reference"
RTOL = 1e-10


@cache
def reference() -> dict:
    return json.loads((REF_DIR / "reference.json").read_text(encoding="utf-8"))


@cache
def data(name: str) -> pd.DataFrame:
    df = pd.read_csv(REF_DIR / f"{name}.csv")
    if name == "apiclus1":
        margins = reference()["apiclus1"]["margins"]
        df["rw"] = rake(df, "pw", margins, tol=1e-12)
        df["lw"] = linear_calibrate(df, "pw", margins, tol=1e-12)
        df["bw"] = linear_calibrate(df, "pw", margins, bounds=(0.85, 1.6), tol=1e-12)
        df["gw"] = linear_calibrate(df, "pw", margins, bounds=(0.8, 1.7), method="logit",
                                    tol=1e-12)
    if name == "apiclus2":
        # svydesign(id=~dnum+snum, fpc=~fpc1+fpc2) without weights: 1 / (n1/N1 · n2/N2).
        n2 = df.groupby("dnum")["snum"].transform("size")
        df["fw"] = 1.0 / ((df["dnum"].nunique() / df["fpc1"]) * (n2 / df["fpc2"]))
    if name == "sim":
        df["rw"] = rake(df, "w", reference()["sim"]["margins"], tol=1e-12)
    return df


def single() -> pd.DataFrame:
    sim = data("sim")
    keep = reference()["lonely"]["psu"]
    return sim[(sim["stratum"] != "S10") | (sim["psu"] == keep)]


def m(name: str) -> dict:
    return reference()[name]["margins"]


DESIGNS: dict[str, Callable[[], Design]] = {
    "strat": lambda: Design(data("apistrat"), "pw", strata="stype", fpc="fpc"),
    "strat_jkn": lambda: Design.jkn(data("apistrat"), "pw", strata="stype", fpc="fpc"),
    "clus1": lambda: Design(data("apiclus1"), "pw", psu="dnum", fpc="fpc"),
    "clus1_nofpc": lambda: Design(data("apiclus1"), "pw", psu="dnum"),
    "clus1_raked": lambda: Design(data("apiclus1"), "rw", psu="dnum", fpc="fpc",
                                  calibrated_on=m("apiclus1")),
    "clus1_linear": lambda: Design(data("apiclus1"), "lw", psu="dnum", fpc="fpc",
                                   calibrated_on=m("apiclus1"), calibration="linear",
                                   base_weight="pw"),
    "clus1_bounded": lambda: Design(data("apiclus1"), "bw", psu="dnum", fpc="fpc",
                                    calibrated_on=m("apiclus1"), calibration="linear",
                                    base_weight="pw"),
    "clus1_logit": lambda: Design(data("apiclus1"), "gw", psu="dnum", fpc="fpc",
                                  calibrated_on=m("apiclus1"), calibration="linear",
                                  base_weight="pw"),
    "clus1_jk1": lambda: Design.jk1(data("apiclus1"), "pw", psu="dnum", fpc="fpc"),
    "clus1_jk1_nofpc": lambda: Design.jk1(data("apiclus1"), "pw", psu="dnum"),
    "clus1_jk1_raked": lambda: Design.jk1(data("apiclus1"), "pw", psu="dnum",
                                          calibrated_on=m("apiclus1"), tol=1e-12),
    "clus2": lambda: Design(data("apiclus2"), "fw", psu=["dnum", "snum"], fpc=["fpc1", "fpc2"]),
    "clus2_uc": lambda: Design(data("apiclus2"), "pw", psu="dnum"),
    "sim": lambda: Design(data("sim"), "w", strata="stratum", psu="psu", fpc="psu_pop"),
    "sim_raked": lambda: Design(data("sim"), "rw", strata="stratum", psu="psu", fpc="psu_pop",
                                calibrated_on=m("sim")),
    "sim_jkn": lambda: Design.jkn(data("sim"), "w", strata="stratum", psu="psu", fpc="psu_pop"),
    "sim_jkn_raked": lambda: Design.jkn(data("sim"), "w", strata="stratum", psu="psu",
                                        fpc="psu_pop", calibrated_on=m("sim"), tol=1e-12),
}
for _opt in ("adjust", "certainty", "remove"):
    DESIGNS[f"lonely_{_opt}"] = (lambda o: lambda: Design(
        single(), "w", strata="stratum", psu="psu", lonely_psu=o))(_opt)
    DESIGNS[f"lonely_{_opt}_jkn"] = (lambda o: lambda: Design.jkn(
        single(), "w", strata="stratum", psu="psu", lonely_psu=o))(_opt)


@cache
def design(key: str) -> Design:
    return DESIGNS[key]()


# (design, method, args, kwargs, path in reference.json)
CASES: list[tuple[str, str, tuple, dict, tuple[str, ...]]] = [
    ("strat", "mean", ("api00",), {}, ("apistrat", "mean_api00")),
    ("strat", "total", ("enroll",), {}, ("apistrat", "total_enroll")),
    ("strat", "ratio", ("api.stu", "enroll"), {}, ("apistrat", "ratio_api_stu_enroll")),
    ("strat", "mean", ("api00",), {"by": "awards"}, ("apistrat", "by_awards_mean_api00")),
    ("strat", "total", ("enroll",), {"by": "awards"}, ("apistrat", "by_awards_total_enroll")),
    ("strat", "proportion", ("awards",), {}, ("apistrat", "prop_awards")),
    ("strat_jkn", "mean", ("api00",), {}, ("apistrat", "jkn_mean_api00")),
    ("strat_jkn", "total", ("enroll",), {}, ("apistrat", "jkn_total_enroll")),
    ("strat_jkn", "mean", ("api00",), {"by": "awards"}, ("apistrat", "jkn_by_awards_mean_api00")),
    ("clus1", "mean", ("api00",), {}, ("apiclus1", "mean_api00")),
    ("clus1", "total", ("enroll",), {}, ("apiclus1", "total_enroll")),
    ("clus1", "ratio", ("api.stu", "enroll"), {}, ("apiclus1", "ratio_api_stu_enroll")),
    ("clus1", "mean", ("api00",), {"by": "stype"}, ("apiclus1", "by_stype_mean_api00")),
    ("clus1", "total", ("enroll",), {"by": "stype"}, ("apiclus1", "by_stype_total_enroll")),
    ("clus1", "proportion", ("awards",), {}, ("apiclus1", "prop_awards")),
    ("clus1_nofpc", "mean", ("api00",), {}, ("apiclus1", "nofpc_mean_api00")),
    ("clus1_raked", "mean", ("api00",), {}, ("apiclus1", "raked_mean_api00")),
    ("clus1_raked", "total", ("enroll",), {}, ("apiclus1", "raked_total_enroll")),
    ("clus1_raked", "ratio", ("api.stu", "enroll"), {},
     ("apiclus1", "raked_ratio_api_stu_enroll")),
    ("clus1_raked", "mean", ("api00",), {"by": "stype"},
     ("apiclus1", "raked_by_stype_mean_api00")),
    ("clus1_raked", "mean", ("api00",), {"by": "awards"},
     ("apiclus1", "raked_by_awards_mean_api00")),
    ("clus1_raked", "total", ("enroll",), {"by": "awards"},
     ("apiclus1", "raked_by_awards_total_enroll")),
    ("clus1_raked", "proportion", ("awards",), {}, ("apiclus1", "raked_prop_awards")),
    ("clus1_linear", "mean", ("api00",), {}, ("apiclus1", "linear_mean_api00")),
    ("clus1_linear", "total", ("enroll",), {}, ("apiclus1", "linear_total_enroll")),
    ("clus1_linear", "mean", ("api00",), {"by": "awards"},
     ("apiclus1", "linear_by_awards_mean_api00")),
    ("clus1_bounded", "mean", ("api00",), {}, ("apiclus1", "bounded_mean_api00")),
    ("clus1_logit", "mean", ("api00",), {}, ("apiclus1", "logit_mean_api00")),
    ("clus1_jk1", "mean", ("api00",), {}, ("apiclus1", "jk1_mean_api00")),
    ("clus1_jk1", "total", ("enroll",), {}, ("apiclus1", "jk1_total_enroll")),
    ("clus1_jk1_nofpc", "mean", ("api00",), {}, ("apiclus1", "jk1_nofpc_mean_api00")),
    ("clus1_jk1_nofpc", "ratio", ("api.stu", "enroll"), {},
     ("apiclus1", "jk1_nofpc_ratio_api_stu_enroll")),
    ("clus1_jk1_nofpc", "mean", ("api00",), {"by": "stype"},
     ("apiclus1", "jk1_nofpc_by_stype_mean_api00")),
    ("clus1_jk1_raked", "mean", ("api00",), {}, ("apiclus1", "jk1_raked_mean_api00")),
    ("clus1_jk1_raked", "total", ("enroll",), {}, ("apiclus1", "jk1_raked_total_enroll")),
    ("clus2", "mean", ("api00",), {}, ("apiclus2", "mean_api00")),
    ("clus2", "total", ("api.stu",), {}, ("apiclus2", "total_api_stu")),
    ("clus2", "mean", ("enroll",), {"na_rm": True}, ("apiclus2", "mean_enroll_narm")),
    ("clus2", "mean", ("api00",), {"by": "stype"}, ("apiclus2", "by_stype_mean_api00")),
    ("clus2_uc", "mean", ("api00",), {}, ("apiclus2", "ultimate_mean_api00")),
    ("clus2_uc", "total", ("api.stu",), {}, ("apiclus2", "ultimate_total_api_stu")),
    ("sim", "mean", ("hours",), {}, ("sim", "mean_hours")),
    ("sim", "total", ("risk",), {}, ("sim", "total_risk")),
    ("sim_raked", "mean", ("hours",), {}, ("sim", "raked_mean_hours")),
    ("sim_raked", "mean", ("risk",), {}, ("sim", "raked_mean_risk")),
    ("sim_raked", "total", ("risk",), {}, ("sim", "raked_total_risk")),
    ("sim_raked", "ratio", ("risk", "hours"), {}, ("sim", "raked_ratio_risk_hours")),
    ("sim_raked", "mean", ("risk",), {"by": "agegrp"}, ("sim", "raked_by_agegrp_mean_risk")),
    ("sim_raked", "mean", ("hours",), {"by": "device"}, ("sim", "raked_by_device_mean_hours")),
    ("sim_raked", "total", ("risk",), {"by": "device"}, ("sim", "raked_by_device_total_risk")),
    ("sim_raked", "proportion", ("device",), {}, ("sim", "raked_prop_device")),
    ("sim_jkn", "mean", ("hours",), {}, ("sim", "jkn_mean_hours")),
    ("sim_jkn", "total", ("risk",), {}, ("sim", "jkn_total_risk")),
    ("sim_jkn_raked", "mean", ("hours",), {}, ("sim", "jkn_raked_mean_hours")),
    ("sim_jkn_raked", "total", ("risk",), {}, ("sim", "jkn_raked_total_risk")),
    ("sim_jkn_raked", "mean", ("hours",), {"by": "device"},
     ("sim", "jkn_raked_by_device_mean_hours")),
]
for _opt in ("adjust", "certainty", "remove"):
    CASES += [
        (f"lonely_{_opt}", "mean", ("hours",), {}, ("lonely", _opt, "mean_hours")),
        (f"lonely_{_opt}", "total", ("risk",), {}, ("lonely", _opt, "total_risk")),
        (f"lonely_{_opt}_jkn", "mean", ("hours",), {}, ("lonely", _opt, "jkn_mean_hours")),
        (f"lonely_{_opt}_jkn", "total", ("risk",), {}, ("lonely", _opt, "jkn_total_risk")),
    ]


def lookup(path: tuple[str, ...]) -> dict:
    node: Any = reference()
    for key in path:
        node = node[key]
    return node


def as_arrays(result: Estimate | pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(result, Estimate):
        return np.array([result.estimate]), np.array([result.se])
    return result["estimate"].to_numpy(), result["se"].to_numpy()


@pytest.mark.parametrize("key, method, args, kwargs, path", CASES,
                         ids=[f"{c[0]}-{c[4][-1]}" for c in CASES])
def test_matches_r(key: str, method: str, args: tuple, kwargs: dict,
                   path: tuple[str, ...]) -> None:
    ref = lookup(path)
    result = getattr(design(key), method)(*args, **kwargs)
    est, se = as_arrays(result)
    np.testing.assert_allclose(est, np.atleast_1d(ref["estimate"]), rtol=RTOL)
    np.testing.assert_allclose(se, np.atleast_1d(ref["se"]), rtol=RTOL)
    if "level" in ref:
        assert [str(x) for x in result.index] == [str(x) for x in ref["level"]]


def test_confint_and_deff_match_r() -> None:
    for key, name in (("strat", "apistrat"), ("clus1", "apiclus1")):
        ref = reference()[name]
        est = design(key).mean("api00", deff=True)
        lo, hi = est.ci()
        assert lo == pytest.approx(ref["mean_api00"]["ci_lower"], rel=RTOL)
        assert hi == pytest.approx(ref["mean_api00"]["ci_upper"], rel=RTOL)
        assert est.deff == pytest.approx(ref["mean_api00"]["deff"], rel=RTOL)
        tot = design(key).total("enroll", deff=True)
        assert tot.deff == pytest.approx(ref["total_enroll"]["deff"], rel=RTOL)
    assert design("clus1").mean("api00").deff is None


def test_raked_weights_match_r() -> None:
    np.testing.assert_allclose(data("apiclus1")["rw"], reference()["apiclus1"]["raked_weights"],
                               rtol=1e-8)
    np.testing.assert_allclose(data("apiclus2")["fw"], reference()["apiclus2"]["weights"],
                               rtol=1e-12)


# --- REFERENCE.md sanity values, to their printed precision ------------------------------------


@pytest.mark.parametrize("key, estimate, se", [
    ("strat", 662.2874, 9.4089),
    ("clus1", 644.1694, 23.5422),
    ("clus2", 670.8118, 30.0990),
    ("clus1_raked", 641.2303, 23.7036),
    ("clus1_jk1_nofpc", 644.1694, 26.5942),
])
def test_reference_sanity_values(key: str, estimate: float, se: float) -> None:
    est = design(key).mean("api00")
    assert round(est.estimate, 4) == estimate
    assert round(est.se, 4) == se


def test_calibration_shrinks_the_se_of_a_total() -> None:
    # REFERENCE.md: ignoring calibration inflates a total's SE by ~150 % on apiclus1.
    naive = Design(data("apiclus1"), "rw", psu="dnum", fpc="fpc").total("enroll").se
    aware = design("clus1_raked").total("enroll").se
    assert naive / aware > 2.0


# --- domains ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["clus1", "clus1_raked", "sim_raked", "sim_jkn_raked"])
def test_domain_estimates_add_up(key: str) -> None:
    d = design(key)
    y, by = ("api00", "stype") if key.startswith("clus1") else ("hours", "device")
    totals = d.total(y, by=by)
    assert totals["estimate"].sum() == pytest.approx(d.total(y).estimate, rel=1e-12)
    means = d.mean(y, by=by)
    shares = d.proportion(by)
    assert shares["estimate"].sum() == pytest.approx(1.0, rel=1e-12)
    combined = (means["estimate"] * shares.loc[means.index, "estimate"]).sum()
    assert combined == pytest.approx(d.mean(y).estimate, rel=1e-12)
    assert means["n"].sum() == len(d.df)


def test_domain_is_not_a_subset_design() -> None:
    # A subset design would lose the PSUs without high schools and understate the SE.
    df = data("apiclus1")
    full = design("clus1").mean("api00", by="stype").loc["H"]
    sub = Design(df[df["stype"] == "H"], "pw", psu="dnum", fpc="fpc").mean("api00")
    assert full["estimate"] == pytest.approx(sub.estimate)
    assert full["se"] != pytest.approx(sub.se, rel=1e-3)


def test_proportion_equals_mean_of_indicator() -> None:
    df = data("sim").assign(phone=lambda x: (x["device"] == "phone").astype(int))
    d = Design(df, "rw", strata="stratum", psu="psu", fpc="psu_pop", calibrated_on=m("sim"))
    p = d.proportion("device").loc["phone"]
    est = d.mean("phone")
    assert p["estimate"] == pytest.approx(est.estimate, rel=1e-12)
    assert p["se"] == pytest.approx(est.se, rel=1e-10)


# --- row order, nesting, user replicates ----------------------------------------------------


def test_shuffled_rows_give_identical_replicate_ses() -> None:
    sim = data("sim")
    ref = reference()["sim"]
    for seed in (1, 2):
        shuffled = sim.sample(frac=1.0, random_state=seed)
        j = Design.jkn(shuffled, "w", strata="stratum", psu="psu", fpc="psu_pop")
        assert j.mean("hours").se == pytest.approx(ref["jkn_mean_hours"]["se"], rel=RTOL)
        jr = Design.jkn(shuffled, "w", strata="stratum", psu="psu", fpc="psu_pop",
                        calibrated_on=m("sim"), tol=1e-12)
        assert jr.total("risk").se == pytest.approx(ref["jkn_raked_total_risk"]["se"], rel=RTOL)
        by = jr.mean("hours", by="device")
        np.testing.assert_allclose(by["se"], ref["jkn_raked_by_device_mean_hours"]["se"],
                                   rtol=RTOL)
    # Sorted by stratum (the order samplics needs) gives the same answer too.
    ordered = sim.sort_values(["stratum", "psu"])
    j = Design.jkn(ordered, "w", strata="stratum", psu="psu", fpc="psu_pop")
    assert j.mean("hours").se == pytest.approx(ref["jkn_mean_hours"]["se"], rel=RTOL)


def test_shuffled_rows_give_identical_taylor_ses() -> None:
    shuffled = data("sim").sample(frac=1.0, random_state=3)
    d = Design(shuffled, "rw", strata="stratum", psu="psu", fpc="psu_pop",
               calibrated_on=m("sim"))
    assert d.total("risk").se == pytest.approx(reference()["sim"]["raked_total_risk"]["se"],
                                               rel=RTOL)


def test_replicate_weights_are_row_aligned() -> None:
    sim = data("sim")
    j = Design.jkn(sim, "w", strata="stratum", psu="psu")
    shuffled = sim.sample(frac=1.0, random_state=4)
    js = Design.jkn(shuffled, "w", strata="stratum", psu="psu")
    a = j.replicate_weights()
    b = js.replicate_weights().loc[sim.index]
    # Same replicates, possibly in another column order: compare as sets of columns.
    key = sorted(tuple(np.round(a[c].to_numpy(), 9)) for c in a.columns)
    assert key == sorted(tuple(np.round(b[c].to_numpy(), 9)) for c in b.columns)
    assert j.n_replicates == 100


def test_user_supplied_replicates_reproduce_jackknife() -> None:
    j = design("sim_jkn_raked")
    reps = j.replicate_weights()
    df = pd.concat([data("sim"), reps], axis=1).assign(final=j.weights)
    scale, rscales = j.replicate_scales
    d = Design(df, "final", replicates=Replicates(list(reps.columns), scale=scale,
                                                  rscales=rscales))
    ref = reference()["sim"]
    assert d.mean("hours").se == pytest.approx(ref["jkn_raked_mean_hours"]["se"], rel=RTOL)
    assert d.total("risk").se == pytest.approx(ref["jkn_raked_total_risk"]["se"], rel=RTOL)


def test_nest_makes_psu_ids_unique_within_strata() -> None:
    sim = data("sim").assign(local=lambda x: x["psu"] % 10)
    with pytest.raises(DhsurveyError) as err:
        Design(sim, "w", strata="stratum", psu="local")
    assert err.value.code == "design-psu-not-nested"
    d = Design(sim, "w", strata="stratum", psu="local", fpc="psu_pop", nest=True)
    assert d.mean("hours").se == pytest.approx(reference()["sim"]["mean_hours"]["se"], rel=RTOL)


def test_fpc_as_sampling_fraction() -> None:
    df = data("apistrat")
    n_h = df.groupby("stype")["stype"].transform("size")
    frac = Design(df.assign(f=n_h / df["fpc"]), "pw", strata="stype", fpc="f")
    assert frac.mean("api00").se == pytest.approx(
        reference()["apistrat"]["mean_api00"]["se"], rel=RTOL)


# --- errors and options --------------------------------------------------------------------


def test_lonely_psu_fail_is_the_default() -> None:
    with pytest.raises(DhsurveyError) as err:
        Design(single(), "w", strata="stratum", psu="psu")
    assert err.value.code == "design-lonely-psu" and err.value.context["stratum"] == "S10"
    with pytest.raises(DhsurveyError):
        Design.jkn(single(), "w", strata="stratum", psu="psu")
    with pytest.raises(DhsurveyError):
        Design(single(), "w", strata="stratum", psu="psu", lonely_psu="average")


def test_missing_values_need_na_rm() -> None:
    with pytest.raises(DhsurveyError) as err:
        design("clus2").mean("enroll")
    assert err.value.code == "design-missing-value"
    with pytest.raises(DhsurveyError) as err:
        design("clus1").mean("stype")
    assert err.value.code == "design-not-numeric"


def test_calibrated_on_must_fit_the_weights() -> None:
    with pytest.raises(DhsurveyError) as err:
        Design(data("apiclus1"), "pw", psu="dnum", calibrated_on=m("apiclus1"))
    assert err.value.code == "design-calibration-mismatch"
    with pytest.raises(DhsurveyError):
        Design(data("apiclus1"), "lw", psu="dnum", calibrated_on=m("apiclus1"),
               calibration="linear")


def test_estimate_interval_is_normal() -> None:
    est = Estimate(estimate=10.0, se=2.0, n=5)
    lo, hi = est.ci(0.9)
    assert (lo, hi) == pytest.approx((10 - 1.6448536269514722 * 2, 10 + 1.6448536269514722 * 2))
    assert est.var == 4.0 and est.cv == 0.2
