"""The restricted zones are owner-only after a whole country run, batched parts included.

Simulated KEN fieldwork goes from landing/ to release/ in batches of 150 households; then every
file under landing/, raw/ and clean/ (accepted parts, work files, weights, the restricted
mappings of release IDs) is either owner-only (no group or other permission bits) or sits below
folders that are all owner-only from the zone down, and the zone folders themselves are 0700.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from dhsurvey.fieldwork.run import simulate_to
from dhsurvey.store import Store
from dhsurvey.study import Study, run_country

INSTRUMENTS = Path(__file__).parents[1] / "instruments"
KEY = bytes(range(32))
ZONES = ("landing", "raw", "clean")


def _open_to_others(path: Path) -> bool:
    return bool(stat.S_IMODE(path.stat().st_mode) & 0o077)


def exposed(zone: Path) -> list[str]:
    """Files of ``zone`` readable by others: group/other bits on the file and on some folder
    between the zone and the file."""
    found = []
    for path in sorted(zone.rglob("*")):
        if not path.is_file() or not _open_to_others(path):
            continue
        folders = [p for p in path.parents if p == zone or zone in p.parents]
        if any(_open_to_others(p) for p in folders):
            found.append(f"{path.relative_to(zone.parent)} "
                         f"{oct(stat.S_IMODE(path.stat().st_mode))}")
    return found


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    study = Study.load(INSTRUMENTS)
    root = tmp_path_factory.mktemp("data")
    store = Store(root)
    simulate_to(store.landing(), [study.config("KEN")], study.models, seed=3, households=400,
                formats=("central",))
    run = run_country(store, study, "KEN", key=KEY, batch_households=150)
    assert run.validated.batches > 1
    return root


def test_restricted_zones_are_owner_only_after_a_batched_run(data: Path) -> None:
    problems = []
    for name in ZONES:
        zone = data / name
        problems += [f"{p.relative_to(data)} {oct(stat.S_IMODE(p.stat().st_mode))}"
                     for p in (zone, zone / "KEN") if stat.S_IMODE(p.stat().st_mode) != 0o700]
        problems += exposed(zone)
    assert problems == [], "\n".join(problems)
    # The run wrote what the test is about: batched parts and the restricted mappings.
    clean = data / "clean" / "KEN"
    assert sorted((clean / "child" / "accepted").glob("batch-*.parquet"))
    mappings = sorted((clean / "restricted").rglob("*.parquet"))  # one folder per tier
    for tier in ("public", "licensed"):
        assert {p.name for p in mappings if p.parent.name == tier} >= {
            "records.parquet", "households.parquet"}, tier
    for path in mappings:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
