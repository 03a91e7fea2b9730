"""Encryption at rest of the raw and clean zones' Parquet files (``DHSURVEY_AT_REST_KEY``).

With the key set, a Parquet file written in ``raw/`` or ``clean/`` cannot be read without it
(plain pyarrow fails, a planted value is not in its bytes) and :mod:`dhsurvey.io` reads it back
equal; without the key files are plain as before; an encrypted file read without the key, or
with another key, is a clear error naming the file and the variable; a weak key is refused.
End to end: a small simulated country run through :mod:`dhsurvey.study` with the key set leaves
every Parquet file under raw/ and clean/ encrypted and every release file plain.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dhsurvey.errors import DhsurveyError
from dhsurvey.io import (
    AT_REST_KEY_ENV,
    atomic_write_parquet,
    in_encrypted_zone,
    is_encrypted,
    open_private,
    parquet_file,
    parquet_writer,
    read_parquet,
)
from dhsurvey.store import Store

INSTRUMENTS = Path(__file__).parents[1] / "instruments"
#: Stand-ins for 32 random bytes (test keys only).
KEY = hashlib.sha256(b"dhsurvey at-rest test key").hexdigest()
OTHER_KEY = hashlib.sha256(b"another at-rest test key").hexdigest()
CANARY = "CANARY-Wanjiru-7f3a9c"


def _table() -> pd.DataFrame:
    return pd.DataFrame({
        "KEY": [f"uuid:{i:04d}" for i in range(50)],
        "name": [CANARY if i == 7 else f"child {i}" for i in range(50)],
        "age": pd.array(range(50), dtype="Int64"),
        "score": [i / 3 for i in range(50)],
    })


def _needs_decryption(path: Path) -> bool:
    """Whether pyarrow alone refuses the file for want of decryption properties."""
    try:
        pq.ParquetFile(path)
    except OSError as exc:
        return "encrypted" in str(exc)
    return False


@pytest.fixture
def keyed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(AT_REST_KEY_ENV, KEY)


def test_a_raw_file_is_encrypted_with_the_key(tmp_path: Path, keyed: None) -> None:
    store = Store(tmp_path / "data")
    path = atomic_write_parquet(store.raw("KEN") / "child.parquet", _table())
    assert is_encrypted(path) and _needs_decryption(path)
    with pytest.raises(OSError, match="encrypted"):
        pq.read_table(path)
    assert CANARY.encode() not in path.read_bytes()
    pd.testing.assert_frame_equal(read_parquet(path), _table())
    pd.testing.assert_frame_equal(read_parquet(path, columns=["name", "age"]),
                                  _table()[["name", "age"]])
    with parquet_file(path) as source:
        assert source.metadata.num_rows == 50
        assert source.schema_arrow.names == list(_table().columns)
        rows = sum(b.num_rows for b in source.iter_batches(batch_size=20))
    assert rows == 50


def test_every_clean_file_and_a_streamed_one_are_encrypted(tmp_path: Path, keyed: None) -> None:
    store = Store(tmp_path / "data")
    paths = [atomic_write_parquet(store.form_dir("KEN", "child") / "accepted.parquet", _table()),
             atomic_write_parquet(store.restricted("KEN") / "records.parquet",
                                  pa.Table.from_pandas(_table(), preserve_index=False))]
    streamed = store.clean("KEN") / "work" / "partition" / "child" / "batch-00000.parquet"
    table = pa.Table.from_pandas(_table(), preserve_index=False)
    with open_private(streamed) as sink:
        writer = parquet_writer(sink, table.schema, streamed)
        writer.write_table(table.slice(0, 20))
        writer.write_table(table.slice(20))
        writer.close()
    for path in [*paths, streamed]:
        assert _needs_decryption(path), path
        assert CANARY.encode() not in path.read_bytes()
        pd.testing.assert_frame_equal(read_parquet(path), _table())


def test_release_and_licensed_files_stay_plain_with_the_key(tmp_path: Path, keyed: None) -> None:
    store = Store(tmp_path / "data")
    for path in (store.release("KEN") / "child.parquet", store.licensed("KEN") / "child.parquet",
                 store.landing("KEN") / "design" / "households.parquet"):
        atomic_write_parquet(path, _table())
        assert not is_encrypted(path)
        pd.testing.assert_frame_equal(pq.read_table(path).to_pandas(), _table())


def test_without_the_key_files_are_plain(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(AT_REST_KEY_ENV, raising=False)
    path = atomic_write_parquet(Store(tmp_path).raw("KEN") / "child.parquet", _table())
    assert not is_encrypted(path)
    assert CANARY.encode() in path.read_bytes()
    pd.testing.assert_frame_equal(pq.read_table(path).to_pandas(), _table())
    pd.testing.assert_frame_equal(read_parquet(path), _table())


def test_an_encrypted_file_without_the_key_is_a_clear_error(tmp_path: Path,
                                                            monkeypatch) -> None:
    monkeypatch.setenv(AT_REST_KEY_ENV, KEY)
    path = atomic_write_parquet(Store(tmp_path).clean("KEN") / "quality" / "aapor.parquet",
                                _table())
    monkeypatch.delenv(AT_REST_KEY_ENV)
    for read in (read_parquet, parquet_file):
        with pytest.raises(DhsurveyError) as caught:
            read(path)
        assert caught.value.code == "at-rest-key-missing"
        assert AT_REST_KEY_ENV in caught.value.message
        assert caught.value.context["file"] == path and str(path) in str(caught.value)
    # Another key: the same kind of error, no traceback from the cipher.
    monkeypatch.setenv(AT_REST_KEY_ENV, OTHER_KEY)
    with pytest.raises(DhsurveyError) as caught:
        read_parquet(path)
    assert caught.value.code == "at-rest-key-wrong"
    assert AT_REST_KEY_ENV in str(caught.value) and str(path) in str(caught.value)
    # The store reads through the same functions.
    monkeypatch.delenv(AT_REST_KEY_ENV)
    with pytest.raises(DhsurveyError, match=AT_REST_KEY_ENV):
        Store(tmp_path).quality_table("KEN", "aapor")


@pytest.mark.parametrize(("value", "code"), [
    ("00" * 64, "secret-weak"),  # 64 zero bytes (hex)
    ("ab" * 32, "secret-weak"),  # a repeated pattern
    ("0123456789abcdef" * 2, "secret-invalid"),  # 16 bytes
    ("not a key!", "secret-invalid"),
])
def test_a_weak_or_bad_key_is_refused(tmp_path: Path, monkeypatch, value: str,
                                      code: str) -> None:
    monkeypatch.setenv(AT_REST_KEY_ENV, value)
    path = Store(tmp_path).raw("KEN") / "child.parquet"
    with pytest.raises(DhsurveyError) as caught:
        atomic_write_parquet(path, _table())
    assert caught.value.code == code
    assert AT_REST_KEY_ENV in str(caught.value) and value not in str(caught.value)
    assert not path.exists()


def test_the_zone_is_told_by_the_path(tmp_path: Path) -> None:
    assert in_encrypted_zone("/srv/data/raw/KEN/child.parquet")
    assert in_encrypted_zone("/srv/data/clean/KEN/child/accepted/batch-00001.parquet")
    # A tier's restricted mappings, in a folder named like the licensed zone.
    assert in_encrypted_zone("/srv/data/clean/KEN/restricted/licensed/records.parquet")
    assert not in_encrypted_zone("/srv/data/release/KEN/child.parquet")
    assert not in_encrypted_zone("/srv/data/licensed/KEN/child.parquet")
    assert not in_encrypted_zone("/srv/data/landing/KEN/design/households.parquet")
    # Hence a data root below a folder named raw or clean is refused: its release would be
    # encrypted too.
    for root in (tmp_path / "clean" / "data", tmp_path / "raw"):
        with pytest.raises(DhsurveyError, match="may not lie in a folder named") as caught:
            Store(root)
        assert caught.value.code == "store-root"


# ------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def run_with_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dhsurvey.fieldwork.run import simulate_to
    from dhsurvey.study import Study, run_country

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(AT_REST_KEY_ENV, KEY)
        study = Study.load(INSTRUMENTS)
        root = tmp_path_factory.mktemp("data")
        store = Store(root)
        simulate_to(store.landing(), [study.config("ZAF")], study.models, seed=11,
                    households=30, formats=("central",))
        # ZAF's smallest sample (192 households) in two batches of PSUs: the partition and
        # its parts go through io too.
        run_country(store, study, "ZAF", key=bytes(range(32)), batch_households=120)
    return root


def test_a_country_run_with_the_key_encrypts_raw_and_clean_only(run_with_key: Path,
                                                                monkeypatch) -> None:
    root = run_with_key
    restricted = sorted([*(root / "raw").rglob("*.parquet"), *(root / "clean").rglob("*.parquet")])
    assert {"records.parquet", "households.parquet"} <= {
        p.name for p in (root / "clean" / "ZAF" / "restricted").rglob("*.parquet")}
    # Batched parts: the child form's accepted rows in both batches.
    assert len([p for p in restricted if p.parent.name == "accepted"
                and p.parent.parent.name == "child"]) >= 2
    plain = [str(p.relative_to(root)) for p in restricted if not _needs_decryption(p)]
    assert plain == []
    released = sorted([*(root / "release").rglob("*.parquet"),
                       *(root / "licensed").rglob("*.parquet")])
    assert {p.name for p in released} >= {"child.parquet", "household.parquet"}
    for path in released:
        assert not is_encrypted(path), path
        pq.read_table(path)
    # With the key, everything reads back.
    monkeypatch.setenv(AT_REST_KEY_ENV, KEY)
    assert all(len(read_parquet(p).columns) for p in restricted)


def test_the_weights_pickle_is_sealed_too(run_with_key: Path, monkeypatch) -> None:
    """The weight step's hand-off (a pickle holding every instanceID and weight) is sealed
    with the same key; without it the store says which variable to set."""
    path = run_with_key / "clean" / "ZAF" / "weights" / "weights.pickle"
    data = path.read_bytes()
    assert data.startswith(b"DHSURVEY-SEALED-1\n") and b"uuid:" not in data
    store = Store(run_with_key)
    monkeypatch.delenv(AT_REST_KEY_ENV, raising=False)
    with pytest.raises(DhsurveyError) as caught:
        store.read_weights("ZAF")
    assert caught.value.code == "at-rest-key-missing"
    monkeypatch.setenv(AT_REST_KEY_ENV, KEY)
    assert len(store.read_weights("ZAF").child) > 0
