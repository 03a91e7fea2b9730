"""Sensors, schedules and jobs: new exports in landing/<ISO>/ start that country's run.

Both are off until a data manager turns them on in the UI (a sensor that starts runs on its
first tick would re-run every country whenever the UI starts).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import dagster as dg

from pipelines.resources import StudyPaths
from pipelines.study import countries, study

forms_job = dg.define_asset_job("forms_job", selection=["compiled_forms"],
                                description="Compile and lint the instruments.")
country_job = dg.define_asset_job(
    "country_job",
    selection=dg.AssetSelection.all() - dg.AssetSelection.assets("compiled_forms",
                                                                  "pooled_release"),
    description="Everything for one country, from landing exports to release.",
)
pooled_job = dg.define_asset_job(
    "pooled_job", selection=["pooled_release"],
    description="Pool the released countries (those whose disclosure gate passed).")


def fingerprint(folder: Path) -> str:
    """Names, sizes and modification times of every export file below ``folder``."""
    if not folder.exists():
        return ""
    parts = sorted(f"{p.relative_to(folder)}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
                   for p in folder.rglob("*") if p.is_file())
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16] if parts else ""


@dg.sensor(job=country_job, minimum_interval_seconds=60,
           default_status=dg.DefaultSensorStatus.STOPPED)
def landing_sensor(context: dg.SensorEvaluationContext, paths: StudyPaths):
    """Launch a country's run when its landing folder changed since the last tick."""
    seen = json.loads(context.cursor) if context.cursor else {}
    for config in countries():
        current = fingerprint(paths.store.landing(config.iso))
        if current and seen.get(config.iso) != current:
            seen[config.iso] = current
            yield dg.RunRequest(run_key=f"{config.iso}-{current}", partition_key=config.iso)
    context.update_cursor(json.dumps(seen, sort_keys=True))


@dg.op(description="Fetch new submissions of every form from ODK Central (pyodk config) "
                   "into landing/<ISO>/central-api/.")
def fetch_from_central(paths: StudyPaths) -> dg.Output:
    from dhsurvey.study import fetch_central

    return dg.Output(None, metadata={"new submissions": fetch_central(paths.store, study())})


@dg.job(description="Pull ODK Central; the landing sensor then starts the changed countries.")
def central_sync_job() -> None:
    fetch_from_central()


central_sync = dg.ScheduleDefinition(job=central_sync_job, cron_schedule="0 */3 * * *",
                                     default_status=dg.DefaultScheduleStatus.STOPPED,
                                     description="ODK Central sync every 3 hours (off by "
                                                 "default; turn on in the UI).")
