"""ODK submission encryption: round trips, reproducibility, wire details and every failure path."""

from __future__ import annotations

import base64
import hashlib
import random
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from cryptography.hazmat.decrepit.ciphers.modes import CFB
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from dhsurvey.errors import DhsurveyError
from dhsurvey.ingest.decrypt import (
    PASSPHRASE_ENV,
    PRIVATE_KEY_ENV,
    DecryptionError,
    decrypt_folder,
    decrypt_submission,
    encrypt_submission,
    load_private_key,
)

IID = "uuid:6f1c2a9e-1b7d-4c55-9d8e-1a2b3c4d5e6f"
# 96 bytes: block-aligned on purpose, so the PKCS#7 padding is one full block (see truncation).
XML = (
    b'<data id="hh"><name>Amina</name><age>12</age><meta><instanceID>'
    + IID.encode()
    + b"</instanceID></meta></data>"
)
XML = XML + b" " * (-len(XML) % 16)
MEDIA = {"photo.jpg": bytes(range(256)) * 3, "audio.m4a": b"voice-note" * 7}
OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def _pair() -> tuple[rsa.RSAPrivateKey, bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    priv = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    pub = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key, priv, pub


@pytest.fixture(scope="session")
def keys() -> tuple[rsa.RSAPrivateKey, bytes, bytes]:
    return _pair()


@pytest.fixture(scope="session")
def other_keys() -> tuple[rsa.RSAPrivateKey, bytes, bytes]:
    return _pair()


def _rng(seed: int = 7):
    return random.Random(seed).randbytes


def _encrypt(pub: bytes, *, media=None, version: str | None = "2024061501", rng=None, xml=XML):
    return encrypt_submission(
        xml,
        form_id="hh",
        version=version,
        instance_id=IID,
        public_key_pem=pub,
        media=media,
        rng=rng,
    )


def _manifest_text(manifest: bytes, tag: str) -> str:
    root = ET.fromstring(manifest)
    return next(el.text for el in root.iter() if el.tag.endswith("}" + tag))


def _code(exc_info: pytest.ExceptionInfo[DecryptionError]) -> str:
    return exc_info.value.code


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    ("media", "version"),
    [(None, "2024061501"), (MEDIA, "2024061501"), (MEDIA, None), (None, None)],
)
def test_round_trip(keys, media, version):
    _, priv, pub = keys
    enc = _encrypt(pub, media=media, version=version)
    expected_files = [f"{n}.enc" for n in (media or {})] + ["submission.xml.enc"]
    assert list(enc.files) == expected_files
    assert XML not in enc.files["submission.xml.enc"]

    root = ET.fromstring(enc.manifest)
    assert root.tag == "{http://www.opendatakit.org/xforms/encrypted}data"
    assert root.get("id") == "hh" and root.get("encrypted") == "yes"
    assert root.get("version") == version

    out = decrypt_submission(enc.manifest, enc.files, priv)
    assert (out.form_id, out.version, out.instance_id) == ("hh", version, IID)
    assert out.xml == XML
    assert out.media == (media or {})
    assert list(out.media) == list(media or {})  # manifest order kept


_RSA_ELEMENTS = re.compile(
    rb"<(base64EncryptedKey|base64EncryptedElementSignature)>[^<]*</\1>")


def _without_rsa(manifest: bytes) -> bytes:
    """The manifest with the two RSA-OAEP values (randomised by their OAEP seed) blanked."""
    return _RSA_ELEMENTS.sub(rb"<\1/>", manifest)


