"""The writers produce the layouts ODK Central, KoboToolbox and devices produce."""

from __future__ import annotations

import csv
import io
import json
import random
import re
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest
from test_roundtrip import rsa_pair, synthetic_raw

from dhsurvey.fieldwork.exports import (
    instance_folder_name,
    write_central_zip,
    write_kobo_json,
    write_xml_folder,
)
from dhsurvey.forms.model import FormModel, load_form
from dhsurvey.ingest.canonical import RawForm
from dhsurvey.ingest.decrypt import decrypt_submission

ROOT = Path(__file__).resolve().parents[2]
UUID = r"uuid:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


@pytest.fixture(scope="module")
def hh() -> FormModel:
    return load_form(ROOT / "instruments" / "household.xlsx")


@pytest.fixture(scope="module")
def raw(hh: FormModel) -> RawForm:
    return synthetic_raw(hh, n=12)


def _row(raw: RawForm, **where: object) -> dict:
    """The first root row matching ``where`` (column → value, or callable(value) → bool)."""
    for rec in raw.root.to_dict("records"):
        if all(w(rec[k]) if callable(w) else rec[k] == w for k, w in where.items()):
            return rec
    raise AssertionError(f"no synthetic row with {where}")


def _zip_tables(path: Path) -> dict[str, str]:
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n).decode("utf-8") for n in zf.namelist()}


# --------------------------------------------------------------------------- Central


def test_central_zip_members_and_root_header(hh: FormModel, raw: RawForm, tmp_path: Path) -> None:
    tables = _zip_tables(write_central_zip(raw, hh, tmp_path / "hh.zip"))
    assert list(tables) == ["household.csv", "household-roster.csv"]
    header = next(csv.reader(io.StringIO(tables["household.csv"])))
    assert header[:6] == ["SubmissionDate", "start", "end", "today", "deviceid",
                          "hh_id-country"]
    gps = header.index("hh_id-gps-Latitude")
    assert header[gps:gps + 4] == ["hh_id-gps-Latitude", "hh_id-gps-Longitude",
                                   "hh_id-gps-Altitude", "hh_id-gps-Accuracy"]
    assert "hh_id-gps" not in header
    assert {"visit_1-v1_outcome", "hh_interview-hh_size", "hh_interview-selection-sel_line",
            "result-disposition", "consent"} <= set(header)
    assert not any(h.startswith("hh_interview-roster-") or h == "roster_intro" for h in header)
    assert header[-11:] == ["meta-instanceID", "KEY", "SubmitterID", "SubmitterName",
                            "AttachmentsPresent", "AttachmentsExpected", "Status",
                            "ReviewState", "DeviceID", "Edits", "FormVersion"]


