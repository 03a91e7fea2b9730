"""Keyed pseudonyms for restricted files, fresh random IDs for public releases.

Why keyed: survey IDs such as ``HH-0123-04`` come from a tiny space, so a plain hash is
reversed by enumerating every possible ID (1.4 s here). HMAC-SHA256 with a secret key is not
enumerable without the key. The ``purpose`` string separates uses ("linkage", "backcheck",
...): the same child gets unrelated pseudonyms in two files, so files keyed for different
purposes cannot be joined by anyone who is only given them.

Why fresh random IDs per public release: deterministic pseudonyms would let anyone link two
public releases record by record (and build a longer, more identifying profile of a child).
``release_ids`` draws unrelated random IDs each time; the mapping back to the internal ID is
kept in the restricted zone only.

Weak keys are refused wherever a key enters (:func:`load_key`, :func:`check_key`, and every
:func:`pseudonym`, hence ``anonymise_country(key=...)``): one byte repeated (``"5c" * 32``),
fewer than :data:`MIN_DISTINCT_BYTES` distinct byte values, or a short pattern repeated
(``b"ab" * 16``). 32 random bytes have about 30 distinct values; fewer than 16 happens by chance
with a probability below 10^-20.

Errors are :class:`~dhsurvey.errors.DhsurveyError` with codes ``secret-missing``,
``secret-invalid``, ``secret-weak`` and ``pseudonym-bad-argument``. No message ever contains a
key.
"""

from __future__ import annotations

import hmac
import re
import unicodedata

import numpy as np
import pandas as pd

from dhsurvey.errors import DhsurveyError
from dhsurvey.io import (
    MAKE_KEY,
    MIN_KEY_BYTES,
    env_key,
    key_weakness,
)

#: Hex characters kept from the HMAC: 32 hex = 128 bits, collision-free for any survey size
#: (birthday bound ~2**64 IDs) and short enough to read out on the phone.
PSEUDONYM_HEX_LENGTH = 32

#: Hex characters in a release ID (64 random bits).
RELEASE_ID_HEX_LENGTH = 16


def normalise_id(value: str) -> str:
    """The form of an ID that is hashed: NFKC, trimmed, inner whitespace removed, upper case.

    So ``hh-0123-04``, ``HH-0123-04 `` and the full-width ``ＨＨ-0123-04`` typed on a
    phone keyboard get one pseudonym.
    """
    text = unicodedata.normalize("NFKC", str(value))
    return re.sub(r"\s+", "", text).upper()


def check_key(key: bytes, where: str = "the pseudonym key") -> None:
    """Refuse a key that is too short or weak (:func:`key_weakness`); the message names
    ``where`` the key came from, never the key."""
    if not isinstance(key, bytes | bytearray) or len(key) < MIN_KEY_BYTES:
        raise DhsurveyError(
            f"{where} must be at least {MIN_KEY_BYTES} bytes", code="secret-invalid"
        )
    weakness = key_weakness(bytes(key))
    if weakness is not None:
        raise DhsurveyError(
            f"{where} is too weak to keep pseudonyms secret: {weakness}. Use {MIN_KEY_BYTES} "
            f"random bytes, e.g. from {MAKE_KEY}", code="secret-weak",
        )


def pseudonym(key: bytes, purpose: str, value: str) -> str:
    """HMAC-SHA256(key, purpose || 0x00 || normalised id), first 32 hex characters.

    The 0x00 separator keeps ``("ab", "c")`` and ``("a", "bc")`` apart, hence a purpose may
    not contain NUL.
    """
    check_key(key)
    if not purpose or "\x00" in purpose:
        raise DhsurveyError(
            "purpose must be a non-empty string without NUL", code="pseudonym-bad-argument"
        )
    message = purpose.encode("utf-8") + b"\x00" + normalise_id(value).encode("utf-8")
    return hmac.digest(bytes(key), message, "sha256").hex()[:PSEUDONYM_HEX_LENGTH]