def test_seeded_rng_fixes_everything_but_the_rsa_values(keys):
    """The AES key (and so the IVs and every .enc file) comes from the rng; the OAEP seeds do
    not, so only the wrapped key and the signature differ between two seeded runs."""
    key, priv, pub = keys
    a = _encrypt(pub, media=MEDIA, rng=_rng(42))
    b = _encrypt(pub, media=MEDIA, rng=_rng(42))
    c = _encrypt(pub, media=MEDIA, rng=_rng(43))
    assert a.files == b.files
    assert _without_rsa(a.manifest) == _without_rsa(b.manifest)
    assert _without_rsa(a.manifest).count(b"<base64Encrypted") == 2  # both blanked, rest kept
    wrapped = [_manifest_text(e.manifest, "base64EncryptedKey") for e in (a, b)]
    assert wrapped[0] != wrapped[1]  # OAEP draws a fresh seed
    assert {key.decrypt(base64.b64decode(w), OAEP) for w in wrapped} == {
        random.Random(42).randbytes(32)}
    assert a.files != c.files
    for enc in (a, b):
        out = decrypt_submission(enc.manifest, enc.files, priv)
        assert (out.xml, out.media) == (XML, MEDIA)


def test_rng_gives_only_the_aes_key(keys):
    _, _, pub = keys
    asked: list[int] = []

    def rng(n: int) -> bytes:
        asked.append(n)
        return bytes(n)

    _encrypt(pub, media=MEDIA, rng=rng)
    assert asked == [32]


def test_default_rng_differs_between_runs(keys):
    _, _, pub = keys
    assert _encrypt(pub).files != _encrypt(pub).files


def test_iv_sequence_matches_spec(keys):
    """First IV = md5(instanceID + key) with byte 0 bumped; second also bumps byte 1."""
    _, _, pub = keys
    aes_key = random.Random(5).randbytes(32)  # the first 32 rng bytes are the AES key
    enc = _encrypt(pub, media={"photo.jpg": MEDIA["photo.jpg"]}, rng=_rng(5))

    seed = bytearray(hashlib.md5(IID.encode("utf-8") + aes_key).digest())
    seed[0] = (seed[0] + 1) % 256
    iv0 = bytes(seed)
    seed[1] = (seed[1] + 1) % 256
    iv1 = bytes(seed)

    def aes_cfb_decrypt(iv: bytes, data: bytes) -> bytes:
        dec = Cipher(algorithms.AES(aes_key), CFB(iv)).decryptor()
        unpad = sym_padding.PKCS7(128).unpadder()
        return unpad.update(dec.update(data) + dec.finalize()) + unpad.finalize()

    assert aes_cfb_decrypt(iv0, enc.files["photo.jpg.enc"]) == MEDIA["photo.jpg"]
    assert aes_cfb_decrypt(iv1, enc.files["submission.xml.enc"]) == XML
    assert len(enc.files["submission.xml.enc"]) == len(XML) + 16  # full padding block


def test_iv_byte_wraps_mod_256(keys):
    """A seed byte of 0xff must wrap to 0x00 rather than fail: search an rng that hits it."""
    _, priv, pub = keys
    for seed in range(2000):
        aes_key = random.Random(seed).randbytes(32)
        if hashlib.md5(IID.encode() + aes_key).digest()[0] == 0xFF:
            break
    else:  # pragma: no cover - probability ~ (255/256)**2000
        pytest.skip("no wrapping seed found")
    enc = _encrypt(pub, rng=_rng(seed))
    assert decrypt_submission(enc.manifest, enc.files, priv).xml == XML


def test_wrapped_key_is_rsa_oaep_sha256(keys):
    """The wrapped key in a manifest is plain RSA-OAEP(SHA-256, MGF1-SHA-256) of the rng's key."""
    key, _, _ = keys
    enc = _encrypt(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        rng=_rng(9),
    )
    wrapped = base64.b64decode(_manifest_text(enc.manifest, "base64EncryptedKey"))
    assert len(wrapped) == 256
    assert key.decrypt(wrapped, OAEP) == random.Random(9).randbytes(32)


