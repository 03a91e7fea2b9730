"""The README's demo command, on a smaller sample: every stage runs and the summary is right.

The run is the session's one (tests/demo_run.py, the ``demo_run`` fixture of
tests/conftest.py), shared with the pipeline tests that build on it."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from demo_run import DemoRun

from dhsurvey.io import AT_REST_KEY_ENV, is_encrypted, read_parquet


def test_demo_runs_the_pipeline_for_three_countries(demo_run: DemoRun,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    result, data = demo_run.result, demo_run.data
    assert result.exit_code == 0, result.output
    assert "lint 0 error(s)" in result.output
    assert "Headline indicators" in result.output
    # The raw and clean zones are encrypted at rest with a throwaway key kept in secrets/.
    at_rest = data / "secrets" / "demo-at-rest.key"
    assert at_rest == demo_run.at_rest_key
    assert oct(at_rest.stat().st_mode & 0o777) == "0o600"
    assert "encrypted at rest with the demo's throwaway key" in result.output
    assert at_rest.read_text().strip() not in result.output
    monkeypatch.setenv(AT_REST_KEY_ENV, at_rest.read_text().strip())
    for iso in ("KEN", "TZA", "UGA"):
        assert iso in result.output
        for form in ("household", "child", "caregiver", "frontline_worker"):
            assert is_encrypted(data / "raw" / iso / f"{form}.parquet")
            table = read_parquet(data / "raw" / iso / f"{form}.parquet")
            assert len(table) > 0
            assert set(table["country"].dropna()) == {
                {"KEN": "404", "TZA": "834", "UGA": "800"}[iso]}
    assert (data / "build" / "forms" / "manifest.json").exists()
    key = data / "secrets" / "demo-private.pem"
    assert key == demo_run.private_key
    assert key.exists() and oct(key.stat().st_mode & 0o777) == "0o600"
    for iso in ("KEN", "TZA", "UGA"):
        files = {p.name for p in (data / "release" / iso).iterdir()}
        assert {"child.dta", "child.sav", "codebook.xlsx", "disclosure_risk.md",
                "indicators.csv"} <= files
        assert not any("secret" in f or f.endswith(".pem") for f in files)
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(demo_run.home))
    runs = instance.get_runs()
    # forms_job, country_job for each country, then pooled_job.
    assert sorted(r.job_name for r in runs) == ["country_job"] * 3 + ["forms_job", "pooled_job"]
    assert all(r.is_success for r in runs)
    assert instance.get_latest_materialization_event(dg.AssetKey("release")) is not None
    assert instance.get_latest_materialization_event(dg.AssetKey("pooled_release")) is not None
    pooled = pd.read_parquet(data / "release" / "pooled" / "child.parquet")
    assert set(pooled["country"].astype(str)) == {"404", "834", "800"}
    # The summary prints the pooled headline indicators as country "all".
    assert re.search(r"│ all\s+│", result.output), result.output
