"""ODK Central through pyodk, against the real ODK Central (tests/central_server.py).

Every test that talks to a server talks to the real Central backend, each in a fresh project:
forms compiled from the project's workbooks are published, submissions are sent as ODK Collect
sends them (OpenRosa multipart, with attachments), and they come back through OData (pyodk),
the CSV zip export and the single-submission API. The OData reader is also tested alone on
hand-written Central-shaped JSON.

Faults real Central cannot be made to produce are tested without a server, on a stand-in pyodk
client (no HTTP): a ``@odata.nextLink`` that never ends (``central-paging``). A missing config,
an unreachable server and a missing attachment need no server either.
"""

from __future__ import annotations

import io
import json
import zipfile
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from central_server import CentralProject, same_answers
from workbooks import EN, c, q, write_workbook

from dhsurvey.errors import DhsurveyError
from dhsurvey.forms.compile import to_xform
from dhsurvey.forms.frames import PARENT
from dhsurvey.forms.model import FormModel, load_form
from dhsurvey.ingest.canonical import (
    META,
    REPEAT_META,
    RawForm,
    assert_same_content,
    field_columns,
    repeat_key,
)
from dhsurvey.ingest.central import read_central_zip
from dhsurvey.ingest.central_api import (
    STATE_FILE,
    download_csv_zip,
    download_submissions,
    fetch_submissions,
    get_draft,
    publish_form,
    submit_instances,
)
from dhsurvey.ingest.odata import parent_id_field, read_odata, table_name
from dhsurvey.ingest.xmlfolder import read_xml_folder

HOUSEHOLD = Path(__file__).resolve().parents[2] / "instruments" / "household.xlsx"


# -- fixtures and builders ------------------------------------------------------------------------


@cache
def household() -> FormModel:
    return load_form(HOUSEHOLD)


