"""The landing sensor: quiet on its first tick, waits for files to settle, starts one run per
landing state of a country, and says why it starts nothing; schedules are off."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from dhsurvey.ingest.landing import scan
from pipelines.definitions import build_defs
from pipelines.defs.automation import central_sync, landing_sensor
from pipelines.resources import COUNTRY_TAG, Secrets, StudyPaths


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        yield instance


class Sensor:
    """Ticks of the landing sensor over a data root, carrying the cursor like the daemon."""

    def __init__(self, data: Path, instance: dg.DagsterInstance) -> None:
        self.data, self.instance, self.cursor = data, instance, None

    def tick(self) -> tuple[list[dg.RunRequest], str]:
        paths = StudyPaths(data_root=str(self.data))
        context = dg.build_sensor_context(
            cursor=self.cursor, instance=self.instance, resources={"paths": paths},
            definitions=build_defs(paths, Secrets()))
        result = landing_sensor.evaluate_tick(context)
        self.cursor = result.cursor
        return list(result.run_requests or []), result.skip_message or ""

    def launched(self) -> list[str]:
        return [r.partition_key or "" for r in self.tick()[0]]


def _write(data: Path, rel: str, content: bytes = b"export") -> Path:
    path = data / "landing" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_first_tick_is_quiet_and_changed_countries_start_once_settled(
        tmp_path: Path, instance: dg.DagsterInstance) -> None:
    _write(tmp_path, "KEN/central/child.csv.zip")
    _write(tmp_path, "UGA/kobo/child.json", b"{}")
    sensor = Sensor(tmp_path, instance)
    requests, why = sensor.tick()
    assert requests == [] and "first look" in why  # switching the sensor on starts nothing
    # Never ingested, unchanged since: settled, so both start at the next tick, once.
    assert sorted(sensor.launched()) == ["KEN", "UGA"]
    requests, why = sensor.tick()
    assert requests == [] and "KEN: nothing changed since its last run" in why
    _write(tmp_path, "UGA/kobo/household.json", b"{}")
    requests, why = sensor.tick()
    assert requests == [] and "UGA: files changed since the last look" in why
    assert sensor.launched() == ["UGA"]


def test_a_growing_file_starts_nothing_until_it_settles(
        tmp_path: Path, instance: dg.DagsterInstance) -> None:
    sensor = Sensor(tmp_path, instance)
    sensor.tick()  # switched on over an empty landing zone
    export = _write(tmp_path, "KEN/central/child.csv.zip", b"PK")
    assert sensor.launched() == []
    export.write_bytes(b"PK" * 1000)  # still being copied: its size changed between ticks
    assert sensor.launched() == []
    requests, _ = sensor.tick()  # the same as at the previous tick: settled
    assert [(r.partition_key, r.tags[COUNTRY_TAG]) for r in requests] == [("KEN", "KEN")]
    assert requests[0].run_key == f"KEN-{scan(tmp_path / 'landing' / 'KEN').digest}"
    assert sensor.launched() == []  # that state ran; it does not run again
    _write(tmp_path, "KEN/central/household.csv.zip.part")  # a browser's partial download
    sensor.tick()
    requests, why = sensor.tick()
    assert requests == [] and "still being copied: central/household.csv.zip.part" in why


def test_a_done_marker_starts_the_run_at_once(tmp_path: Path,
                                              instance: dg.DagsterInstance) -> None:
    sensor = Sensor(tmp_path, instance)
    sensor.tick()
    _write(tmp_path, "KEN/central/child.csv.zip")
    _write(tmp_path, "KEN/upload.done", b"")  # written by the transfer script when complete
    (request,) = sensor.tick()[0]
    assert request.partition_key == "KEN"
    # The marker is no data: touching it again starts nothing (same state, same run key).
    _write(tmp_path, "KEN/upload.done", b"")
    assert sensor.launched() == []


def test_run_key_names_the_landing_state(tmp_path: Path, instance: dg.DagsterInstance) -> None:
    _write(tmp_path, "KEN/central/child.csv.zip")
    keys = []
    for _ in range(2):  # switched off and on again (cursor lost), data never ingested
        sensor = Sensor(tmp_path, instance)
        sensor.tick()
        keys += [r.run_key for r in sensor.tick()[0]]
    assert len(keys) == 2 and keys[0] == keys[1]  # Dagster launches a run key once


def test_a_folder_put_back_as_it_was_runs_again(tmp_path: Path,
                                                instance: dg.DagsterInstance) -> None:
    """A wrong file dropped in (state B, run) and removed again: state A must run again,
    although Dagster launches a run key only once."""
    sensor = Sensor(tmp_path, instance)
    sensor.tick()
    _write(tmp_path, "KEN/central/child.csv.zip")
    sensor.tick()
    (first,) = sensor.tick()[0]
    wrong = _write(tmp_path, "KEN/central/household.csv.zip")
    sensor.tick()
    (second,) = sensor.tick()[0]
    wrong.unlink()
    sensor.tick()
    (third,) = sensor.tick()[0]
    assert third.tags["dhsurvey/landing-state"] == first.tags["dhsurvey/landing-state"]
    assert len({first.run_key, second.run_key, third.run_key}) == 3


def test_data_already_ingested_is_not_run_again_when_switched_on(
        tmp_path: Path, instance: dg.DagsterInstance) -> None:
    from pipelines.defs.ingest.assets import landing

    for iso in ("KEN", "UGA"):
        _write(tmp_path, f"{iso}/central/child.csv.zip")
    result = dg.materialize([landing], partition_key="KEN", instance=instance,
                            resources={"paths": StudyPaths(data_root=str(tmp_path))})
    assert result.success  # KEN's landing state is recorded as ingested
    sensor = Sensor(tmp_path, instance)
    assert sensor.launched() == []
    assert sensor.launched() == ["UGA"]  # UGA was never ingested
    assert sensor.launched() == []


def test_a_cursor_of_the_older_sensor_counts_as_a_first_tick(
        tmp_path: Path, instance: dg.DagsterInstance) -> None:
    _write(tmp_path, "KEN/central/child.csv.zip")
    sensor = Sensor(tmp_path, instance)
    sensor.cursor = '{"KEN": "0123456789abcdef"}'  # {ISO: fingerprint} of the older sensor
    requests, why = sensor.tick()
    assert requests == [] and "first look" in why


def test_automation_is_off_by_default() -> None:
    assert landing_sensor.default_status == dg.DefaultSensorStatus.STOPPED
    assert central_sync.default_status == dg.DefaultScheduleStatus.STOPPED
