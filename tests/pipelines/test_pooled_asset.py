"""The pooled release in the pipeline: countries that passed their gate, pooled and scanned;
and R reproducing the published indicators from the released Stata files.

The release is the demo's run of the session (tests/demo_run.py): KEN, TZA and UGA simulated
with every fault kind and encrypted device exports, run through the pipeline and pooled. It
is read in place; the test that changes a gate works on a copy.

For a country's public-use folder, its scientific-use folder and the pooled public-use folder,
R (``survey`` with ``haven``, installed by the README's test command) runs
``tests/r/reproduce_indicators.R``: it sources the folder's own ``svydesign.R`` on the ``.dta``
files and estimates every weighted row of ``indicators.csv`` again (tests/rsurvey.py compares
them); the ``svyset.do`` set-up, redone in R, must run on every weighted file.
``tests/r/expected/`` keeps R's output of the same seeded release (``tests/r/regenerate.py``
writes it with :func:`build`), so a change that moves a published number fails here until the
stored output is regenerated and read.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from demo_run import DemoRun, run_demo
from rsurvey import EXPECTED, FOLDERS, compare, run_r
from workbooks import code_location_instruments

from dhsurvey.demo import DEMO_COUNTRIES
from dhsurvey.store import Store
from dhsurvey.study import Study, released_countries
from pipelines.study import countries

ROOT = Path(__file__).parents[2]

ISOS = list(DEMO_COUNTRIES)


def build(data: Path, home: Path) -> None:
    """The release these tests read, made as the session's demo run makes it
    (tests/demo_run.py): for tests/r/regenerate.py."""
    run_demo(code_location_instruments(), data, home).checked()


@pytest.fixture(scope="module")
def study(demo_run: DemoRun) -> tuple[Path, Path]:
    """The demo's data root and DAGSTER_HOME: read, never changed."""
    run = demo_run.checked()
    assert run.reads_like(code_location_instruments())
    return run.data, run.home


def test_pooled_release_holds_every_country_and_passes_its_scan(study) -> None:
    data, home = study
    pooled = data / "release" / "pooled"
    for name in ("child", "caregiver", "household", "frontline_worker"):
        table = pd.read_parquet(pooled / f"{name}.parquet")
        sizes = [len(pd.read_parquet(data / "release" / iso / f"{name}.parquet"))
                 for iso in ISOS]
        assert len(table) == sum(sizes), name
        assert table["country"].nunique() == len(ISOS)
    for suffix in ("dta", "sav", "csv"):
        assert (pooled / f"child.{suffix}").stat().st_size > 0
    # Public: masked variance units, no replicate weights; licensed: the replicates.
    assert {"svydesign.R", "svyset.do", "codebook.xlsx"} <= {p.name for p in pooled.iterdir()}
    assert not (pooled / "replicates.csv").exists()
    assert {"replicates.csv", "svydesign.R", "svyset.do", "codebook.xlsx"} <= {
        p.name for p in (data / "licensed" / "pooled").iterdir()}
    for tier in ("release", "licensed"):  # the methods note travels with the pool too
        note = (data / tier / "pooled" / "methods.md").read_text(encoding="utf-8")
        assert "All countries: KEN, TZA, UGA" in note and "not a probability sample" in note

    instance = dg.DagsterInstance.from_config(str(home))
    check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(dg.AssetKey("pooled_release"), "pooled_scan")])
    evaluation = next(iter(check.values()))
    assert evaluation.status.value == "SUCCEEDED"
    event = instance.get_latest_materialization_event(dg.AssetKey("pooled_release"))
    metadata = event.asset_materialization.metadata
    # Rows of every released table, per tier (a table, not one table's count or JSON).
    rows = {(r.data["tier"], r.data["table"]): r.data["rows"]
            for r in metadata["rows per table"].records}
    assert rows[("public", "child")] == len(pd.read_parquet(pooled / "child.parquet"))
    assert rows[("licensed", "household")] == len(pd.read_parquet(
        data / "licensed" / "pooled" / "household.parquet"))
    country = instance.get_latest_materialization_event(
        dg.AssetKey("release")).asset_materialization
    released = {(r.data["tier"], r.data["table"]): r.data["rows"]
                for r in country.metadata["rows per table"].records}
    iso = country.partition
    for tier, folder in (("public", "release"), ("licensed", "licensed")):
        for table in ("household", "child", "caregiver", "frontline_worker"):
            assert released[(tier, table)] == len(pd.read_parquet(
                data / folder / iso / f"{table}.parquet")), (tier, table)
    columns = {c.name: c.description for c in metadata["dagster/column_schema"].schema.columns}
    assert columns["weight"].startswith("Survey weight")
    assert "rep_001" not in columns  # the public pool: masked units, no replicates
    assert metadata["replicates"].value == len([c for c in columns if c.startswith("rep_")])


