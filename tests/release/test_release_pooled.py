"""Pooling country releases: unique design codes, the union of replicates, exact variances."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from simulated import weighted_country

from dhsurvey.anonymise.release import anonymise_country
from dhsurvey.errors import DhsurveyError
from dhsurvey.release.pooled import pool_release
from dhsurvey.release.writers import write_release
from dhsurvey.weight import Design, Replicates


def _country(iso: str, seed: int):
    config, _, accepted, w = weighted_country(iso, seed, 900)
    from dhsurvey.fieldwork.simulate import FORMS
    from dhsurvey.forms.model import load_form

    models = {f: load_form(Path(__file__).parents[2] / "instruments" / f"{f}.xlsx")
              for f in FORMS}
    release = anonymise_country(accepted, {"household": w.household, "child": w.child,
                                           "caregiver": w.caregiver}, models, config,
                                key=bytes(range(32)), rng=np.random.default_rng(seed))
    return release.tables, w.summary["replicates_by_form"], models


@pytest.fixture(scope="module")
def countries():
    ken, ken_reps, models = _country("KEN", 4)
    tza, tza_reps, _ = _country("TZA", 5)
    return {"KEN": ken, "TZA": tza}, {"KEN": ken_reps, "TZA": tza_reps}, models


def _reps(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if c.startswith("rep_")]


def test_pooled_tables_keep_every_record_with_unique_design_codes(countries) -> None:
    tables, reps, _ = countries
    pooled = pool_release(tables, reps)
    assert set(pooled.tables) == set(tables["KEN"])
    for name, table in pooled.tables.items():
        assert len(table) == len(tables["KEN"][name]) + len(tables["TZA"][name]), name
        assert not table["record_id"].duplicated().any()
    child = pooled.tables["child"]
    for column in ("stratum", "psu"):
        per_country = sum(tables[iso]["child"][column].nunique() for iso in tables)
        assert child[column].nunique() == per_country
        assert (child.groupby(column)["country"].nunique() == 1).all()
    # The same country's stratum gets the same pooled code in every table.
    both = pooled.tables["household"][["hh_id", "stratum"]].merge(
        child[["hh_id", "stratum"]], on="hh_id", suffixes=("_hh", "_child"))
    assert len(both) > 0 and (both["stratum_hh"] == both["stratum_child"]).all()


def test_pooled_replicates_are_the_union_and_give_each_countrys_variance(countries
                                                                          ) -> None:
    tables, reps, _ = countries
    pooled = pool_release(tables, reps)
    assert set(pooled.replicates) == {"household", "child", "caregiver"}
    for name, info in pooled.replicates.items():  # each table its own countries' replicates
        n = [len(_reps(tables[iso][name])) for iso in ("KEN", "TZA")]
        assert info["count"] == sum(n) == len(_reps(pooled.tables[name]))
        assert info["rscales"] == reps["KEN"][name]["rscales"] + reps["TZA"][name]["rscales"]
    info = pooled.replicates["child"]
    n_ken, n_tza = (len(_reps(tables[iso]["child"])) for iso in ("KEN", "TZA"))
    child = pooled.tables["child"]
    ken = child[child["country"].astype(str) == "404"]
    # KEN rows carry the full-sample weight in TZA's block.
    tza_block = _reps(child)[n_ken:]
    np.testing.assert_array_equal(ken[tza_block].to_numpy(),
                                  np.repeat(ken["weight"].to_numpy()[:, None], n_tza, axis=1))

    def se(table: pd.DataFrame, rscales: list[float], domain: pd.Series | None) -> float:
        d = np.ones(len(table)) if domain is None else domain.to_numpy(dtype=float)
        data = table.assign(y=(table["ocsea_talk"].astype(str) == "1").to_numpy() * d, d=d)
        design = Design(data, "weight", replicates=Replicates(_reps(table), 1.0, rscales,
                                                              mse=True))
        return design.ratio("y", "d").se

    # A Kenyan estimate from the pooled file equals the one from Kenya's own file.
    own = se(tables["KEN"]["child"], reps["KEN"]["child"]["rscales"], None)
    from_pool = se(child, info["rscales"], child["country"].astype(str) == "404")
    assert from_pool == pytest.approx(own, rel=1e-10) and own > 0


def test_pooled_files_reopen_with_labels(countries, tmp_path) -> None:
    import pyreadstat

    tables, reps, models = countries
    pooled = pool_release(tables, reps)
    write_release({"child": pooled.tables["child"]}, models, tmp_path)
    df, meta = pyreadstat.read_dta(tmp_path / "child.dta")
    assert len(df) == len(pooled.tables["child"])
    assert {404, 834} <= set(meta.variable_value_labels["country"])
    assert meta.column_names_to_labels["weight"]


def test_pooling_refuses_one_country_colliding_ids_and_missing_tables(countries) -> None:
    tables, reps, _ = countries
    with pytest.raises(DhsurveyError, match="two countries"):
        pool_release({"KEN": tables["KEN"]}, reps)
    with pytest.raises(DhsurveyError, match="missing from the release"):
        pool_release({"KEN": tables["KEN"], "TZA": {"child": tables["TZA"]["child"]}}, reps)
    clash = {name: t.copy() for name, t in tables["TZA"].items()}
    clash["child"].loc[0, "record_id"] = tables["KEN"]["child"]["record_id"].iloc[0]
    with pytest.raises(DhsurveyError, match="repeat across countries"):
        pool_release({"KEN": tables["KEN"], "TZA": clash}, reps)
    pooled = pool_release(tables, {"KEN": reps["KEN"], "TZA": None})
    assert pooled.replicates is None and not _reps(pooled.tables["child"])
    assert "no pooled replicate weights" in pooled.notes[0]
