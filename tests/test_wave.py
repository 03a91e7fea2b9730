"""The thirteen-country wave: every country through its own path, all of them pooled.

Each configured country is simulated at a small size (the fewest households its strata allow:
two PSUs of four households each), then run by the library's one path
(`dhsurvey.study.run_countries`: ingest → validate → weight → anonymise → release for each),
one country per core at a time. No clean interview may be quarantined, every
submission is accounted for, the gate passes, and the released files carry the country's own
release zones and school levels (from its country file, through the forms' attached lists)
with their ISCED levels. The pooled release then holds every country.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyreadstat
import pytest
from workbooks import instruments_with_budget

from dhsurvey.store import Store
from dhsurvey.study import Study, pool, run_countries

INSTRUMENTS = Path(__file__).parents[1] / "instruments"
KEY = bytes(range(32))
WAVE = sorted(p.stem for p in (INSTRUMENTS / "countries").glob("*.yaml"))


@pytest.fixture(scope="module")
def wave(tmp_path_factory: pytest.TempPathFactory) -> tuple[Study, Path, dict[str, dict]]:
    """Every country simulated, then run side by side (`dhsurvey.study.run_countries`, one
    forked worker per core); what the tests check of each run."""
    from dhsurvey.fieldwork.run import simulate_to

    instruments = instruments_with_budget(tmp_path_factory.mktemp("instruments"), 1.0)
    study, data = Study.load(instruments), tmp_path_factory.mktemp("data")
    simulate_to(data / "landing", [study.config(iso) for iso in WAVE], study.models, seed=13,
                households=200, formats=("central",))
    runs = {iso: {"reconciliation": run.validated.reconciliation,
                  "gate": run.release.gate.passed, "findings": list(run.release.findings)}
            for iso, run in run_countries(Store(data), study, WAVE, key=KEY)}
    return study, data, runs


def test_thirteen_countries_are_configured() -> None:
    assert WAVE == ["ETH", "IDN", "KEN", "KHM", "MOZ", "MYS", "NAM", "PHL", "THA", "TZA",
                    "UGA", "VNM", "ZAF"]


@pytest.mark.parametrize("iso", WAVE)
def test_country_runs_its_own_path(wave, iso: str) -> None:
    study, data, runs = wave
    config, run = study.config(iso), runs[iso]
    for form, rec in run["reconciliation"].items():
        assert rec["raw"] == rec["accepted"] + rec["quarantined"] + rec["duplicates"], form
        assert rec["quarantined"] == 0, (form, rec)  # no fault planted: nothing is unclean
    assert run["gate"] and run["findings"] == []
    child = pd.read_parquet(data / "release" / iso / "child.parquet")
    assert len(child) > 0 and (child["country"].astype(str) == str(config.code)).all()
    zones = set(config.released_regions.values())
    assert set(child["region"].dropna().astype(int)) <= zones
    schools = {lv.code: lv.isced for lv in config.schools}
    asked = child.dropna(subset=["school_level"])
    assert len(asked) and set(asked["school_level"].astype(int)) <= set(schools)
    assert (asked["school_isced"].astype(int)
            == asked["school_level"].astype(int).map(schools)).all()
    # The country's own zones, named in the release language, label the Stata file.
    _, meta = pyreadstat.read_dta(data / "release" / iso / "child.dta", metadataonly=True)
    named = {config.zone_code(z.code): z.name for z in config.zones}
    assert {int(k): v for k, v in meta.variable_value_labels["region"].items()} == named


def test_the_pooled_release_holds_every_country_with_comparable_education(wave) -> None:
    study, data, _ = wave
    pooled = pool(Store(data), study)
    assert pooled is not None
    child = pd.read_parquet(data / "release" / "pooled" / "child.parquet")
    assert set(child["country"].astype(int)) == {study.config(iso).code for iso in WAVE}
    # School systems differ (each country's own levels); ISCED 2011 levels compare.
    assert child["school_level"].nunique() > 20
    assert set(child["school_isced"].dropna().astype(int)) <= set(range(10))
    caregiver = pd.read_parquet(data / "release" / "pooled" / "caregiver.parquet")
    assert set(caregiver["cg_educ_isced"].dropna().astype(int)) <= set(range(10))
