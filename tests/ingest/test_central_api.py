"""ODK Central through pyodk, against a local stub that speaks Central's wire format.

pyodk is the real client in production, so these tests run it unmodified against
``central_stub.CentralStub`` (127.0.0.1, ephemeral port) configured by a temporary pyodk config
file. The OData reader is also tested alone on hand-written Central-shaped JSON.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from central_stub import CentralStub, frame_of
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
from dhsurvey.ingest.central_api import STATE_FILE, fetch_submissions, publish_form
from dhsurvey.ingest.odata import parent_id_field, read_odata, table_name

HOUSEHOLD = Path(__file__).resolve().parents[2] / "instruments" / "household.xlsx"


# -- fixtures and builders ------------------------------------------------------------------------


@cache
def household() -> FormModel:
    return load_form(HOUSEHOLD)


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


# -- authentication -------------------------------------------------------------------------------


def test_wrong_password_is_a_clear_error(central: CentralStub, tmp_path: Path) -> None:
    wrong = "not-the-password-42"
    (tmp_path / "pyodk_config.toml").write_text(central.pyodk_config(password=wrong))
    with pytest.raises(DhsurveyError) as info:
        fetch_submissions("household", household())
    err = info.value
    assert err.code == "central-auth"
    assert central.base_url in str(err) and "pyodk config" in str(err)
    assert "Could not authenticate" in str(err)
    assert wrong not in str(err) and wrong not in repr(err.context)
    # The stub answered Central's problem shape and never logged the password.
    login = central.calls("POST", "/v1/sessions")
    assert [r.status for r in login] == [401]
    assert all(wrong.encode() not in r.body for r in central.requests)


def test_missing_config_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYODK_CONFIG_FILE", str(tmp_path / "absent.toml"))
    with pytest.raises(DhsurveyError) as info:
        fetch_submissions("household", household())
    assert info.value.code == "central-config"
    assert info.value.context["file"] == tmp_path / "absent.toml"


def test_stub_requires_a_bearer_token(central: CentralStub) -> None:
    import requests

    url = f"{central.base_url}/v1/projects/1/forms"
    anonymous = requests.get(url, timeout=5)
    assert anonymous.status_code == 401
    assert anonymous.json() == {"message": "Could not authenticate with the provided "
                                "credentials.", "code": 401.2}
    forged = requests.get(url, headers={"Authorization": "Bearer forged"}, timeout=5)
    assert forged.status_code == 401


# -- fetching -------------------------------------------------------------------------------------


def test_full_fetch_equals_the_loaded_submissions(central: CentralStub) -> None:
    model = household()
    loaded = household_raw(5)
    central.load(model, loaded)
    fetched = fetch_submissions("household", model)
    assert_same_content(fetched, loaded)
    assert set(fetched.root["source_format"]) == {"central-odata"}
    assert fetched.root["source_file"].str.endswith("/projects/1/forms/household.svc").all()
    assert fetched.quarantine.empty
    # One login, then Bearer on every call: the Submissions table and the roster table.
    assert len(central.calls("POST", "/v1/sessions$")) == 1
    assert all(r.authorized for r in central.requests if r.path != "/v1/sessions")
    tables = [r.path.rsplit("/", 1)[1] for r in central.calls("GET", r"\.svc/")]
    assert tables == ["Submissions", "Submissions.hh_interview.roster"]
    first = central.calls("GET", r"\.svc/Submissions$")[0]
    assert first.query["$count"].lower() == "true" and "$filter" not in first.query


def test_repeat_rows_are_linked_to_their_submission(central: CentralStub) -> None:
    model = household()
    central.load(model, household_raw(3))
    roster = fetch_submissions("household", model).repeats["roster"]
    # Submission 2 has three members, in document order, keyed as Central's CSV keys them.
    key = "uuid:00000000-0000-4000-8000-000000000002"
    members = roster[roster[PARENT] == key].sort_values("KEY")
    assert list(members["KEY"]) == [f"{key}/hh_interview/roster[{p}]" for p in (1, 2, 3)]
    assert list(members["line"]) == ["1", "2", "3"]
    assert len(roster) == 1 + 2 + 3


def test_incremental_fetch_returns_only_new_submissions(central: CentralStub,
                                                        tmp_path: Path) -> None:
    model = household()
    state_dir = tmp_path / "state"
    first = household_raw(3)
    central.load(model, first)
    got = fetch_submissions("household", model, state_dir=state_dir)
    assert_same_content(got, first)
    state = json.loads((state_dir / STATE_FILE).read_text())
    (entry,) = [v for server in state["servers"].values() for v in server.values()]
    assert entry["last_submission_date"] == "2026-03-01T10:02:00.002Z"

    later = household_raw(2, start=3, minute0=10)
    central.load(model, later)
    central.clear_log()
    got = fetch_submissions("household", model, state_dir=state_dir)
    assert_same_content(got, later)
    root_call = central.calls("GET", r"\.svc/Submissions$")[0]
    assert root_call.query["$filter"] == "__system/submissionDate gt 2026-03-01T10:02:00.002Z"
    repeat_call = central.calls("GET", r"roster$")[0]
    assert repeat_call.query["$filter"].startswith(
        "$root/Submissions/__system/submissionDate gt 2026-03-01T10:02:00.002Z and ")
    state = json.loads((state_dir / STATE_FILE).read_text())
    (entry,) = [v for server in state["servers"].values() for v in server.values()]
    assert entry == {"last_submission_date": "2026-03-01T10:14:00.004Z",
                     "keys_at_last": ["uuid:00000000-0000-4000-8000-000000000004"]}

    # Nothing new: an empty RawForm with the canonical columns, and the state is unchanged.
    nothing = fetch_submissions("household", model, state_dir=state_dir)
    assert nothing.root.empty and list(nothing.root.columns) == list(got.root.columns)
    assert nothing.repeats["roster"].empty
    assert json.loads((state_dir / STATE_FILE).read_text())["servers"] == state["servers"]


def test_microseconds_at_the_boundary_are_not_fetched_twice(central: CentralStub,
                                                           tmp_path: Path) -> None:
    """Central compares microseconds but prints milliseconds, so "gt last" sends it again."""
    model = household()
    raw = household_raw(2)
    raw.root.loc[1, "submission_time"] = "2026-03-01T10:01:00.001400Z"
    central.load(model, raw)
    first = fetch_submissions("household", model, state_dir=tmp_path)
    assert set(first.root["submission_time"]) == {"2026-03-01T10:00:00.000Z",
                                                  "2026-03-01T10:01:00.001Z"}
    central.clear_log()
    again = fetch_submissions("household", model, state_dir=tmp_path)
    (sent,) = central.calls("GET", r"\.svc/Submissions$")
    assert sent.status == 200 and len(central.calls("GET", "roster$")) == 1  # re-sent ...
    assert again.root.empty and again.repeats["roster"].empty  # ... and dropped
    assert again.quarantine.empty


def test_since_overrides_the_state(central: CentralStub, tmp_path: Path) -> None:
    model = household()
    central.load(model, household_raw(4))
    got = fetch_submissions("household", model, since="2026-03-01T10:01:30Z")
    assert sorted(got.root["KEY"].str[-1]) == ["2", "3"]


def test_paging_follows_next_links(central: CentralStub) -> None:
    model = household()
    loaded = household_raw(7)
    central.load(model, loaded)
    fetched = fetch_submissions("household", model, page_size=3)
    assert_same_content(fetched, loaded)
    roots = central.calls("GET", r"\.svc/Submissions$")
    assert len(roots) == 3  # 3 + 3 + 1
    assert roots[0].query["$top"] == "3" and "$skiptoken" not in roots[0].query
    assert all(r.query["$skiptoken"].startswith("01") for r in roots[1:])
    rosters = central.calls("GET", r"roster$")
    assert len(rosters) == -(-len(loaded.repeats["roster"]) // 3)


def test_encrypted_submissions_go_to_quarantine(central: CentralStub) -> None:
    model = household()
    central.load(model, household_raw(2))
    central.form("household").submissions[0].encrypted = True  # Central has no data for it
    fetched = fetch_submissions("household", model)
    assert list(fetched.root["KEY"]) == ["uuid:00000000-0000-4000-8000-000000000001"]
    assert set(fetched.repeats["roster"][PARENT]) == {"uuid:00000000-0000-4000-8000-000000000001"}
    (bad,) = fetched.quarantine.to_dict("records")
    assert bad["rule"] == "not-decrypted" and bad["KEY"].endswith("000000000000")
    assert bad["value"] == "notDecrypted"


# -- publishing -----------------------------------------------------------------------------------


def test_publish_creates_a_draft_and_publishes_its_version(central: CentralStub) -> None:
    compiled = to_xform(household())
    version = publish_form(compiled)
    assert version == household().version
    assert central.published_versions("household") == [version]
    posts = [(r.path, r.query) for r in central.calls("POST") if r.path != "/v1/sessions"]
    assert posts[0][0] == "/v1/projects/1/forms"
    assert posts[0][1]["publish"].lower() == "false"
    assert posts[-1][0] == "/v1/projects/1/forms/household/draft/publish"
    assert central.calls("POST", "/forms$")[0].content_type == "application/xml"


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


def test_publish_a_new_version_with_attachments(central: CentralStub, tmp_path: Path) -> None:
    csv = tmp_path / "villages.csv"
    csv.write_text("name,label\nv1,Village one\n")
    v1 = tmp_path / "villages.xml"
    v1.write_text(_small_xform("2026.1"))
    assert publish_form(v1, attachments=[csv]) == "2026.1"
    v2 = tmp_path / "villages-2.xml"
    v2.write_text(_small_xform("2026.2"))
    central.clear_log()
    assert publish_form(v2, attachments=[csv]) == "2026.2"
    assert central.published_versions("villages") == ["2026.1", "2026.2"]
    posts = [r.path.removeprefix("/v1/projects/1/forms/villages") for r in central.calls("POST")
             if r.path != "/v1/sessions"]
    assert posts == ["/draft", "/draft/attachments/villages.csv", "/draft/publish"]
    assert central.form("villages").versions[-1].attachments == {"villages.csv": csv.read_bytes()}
    assert central.calls("GET", "/versions$")


def test_publish_refuses_a_version_central_already_has(central: CentralStub) -> None:
    compiled = to_xform(household())
    publish_form(compiled)
    central.clear_log()
    with pytest.raises(DhsurveyError) as info:
        publish_form(compiled)
    assert info.value.code == "publish-version-exists"
    assert household().version in str(info.value)
    # Refused before anything was uploaded: nothing but reads after the login.
    assert not [r for r in central.calls("POST") if r.path != "/v1/sessions"]
    assert [r.path for r in central.calls("GET", "/forms/")] == [
        "/v1/projects/1/forms/household", "/v1/projects/1/forms/household/versions"]
    assert central.published_versions("household") == [household().version]


def test_stub_refuses_a_duplicate_publish_like_central(central: CentralStub) -> None:
    from pyodk.client import Client
    from pyodk.errors import PyODKError

    xform = to_xform(household()).xform
    with Client() as client:
        client.forms.create(definition=xform, form_id="household")
        with pytest.raises(PyODKError) as info:
            client.forms.update("household", definition=xform)
    assert info.value.is_central_error(409.6)
    assert central.calls("POST", "/draft/publish$")[-1].status == 409


def test_stub_publishes_with_a_version_parameter(central: CentralStub, tmp_path: Path) -> None:
    """pyodk's attachments-only update: empty draft, upload, publish?version=."""
    from pyodk.client import Client

    csv = tmp_path / "villages.csv"
    csv.write_text("name,label\n")
    with Client() as client:
        client.forms.create(definition=_small_xform("1"), form_id="villages")
        client.forms.update("villages", attachments=[csv], version_updater=lambda v: v + "b")
    assert central.published_versions("villages") == ["1", "1b"]
    assert 'version="1b"' in central.form("villages").versions[-1].xml
    assert central.calls("POST", "/draft/publish$")[-1].query == {"version": "1b"}


def test_missing_attachment_is_refused_before_any_call(central: CentralStub,
                                                       tmp_path: Path) -> None:
    xml = tmp_path / "villages.xml"
    xml.write_text(_small_xform("1"))
    with pytest.raises(DhsurveyError) as info:
        publish_form(xml, attachments=[tmp_path / "absent.csv"])
    assert info.value.code == "file-missing"
    assert central.requests == []


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
