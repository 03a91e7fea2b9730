"""The pooled release in the pipeline: countries that passed their gate, pooled and scanned;
and R reproducing the published indicators from the released Stata files.

For a country's public-use folder, its scientific-use folder and the pooled public-use folder,
R (``survey`` with ``haven``, installed by the README's test command) runs
``tests/r/reproduce_indicators.R``: it sources the folder's own ``svydesign.R`` on the ``.dta``
files and estimates every weighted row of ``indicators.csv`` again (tests/rsurvey.py compares
them); the ``svyset.do`` set-up, redone in R, must run on every weighted file.
``tests/r/expected/`` keeps R's output of the same seeded release (``tests/r/regenerate.py``
writes it), so a change that moves a published number fails here until the stored output is
regenerated and read.
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from rsurvey import EXPECTED, FOLDERS, compare, run_r
from workbooks import code_location_instruments

from dhsurvey.fieldwork.run import simulate_to
from dhsurvey.store import Store
from dhsurvey.study import Study, released_countries
from pipelines.demo import run_pipeline
from pipelines.study import countries, models

ROOT = Path(__file__).parents[2]

ISOS = ["KEN", "UGA"]


def build(data: Path, home: Path) -> None:
    """KEN and UGA simulated (seeded), run through the pipeline and pooled."""
    configs = [c for c in countries() if c.iso in ISOS]
    simulate_to(data / "landing", configs, models(), seed=3, households=450,
                formats=("central",))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DHSURVEY_PSEUDONYM_KEY", bytes(range(32)).hex())
        run_pipeline(code_location_instruments(), data, home, ISOS)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    data, home = tmp_path_factory.mktemp("data"), tmp_path_factory.mktemp("home")
    build(data, home)
    return data, home


def test_pooled_release_holds_every_country_and_passes_its_scan(study) -> None:
    data, home = study
    pooled = data / "release" / "pooled"
    for name in ("child", "caregiver", "household", "frontline_worker"):
        table = pd.read_parquet(pooled / f"{name}.parquet")
        sizes = [len(pd.read_parquet(data / "release" / iso / f"{name}.parquet"))
                 for iso in ISOS]
        assert len(table) == sum(sizes), name
        assert table["country"].nunique() == 2
    for suffix in ("dta", "sav", "csv"):
        assert (pooled / f"child.{suffix}").stat().st_size > 0
    # Public: masked variance units, no replicate weights; licensed: the replicates.
    assert {"svydesign.R", "svyset.do", "codebook.xlsx"} <= {p.name for p in pooled.iterdir()}
    assert not (pooled / "replicates.csv").exists()
    assert {"replicates.csv", "svydesign.R", "svyset.do", "codebook.xlsx"} <= {
        p.name for p in (data / "licensed" / "pooled").iterdir()}
    for tier in ("release", "licensed"):  # the methods note travels with the pool too
        note = (data / tier / "pooled" / "methods.md").read_text(encoding="utf-8")
        assert "All countries: KEN, UGA" in note and "not a probability sample" in note

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


def test_a_country_whose_gate_failed_is_left_out(study) -> None:
    data, _ = study
    store, loaded = Store(data), Study.load(code_location_instruments())
    gate = data / "clean" / "UGA" / "gate.json"
    saved = gate.read_text()
    try:
        gate.write_text(json.dumps({"passed": False, "reasons": ["k < 3"]}))
        included, left_out = released_countries(store, loaded)
        assert included == ["KEN"]
        assert left_out["UGA"] == "its disclosure gate failed"
        assert "TZA" in left_out  # never released here
    finally:
        gate.write_text(saved)


@pytest.mark.parametrize("folder", FOLDERS)
def test_r_reproduces_every_weighted_indicator_from_the_stata_files(
        study, folder: str, tmp_path: Path) -> None:
    import shutil

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
