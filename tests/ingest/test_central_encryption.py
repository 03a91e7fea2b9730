"""Encrypted submissions on the real ODK Central, both ways Central knows.

- **Central-managed**: the project has a key protected by a passphrase (``POST
  /projects/N/key``); Central rewrites the form with its public key and a version suffix, and
  decrypts for a ``POST submissions.csv.zip`` carrying the passphrase. The library reads it from
  ``DHSURVEY_CENTRAL_PASSPHRASE`` and never shows it.
- **Self-managed**: the form carries our own public key; Collect encrypts and Central can only
  store manifest + ``submission.xml.enc``. The library downloads them as instance folders and
  decrypts them here with the private key.

Submissions are encrypted as Collect encrypts them (the simulator's instance folders,
:func:`dhsurvey.ingest.decrypt.encrypt_submission`) and sent over OpenRosa.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from central_server import CentralProject, same_answers
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from test_central_api import household, household_raw

from dhsurvey.errors import DhsurveyError
from dhsurvey.forms.compile import to_xform
from dhsurvey.ingest.central_api import PASSPHRASE_ENV, fetch_submissions
from dhsurvey.ingest.xmlfolder import read_xml_folder

PASSPHRASE = "correct horse battery staple 17"


def managed_project(central: CentralProject) -> tuple[str, bytes]:
    """Turn on Central-managed encryption and publish the household form under it; returns
    the (suffixed) version and the public key Collect encrypts with."""
    answer = central.http.post(central.api("key"), json={"passphrase": PASSPHRASE}, timeout=30)
    assert answer.status_code == 200, answer.text[:200]
    central.publish(household())
    return central.form_key("household")


def test_central_managed_encryption_is_fetched_decrypted(central: CentralProject,
                                                         tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture
                                                         ) -> None:
    model = household()
    version, public = managed_project(central)
    assert version.startswith(f"{model.version}[encrypted:")
    first = household_raw(3)
    central.load(model, first, public_key_pem=public, version=version)
    listed = central.odata("household")["value"]
    assert {row["__system"]["status"] for row in listed} == {"notDecrypted"}

    # No passphrase: refused, rather than stepping past submissions it cannot read.
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    with pytest.raises(DhsurveyError) as info:
        fetch_submissions("household", model, state_dir=tmp_path)
    assert info.value.code == "central-passphrase-missing"
    assert PASSPHRASE_ENV in info.value.message
    assert not (tmp_path / "central-odata-state.json").exists()

    wrong = "not the passphrase 99"
    monkeypatch.setenv(PASSPHRASE_ENV, wrong)
    with pytest.raises(DhsurveyError) as info:
        fetch_submissions("household", model, state_dir=tmp_path)
    assert info.value.code == "central-passphrase"
    assert wrong not in str(info.value) and wrong not in caplog.text

    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    got = fetch_submissions("household", model, state_dir=tmp_path)
    same_answers(got, first)
    assert set(got.root["source_format"]) == {"central-csv"}
    assert set(got.root["form_version"]) == {model.version}  # Central's key suffix dropped
    assert got.quarantine.empty
    assert PASSPHRASE not in caplog.text

    # Incremental on this route too: only what arrived since.
    later = household_raw(2, start=3)
    central.load(model, later, public_key_pem=public, version=version)
    same_answers(fetch_submissions("household", model, state_dir=tmp_path), later)
    assert fetch_submissions("household", model, state_dir=tmp_path).root.empty


def key_pair() -> tuple[bytes, bytes]:
    """(private PEM, public PEM): the project's own key for self-managed encryption."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return (private.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()),
            private.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo))


def base64_key(public_pem: bytes) -> str:
    return "".join(line for line in public_pem.decode().splitlines() if "-----" not in line)


def test_self_managed_encryption_is_downloaded_and_decrypted_locally(
        central: CentralProject, tmp_path: Path) -> None:
    model = household()
    private, public = key_pair()
    central.publish(to_xform(model, public_key=base64_key(public)))
    sent = household_raw(3)
    central.load(model, sent, public_key_pem=public)

    folder = tmp_path / "encrypted"
    fetched = fetch_submissions("household", model, encrypted_dir=folder)
    assert fetched.root.empty and fetched.repeats["roster"].empty
    assert set(fetched.quarantine["rule"]) == {"not-decrypted"}
    assert sorted(fetched.quarantine["KEY"]) == sorted(sent.root["KEY"])

    # One folder per submission: the manifest and the encrypted instance, nothing in clear.
    for inst in sorted(folder.iterdir()):
        assert sorted(p.name for p in inst.iterdir()) == ["submission.xml",
                                                          "submission.xml.enc"]
        assert b'encrypted="yes"' in (inst / "submission.xml").read_bytes()
        assert inst.stat().st_mode & 0o077 == 0
    assert len(list(folder.iterdir())) == 3

    plain = read_xml_folder(folder, model, private_key_pem=private)
    assert plain.quarantine.empty
    # Central's receipt time travels in the downloaded manifest (as Briefcase writes it).
    listed = {r["__id"]: r["__system"]["submissionDate"] for r in central.odata("household")
              ["value"]}
    assert dict(zip(plain.root["KEY"], plain.root["submission_time"], strict=True)) == listed
    same_answers(plain, sent)

    # Without the key they stay encrypted: quarantined, never dropped.
    locked = read_xml_folder(folder, model)
    assert locked.root.empty and set(locked.quarantine["value"]) == {"no-private-key"}
