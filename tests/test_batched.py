"""A country validated in batches of PSUs gives the results of validating it whole.

The same simulated KEN fieldwork goes through validate_forms on whole tables and through the
partition and per-batch validation; reconciliation and accepted records must agree (the
release built from either is compared byte for byte in ``test_study.py``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dhsurvey.batched import partition_raw, psu_batches, validate_batches
from dhsurvey.fieldwork.config import load_country
from dhsurvey.fieldwork.faults import KINDS, inject_faults
from dhsurvey.fieldwork.simulate import FORMS, simulate_country
from dhsurvey.forms.model import load_form
from dhsurvey.ingest.store import write_raw
from dhsurvey.store import Store
from dhsurvey.validate.run import validate_forms

INSTRUMENTS = Path(__file__).parents[1] / "instruments"
HOUSEHOLDS_PER_BATCH = 150


@pytest.fixture(scope="module")
def country(tmp_path_factory: pytest.TempPathFactory):
    models = {f: load_form(INSTRUMENTS / f"{f}.xlsx") for f in FORMS}
    config = load_country(INSTRUMENTS / "countries" / "KEN.yaml")
    sim = simulate_country(config, models, seed=3, households=800)
    # Every kind of fault the field produces (duplicates, orphans, a second child, ...).
    inject_faults(sim, models, list(KINDS), np.random.default_rng(4), per_kind=3)
    raw = tmp_path_factory.mktemp("raw")
    for form in sim.forms.values():
        write_raw(form, raw)
    return models, config, sim, raw


def test_psu_batches_are_whole_random_psus(country) -> None:
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


def test_batches_validate_like_the_whole_country(country, tmp_path: Path) -> None:
    models, config, sim, raw = country
    whole = validate_forms(sim.forms, models, config=config)
    batch = psu_batches(sim.sample.households, HOUSEHOLDS_PER_BATCH, np.random.default_rng(1))
    part = partition_raw(raw, models, batch, tmp_path / "parts")
    assert part.whole == ["frontline_worker"] and part.batches >= 4
    store = Store(tmp_path / "data")
    recs = validate_batches(part, models, config, store, "KEN")
    for form, r in whole.forms.items():
        got, want = recs[form], r.reconciliation
        for name in ("raw", "accepted", "quarantined", "duplicates", "flagged",
                     "quarantine_by_rule", "flags_by_rule", "automatic_corrections",
                     "duplicates_by_reason"):
            assert got[name] == want[name], (form, name)
        blanked = store.form_dir("KEN", form) / "corrections.parquet"
        assert blanked.exists() == bool(len(r.corrections)), form
        if len(r.corrections):  # hidden answers blanked in a batch are logged as in one piece
            assert sorted(pd.read_parquet(blanked)["KEY"]) == sorted(r.corrections["KEY"])
        assert got["balanced"]
        accepted = store.read_accepted("KEN", form)
        assert len(store.accepted_parts("KEN", form)) == (1 if form in part.whole
                                                          else part.batches)
        assert sorted(accepted["KEY"]) == sorted(r.accepted["KEY"])
        quarantine = pd.read_parquet(store.form_dir("KEN", form) / "quarantine.parquet")
        assert len(quarantine) == len(r.quarantine)
    # Faults the simulator plants are found across batch borders as in one piece.
    assert sum(recs[f]["quarantined"] for f in recs) > 10
    assert sum(recs[f]["duplicates"] for f in recs) > 0
    assert sum(sum(recs[f]["automatic_corrections"].values()) for f in recs) > 0
    assert sum(recs[f]["flags_by_rule"].get("speeder", 0) for f in recs) > 0


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


def test_a_batched_countrys_tiers_go_side_by_side_only_when_memory_holds_two(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A country validated whole makes its tiers side by side; one validated in batches only
    when the memory available holds two tiers of its size, else they take turns."""
    from dhsurvey.io import atomic_write_parquet
    from dhsurvey.study import TIER_BYTES_PER_HOUSEHOLD, tiers_side_by_side

    store = Store(tmp_path / "data")
    atomic_write_parquet(store.design_path("KEN"), pd.DataFrame({"hh": range(1000)}))
    two_tiers = 2 * TIER_BYTES_PER_HOUSEHOLD * 1000
    for available, together in ((0, False), (two_tiers - 1, False), (two_tiers, True)):
        monkeypatch.setattr("dhsurvey.parallel.available_memory", lambda a=available: a)
        assert tiers_side_by_side(store, "KEN", whole=False) is together, available
        assert tiers_side_by_side(store, "KEN", whole=True)


def test_available_memory_is_what_the_system_reports() -> None:
    """Linux's MemAvailable: above nothing and within the machine's memory (the figure moves
    with other processes, so it is not compared exactly)."""
    from dhsurvey.parallel import available_memory

    total = next(int(line.split()[1]) * 1024 for line in
                 Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal:"))
    assert 0 < available_memory() <= total


def test_private_memory_counts_what_this_process_alone_holds() -> None:
    """A forked child holds nothing of its own at first (its pages are the parent's); it
    holds an array once it writes one."""
    import os

    from dhsurvey.batched import private_memory

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its own memory before and after writing 64 MiB, then it ends
        try:
            before = private_memory() or 0
            block = bytearray(64 << 20)
            block[::4096] = b"x" * len(block[::4096])
            os.write(write, f"{before} {private_memory() or 0}".encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as answer:
        before, after = map(int, answer.read().split())
    assert before < (16 << 20) and after - before >= (60 << 20)


def test_memory_is_handed_back_only_by_a_process_holding_much(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Below RELEASE_FROM of its own a process skips the full collection (which walks every
    object it holds); from there on it collects."""
    import gc

    import dhsurvey.batched as batched

    collected: list[int] = []
    monkeypatch.setattr(gc, "collect", lambda *a: collected.append(1) or 0)
    for held, expected in ((batched.RELEASE_FROM - 1, 0), (batched.RELEASE_FROM, 1),
                           (None, 2)):
        monkeypatch.setattr(batched, "private_memory", lambda h=held: h)
        batched.release_memory()
        assert len(collected) == expected, held
