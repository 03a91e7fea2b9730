"""The landing scan: cheap (names, sizes, times), settled only when unchanged or marked done,
and every file outside the layout named with a hint."""

from __future__ import annotations

import builtins
import os
import time
from pathlib import Path

import pytest

from dhsurvey.ingest.landing import classify, scan, waiting_for
from dhsurvey.store import Store

FORMS = ("household", "child", "caregiver")


def _write(folder: Path, rel: str, data: bytes = b"x") -> Path:
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_state_names_sizes_and_times(tmp_path: Path) -> None:
    assert scan(tmp_path / "missing").digest == ""
    zip_ = _write(tmp_path, "central/child.csv.zip", b"one")
    first = scan(tmp_path)
    assert list(first.files) == ["central/child.csv.zip"]
    assert scan(tmp_path).digest == first.digest  # no change, same name
    zip_.write_bytes(b"one two")  # still being copied: grows
    grown = scan(tmp_path)
    assert grown.digest != first.digest
    assert grown.changed(first) == ["central/child.csv.zip"]
    os.utime(zip_, ns=(first.files["central/child.csv.zip"][1] + 10**9,) * 2)
    _write(tmp_path, "upload.done")  # a marker is not data: same state apart from the time
    assert "upload.done" not in scan(tmp_path).files


def test_settled_after_two_equal_looks_or_a_done_marker(tmp_path: Path) -> None:
    _write(tmp_path, "central/child.csv.zip")
    state = scan(tmp_path)
    assert waiting_for(state, None) is not None  # first look: not yet
    assert waiting_for(state, "another") is not None
    assert waiting_for(state, state.digest) is None  # the same at the next look
    _write(tmp_path, "upload.done")
    assert waiting_for(scan(tmp_path), None) is None  # the transfer says it is complete
    time.sleep(0.01)
    _write(tmp_path, "kobo/child.json", b"{}")  # written after the marker: wait again
    assert scan(tmp_path).marked_done is False
    _write(tmp_path, "central/household.csv.zip.part")
    reason = waiting_for(scan(tmp_path), scan(tmp_path).digest)
    assert reason and "still being copied: central/household.csv.zip.part" in reason


def test_unrecognised_files_are_named_with_a_hint(tmp_path: Path) -> None:
    files = ["central/household.csv.zip", "central/household (1).csv.zip", "central/notes.txt",
             "central/child.zip", "central/roster.csv.zip", "kobo/child.json", "kobo/x.csv",
             "kobo/other.json", "xml/tablet-07/instances/a/a.xml", "xml/stray.xml",
             "design/households.parquet", "design/psus.parquet", "faults.json",
             "central-api/child.parquet", "household.csv.zip", "readme.txt", ".DS_Store",
             "instances/a.xml", "instances/b.xml"]
    got = classify(files, FORMS)
    assert got.recognised["central"] == ["central/household.csv.zip"]
    assert got.recognised["kobo"] == ["kobo/child.json"]
    assert got.recognised["xml"] == ["xml/tablet-07"]
    hints = {u.path: u.hint for u in got.unrecognised}
    assert str(next(u for u in got.unrecognised if u.path == "central/household (1).csv.zip")) \
        .startswith("not recognised: central/household (1).csv.zip — an ODK Central export "
                    "must be named <form_id>.csv.zip (a renamed second download of "
                    "household.csv.zip?")
    assert "wrong extension" in hints["central/notes.txt"]
    assert "'roster' is not one of the study's forms" in hints["central/roster.csv.zip"]
    assert ".csv.zip" in hints["central/child.zip"]
    assert "wrong extension" in hints["kobo/x.csv"]
    assert "starts with none of the study's forms" in hints["kobo/other.json"]
    assert "folder under xml/" in hints["xml/stray.xml"]
    assert "goes in central/" in hints["household.csv.zip"]
    assert "stray file" in hints["readme.txt"]
    assert "not part of the landing layout" in hints["instances/ (2 files)"]
    assert len(got.unrecognised) == 10  # .DS_Store is clutter, not reported


def test_exports_follow_the_layout(tmp_path: Path) -> None:
    store = Store(tmp_path)
    landing = store.landing("KEN")
    for rel in ("central/child.csv.zip", "central/child (1).csv.zip", "kobo/child.json",
                "kobo/child-2.json", "kobo/household.json", "xml/tablet-1/a/submission.xml",
                "xml/briefcase/x.xml", "xml/loose.xml"):
        _write(landing, rel)
    got = [p.relative_to(landing).as_posix() for p in store.exports("KEN", "child")]
    assert got == ["central/child.csv.zip", "kobo/child-2.json", "kobo/child.json",
                   "xml/briefcase", "xml/tablet-1"]


def test_thousands_of_xml_files_are_scanned_from_their_metadata_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What keeps the sensor's scan cheap (its time is not asserted: speed is measured in
    bench/): each folder is listed once and no file is opened, however many there are."""
    for device in range(10):
        for n in range(500):
            _write(tmp_path, f"xml/tablet-{device}/instances/child_{n}/child_{n}.xml", b"<d/>")
    listed: list[str] = []
    opened: list[str] = []
    scandir, open_ = os.scandir, builtins.open
    monkeypatch.setattr(os, "scandir", lambda path: listed.append(str(path)) or scandir(path))
    monkeypatch.setattr(builtins, "open",
                        lambda file, *a, **k: opened.append(str(file)) or open_(file, *a, **k))
    state = scan(tmp_path)
    monkeypatch.undo()
    assert len(state.files) == 5000
    assert opened == []
    folders = {str(p) for p in tmp_path.rglob("*") if p.is_dir()} | {str(tmp_path)}
    assert sorted(listed) == sorted(folders)
    classify(state.files, FORMS)