@pytest.mark.parametrize("version", ["v7", None])
def test_signature_is_md5_of_documented_lines(keys, version):
    key, _, pub = keys
    enc = _encrypt(pub, media=MEDIA, version=version)
    b64_key = _manifest_text(enc.manifest, "base64EncryptedKey")
    lines = ["hh", *([version] if version else []), b64_key, IID]
    lines += [f"{n}::{hashlib.md5(d).hexdigest()}" for n, d in MEDIA.items()]
    lines.append(f"submission.xml::{hashlib.md5(XML).hexdigest()}")
    digest = hashlib.md5("".join(f"{line}\n" for line in lines).encode()).digest()
    signature = base64.b64decode(_manifest_text(enc.manifest, "base64EncryptedElementSignature"))
    assert key.decrypt(signature, OAEP) == digest


def test_manifest_is_escaped(keys):
    _, priv, pub = keys
    enc = encrypt_submission(
        XML, form_id='a"<&b', version="1&2", instance_id="uuid:<x>", public_key_pem=pub
    )
    out = decrypt_submission(enc.manifest, enc.files, priv)
    assert (out.form_id, out.version, out.instance_id) == ('a"<&b', "1&2", "uuid:<x>")


# ----------------------------------------------------------------------------- failures


def test_wrong_key(keys, other_keys):
    _, _, pub = keys
    _, other_priv, _ = other_keys
    enc = _encrypt(pub, media=MEDIA)
    with pytest.raises(DecryptionError) as ei:
        decrypt_submission(enc.manifest, enc.files, other_priv, source="instances/x")
    assert _code(ei) == "decrypt-wrong-key"
    assert IID in ei.value.message and "submission.xml" in ei.value.message
    assert ei.value.context["instance"] == IID
    assert "PRIVATE KEY" not in str(ei.value)


@pytest.mark.parametrize("target", ["submission.xml.enc", "photo.jpg.enc"])
def test_flipped_byte_breaks_signature(keys, target):
    _, priv, pub = keys
    enc = _encrypt(pub, media=MEDIA)
    files = dict(enc.files)
    data = bytearray(files[target])
    data[3] ^= 0x01  # first block: keeps padding intact, changes plaintext
    files[target] = bytes(data)
    with pytest.raises(DecryptionError) as ei:
        decrypt_submission(enc.manifest, files, priv)
    assert _code(ei) == "decrypt-signature"
    assert IID in ei.value.message


@pytest.mark.parametrize("cut", [5, 16])
def test_truncated_ciphertext(keys, cut):
    _, priv, pub = keys
    enc = _encrypt(pub, media=MEDIA)
    files = dict(enc.files)
    files["submission.xml.enc"] = files["submission.xml.enc"][:-cut]
    with pytest.raises(DecryptionError) as ei:
        decrypt_submission(enc.manifest, files, priv)
    assert _code(ei) == "decrypt-truncated"
    assert "submission.xml.enc" in ei.value.message and IID in ei.value.message


def test_empty_ciphertext_is_truncated(keys):
    _, priv, pub = keys
    enc = _encrypt(pub, media=MEDIA)
    files = {**enc.files, "photo.jpg.enc": b""}
    with pytest.raises(DecryptionError) as ei:
        decrypt_submission(enc.manifest, files, priv)
    assert _code(ei) == "decrypt-truncated" and "photo.jpg.enc" in ei.value.message


def test_tampered_manifest_instance_id(keys):
    _, priv, pub = keys
    enc = _encrypt(pub, media=MEDIA)
    forged = enc.manifest.replace(IID.encode(), b"uuid:00000000-0000-0000-0000-000000000000")
    with pytest.raises(DecryptionError) as ei:
        decrypt_submission(forged, enc.files, priv)
    assert _code(ei) == "decrypt-signature"


def test_tampered_manifest_form_id(keys):
    _, priv, pub = keys
    enc = _encrypt(pub)
    with pytest.raises(DecryptionError) as ei:
        decrypt_submission(enc.manifest.replace(b'id="hh"', b'id="hx"'), enc.files, priv)
    assert _code(ei) == "decrypt-signature"


