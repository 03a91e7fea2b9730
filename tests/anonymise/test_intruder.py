"""The intruder who knows the child's household, played on the demo's public release.

The demo's fieldwork (seed 2026, every fault kind, each country's full sample as configured)
for two countries goes through the one path (``run_country``) and is pooled. The intruder
then works from the released public files alone plus what they know of their target: every
quasi-identifier of the child, its household and its caregiver (the true answers, read here
from the accepted data through the restricted mapping). They learn each recode from the
released files themselves, and are told which blank cells were suppressed (the strongest
reading: a suppressed cell matches anything, a question not asked only another not asked).

What must hold, for every released child, in each country and in the pooled release:
at least 3 released children are compatible with everything the intruder knows of it, on
every file that can be joined to the child's; no group of 3 or more compatible children all
reported abuse; local suppression took at most 5 % of any quasi-identifier's answers; no
released weight or design code is held by fewer than 3 records, and nothing links the files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dhsurvey.fieldwork.faults import KINDS
from dhsurvey.fieldwork.run import simulate_to
from dhsurvey.io import read_parquet
from dhsurvey.store import Store
from dhsurvey.study import Study, pool, run_country

INSTRUMENTS = Path(__file__).parents[2] / "instruments"
KEY = bytes(range(1, 33))
COUNTRIES = ("KEN", "TZA")
K = 3
BUDGET = 0.05


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> tuple[Study, Store]:
    study = Study.load(INSTRUMENTS)
    assert study.disclosure.k == K and study.disclosure.suppression_budget == BUDGET
    store = Store(tmp_path_factory.mktemp("data"))
    simulate_to(store.landing(), [study.config(iso) for iso in COUNTRIES], study.models,
                seed=2026, faults=list(KINDS), formats=("central",))
    for iso in COUNTRIES:
        run = run_country(store, study, iso, key=KEY)
        assert all(t.gate.passed for t in run.release.tiers.values()), {
            n: t.gate.reasons for n, t in run.release.tiers.items()}
    assert pool(store, study).passed
    return study, store


def _truth(store: Store, iso: str, form: str, columns: list[str]) -> pd.DataFrame:
    """The accepted answers of each public record of ``form``, indexed by record_id."""
    records = read_parquet(store.restricted(iso) / "public" / "records.parquet")
    records = records[records["form"] == form].set_index("KEY")["record_id"]
    accepted = store.read_accepted(iso, form, ["KEY", *columns]).set_index("KEY")
    accepted = accepted.loc[accepted.index.intersection(records.index)]
    return accepted.set_index(records.loc[accepted.index].to_numpy())


def _quasi(study: Study, form: str, columns: pd.Index) -> list[str]:
    model = study.models[form]
    return [c for c in columns if c in model.by_name and model.effective_pii(c) == "quasi"]


def _codes(released: pd.Series, raw: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Per record: the code the intruder compares (released value; for a suppressed cell the
    release's code of the true answer, learnt from the unsuppressed records) and whether
    the cell is a wildcard (suppressed)."""
    rel = released.astype(object).where(released.notna(), None)
    asked = raw.notna().to_numpy()
    suppressed = asked & rel.isna().to_numpy()
    learnt = pd.DataFrame({"raw": raw.astype(str), "rel": rel.astype(str)})[
        asked & ~suppressed].drop_duplicates().set_index("raw")["rel"]
    assert not learnt.index.duplicated().any(), "a recode maps one answer to two codes"
    code = rel.astype(str).to_numpy(dtype=object)
    code[~asked] = "not asked"
    truth = raw.astype(str).map(learnt).to_numpy(dtype=object)
    code[suppressed] = np.where(pd.isna(truth[suppressed]), "unknown", truth[suppressed])
    return code, suppressed


def _play(table: pd.DataFrame, raw: pd.DataFrame, keys: list[str],
          harmful: np.ndarray | None = None) -> dict[str, int]:
    """For every released record, the released records compatible with the intruder's
    knowledge of it; the records below K and those whose compatible group all share the
    harmful answer."""
    n = len(table)
    compatible = np.ones((n, n), dtype=bool)
    for key in keys:
        code, wild = _codes(table[key], raw[key])
        equal = code[:, None] == code[None, :]
        # Target t (row) is matched by record r (column) if r's cell is suppressed or equal;
        # a target whose own cell is suppressed is still known to the intruder (its code).
        compatible &= equal | wild[None, :]
    fk = compatible.sum(axis=1)
    out = {"records": n, "below_k": int((fk < K).sum()), "min_fk": int(fk.min())}
    if harmful is not None:
        all_harmful = (compatible & ~harmful[None, :]).sum(axis=1) == 0
        out["harmful_groups"] = int((all_harmful & harmful & (fk >= K)).sum())
    return out


