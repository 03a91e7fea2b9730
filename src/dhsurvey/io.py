"""Files the tool writes: atomically, owner-only, and safe to open in a spreadsheet.

- Atomic: a temporary file beside the target renamed into place, so a killed run never leaves a
  half-written file behind.
- Owner-only: ``mkstemp`` makes files 0600 and missing folders are created 0700
  (:func:`private_dirs`); files written by other libraries through a handle go through
  :func:`open_private`.
- Spreadsheet-safe: :func:`neutralise_formulas` is the one rule for text cells of every CSV and
  XLSX file written for people.
- Encrypted at rest: every Parquet file of the restricted zones :data:`ENCRYPTED` (``raw/``
  and ``clean/``) is written with Parquet modular
  encryption when :data:`AT_REST_KEY_ENV` is set, and read back transparently. Every Parquet
  file of those zones goes through :func:`atomic_write_parquet` or :func:`parquet_writer` and
  is read through :func:`read_parquet` or :func:`parquet_file` (see "Encryption at rest").

Encryption at rest
------------------
Why: the raw and clean zones hold decrypted submissions (names, GPS, answers about
violence). Owner-only permissions protect them from other users of the machine, not from a
copied disk, a backup or a synced folder. With ``DHSURVEY_AT_REST_KEY`` set (at least 32 random
bytes, hex or base64; weak keys are refused by the pseudonym key's rules, :func:`env_key`)
such a copy is unreadable without the key.

How: Parquet modular encryption (``pyarrow.parquet.encryption``): footer and every column
encrypted with AES-GCM (``AES_GCM_V1``) under per-file data keys; pyarrow wraps those with key
encryption keys that the in-process KMS (:func:`_kms_class`) wraps with AES-GCM under a
key derived from the variable's key (HKDF-SHA256). The crypto factory is cached per key and
caches its key encryption keys (:data:`KEY_CACHE_LIFETIME`), so a file costs an AES-GCM pass
over its pages and about 0.1 ms more (measured on a 100,000-row, 6 MB table: writing and
reading take 0.9 to 1.1 times as long as plain, within the noise of the measurement).

Which files: a Parquet file is encrypted when a folder on its path is named ``raw`` or
``clean`` (:data:`ENCRYPTED`, :func:`in_encrypted_zone`): ``DATA/raw/KEN/child.parquet``,
``DATA/clean/KEN/child/accepted/batch-00001.parquet`` and
``DATA/clean/KEN/restricted/licensed/records.parquet`` are; ``DATA/release/KEN/child.parquet``
and ``DATA/licensed/…`` are not. The store refuses a data root below a folder of those
names (its release would be encrypted too). The rule looks at the path only, so it holds in
every process (a Dagster or Celery worker too) and for a ``--out`` folder named ``clean``.

Without the variable every file is written plain, as before; files are read either way (an
encrypted file is told by its footer magic ``PARE``): an encrypted file read without the
key, or with another key, is a :class:`~dhsurvey.errors.DhsurveyError` naming the file and
the variable. An encrypted file is not byte-identical across reruns (fresh data keys and
nonces); what it decrypts to is. Only Parquet files are encrypted: the JSON, HTML and pickle
files of ``clean/`` are not.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    import pyarrow.parquet.encryption as pe

#: What a text cell may not start with in a CSV or XLSX file: a spreadsheet would run it as
#: a formula (``=``, ``+``, ``-``, ``@``) or take a hidden one after tab or carriage return.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: A text cell that is a plain decimal number is a number, not a formula: kept as it is.
_NUMBER = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
_IS_NUMBER = re.compile(_NUMBER)

Cells = TypeVar("Cells")


def neutralise_formulas(values: Cells) -> Cells:
    """Text cells that a spreadsheet would run as a formula, made inert (OWASP's CSV injection
    rule): a text starting with ``= + - @``, tab or carriage return gets a single quote ``'``
    in front, unless it is a plain number (``-3``, ``+2.5e3``), which a spreadsheet reads as
    the number anyway. Numbers (int, float, numeric columns) are never changed.

    ``values``: one cell (a ``str``; anything else is returned as it is), a pandas Series
    (text values of an object or string column; other dtypes as they are) or a DataFrame
    (every column, and the column names).
    """
    if isinstance(values, str):
        if values.startswith(FORMULA_START) and not _IS_NUMBER.fullmatch(values):
            return "'" + values  # type: ignore[return-value]
        return values
    import pandas as pd

    if isinstance(values, pd.DataFrame):
        out = values.copy(deep=False)
        for position in range(out.shape[1]):
            column = out.iloc[:, position]
            neutral = neutralise_formulas(column)
            if neutral is not column:
                out.isetitem(position, neutral.array)
        out.columns = pd.Index([neutralise_formulas(c) for c in out.columns])
        return out
    if isinstance(values, pd.Series):
        if not (values.dtype == object or pd.api.types.is_string_dtype(values.dtype)):
            return values
        text = values.astype("string")  # non-text cells of an object column are left below
        is_text = values.map(lambda v: isinstance(v, str)) if values.dtype == object else \
            values.notna()
        risky = (text.str.startswith(FORMULA_START).fillna(False)
                 & ~text.str.fullmatch(_NUMBER).fillna(False) & is_text).astype(bool)
        if not risky.any():
            return values
        out_series = values.copy()
        out_series[risky] = "'" + text[risky]
        return out_series  # type: ignore[return-value]
    return values


def load_yaml(text: str) -> Any:
    """YAML text as Python objects, safely (plain data only), with the libyaml parser when
    PyYAML was built with it: the same objects as ``yaml.safe_load`` at a tenth of the CPU
    (the thirteen country files took half a second of every command). Errors are
    ``yaml.YAMLError`` either way, with the line in ``problem_mark``."""
    import yaml

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def private_dirs(path: str | Path) -> Path:
    """``path`` and its missing parents, each created owner-only (0700); existing folders
    are left as they are."""
    path = Path(path)
    missing, folder = [], path
    while not folder.is_dir() and folder.parent != folder:
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            continue  # made meanwhile by another process
        os.chmod(folder, 0o700)  # whatever the umask
    return path


def open_private(path: str | Path) -> BinaryIO:
    """``path`` opened for writing, readable by its owner only (created 0600, or truncated
    and set to 0600), for writers that take a file handle (pyarrow's ParquetWriter)."""
    path = Path(path)
    private_dirs(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "wb")


@contextmanager
def atomic_open(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file handle on a temporary file beside ``path``, renamed into place when the
    block ends without error (for files written piece by piece). The file is 0600 and
    missing folders are made 0700."""
    path = Path(path)
    private_dirs(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place."""
    with atomic_open(path) as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Stable JSON (sorted keys, trailing newline) so reruns give identical bytes."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True,
                                              ensure_ascii=False, default=str) + "\n")


