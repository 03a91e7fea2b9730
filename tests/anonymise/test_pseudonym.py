"""Keyed pseudonyms, key loading without leaking it, fresh release IDs."""

from __future__ import annotations

import base64
import hashlib
import hmac

import numpy as np
import pandas as pd
import pytest

from dhsurvey.anonymise.pseudonym import (
    PSEUDONYM_HEX_LENGTH,
    check_key,
    id_text,
    load_key,
    pseudonym,
    release_ids,
    release_numbers,
)
from dhsurvey.errors import DhsurveyError

KEY = bytes(range(32))
ENV = "DHSURVEY_PSEUDONYM_KEY"


def test_deterministic_with_key_and_documented_construction() -> None:
    p = pseudonym(KEY, "linkage", "HH-0123-04")
    assert p == pseudonym(KEY, "linkage", "HH-0123-04")
    assert len(p) == PSEUDONYM_HEX_LENGTH >= 16
    expected = hmac.new(KEY, b"linkage\x00HH-0123-04", hashlib.sha256).hexdigest()
    assert p == expected[:PSEUDONYM_HEX_LENGTH]


def test_normalisation() -> None:
    assert pseudonym(KEY, "linkage", " hh-0123-04 ") == pseudonym(KEY, "linkage", "HH-0123-04")
    assert pseudonym(KEY, "linkage", "ＨＨ-0123-04") == pseudonym(KEY, "linkage", "HH-0123-04")


def test_purpose_and_key_change_the_pseudonym() -> None:
    base = pseudonym(KEY, "linkage", "HH-0123-04")
    assert pseudonym(KEY, "backcheck", "HH-0123-04") != base
    assert pseudonym(bytes(range(31, -1, -1)), "linkage", "HH-0123-04") != base
    assert pseudonym(KEY, "linkage", "HH-0123-05") != base


def test_purpose_and_key_are_checked() -> None:
    with pytest.raises(DhsurveyError):
        pseudonym(KEY, "", "x")
    with pytest.raises(DhsurveyError):
        pseudonym(KEY, "a\x00b", "x")
    with pytest.raises(DhsurveyError) as err:
        pseudonym(b"short", "linkage", "x")
    assert err.value.code == "secret-invalid"


def test_load_key_hex(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, KEY.hex())
    assert load_key() == KEY
    monkeypatch.setenv("OTHER_KEY", KEY.hex().upper())
    assert load_key("OTHER_KEY") == KEY


def test_load_key_base64(monkeypatch: pytest.MonkeyPatch) -> None:
    key = bytes(range(200, 240))  # 40 bytes, has '+' and '/' in standard base64
    monkeypatch.setenv(ENV, base64.b64encode(key).decode())
    assert load_key() == key
    monkeypatch.setenv(ENV, base64.urlsafe_b64encode(key).decode())
    assert load_key() == key


def test_missing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(DhsurveyError) as err:
        load_key()
    assert err.value.code == "secret-missing"
    monkeypatch.setenv(ENV, "   ")
    with pytest.raises(DhsurveyError) as err:
        load_key()
    assert err.value.code == "secret-missing"


@pytest.mark.parametrize(
    "secret",
    ["deadbeefcafebabe0123456789abcdef", base64.b64encode(b"sixteen byte key").decode(),
     "not-a-key!! s3cr3t"],
)
def test_short_or_invalid_key_is_not_echoed(monkeypatch: pytest.MonkeyPatch,
                                            secret: str) -> None:
    monkeypatch.setenv(ENV, secret)
    with pytest.raises(DhsurveyError) as err:
        load_key()
    assert err.value.code == "secret-invalid"
    shown = f"{err.value} {err.value.context} {err.value.__cause__} {err.value.__context__}"
    assert secret not in shown
    assert secret[:8] not in shown
    assert ENV in str(err.value)


#: Keys of the right length an attacker could guess: refused wherever a key enters.
WEAK = {
    "zeros": bytes(32),
    "one byte": bytes.fromhex("5c" * 32),
    "two-byte pattern": b"\xab\xcd" * 16,
    "half repeated": bytes(range(16)) * 2,
    "ten values": bytes([7, 1, 9, 0, 3, 3, 8, 2, 5, 4, 6, 1, 0, 9, 2, 8,
                         3, 7, 4, 5, 6, 0, 9, 1, 8, 2, 7, 3, 5, 4, 6, 0]),
}


