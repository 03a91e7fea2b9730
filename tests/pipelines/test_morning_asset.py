"""The morning view in Dagster: ``fieldwork_day`` per country, its checks recorded per country,
anomaly checks that turn a run with a burst of duplicates from green to warned, the optional
blocking quarantine-share check, and runs that tell the fieldwork story.

One small Ugandan sample runs through landing → weights twice on one instance; between the runs
a resent batch lands (25 households again under new instanceIDs), as in
tests/validate/test_morning_report.py for the library.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest

from dhsurvey.fieldwork.exports import write_xml_folder
from dhsurvey.fieldwork.run import simulate_to
from dhsurvey.ingest.store import read_raw
from dhsurvey.store import Store
from dhsurvey.validate.monitoring import MONITORING_FILE
from pipelines.definitions import defs
from pipelines.resources import Secrets, StudyPaths
from pipelines.study import countries, models

RESENT = 25
STAGES = ("landing", "raw_", "accepted_", "fieldwork_", "weights")


def _selection() -> list[dg.AssetKey]:
    return [k for k in defs.resolve_asset_graph().get_all_asset_keys()
            if k.to_user_string().startswith(STAGES)]


def _materialize(instance: dg.DagsterInstance, resources: dict, keys: list[dg.AssetKey]
                 ) -> dg.ExecuteInProcessResult:
    return dg.materialize([defs.get_assets_def(k) for k in keys], partition_key="UGA",
                          resources=resources, selection=keys, instance=instance,
                          raise_on_error=False)


def _messages(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [r.user_message for r in instance.all_logs(run_id)
            if r.dagster_event is None and r.user_message]


def _checks(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    return {(e.asset_key.to_user_string(), e.check_name): e
            for e in result.get_asset_check_evaluations()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, small_sample_rules: Path):
    data = tmp_path_factory.mktemp("data")
    config = next(c for c in countries() if c.iso == "UGA")
    simulate_to(data / "landing", [config], models(), seed=5, households=400,
                faults=["out_of_range"], formats=("central",))
    resources = {"paths": StudyPaths(instruments=str(small_sample_rules), data_root=str(data),
                                     reports_url="http://127.0.0.1:4101"),
                 "secrets": Secrets()}
    with dg.instance_for_test() as instance:
        first = _materialize(instance, resources, _selection())
        households = read_raw(Store(data).raw("UGA"), "household")
        again = households.root.head(RESENT).copy()
        again["KEY"] = [f"uuid:{uuid.uuid4()}" for _ in range(RESENT)]
        write_xml_folder(dataclasses.replace(households, root=again, repeats={}),
                         models()["household"], data / "landing" / "UGA" / "xml" / "resent")
        second = _materialize(instance, resources, _selection())
        yield instance, resources, first, second, small_sample_rules


def test_every_check_records_its_country(runs) -> None:
    _, _, first, second, _ = runs
    assert first.success and second.success
    evaluations = [*first.get_asset_check_evaluations(), *second.get_asset_check_evaluations()]
    assert len(evaluations) > 20
    assert {e.partition for e in evaluations} == {"UGA"}
    assert {c for _, c in _checks(first)} >= {"recognised", "structure", "reconciliation",
                                              "duplicates_jump", "enumerator_quarantine_share",
                                              "margins"}


def test_the_morning_view_is_the_report_with_a_working_link(runs) -> None:
    _, _, first, _, _ = runs
    day = next(m for m in first.asset_materializations_for_node("fieldwork_day"))
    assert day.partition == "UGA"
    report = day.metadata["morning report"].value
    for section in ("new submissions by team and enumerator",
                    "quarantine and flags by enumerator", "flagged enumerators",
                    "progress against targets by team", "response rates by stratum",
                    "this country's runs"):
        assert f"#### {section}" in report
    assert "| team | enumerator |" in day.metadata["by enumerator"].value
    assert day.metadata["fieldwork quality report"].value == \
        "http://127.0.0.1:4101/UGA/report.html"
    assert day.metadata["previous run"].value == "none (first run)"
    # The simulated back-checks are compared: a row per back-checked enumerator.
    section = report.split("#### back-checks by enumerator")[1].split("####")[0]
    assert "| households back-checked |" in section and section.count("\n| ") > 5


def test_a_burst_of_duplicates_warns_instead_of_a_green_run(runs) -> None:
    _, _, first, second, _ = runs
    assert _checks(first)[("fieldwork_day", "duplicates_jump")].passed
    jump = _checks(second)[("fieldwork_day", "duplicates_jump")]
    assert not jump.passed and jump.severity == dg.AssetCheckSeverity.WARN
    assert f"household: {RESENT} new duplicates" in jump.description
    assert _checks(second)[("fieldwork_day", "speeders_jump")].passed
    assert _checks(second)[("fieldwork_day", "enumerator_quarantine_share")].passed


def test_the_run_log_tells_the_fieldwork_story(runs) -> None:
    instance, _, first, second, _ = runs
    lines = "\n".join(_messages(instance, second.run_id))
    assert f"UGA: anomaly: household: {RESENT} new duplicates" in lines
    assert "UGA: household +25, child +0" in lines
    raw = next(line for line in _messages(instance, second.run_id)
               if line.startswith("UGA household:") and "submissions" in line)
    assert f"(+{RESENT})" in raw
    assert f"{RESENT} duplicates (+{RESENT})" in lines
    assert "UGA: enumerator" in lines and "flagged: duplicates" in lines
    assert any("children weighted" in m for m in _messages(instance, first.run_id))
    assert "must-not-change answers differed" in lines


@contextmanager
def _rules(path: Path, text: str) -> Iterator[None]:
    """The monitoring rules at ``path`` replaced by ``text`` for the block, then put back as
    they were (the instruments folder is the session's, shared by other tests)."""
    before = path.read_text() if path.exists() else None
    path.write_text(text)
    try:
        yield
    finally:
        if before is None:
            path.unlink()
        else:
            path.write_text(before)


def test_the_blocking_quarantine_share_stops_the_country_before_weights(runs) -> None:
    instance, resources, _, _, instruments = runs
    rules = instruments / MONITORING_FILE
    with _rules(rules, "enumerators:\n  min_interviews: 1\n"
                       "quarantine_share:\n  threshold: 0.0001\n  blocking: true\n"):
        keys = [dg.AssetKey("fieldwork_day"), dg.AssetKey("weights")]
        result = _materialize(instance, resources, keys)
    share = _checks(result)[("fieldwork_day", "enumerator_quarantine_share")]
    assert not share.passed and share.severity == dg.AssetCheckSeverity.ERROR
    assert not result.success
    assert [m for m in result.get_asset_materialization_events()
            if m.asset_key == dg.AssetKey("weights")] == []


def test_a_failure_leads_with_its_fieldwork_cause(runs) -> None:
    instance, resources, _, _, instruments = runs
    rules = instruments / MONITORING_FILE
    with _rules(rules, "anomalies:\n  new_duplicate: 5\n"):
        result = _materialize(instance, resources, [dg.AssetKey("fieldwork_day")])
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    description = failure.step_failure_data.user_failure_data.description
    assert description.startswith("UGA morning report: unknown key 'new_duplicate'")
    assert MONITORING_FILE in description