def atomic_write_parquet(path: str | Path, table: Any, **options: Any) -> Path:
    """A DataFrame (no index) or an Arrow table as Parquet, written atomically, encrypted
    when ``path`` is in an encrypted zone and the key is set (:func:`at_rest_encrypted`).
    ``options`` go to the Parquet writer (``compression="zstd"``). Plain: same table → same
    bytes; encrypted: same table → same decrypted table."""
    import io

    buffer = io.BytesIO()
    encryption = encryption_properties(path)
    if encryption is not None:
        options["encryption_properties"] = encryption
    if hasattr(table, "to_parquet"):
        table.to_parquet(buffer, index=False, **options)
    else:
        import pyarrow.parquet as pq

        pq.write_table(table, buffer, **options)
    return atomic_write_bytes(path, buffer.getvalue())


# --------------------------------------------------------------------- encryption at rest

#: The variable holding the key of the Parquet files at rest (hex or base64, >= 32 bytes).
AT_REST_KEY_ENV = "DHSURVEY_AT_REST_KEY"
#: Zones whose Parquet files are encrypted at rest when the key is set: parsed submissions and
#: everything validation, weighting and the release derive from them, the restricted mappings
#: of release IDs included. Not ``release/`` and ``licensed/`` (the product), nor
#: ``landing/`` (exports as they arrive) and ``build/``. (The store's zones; spelled here
#: because :mod:`dhsurvey.store` imports this module, and re-exported there.)
ENCRYPTED = ("raw", "clean")
#: Fewest bytes a secret key may have (256 bits).
MIN_KEY_BYTES = 32
#: Fewest distinct byte values a secret key may have (a random 32-byte key has about 30).
MIN_DISTINCT_BYTES = 16
#: How to make a good key, for the messages.
MAKE_KEY = "python -c 'import secrets; print(secrets.token_hex(32))'"
_HEX = re.compile(r"[0-9a-fA-F]+")
#: How long pyarrow keeps a key encryption key (wrapping and unwrapping) before asking the
#: in-process KMS again.
KEY_CACHE_LIFETIME = dt.timedelta(minutes=10)
#: The master key's name in the files' key material (the KMS has only this one).
MASTER_KEY_ID = "dhsurvey-at-rest"
#: HKDF ``info``: the key that wraps key encryption keys, apart from any other use of the
#: variable's bytes.
_KDF_INFO = b"dhsurvey parquet encryption at rest v1"
#: Last four bytes of a Parquet file whose footer is encrypted (plain: ``PAR1``).
_ENCRYPTED_MAGIC = b"PARE"
_NONCE_BYTES = 12


