"""Which submission stands for an interview received twice: the earliest copy not quarantined;
an ODK edit (deprecated_id) replaces what it edits (dhsurvey.validate.duplicates)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from dhsurvey.fieldwork.config import load_country
from dhsurvey.fieldwork.simulate import FORMS, completed_with_child, simulate_country
from dhsurvey.forms.frames import PARENT
from dhsurvey.forms.model import load_form
from dhsurvey.ingest.canonical import RawForm, repeat_key
from dhsurvey.validate.duplicates import DEPRECATED, replaced_by
from dhsurvey.validate.run import validate_form, validate_forms

INSTRUMENTS = Path(__file__).parents[2] / "instruments"
MODELS = {f: load_form(INSTRUMENTS / f"{f}.xlsx") for f in FORMS}
MODEL = MODELS["household"]
CONFIG = load_country(INSTRUMENTS / "countries" / "KEN.yaml")


@pytest.fixture(scope="module")
def household() -> RawForm:
    sim = simulate_country(CONFIG, MODELS, seed=8, households=120)
    raw = sim.forms["household"]
    root = raw.root.assign(**{DEPRECATED: None})
    return RawForm("household", root[completed_with_child(root, MODEL)].reset_index(drop=True),
                   raw.repeats)


def _copy(raw: RawForm, key: str, new_key: str, hours: int, **answers: str | None
          ) -> RawForm:
    """``raw`` plus a copy of submission ``key`` received ``hours`` later as ``new_key``
    (its roster rows too), with ``answers`` changed."""
    row = raw.root[raw.root["KEY"] == key].copy()
    sent = dt.datetime.fromisoformat(row["submission_time"].iloc[0].replace("Z", ""))
    row["submission_time"] = (sent + dt.timedelta(hours=hours)).strftime(
        "%Y-%m-%dT%H:%M:%S.000Z")
    row["KEY"] = new_key
    for column, value in answers.items():
        row[column] = value
    repeats = {}
    for name, table in raw.repeats.items():
        rows = table[table[PARENT] == key].copy()
        rows["KEY"] = [repeat_key(new_key, MODEL, name, i) for i in range(1, len(rows) + 1)]
        rows[PARENT] = new_key
        repeats[name] = pd.concat([table, rows], ignore_index=True)
    return RawForm(raw.form_id, pd.concat([raw.root, row], ignore_index=True), repeats)


def _set(raw: RawForm, key: str, **answers: str | None) -> RawForm:
    root = raw.root.copy()
    for column, value in answers.items():
        root.loc[root["KEY"] == key, column] = value
    return RawForm(raw.form_id, root, raw.repeats)


def _fate(result, key: str) -> str:
    """accepted, quarantined or duplicate — exactly one of them."""
    places = [name for name, keys in (("accepted", result.accepted["KEY"]),
                                      ("quarantined", result.quarantine["instanceID"]),
                                      ("duplicate", result.duplicates["instanceID"]))
              if key in set(keys)]
    assert len(places) == 1, (key, places)
    return places[0]


def _of(result, key: str) -> tuple[str, str]:
    row = result.duplicates.set_index("instanceID").loc[key]
    return row["duplicate_of"], row["reason"]


def test_a_clean_later_copy_is_kept_when_the_first_is_quarantined(household: RawForm) -> None:
    first = household.root["KEY"].iloc[0]
    raw = _copy(_set(household, first, hh_size="ten"), first, "uuid:later", 5,
                hh_size=household.root["hh_size"].iloc[0])
    result = validate_form(raw, MODEL, config=CONFIG)
    assert _fate(result, "uuid:later") == "accepted"
    assert _fate(result, first) == "quarantined"
    assert "type" in set(result.quarantine.loc[result.quarantine["instanceID"] == first, "rule"])
    assert result.duplicates.empty
    assert result.reconciliation["balanced"] and result.reconciliation["duplicates"] == 0
    # The kept copy's roster is the one accepted.
    roster = result.accepted_repeats["roster"]
    assert roster["KEY"].str.startswith("uuid:later/").any()
    assert not roster["KEY"].str.startswith(f"{first}/").any()


def test_the_earliest_copy_is_kept_when_both_are_clean_or_both_quarantined(
        household: RawForm) -> None:
    clean, bad = household.root["KEY"].iloc[:2]
    raw = _copy(household, clean, "uuid:again", 3)
    raw = _copy(_set(raw, bad, hh_size="ten"), bad, "uuid:bad-again", 3, hh_size="eleven")
    result = validate_form(raw, MODEL, config=CONFIG)
    assert _fate(result, clean) == "accepted"
    assert _of(result, "uuid:again") == (clean, "copy")
    assert _fate(result, bad) == "quarantined"
    assert _of(result, "uuid:bad-again") == (bad, "copy")
    assert result.reconciliation["duplicates_by_reason"] == {"copy": 2}
    assert result.reconciliation["balanced"]


def test_an_edit_replaces_the_submission_it_edits_chains_resolve_to_the_last(
        household: RawForm) -> None:
    a, b, c = household.root["KEY"].iloc[:3]
    raw = _copy(household, a, "uuid:a-edit", 24, **{DEPRECATED: a})
    raw = _copy(raw, "uuid:a-edit", "uuid:a-edit-2", 48, **{DEPRECATED: "uuid:a-edit"})
    # An edit with an error still replaces the (clean) submission it edits.
    raw = _copy(raw, b, "uuid:b-edit", 24, hh_size="ten", **{DEPRECATED: b})
    # The original of this edit was never received: it is simply a submission.
    raw = _set(raw, c, **{DEPRECATED: "uuid:not-received"})
    assert replaced_by(raw.root) == {a: "uuid:a-edit-2", "uuid:a-edit": "uuid:a-edit-2",
                                     b: "uuid:b-edit"}
    result = validate_form(raw, MODEL, config=CONFIG)
    assert _of(result, a) == ("uuid:a-edit-2", "edited")
    assert _of(result, "uuid:a-edit") == ("uuid:a-edit-2", "edited")
    assert _fate(result, "uuid:a-edit-2") == "accepted"
    assert _of(result, b) == ("uuid:b-edit", "edited")
    assert _fate(result, "uuid:b-edit") == "quarantined"
    assert _fate(result, c) == "accepted"
    assert result.reconciliation["duplicates_by_reason"] == {"edited": 3}
    assert result.reconciliation["balanced"]
    # Only the issues of what stands for the interview are reported.
    assert not result.quarantine["instanceID"].isin([a, b, "uuid:a-edit"]).any()


def test_without_the_deprecated_id_column_there_are_no_edits(household: RawForm) -> None:
    root = household.root.drop(columns=[DEPRECATED])
    assert replaced_by(root) == {}
    result = validate_form(RawForm("household", root, household.repeats), MODEL,
                           config=CONFIG)
    assert result.duplicates.empty and result.reconciliation["balanced"]


def test_interviews_link_to_the_household_copy_kept() -> None:
    """A child of a household whose first copy is quarantined links to the clean copy."""
    sim = simulate_country(CONFIG, MODELS, seed=9, households=120)
    hh = sim.forms["household"]
    child = sim.forms["child"].root
    ids = list(MODEL.household_id)
    linked = hh.root.merge(child[ids], on=ids)["KEY"]
    first = linked.iloc[0]
    sim.forms["household"] = _copy(_set(hh, first, hh_size="ten"), first, "uuid:clean", 6,
                                   hh_size=hh.root.set_index("KEY").loc[first, "hh_size"])
    result = validate_forms(sim.forms, MODELS, config=CONFIG)
    households = result.forms["household"]
    assert _fate(households, "uuid:clean") == "accepted"
    assert _fate(households, first) == "quarantined"
    assert all(r.reconciliation["balanced"] for r in result.forms.values())
    assert "orphan" not in set(result.forms["child"].quarantine["rule"])
