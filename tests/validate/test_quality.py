"""High-frequency checks and the HTML report on simulated fieldwork with planted faults."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dhsurvey.fieldwork.config import load_country
from dhsurvey.fieldwork.faults import KINDS, inject_faults
from dhsurvey.fieldwork.simulate import FORMS, simulate_country
from dhsurvey.forms.model import load_form
from dhsurvey.validate.logic import check_logic
from dhsurvey.validate.quality import (
    _all_equal,
    _present,
    code_counts,
    dk_refusal,
    enumerator_dashboard,
    grids,
    numeric_fields,
    run_checks,
    straightlining,
    write_checks,
)
from dhsurvey.validate.report import SECTIONS, render, write_report
from dhsurvey.validate.timing import completed
from dhsurvey.validate.types import to_typed

ROOT = Path(__file__).parents[2]
INSTRUMENTS = ROOT / "instruments"
MODELS = {f: load_form(INSTRUMENTS / f"{f}.xlsx") for f in FORMS}
CONFIG = load_country(INSTRUMENTS / "countries" / "KEN.yaml")


@pytest.fixture(scope="module")
def fieldwork():
    sim = simulate_country(CONFIG, MODELS, seed=5, households=600)
    manifest = pd.DataFrame(inject_faults(sim, MODELS, list(KINDS), np.random.default_rng(5)))
    tables = {f: to_typed(sim.forms[f].root, MODELS[f])[0] for f in FORMS}
    logic = check_logic(sim.forms["child"].to_form_data(MODELS["child"]))
    issues = logic.assign(form="child", severity="error")
    checks = run_checks(tables, MODELS, config=CONFIG, issues=issues,
                        design=sim.sample.households)
    return sim, manifest, tables, checks


def _planted(manifest: pd.DataFrame, kind: str, form: str | None = None) -> set[str]:
    rows = manifest[manifest["kind"] == kind]
    if form:
        rows = rows[rows["form"] == form]
    return set(rows["instanceID"])


def test_every_check_is_a_table(fieldwork) -> None:
    *_, checks = fieldwork
    expected = {"progress_country", "progress_psu", "survey_dashboard", "enumerator_dashboard",
                "aapor", "form_versions", "duplicate_ids", "duplicate_units", "durations",
                "speeders", "issues_summary", "issues", "missingness", "outliers",
                "other_specify", "straightlining", "straightlining_cases", "dk_refusal",
                "referrals", "skipped"}
    assert set(checks) == expected
    assert all(isinstance(t, pd.DataFrame) for t in checks.values())


def test_speeders_are_the_planted_ones(fieldwork) -> None:
    _, manifest, tables, checks = fieldwork
    child = tables["child"]
    done = set(child.loc[completed(child), "KEY"])
    planted = _planted(manifest, "speeder", "child") & done
    assert planted
    assert set(checks["speeders"]["KEY"]) == planted
    assert checks["durations"].set_index("form").loc["child", "speeders"] == len(planted)


def test_duplicates_found(fieldwork) -> None:
    _, manifest, tables, checks = fieldwork
    units = checks["duplicate_units"]
    found = set(units.loc[units["form"] == "household", "KEY"])
    assert _planted(manifest, "duplicate", "household") <= found
    assert (units["copies"] >= 2).all()
    # The same instanceID received twice is a duplicate ID.
    again = {**tables, "caregiver": pd.concat([tables["caregiver"],
                                               tables["caregiver"].head(1)])}
    ids = run_checks(again, MODELS)["duplicate_ids"]
    assert ids["KEY"].tolist() == [tables["caregiver"]["KEY"].iloc[0]]
    assert ids["copies"].tolist() == [2]


def test_other_specify_lists_text_next_to_its_parent(fieldwork) -> None:
    *_, checks = fieldwork
    other = checks["other_specify"]
    assert len(other) > 0 and other["text"].str.len().gt(0).all()
    singles = other[other["field"].str.match(r"v\d_outcome_oth|cg_relation_oth|role_oth")]
    assert (singles["parent_value"] == "96").all()
    assert other["parent"].notna().all()


def test_enumerator_dashboard_one_row_per_enumerator(fieldwork) -> None:
    _, _, tables, checks = fieldwork
    dash = checks["enumerator_dashboard"]
    assert not dash.duplicated(["form", "enum_id"]).any()
    for form, table in tables.items():
        assert set(dash.loc[dash["form"] == form, "enum_id"].dropna()) == set(
            table["enum_id"].dropna())
        assert dash.loc[dash["form"] == form, "enum_id"].isna().sum() == int(
            table["enum_id"].isna().any())  # a missing enumerator id is a row of its own
        assert dash.loc[dash["form"] == form, "submissions"].sum() == len(table)
    child = dash[dash["form"] == "child"]
    assert child["missing_rate"].between(0, 1).all()
    # The don't-know rate is undefined (NaN, never 0) for an enumerator none of whose
    # children reached a question that offers "don't know" (all in the private block).
    rates = child["dk_rate"].dropna()
    assert rates.between(0, 1).all() and len(rates) >= len(child) - 2


def test_progress_per_psu_against_design(fieldwork) -> None:
    sim, _, tables, checks = fieldwork
    psu = checks["progress_psu"]
    design = sim.sample.households
    assert len(psu) == design["cluster"].nunique()
    assert psu["target"].sum() == len(design)
    unique = tables["household"].drop_duplicates(["cluster", "hh_number"])
    in_design = unique["cluster"].isin(design["cluster"])
    assert psu["done"].sum() == in_design.sum()
    assert psu["share_done"].between(0, 1).all()
    country = checks["progress_country"].set_index("target_name")
    assert country.loc["households", "target"] == CONFIG.targets["households"]
    assert country.loc["households", "achieved"] == len(unique)


def test_missing_required_and_outliers_found(fieldwork) -> None:
    _, manifest, _, checks = fieldwork
    miss = checks["missingness"].set_index(["form", "variable"])
    for _, fault in manifest[manifest["kind"] == "missing_required"].iterrows():
        assert miss.loc[(fault["form"], fault["field"]), "missing"] >= 1
    assert (miss["relevance"] == "form").all()
    out = checks["outliers"]
    for _, fault in manifest[manifest["kind"] == "out_of_range"].iterrows():
        if fault["field"] in numeric_fields(MODELS[fault["form"]], pd.DataFrame(
                columns=[fault["field"]])):
            assert fault["instanceID"] in set(out.loc[out["variable"] == fault["field"], "KEY"])


def test_issues_listing_has_enumerators(fieldwork) -> None:
    _, manifest, _, checks = fieldwork
    issues = checks["issues"]
    assert len(issues) and issues["date"].notna().all()
    assert _planted(manifest, "non_relevant", "child") <= set(issues["KEY"])
    assert checks["issues_summary"]["issues"].sum() == len(issues)


def test_straightlining_detects_a_planted_grid(fieldwork) -> None:
    _, _, tables, _ = fieldwork
    child = tables["child"].copy()
    items = grids(MODELS["child"])["activities"]
    answered = child[items].notna().all(axis=1) & child[items].nunique(axis=1).gt(1)
    row = child.index[answered][0]
    child.loc[row, items] = 3
    summary, cases = straightlining(child, MODELS["child"])
    hit = cases[(cases["grid"] == "activities") & (cases["KEY"] == child.loc[row, "KEY"])]
    assert len(hit) == 1 and hit["value"].iloc[0] == 3
    enum = child.loc[row, "enum_id"]
    line = summary[(summary["grid"] == "activities") & (summary["enum_id"] == enum)]
    assert line["straightlined"].iloc[0] >= 1
    assert set(grids(MODELS["caregiver"])) == {"cg_skills", "med_active"}  # ≥ 4 items only


def test_rows_all_equal_as_their_distinct_count_says() -> None:
    values = pd.DataFrame({"a": pd.array([1, 2, None, 3], dtype="Int64"),
                           "b": pd.array([1.0, 2.0, 2.0, 3.5], dtype="Float64"),
                           "c": [1, 3, 2, 3]})
    full = values.notna().all(axis=1)
    expected = full & values.nunique(axis=1).eq(1)
    assert _all_equal(values, full.to_numpy()).tolist() == expected.tolist() \
        == [True, False, False, False]


def test_blank_text_is_no_answer() -> None:
    raw = ["a", "  ", "", None, 1, float("nan"), " b "]
    expected = [True, False, False, False, True, False, True]
    assert _present(pd.Series(raw, dtype=object)).tolist() == expected
    assert _present(pd.Series(raw[:4] + ["1", None, " b "], dtype="string")).tolist() \
        == expected
    assert _present(pd.Series([1.0, None])).tolist() == [True, False]


def test_code_counts_given_once_serve_both_checks(fieldwork) -> None:
    _, _, tables, checks = fieldwork
    child, model = tables["child"], MODELS["child"]
    counts = code_counts(child, model, None)
    pd.testing.assert_frame_equal(dk_refusal(child, model, counts=counts),
                                  dk_refusal(child, model))
    pd.testing.assert_frame_equal(enumerator_dashboard(child, model, counts=counts),
                                  enumerator_dashboard(child, model))
    assert "enum_id" not in counts  # not changed by either


def test_aapor_and_referrals(fieldwork) -> None:
    _, _, tables, checks = fieldwork
    rr = checks["aapor"]
    hh = rr[(rr["interview"] == "household") & (rr["level"] == "country")].iloc[0]
    households = tables["household"].drop_duplicates(["cluster", "hh_number"])
    counted = hh[["I", "P", "R", "NC", "O", "UH", "UO", "NE", "unmapped"]].sum()
    assert counted == len(households) == hh["n"]
    strata = rr[(rr["interview"] == "household") & (rr["level"] == "stratum")]
    assert strata["n"].sum() == hh["n"] and len(strata) == len(CONFIG.strata)
    assert set(rr["interview"]) == {"household", "child"}
    ref = checks["referrals"]
    overall = ref[ref["dimension"] == "all"].iloc[0]
    by_enum = ref[ref["dimension"] == "enum_id"]
    assert by_enum["referrals"].sum() == overall["referrals"] > 0
    assert by_enum["interviews"].sum() == overall["interviews"]


def test_absent_forms_are_skipped_with_a_reason() -> None:
    sim = simulate_country(CONFIG, MODELS, seed=1, households=100)
    fw = to_typed(sim.forms["frontline_worker"].root, MODELS["frontline_worker"])[0]
    checks = run_checks({"frontline_worker": fw}, MODELS)
    skipped = checks["skipped"]
    assert {"progress_psu", "aapor", "referrals", "issues", "progress_country"} <= set(
        skipped["check"])
    assert skipped["reason"].str.len().gt(0).all()
    assert len(checks["enumerator_dashboard"]) == fw["enum_id"].nunique()


def test_parquet_bytes_are_deterministic(fieldwork, tmp_path: Path) -> None:
    *_, checks = fieldwork
    first = write_checks(checks, tmp_path / "a")
    second = write_checks(checks, tmp_path / "b")
    assert [p.name for p in first] == sorted(f"{n}.parquet" for n in checks)
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(first, second, strict=True))
    back = pd.read_parquet(tmp_path / "a" / "speeders.parquet")
    assert len(back) == len(checks["speeders"])


def test_report_renders_escaped_and_deterministic(fieldwork, tmp_path: Path) -> None:
    *_, checks = fieldwork
    checks = dict(checks)
    other = checks["other_specify"].copy()
    other.loc[0, "text"] = '<script>alert("x")</script>'
    checks["other_specify"] = other
    path = write_report(checks, tmp_path / "report.html", title="Kenya <daily>",
                        summary={"country": "KEN", "note": "<b>bold</b>"})
    text = path.read_text(encoding="utf-8")
    assert path.exists() and text.startswith("<!DOCTYPE html>")
    for name in checks:
        title = SECTIONS[name][0].replace("'", "&#x27;")
        assert title in text, name
    assert "<svg" in text or "<img" in text
    # Free text is not printed at all (shared report): neither as markup nor escaped.
    assert "<script>" not in text and "&lt;script&gt;" not in text and "alert(" not in text
    assert "<b>bold</b>" not in text and "Kenya &lt;daily&gt;" in text
    assert "http://" not in text.replace("http://www.w3.org", "")  # nothing fetched
    assert "Showing the first" in text  # long tables are cut with a note
    assert render(checks, title="Kenya <daily>", summary={"country": "KEN",
                                                          "note": "<b>bold</b>"}) == text
