"""`dhsurvey simulate` → every export route → equal canonical tables; bytes reproducible (but
for the RSA-OAEP values in encrypted manifests, randomised by their OAEP seed)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pandas as pd
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from typer.testing import CliRunner

from dhsurvey.cli import app
from dhsurvey.fieldwork.faults import KINDS
from dhsurvey.fieldwork.simulate import FORMS
from dhsurvey.forms.model import load_form
from dhsurvey.ingest.canonical import assert_same_content
from dhsurvey.ingest.read import read_export

INSTRUMENTS = Path(__file__).parents[2] / "instruments"
MODELS = {f: load_form(INSTRUMENTS / f"{f}.xlsx") for f in FORMS}


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("keys")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = folder / "private.pem"
    public = folder / "public.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def _simulate(out: Path, public: Path) -> None:
    result = CliRunner().invoke(app, [
        "simulate", "--out", str(out), "--country", "TZA", "--seed", "9", "--households", "200",
        "--faults", "all", "--public-key", str(public), "--instruments", str(INSTRUMENTS)])
    assert result.exit_code == 0, result.output


# The wrapped AES key and the signature: RSA-OAEP, whose seed `cryptography` draws itself.
_RSA_VALUES = re.compile(rb"<(base64EncryptedKey|base64EncryptedElementSignature)>[^<]+</\1>")


def _digest(folder: Path) -> dict[str, str]:
    """sha256 of every file, encrypted manifests with their two RSA-OAEP values blanked."""
    return {str(p.relative_to(folder)):
            hashlib.sha256(_RSA_VALUES.sub(rb"<\1/>", p.read_bytes())).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _rsa_values(folder: Path) -> dict[str, list[bytes]]:
    return {str(p.relative_to(folder)): [m.group() for m in _RSA_VALUES.finditer(p.read_bytes())]
            for p in sorted(folder.rglob("submission.xml"))}


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory, keys: tuple[Path, Path]) -> Path:
    out = tmp_path_factory.mktemp("sim")
    _simulate(out, keys[1])
    return out / "TZA"


def test_every_route_gives_the_same_tables(simulated: Path, keys: tuple[Path, Path]) -> None:
    private = keys[0].read_bytes()
    for form in FORMS:
        central = read_export(simulated / "central" / f"{form}.csv.zip", MODELS)
        kobo = read_export(simulated / "kobo" / f"{form}.json", MODELS)
        xml = read_export(simulated / "xml" / form, MODELS, private_key_pem=private)
        assert len(central.root) > 0 and central.quarantine.empty
        assert_same_content(central, kobo)
        assert_same_content(central, xml, server_meta=False)
        encrypted = next((simulated / "xml" / form).iterdir())
        assert (encrypted / "submission.xml.enc").exists()


def test_fault_manifest_lists_every_kind(simulated: Path) -> None:
    manifest = json.loads((simulated / "faults.json").read_text())
    kinds = {f["kind"] for f in manifest["faults"]}
    assert kinds == set(KINDS)
    for fault in manifest["faults"]:
        table = read_export(simulated / "central" / f"{fault['form']}.csv.zip", MODELS)
        assert fault["instanceID"] in set(table.root["KEY"])
    design = pd.read_parquet(simulated / "design" / "households.parquet")
    assert {"psu_prob", "hh_prob", "base_weight"} <= set(design.columns)


def test_same_seed_gives_identical_bytes(simulated: Path, keys: tuple[Path, Path],
                                         tmp_path: Path) -> None:
    """Every file the same bytes, the encrypted ones (.enc: AES from the seeded rng) too; only
    the manifests' RSA-OAEP values differ, and both runs decrypt to the same tables."""
    _simulate(tmp_path, keys[1])
    again = tmp_path / "TZA"
    assert _digest(again) == _digest(simulated)
    first, second = _rsa_values(simulated), _rsa_values(again)
    assert first.keys() == second.keys() and len(first) > 0
    assert all(len(first[k]) == 2 and first[k] != second[k] for k in first)
    private = keys[0].read_bytes()
    for form in FORMS:
        assert_same_content(
            read_export(simulated / "xml" / form, MODELS, private_key_pem=private),
            read_export(again / "xml" / form, MODELS, private_key_pem=private))


def test_ingest_all_routes_together_keeps_each_submission_once(
        simulated: Path, keys: tuple[Path, Path], tmp_path: Path) -> None:
    exports = [simulated / "central" / "child.csv.zip", simulated / "kobo" / "child.json",
               simulated / "xml" / "child"]
    result = CliRunner().invoke(app, ["ingest", *map(str, exports), "--out", str(tmp_path),
                                      "--key", str(keys[0]),
                                      "--instruments", str(INSTRUMENTS)])
    assert result.exit_code == 0, result.output
    raw = pd.read_parquet(tmp_path / "raw" / "TZA" / "child.parquet")
    central = read_export(exports[0], MODELS)
    # The orphan-child fault keeps its (valid) country, so every child lands in TZA once.
    assert sorted(raw["KEY"]) == sorted(central.root["KEY"])


def test_decrypt_command_keeps_failures(simulated: Path, keys: tuple[Path, Path],
                                        tmp_path: Path) -> None:
    src = tmp_path / "in"
    import shutil

    shutil.copytree(simulated / "xml" / "frontline_worker", src)
    victim = sorted(src.iterdir())[0] / "submission.xml.enc"
    victim.write_bytes(victim.read_bytes()[:-16])  # truncated upload
    result = CliRunner().invoke(app, ["decrypt", str(src), str(tmp_path / "out"),
                                      "--key", str(keys[0])])
    assert result.exit_code == 1
    assert "49 decrypted, 0 plain, 1 failed" in result.output
    failed = list((tmp_path / "out" / "_failed").iterdir())
    assert len(failed) == 1 and (failed[0] / "reason.txt").exists()
