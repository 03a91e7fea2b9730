"""The thirteen-country wave: every country through its own path, all of them pooled.

Each configured country is simulated at a small size (the fewest households its strata allow,
two PSUs each), then run by the library's one path (`dhsurvey.study.run_country`: ingest →
validate → weight → anonymise → release). No clean interview may be quarantined, every
submission is accounted for, the gate passes, and the released files carry the country's own
regions and school levels (from its country file, through the forms' attached lists) with
their ISCED levels; the pooled release holds every country, education comparable through ISCED.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyreadstat
import pytest
from workbooks import instruments_with_budget

from dhsurvey.store import Store
from dhsurvey.study import Study, run_country

INSTRUMENTS = Path(__file__).parents[1] / "instruments"
KEY = bytes(range(32))
WAVE = sorted(p.stem for p in (INSTRUMENTS / "countries").glob("*.yaml"))


@pytest.fixture(scope="module")
def wave(tmp_path_factory: pytest.TempPathFactory) -> tuple[Study, Path]:
    from dhsurvey.fieldwork.run import simulate_to

    instruments = instruments_with_budget(tmp_path_factory.mktemp("instruments"), 1.0)
    study = Study.load(instruments)
    data = tmp_path_factory.mktemp("data")
    simulate_to(data / "landing", [study.config(iso) for iso in WAVE], study.models, seed=13,
                households=200, formats=("central",))
    return study, data


def test_thirteen_countries_are_configured() -> None:
    assert WAVE == ["ETH", "IDN", "KEN", "KHM", "MOZ", "MYS", "NAM", "PHL", "THA", "TZA",
                    "UGA", "VNM", "ZAF"]


@pytest.mark.parametrize("iso", WAVE)
def test_country_runs_its_own_path(wave, iso: str) -> None:
    study, data = wave
    config = study.config(iso)
    run = run_country(Store(data), study, iso, key=KEY)
    for form, rec in run.validated.reconciliation.items():
        assert rec["raw"] == rec["accepted"] + rec["quarantined"] + rec["duplicates"], form
        assert rec["quarantined"] == 0, (form, rec)  # no fault planted: nothing is unclean
    assert run.release.gate.passed and run.release.findings == []
    child = pd.read_parquet(data / "release" / iso / "child.parquet")
    assert len(child) > 0 and (child["country"].astype(str) == str(config.code)).all()
    regions = {str(r.code) for r in config.divisions}
    assert set(child["region"].dropna().astype(str)) <= regions
    schools = {str(lv.code): lv.isced for lv in config.schools}
    asked = child.dropna(subset=["school_level"])
    assert len(asked) and set(asked["school_level"].astype(int).astype(str)) <= set(schools)
    assert (asked["school_isced"].astype(int)
            == asked["school_level"].astype(int).astype(str).map(schools)).all()
    # The country's own labels, in the release language, in the Stata file.
    _, meta = pyreadstat.read_dta(data / "release" / iso / "child.dta", metadataonly=True)
    region_labels = meta.variable_value_labels["region"]
    named = {r.code: r.name for r in config.divisions}
    assert {int(k) for k in region_labels} == set(named)
    assert all(region_labels[float(k)] == v or region_labels.get(k) == v
               for k, v in named.items())