def _child_frame(study: Study, store: Store, folder: Path, isos: tuple[str, ...]
                 ) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    table = pd.read_parquet(folder / "child.parquet")
    keys = ["stratum", *_quasi(study, "child", table.columns)]
    if "country" in table.columns and len(isos) > 1:
        keys.append("country")
    answers = [k for k in keys if k not in ("stratum", "country")]
    raw = pd.concat([_truth(store, iso, "child", [*answers, "n_ocsea_yes"]) for iso in isos])
    raw = raw.reindex(table["record_id"].astype(str))
    assert raw.index.notna().all() and len(raw) == len(table)
    raw["stratum"] = table["stratum"].to_numpy()  # never suppressed: the target's own
    if "country" in keys:
        raw["country"] = table["country"].to_numpy()
    return table.reset_index(drop=True), raw.reset_index(drop=True), keys


@pytest.mark.parametrize("where", [*COUNTRIES, "pooled"])
def test_no_child_is_below_k_for_the_intruder_who_knows_the_household(released, where
                                                                      ) -> None:
    study, store = released
    isos = COUNTRIES if where == "pooled" else (where,)
    folder = store.release(where)
    tables = {f: pd.read_parquet(folder / f"{f}.parquet")
              for f in ("household", "child", "caregiver")}
    # Nothing joins the public files: no household ID, no shared record ID.
    assert not any("hh_id" in t.columns for t in tables.values())
    ids = [set(t["record_id"]) for t in tables.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    table, raw, keys = _child_frame(study, store, folder, isos)
    assert {"stratum", "region", "child_sex", "age_now"} <= set(keys)
    harmful = pd.to_numeric(raw["n_ocsea_yes"], errors="coerce").fillna(0).to_numpy() >= 1
    found = _play(table, raw, keys, harmful)
    assert found["records"] > 900 * len(isos)
    assert found["below_k"] == 0 and found["min_fk"] >= K, found
    assert found["harmful_groups"] == 0, found


@pytest.mark.parametrize("iso", COUNTRIES)
def test_suppression_takes_at_most_the_budget_and_weights_single_out_nobody(released, iso
                                                                            ) -> None:
    study, store = released
    folder = store.release(iso)
    for form in ("household", "child", "caregiver"):
        table = pd.read_parquet(folder / f"{form}.parquet")
        keys = _quasi(study, form, table.columns)
        raw = _truth(store, iso, form, keys).reindex(table["record_id"].astype(str))
        for key in keys:
            asked = raw[key].notna().to_numpy()
            lost = asked & table[key].isna().to_numpy()
            assert lost.sum() <= BUDGET * asked.sum(), (form, key, lost.sum(), asked.sum())
        for column in ("weight", "weight_norm", "psu", "stratum"):
            held = table[column].value_counts()
            assert held.min() >= K, (form, column, held.min())
        assert not [c for c in table.columns if c.startswith("rep_")]
        assert not {"sel_rand", "sel_idx", "hh_id"} & set(table.columns)
        # No per-record number (a random draw, an exact weight) that would join this release
        # to another built from the same data: no numeric column has more than 1 % of its
        # records holding a value no other record holds. (Answers such as a select_multiple
        # combination can be rare; they are data, and not keys of this scenario.)
        for column in table.select_dtypes("number").columns:
            values = table[column].dropna().astype(str)
            alone = int((values.map(values.value_counts()) == 1).sum())
            assert alone <= 0.01 * len(table), (form, column, alone)
    # The report says what was done, variable by variable.
    report = (folder / "disclosure_risk.md").read_text(encoding="utf-8")
    assert "**Intruder scenario.**" in report and "**Keys.**" in report
    for heading in ("### Global recoding", "### Local suppression",
                    "Records in groups sharing a harmful answer", "Share of the key's answers"):
        assert heading in report