def load_key(env: str = "DHSURVEY_PSEUDONYM_KEY") -> bytes:
    """Read the pseudonym key from environment variable ``env``, as hex or base64.

    Hex is tried first (an even-length string of hex digits), then standard and URL-safe
    base64. The key must decode to at least 32 bytes and not be weak (:func:`check_key`).
    Error messages name the variable, never its value, and carry no decoder exception (whose
    text could quote the value).
    """
    key = env_key(env, "keep pseudonyms secret")
    if key is None:
        raise DhsurveyError(
            f"environment variable {env} is not set; the pseudonym key comes from the secret "
            "store, never from a file in the repository",
            code="secret-missing",
            variable=env,
        )
    return key


def release_numbers(n: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """``n`` distinct random 64-bit numbers in random order: the release IDs before they are
    written as text (:func:`id_text`). Kept as numbers while a release is planned, a
    million records' IDs take 8 bytes each instead of a Python string each."""
    rng = np.random.default_rng() if rng is None else rng
    draws = np.zeros(0, dtype=np.uint64)
    while len(draws) < n:  # redraw on the (negligible) chance of a collision
        more = rng.integers(0, np.iinfo(np.uint64).max, size=n - len(draws), dtype=np.uint64,
                            endpoint=True)
        draws = np.unique(np.concatenate([draws, more]))
    return rng.permutation(draws)[:n]  # np.unique sorted them: shuffle the order back out


_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def id_text(numbers: np.ndarray | pd.api.extensions.ExtensionArray
            ) -> pd.api.extensions.ExtensionArray:
    """Release ID numbers as their text: 16 lower-case hex digits (missing stays missing).

    Fixed width, so the text sorts as the numbers do. Returned Arrow-backed
    (``string[pyarrow]``): the text of a million IDs is one buffer, not a million objects.
    """
    import pyarrow as pa

    values = pd.Series(numbers, dtype="UInt64", copy=False).array
    missing = np.asarray(values.isna())
    raw = values.to_numpy(dtype=np.uint64, na_value=0).astype(">u8").view(np.uint8)
    raw = raw.reshape(-1, 8)
    chars = np.empty((len(values), 2 * raw.shape[1]), dtype=np.uint8)
    chars[:, 0::2] = _HEX_DIGITS[raw >> 4]
    chars[:, 1::2] = _HEX_DIGITS[raw & 15]
    offsets = np.arange(0, chars.size + 1, RELEASE_ID_HEX_LENGTH, dtype=np.int64)
    valid = pa.array(~missing).buffers()[1] if missing.any() else None
    text = pa.LargeStringArray.from_buffers(len(values), pa.py_buffer(offsets),
                                            pa.py_buffer(chars), valid,
                                            int(missing.sum()))
    return pd.array(text.cast(pa.string()), dtype="string[pyarrow]")


def numbered(codes: np.ndarray, n: int, rng: np.random.Generator | None = None
             ) -> tuple[pd.api.extensions.ExtensionArray, np.ndarray]:
    """Release ID numbers for ``n`` distinct values, ``codes`` giving each row's value (-1
    when missing): per row (``UInt64``, missing stays missing) and per value."""
    numbers = release_numbers(n, rng)
    per_row = numbers[np.maximum(codes, 0)] if n else np.zeros(len(codes), dtype=np.uint64)
    return pd.arrays.IntegerArray(per_row, np.asarray(codes) < 0), numbers


def release_ids(
    values: pd.Series, rng: np.random.Generator | None = None
) -> tuple[pd.Series, pd.DataFrame]:
    """Fresh random IDs for one public release, and the mapping table that stays restricted.

    Equal values (e.g. a household ID repeated on each member's row) get the same release ID
    within this release; two releases get unrelated IDs. IDs are 16 hex characters from
    ``rng`` (default: a generator seeded from the operating system's entropy); missing values
    stay missing. The mapping has columns ``original`` and ``release_id``.
    """
    codes, originals = pd.factorize(values, use_na_sentinel=True)
    per_row, numbers = numbered(codes, len(originals), rng)
    text = np.asarray(id_text(per_row), dtype=object)
    text[codes < 0] = None  # missing stays missing: None in an object column
    out = pd.Series(text, index=values.index, name=values.name, dtype=object)
    mapping = pd.DataFrame({"original": np.asarray(originals, dtype=object),
                            "release_id": np.asarray(id_text(numbers), dtype=object)})
    return out, mapping
