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

import base64
import binascii
import functools
import hmac
import os
import re
import unicodedata

import numpy as np
import pandas as pd

from dhsurvey.errors import DhsurveyError

#: Hex characters kept from the HMAC: 32 hex = 128 bits, collision-free for any survey size
#: (birthday bound ~2**64 IDs) and short enough to read out on the phone.
PSEUDONYM_HEX_LENGTH = 32

#: Minimum key length in bytes (256 bits, the HMAC-SHA256 block-safe recommendation).
MIN_KEY_BYTES = 32

#: Fewest distinct byte values a key may have (a random 32-byte key has about 30).
MIN_DISTINCT_BYTES = 16

#: How to make a good key, for the messages.
_MAKE_KEY = "python -c 'import secrets; print(secrets.token_hex(32))'"

#: Hex characters in a release ID (64 random bits).
RELEASE_ID_HEX_LENGTH = 16

_HEX = re.compile(r"[0-9a-fA-F]+")


def normalise_id(value: str) -> str:
    """The form of an ID that is hashed: NFKC, trimmed, inner whitespace removed, upper case.

    So ``hh-0123-04``, ``HH-0123-04 `` and the full-width ``ＨＨ-0123-04`` typed on a
    phone keyboard get one pseudonym.
    """
    text = unicodedata.normalize("NFKC", str(value))
    return re.sub(r"\s+", "", text).upper()


@functools.lru_cache(maxsize=8)
def key_weakness(key: bytes) -> str | None:
    """Why ``key`` is too weak for a pseudonym key, in words that do not reveal it; None
    when it is not (its length is checked apart)."""
    distinct = len(set(key))
    if distinct == 1:
        return "it is one byte value repeated"
    # A pattern shorter than a key, repeated (a longer one holds a whole key's worth).
    period = next((p for p in range(1, min(len(key) // 2, MIN_KEY_BYTES - 1) + 1)
                   if key[p:] == key[:-p]), None)
    if period is not None:
        return f"it repeats a pattern of {period} bytes"
    if distinct < MIN_DISTINCT_BYTES:
        return (f"it has only {distinct} distinct byte values (a random key of "
                f"{len(key)} bytes has about {_expected_distinct(len(key)):.0f}; at least "
                f"{MIN_DISTINCT_BYTES} are required)")
    return None


def _expected_distinct(n: int) -> float:
    return 256 * (1 - (255 / 256) ** n)


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
            f"random bytes, e.g. from {_MAKE_KEY}", code="secret-weak",
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


def _decode_key(raw: str) -> bytes | None:
    """Hex, else standard or URL-safe base64 (strictly validated), else None."""
    if len(raw) % 2 == 0 and _HEX.fullmatch(raw):
        return bytes.fromhex(raw)
    try:
        return base64.b64decode(raw.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        return None


def load_key(env: str = "DHSURVEY_PSEUDONYM_KEY") -> bytes:
    """Read the pseudonym key from environment variable ``env``, as hex or base64.

    Hex is tried first (an even-length string of hex digits), then standard and URL-safe
    base64. The key must decode to at least 32 bytes and not be weak (:func:`check_key`).
    Error messages name the variable, never its value, and carry no decoder exception (whose
    text could quote the value).
    """
    raw = os.environ.get(env, "").strip()
    if not raw:
        raise DhsurveyError(
            f"environment variable {env} is not set; the pseudonym key comes from the secret "
            "store, never from a file in the repository",
            code="secret-missing",
            variable=env,
        )
    key = _decode_key(raw)
    if key is None:
        raise DhsurveyError(
            f"environment variable {env} is neither hex nor base64", code="secret-invalid",
            variable=env,
        )
    if len(key) < MIN_KEY_BYTES:
        raise DhsurveyError(
            f"environment variable {env} holds {len(key)} bytes; at least {MIN_KEY_BYTES} "
            "are required",
            code="secret-invalid",
            variable=env,
        )
    try:
        check_key(key, f"the key in environment variable {env}")
    except DhsurveyError as exc:
        raise DhsurveyError(exc.message, code=exc.code, variable=env) from None
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
