"""Size caps at ingest: a zip bomb, an oversized JSON page or XML submission is refused before
it is read into memory, with an error naming the file (and member) and the cap.

The caps are lowered through their environment variables. The zip bomb is a Central zip of
about 1 MB whose root CSV is 300 MB uncompressed; refused on its zip directory it costs no
memory (tracemalloc peak under 10 MB; reading it whole took 2.6 GB of RSS before the cap).
"""

from __future__ import annotations

import shutil
import struct
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from test_corrupt_exports import Base, assert_accounted, base, copy_tree, quarantined

from dhsurvey.errors import DhsurveyError
from dhsurvey.ingest.central import read_central_zip, root_header
from dhsurvey.ingest.decrypt import decrypt_folder
from dhsurvey.ingest.kobo import read_kobo_json
from dhsurvey.ingest.limits import JSON, XML, ZIP_MEMBER, InputTooLarge
from dhsurvey.ingest.read import read_export
from dhsurvey.ingest.xmlfolder import read_xml_folder

__all__ = ["base"]  # the fixture, imported for this module's tests

#: Uncompressed size of the bomb's root CSV.
BOMB_BYTES = 300 * 10**6
MAX_PEAK = 10 * 10**6


@pytest.fixture(scope="module")
def bomb(base: Base, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The valid Central zip with its root CSV replaced by 300 MB of well-compressible rows,
    written a block at a time (never 300 MB in memory)."""
    path = tmp_path_factory.mktemp("bomb") / "household.csv.zip"
    with zipfile.ZipFile(base.zip) as src, \
            zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open("household.csv", "w") as fh:
            header = (",".join(root_header(base.model)) + "\n").encode()
            fh.write(header)
            row = b"x" * 99 + b"\n"
            block = row * 10_000
            written = len(header)
            while written < BOMB_BYTES:
                fh.write(block)
                written += len(block)
        for name in src.namelist():
            if name != "household.csv":
                zf.writestr(name, src.read(name))
    assert path.stat().st_size < BOMB_BYTES / 250  # about 1 MB
    return path


def _lie(path: Path, member: str, declared: int) -> None:
    """Write ``declared`` as the member's uncompressed size in its local header and in the
    zip's central directory (the data stay as they are)."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        offset = zf.getinfo(member).header_offset
    assert data[offset:offset + 4] == b"PK\x03\x04"
    struct.pack_into("<I", data, offset + 22, declared)
    name = member.encode()
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        length = struct.unpack_from("<H", data, at + 28)[0]
        if bytes(data[at + 46:at + 46 + length]) == name:
            struct.pack_into("<I", data, at + 24, declared)
        at = data.find(b"PK\x01\x02", at + 46)
    path.write_bytes(bytes(data))


def peak_of(fn: Callable[[], object]) -> tuple[DhsurveyError, int]:
    """The DhsurveyError ``fn`` raises and the peak of Python memory allocated meanwhile."""
    tracemalloc.start()
    try:
        with pytest.raises(DhsurveyError) as info:
            fn()
        return info.value, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_zip_bomb_is_refused_before_it_is_decompressed(base: Base, bomb: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ZIP_MEMBER.variable, "10")
    err, peak = peak_of(lambda: read_central_zip(bomb, base.model))
    assert isinstance(err, InputTooLarge) and err.code == "input-too-large"
    assert err.context["file"] == str(bomb) and err.context["member"] == "household.csv"
    assert err.context["cap_mb"] == 10 and err.context["variable"] == ZIP_MEMBER.variable
    assert "300.0 MB" in err.message and "10.0 MB" in err.message
    assert ZIP_MEMBER.variable in err.message
    assert peak < MAX_PEAK, peak
    # The dispatcher (what every ingest route calls) refuses it the same way.
    again, peak = peak_of(lambda: read_export(bomb, base.models))
    assert again.code == "input-too-large" and peak < MAX_PEAK, peak
    assert bomb.exists()  # the export stays where it is


def test_zip_member_whose_directory_lies_is_refused_while_read(
        base: Base, bomb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A member declared as 1 KB that inflates to 300 MB: only the declared bytes are ever
    decompressed, then the read fails (zipfile's CRC check); memory stays small."""
    monkeypatch.setenv(ZIP_MEMBER.variable, "10")
    liar = tmp_path / "liar.csv.zip"
    shutil.copyfile(bomb, liar)
    _lie(liar, "household.csv", 1000)
    with zipfile.ZipFile(liar) as zf:
        assert zf.getinfo("household.csv").file_size == 1000
    err, peak = peak_of(lambda: read_central_zip(liar, base.model))
    assert err.code in ("export-unreadable", "input-too-large")
    assert err.context["file"] == str(liar) and err.context["member"] == "household.csv"
    assert peak < MAX_PEAK, peak


def test_zip_member_under_the_cap_reads(base: Base, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ZIP_MEMBER.variable, "1")
    assert_accounted(read_central_zip(base.zip, base.model))
    monkeypatch.setenv(ZIP_MEMBER.variable, "0.001")  # 1,000 bytes: the root CSV is larger
    with pytest.raises(InputTooLarge):
        read_central_zip(base.zip, base.model)


def test_cap_must_be_a_positive_number(base: Base, monkeypatch: pytest.MonkeyPatch) -> None:
    for bad in ("lots", "-1", "0", "inf"):
        monkeypatch.setenv(ZIP_MEMBER.variable, bad)
        with pytest.raises(DhsurveyError) as info:
            read_central_zip(base.zip, base.model)
        assert info.value.code == "config-limit" and ZIP_MEMBER.variable in info.value.message


def test_json_page_over_the_cap(base: Base, monkeypatch: pytest.MonkeyPatch) -> None:
    size = base.json.stat().st_size
    monkeypatch.setenv(JSON.variable, str(size / 2 / 10**6))
    for read in (lambda: read_kobo_json(base.json, base.model),
                 lambda: read_export(base.json, base.models)):
        with pytest.raises(InputTooLarge) as info:
            read()
        assert info.value.context["file"] == str(base.json)
        assert JSON.variable in info.value.message
    monkeypatch.setenv(JSON.variable, str(size * 2 / 10**6))
    assert_accounted(read_kobo_json(base.json, base.model))


def _pad(path: Path, size: int) -> None:
    with path.open("ab") as fh:
        fh.write(b"<!-- padding -->" * (size // 16))


def test_xml_submission_over_the_cap_is_quarantined(base: Base, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """One instance folder's submission.xml over the cap: quarantined (xml-too-large), never
    read; the other instances are read; every submission is accounted for."""
    monkeypatch.setenv(XML.variable, "1")
    folder, insts = copy_tree(base.xml, tmp_path / "x")
    _pad(insts[3] / "submission.xml", 2 * 10**6)
    for read in (read_xml_folder(folder, base.model), read_export(folder, base.models)):
        q = quarantined(read, "xml-too-large")
        assert list(q["source_file"]) == [str(insts[3] / "submission.xml")]
        assert XML.variable in q.iloc[0]["message"] and list(q["value"]) == ["1 MB"]
        assert len(read.root) == len(insts) - 1
        assert_accounted(read)


def test_encrypted_xml_over_the_cap_is_quarantined_and_kept(
        base: Base, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(XML.variable, "1")
    folder, insts = copy_tree(base.enc, tmp_path / "x")
    _pad(insts[1] / "submission.xml.enc", 2 * 10**6)
    read = read_xml_folder(folder, base.model, private_key_pem=base.private)
    q = quarantined(read, "xml-too-large")
    assert len(q) == 1 and q.iloc[0]["KEY"] is not None
    assert "submission.xml.enc" in q.iloc[0]["message"] or XML.variable in q.iloc[0]["message"]
    assert len(read.root) == len(insts) - 1
    assert_accounted(read)
    # Decrypting the folder keeps the refused instance, with its reason, in _failed/.
    report = decrypt_folder(folder, tmp_path / "plain", base.private)
    assert [(name, code) for name, code, _ in report.failed] == [(insts[1].name,
                                                                   "input-too-large")]
    assert (tmp_path / "plain" / "_failed" / insts[1].name / "reason.txt").exists()
    assert report.total == len(insts)


def test_odata_page_over_the_cap(central, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_central_api import household, household_raw

    from dhsurvey.ingest.central_api import fetch_submissions

    model = household()
    central.load(model, household_raw(5))
    monkeypatch.setenv(JSON.variable, "0.001")  # 1,000 bytes: a page of 5 submissions is more
    with pytest.raises(InputTooLarge) as info:
        fetch_submissions("household", model)
    assert "household.svc/Submissions" in info.value.context["file"]
    assert JSON.variable in info.value.message
    monkeypatch.setenv(JSON.variable, "1")
    assert len(fetch_submissions("household", model).root) == 5
