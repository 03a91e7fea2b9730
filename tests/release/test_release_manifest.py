"""The release manifest ties every file to its form version and checksum."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd

from dhsurvey.forms.model import FormModel
from dhsurvey.release.manifest import MANIFEST, write_manifest
from dhsurvey.release.writers import write_release


def test_manifest_lists_every_file_with_form_version_and_checksum(
        tmp_path: Path, tables: dict[str, pd.DataFrame], models: dict[str, FormModel]) -> None:
    write_release(tables, models, tmp_path)
    (tmp_path / "notes.md").write_text("about this release\n")
    path = write_manifest(tmp_path, tables, models, {"country": "KEN", "release": "r1"})
    manifest = json.loads(path.read_text())
    assert manifest["country"] == "KEN" and manifest["release"] == "r1"
    names = [f["file"] for f in manifest["files"]]
    assert names == sorted(p.name for p in tmp_path.iterdir() if p.name != MANIFEST)
    for entry in manifest["files"]:
        data = (tmp_path / entry["file"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["bytes"] == len(data)
    child_dta = next(f for f in manifest["files"] if f["file"] == "child.dta")
    assert child_dta["table"] == "child"
    assert manifest["tables"]["child"]["version"] == models["child"].version
    assert manifest["tables"]["household.roster"]["form_id"] == "household"
    assert manifest["tables"]["child"]["rows"] == len(tables["child"])
    assert "table" not in next(f for f in manifest["files"] if f["file"] == "notes.md")

    # No timestamps: the same folder gives the same bytes; a changed file a new checksum.
    first = path.read_bytes()
    assert write_manifest(tmp_path, tables, models, {"country": "KEN",
                                                     "release": "r1"}).read_bytes() == first
    (tmp_path / "notes.md").write_text("changed\n")
    assert write_manifest(tmp_path, tables, models, {"country": "KEN",
                                                     "release": "r1"}).read_bytes() != first
