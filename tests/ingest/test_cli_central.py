"""`dhsurvey publish` and `dhsurvey fetch` against the real ODK Central (tests/central_server.py).

The forms are the study's instruments, the submissions the simulator's, sent as Collect sends
them; fetch stores them per country in ``landing/<ISO>/central-api/``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pandas as pd
import pytest
from central_server import CentralProject
from test_central_encryption import PASSPHRASE, base64_key, key_pair
from typer.testing import CliRunner

from dhsurvey.cli import app
from dhsurvey.fieldwork.config import load_country
from dhsurvey.fieldwork.simulate import FORMS, simulate_country
from dhsurvey.forms.compile import to_xform
from dhsurvey.forms.model import FormModel, load_form
from dhsurvey.ingest.canonical import RawForm
from dhsurvey.ingest.central_api import PASSPHRASE_ENV
from dhsurvey.ingest.decrypt import PRIVATE_KEY_ENV
from dhsurvey.ingest.store import read_raw
from dhsurvey.store import Store

ROOT = Path(__file__).parents[2]
INSTRUMENTS = ROOT / "instruments"
FORM = "frontline_worker"


@cache
def models() -> dict[str, FormModel]:
    return {f: load_form(INSTRUMENTS / f"{f}.xlsx") for f in FORMS}


@cache
def frontline() -> RawForm:
    """Uganda's simulated frontline-worker interviews (50; the form has no repeat)."""
    sim = simulate_country(load_country(INSTRUMENTS / "countries" / "UGA.yaml"), models(),
                           seed=4, households=120)
    return sim.forms[FORM]


def part(rows: slice) -> RawForm:
    raw = frontline()
    return RawForm(raw.form_id, raw.root.iloc[rows].reset_index(drop=True))


def fetch(data: Path, *extra: str) -> tuple[int, str]:
    out = CliRunner().invoke(app, ["fetch", "--form", FORM, "--out", str(data),
                                   "--instruments", str(INSTRUMENTS), *extra])
    return out.exit_code, out.output


def stored_keys(data: Path, iso: str = "UGA") -> list[str]:
    table = pd.read_parquet(Store(data).central_api(iso) / f"{FORM}.parquet")
    return sorted(table["KEY"])


def test_publish_a_draft_then_publish_then_refuse_the_same_version(
        central: CentralProject) -> None:
    runner = CliRunner()
    args = ["publish", "--form", "child", "--instruments", str(INSTRUMENTS)]
    version = load_form(INSTRUMENTS / "child.xlsx").version
    drafted = runner.invoke(app, [*args, "--draft"])
    assert drafted.exit_code == 0, drafted.output
    assert "as a draft" in drafted.output
    assert central.published_versions("child") == []
    assert central.get("forms/child/draft")["version"] == version

    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert f"Published child version {version}" in first.output
    assert central.published_versions("child") == [version]
    again = runner.invoke(app, args)
    assert again.exit_code == 2
    assert "publish-version-exists" in again.output


def test_fetch_is_incremental_and_split_by_country(central: CentralProject,
                                                   tmp_path: Path) -> None:
    model = models()[FORM]
    central.load(model, part(slice(0, 30)))
    status, output = fetch(tmp_path / "data")
    assert status == 0, output
    assert "UGA/frontline_worker: 30 new" in output
    assert stored_keys(tmp_path / "data") == sorted(frontline().root["KEY"][:30])

    central.load(model, part(slice(30, None)))
    status, output = fetch(tmp_path / "data")
    assert status == 0, output
    assert "UGA/frontline_worker: 20 new" in output
    assert stored_keys(tmp_path / "data") == sorted(frontline().root["KEY"])


def test_fetch_decrypts_central_managed_encryption_with_the_passphrase(
        central: CentralProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    answer = central.http.post(central.api("key"), json={"passphrase": PASSPHRASE}, timeout=30)
    assert answer.status_code == 200
    model = models()[FORM]
    central.publish(model)
    version, public = central.form_key(FORM)
    central.load(model, part(slice(0, 10)), public_key_pem=public, version=version)

    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    status, output = fetch(tmp_path / "data")
    assert status == 2 and "central-passphrase-missing" in output and PASSPHRASE_ENV in output

    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    status, output = fetch(tmp_path / "data")
    assert status == 0, output
    assert "UGA/frontline_worker: 10 new" in output and PASSPHRASE not in output
    assert stored_keys(tmp_path / "data") == sorted(frontline().root["KEY"][:10])


def test_fetch_keeps_self_managed_encryption_until_the_private_key_is_given(
        central: CentralProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    private, public = key_pair()
    model = models()[FORM]
    central.publish(to_xform(model, public_key=base64_key(public)))
    central.load(model, part(slice(0, 8)), public_key_pem=public)
    data = tmp_path / "data"

    monkeypatch.delenv(PRIVATE_KEY_ENV, raising=False)
    status, output = fetch(data)
    assert status == 0, output
    pending = Store(data).central_state() / "encrypted" / FORM / "pending"
    assert f"encrypted/{FORM}: 8 submission(s) kept encrypted" in output
    assert len(list(pending.iterdir())) == 8
    assert not (Store(data).central_api("UGA") / f"{FORM}.parquet").exists()
    unknown = Store(data).central_api("_unknown")
    assert len(read_raw(unknown, FORM).quarantine) == 8  # not decrypted, country unknown

    # With the key, the kept submissions and the new ones are decrypted and filed.
    key = tmp_path / "private.pem"
    key.write_bytes(private)
    monkeypatch.setenv(PRIVATE_KEY_ENV, str(key))
    central.load(model, part(slice(8, 12)), public_key_pem=public)
    status, output = fetch(data)
    assert status == 0, output
    assert "UGA/frontline_worker: 12 new" in output and "kept encrypted" not in output
    assert stored_keys(data) == sorted(frontline().root["KEY"][:12])
    assert list(pending.iterdir()) == []
    stored = pd.read_parquet(Store(data).central_api("UGA") / f"{FORM}.parquet")
    assert set(stored["source_format"]) == {"xml"}
    # Decrypted, they are no longer listed as "not decrypted" under no country.
    assert read_raw(unknown, FORM).quarantine.empty
