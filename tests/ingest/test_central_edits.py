"""An interview edited after it was sent, as the real ODK Central and a device folder hold it.

Collect sends an edit as a new instance naming the first in ``meta/deprecatedID``. Central then
lists one submission under the FIRST instanceID, marked ``edited``, holding the edit's answers;
the tablet (or a Briefcase pull) still has both documents. Whatever mix of routes arrives, the
interview must be accepted once, with the edited answers.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
from central_server import CentralProject

from dhsurvey.fieldwork.config import load_country
from dhsurvey.fieldwork.exports import write_xml_folder
from dhsurvey.fieldwork.simulate import FORMS, simulate_country
from dhsurvey.forms.frames import PARENT
from dhsurvey.forms.model import load_form
from dhsurvey.ingest.canonical import RawForm
from dhsurvey.ingest.central_api import fetch_submissions, submit_instances
from dhsurvey.ingest.read import read_export_forms
from dhsurvey.ingest.store import combine, supersede
from dhsurvey.validate.run import validate_forms

INSTRUMENTS = Path(__file__).resolve().parents[2] / "instruments"
MODELS = {f: load_form(INSTRUMENTS / f"{f}.xlsx") for f in FORMS}
CONFIG = load_country(INSTRUMENTS / "countries" / "KEN.yaml")
EDIT = "uuid:e0000000-0000-4000-8000-00000000ed17"


def edit_of(raw: RawForm, key: str) -> RawForm:
    """The interview ``key`` edited on the tablet: new instanceID, deprecatedID, GPS re-taken."""
    root = raw.root[raw.root["KEY"] == key].copy()
    root["KEY"], root["deprecated_id"] = EDIT, key
    root["gps"] = root["gps"].str.replace(r" [0-9.]+$", " 3.5", regex=True)
    repeats = {}
    for name, table in raw.repeats.items():
        rows = table[table["KEY"].str.startswith(f"{key}/")].copy()
        rows["KEY"] = rows["KEY"].str.replace(key, EDIT, regex=False)
        rows[PARENT] = rows[PARENT].str.replace(key, EDIT, regex=False)
        repeats[name] = rows
    return RawForm(raw.form_id, root, repeats)


def test_an_edit_is_accepted_once_with_its_answers(central: CentralProject,
                                                   tmp_path: Path) -> None:
    model = MODELS["household"]
    raw = simulate_country(CONFIG, MODELS, seed=11, households=40).forms["household"]
    raw.root = raw.root.head(12)  # a dozen interviews sent to Central, one of them edited
    keys = central.load(model, raw)
    first = next(k for k in keys if raw.root.set_index("KEY").at[k, "gps"])
    edit = edit_of(raw, first)
    sent = submit_instances(write_xml_folder(edit, model, tmp_path / "edit"),
                            project_id=central.project_id)
    assert [s.status for s in sent] == [201]

    # Central: one submission, the first instanceID, the edit's answers, marked edited.
    server = fetch_submissions("household", model)
    assert sorted(server.root["KEY"]) == sorted(keys)
    row = server.root.set_index("KEY").loc[first]
    assert row["review_state"] == "edited"
    assert re.search(r" 3\.5$", row["gps"])

    # The tablet's folder holds both documents; with the server's export, one interview.
    write_xml_folder(raw, model, tmp_path / "device" / "first")
    write_xml_folder(edit, model, tmp_path / "device" / "edit")
    (device,) = read_export_forms(tmp_path / "device", MODELS, only="household")
    assert device.root.set_index("KEY").at[EDIT, "deprecated_id"] == first
    # A tablet that never saw the edit (made on the server) holds the first version only.
    (before,) = read_export_forms(tmp_path / "device" / "first", MODELS, only="household")
    central.review("household", first, "approved")  # reviewed after the edit: not "edited"
    server = fetch_submissions("household", model, since="2000-01-01T00:00:00Z")
    assert server.root.set_index("KEY").at[first, "review_state"] == "approved"
    for routes in ([device], [device, server], [server], [before, server]):
        both = combine(routes)
        result = validate_forms({"household": both}, MODELS, config=CONFIG).forms["household"]
        assert result.reconciliation["balanced"]
        accepted = result.accepted.set_index("KEY")
        interview = [k for k in (first, EDIT) if k in accepted.index]
        assert len(interview) == 1, routes  # accepted once …
        assert str(accepted.at[interview[0], "gps"]).endswith(" 3.5")  # … as edited
        if EDIT in both.root["KEY"].to_numpy():  # the tablet's edit names what it replaces
            dup = result.duplicates.set_index("instanceID")
            assert dup.at[first, "reason"] == "edited" and dup.at[first, "duplicate_of"] == EDIT
        # every submission that came in is kept or set aside (the superseded first version)
        arrived = set(pd.concat([r.root["KEY"] for r in routes]))
        assert set(both.root["KEY"]) | set(both.quarantine["KEY"]) == arrived


def test_incremental_fetch_brings_edits_and_reviews_made_since(central: CentralProject,
                                                              tmp_path: Path) -> None:
    """Central sends an interview again when it is edited or reviewed after a fetch; the
    stored copy is replaced by it, and an unchanged one is not sent twice."""
    model = MODELS["household"]
    raw = simulate_country(CONFIG, MODELS, seed=12, households=40).forms["household"]
    raw.root = raw.root.head(4)
    keys = central.load(model, raw)
    state = tmp_path / "state"
    stored = fetch_submissions("household", model, state_dir=state)
    assert sorted(stored.root["KEY"]) == sorted(keys)
    assert fetch_submissions("household", model, state_dir=state).root.empty

    central.review("household", keys[1], "rejected")
    reviewed = fetch_submissions("household", model, state_dir=state)
    assert list(reviewed.root["KEY"]) == [keys[1]]
    assert list(reviewed.root["review_state"]) == ["rejected"]
    stored = supersede(stored, reviewed)

    target = next(k for k in keys if raw.root.set_index("KEY").at[k, "gps"])
    submit_instances(write_xml_folder(edit_of(raw, target), model, tmp_path / "edit"),
                     project_id=central.project_id)
    edited = fetch_submissions("household", model, state_dir=state)
    assert list(edited.root["KEY"]) == [target]
    assert str(edited.root["gps"].iloc[0]).endswith(" 3.5")
    stored = supersede(stored, edited)
    assert fetch_submissions("household", model, state_dir=state).root.empty

    final = stored.root.set_index("KEY")
    assert sorted(final.index) == sorted(keys) and stored.quarantine.empty
    assert final.at[keys[1], "review_state"] == "rejected"
    assert final.at[target, "review_state"] == "edited"
    assert str(final.at[target, "gps"]).endswith(" 3.5")
    assert len(stored.repeats["roster"]) == len(raw.repeats["roster"][
        raw.repeats["roster"]["KEY"].str.split("/").str[0].isin(keys)])
