"""The README's demo command, on a smaller sample: every stage runs and the summary is right."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner
from workbooks import instruments_with_budget

from dhsurvey.io import AT_REST_KEY_ENV, is_encrypted, read_parquet
from pipelines.cli import app


def test_demo_runs_the_pipeline_for_three_countries(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.delenv(AT_REST_KEY_ENV, raising=False)
    # 450 households per country: the study's 5 % suppression budget needs its full samples
    # (test_intruder.py releases those); this test of the wiring allows any suppression.
    instruments = instruments_with_budget(tmp_path / "instruments", 1.0)
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--households", "450",
                                      "--instruments", str(instruments)])
    assert result.exit_code == 0, result.output
    assert "lint 0 error(s)" in result.output
    assert "Headline indicators" in result.output
    # The raw and clean zones are encrypted at rest with a throwaway key kept in secrets/.
    at_rest = tmp_path / "secrets" / "demo-at-rest.key"
    assert oct(at_rest.stat().st_mode & 0o777) == "0o600"
    assert "encrypted at rest with the demo's throwaway key" in result.output
    assert at_rest.read_text().strip() not in result.output
    monkeypatch.setenv(AT_REST_KEY_ENV, at_rest.read_text().strip())
    for iso in ("KEN", "TZA", "UGA"):
        assert iso in result.output
        for form in ("household", "child", "caregiver", "frontline_worker"):
            assert is_encrypted(tmp_path / "raw" / iso / f"{form}.parquet")
            table = read_parquet(tmp_path / "raw" / iso / f"{form}.parquet")
            assert len(table) > 0
            assert set(table["country"].dropna()) == {
                {"KEN": "404", "TZA": "834", "UGA": "800"}[iso]}
    assert (tmp_path / "build" / "forms" / "manifest.json").exists()
    key = tmp_path / "secrets" / "demo-private.pem"
    assert key.exists() and oct(key.stat().st_mode & 0o777) == "0o600"
    for iso in ("KEN", "TZA", "UGA"):
        files = {p.name for p in (tmp_path / "release" / iso).iterdir()}
        assert {"child.dta", "child.sav", "codebook.xlsx", "disclosure_risk.md",
                "indicators.csv"} <= files
        assert not any("secret" in f or f.endswith(".pem") for f in files)
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(tmp_path / "dagster_home"))
    runs = instance.get_runs()
    # forms_job, country_job for each country, then pooled_job.
    assert sorted(r.job_name for r in runs) == ["country_job"] * 3 + ["forms_job", "pooled_job"]
    assert all(r.is_success for r in runs)
    assert instance.get_latest_materialization_event(dg.AssetKey("release")) is not None
    assert instance.get_latest_materialization_event(dg.AssetKey("pooled_release")) is not None
    pooled = pd.read_parquet(tmp_path / "release" / "pooled" / "child.parquet")
    assert set(pooled["country"].astype(str)) == {"404", "834", "800"}
    # The summary prints the pooled headline indicators as country "all".
    assert re.search(r"│ all\s+│", result.output), result.output
