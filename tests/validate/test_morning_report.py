"""The morning report: what changed since the previous run, by team and enumerator, and the
jumps a data manager must see.

Simulated Kenyan fieldwork lands and runs once (the first run: every submission new). Then a
second export lands beside it, as a resent batch from a tablet would: 25 households again under
new instanceIDs (duplicates) and 25 child interviews whose household does not exist (orphans,
quarantined). The second report must count exactly those 50 as new, by team and enumerator,
and its anomaly checks must fire on duplicates and on the child quarantine rate while the
speeder check, which nothing moved, stays quiet.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from pathlib import Path

import pandas as pd
import pytest

from dhsurvey import study as study_module
from dhsurvey.errors import ConfigError
from dhsurvey.fieldwork.exports import write_central_zip, write_xml_folder
from dhsurvey.fieldwork.run import write_design
from dhsurvey.fieldwork.simulate import simulate_country
from dhsurvey.ingest.store import read_raw
from dhsurvey.store import Store
from dhsurvey.validate.monitoring import MONITORING_FILE, Thresholds, load_thresholds
from dhsurvey.validate.morning import flag_enumerators, morning_report, sparkline

INSTRUMENTS = Path(__file__).parents[2] / "instruments"
RESENT, ORPHANS = 25, 25
FIRST = dt.datetime(2026, 3, 1, 6, 0, tzinfo=dt.UTC)
SECOND = FIRST + dt.timedelta(days=1)


def _run(store: Store, study: study_module.Study, now: dt.datetime):
    study_module.ingest(store, study, "KEN")
    study_module.validate(store, study, "KEN")
    return morning_report(store, "KEN", study.models, study.config("KEN"),
                          load_thresholds(study.instruments), now=now)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory):
    study = study_module.Study.load(INSTRUMENTS)
    sim = simulate_country(study.config("KEN"), study.models, seed=11, households=300)
    data = tmp_path_factory.mktemp("data")
    landing = data / "landing" / "KEN"
    for form, raw in sim.forms.items():
        write_central_zip(raw, study.models[form], landing / "central" / f"{form}.csv.zip")
    write_design(sim, landing)
    store = Store(data)
    first = _run(store, study, FIRST)

    # The resent batch: households again under new instanceIDs, children of no household.
    households = read_raw(store.raw("KEN"), "household")
    again = households.root.head(RESENT).copy()
    again["KEY"] = [f"uuid:{uuid.uuid4()}" for _ in range(len(again))]
    roster = households.repeats["roster"]
    copies = []
    for old, new in zip(households.root.head(RESENT)["KEY"], again["KEY"], strict=True):
        rows = roster[roster["PARENT_KEY"] == old].copy()
        rows["KEY"] = rows["KEY"].str.replace(old, new, regex=False)
        rows["PARENT_KEY"] = new
        copies.append(rows)
    resent = dataclasses.replace(households, root=again,
                                 repeats={"roster": pd.concat(copies, ignore_index=True)})
    children = read_raw(store.raw("KEN"), "child")
    orphans = children.root.head(ORPHANS).copy()
    orphans["KEY"] = [f"uuid:{uuid.uuid4()}" for _ in range(len(orphans))]
    orphans["hh_number"] = [str(900 + i) for i in range(len(orphans))]
    write_xml_folder(resent, study.models["household"], landing / "xml" / "resent")
    write_xml_folder(dataclasses.replace(children, root=orphans, repeats={}),
                     study.models["child"], landing / "xml" / "resent")
    second = _run(store, study, SECOND)
    return study, store, first, second, again, orphans


def test_the_first_run_counts_everything_as_new_by_team(runs) -> None:
    study, store, first, _, _, _ = runs
    config = study.config("KEN")
    assert first.previous is None and first.jumps == []
    raw = {f: read_raw(store.raw("KEN"), f).root for f in study.models}
    assert first.new == {f: len(_first_rows(raw[f], runs)) for f in study.models}
    table = first.enumerators
    teams = {e: str(t.id) for t in config.teams for e in t.enumerators}
    assert set(table["enum_id"].dropna()) <= set(teams)
    assert all(teams[int(r.enum_id)] == r.team for r in table.itertuples())
    assert table["new"].sum() == table["received"].sum()
    # Teams from the country file, for progress and response rates alike.
    assert set(first.progress_team["team"]) == {str(t.id) for t in config.teams}
    assert set(first.rates_team["team"]) == {"all"} | {str(t.id) for t in config.teams}
    assert "first run" in first.markdown()


def _first_rows(frame: pd.DataFrame, runs) -> pd.DataFrame:
    """The rows the first run read (not the resent batch)."""
    _, _, _, _, again, orphans = runs
    return frame[~frame["KEY"].isin(set(again["KEY"]) | set(orphans["KEY"]))]


def test_the_second_run_counts_the_resent_batch_by_enumerator(runs) -> None:
    _, _, first, second, again, orphans = runs
    assert second.previous == FIRST.strftime("%Y-%m-%d %H:%M:%S")
    assert second.new["household"] == RESENT and second.new["child"] == ORPHANS
    assert second.new["caregiver"] == 0
    # New submissions land on the enumerators who made them.
    expected = pd.concat([again["enum_id"], orphans["enum_id"]]).astype(int).value_counts()
    got = second.enumerators.set_index("enum_id")["new"]
    assert {int(e): int(n) for e, n in got[got > 0].items()} == expected.to_dict()
    per_form = second.enumerators.set_index("enum_id")["new child"]
    assert int(per_form.sum()) == ORPHANS
    # Quarantine reasons by enumerator: the orphans' enumerators carry "child orphan".
    reasons = second.enumerators.set_index("enum_id")["quarantine reasons"]
    for enum in orphans["enum_id"].astype(int).unique():
        assert "child orphan" in reasons[enum]


def test_the_jumps_fire_where_the_batch_moved_the_numbers(runs) -> None:
    _, _, _, second, _, _ = runs
    jumped = {(j.check, j.form) for j in second.anomalies}
    assert ("duplicates", "household") in jumped
    assert ("quarantine rate", "child") in jumped
    assert not any(check == "speeders" for check, _ in jumped)
    dup = next(j for j in second.jumps if (j.check, j.form) == ("duplicates", "household"))
    assert dup.now == RESENT and dup.threshold == Thresholds().new_duplicates
    text = second.markdown()
    assert f"household: {RESENT} new duplicates" in text
    assert "child quarantine rate:" in text


def test_the_history_is_the_countrys_own(runs) -> None:
    _, store, _, second, _, _ = runs
    history = store.read_history("KEN")
    assert list(history["run"].drop_duplicates()) == [
        FIRST.strftime("%Y-%m-%d %H:%M:%S"), SECOND.strftime("%Y-%m-%d %H:%M:%S")]
    assert len(store.read_history("UGA")) == 0
    assert list(second.series["household received"]) == [
        second.series["household received"].iloc[0],
        second.series["household received"].iloc[0] + RESENT]
    assert "Runs of this country only (2 shown" in second.markdown()


def test_no_instance_id_or_answer_reaches_the_report(runs) -> None:
    _, _, first, second, again, _ = runs
    text = first.markdown() + second.markdown() + "\n".join(second.story())
    assert "uuid:" not in text
    assert not any(key in text for key in again["KEY"])


def test_flagged_enumerators_say_what_flagged_them(runs) -> None:
    study, _, _, _, _, _ = runs
    t = Thresholds(quarantine_share=0.01, min_interviews=1)
    store = runs[1]
    report = morning_report(store, "KEN", study.models, study.config("KEN"), t, record=False)
    quarantine = report.flagged[report.flagged["criterion"] == "quarantine"]
    assert len(quarantine) and (quarantine["threshold"] == t.describe()["quarantine"]).all()
    assert len(report.over_share) >= 1
    assert set(report.over_share["enum_id"]) <= set(quarantine["enum_id"])


def test_back_check_error_rates_flag_an_enumerator() -> None:
    """An enumerator whose must-not-change answers differ at a back-check is flagged, with
    what was found; one with too few answers compared is not judged."""
    from dhsurvey.fieldwork.config import load_country

    config = load_country(INSTRUMENTS / "countries" / "KEN.yaml")
    counts = pd.DataFrame({"enum_id": pd.array([101, 102, 103], dtype="Int64"),
                           "form": "household", "received": 50, "quarantined": 0,
                           "duplicates": 0, "flagged": 0, "speeders": 0})
    backcheck = pd.DataFrame({"enum_id": pd.array([101, 102, 103], dtype="Int64"),
                              "backchecked": [5, 5, 2], "type1_compared": [15, 15, 6],
                              "type1_errors": [9, 0, 6],
                              "type1_error_rate": [0.6, 0.0, 1.0]})
    t = Thresholds()
    flagged = flag_enumerators(counts, {}, backcheck, config, t)
    assert list(flagged["enum_id"]) == [101]
    row = flagged.iloc[0]
    assert (row["criterion"], row["team"], row["threshold"]) == (
        "back-check", "1", t.describe()["back-check"])
    assert row["value"] == "60% of 15 type-1 answers (5 households)"


def test_thresholds_come_from_the_file_and_errors_name_the_key(tmp_path: Path) -> None:
    assert load_thresholds(tmp_path) == Thresholds()
    (tmp_path / MONITORING_FILE).write_text(
        "anomalies:\n  new_duplicates: 5\nquarantine_share:\n  threshold: 0.4\n"
        "  blocking: true\n")
    t = load_thresholds(tmp_path)
    assert (t.new_duplicates, t.quarantine_share, t.block_on_quarantine_share) == (5, 0.4, True)
    for text, key in (("anomalies:\n  duplicates_new: 5\n", "anomalies.duplicates_new"),
                      ("enumerators:\n  speeder_share: 15\n", "enumerators.speeder_share"),
                      ("quarantine_share:\n  blocking: yes please\n",
                       "quarantine_share.blocking")):
        (tmp_path / MONITORING_FILE).write_text(text)
        with pytest.raises(ConfigError) as error:
            load_thresholds(tmp_path)
        assert error.value.context["field"] == key
        assert error.value.context["file"] == tmp_path / MONITORING_FILE


def test_the_study_file_holds_every_threshold() -> None:
    """instruments/monitoring.yaml sets each threshold (so a reader finds them all there)."""
    import yaml

    data = yaml.safe_load((INSTRUMENTS / MONITORING_FILE).read_text())
    keys = {k for section in data.values() for k in section}
    fields = {f.name for f in dataclasses.fields(Thresholds)}
    named = {"threshold": "quarantine_share", "blocking": "block_on_quarantine_share"}
    assert {named.get(k, k) for k in keys} == fields
    assert load_thresholds(INSTRUMENTS) == Thresholds()


def test_sparkline() -> None:
    assert sparkline(pd.Series([1, 2, 3, 8])) == "▁▂▃█"
    assert sparkline(pd.Series([4, 4])) == "▁▁"
    assert sparkline(pd.Series([], dtype=float)) == ""