def test_pooled_indicators_by_country_match_the_country_releases(study) -> None:
    data, _ = study
    pooled = pd.read_parquet(data / "release" / "pooled" / "indicators.parquet")
    names = {c.iso: c.name for c in countries()}
    for iso in ISOS:
        own = pd.read_parquet(data / "release" / iso / "indicators.parquet")
        own = own[own["domain"] == "all"].set_index("indicator")
        part = pooled[(pooled["domain"] == "country")
                      & (pooled["level_label"] == names[iso])].set_index("indicator")
        assert len(part) == len(own) > 0
        joined = own.join(part, rsuffix="_pooled")
        pd.testing.assert_series_equal(joined["estimate"], joined["estimate_pooled"],
                                       check_names=False, rtol=1e-9)
        pd.testing.assert_series_equal(joined["n"], joined["n_pooled"], check_names=False)
        # Same strata and PSUs, now beside another country's: the same Taylor SE.
        pd.testing.assert_series_equal(joined["se"], joined["se_pooled"], check_names=False,
                                       rtol=1e-6)


def test_a_country_whose_gate_failed_is_left_out(study, tmp_path: Path) -> None:
    data, _ = study
    # The gates are all it reads: copied, so the shared run's stay as they are.
    copy = tmp_path / "data"
    for iso in ISOS:
        gate = Store(data).gate_path(iso)
        assert gate.exists(), iso
        target = Store(copy).gate_path(iso)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(gate, target)
    store, loaded = Store(copy), Study.load(code_location_instruments())
    assert released_countries(store, loaded)[0] == ISOS
    store.gate_path("UGA").write_text(json.dumps({"passed": False, "reasons": ["k < 3"]}))
    included, left_out = released_countries(store, loaded)
    assert included == ["KEN", "TZA"]
    assert left_out["UGA"] == "its disclosure gate failed"
    never = [c for c in loaded.countries if c not in ISOS]
    assert never and {left_out[c] for c in never} == {"not released yet"}  # never run here
    assert json.loads(Store(data).gate_path("UGA").read_text())["passed"]


@pytest.mark.parametrize("folder", FOLDERS)
def test_r_reproduces_every_weighted_indicator_from_the_stata_files(
        study, folder: str, tmp_path: Path) -> None:
    import numpy as np

    assert shutil.which("Rscript"), "the README's test command installs R (survey, haven)"
    data, _ = study
    root = data / folder
    r, svyset = run_r(root, tmp_path)
    both = compare(pd.read_parquet(root / "indicators.parquet"), r)
    domains = set(both["domain"])
    assert {"all", "sex", "age_group", "cg_sex"} <= domains
    if folder.endswith("pooled"):
        assert "country" in domains
    # R's output as stored by tests/r/regenerate.py: the published numbers have not moved.
    stored = pd.read_csv(EXPECTED / folder.replace("/", "_") / "r_indicators.csv",
                         dtype={"level": str})
    pd.testing.assert_frame_equal(r, stored, check_exact=False, rtol=1e-9, atol=1e-13)
    # svyset.do's set-up, in R, on every weighted file of the folder.
    assert set(svyset["file"]) == {"household", "child", "caregiver"}
    assert np.isfinite(svyset["se"]).all() and (svyset["se"] > 0).all()
    if folder.startswith("licensed"):
        assert set(svyset["setup"]) == {"svyrep.design"}
        # The replicate SEs of the overall indicators: the same order as the Taylor ones.
        overall = both[both["domain"] == "all"].set_index("indicator")["se"]
        rep = svyset.set_index("variable")["se"].reindex(overall.index)
        assert ((rep / overall).between(0.5, 2.0)).all(), (rep / overall)


def test_select_multiple_answers_are_released_as_labelled_dummies(study) -> None:
    """``talk_told`` (whom a child told) also as 0/1 ``talk_told_<code>``: 1 where chosen, 0
    where answered without it, missing where not asked; labelled in the Stata file."""
    import pyreadstat

    data, _ = study
    child = pd.read_parquet(data / "release" / "KEN" / "child.parquet")
    asked = child["talk_told"].notna() & (child["talk_told"].astype(str).str.strip() != "")
    assert asked.any() and (~asked).any()
    nobody = child["talk_told_1"]
    assert nobody[~asked].isna().all()
    chose = child.loc[asked, "talk_told"].astype(str).str.split().map(lambda c: "1" in c)
    assert (nobody[asked].astype(int) == chose.astype(int)).all()
    _, meta = pyreadstat.read_dta(str(data / "release" / "KEN" / "child.dta"),
                                  metadataonly=True)
    assert meta.column_names_to_labels["talk_told_1"] == "talk_told: Nobody"
