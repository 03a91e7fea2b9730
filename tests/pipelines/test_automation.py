"""The landing sensor starts exactly the countries whose exports changed; schedules are off."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from pipelines.defs.automation import central_sync, landing_sensor
from pipelines.resources import StudyPaths


def _tick(tmp_path: Path, cursor: str | None):
    context = dg.build_sensor_context(
        cursor=cursor, resources={"paths": StudyPaths(data_root=str(tmp_path))})
    requests = list(landing_sensor(context))
    return [r.partition_key for r in requests], context.cursor


def test_sensor_launches_changed_countries_only(tmp_path: Path) -> None:
    (tmp_path / "landing" / "KEN" / "central").mkdir(parents=True)
    (tmp_path / "landing" / "KEN" / "central" / "child.csv.zip").write_bytes(b"one")
    (tmp_path / "landing" / "UGA" / "kobo").mkdir(parents=True)
    (tmp_path / "landing" / "UGA" / "kobo" / "child.json").write_text("{}")
    first, cursor = _tick(tmp_path, None)
    assert first == ["KEN", "UGA"]
    again, cursor = _tick(tmp_path, cursor)
    assert again == []
    (tmp_path / "landing" / "UGA" / "kobo" / "household.json").write_text("{}")
    changed, cursor = _tick(tmp_path, cursor)
    assert changed == ["UGA"]


def test_automation_is_off_by_default() -> None:
    assert landing_sensor.default_status == dg.DefaultSensorStatus.STOPPED
    assert central_sync.default_status == dg.DefaultScheduleStatus.STOPPED