def test_missing_file(keys):
    _, priv, pub = keys
    enc = _encrypt(pub, media=MEDIA)
    files = {k: v for k, v in enc.files.items() if k != "audio.m4a.enc"}
    with pytest.raises(DecryptionError) as ei:
        decrypt_submission(enc.manifest, files, priv, source="inst")
    assert _code(ei) == "decrypt-missing-file"
    assert "audio.m4a.enc" in ei.value.message and IID in ei.value.message
    assert ei.value.context["file"] == str(Path("inst") / "audio.m4a.enc")


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: b"this is not xml <",
        lambda m: XML,  # a plain submission, not a manifest
        lambda m: m.replace(b' encrypted="yes"', b""),
        lambda m: re.sub(rb"<base64EncryptedKey>.*</base64EncryptedKey>", b"", m),
        lambda m: re.sub(rb"<meta .*</meta>", b"", m),
        lambda m: m.replace(b"photo.jpg.enc", b"../../etc/passwd.enc"),
        lambda m: m.replace(b"photo.jpg.enc", b"audio.m4a.enc"),
        lambda m: re.sub(rb"(<base64EncryptedKey>)", rb"\1!!", m),
    ],
    ids=["garbage", "plain", "not-encrypted", "no-key", "no-instance", "traversal", "dup", "b64"],
)
def test_bad_manifest(keys, edit):
    _, priv, pub = keys
    enc = _encrypt(pub, media=MEDIA)
    with pytest.raises(DecryptionError) as ei:
        decrypt_submission(edit(enc.manifest), enc.files, priv)
    assert _code(ei) == "decrypt-manifest"
    assert "submission.xml" in ei.value.message


def test_unreadable_private_key(keys):
    _, _, pub = keys
    enc = _encrypt(pub)
    with pytest.raises(DhsurveyError) as ei:
        decrypt_submission(enc.manifest, enc.files, b"-----BEGIN PRIVATE KEY-----\nAAAA\n")
    assert ei.value.code == "secret-invalid" and "AAAA" not in str(ei.value)


# ----------------------------------------------------------------------------- folders


def _write_instance(folder: Path, manifest: bytes, files: dict[str, bytes]) -> None:
    folder.mkdir(parents=True)
    (folder / "submission.xml").write_bytes(manifest)
    for name, data in files.items():
        (folder / name).write_bytes(data)


