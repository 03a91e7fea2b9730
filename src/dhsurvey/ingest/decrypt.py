"""ODK encrypted submissions: encrypt (for the simulator) and decrypt (for ingest).

Implements the ODK XForms "encrypted forms" scheme as Collect writes it and Central/Briefcase
read it, so that submissions from an encrypted form can be decrypted locally with the project's
private key, and so that the simulator can produce encrypted test data whose contents are
reproducible (the wrapped key and the signature are RSA-OAEP, whose random seed ``cryptography``
draws itself, so those two manifest elements differ from run to run).

- A random 32-byte AES key per submission, wrapped with RSA-OAEP (SHA-256 digest, MGF1-SHA-256,
  empty label) and stored base64 in the manifest's ``base64EncryptedKey``.
- IVs: ``seed = md5(instanceID + key)``; before the i-th file (media in manifest order, then
  ``submission.xml.enc`` last) ``seed[i % 16] += 1`` (cumulative, mod 256); the seed is the IV.
- Each file: AES-256-CFB (128-bit feedback) over PKCS#7-padded plaintext, named ``<name>.enc``.
- ``base64EncryptedElementSignature``: RSA-OAEP of md5 over the lines formId, version (if any),
  base64 key, instanceID, then ``name::md5hex(plaintext)`` per file, each ending in ``\\n``.

Decryption never silently drops a submission: every failure is a :class:`DecryptionError` with a
specific code, and :func:`decrypt_folder` keeps the raw files of failed submissions.
Key material never appears in messages or logs. A folder of many encrypted submissions is
decrypted in :data:`WORKERS` forked processes (``cryptography`` holds the GIL during the RSA
private operations that dominate, so threads would take turns), ahead of and in the order of
the caller, who sees every outcome exactly as one thread would have produced it
(:func:`in_order`).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import hmac
import itertools
import logging
import multiprocessing as mp
import os
import shutil
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from concurrent.futures import BrokenExecutor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar
from xml.sax.saxutils import escape, quoteattr

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.serialization import (
    load_pem_private_key,
    load_pem_public_key,
)

try:  # cryptography >= 43 moved CFB to "decrepit"; the old location was removed in 50
    from cryptography.hazmat.decrepit.ciphers.modes import CFB
except ImportError:  # pragma: no cover - older cryptography
    from cryptography.hazmat.primitives.ciphers.modes import CFB  # type: ignore[attr-defined, unused-ignore]

from dhsurvey import parallel
from dhsurvey.errors import DhsurveyError
from dhsurvey.ingest.instances import (
    FAILED_DIR,
    SUBMISSION,
    SUBMISSION_DATE_ATTR,
    Instance,
    discover_instances,
    with_submission_date,
)
from dhsurvey.ingest.limits import XML, check_size, read_file
from dhsurvey.io import atomic_write_bytes, private_dirs

__all__ = [
    "DecryptReport",
    "DecryptedSubmission",
    "DecryptionError",
    "EncryptedSubmission",
    "EncryptionError",
    "FolderFiles",
    "PASSPHRASE_ENV",
    "PRIVATE_KEY_ENV",
    "PARALLEL_MIN",
    "WORKERS",
    "Outcome",
    "attempt",
    "decrypt_folder",
    "decrypt_submission",
    "encrypt_submission",
    "in_order",
    "load_key_once",
    "load_private_key",
    "workers_for",
]

log = logging.getLogger(__name__)

PRIVATE_KEY_ENV = "DHSURVEY_PRIVATE_KEY"
#: The passphrase of an encrypted PEM private key (never in a file, never echoed).
PASSPHRASE_ENV = "DHSURVEY_PRIVATE_KEY_PASSPHRASE"
MANIFEST_NAME = SUBMISSION
ENC_NS = "http://www.opendatakit.org/xforms/encrypted"
ORX_NS = "http://openrosa.org/xforms"

_AES_KEY_LEN = 32
_BLOCK = 16
_HASH = hashes.SHA256
_OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=_HASH()), algorithm=_HASH(), label=None)
# Enketo (and Java's SunJCE "OAEPWithSHA-256AndMGF1Padding") use MGF1 with SHA-1; accepted on
# decryption so web-form submissions are not reported as a wrong key.
_OAEP_MGF1_SHA1 = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=_HASH(),
                               label=None)


def _oaep_decrypt(private_key: rsa.RSAPrivateKey, data: bytes) -> bytes:
    """RSA-OAEP decryption, SHA-256 digest, MGF1 with SHA-256 (ODK) or SHA-1 (Enketo)."""
    try:
        return private_key.decrypt(data, _OAEP)
    except ValueError:
        return private_key.decrypt(data, _OAEP_MGF1_SHA1)


class DecryptionError(DhsurveyError):
    """A submission cannot be decrypted; ``code`` says why (``decrypt-wrong-key`` …)."""

    code = "decrypt"


class EncryptionError(DhsurveyError):
    """The inputs to :func:`encrypt_submission` cannot produce a valid ODK submission."""

    code = "encrypt"


@dataclass(frozen=True)
class EncryptedSubmission:
    """What Collect leaves in an instance folder after finalising an encrypted form."""

    manifest: bytes  # the plaintext submission.xml manifest
    files: dict[str, bytes]  # "photo.jpg.enc", "submission.xml.enc" -> ciphertext


@dataclass(frozen=True)
class DecryptedSubmission:
    """A decrypted, signature-verified submission."""

    form_id: str
    version: str | None
    instance_id: str
    xml: bytes
    media: dict[str, bytes]  # plaintext name ("photo.jpg") -> content, manifest order


@dataclass
class DecryptReport:
    """Outcome of :func:`decrypt_folder`: every instance folder lands in exactly one list."""

    decrypted: list[str] = field(default_factory=list)
    plain: list[str] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (folder, code, message)

    @property
    def total(self) -> int:
        return len(self.decrypted) + len(self.plain) + len(self.failed)


# --------------------------------------------------------------------------- primitives


def _md5(data: bytes) -> bytes:
    # md5 is fixed by the ODK protocol (IV seed, signature), not our choice.
    return hashlib.md5(data, usedforsecurity=False).digest()


def _random(rng: Callable[[int], bytes], n: int) -> bytes:
    out = rng(n)
    if not isinstance(out, bytes | bytearray) or len(out) != n:
        raise EncryptionError(f"rng({n}) must return exactly {n} bytes", code="encrypt-rng")
    return bytes(out)


def _ivs(instance_id: str, key: bytes, count: int) -> list[bytes]:
    """The per-file IVs: the seed is bumped before each file, so file 0 already differs."""
    seed = bytearray(_md5(instance_id.encode("utf-8") + key))
    ivs = []
    for i in range(count):
        seed[i % _BLOCK] = (seed[i % _BLOCK] + 1) & 0xFF
        ivs.append(bytes(seed))
    return ivs


def _aes_encrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    padder = sym_padding.PKCS7(_BLOCK * 8).padder()
    padded = padder.update(data) + padder.finalize()
    enc = Cipher(algorithms.AES(key), CFB(iv)).encryptor()
    return enc.update(padded) + enc.finalize()


def _signature_digest(
    form_id: str,
    version: str | None,
    b64_key: str,
    instance_id: str,
    files: list[tuple[str, bytes]],
) -> bytes:
    """md5 of the signed lines; ``files`` are (plaintext name, plaintext) with submission last."""
    lines = [form_id, *([version] if version is not None else []), b64_key, instance_id]
    lines += [f"{name}::{_md5(data).hex()}" for name, data in files]
    return _md5("".join(line + "\n" for line in lines).encode("utf-8"))


def _plain_name(enc_name: str) -> str:
    return enc_name[: -len(".enc")]


def _is_safe_name(name: str) -> bool:
    # Names come from an untrusted manifest and become paths under dst: no traversal.
    return (
        bool(name)
        and name not in (".", "..")
        and not any(ch in name for ch in "/\\\x00")
        and Path(name).name == name
    )


# --------------------------------------------------------------------------- encryption


@functools.lru_cache(maxsize=4)
def _load_public_key(pem: bytes) -> rsa.RSAPublicKey:
    """Parse a PEM public key once: the simulator encrypts a whole folder with the same one."""
    try:
        key = load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise EncryptionError(
            "public key is not a readable PEM public key", code="encrypt-key"
        ) from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise EncryptionError("ODK encryption needs an RSA public key", code="encrypt-key")
    return key


def encrypt_submission(
    xml: bytes,
    *,
    form_id: str,
    version: str | None,
    instance_id: str,
    public_key_pem: bytes,
    media: dict[str, bytes] | None = None,
    rng: Callable[[int], bytes] | None = None,
) -> EncryptedSubmission:
    """Encrypt one submission exactly as ODK Collect does, for the simulator and for tests.

    The AES key comes from ``rng`` (``rng(n)`` -> n bytes; default :func:`os.urandom`), and with
    it the IVs, so with a deterministic ``rng`` the ``.enc`` files are byte-identical across
    runs. The RSA-OAEP wrapping of the key and of the signature is done by ``cryptography``,
    which draws the OAEP seed itself: ``base64EncryptedKey`` and
    ``base64EncryptedElementSignature`` differ from run to run (they decrypt to the same key and
    digest).
    """
    rng = rng or os.urandom
    media = dict(media or {})
    if not form_id or not instance_id:
        raise EncryptionError("form_id and instance_id must be non-empty", form=form_id or None)
    for name in media:
        if not _is_safe_name(name) or name == MANIFEST_NAME:
            raise EncryptionError(
                f"media file name {name!r} is not a plain file name", form=form_id, field=name
            )
    public_key = _load_public_key(public_key_pem)

    aes_key = _random(rng, _AES_KEY_LEN)
    b64_key = base64.b64encode(public_key.encrypt(aes_key, _OAEP)).decode("ascii")

    plain = [*media.items(), (MANIFEST_NAME, xml)]  # submission.xml is always last
    ivs = _ivs(instance_id, aes_key, len(plain))
    files = {
        f"{name}.enc": _aes_encrypt(aes_key, iv, data)
        for (name, data), iv in zip(plain, ivs, strict=True)
    }

    digest = _signature_digest(form_id, version, b64_key, instance_id, plain)
    b64_sig = base64.b64encode(public_key.encrypt(digest, _OAEP)).decode("ascii")

    # Same element order and layout as Collect (one <media> per file).
    version_attr = f" version={quoteattr(version)}" if version is not None else ""
    parts = [
        f'<data xmlns="{ENC_NS}" id={quoteattr(form_id)}{version_attr} encrypted="yes">',
        f"<base64EncryptedKey>{b64_key}</base64EncryptedKey>",
        f'<meta xmlns="{ORX_NS}"><instanceID>{escape(instance_id)}</instanceID></meta>\n',
        *(f"<media><file>{escape(name)}.enc</file></media>\n" for name in media),
        f"<encryptedXmlFile>{MANIFEST_NAME}.enc</encryptedXmlFile>",
        f"<base64EncryptedElementSignature>{b64_sig}</base64EncryptedElementSignature>",
        "</data>",
    ]
    return EncryptedSubmission(manifest="".join(parts).encode("utf-8"), files=files)


# --------------------------------------------------------------------------- decryption


@dataclass(frozen=True)
class _Manifest:
    form_id: str
    version: str | None
    instance_id: str
    b64_key: str
    media: list[str]  # encrypted names, manifest order
    xml_file: str
    b64_signature: str


def _local(tag: str) -> str:
    # Match on local names: Collect, Central and older servers disagree on namespaces.
    return tag.rsplit("}", 1)[-1]


def _child(parent: ET.Element, name: str) -> ET.Element | None:
    return next((el for el in parent if _local(el.tag) == name), None)


def _text(el: ET.Element | None) -> str:
    return "".join(el.itertext()).strip() if el is not None else ""


def _parse_manifest(manifest: bytes, source: str | None) -> _Manifest:
    """Read and validate the manifest; anything off is ``decrypt-manifest``."""
    instance_id = "(unknown)"

    def bad(msg: str) -> DecryptionError:
        return DecryptionError(
            f"instance {instance_id}, file {MANIFEST_NAME}: {msg}",
            code="decrypt-manifest",
            file=_where(source, MANIFEST_NAME),
            instance=None if instance_id == "(unknown)" else instance_id,
        )

    try:
        root = ET.fromstring(manifest)
    except ET.ParseError as exc:
        raise bad(f"manifest is not well-formed XML ({exc})") from None
    meta = _child(root, "meta")
    instance_id = _text(_child(meta, "instanceID") if meta is not None else None) or instance_id
    if _local(root.tag) != "data" or (root.get("encrypted") or "").lower() != "yes":
        raise bad('not an encrypted-submission manifest (no <data encrypted="yes">)')
    form_id = root.get("id") or ""
    if not form_id:
        raise bad("root element has no form id attribute")
    if instance_id == "(unknown)":
        raise bad("meta/instanceID is missing")

    fields = {}
    for name in ("base64EncryptedKey", "encryptedXmlFile", "base64EncryptedElementSignature"):
        fields[name] = _text(_child(root, name))
        if not fields[name]:
            raise bad(f"<{name}> is missing or empty")
    media = [
        _text(f) for m in root if _local(m.tag) == "media" for f in m if _local(f.tag) == "file"
    ]
    names = [*media, fields["encryptedXmlFile"]]
    for name in names:
        if not _is_safe_name(name) or not name.endswith(".enc") or name == ".enc":
            raise bad(f"file name {name!r} is not a plain '<name>.enc' file name")
    if len(set(names)) != len(names) or MANIFEST_NAME in map(_plain_name, media):
        raise bad("file names are duplicated or clash with submission.xml")
    return _Manifest(
        form_id=form_id,
        version=root.get("version"),
        instance_id=instance_id,
        b64_key="".join(fields["base64EncryptedKey"].split()),
        media=media,
        xml_file=fields["encryptedXmlFile"],
        b64_signature="".join(fields["base64EncryptedElementSignature"].split()),
    )


def _where(source: str | Path | None, name: str) -> str:
    return str(Path(source) / name) if source is not None else name


def _load_private_key_pem(pem: bytes) -> rsa.RSAPrivateKey:
    """The RSA private key of a PEM, decrypted with ``$DHSURVEY_PRIVATE_KEY_PASSPHRASE`` when
    the PEM is encrypted."""
    passphrase = os.environ.get(PASSPHRASE_ENV) or None
    return _parse_private_key(pem, passphrase.encode("utf-8") if passphrase else None)


def _is_encrypted_pem(pem: bytes) -> bool:
    """PKCS#8 ``ENCRYPTED PRIVATE KEY`` or a traditional OpenSSL ``Proc-Type: 4,ENCRYPTED``."""
    return b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in pem or b"Proc-Type: 4,ENCRYPTED" in pem


