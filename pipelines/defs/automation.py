"""Sensors, schedules and jobs: new exports in landing/<ISO>/ start that country's run.

Both are off until a data manager turns them on in the UI. The landing sensor looks at every
country's landing folder each minute (names, sizes and times only:
:func:`dhsurvey.ingest.landing.scan`) and starts a country's run when its files changed and
have settled: the same at two looks in a row, or a ``*.done`` marker newer than every file.
Its cursor holds, per country, the state it last saw and the state it last launched. The first
tick after it is switched on starts nothing: it records what it sees, and takes as launched
the state the country's latest ``landing`` materialisation read (so data already ingested is
never run again; data never ingested, or changed while the sensor was off, starts at the next
tick if it has settled). A run's key is ``<ISO>-<state>[-after-<state it follows>]``: one
state of a country runs once after another, and a folder put back as it was runs again.
"""

from __future__ import annotations

import json
from typing import Any

import dagster as dg

from dhsurvey.ingest.landing import LandingState, scan, waiting_for
from pipelines.defs.ingest.assets import LANDING_STATE, landing
from pipelines.resources import COUNTRY_TAG, StudyPaths
from pipelines.study import countries, study

forms_job = dg.define_asset_job("forms_job", selection=["compiled_forms"],
                                description="Compile and lint the instruments.")
country_job = dg.define_asset_job(
    "country_job",
    selection=dg.AssetSelection.all() - dg.AssetSelection.assets(
        "compiled_forms", "pooled_release", "expectations"),
    description="Everything for one country, from landing exports to release (Great "
                "Expectations apart: `expectations_job`).",
)
pooled_job = dg.define_asset_job(
    "pooled_job", selection=["pooled_release"],
    description="Pool the released countries (those whose disclosure gate passed).")


def _ingested_state(instance: dg.DagsterInstance, iso: str) -> str | None:
    """The landing state the country's latest ``landing`` materialisation read, if any."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=landing.key, asset_partitions=[iso]), limit=1).records
    materialization = records[0].asset_materialization if records else None
    value = materialization.metadata.get(LANDING_STATE) if materialization else None
    return str(value.value) if value is not None else None


def _read_cursor(text: str | None) -> dict[str, dict[str, Any]] | None:
    """Per country the states last seen and last launched; None when there is none yet."""
    try:
        cursor = json.loads(text) if text else None
    except json.JSONDecodeError:
        return None
    if not isinstance(cursor, dict) or not all(isinstance(v, dict) for v in cursor.values()):
        return None
    return cursor


def _decide(iso: str, state: LandingState, seen: dict[str, Any]
            ) -> tuple[dg.RunRequest | None, str]:
    """A run request for the country, or why not; ``seen`` (its cursor entry) is updated."""
    digest, previous = state.digest, seen.get("seen")
    seen["seen"] = digest
    if not digest:
        return None, "no exports"
    if digest == seen.get("launched"):
        return None, "nothing changed since its last run"
    reason = waiting_for(state, previous)
    if reason:
        return None, reason
    # Keyed by the state and the one it follows: Dagster launches a run key once, and a
    # folder put back as it was (a wrong file removed again) must run again.
    after = seen.get("launched")
    seen["launched"] = digest
    return dg.RunRequest(run_key=f"{iso}-{digest}" + (f"-after-{after}" if after else ""),
                         partition_key=iso,
                         tags={COUNTRY_TAG: iso, "dhsurvey/landing-state": digest}), ""


@dg.sensor(job=country_job, minimum_interval_seconds=60,
           default_status=dg.DefaultSensorStatus.STOPPED,
           description="Start a country's run when its landing folder changed and settled "
                       "(unchanged for a minute, or a *.done marker); quiet on its first tick.")
def landing_sensor(context: dg.SensorEvaluationContext, paths: StudyPaths
                   ) -> dg.SensorResult:
    """Launch each country whose landing state changed and settled; say why for the others."""
    cursor = _read_cursor(context.cursor)
    first = cursor is None  # switched on for the first time, or a cursor of an older sensor
    cursor = cursor or {}
    requests, skipped = [], []
    for config in countries():
        iso = config.iso
        state = scan(paths.store.landing(iso))
        if first:  # record only; what was already ingested counts as launched
            cursor[iso] = {"seen": state.digest, "launched": _ingested_state(context.instance,
                                                                             iso)}
            continue
        request, reason = _decide(iso, state, cursor.setdefault(iso, {}))
        if request is not None:
            requests.append(request)
        else:
            skipped.append(f"{iso}: {reason}")
    if requests and skipped:
        context.log.info("not started: " + "; ".join(skipped))
    why = "first look since the sensor was switched on: landing states recorded, nothing " \
          "started" if first else "; ".join(skipped)
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(cursor, sort_keys=True),
                           skip_reason=None if requests else why)


@dg.op(description="Fetch new submissions of every form from ODK Central (pyodk config) "
                   "into `landing/<ISO>/central-api/`.")
def fetch_from_central(paths: StudyPaths) -> dg.Output:
    from dhsurvey.study import fetch_central

    return dg.Output(None, metadata={"new submissions": fetch_central(paths.store, study())})


@dg.job(description="Pull ODK Central; the landing sensor then starts the changed countries.")
def central_sync_job() -> None:
    fetch_from_central()


central_sync = dg.ScheduleDefinition(name="central_sync", job=central_sync_job,
                                     cron_schedule="0 */3 * * *",
                                     default_status=dg.DefaultScheduleStatus.STOPPED,
                                     description="ODK Central sync every 3 hours (off by "
                                                 "default; turn on in the UI).")