def test_decrypt_folder_keeps_failures(tmp_path, keys, other_keys):
    _, priv, pub = keys
    _, _, other_pub = other_keys
    src, dst = tmp_path / "instances", tmp_path / "out"

    good = _encrypt(pub, media=MEDIA)
    _write_instance(src / "good_media", good.manifest, good.files)
    plain_only = _encrypt(pub)
    _write_instance(src / "good_plain_xml", plain_only.manifest, plain_only.files)
    _write_instance(src / "unencrypted", XML, {"photo.jpg": b"jpeg"})

    wrong = _encrypt(other_pub)
    _write_instance(src / "wrong_key", wrong.manifest, wrong.files)
    tampered = dict(good.files)
    first = tampered["submission.xml.enc"]
    tampered["submission.xml.enc"] = bytes([first[0] ^ 0x80]) + first[1:]
    _write_instance(src / "tampered", good.manifest, tampered)
    truncated = {**good.files, "photo.jpg.enc": good.files["photo.jpg.enc"][:-3]}
    _write_instance(src / "truncated", good.manifest, truncated)
    missing = {k: v for k, v in good.files.items() if k != "photo.jpg.enc"}
    _write_instance(src / "missing", good.manifest, missing)
    _write_instance(src / "garbage", b"<<<", {})
    (src / "no_manifest").mkdir()
    (src / "no_manifest" / "stray.enc").write_bytes(b"x")

    report = decrypt_folder(src, dst, priv)

    assert report.decrypted == ["good_media", "good_plain_xml"]
    assert report.plain == ["unencrypted"]
    assert {name: code for name, code, _ in report.failed} == {
        "garbage": "decrypt-manifest",
        "missing": "decrypt-missing-file",
        "no_manifest": "decrypt-manifest",
        "tampered": "decrypt-signature",
        "truncated": "decrypt-truncated",
        "wrong_key": "decrypt-wrong-key",
    }
    assert report.total == 9

    assert (dst / "good_media" / "submission.xml").read_bytes() == XML
    for name, data in MEDIA.items():
        assert (dst / "good_media" / name).read_bytes() == data
    assert not list((dst / "good_media").glob("*.enc"))
    assert sorted(p.name for p in (dst / "good_plain_xml").iterdir()) == ["submission.xml"]
    assert (dst / "unencrypted" / "submission.xml").read_bytes() == XML
    assert (dst / "unencrypted" / "photo.jpg").read_bytes() == b"jpeg"

    for name, code, _ in report.failed:
        kept = dst / "_failed" / name
        assert not (dst / name).exists()
        reason = (kept / "reason.txt").read_text()
        assert code in reason
        for raw in (src / name).iterdir():  # raw files copied byte for byte
            assert (kept / raw.name).read_bytes() == raw.read_bytes()
    assert IID in (dst / "_failed" / "tampered" / "reason.txt").read_text()

    # a rerun gives the same result and leaves no partial directories behind
    again = decrypt_folder(src, dst, priv)
    assert (again.decrypted, again.plain, again.failed) == (
        report.decrypted,
        report.plain,
        report.failed,
    )
    assert not list(dst.rglob("*.partial"))


def test_decrypt_folder_bad_key_aborts(tmp_path):
    (tmp_path / "src").mkdir()
    with pytest.raises(DhsurveyError) as ei:
        decrypt_folder(tmp_path / "src", tmp_path / "dst", b"not a key")
    assert ei.value.code == "secret-invalid"


# ----------------------------------------------------------------------------- key loading


def test_load_private_key_from_env_and_path(tmp_path, keys, monkeypatch):
    _, priv, _ = keys
    path = tmp_path / "odk.pem"
    path.write_bytes(priv)
    monkeypatch.setenv(PRIVATE_KEY_ENV, str(path))
    assert load_private_key() == priv
    monkeypatch.delenv(PRIVATE_KEY_ENV)
    assert load_private_key(path) == priv
    assert load_private_key(str(path)) == priv


def test_load_private_key_missing_env(monkeypatch):
    monkeypatch.delenv(PRIVATE_KEY_ENV, raising=False)
    with pytest.raises(DhsurveyError) as ei:
        load_private_key()
    assert ei.value.code == "secret-missing"
    assert PRIVATE_KEY_ENV in str(ei.value)


def test_load_private_key_missing_file(tmp_path, monkeypatch):
    monkeypatch.setenv(PRIVATE_KEY_ENV, str(tmp_path / "nope.pem"))
    with pytest.raises(DhsurveyError) as ei:
        load_private_key()
    assert ei.value.code == "secret-missing" and "nope.pem" in str(ei.value)


def test_load_private_key_never_echoes_key(keys, monkeypatch, tmp_path):
    _, priv, _ = keys
    monkeypatch.setenv(PRIVATE_KEY_ENV, priv.decode())  # key pasted instead of a path
    with pytest.raises(DhsurveyError) as ei:
        load_private_key()
    body = priv.decode().splitlines()[1]
    assert body not in str(ei.value) and "BEGIN" not in str(ei.value)

    broken = tmp_path / "broken.pem"
    broken.write_bytes(priv[:200])
    with pytest.raises(DhsurveyError) as ei:
        load_private_key(broken)
    assert ei.value.code == "secret-invalid" and body not in str(ei.value)


PASSPHRASE = "correct horse battery staple 7"