@pytest.mark.parametrize("name", WEAK)
def test_weak_keys_are_refused_without_echoing_them(monkeypatch: pytest.MonkeyPatch,
                                                    name: str) -> None:
    key = WEAK[name]
    with pytest.raises(DhsurveyError) as err:
        pseudonym(key, "linkage", "HH-0123-04")
    assert err.value.code == "secret-weak"
    for encoded in (key.hex(), base64.b64encode(key).decode()):
        monkeypatch.setenv(ENV, encoded)
        with pytest.raises(DhsurveyError) as err:
            load_key()
        assert err.value.code == "secret-weak" and ENV in str(err.value)
        assert "secrets.token_hex(32)" in err.value.message
        shown = f"{err.value} {err.value.context} {err.value.__cause__} {err.value.__context__}"
        assert encoded not in shown and encoded[:8] not in shown


def test_strong_keys_pass() -> None:
    import secrets

    for key in (KEY, bytes(range(31, -1, -1)), secrets.token_bytes(32),
                secrets.token_bytes(32) * 2):  # a random 32-byte half is a whole key's worth
        check_key(key)


def test_anonymise_country_refuses_a_weak_key() -> None:
    from simulated import INSTRUMENTS, weighted_country

    from dhsurvey.anonymise.release import anonymise_country
    from dhsurvey.fieldwork.simulate import FORMS
    from dhsurvey.forms.model import load_form

    config, _, accepted, w = weighted_country("KEN", 3, 200)
    models = {f: load_form(INSTRUMENTS / f"{f}.xlsx") for f in FORMS}
    with pytest.raises(DhsurveyError) as err:
        anonymise_country(accepted, {"household": w.household, "child": w.child,
                                     "caregiver": w.caregiver}, models, config,
                          key=WEAK["one byte"], rng=np.random.default_rng(1))
    assert err.value.code == "secret-weak"


def test_release_ids_are_fresh_and_the_mapping_inverts() -> None:
    ids = pd.Series(["HH-1", "HH-2", "HH-1", None, "HH-3"], index=[10, 11, 12, 13, 14])
    first, map1 = release_ids(ids, np.random.default_rng(1))
    second, map2 = release_ids(ids, np.random.default_rng(2))
    assert first.index.tolist() == ids.index.tolist()
    # Same value, same ID within a release; missing stays missing.
    assert first[10] == first[12] and first[10] != first[11]
    assert first[13] is None
    assert first.dropna().str.fullmatch(r"[0-9a-f]{16}").all()
    # Nothing links two releases.
    assert set(first.dropna()).isdisjoint(set(second.dropna()))
    # The restricted mapping turns release IDs back into the originals.
    back = first.map(dict(zip(map1["release_id"], map1["original"], strict=True)))
    assert back.drop(13).tolist() == ids.drop(13).tolist() and pd.isna(back[13])
    assert sorted(map1["original"]) == ["HH-1", "HH-2", "HH-3"]
    assert map1["release_id"].is_unique


def test_release_ids_default_rng_differs_between_calls() -> None:
    ids = pd.Series([f"HH-{i}" for i in range(50)])
    a, _ = release_ids(ids)
    b, _ = release_ids(ids)
    assert (a != b).all()


def test_release_id_text_is_the_numbers_in_fixed_width_hex() -> None:
    numbers = np.concatenate([np.array([0, 1, 255, 2**63, 2**64 - 1], dtype=np.uint64),
                              release_numbers(1000, np.random.default_rng(4))])
    assert numbers.dtype == np.uint64
    text = id_text(numbers)
    assert list(text) == [f"{int(n):016x}" for n in numbers]
    # Fixed width: the text sorts as the numbers do (the linked profile relies on it).
    assert np.array_equal(np.argsort(np.asarray(text, dtype=object), kind="stable"),
                          np.argsort(numbers, kind="stable"))
    assert len(set(numbers[5:])) == 1000  # release numbers are distinct
    with_missing = id_text(pd.array([7, None, 2**64 - 1], dtype="UInt64"))
    assert with_missing[0] == "0000000000000007" and pd.isna(with_missing[1])
    assert with_missing[2] == "f" * 16
