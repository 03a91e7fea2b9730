"""`dhsurvey publish` and `dhsurvey fetch` against the local ODK Central stand-in."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from central_stub import CentralStub
from typer.testing import CliRunner

from dhsurvey.cli import app
from dhsurvey.fieldwork.config import load_country
from dhsurvey.fieldwork.simulate import FORMS, simulate_country
from dhsurvey.forms.model import load_form
from dhsurvey.store import Store

ROOT = Path(__file__).parents[2]
INSTRUMENTS = ROOT / "instruments"


def test_publish_then_refuse_the_same_version(central: CentralStub) -> None:
    runner = CliRunner()
    args = ["publish", "--form", "child", "--instruments", str(INSTRUMENTS)]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    version = load_form(INSTRUMENTS / "child.xlsx").version
    assert version in first.output
    assert central.published_versions("child") == [version]
    again = runner.invoke(app, args)
    assert again.exit_code == 2
    assert "publish-version-exists" in again.output


def test_fetch_is_incremental_and_split_by_country(central: CentralStub, tmp_path: Path) -> None:
    models = {f: load_form(INSTRUMENTS / f"{f}.xlsx") for f in FORMS}
    sim = simulate_country(load_country(INSTRUMENTS / "countries" / "UGA.yaml"), models,
                           seed=4, households=120)
    raw = sim.forms["frontline_worker"]
    first_half = raw.root.iloc[:30]
    from dhsurvey.ingest.canonical import RawForm

    central.load(models["frontline_worker"], RawForm(raw.form_id, first_half))
    runner = CliRunner()
    args = ["fetch", "--form", "frontline_worker", "--out", str(tmp_path / "data"),
            "--instruments", str(INSTRUMENTS)]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    assert "UGA/frontline_worker: 30 new" in out.output
    stored = pd.read_parquet(Store(tmp_path / "data").central_api("UGA")
                             / "frontline_worker.parquet")
    assert sorted(stored["KEY"]) == sorted(first_half["KEY"])

    central.load(models["frontline_worker"], RawForm(raw.form_id, raw.root.iloc[30:]))
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "UGA/frontline_worker: 20 new" in again.output
    stored = pd.read_parquet(Store(tmp_path / "data").central_api("UGA")
                             / "frontline_worker.parquet")
    assert sorted(stored["KEY"]) == sorted(raw.root["KEY"])