def test_central_rows_keys_and_quoting(hh: FormModel, raw: RawForm, tmp_path: Path) -> None:
    tables = _zip_tables(write_central_zip(raw, hh, tmp_path / "hh.zip"))
    text = tables["household.csv"]
    # records end in "\n" (csv-stringify); a "\r" only appears inside an answer
    assert text.endswith("\n") and "\r" not in text.replace("line\r\nbreak", "")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert len(rows) == len(raw.root)
    for row in rows:
        assert re.fullmatch(UUID, row["KEY"]) and row["meta-instanceID"] == row["KEY"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", row["SubmissionDate"])
        assert row["Edits"] == "0" and row["Status"] == ""
    rec = _row(raw, gps=lambda v: v is not None)
    row = next(r for r in rows if r["KEY"] == rec["KEY"])
    assert " ".join(row[f"hh_id-gps-{p}"] for p in ("Latitude", "Longitude", "Altitude",
                                                     "Accuracy")) == rec["gps"]
    assert row["FormVersion"] == rec["form_version"] and row["DeviceID"] == rec["deviceid"]
    # a text with a comma and quotes is quoted as csv-stringify does
    assert '"Amina, ""Mama"" wa Wanjiru"' in text + tables["household-roster.csv"]
    # non-relevant (None) → empty cell
    none_rec = _row(raw, v2_outcome=None)
    none_row = next(r for r in rows if r["KEY"] == none_rec["KEY"])
    assert none_row["visit_2-v2_outcome"] == ""


def test_central_repeat_table(hh: FormModel, raw: RawForm, tmp_path: Path) -> None:
    tables = _zip_tables(write_central_zip(raw, hh, tmp_path / "hh.zip"))
    rows = list(csv.reader(io.StringIO(tables["household-roster.csv"], newline="")))
    assert rows[0] == ["line", "first_name", "sex", "age", "relation", "internet_use",
                       "eligible", "PARENT_KEY", "KEY"]
    assert len(rows) - 1 == len(raw.repeats["roster"]) > 0
    for row in rows[1:]:
        assert re.fullmatch(UUID, row[-2])
        assert re.fullmatch(re.escape(row[-2]) + r"/hh_interview/roster\[[1-4]\]", row[-1])


# --------------------------------------------------------------------------- Kobo


def test_kobo_json_shape_and_keys(hh: FormModel, raw: RawForm, tmp_path: Path) -> None:
    [path] = write_kobo_json(raw, hh, tmp_path / "hh.json")
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert list(doc) == ["count", "next", "previous", "results"]
    assert doc["count"] == len(doc["results"]) == len(raw.root)
    assert doc["next"] is None and doc["previous"] is None
    for n, res in enumerate(doc["results"], start=1):
        rec = raw.root.iloc[n - 1]
        assert res["_id"] == n and isinstance(res["_id"], int)
        assert res["meta/instanceID"] == rec["KEY"] == f"uuid:{res['_uuid']}"
        assert res["_xform_id_string"] == "household"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", res["_submission_time"])
        assert rec["submission_time"].startswith(res["_submission_time"])
        assert res["_attachments"] == [] and res.get("__version__") == rec["form_version"]
        assert isinstance(res["_validation_status"], dict)
        answers = {k: v for k, v in res.items()
                   if not k.startswith("_") and k != "hh_interview/roster"}
        assert all(isinstance(v, str) for v in answers.values())
        assert "hh_id/country" in res and "country" not in res
        if rec["gps"] is None:
            assert res["_geolocation"] == [None, None] and "hh_id/gps" not in res
        else:
            assert res["hh_id/gps"] == rec["gps"]
            assert res["_geolocation"] == [float(x) for x in rec["gps"].split()[:2]]
        # non-relevant fields are absent, not null
        assert all(k.split("/")[-1] not in rec or rec[k.split("/")[-1]] is not None
                   for k in answers if k not in ("formhub/uuid", "meta/instanceID",
                                                 "__version__"))
    with_roster = [r for r in doc["results"] if "hh_interview/roster" in r]
    assert with_roster
    for res in with_roster:
        for member in res["hh_interview/roster"]:
            assert member and all(k.startswith("hh_interview/roster/") for k in member)
            assert all(isinstance(v, str) for v in member.values())


def test_kobo_validation_status(hh: FormModel, raw: RawForm, tmp_path: Path) -> None:
    [path] = write_kobo_json(raw, hh, tmp_path / "hh.json")
    doc = json.loads(path.read_text(encoding="utf-8"))
    by_key = {r["meta/instanceID"]: r for r in doc["results"]}
    rec = _row(raw, review_state="approved")
    assert by_key[rec["KEY"]]["_validation_status"]["uid"] == "validation_status_approved"
    rec = _row(raw, review_state=None)
    assert by_key[rec["KEY"]]["_validation_status"] == {}


# --------------------------------------------------------------------------- XML


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def test_xml_instance_structure(hh: FormModel, raw: RawForm, tmp_path: Path) -> None:
    folders = write_xml_folder(raw, hh, tmp_path / "inst")
    assert len(folders) == len(raw.root)
    rec = _row(raw, gps=lambda v: v is not None, consent="1", hh_size=lambda v: v is not None)
    folder = tmp_path / "inst" / instance_folder_name(rec["KEY"])
    assert folder.name == rec["KEY"].replace(":", "")
    root = ET.parse(folder / "submission.xml").getroot()
    assert root.tag == "data" and root.get("id") == "household"
    assert root.get("version") == rec["form_version"]
    assert root.get("submissionDate") == rec["submission_time"]
    assert [_local(c.tag) for c in root][-1] == "meta"
    assert root.findtext("meta/instanceID") == rec["KEY"]
    assert root.findtext("hh_id/country") == rec["country"]
    assert root.findtext("hh_id/gps") == rec["gps"]
    assert root.find("country") is None  # fields sit inside their groups
    assert root.findtext("hh_interview/hh_size") == rec["hh_size"]
    members = raw.repeats["roster"][raw.repeats["roster"]["PARENT_KEY"] == rec["KEY"]]
    assert len(root.findall("hh_interview/roster")) == len(members)
    assert [e.findtext("age") for e in root.findall("hh_interview/roster")] == \
        list(members["age"])


def test_xml_non_relevant_absent(hh: FormModel, raw: RawForm, tmp_path: Path) -> None:
    write_xml_folder(raw, hh, tmp_path / "inst")
    rec = _row(raw, v2_outcome_oth=None, v1_outcome_oth=lambda v: v is not None)
    root = ET.parse(tmp_path / "inst" / instance_folder_name(rec["KEY"]) /
                    "submission.xml").getroot()
    assert root.find("visit_2/v2_outcome_oth") is None
    assert root.findtext("visit_1/v1_outcome_oth") == rec["v1_outcome_oth"]
    none_group = _row(raw, disposition=None, disposition_oth=None)
    root = ET.parse(tmp_path / "inst" / instance_folder_name(none_group["KEY"]) /
                    "submission.xml").getroot()
    assert root.find("result") is None  # a group with nothing in it is absent too
    assert b"<v2_outcome_oth/>" not in b"".join(
        p.read_bytes() for p in (tmp_path / "inst").rglob("submission.xml"))


def test_xml_escapes_and_keeps_text(hh: FormModel, raw: RawForm, tmp_path: Path) -> None:
    write_xml_folder(raw, hh, tmp_path / "inst")
    data = b"".join(p.read_bytes() for p in (tmp_path / "inst").rglob("submission.xml"))
    assert b"Shule &amp; &lt;darasa&gt; la saba" in data
    assert b"line&#13;\nbreak" in data  # \r survives XML line-end normalisation


def test_xml_encrypted_layout(hh: FormModel, raw: RawForm, tmp_path: Path) -> None:
    private, public = rsa_pair()
    folders = write_xml_folder(raw, hh, tmp_path / "enc", public_key_pem=public,
                               rng=random.Random(3).randbytes)
    rec = raw.root.iloc[0]
    inst = folders[0]
    manifest = (inst / "submission.xml").read_bytes()
    root = ET.fromstring(manifest)
    assert root.get("encrypted") == "yes" and root.get("id") == "household"
    assert root.get("submissionDate") == rec["submission_time"]
    assert b"Amina" not in manifest
    plain = decrypt_submission(manifest, {"submission.xml.enc":
                                          (inst / "submission.xml.enc").read_bytes()}, private)
    assert plain.instance_id == rec["KEY"] and plain.version == rec["form_version"]
    inner = ET.fromstring(plain.xml)
    assert inner.get("id") == "household" and inner.get("submissionDate") is None


def test_xml_instances_written_whole_and_rewritten_in_place(hh: FormModel, raw: RawForm,
                                                            tmp_path: Path) -> None:
    """A new instance folder appears by one rename (nothing hidden is left behind); writing
    the same tables again replaces the files in place with the same bytes, 0600 each."""
    folder = tmp_path / "inst"
    first = write_xml_folder(raw, hh, folder)
    before = {p: p.read_bytes() for d in first for p in d.iterdir()}
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]
    again = write_xml_folder(raw, hh, folder)
    assert again == first
    assert {p: p.read_bytes() for d in again for p in d.iterdir()} == before
    assert not [p for p in folder.rglob(".*")]
    assert {p.stat().st_mode & 0o777 for p in before} == {0o600}
    assert {d.stat().st_mode & 0o777 for d in first} == {0o700}
