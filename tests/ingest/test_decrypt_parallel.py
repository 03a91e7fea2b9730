"""Decrypting in several processes (or threads) gives exactly what one thread gives: rows,
quarantine, order.

A folder of 200 encrypted household submissions, a few of them broken in every way ingest
knows (a corrupted, a truncated or a missing .enc, another project's key, a missing or damaged
manifest, an .enc over the size cap, a decrypted document that is not XML), plus a plain
submission and an encrypted one of another form, is read (and decrypted with ``dhsurvey
decrypt``'s :func:`decrypt_folder`) on one thread and with two workers; the results must be
equal.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import random
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from test_roundtrip import rsa_pair, synthetic_raw

from dhsurvey import parallel
from dhsurvey.errors import DhsurveyError
from dhsurvey.fieldwork.exports import write_xml_folder
from dhsurvey.forms.model import FormModel, load_form
from dhsurvey.ingest import decrypt, xmlfolder
from dhsurvey.ingest.canonical import RawForm
from dhsurvey.ingest.decrypt import decrypt_folder, encrypt_submission, in_order
from dhsurvey.ingest.xmlfolder import read_xml_folder

ROOT = Path(__file__).resolve().parents[2]
N = 200
#: The broken instances, by position in the folder's (sorted) order, and what breaks them.
BROKEN = {3: "corrupt", 17: "wrong-key", 40: "missing-enc", 41: "truncated", 77: "no-manifest",
          90: "bad-manifest", 120: "too-large", 150: "not-xml", 160: "plain", 199: "other-form"}
#: What each becomes in the quarantine (rule, value) when read; None: a root row.
EXPECTED = {
    "corrupt": ("not-decrypted", "decrypt-signature"),
    "wrong-key": ("not-decrypted", "decrypt-wrong-key"),
    "missing-enc": ("not-decrypted", "decrypt-missing-file"),
    "truncated": ("not-decrypted", "decrypt-truncated"),
    "no-manifest": ("xml-missing", None),
    "bad-manifest": ("xml-unreadable", None),
    "too-large": ("xml-too-large", "0.02 MB"),
    "not-xml": ("xml-unreadable", None),
    "plain": None,
    "other-form": ("wrong-form", "caregiver"),
}


@pytest.fixture(scope="module")
def hh() -> FormModel:
    return load_form(ROOT / "instruments" / "household.xlsx")


@pytest.fixture(scope="module")
def keys() -> tuple[bytes, bytes]:
    return rsa_pair()


def _encrypt_into(inst: Path, xml: bytes, form_id: str, public: bytes) -> None:
    for f in inst.iterdir():
        f.unlink()
    enc = encrypt_submission(xml, form_id=form_id, version="1", instance_id=f"uuid:{inst.name}",
                             public_key_pem=public)
    (inst / "submission.xml").write_bytes(enc.manifest)
    for name, data in enc.files.items():
        (inst / name).write_bytes(data)


def _break(inst: Path, how: str, plain: Path, public: bytes) -> None:
    enc = inst / "submission.xml.enc"
    manifest = inst / "submission.xml"
    if how == "corrupt":
        data = bytearray(enc.read_bytes())
        data[20] ^= 0xFF  # one flipped byte: CFB decrypts, the signature no longer matches
        enc.write_bytes(bytes(data))
    elif how == "wrong-key":
        _encrypt_into(inst, b'<data id="household"/>', "household", rsa_pair()[1])
    elif how == "missing-enc":
        enc.unlink()
    elif how == "truncated":
        enc.write_bytes(enc.read_bytes()[:-5])
    elif how == "no-manifest":
        manifest.unlink()
    elif how == "bad-manifest":
        manifest.write_bytes(manifest.read_bytes()[:60])
    elif how == "too-large":
        enc.write_bytes(enc.read_bytes() + bytes(16 * 2000))  # 32 KB over a 20 KB cap
    elif how == "not-xml":
        _encrypt_into(inst, b"<data id='household'><unclosed></data>", "household", public)
    elif how == "plain":  # the same submission, not encrypted
        for f in inst.iterdir():
            f.unlink()
        shutil.copy(plain / inst.name / "submission.xml", manifest)
    elif how == "other-form":
        _encrypt_into(inst, b'<data id="caregiver"/>', "caregiver", public)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, hh: FormModel,
           keys: tuple[bytes, bytes]) -> Path:
    raw = synthetic_raw(hh, n=N, seed=5)
    base = tmp_path_factory.mktemp("parallel")
    out = base / "household"
    instances = sorted(write_xml_folder(raw, hh, out, public_key_pem=keys[1],
                                        rng=random.Random(2).randbytes))
    write_xml_folder(raw, hh, base / "plain")
    assert len(instances) == N
    for position, how in BROKEN.items():
        _break(instances[position], how, base / "plain", keys[1])
    return out


@pytest.fixture
def small_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DHSURVEY_MAX_XML_MB", "0.02")


class RsaRan:
    """Where RSA private operations ran, as ``<pid> <thread name>``, from any process (the
    forked workers append to a file)."""

    def __init__(self, log: Path) -> None:
        self.log = log

    def seen(self) -> set[str]:
        return set(self.log.read_text().splitlines()) if self.log.exists() else set()

    def clear(self) -> None:
        self.log.unlink(missing_ok=True)

    def here_only(self) -> bool:
        return self.seen() == {f"{os.getpid()} {threading.current_thread().name}"}

    def in_workers_only(self) -> bool:
        """Only in other processes (forked workers), none in this one."""
        seen = self.seen()
        return bool(seen) and not any(s.startswith(f"{os.getpid()} ") for s in seen)


@pytest.fixture
def rsa_ran(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[RsaRan]:
    where = RsaRan(tmp_path / "rsa-ran.log")
    real = decrypt._oaep_decrypt

    def spy(key: object, data: bytes) -> bytes:
        with where.log.open("a") as fh:
            fh.write(f"{os.getpid()} {threading.current_thread().name}\n")
        return real(key, data)

    monkeypatch.setattr(decrypt, "_oaep_decrypt", spy)
    yield where


def _frames(raw: RawForm) -> dict[str, pd.DataFrame]:
    return {"root": raw.root, "quarantine": raw.quarantine,
            **{f"repeat {k}": v for k, v in raw.repeats.items()}}


def _assert_identical(a: RawForm, b: RawForm) -> None:
    fa, fb = _frames(a), _frames(b)
    assert fa.keys() == fb.keys()
    for name in fa:
        pd.testing.assert_frame_equal(fa[name], fb[name], check_exact=True, obj=name)
        assert fa[name].to_csv() == fb[name].to_csv(), name  # values, order, dtypes as text


def test_parallel_read_is_the_sequential_read(folder: Path, hh: FormModel,
                                              keys: tuple[bytes, bytes], small_cap: None,
                                              rsa_ran: RsaRan) -> None:
    sequential = read_xml_folder(folder, hh, private_key_pem=keys[0], workers=1)
    assert rsa_ran.here_only()
    rsa_ran.clear()
    parallel = read_xml_folder(folder, hh, private_key_pem=keys[0], workers=2)
    assert rsa_ran.in_workers_only()
    _assert_identical(sequential, parallel)

    # and that result is the right one: every broken instance quarantined as itself, in order
    instances = sorted(p.name for p in folder.iterdir())
    quarantined = [how for how in BROKEN.values() if EXPECTED[how] is not None]
    q = parallel.quarantine
    assert list(zip(q["rule"], q["value"].where(q["value"].notna(), None), strict=True)) == [
        EXPECTED[how] for how in quarantined]
    assert len(parallel.root) == N - len(quarantined)
    for (position, how), source in zip(
            [(p, h) for p, h in BROKEN.items() if EXPECTED[h] is not None],
            q["source_file"], strict=True):
        assert instances[position] in str(source), how


def test_default_is_parallel_only_for_many_encrypted(folder: Path, hh: FormModel,
                                                     keys: tuple[bytes, bytes], small_cap: None,
                                                     rsa_ran: RsaRan,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decrypt, "WORKERS", 2)
    monkeypatch.setattr(decrypt, "PARALLEL_MIN", N + 1)  # fewer encrypted than this: one thread
    few = read_xml_folder(folder, hh, private_key_pem=keys[0])
    assert rsa_ran.here_only()
    rsa_ran.clear()
    monkeypatch.setattr(decrypt, "PARALLEL_MIN", 64)
    many = read_xml_folder(folder, hh, private_key_pem=keys[0])
    assert rsa_ran.in_workers_only()
    _assert_identical(few, many)


def test_threads_where_a_process_may_not_fork(folder: Path, hh: FormModel,
                                              keys: tuple[bytes, bytes], small_cap: None,
                                              rsa_ran: RsaRan,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A daemonic process (a Celery worker) may not have children: threads, same result."""
    sequential = read_xml_folder(folder, hh, private_key_pem=keys[0], workers=1)
    rsa_ran.clear()
    monkeypatch.setattr(parallel, "can_fork", lambda: False)
    threaded = read_xml_folder(folder, hh, private_key_pem=keys[0], workers=2)
    seen = rsa_ran.seen()
    assert seen and all(s.startswith(f"{os.getpid()} dhsurvey-decrypt") for s in seen)
    _assert_identical(sequential, threaded)


