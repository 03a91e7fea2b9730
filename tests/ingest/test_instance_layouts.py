"""Submissions in every folder layout the field uses reach the same tables.

A country's simulated interviews are laid out as an ODK Collect device folder (plain and
encrypted), ODK Briefcase storage, a flat folder of instance documents and Central's
per-submission XML with attachments. Each must ingest, validate and decrypt to exactly what the
simulator's own folders give, with the note elements real clients write taken as the form's own.
"""

from __future__ import annotations

import json
import logging
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from dhsurvey.cli import app
from dhsurvey.fieldwork.config import load_country
from dhsurvey.fieldwork.run import simulate_to
from dhsurvey.fieldwork.simulate import FORMS
from dhsurvey.forms.model import FormModel, load_form
from dhsurvey.ingest.canonical import RawForm, assert_same_content
from dhsurvey.ingest.decrypt import decrypt_folder
from dhsurvey.ingest.instances import discover_instances
from dhsurvey.ingest.read import read_export, read_export_forms
from dhsurvey.ingest.run import ingest_exports
from dhsurvey.ingest.xmlfolder import read_xml_folder
from tests.ingest.test_roundtrip import rsa_pair

ROOT = Path(__file__).parents[2]
INSTRUMENTS = ROOT / "instruments"
MODELS = {f: load_form(INSTRUMENTS / f"{f}.xlsx") for f in FORMS}
CONFIG = load_country(INSTRUMENTS / "countries" / "ZAF.yaml")
FORM_DEFINITION = (b'<?xml version="1.0"?>\n<h:html xmlns="http://www.w3.org/2002/xforms" '
                   b'xmlns:h="http://www.w3.org/1999/xhtml"><h:head><h:title>form</h:title>'
                   b'</h:head><h:body/></h:html>\n')


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Simulated ZAF fieldwork as instance folders, plain and encrypted (Collect's way)."""
    base = tmp_path_factory.mktemp("layouts")
    private, public = rsa_pair()
    plain = simulate_to(base / "plain", [CONFIG], MODELS, seed=5, households=40,
                        formats=("xml",))[0].folder / "xml"
    enc = simulate_to(base / "enc", [CONFIG], MODELS, seed=5, households=40,
                      formats=("xml",), public_key_pem=public)[0].folder / "xml"
    (base / "key.pem").write_bytes(private)
    return {"plain": plain, "enc": enc, "key": base / "key.pem", "base": base}


def expected(sim: dict[str, Path]) -> dict[str, RawForm]:
    return {f: read_xml_folder(sim["plain"] / f, MODELS[f]) for f in FORMS
            if (sim["plain"] / f).is_dir()}


def with_notes(xml: bytes, model: FormModel) -> bytes:
    """The document as ODK Collect writes it: every note an empty element in its container."""
    root = ET.fromstring(xml)
    for item in model.items:
        if item.type != "note":
            continue
        containers = [root]
        for step in item.path:
            containers = [c for parent in containers for c in parent if c.tag == step]
        for container in containers:
            ET.SubElement(container, item.name)
    return ET.tostring(root, xml_declaration=True, encoding="utf-8")


def collect_name(instance: Path, form: str) -> str:
    """Collect's instance name ``<form>_<yyyy-mm-dd_hh-mm-ss>``, from the receipt time."""
    stamp = ET.fromstring((instance / "submission.xml").read_bytes()).get("submissionDate") or \
        "2026-03-01T00:00:00"
    return f"{form}_{stamp[:19].replace('T', '_').replace(':', '-')}_{instance.name[-6:]}"


def collect_device(src: Path, out: Path, *, encrypted: bool = False) -> Path:
    """``odk/`` as copied off a tablet: forms with media, instances of every form, metadata."""
    odk = out / "odk"
    for form, model in MODELS.items():
        if not (src / form).is_dir():
            continue
        (odk / "forms" / f"{form}-media").mkdir(parents=True, exist_ok=True)
        (odk / "forms" / f"{form}.xml").write_bytes(FORM_DEFINITION)
        (odk / "forms" / f"{form}-media" / "itemsets.xml").write_bytes(b"<root><item/></root>")
        for inst in sorted(p for p in (src / form).iterdir() if p.is_dir()):
            name = collect_name(inst, form)
            target = odk / "instances" / name
            target.mkdir(parents=True)
            if encrypted:  # Collect keeps the manifest and the .enc files, not the plain XML
                for f in inst.iterdir():
                    shutil.copy2(f, target / f.name)
            else:
                xml = with_notes((inst / "submission.xml").read_bytes(), model)
                (target / f"{name}.xml").write_bytes(xml)
                (target / "1712345678901.jpg").write_bytes(b"\xff\xd8 photo")
    (odk / "metadata").mkdir(parents=True)
    (odk / "metadata" / "instances.db").write_bytes(b"SQLite format 3\x00")
    return odk


def briefcase(src: Path, out: Path, form: str) -> Path:
    """ODK Briefcase storage of one form: definition beside ``instances/<uuid…>/``."""
    folder = out / "ODK Briefcase Storage" / "forms" / "Child questionnaire"
    (folder / "instances").mkdir(parents=True)
    (folder / "Child questionnaire.xml").write_bytes(FORM_DEFINITION)
    for inst in sorted(p for p in (src / form).iterdir() if p.is_dir()):
        shutil.copytree(inst, folder / "instances" / inst.name)
    return folder


def flat(src: Path, out: Path, form: str) -> Path:
    """A flat folder of documents; one with its attachments beside it (Central's download)."""
    out.mkdir(parents=True)
    for i, inst in enumerate(sorted(p for p in (src / form).iterdir() if p.is_dir())):
        xml = (inst / "submission.xml").read_bytes()
        key = ET.fromstring(xml).find("meta/instanceID")
        stem = key.text if key is not None and key.text else inst.name
        (out / f"{stem}.xml").write_bytes(xml)
        if i == 0:
            (out / stem).mkdir()
            (out / stem / "audio.m4a").write_bytes(b"audio")
    return out


def test_a_collect_device_folder_reads_every_form(sim: dict[str, Path], tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    device = collect_device(sim["plain"], tmp_path)
    caplog.set_level(logging.WARNING)
    tables = {r.form_id: r for r in read_export_forms(device, MODELS)}
    want = expected(sim)
    assert set(tables) == set(want) and len(want) >= 3
    for form, raw in tables.items():
        assert raw.quarantine.empty, raw.quarantine.to_dict("records")
        assert_same_content(want[form], raw)
    assert "elements the form does not have" not in caplog.text  # notes are the form's own
    # One form's read of the shared folder takes its own submissions only
    child = read_export_forms(device, MODELS, only="child")
    assert [len(r.root) for r in child] == [len(want["child"].root)]
    with pytest.raises(Exception, match="several forms"):
        read_export(device, MODELS)


def test_an_encrypted_collect_device_folder_decrypts_and_ingests(sim: dict[str, Path],
                                                                tmp_path: Path) -> None:
    device = collect_device(sim["enc"], tmp_path / "dev", encrypted=True)
    key = sim["key"].read_bytes()
    want = expected(sim)
    tables = {r.form_id: r for r in read_export_forms(device, MODELS, private_key_pem=key)}
    for form, raw in tables.items():
        assert raw.quarantine.empty, raw.quarantine.to_dict("records")
        assert_same_content(want[form], raw)
    report = decrypt_folder(device, tmp_path / "plain", key)
    assert not report.failed and report.plain == []
    assert len(report.decrypted) == sum(len(r.root) for r in want.values())
    again = {r.form_id: r for r in read_export_forms(tmp_path / "plain", MODELS)}
    for form, raw in again.items():
        assert_same_content(want[form], raw)


@pytest.mark.parametrize("level", ["storage", "form", "instances"])
def test_briefcase_storage_decrypts_from_any_level(sim: dict[str, Path], tmp_path: Path,
                                                   level: str) -> None:
    form_folder = briefcase(sim["enc"], tmp_path / "bc", "child")
    point = {"storage": tmp_path / "bc", "form": form_folder,
             "instances": form_folder / "instances"}[level]
    runner = CliRunner()
    result = runner.invoke(app, ["decrypt", "--key", str(sim["key"]), str(point),
                                 str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    want = expected(sim)["child"]
    got = read_xml_folder(tmp_path / "out", MODELS["child"])
    assert len(got.root) == len(want.root) > 0
    assert_same_content(want, got)


def test_flat_folders_and_central_downloads_ingest(sim: dict[str, Path], tmp_path: Path) -> None:
    folder = flat(sim["plain"], tmp_path / "flat", "household")
    found = discover_instances(folder)
    assert len(found) == len(expected(sim)["household"].root)
    assert sum(i.media is not None for i in found) == 1  # the one with its attachments
    results = ingest_exports([folder], MODELS, [CONFIG], tmp_path / "data")
    [household] = [r for r in results if r.form_id == "household"]
    assert household.country == "ZAF" and household.quarantined == 0
    assert household.submissions == len(found)
    stored = pd.read_parquet(household.paths[0])
    assert set(stored["KEY"]) == set(expected(sim)["household"].root["KEY"])


def test_validate_takes_a_device_folder(sim: dict[str, Path], tmp_path: Path) -> None:
    device = collect_device(sim["plain"], tmp_path / "dev")
    out = tmp_path / "v"
    result = CliRunner().invoke(app, ["validate", str(device), "--out", str(out), "--country",
                                      "ZAF", "--instruments", str(INSTRUMENTS)])
    assert result.exit_code == 0, result.output
    for form, raw in expected(sim).items():
        rec = json.loads((out / form / "reconciliation.json").read_text())
        assert rec["balanced"] and rec["raw"] == len(raw.root), (form, rec)
        assert len(pd.read_parquet(out / form / "accepted.parquet")) > 0


def test_a_damaged_instance_is_quarantined_once_under_its_form(sim: dict[str, Path],
                                                               tmp_path: Path) -> None:
    device = collect_device(sim["plain"], tmp_path / "dev")
    damaged = sorted((device / "instances").glob("child_*"))[0]
    next(damaged.glob("*.xml")).write_bytes(b"<child id='child'><unclosed>")
    lost = device / "instances" / "caregiver_2026-03-02_10-00-00_lostxml"
    lost.mkdir()
    (lost / "1712345678901.jpg").write_bytes(b"photo")  # the document went missing
    tables = {r.form_id: r for r in read_export_forms(device, MODELS)}
    rules = {form: list(r.quarantine["rule"]) for form, r in tables.items()}
    assert rules["child"] == ["xml-unreadable"]
    assert rules["caregiver"] == ["xml-missing"]
    assert rules["household"] == []
    want = expected(sim)
    assert len(tables["child"].root) == len(want["child"].root) - 1


def test_an_edit_carries_the_instance_it_replaces(sim: dict[str, Path], tmp_path: Path) -> None:
    """An edited submission (Collect, Central) names the original in ``meta/deprecatedID``."""
    folder = flat(sim["plain"], tmp_path / "flat", "caregiver")
    original = sorted(folder.glob("*.xml"))[0]
    root = ET.fromstring(original.read_bytes())
    meta = root.find("meta")
    assert meta is not None
    old_id = meta.findtext("instanceID")
    meta.find("instanceID").text = "uuid:00000000-0000-4000-8000-00000000e617"  # type: ignore
    ET.SubElement(meta, "deprecatedID").text = old_id
    (folder / "edited.xml").write_bytes(ET.tostring(root))
    raw = read_xml_folder(folder, MODELS["caregiver"])
    edits = raw.root.set_index("KEY")["deprecated_id"].dropna()
    assert edits.to_dict() == {"uuid:00000000-0000-4000-8000-00000000e617": old_id}


def test_what_no_study_form_claims_is_quarantined_once(tmp_path: Path) -> None:
    """A folder of a retired form's instances and damaged XML, read for every study form (as
    each form's ingest reads every landing xml/ folder): each lands in one form's quarantine."""
    folder = tmp_path / "xml" / "old"
    for i, body in enumerate([b"<pilot id='pilot_2025'><a>1</a><meta><instanceID>uuid:p1"
                              b"</instanceID></meta></pilot>", b"<broken"]):
        (folder / f"inst{i}").mkdir(parents=True)
        (folder / f"inst{i}" / "submission.xml").write_bytes(body)
    (folder / "inst1" / "Thumbs.db").write_bytes(b"litter")
    (folder / "inst2").mkdir()
    (folder / "inst2" / "Thumbs.db").write_bytes(b"litter")  # no submission, only litter
    (folder / "inst0" / "loop").symlink_to(folder, target_is_directory=True)
    counts = {form: len(read_export_forms(folder, MODELS, only=form)[0].quarantine)
              for form in MODELS}
    assert sum(counts.values()) == 2 and sorted(counts.values())[-1] == 2, counts
    assert len(discover_instances(folder)) == 2


def test_the_receipt_time_goes_on_the_root_element() -> None:
    """One writer of Briefcase's ``submissionDate``: Central downloads replace a device's,
    decrypted documents keep their own."""
    from dhsurvey.ingest.instances import with_submission_date

    doc = b'<?xml version="1.0"?><data id="f" submissionDate="2026-01-01"><a/></data>'
    assert with_submission_date(doc, "2026-03-01T10:00:00.000Z") == (
        b'<?xml version="1.0"?><data id="f" submissionDate="2026-03-01T10:00:00.000Z"><a/></data>')
    assert with_submission_date(doc, "2026-03-01T10:00:00.000Z", keep_own=True) == doc
    assert with_submission_date(b"<data id='f'/>", "T") == b"<data id='f' submissionDate=\"T\"/>"
    assert with_submission_date(b"<data id='f'/>", None) == b"<data id='f'/>"


def test_a_document_changed_since_the_last_discovery_is_looked_at_again(tmp_path: Path) -> None:
    """Discovery remembers what each document is while it is unchanged (each form's ingest
    walks every instance folder); a document rewritten in place is classified afresh."""
    import os

    folder = tmp_path / "instances" / "a"
    folder.mkdir(parents=True)
    doc = folder / "submission.xml"
    doc.write_text('<data id="household"><meta><instanceID>uuid:1</instanceID></meta></data>')
    (first,) = discover_instances(tmp_path / "instances")
    assert first.form_id == "household"
    doc.write_text('<data id="child"><meta><instanceID>uuid:1</instanceID></meta></data>  ')
    stat = doc.stat()
    os.utime(doc, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    (again,) = discover_instances(tmp_path / "instances")
    assert again.form_id == "child"


def test_a_country_ingest_walks_each_instance_folder_once(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Every form of a country reads every folder of instance XML; one ingest walks each
    folder once and gives the tables that reading each form alone gives."""
    from dhsurvey.ingest import read
    from dhsurvey.store import Store
    from dhsurvey.study import Study, ingest, ingest_form

    study = Study.load(INSTRUMENTS)
    store = Store(tmp_path)
    simulate_to(store.landing(), [CONFIG], study.models, seed=5, households=20,
                formats=("central", "xml"))
    alone = {form: ingest_form(store, study, "ZAF", form).raw for form in study.models}
    walked: list[Path] = []
    monkeypatch.setattr(read, "discover_instances",
                        lambda folder: walked.append(Path(folder)) or discover_instances(folder))
    together = ingest(store, study, "ZAF")
    folders = [p for p in (store.landing("ZAF") / "xml").iterdir() if p.is_dir()]
    assert len(folders) == len(study.models) and sorted(walked) == sorted(folders)
    for form, raw in alone.items():
        assert_same_content(together[form].raw, raw)


def test_folders_copied_off_some_tablets_add_nothing_to_central(tmp_path: Path) -> None:
    """With ``devices``, the instance folders are those of that share of the tablets, every
    one a submission the Central export holds too; ingesting both gives what Central gives
    alone. A folder layout with no other export still gets every submission."""
    from dhsurvey.store import Store
    from dhsurvey.study import Study, ingest_form

    study = Study.load(INSTRUMENTS)
    store = Store(tmp_path / "both")
    simulate_to(store.landing(), [CONFIG], study.models, seed=5, households=60,
                formats=("central", "xml"), devices=0.25)
    central = {f: read_export(store.landing("ZAF") / "central" / f"{f}.csv.zip", study.models)
               for f in study.models}
    tablets = {f: set(central[f].root["deviceid"]) for f in central}
    seen = set().union(*tablets.values())
    pulled: set[str] = set()
    for form, raw in central.items():
        folder = read_xml_folder(store.landing("ZAF") / "xml" / form, study.models[form])
        on = set(folder.root["deviceid"])
        assert on < tablets[form] or len(tablets[form]) == 1
        pulled |= on
        by_key = raw.root.set_index("KEY")
        assert set(folder.root["KEY"]) == set(by_key.index[by_key["deviceid"].isin(on)])
        assert_same_content(ingest_form(store, study, "ZAF", form).raw, raw)
    assert len(pulled) == round(0.25 * len(seen))

    alone = simulate_to(tmp_path / "xml", [CONFIG], study.models, seed=5, households=60,
                        formats=("xml",), devices=0.25)[0]
    for form, count in alone.counts.items():
        assert len(discover_instances(alone.folder / "xml" / form)) == count
