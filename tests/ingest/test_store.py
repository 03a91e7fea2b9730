"""Combining several exports of one form, and the raw zone's Parquet round trip."""

from __future__ import annotations

from pathlib import Path

from test_roundtrip import synthetic_raw

from dhsurvey.forms.model import load_form
from dhsurvey.ingest.store import combine, read_raw, write_raw

HOUSEHOLD = load_form(Path(__file__).parents[2] / "instruments" / "household.xlsx")


def test_exact_copies_are_kept_once() -> None:
    raw = synthetic_raw(HOUSEHOLD, 6)
    copy = synthetic_raw(HOUSEHOLD, 6)
    copy.root["source_format"] = "kobo-json"
    copy.root["submitter"] = None  # a device folder does not know the submitter
    both = combine([copy, raw])
    assert len(both.root) == 6 and both.quarantine.empty
    # Where the server's copy knows the submitter, the combined table keeps it.
    kept = both.root.set_index("KEY")["submitter"]
    assert kept.reindex(raw.root["KEY"]).tolist() == raw.root["submitter"].tolist()
    assert {n: len(t) for n, t in both.repeats.items()} == \
        {n: len(t) for n, t in raw.repeats.items()}


def test_conflicting_copies_go_to_quarantine() -> None:
    raw = synthetic_raw(HOUSEHOLD, 5)
    other = synthetic_raw(HOUSEHOLD, 5)
    other.root.loc[0, "hh_number"] = "77"
    both = combine([raw, other])
    key = raw.root.loc[0, "KEY"]
    assert key not in set(both.root["KEY"])
    assert (both.quarantine["KEY"] == key).sum() == 2
    assert set(both.quarantine["rule"]) == {"duplicate-key-conflict"}
    # Every submission is accounted for: 4 kept + 1 key twice in quarantine.
    assert len(both.root) + both.quarantine["KEY"].nunique() == 5
    assert not any(t["KEY"].str.startswith(key).any() for t in both.repeats.values())


def test_the_servers_edited_version_supersedes_the_devices_first_one() -> None:
    """Central keeps an edit under the first version's instanceID, marked ``edited``; the
    device folder still holds the first version: the server's copy is the interview's."""
    server = synthetic_raw(HOUSEHOLD, 5)
    device = synthetic_raw(HOUSEHOLD, 5)
    device.root["submitter"] = device.root["review_state"] = None
    device.root["source_format"] = "xml"
    roster = server.repeats["roster"]
    key = roster["KEY"].str.split("/").str[0].iloc[0]  # a household with roster rows
    server.root.loc[server.root["KEY"] == key, ["hh_number", "review_state"]] = ["77", "edited"]
    edited_rows = roster["KEY"].str.startswith(f"{key}/")
    assert edited_rows.any()
    roster.loc[edited_rows, "first_name"] = "Edited"
    for order in ([device, server], [server, device]):
        both = combine(order)
        assert both.root.set_index("KEY").loc[key, "hh_number"] == "77"
        assert list(both.quarantine["rule"]) == ["edited-on-server"]
        assert both.quarantine.loc[0, "KEY"] == key
        rows = both.repeats["roster"][both.repeats["roster"]["KEY"].str.startswith(f"{key}/")]
        assert set(rows["first_name"]) == {"Edited"}  # the rows of the version kept
        assert len(both.root) == 5


def test_a_table_stored_before_a_column_existed_combines_with_new_reads() -> None:
    """A raw table written before ``deprecated_id`` existed lacks it: still the same copies."""
    raw = synthetic_raw(HOUSEHOLD, 5)
    old = synthetic_raw(HOUSEHOLD, 5)
    old.root = old.root.drop(columns=["deprecated_id"])
    both = combine([old, raw])
    assert len(both.root) == 5 and both.quarantine.empty
    assert both.root["deprecated_id"].isna().all()


def test_raw_zone_round_trip(tmp_path: Path) -> None:
    raw = synthetic_raw(HOUSEHOLD, 4)
    paths = write_raw(raw, tmp_path)
    assert [p.name for p in paths][0] == "household.parquet"
    back = read_raw(tmp_path, "household")
    assert back.root.equals(raw.root.astype(object).where(raw.root.notna(), None)) or \
        back.root.fillna("").astype(str).equals(raw.root.fillna("").astype(str))
    assert set(back.repeats) == set(raw.repeats)