def frame_of(records: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    """Records as an all-object table with exactly ``columns`` (missing values None)."""
    return pd.DataFrame([[r.get(c) for c in columns] for r in records], columns=columns,
                        dtype=object)


def _answer(item, i: int, model: FormModel) -> str | None:
    """A plausible device-written answer for one field of submission ``i``."""
    kind = item.type
    if kind in ("start", "end"):
        return f"2026-03-0{1 + i % 9}T0{8 + (kind == 'end')}:1{i % 10}:00.000+03:00"
    if kind in ("today", "date"):
        return f"2026-03-0{1 + i % 9}"
    if kind == "deviceid":
        return f"collect:device{i % 3}"
    if kind == "geopoint":
        # No trailing zeros: Central's OData prints numbers, so "4.0" would come back "4".
        return f"-1.29{i:02d}1 36.82{i:02d}3 1650.5 4.{1 + i % 9}"
    if kind == "integer":
        return str(3 + i)
    if kind == "select_one":
        codes = model.choice_lists[item.list_name].codes()
        return codes[i % len(codes)]
    if kind == "text":
        return None if item.name.endswith("_oth") else f"{item.name} {i}"
    if kind == "calculate":
        return str(i % 2)
    return f"{item.name}-{i}"


def household_raw(n: int, *, start: int = 0, minute0: int = 0) -> RawForm:
    """``n`` household submissions (indices from ``start``) as a canonical RawForm.

    Visits 2 and 3 are left unanswered (None) so nulls travel too; the roster has 1–3 members.
    """
    model = household()
    roots, roster = [], []
    for i in range(start, start + n):
        key = f"uuid:00000000-0000-4000-8000-{i:012d}"
        row: dict[str, str | None] = {
            "KEY": key, "form_id": model.form_id, "form_version": model.version,
            "submission_time": f"2026-03-01T10:{minute0 + i:02d}:00.{i:03d}Z",
            "submitter": f"enumerator {i % 2}", "review_state": "approved" if i % 3 == 0
            else None, "source_format": "fixture", "source_file": None,
        }
        for item in model.fields_in(None):
            blank = item.path[:1] in (("visit_2",), ("visit_3",))
            row[item.name] = None if blank else _answer(item, i, model)
        roots.append(row)
        for pos in range(1, 2 + i % 3):
            member = {"KEY": repeat_key(key, model, "roster", pos), PARENT: key}
            for item in model.fields_in("roster"):
                member[item.name] = str(pos) if item.name == "line" else _answer(item, i + pos,
                                                                                  model)
            roster.append(member)
    return RawForm(
        model.form_id,
        frame_of(roots, META + field_columns(model)),
        {"roster": frame_of(roster, REPEAT_META + field_columns(model, "roster"))},
    )


def concat(*raws: RawForm) -> RawForm:
    first = raws[0]
    return RawForm(first.form_id, pd.concat([r.root for r in raws], ignore_index=True),
                   {name: pd.concat([r.repeats[name] for r in raws], ignore_index=True)
                    for name in first.repeats})


def _state(state_dir: Path) -> dict[str, Any]:
    state = json.loads((state_dir / STATE_FILE).read_text())
    (entry,) = [v for server in state["servers"].values() for v in server.values()]
    return entry


# -- authentication and configuration -------------------------------------------------------------


def test_wrong_password_is_a_clear_error(central: CentralProject) -> None:
    wrong = "not-the-password-42"
    central.config.write_text(central.pyodk_config(password=wrong))
    with pytest.raises(DhsurveyError) as info:
        fetch_submissions("household", household())
    err = info.value
    assert err.code == "central-auth"
    assert central.base_url in str(err) and "pyodk config" in str(err)
    assert "Could not authenticate" in str(err)  # Central's own problem message
    assert wrong not in str(err) and wrong not in repr(err.context)


def test_missing_config_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYODK_CONFIG_FILE", str(tmp_path / "absent.toml"))
    with pytest.raises(DhsurveyError) as info:
        fetch_submissions("household", household())
    assert info.value.code == "central-config"
    assert info.value.context["file"] == tmp_path / "absent.toml"


def _closed_port_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pyodk config for a server that is not there (port 9 on loopback: discard, closed)."""
    config = tmp_path / "nowhere.toml"
    config.write_text('[central]\nbase_url = "http://127.0.0.1:9"\nusername = "a@b.c"\n'
                      'password = "unused-password"\ndefault_project_id = 1\n')
    monkeypatch.setenv("PYODK_CONFIG_FILE", str(config))
    monkeypatch.setenv("PYODK_CACHE_FILE", str(tmp_path / "cache.toml"))


def test_unreachable_server_is_a_clear_error(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    _closed_port_config(tmp_path, monkeypatch)
    with pytest.raises(DhsurveyError) as info:
        fetch_submissions("household", household())
    assert info.value.code == "central-unreachable"
    assert "127.0.0.1:9" in str(info.value) and "unused-password" not in str(info.value)


# -- fetching through OData -----------------------------------------------------------------------


def test_full_fetch_equals_the_sent_submissions(central: CentralProject) -> None:
    model = household()
    sent = household_raw(5)
    central.load(model, sent)
    fetched = fetch_submissions("household", model)
    same_answers(fetched, sent)
    assert set(fetched.root["source_format"]) == {"central-odata"}
    assert fetched.root["source_file"].str.endswith(
        f"/projects/{central.project_id}/forms/household.svc").all()
    assert set(fetched.root["submitter"]) == {central.server.user}
    assert set(fetched.root["form_version"]) == {model.version}
    assert fetched.quarantine.empty
    # Repeat rows keep their submission and their order: submission 2 has three members.
    roster = fetched.repeats["roster"]
    key = "uuid:00000000-0000-4000-8000-000000000002"
    members = roster[roster[PARENT] == key].sort_values("KEY")
    assert list(members["KEY"]) == [f"{key}/hh_interview/roster[{p}]" for p in (1, 2, 3)]
    assert list(members["line"]) == ["1", "2", "3"]


def test_incremental_fetch_returns_only_new_submissions(central: CentralProject,
                                                        tmp_path: Path) -> None:
    model = household()
    state_dir = tmp_path / "state"
    first = household_raw(3)
    central.load(model, first)
    got = fetch_submissions("household", model, state_dir=state_dir)
    same_answers(got, first)
    entry = _state(state_dir)
    assert entry["last_submission_date"] == max(got.root["submission_time"])

    later = household_raw(2, start=3)
    central.load(model, later)
    got = fetch_submissions("household", model, state_dir=state_dir)
    same_answers(got, later)
    newest = max(got.root["submission_time"])
    assert _state(state_dir)["last_submission_date"] == newest

    # Central compares microseconds but prints milliseconds, so "gt <last ms>" sends the last
    # submission again (unless it arrived at an exact millisecond) — and the fetch drops it.
    resent = central.odata("household", **{"$filter": f"__system/submissionDate gt {newest}"})
    assert len(resent["value"]) <= 1
    nothing = fetch_submissions("household", model, state_dir=state_dir)
    assert nothing.root.empty and list(nothing.root.columns) == list(got.root.columns)
    assert nothing.repeats["roster"].empty and nothing.quarantine.empty
    assert _state(state_dir)["last_submission_date"] == newest


def test_since_overrides_the_state(central: CentralProject, tmp_path: Path) -> None:
    model = household()
    central.load(model, household_raw(4))
    everything = fetch_submissions("household", model, state_dir=tmp_path)
    times = sorted(everything.root["submission_time"])
    got = fetch_submissions("household", model, since=times[1], state_dir=tmp_path)
    assert sorted(got.root["submission_time"]) == times[2:]
    assert set(got.repeats["roster"][PARENT]) == set(got.root["KEY"])


def test_paging_follows_next_links(central: CentralProject) -> None:
    from pyodk.client import Client

    model = household()
    sent = household_raw(5)
    central.load(model, sent)
    asked: list[str] = []
    with Client(config_path=str(central.config)) as client:
        client.session.hooks["response"].append(lambda r, *a, **k: asked.append(r.url))
        fetched = fetch_submissions("household", model, client=client, page_size=2)
    same_answers(fetched, sent)
    roots = [u for u in asked if "household.svc/Submissions?" in u]
    assert len(roots) == 3  # 2 + 2 + 1
    assert all("%24skiptoken=" in u for u in roots[1:])
    rosters = [u for u in asked if ".svc/Submissions.hh_interview.roster?" in u]
    assert len(rosters) == -(-len(sent.repeats["roster"]) // 2)


class _EndlessSession:
    """A pyodk session whose every page links to itself: Central never does this."""

    base_url = "http://central.invalid/v1/"

    def urlformat(self, url: str, **kw: Any) -> str:
        return url.format(**kw)

    def response_or_error(self, **kw: Any) -> Any:
        import requests

        response = requests.models.Response()
        response.status_code = 200
        body = {"value": [], "@odata.nextLink": "Submissions?%24skiptoken=01e30%3D"}
        response.raw = io.BytesIO(json.dumps(body).encode())
        return response


def test_endless_paging_is_refused() -> None:
    client = type("Client", (), {"session": _EndlessSession(), "project_id": 1})()
    with pytest.raises(DhsurveyError) as info:
        fetch_submissions("household", household(), client=client)
    assert info.value.code == "central-paging"


# -- review states, CSV zip and single submissions ------------------------------------------------


def test_review_states_through_odata_and_the_csv_zip(central: CentralProject,
                                                     tmp_path: Path) -> None:
    model = household()
    keys = central.load(model, household_raw(4))
    states = {keys[0]: "approved", keys[1]: "hasIssues", keys[2]: "rejected"}
    for key, state in states.items():
        central.review("household", key, state)
    odata = fetch_submissions("household", model)
    assert dict(zip(odata.root["KEY"], odata.root["review_state"], strict=True)) == {
        **states, keys[3]: None}

    zipped = download_csv_zip("household", tmp_path / "household.csv.zip")
    assert zipfile.ZipFile(zipped).namelist() == ["household.csv", "household-roster.csv"]
    export = read_central_zip(zipped, model)
    assert export.quarantine.empty
    assert set(export.root["source_format"]) == {"central-csv"}
    # The two routes give the same tables, server metadata (submitter, review) included.
    assert_same_content(export, odata)


def _photo_model(tmp_path: Path) -> FormModel:
    survey = [q("text", "name", "Name"), q("image", "photo", "Photo")]
    path = tmp_path / "photo.xlsx"
    write_workbook(path, survey, [], {"form_id": "photo", "form_title": "Photo",
                                      "default_language": EN})
    return load_form(path)


def _instance(folder: Path, model: FormModel, iid: str, name: str,
              files: dict[str, bytes]) -> Path:
    """An instance folder as Collect keeps it: submission.xml and the media it names."""
    inst = folder / iid.replace(":", "")
    inst.mkdir(parents=True)
    (inst / "submission.xml").write_text(
        f'<data id="photo" version="{model.version}"><name>{name}</name><photo>pic.jpg</photo>'
        f"<meta><instanceID>{iid}</instanceID></meta></data>")
    for file, data in files.items():
        (inst / file).write_bytes(data)
    return inst


def test_collect_submissions_with_attachments(central: CentralProject, tmp_path: Path) -> None:
    model = _photo_model(tmp_path)
    central.publish(model)
    jpeg = b"\xff\xd8\xff\xe0 a very small jpeg"
    iid = "uuid:7c1e3b52-5a43-4c9d-8f0e-0a1b2c3d4e5f"
    inst = _instance(tmp_path / "sent", model, iid, "Amina", {"pic.jpg": jpeg})
    (sent,) = submit_instances([inst])
    assert sent.status == 201
    assert central.get(f"forms/photo/submissions/{iid}/attachments") == [
        {"name": "pic.jpg", "exists": True}]
    odata = fetch_submissions("photo", model)
    (row,) = odata.root.to_dict("records")
    assert (row["name"], row["photo"]) == ("Amina", "pic.jpg")

    # Resending the same instance (Collect retries) is accepted; other content is refused.
    assert [s.status for s in submit_instances([inst])] in ([201], [202])
    other = _instance(tmp_path / "other", model, iid, "Mallory", {})
    with pytest.raises(DhsurveyError) as info:
        submit_instances([other])
    assert info.value.code == "central-submission-refused"
    assert info.value.context["file"] == other and "409" in info.value.message

    # Downloaded back as an instance folder, with the attachment and Central's receipt time.
    (folder,) = download_submissions("photo", [iid], tmp_path / "back")
    assert (folder / "pic.jpg").read_bytes() == jpeg
    again = read_xml_folder(tmp_path / "back", model)
    assert_same_content(again, odata, server_meta=False)


# -- publishing -----------------------------------------------------------------------------------


def test_publish_as_a_draft_test_it_then_publish(central: CentralProject, tmp_path: Path) -> None:
    compiled = to_xform(household())
    version = publish_form(compiled, draft_only=True)
    assert version == household().version
    assert central.published_versions("household") == []
    draft = get_draft("household")
    assert draft.version == version and draft.draft_token

    # A test submission to the draft, as Collect sends it after scanning the draft's QR code.
    model = household()
    from dhsurvey.fieldwork.exports import write_xml_folder

    folders = write_xml_folder(household_raw(1), model, tmp_path / "test")
    (sent,) = submit_instances(folders, form_id="household", draft_token=draft.draft_token)
    assert sent.status == 201
    assert len(central.get("forms/household/draft/submissions")) == 1

    assert publish_form(compiled) == version
    assert central.published_versions("household") == [version]
    assert central.get("forms/household/submissions") == []  # test data discarded
    missing = central.http.get(central.api("forms/household/draft"), timeout=30)
    assert missing.status_code == 404  # nothing left in draft


def _small_xform(version: str) -> str:
    return f"""<?xml version="1.0"?>
<h:html xmlns="http://www.w3.org/2002/xforms" xmlns:h="http://www.w3.org/1999/xhtml"
        xmlns:jr="http://openrosa.org/javarosa">
  <h:head><h:title>Villages</h:title>
    <model>
      <instance><data id="villages" version="{version}"><v/><meta><instanceID/></meta></data>
      </instance>
      <instance id="list" src="jr://file-csv/villages.csv"/>
      <bind nodeset="/data/v" type="string"/>
    </model>
  </h:head>
  <h:body><input ref="/data/v"><label>Village</label></input></h:body>
</h:html>
"""


def test_publish_a_new_version_with_attachments(central: CentralProject, tmp_path: Path) -> None:
    csv = tmp_path / "villages.csv"
    csv.write_text("name,label\nv1,Village one\n")
    v1 = tmp_path / "villages.xml"
    v1.write_text(_small_xform("2026.1"))
    assert publish_form(v1, attachments=[csv]) == "2026.1"
    csv.write_text("name,label\nv1,Village one\nv2,Village two\n")
    v2 = tmp_path / "villages-2.xml"
    v2.write_text(_small_xform("2026.2"))
    assert publish_form(v2, attachments=[csv]) == "2026.2"
    assert sorted(central.published_versions("villages")) == ["2026.1", "2026.2"]
    assert central.get("forms/villages/attachments")[0]["exists"] is True
    assert central.get("forms/villages/attachments/villages.csv") == csv.read_bytes()


def test_publish_refuses_a_version_central_already_has(central: CentralProject) -> None:
    compiled = to_xform(household())
    publish_form(compiled)
    with pytest.raises(DhsurveyError) as info:
        publish_form(compiled)
    assert info.value.code == "publish-version-exists"
    assert household().version in str(info.value)
    # Refused before anything was uploaded: no draft was made.
    assert central.published_versions("household") == [household().version]
    assert central.http.get(central.api("forms/household/draft"), timeout=30).status_code == 404


def test_missing_attachment_is_refused_before_any_call(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    _closed_port_config(tmp_path, monkeypatch)  # any call would fail as unreachable
    xml = tmp_path / "villages.xml"
    xml.write_text(_small_xform("1"))
    with pytest.raises(DhsurveyError) as info:
        publish_form(xml, attachments=[tmp_path / "absent.csv"])
    assert info.value.code == "file-missing"


# -- the OData reader alone -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def nested_model(tmp_path_factory: pytest.TempPathFactory) -> FormModel:
    """Groups, select_multiple, geopoint, decimal and a repeat nested in a repeat."""
    survey = [
        q("begin_group", "g", "Group"),
        q("select_multiple devices", "devices", "Devices used"),
        q("geopoint", "loc", "Location"),
        q("decimal", "weight", "Weight"),
        q("integer", "n-kids", "Children"),
        q("end_group", "g"),
        q("begin_repeat", "kids", "Children"),
        q("text", "kname", "Name"),
        q("begin_group", "kg", "Details"),
        q("integer", "kage", "Age"),
        q("end_group", "kg"),
        q("begin_repeat", "toys", "Toys"),
        q("text", "toy", "Toy"),
        q("end_repeat", "toys"),
        q("end_repeat", "kids"),
    ]
    choices = [c("devices", "phone", "Phone"), c("devices", "tablet", "Tablet"),
               c("devices", "pc", "Computer")]
    path = tmp_path_factory.mktemp("odata") / "nested.xlsx"
    write_workbook(path, survey, choices, {"form_id": "nested", "form_title": "Nested",
                                           "default_language": EN})
    return load_form(path)


IID = "uuid:6f1c2a9e-1b7d-4c55-9d8e-1a2b3c4d5e6f"
SYSTEM = {"submissionDate": "2026-03-02T08:30:00.120Z", "updatedAt": None, "submitterId": "7",
          "submitterName": "enum-07", "attachmentsPresent": 0, "attachmentsExpected": 0,
          "status": None, "reviewState": "hasIssues", "deviceId": "collect:x", "edits": 0,
          "formVersion": "2026.1", "deletedAt": None}


def _root_page(**group: Any) -> dict[str, Any]:
    g = {"devices": "phone pc", "loc": {"type": "Point", "coordinates": [36.8219, -1.2921, 1650],
                                       "properties": {"accuracy": 4.5}},
         "weight": 3, "n_kids": 2, "kids@odata.navigationLink": "ignored"}
    g.update(group)
    return {"@odata.context": "http://x/v1/projects/1/forms/nested.svc/$metadata#Submissions",
            "value": [{"__id": IID, "g": g, "meta": {"instanceID": IID}, "__system": SYSTEM}]}


def test_odata_names_follow_central(nested_model: FormModel) -> None:
    assert table_name(household(), "roster") == "Submissions.hh_interview.roster"
    assert parent_id_field(household(), "roster") == "__Submissions-id"
    assert table_name(nested_model, "toys") == "Submissions.kids.toys"
    assert parent_id_field(nested_model, "toys") == "__Submissions-kids-id"


def test_read_odata_root_values(nested_model: FormModel) -> None:
    raw = read_odata([_root_page()], {}, nested_model)
    (row,) = raw.root.to_dict("records")
    assert row["KEY"] == IID and row["form_id"] == "nested"
    assert (row["form_version"], row["submitter"], row["review_state"]) == (
        "2026.1", "enum-07", "hasIssues")
    assert row["submission_time"] == "2026-03-02T08:30:00.120Z"
    assert row["source_format"] == "central-odata"
    assert row["devices"] == "phone pc"  # select_multiple: space-separated names
    assert row["loc"] == "-1.2921 36.8219 1650 4.5"  # GeoJSON lon/lat back to lat lon alt acc
    assert row["weight"] == "3"  # a whole number has no ".0"
    assert row["n-kids"] == "2"  # the OData name n_kids maps back to the XLSForm name
    assert list(raw.root.columns) == META + field_columns(nested_model)


def test_read_odata_nulls_decimals_and_wkt(nested_model: FormModel) -> None:
    raw = read_odata([_root_page(devices=None, loc="POINT (36.8 -1.29 12.5)", weight=2.75,
                                 n_kids="")], {}, nested_model)
    (row,) = raw.root.to_dict("records")
    assert row["devices"] is None and row["n-kids"] is None
    assert row["loc"] == "-1.29 36.8 12.5" and row["weight"] == "2.75"


def test_read_odata_links_nested_repeats(nested_model: FormModel) -> None:
    kid_ids = ["a1", "b2"]
    kids = [{"value": [
        {"__id": kid_ids[0], "__Submissions-id": IID, "kname": "Amina", "kg": {"kage": 12},
         "toys@odata.navigationLink": "x"},
        {"__id": kid_ids[1], "__Submissions-id": IID, "kname": "Baraka", "kg": {"kage": None}},
    ]}]
    toys = [{"value": [{"__id": "t1", "__Submissions-kids-id": "b2", "toy": "ball"}]},
            {"value": [{"__id": "t2", "__Submissions-kids-id": "b2", "toy": "kite"},
                       {"__id": "t3", "__Submissions-kids-id": "zz", "toy": "lost"}]}]
    raw = read_odata([_root_page()], {"kids": kids, "Submissions.kids.toys": toys}, nested_model)
    assert raw.repeats["kids"].to_dict("records") == [
        {"KEY": f"{IID}/kids[1]", PARENT: IID, "kname": "Amina", "kage": "12"},
        {"KEY": f"{IID}/kids[2]", PARENT: IID, "kname": "Baraka", "kage": None},
    ]
    assert raw.repeats["toys"].to_dict("records") == [
        {"KEY": f"{IID}/kids[2]/toys[1]", PARENT: f"{IID}/kids[2]", "toy": "ball"},
        {"KEY": f"{IID}/kids[2]/toys[2]", PARENT: f"{IID}/kids[2]", "toy": "kite"},
    ]
    (orphan,) = raw.quarantine.to_dict("records")
    assert orphan["rule"] == "orphan-repeat" and orphan["value"] == "zz"
    assert orphan["column"] == "__Submissions-kids-id"


def test_read_odata_expanded_repeats_match_tables(nested_model: FormModel) -> None:
    page = _root_page()
    page["value"][0]["kids"] = [
        {"__id": "a1", "kname": "Amina", "kg": {"kage": 12},
         "toys": [{"__id": "t0", "toy": "doll"}]},
        {"__id": "b2", "kname": "Baraka", "kg": {"kage": 9}},
    ]
    raw = read_odata([page], None, nested_model)
    assert list(raw.repeats["kids"]["KEY"]) == [f"{IID}/kids[1]", f"{IID}/kids[2]"]
    assert raw.repeats["toys"].to_dict("records") == [
        {"KEY": f"{IID}/kids[1]/toys[1]", PARENT: f"{IID}/kids[1]", "toy": "doll"}]


def test_read_odata_quarantines_duplicates_and_rejects_non_odata(nested_model: FormModel) -> None:
    raw = read_odata([_root_page(), _root_page()], {}, nested_model)
    assert len(raw.root) == 1
    assert list(raw.quarantine["rule"]) == ["duplicate-key"]
    with pytest.raises(DhsurveyError) as info:
        read_odata([{"results": []}], {}, nested_model)
    assert info.value.code == "odata-shape"