def at_rest_key() -> bytes | None:
    """The key from :data:`AT_REST_KEY_ENV`, checked (:func:`env_key`); None when the
    variable is unset or empty."""
    return env_key(AT_REST_KEY_ENV, "encrypt files at rest")


def env_key(variable: str, purpose: str) -> bytes | None:
    """A secret key from environment variable ``variable``, hex or base64 (:func:`decode_key`),
    at least :data:`MIN_KEY_BYTES` bytes and not weak (:func:`key_weakness`); None when the
    variable is unset or empty. One set of rules for every secret key: the pseudonym key is
    read through here too (:func:`~dhsurvey.anonymise.pseudonym.load_key`). Errors
    (``secret-invalid``, ``secret-weak``) name the variable and what the key is for
    (``purpose``), never the key."""
    raw = os.environ.get(variable, "").strip()
    return _checked_key(raw, variable, purpose) if raw else None


@functools.lru_cache(maxsize=8)
def _checked_key(raw: str, variable: str, purpose: str) -> bytes:
    from dhsurvey.errors import DhsurveyError

    key = decode_key(raw)
    if key is None:
        raise DhsurveyError(f"environment variable {variable} is neither hex nor base64",
                            code="secret-invalid", variable=variable)
    if len(key) < MIN_KEY_BYTES:
        raise DhsurveyError(f"environment variable {variable} holds {len(key)} bytes; at least "
                            f"{MIN_KEY_BYTES} are required", code="secret-invalid",
                            variable=variable)
    weakness = key_weakness(key)
    if weakness is not None:
        raise DhsurveyError(
            f"the key in environment variable {variable} is too weak to {purpose}: {weakness}. "
            f"Use {MIN_KEY_BYTES} random bytes, e.g. from {MAKE_KEY}", code="secret-weak",
            variable=variable)
    return key