@functools.lru_cache(maxsize=4)
def _parse_private_key(pem: bytes, passphrase: bytes | None) -> rsa.RSAPrivateKey:
    """Parse (and check) a key once: checking an RSA key costs ~0.1 s, a folder has thousands.
    Messages never contain key bytes or the passphrase (nor the library's text)."""
    encrypted = _is_encrypted_pem(pem)
    if encrypted and passphrase is None:
        raise DhsurveyError(
            f"the private key is encrypted with a passphrase: set {PASSPHRASE_ENV} to it",
            code="secret-missing", variable=PASSPHRASE_ENV,
        )
    try:
        key = load_pem_private_key(pem, password=passphrase if encrypted else None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        if encrypted:
            raise DhsurveyError(
                f"the passphrase in {PASSPHRASE_ENV} does not decrypt the private key (wrong "
                "passphrase, or not this key's)", code="secret-invalid", variable=PASSPHRASE_ENV,
            ) from None
        raise DhsurveyError(
            "private key is not a readable PEM private key", code="secret-invalid"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise DhsurveyError("ODK decryption needs an RSA private key", code="secret-invalid")
    return key


def _b64(text: str, what: str, fail: Callable[[str, str], DecryptionError]) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise fail("decrypt-manifest", f"<{what}> is not valid base64") from None


def _decrypt(
    manifest: bytes,
    files: Mapping[str, bytes],
    private_key: rsa.RSAPrivateKey,
    source: str | None,
) -> DecryptedSubmission:
    m = _parse_manifest(manifest, source)

    def fail(code: str, msg: str, name: str = MANIFEST_NAME) -> DecryptionError:
        return DecryptionError(
            f"instance {m.instance_id}, file {name}: {msg}",
            code=code,
            file=_where(source, name),
            form=m.form_id,
            instance=m.instance_id,
        )

    order = [*m.media, m.xml_file]  # IV order: media first, submission last
    for name in order:
        if name not in files:
            raise fail("decrypt-missing-file", "listed in the manifest but not present", name)
    # The ciphertext is as long as the XML (plus padding): over the cap, it is not read.
    xml_size = files.size(m.xml_file) if isinstance(files, FolderFiles) else \
        len(files[m.xml_file])
    if xml_size > XML.bytes():  # (where, only to say so)
        check_size(XML, xml_size, file=_where(source, m.xml_file))

    wrapped = _b64(m.b64_key, "base64EncryptedKey", fail)
    try:
        aes_key = _oaep_decrypt(private_key, wrapped)
    except ValueError:
        raise fail(
            "decrypt-wrong-key",
            "the private key cannot unwrap base64EncryptedKey: wrong private key for this "
            "form (or the key element was altered)",
        ) from None
    if len(aes_key) != _AES_KEY_LEN:
        raise fail("decrypt-manifest", f"unwrapped key is {len(aes_key)} bytes, expected 32")

    plain: list[tuple[str, bytes]] = []
    for name, iv in zip(order, _ivs(m.instance_id, aes_key, len(order)), strict=True):
        data = files[name]
        if not data or len(data) % _BLOCK:
            raise fail(
                "decrypt-truncated",
                f"ciphertext is {len(data)} bytes, not a non-zero multiple of 16 (truncated?)",
                name,
            )
        dec = Cipher(algorithms.AES(aes_key), CFB(iv)).decryptor()
        unpadder = sym_padding.PKCS7(_BLOCK * 8).unpadder()
        try:
            text = unpadder.update(dec.update(data) + dec.finalize()) + unpadder.finalize()
        except ValueError:
            # A block-aligned cut (or damage to the last block) leaves invalid padding.
            raise fail("decrypt-truncated", "invalid PKCS#7 padding (truncated?)", name) from None
        plain.append((_plain_name(name), text))

    signature = _b64(m.b64_signature, "base64EncryptedElementSignature", fail)
    expected = _signature_digest(m.form_id, m.version, m.b64_key, m.instance_id, plain)
    try:
        signed = _oaep_decrypt(private_key, signature)
    except ValueError:
        signed = b""
    if not hmac.compare_digest(signed, expected):
        raise fail(
            "decrypt-signature",
            "signature does not match the manifest and decrypted files (tampered or corrupted)",
        )

    return DecryptedSubmission(
        form_id=m.form_id,
        version=m.version,
        instance_id=m.instance_id,
        xml=plain[-1][1],
        media=dict(plain[:-1]),
    )


def decrypt_submission(
    manifest: bytes,
    files: Mapping[str, bytes],
    private_key_pem: bytes | rsa.RSAPrivateKey,
    *,
    source: str | None = None,
) -> DecryptedSubmission:
    """Decrypt and verify one submission; raise :class:`DecryptionError` rather than guess.

    ``files`` maps encrypted names (``submission.xml.enc``) to ciphertext; ``source`` (e.g. the
    instance folder) is only used to say where a problem is. The key is a PEM (parsed here,
    with ``$DHSURVEY_PRIVATE_KEY_PASSPHRASE`` if it is encrypted) or an already parsed RSA
    private key, which is what a caller decrypting many submissions passes.
    """
    key = (private_key_pem if isinstance(private_key_pem, rsa.RSAPrivateKey)
           else _load_private_key_pem(private_key_pem))
    return _decrypt(manifest, files, key, source)


# --------------------------------------------------------------------------- in parallel

#: Processes (or threads, where a process may not fork) that decrypt a folder's submissions.
WORKERS = max(1, min(2, os.cpu_count() or 1))
#: A folder with fewer encrypted submissions than this is decrypted in the calling thread.
PARALLEL_MIN = 64
#: Submissions decrypted ahead of the caller, per worker (bounds the plaintext held in memory).
_AHEAD_PER_WORKER = 8

_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass(frozen=True)
class Outcome(Generic[_R]):
    """What a call returned, or the exception it raised (given back by :meth:`get`)."""

    value: _R | None = None
    error: Exception | None = None

    def get(self) -> _R:
        """The value, or raise the call's exception here, in the caller's thread."""
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


def attempt(fn: Callable[[], _R]) -> Outcome[_R]:
    """``fn()``'s value, or the exception it raised, as an :class:`Outcome`."""
    try:
        return Outcome(value=fn())
    except Exception as exc:  # handed back to the caller, raised there by Outcome.get
        return Outcome(error=exc)


def load_key_once(pem: bytes) -> Callable[[], rsa.RSAPrivateKey]:
    """A function giving the RSA private key of ``pem``, parsed at its first call (a folder with
    nothing to decrypt never parses it) and then kept; a failure is raised at every call."""
    return functools.cache(functools.partial(_load_private_key_pem, pem))


def workers_for(encrypted: int, workers: int | None = None) -> int:
    """Threads for a folder of ``encrypted`` submissions: one (no pool) below
    :data:`PARALLEL_MIN`, or in a process that is already one of several working side by
    side (:func:`dhsurvey.parallel.in_forked_worker`: countries share the cores), else
    ``workers`` (default :data:`WORKERS`)."""
    from dhsurvey.parallel import in_forked_worker

    if workers is not None:
        return max(1, workers)
    return WORKERS if encrypted >= PARALLEL_MIN and not in_forked_worker() else 1


def in_order(fn: Callable[[_T], _R], items: Iterable[_T],
             workers: int = 1) -> Generator[Outcome[_R], None, None]:
    """``fn(item)`` for each item, as :class:`Outcome`s in the items' order.

    With one worker each call is made when the caller asks for its outcome, in the caller's
    thread. With more, calls run a bounded number of items ahead of the caller in forked
    processes (``cryptography`` holds the GIL during RSA private operations, so threads would
    take turns), or on threads where a process may not fork (no ``fork``; a daemonic process
    such as a Celery worker). ``fn`` must then have no side effects the caller relies on, and
    its outcomes must pickle (a batch whose outcomes do not, or whose process died, is made
    again here). Either way the caller sees the same outcomes in the same order, and an
    exception is raised (by :meth:`Outcome.get`) where the caller takes that item's outcome.
    Calls not started when the caller stops are cancelled.
    """
    if workers <= 1:
        for item in items:
            yield attempt(functools.partial(fn, item))
        return
    if parallel.can_fork():
        yield from _in_order_forked(fn, list(items), workers)
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dhsurvey-decrypt")
    pending: deque[Future[Outcome[_R]]] = deque()
    try:
        for item in items:
            pending.append(pool.submit(attempt, functools.partial(fn, item)))
            if len(pending) >= workers * _AHEAD_PER_WORKER:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


#: Items a forked worker takes at a time (one round trip per batch, not per item).
_BATCH = 8
#: The calls of the forked pools running in this process, by pool: their workers inherit them
#: when forked, so that only a batch's bounds go to a worker, never ``fn`` or the items.
_FORKED: dict[int, tuple[Callable[[Any], Any], list[Any]]] = {}
_POOLS = itertools.count()
#: Batches a forked pool works ahead of the caller, per worker (bounds the plaintext held).
_AHEAD_BATCHES_PER_WORKER = 3


def _forked_batch(pool: int, start: int, stop: int) -> list[Outcome[Any]]:
    """In a forked worker: the outcomes of the pool's items ``start:stop``."""
    fn, items = _FORKED[pool]
    return [attempt(functools.partial(fn, item)) for item in items[start:stop]]


def _in_order_forked(fn: Callable[[_T], _R], items: list[_T],
                     workers: int) -> Generator[Outcome[_R], None, None]:
    """:func:`in_order` on ``workers`` forked processes, batch by batch."""
    token = next(_POOLS)
    _FORKED[token] = (fn, items)  # before the first submit, which forks the workers
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"))
    pending: deque[tuple[int, int, Future[list[Outcome[_R]]] | None]] = deque()
    ahead = workers * _AHEAD_BATCHES_PER_WORKER
    try:
        for start in range(0, len(items), _BATCH):
            stop = min(start + _BATCH, len(items))
            try:
                future: Future[list[Outcome[_R]]] | None = pool.submit(
                    _forked_batch, token, start, stop)
            except BrokenExecutor:  # a worker died: the rest is made here
                future = None
            pending.append((start, stop, future))
            if len(pending) >= ahead:
                yield from _batch_outcomes(fn, items, *pending.popleft())
        while pending:
            yield from _batch_outcomes(fn, items, *pending.popleft())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        del _FORKED[token]


def _batch_outcomes(fn: Callable[[_T], _R], items: list[_T], start: int, stop: int,
                    future: Future[list[Outcome[_R]]] | None) -> list[Outcome[_R]]:
    try:
        if future is not None:
            return future.result()
    except Exception:  # its outcomes did not pickle, or the worker died: made here instead
        pass
    return [attempt(functools.partial(fn, item)) for item in items[start:stop]]


# --------------------------------------------------------------------------- folders


class FolderFiles(Mapping[str, bytes]):
    """The files of an instance folder, read only when the manifest asks for them."""

    def __init__(self, folder: Path) -> None:
        self._folder = Path(folder)

    def size(self, name: str) -> int:
        """A file's size on disk, without reading it."""
        if name not in self:
            raise KeyError(name)
        return (self._folder / name).stat().st_size

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _is_safe_name(name) and (self._folder / name).is_file()

    def __getitem__(self, name: str) -> bytes:
        if name not in self:
            raise KeyError(name)
        return (self._folder / name).read_bytes()

    def __iter__(self) -> Iterator[str]:
        return (p.name for p in sorted(self._folder.iterdir()) if p.is_file())

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _is_encrypted(manifest: bytes) -> bool:
    """Classify a submission.xml; a parse error propagates (the folder then fails)."""
    root = ET.fromstring(manifest)
    return (root.get("encrypted") or "").lower() == "yes"


def _replace_dir(target: Path, fill: Callable[[Path], object]) -> None:
    """Build ``target`` beside itself, then swap it in, so reruns never mix old and new files."""
    tmp = target.with_name(f".{target.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    fill(tmp)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)


def _copy_instance(inst: Instance, tmp: Path) -> None:
    """An instance as found: its document as ``submission.xml`` and its media files."""
    private_dirs(tmp)
    if inst.xml.is_file():
        atomic_write_bytes(tmp / MANIFEST_NAME, inst.xml.read_bytes())
    if inst.media is not None:
        for f in sorted(inst.media.iterdir()):
            if f.is_file() and f != inst.xml and not f.name.startswith("."):
                atomic_write_bytes(tmp / f.name, f.read_bytes())


def _open_instance(inst: Instance, private_key: rsa.RSAPrivateKey
                   ) -> tuple[bytes, DecryptedSubmission | None]:
    """An instance's document and, if it is encrypted, its decryption (None: plain); raises on
    failure. Only reads files, so it may run ahead of the writing on another thread."""
    name, manifest_path = inst.name, inst.xml
    if not manifest_path.is_file():
        raise DecryptionError(f"instance folder {name}, file {MANIFEST_NAME}: no "
                              f"{MANIFEST_NAME} (nor another instance document)",
                              code="decrypt-manifest", file=manifest_path)
    manifest = read_file(manifest_path, XML)
    try:
        encrypted = _is_encrypted(manifest)
    except ET.ParseError as exc:
        raise DecryptionError(f"instance {name}, file {manifest_path.name}: not well-formed "
                              f"XML ({exc})", code="decrypt-manifest",
                              file=manifest_path) from None
    if not encrypted:
        return manifest, None
    files = inst.media or manifest_path.parent
    return manifest, _decrypt(manifest, FolderFiles(files), private_key, str(files))


def _write_instance(inst: Instance, out: Path, manifest: bytes,
                    sub: DecryptedSubmission | None) -> bool:
    """Write one opened instance's plain copy to ``out``; True if it was encrypted."""
    if sub is None:
        _replace_dir(out, functools.partial(_copy_instance, inst))
        return False
    # The server's receipt time is on the manifest, the only plaintext (Briefcase, Central).
    xml = with_submission_date(sub.xml, ET.fromstring(manifest).get(SUBMISSION_DATE_ATTR),
                               keep_own=True)

    def write(tmp: Path) -> None:
        private_dirs(tmp)  # decrypted answers: owner-only
        atomic_write_bytes(tmp / MANIFEST_NAME, xml)
        for media_name, data in sub.media.items():
            atomic_write_bytes(tmp / media_name, data)

    _replace_dir(out, write)
    return True


def decrypt_folder(src: Path, dst: Path, private_key_pem: bytes, *,
                   workers: int | None = None) -> DecryptReport:
    """Decrypt every submission found below ``src`` into ``dst``; failures are kept, not dropped.

    Submissions are found as ingest finds them (:func:`~dhsurvey.ingest.instances.
    discover_instances`: a Collect device folder, Briefcase storage or its ``instances/``, a
    flat folder of instance XML). Each becomes ``dst/<instance name>/submission.xml`` plus its
    media, decrypted or, when it was not encrypted, copied; a failing one is copied raw to
    ``dst/_failed/<name>/`` with a ``reason.txt`` and listed in the report, so no interview
    disappears without a trace.

    With :data:`PARALLEL_MIN` or more encrypted submissions they are decrypted on ``workers``
    threads (default :data:`WORKERS`; 1: in this thread), ahead of the writing, which stays in
    order here: the output, the report and the failures are the same either way.
    """
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise DecryptionError("source folder does not exist", code="decrypt-folder", file=src)
    if dst.resolve() == src.resolve():
        raise DecryptionError(
            "destination must differ from source", code="decrypt-folder", file=dst
        )
    private_key = _load_private_key_pem(private_key_pem)  # a bad key aborts the whole run
    dst.mkdir(parents=True, exist_ok=True)
    report = DecryptReport()
    inside = dst.resolve()
    # Not an earlier output written below the source.
    instances = [i for i in discover_instances(src) if not i.xml.resolve().is_relative_to(inside)]
    opened = in_order(functools.partial(_open_instance, private_key=private_key), instances,
                      workers_for(sum(i.encrypted for i in instances), workers))
    with contextlib.closing(opened):
        for inst, outcome in zip(instances, opened, strict=True):
            _write_or_keep(inst, outcome, dst, report)
    return report


def _write_or_keep(inst: Instance, outcome: Outcome[tuple[bytes, DecryptedSubmission | None]],
                   dst: Path, report: DecryptReport) -> None:
    """Write an opened instance's plain copy, or keep its raw files in ``_failed/`` and why."""
    name = inst.name
    out, failed_out = dst / name, dst / FAILED_DIR / name
    try:
        encrypted = _write_instance(inst, out, *outcome.get())
        (report.decrypted if encrypted else report.plain).append(name)
        shutil.rmtree(failed_out, ignore_errors=True)  # stale failure from an earlier run
    except (DhsurveyError, OSError) as exc:
        code = exc.code if isinstance(exc, DhsurveyError) else "decrypt-io"
        message = exc.message if isinstance(exc, DhsurveyError) else f"{name}: {exc}"
        log.warning("instance %s not decrypted (%s): %s", name, code, message)
        report.failed.append((name, code, message))
        shutil.rmtree(out, ignore_errors=True)  # never leave a stale "good" copy
        _replace_dir(failed_out, functools.partial(_copy_raw, inst))
        reason = f"folder: {name}\ncode: {code}\nmessage: {message}\n"
        atomic_write_bytes(failed_out / "reason.txt", reason.encode("utf-8"))


def _copy_raw(inst: Instance, tmp: Path) -> None:
    """A failed instance's files byte for byte, under their own names."""
    private_dirs(tmp)
    if inst.xml.is_file():
        shutil.copy2(inst.xml, tmp / inst.xml.name)
    if inst.media is not None:
        for f in sorted(inst.media.iterdir()):
            if f.is_file() and f != inst.xml:
                shutil.copy2(f, tmp / f.name)


# --------------------------------------------------------------------------- keys


def load_private_key(path: str | Path | None = None) -> bytes:
    """Read the PEM private key from ``path`` or the file named by ``$DHSURVEY_PRIVATE_KEY``.

    A passphrase-protected PEM is decrypted with ``$DHSURVEY_PRIVATE_KEY_PASSPHRASE`` (here, to
    check it, and wherever the PEM is used); a missing or wrong passphrase is a clear error.
    The key stays out of config files and the repository; errors name the path, never the key
    or the passphrase.
    """
    if path is None:
        env = os.environ.get(PRIVATE_KEY_ENV, "").strip()
        if not env:
            raise DhsurveyError(
                f"no private key: pass a key file path or set {PRIVATE_KEY_ENV} to the path of "
                "the PEM private key file",
                code="secret-missing",
            )
        if "-----BEGIN" in env or "\n" in env:
            # Someone pasted the key itself into the variable: refuse, and do not echo it.
            raise DhsurveyError(
                f"{PRIVATE_KEY_ENV} must be the path of a PEM file, not the key itself",
                code="secret-missing",
            )
        path = env
    key_path = Path(path).expanduser()
    if not key_path.is_file():
        raise DhsurveyError("private key file not found", code="secret-missing", file=key_path)
    try:
        pem = key_path.read_bytes()
    except OSError as exc:
        raise DhsurveyError(
            f"private key file cannot be read ({exc.strerror})",
            code="secret-missing",
            file=key_path,
        ) from None
    try:
        _load_private_key_pem(pem)  # fail now, not halfway through a folder
    except DhsurveyError as exc:
        raise DhsurveyError(exc.message, code=exc.code, file=key_path) from None
    return pem