@pytest.mark.parametrize("layout", [serialization.PrivateFormat.PKCS8,
                                    serialization.PrivateFormat.TraditionalOpenSSL])
def test_passphrase_protected_key_is_opened_with_the_variable(keys, monkeypatch, tmp_path,
                                                               layout) -> None:
    key, _, pub = keys
    pem = key.private_bytes(serialization.Encoding.PEM, layout,
                            serialization.BestAvailableEncryption(PASSPHRASE.encode()))
    assert b"ENCRYPTED" in pem
    path = tmp_path / "odk.pem"
    path.write_bytes(pem)
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    monkeypatch.setenv(PRIVATE_KEY_ENV, str(path))
    assert load_private_key() == pem
    enc = encrypt_submission(XML, form_id="hh", version="1", instance_id=IID,
                             public_key_pem=pub, media=MEDIA)
    plain = decrypt_submission(enc.manifest, enc.files, load_private_key(path))
    assert plain.xml == XML and plain.media == MEDIA


def test_missing_or_wrong_passphrase_is_a_clear_error(keys, monkeypatch, tmp_path) -> None:
    key, _, pub = keys
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.BestAvailableEncryption(PASSPHRASE.encode()))
    path = tmp_path / "odk.pem"
    path.write_bytes(pem)
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    with pytest.raises(DhsurveyError) as ei:
        load_private_key(path)
    assert ei.value.code == "secret-missing" and PASSPHRASE_ENV in ei.value.message
    assert ei.value.context["file"] == path

    wrong = "not the passphrase 42"
    monkeypatch.setenv(PASSPHRASE_ENV, wrong)
    with pytest.raises(DhsurveyError) as ei:
        load_private_key(path)
    err = ei.value
    assert err.code == "secret-invalid" and PASSPHRASE_ENV in err.message
    assert "does not decrypt" in err.message and err.context["file"] == path
    body = pem.decode().splitlines()[1]
    for secret in (wrong, PASSPHRASE, body):
        assert secret not in str(err) and secret not in repr(err.context)
    # A PEM given directly (not through load_private_key) is refused the same way.
    enc = encrypt_submission(XML, form_id="hh", version=None, instance_id=IID,
                             public_key_pem=pub)
    with pytest.raises(DhsurveyError) as ei:
        decrypt_submission(enc.manifest, enc.files, pem)
    assert ei.value.code == "secret-invalid" and wrong not in str(ei.value)


def test_key_wrapped_with_mgf1_sha1_is_accepted(keys) -> None:
    """Enketo wraps the AES key with OAEP(SHA-256, MGF1-SHA-1); it must still decrypt."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    _, private_pem, public_pem = keys
    sub = encrypt_submission(b"<data id='f'><a>1</a></data>", form_id="f", version="1",
                             instance_id="uuid:enketo", public_key_pem=public_pem)
    private = serialization.load_pem_private_key(private_pem, None)
    sha1 = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA256(), label=None)
    sha256 = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(),
                          label=None)
    manifest = sub.manifest.decode()
    key_b64 = manifest.split("<base64EncryptedKey>")[1].split("<")[0]
    sig_b64 = manifest.split("<base64EncryptedElementSignature>")[1].split("<")[0]
    public = private.public_key()
    new_key = base64.b64encode(public.encrypt(private.decrypt(base64.b64decode(key_b64), sha256),
                                              sha1)).decode()
    xml_md5 = hashlib.md5(b"<data id='f'><a>1</a></data>").hexdigest()
    lines = f"f\n1\n{new_key}\nuuid:enketo\nsubmission.xml::{xml_md5}\n"
    new_sig = base64.b64encode(public.encrypt(hashlib.md5(lines.encode()).digest(),
                                              sha1)).decode()
    manifest = manifest.replace(key_b64, new_key).replace(sig_b64, new_sig)
    out = decrypt_submission(manifest.encode(), sub.files, private_pem)
    assert out.xml == b"<data id='f'><a>1</a></data>"