def decode_key(raw: str) -> bytes | None:
    """Hex (an even number of hex digits), else standard or URL-safe base64 (strictly
    validated), else None. No decoder exception escapes (its text could quote the key)."""
    if len(raw) % 2 == 0 and _HEX.fullmatch(raw):
        return bytes.fromhex(raw)
    try:
        return base64.b64decode(raw.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        return None


@functools.lru_cache(maxsize=8)
def key_weakness(key: bytes) -> str | None:
    """Why ``key`` is too weak, in words that do not reveal it; None when it is not (its
    length is checked apart): one byte value repeated, a pattern shorter than
    :data:`MIN_KEY_BYTES` repeated, or fewer than :data:`MIN_DISTINCT_BYTES` distinct byte
    values (32 random bytes have about 30; fewer than 16 happens by chance with a probability
    below 10^-20)."""
    distinct = len(set(key))
    if distinct == 1:
        return "it is one byte value repeated"
    period = next((p for p in range(1, min(len(key) // 2, MIN_KEY_BYTES - 1) + 1)
                   if key[p:] == key[:-p]), None)
    if period is not None:
        return f"it repeats a pattern of {period} bytes"
    if distinct < MIN_DISTINCT_BYTES:
        expected = 256 * (1 - (255 / 256) ** len(key))
        return (f"it has only {distinct} distinct byte values (a random key of {len(key)} "
                f"bytes has about {expected:.0f}; at least {MIN_DISTINCT_BYTES} are required)")
    return None


def in_encrypted_zone(path: str | Path) -> bool:
    """Whether ``path`` lies in an encrypted zone: a folder on its absolute path is named
    after one (:data:`ENCRYPTED`). The store refuses a data root below such a folder, so this
    holds for exactly the files of ``DATA/raw`` and ``DATA/clean``, whatever folders they
    contain (``clean/<ISO>/restricted/licensed/`` included). Relative paths count from the
    working folder."""
    return any(part in ENCRYPTED for part in Path(path).absolute().parts[:-1])


def at_rest_encrypted(path: str | Path) -> bool:
    """Whether a Parquet file written at ``path`` is encrypted: it is in an encrypted zone
    (:func:`in_encrypted_zone`) and the key is set (a bad key is an error here)."""
    return in_encrypted_zone(path) and _key_for(path) is not None


def _key_for(path: str | Path) -> bytes | None:
    """:func:`at_rest_key`; an error about the key names the file that needed it."""
    from dhsurvey.errors import DhsurveyError

    try:
        return at_rest_key()
    except DhsurveyError as exc:
        exc.context.setdefault("file", path)
        raise


def encryption_properties(path: str | Path) -> pe.FileEncryptionProperties | None:
    """Parquet encryption for a file at ``path`` (None: written plain): footer and every
    column under fresh data keys, AES-GCM."""
    if not at_rest_encrypted(path):
        return None
    import pyarrow.parquet.encryption as pe

    key = _key_for(path)
    assert key is not None
    factory, connection = _crypto(key)
    return factory.file_encryption_properties(connection, pe.EncryptionConfiguration(
        footer_key=MASTER_KEY_ID, uniform_encryption=True, encryption_algorithm="AES_GCM_V1",
        plaintext_footer=False, cache_lifetime=KEY_CACHE_LIFETIME))


def is_encrypted(path: str | Path) -> bool:
    """Whether the Parquet file at ``path`` has an encrypted footer (as this module writes
    them); False for a plain, missing or short file."""
    try:
        with open(path, "rb") as fh:
            fh.seek(-len(_ENCRYPTED_MAGIC), os.SEEK_END)
            return fh.read() == _ENCRYPTED_MAGIC
    except OSError:
        return False


def read_parquet(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """The Parquet file at ``path`` (some ``columns``, or all) as pandas reads it, decrypted
    when it is encrypted (:data:`AT_REST_KEY_ENV`)."""
    import pandas as pd

    decryption = _decryption_properties(path)
    if decryption is None:
        return pd.read_parquet(path, columns=columns)
    with _decrypting(path):
        return pd.read_parquet(path, columns=columns, decryption_properties=decryption)


def parquet_file(path: str | Path) -> pq.ParquetFile:
    """The Parquet file at ``path`` opened for reading in row groups or batches
    (``iter_batches``, ``schema_arrow``, ``metadata``), decrypted when it is encrypted."""
    import pyarrow.parquet as pq

    decryption = _decryption_properties(path)
    if decryption is None:
        return pq.ParquetFile(path)
    with _decrypting(path):
        return pq.ParquetFile(path, decryption_properties=decryption)


def parquet_writer(sink: Any, schema: pa.Schema, path: str | Path, **options: Any
                   ) -> pq.ParquetWriter:
    """A Parquet writer on ``sink`` (an open file, e.g. from :func:`open_private`) for the
    file that will be at ``path``: encrypted when ``path`` is in an encrypted zone and the key
    is set. ``options`` go to ``pyarrow.parquet.ParquetWriter``; close the writer before the
    sink."""
    import pyarrow.parquet as pq

    encryption = encryption_properties(path)
    if encryption is not None:
        options["encryption_properties"] = encryption
    return pq.ParquetWriter(sink, schema, **options)


def _required_key(path: str | Path) -> bytes:
    """The at-rest key for reading an encrypted file; an error naming the variable if unset."""
    from dhsurvey.errors import DhsurveyError

    key = _key_for(path)
    if key is None:
        raise DhsurveyError(
            f"the file is encrypted at rest: set {AT_REST_KEY_ENV} to the key it was "
            "written with", code="at-rest-key-missing", file=path, variable=AT_REST_KEY_ENV)
    return key


def _decryption_properties(path: str | Path) -> pe.FileDecryptionProperties | None:
    """None for a plain file; an encrypted one needs the key."""
    if not is_encrypted(path):
        return None
    key = _required_key(path)
    import pyarrow.parquet.encryption as pe

    factory, connection = _crypto(key)
    return factory.file_decryption_properties(
        connection, pe.DecryptionConfiguration(cache_lifetime=KEY_CACHE_LIFETIME))


@contextmanager
def _decrypting(path: str | Path) -> Iterator[None]:
    """A key that does not open the file (another key, or the file altered) as a clear
    error."""
    from cryptography.exceptions import InvalidTag

    from dhsurvey.errors import DhsurveyError

    try:
        yield
    except InvalidTag:
        raise DhsurveyError(
            f"the file cannot be decrypted with the key in {AT_REST_KEY_ENV}: it was written "
            "with another key, or altered", code="at-rest-key-wrong", file=path,
            variable=AT_REST_KEY_ENV) from None


#: First bytes of a non-Parquet file sealed at rest (:func:`seal`).
_SEALED = b"DHSURVEY-SEALED-1\n"


def _file_key(key: bytes) -> bytes:
    """The key that seals whole files, apart from the one wrapping Parquet keys."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=_KDF_INFO + b"/files").derive(key)


def seal(path: str | Path, data: bytes) -> bytes:
    """The bytes of a non-Parquet file (a pickle, a scratch file) as written at ``path``:
    AES-GCM under the at-rest key when ``path`` is in an encrypted zone and the key is set
    (the file's name as associated data), else unchanged."""
    key = _key_for(path) if in_encrypted_zone(path) else None
    if key is None:
        return data
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(_NONCE_BYTES)
    return _SEALED + nonce + AESGCM(_file_key(key)).encrypt(nonce, data,
                                                            Path(path).name.encode())


def unseal(path: str | Path, data: bytes) -> bytes:
    """The plain bytes of a file :func:`seal` wrote (plain files pass unchanged)."""
    if not data.startswith(_SEALED):
        return data
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key = _required_key(path)
    body = data[len(_SEALED):]
    with _decrypting(path):
        return bytes(AESGCM(_file_key(key)).decrypt(body[:_NONCE_BYTES], body[_NONCE_BYTES:],
                                                    Path(path).name.encode()))


@functools.lru_cache(maxsize=4)
def _crypto(key: bytes) -> tuple[pe.CryptoFactory, pe.KmsConnectionConfig]:
    """One crypto factory per key: it caches the key encryption keys."""
    import pyarrow.parquet.encryption as pe
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    master = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KDF_INFO).derive(key)
    kms = _kms_class()
    return pe.CryptoFactory(lambda _config: kms(master)), pe.KmsConnectionConfig()


@functools.cache
def _kms_class() -> type:
    """The in-process KMS class (made on first use: pyarrow is imported only then)."""
    import pyarrow.parquet.encryption as pe
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    class MasterKeyKms(pe.KmsClient):
        """Wraps a key with AES-GCM under the master key, the key's name as associated data
        (a wrapped key moved to another name does not unwrap)."""

        def __init__(self, master: bytes) -> None:
            super().__init__()
            self._aead = AESGCM(master)

        def wrap_key(self, key_bytes: bytes, master_key_identifier: str) -> str:
            nonce = os.urandom(_NONCE_BYTES)
            sealed = self._aead.encrypt(nonce, key_bytes, master_key_identifier.encode())
            return base64.b64encode(nonce + sealed).decode("ascii")

        def unwrap_key(self, wrapped_key: str, master_key_identifier: str) -> bytes:
            raw = base64.b64decode(wrapped_key)
            return bytes(self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:],
                                            master_key_identifier.encode()))

    return MasterKeyKms