def test_a_document_encrypted_since_discovery_is_decrypted_all_the_same(
        folder: Path, hh: FormModel, keys: tuple[bytes, bytes], small_cap: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The workers decrypt what discovery found encrypted; the table builder decides on the
    document it parses, and decrypts itself one that discovery saw otherwise."""
    expected = read_xml_folder(folder, hh, private_key_pem=keys[0], workers=2)
    real = xmlfolder.discover_instances
    monkeypatch.setattr(xmlfolder, "discover_instances", lambda f: [
        dataclasses.replace(i, encrypted=False) for i in real(f)])
    for workers in (1, 2):
        _assert_identical(expected, read_xml_folder(folder, hh, private_key_pem=keys[0],
                                                    workers=workers))


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_parallel_decrypt_folder_is_the_sequential_one(folder: Path, keys: tuple[bytes, bytes],
                                                       tmp_path: Path, small_cap: None,
                                                       rsa_ran: RsaRan) -> None:
    one = decrypt_folder(folder, tmp_path / "one", keys[0], workers=1)
    assert rsa_ran.here_only()
    rsa_ran.clear()
    two = decrypt_folder(folder, tmp_path / "two", keys[0], workers=2)
    assert rsa_ran.in_workers_only()
    assert one == two
    assert _tree(tmp_path / "one") == _tree(tmp_path / "two")
    # wrong-form is ingest's business: decrypt_folder decrypts the caregiver one; the plain one
    # is copied; the document-less folder has nothing to decrypt; the others fail.
    assert len(one.plain) == 1 and len(one.failed) == 7
    assert len(one.decrypted) == N - 1 - 1 - 7 + 1  # the not-XML document decrypts fine too
    assert [code for _, code, _ in one.failed] == [
        "decrypt-signature", "decrypt-wrong-key", "decrypt-missing-file", "decrypt-truncated",
        "decrypt-manifest", "decrypt-manifest", "input-too-large"]


def test_an_unusable_key_fails_the_folder_either_way(folder: Path, hh: FormModel) -> None:
    for workers in (1, 2):
        with pytest.raises(DhsurveyError) as info:
            read_xml_folder(folder, hh, private_key_pem=b"not a key", workers=workers)
        assert info.value.code == "secret-invalid"


def test_in_order_keeps_order_and_exceptions() -> None:
    def work(i: int) -> int:
        if i % 7 == 3:
            raise ValueError(f"bad {i}")
        return i * i

    def seen(workers: int) -> list[object]:
        return [(o.value, repr(o.error)) for o in in_order(work, range(300), workers)]

    expected = [(None, repr(ValueError(f"bad {i}"))) if i % 7 == 3 else (i * i, "None")
                for i in range(300)]
    assert seen(1) == expected
    assert seen(2) == expected


def test_in_order_stops_with_its_caller() -> None:
    started = mp.get_context("fork").Value("i", 0)  # counted across the forked workers

    def work(i: int) -> int:
        with started.get_lock():
            started.value += 1
        return i

    outcomes = in_order(work, range(10_000), 2)
    assert [next(outcomes).get() for _ in range(5)] == [0, 1, 2, 3, 4]
    outcomes.close()  # pending calls cancelled, the pool shut down
    assert 5 <= started.value < 100
    assert not mp.active_children()


def test_in_order_makes_here_what_cannot_come_back() -> None:
    """An outcome that does not pickle (a lock) is made again in the caller's process."""

    def work(i: int) -> object:
        return threading.Lock() if i % 10 == 4 else (i, os.getpid())

    outcomes = [o.get() for o in in_order(work, range(40), 2)]
    assert [o[0] for o in outcomes if isinstance(o, tuple)] == [i for i in range(40)
                                                                 if i % 10 != 4]
    assert {o[1] for o in outcomes if isinstance(o, tuple)} - {os.getpid()}  # forked workers
    assert all(not isinstance(o, tuple) for o in outcomes[4::10])


def test_in_order_carries_on_when_a_worker_dies() -> None:
    """What a dead worker would have made, and everything after, is made here."""
    caller = os.getpid()

    def work(i: int) -> int:
        if i == 20 and os.getpid() != caller:
            os._exit(1)  # a worker killed (out of memory …) while on item 20
        return i * i

    assert [o.get() for o in in_order(work, range(200), 2)] == [i * i for i in range(200)]
    assert not mp.active_children()
