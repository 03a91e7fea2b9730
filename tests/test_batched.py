"""A country in batches of PSUs gives the release the whole-country steps give.

The same simulated KEN fieldwork goes through the in-memory steps (validate_forms,
study_weights, anonymise_country on whole tables) and through release_in_batches with several
batches; reconciliation, weights, the disclosure decisions and every released row must agree.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat
import pytest

from dhsurvey.anonymise.release import anonymise_country
from dhsurvey.batched import (
    partition_raw,
    psu_batches,
    read_accepted,
    release_in_batches,
    validate_batches,
)
from dhsurvey.fieldwork.config import load_country
from dhsurvey.fieldwork.faults import KINDS, inject_faults
from dhsurvey.fieldwork.simulate import FORMS, simulate_country
from dhsurvey.forms.model import load_form
from dhsurvey.ingest.store import write_raw
from dhsurvey.validate.run import validate_forms
from dhsurvey.weight.study import study_weights

INSTRUMENTS = Path(__file__).parents[1] / "instruments"
KEY = bytes(range(32))
HOUSEHOLDS_PER_BATCH = 150


@pytest.fixture(scope="module")
def country(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    models = {f: load_form(INSTRUMENTS / f"{f}.xlsx") for f in FORMS}
    config = load_country(INSTRUMENTS / "countries" / "KEN.yaml")
    sim = simulate_country(config, models, seed=3, households=800)
    # Every kind of fault the field produces (duplicates, orphans, a second child, ...).
    inject_faults(sim, models, list(KINDS), np.random.default_rng(4), per_kind=3)
    raw = tmp_path_factory.mktemp("raw")
    for form in sim.forms.values():
        write_raw(form, raw)
    return models, config, sim, raw


def test_psu_batches_are_whole_random_psus(country) -> None:  # noqa: ANN001
    _, _, sim, _ = country
    design = sim.sample.households
    batch = psu_batches(design, HOUSEHOLDS_PER_BATCH, np.random.default_rng(1))
    clusters = set(pd.to_numeric(design["cluster"]).astype(int))
    assert set(batch.index) == clusters
    sizes = pd.to_numeric(design["cluster"]).astype(int).map(batch).value_counts()
    assert len(sizes) >= 4
    # Every batch but the last holds at least the target: whole PSUs, cut after the target.
    assert (sizes.sort_index().iloc[:-1] >= HOUSEHOLDS_PER_BATCH - 25).all()
    other = psu_batches(design, HOUSEHOLDS_PER_BATCH, np.random.default_rng(2))
    assert not batch.equals(other)  # the grouping is random


def test_batches_validate_like_the_whole_country(country, tmp_path: Path) -> None:  # noqa: ANN001
    models, config, sim, raw = country
    whole = validate_forms(sim.forms, models, config=config)
    batch = psu_batches(sim.sample.households, HOUSEHOLDS_PER_BATCH, np.random.default_rng(1))
    part = partition_raw(raw, models, batch, tmp_path / "parts")
    assert part.whole == ["frontline_worker"] and part.batches >= 4
    recs = validate_batches(part, models, config, tmp_path / "validation")
    for form, r in whole.forms.items():
        got, want = recs[form], r.reconciliation
        for name in ("raw", "accepted", "quarantined", "duplicates", "flagged",
                     "quarantine_by_rule", "flags_by_rule"):
            assert got[name] == want[name], (form, name)
        assert got["balanced"]
        accepted = read_accepted(tmp_path / "validation", form)
        assert sorted(accepted["KEY"]) == sorted(r.accepted["KEY"])
        quarantine = pd.read_parquet(tmp_path / "validation" / form / "quarantine.parquet")
        assert len(quarantine) == len(r.quarantine)
    # Faults the simulator plants are found across batch borders as in one piece.
    assert sum(recs[f]["quarantined"] for f in recs) > 10
    assert sum(recs[f]["duplicates"] for f in recs) > 0
    assert sum(recs[f]["flags_by_rule"].get("speeder", 0) for f in recs) > 0


def test_batched_release_equals_the_whole_release(country, tmp_path: Path) -> None:  # noqa: ANN001
    models, config, sim, raw = country
    steps: list[str] = []
    result = release_in_batches(raw, sim.sample.households, models, config,
                                tmp_path / "release", tmp_path / "work", key=KEY,
                                rng=np.random.default_rng(7),
                                batch_households=HOUSEHOLDS_PER_BATCH, on_step=steps.append)
    assert steps == ["partition", "validate", "weight", "anonymise", "release"]
    assert result.batches >= 4

    # The whole-country steps on the same accepted rows, in the batches' order, with the
    # random generator where the batched run had it after drawing the batches.
    whole = validate_forms(sim.forms, models, config=config)
    order = {f: read_accepted(tmp_path / "work" / "validation", f, ["KEY"])["KEY"]
             for f in whole.forms}
    accepted = {f: r.accepted.set_index("KEY", drop=False).loc[order[f]]
                .reset_index(drop=True) for f, r in whole.forms.items()}
    w = study_weights(sim.sample.households, accepted["household"], accepted["child"],
                      accepted["caregiver"], config)
    assert w.summary == result.weights
    rng = np.random.default_rng(7)
    psu_batches(sim.sample.households, HOUSEHOLDS_PER_BATCH, rng)
    release = anonymise_country(accepted, {"household": w.household, "child": w.child,
                                           "caregiver": w.caregiver}, models, config,
                                key=KEY, rng=rng)
    for form, table in release.tables.items():
        got = pd.read_parquet(tmp_path / "release" / f"{form}.parquet")
        want = table.sort_values("record_id").reset_index(drop=True)
        got = got.sort_values("record_id").reset_index(drop=True)
        pd.testing.assert_frame_equal(got, want, check_exact=True)
        assert result.report[form]["suppressions"] == release.report[form]["suppressions"]
        assert result.report[form]["dropped"] == release.report[form]["dropped"]
        assert result.report[form]["months"] == release.report[form]["months"]
        assert result.report[form]["l_diversity"] == release.report[form]["l_diversity"]
    assert result.report["child"]["l_diversity"]  # the child file has sensitive answers
    assert result.report["linked"] == release.report["linked"]
    # The restricted mapping joins release IDs back to the instanceIDs, as the whole one does.
    records = pd.read_parquet(tmp_path / "work" / "restricted" / "records.parquet")
    want = release.restricted["records"].astype(object)
    pd.testing.assert_frame_equal(records.astype(object).where(records.notna(), None),
                                  want.where(want.notna(), None))

    # Stata and SPSS files were written from the Parquet, with their labels.
    dta, meta = pyreadstat.read_dta(tmp_path / "release" / "child.dta")
    assert len(dta) == len(release.tables["child"])
    assert meta.column_names_to_labels["weight"]
    sav, meta = pyreadstat.read_sav(tmp_path / "release" / "child.sav", user_missing=True)
    assert len(sav) == len(release.tables["child"]) and meta.variable_value_labels
    assert result.children == len(accepted["child"])


def test_release_batches_command(country, tmp_path: Path,  # noqa: ANN001
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from typer.testing import CliRunner

    from dhsurvey.cli import app

    models, config, sim, raw = country
    data = tmp_path / "data"
    shutil.copytree(raw, data / "raw" / "KEN")
    (data / "landing" / "KEN" / "design").mkdir(parents=True)
    sim.sample.households.to_parquet(data / "landing" / "KEN" / "design" / "households.parquet")
    args = ["release-batches", "KEN", "--instruments", str(INSTRUMENTS), "--data", str(data),
            "--batch-households", str(HOUSEHOLDS_PER_BATCH)]

    monkeypatch.delenv("DHSURVEY_PSEUDONYM_KEY", raising=False)
    missing = CliRunner().invoke(app, args)
    assert missing.exit_code == 2 and "DHSURVEY_PSEUDONYM_KEY" in missing.output

    monkeypatch.setenv("DHSURVEY_PSEUDONYM_KEY", KEY.hex())
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "batches of PSUs" in result.output
    assert "Disclosure gate (k, global risk, design variables): passed" in result.output
    decision = json.loads((data / "batched" / "KEN" / "work" / "gate.json").read_text())
    assert decision["passed"] and decision["scan"] == "not run"
    release = data / "batched" / "KEN" / "release"
    assert sorted(p.name for p in release.glob("child.*")) == [
        "child.csv", "child.dta", "child.parquet", "child.sav"]
    assert (data / "batched" / "KEN" / "work" / "restricted" / "records.parquet").exists()
    # The key never reaches a file the command wrote.
    for path in (data / "batched").rglob("*"):
        if path.is_file():
            assert KEY.hex().encode() not in path.read_bytes()


_MAPPED = """
import ctypes, sys
import numpy as np
from dhsurvey.batched import return_large_blocks

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks",
                "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "fixed":
    return_large_blocks()
x = np.ones(400_000); del x  # a mapped block freed: glibc raises its threshold past it
before = libc.mallinfo2().hblkhd
y = np.ones(300_000)  # 2.4 MB: a step's transient array
print((libc.mallinfo2().hblkhd - before) / 2**20)
"""


def test_large_arrays_are_mapped_on_their_own_so_freeing_returns_them() -> None:
    # By default glibc serves a large array from the heap once a mapped block was freed,
    # where it stays resident after it is freed, behind whatever was allocated after it.
    def mapped_mb(mode: str) -> float:
        out = subprocess.run([sys.executable, "-c", _MAPPED, mode], check=True,
                             capture_output=True, text=True)
        return float(out.stdout)

    assert mapped_mb("default") == 0  # the behaviour being fixed
    assert mapped_mb("fixed") >= 2.2  # the 2.4 MB array has a mapping of its own
