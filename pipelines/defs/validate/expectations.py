"""Great Expectations on the accepted tables: its own asset, off the path to the release.

Why apart: the suites are generated from the forms and repeat what the pandera schema has
already enforced at validation (choices, ranges, required answers); they are a second opinion
and Data Docs to browse, not a gate. Run inside validation they cost seconds per country
(the import alone takes several) on the path every release waits on. Here they are a
partitioned asset of their own, outside ``country_job``: ``expectations_job`` runs them for a
country, the ``expectations_after_country`` sensor (off until switched on) starts that job
after each successful country run, and a data manager can materialise them from the UI. No
release waits on them; each form's result is a non-blocking check (severity WARN).
"""

from collections.abc import Iterator

import dagster as dg

from dhsurvey.store import DATA_DOCS
from pipelines.defs.runlog import check_metadata
from pipelines.defs.validate.assets import FORMS, accepted_key
from pipelines.resources import StudyPaths
from pipelines.study import country_partitions, models

EXPECTATIONS = dg.AssetKey("expectations")


def suite_check(form: str) -> str:
    """The check that carries ``form``'s suite result."""
    return f"suite_{form}"


@dg.asset(
    key=EXPECTATIONS, deps=[accepted_key(f) for f in FORMS], group_name="clean",
    kinds={"great_expectations", "html"}, partitions_def=country_partitions,
    check_specs=[dg.AssetCheckSpec(suite_check(f), asset=EXPECTATIONS, blocking=False,
                                   partitions_def=country_partitions,
                                   description=f"'{f}' accepted table against the Great "
                                               "Expectations suite generated from the form")
                 for f in FORMS],
    description="Great Expectations suites generated from the forms, run on the accepted "
                "tables; Data Docs in `clean/<ISO>/data_docs/`. Not part of `country_job`: no "
                "release waits on it (`expectations_job`, or the sensor after a country run).",
)
def expectations(context: dg.AssetExecutionContext, paths: StudyPaths) -> Iterator:
    """Each form's accepted root table (every batch of a country validated in batches)
    against its generated suite."""
    from dhsurvey.validate.expectations import validate_accepted

    iso, store = context.partition_key, paths.store
    tables = {f: store.read_accepted(iso, f) for f in FORMS if store.has_accepted(iso, f)}
    docs = store.quality(iso) / DATA_DOCS
    result = validate_accepted(tables, models(), docs, name=iso)
    yield dg.MaterializeResult(metadata={
        "forms": dg.MetadataValue.md(
            "| form | expectations | successful | failed |\n|---|---|---|---|\n" + "\n".join(
                f"| {form} | {o.evaluated} | {o.successful} | {', '.join(o.failed) or 'none'} |"
                for form, o in result.forms.items())),
        "data docs": dg.MetadataValue.path(str(result.index))})
    for form in FORMS:
        outcome = result.forms.get(form)
        yield dg.AssetCheckResult(
            check_name=suite_check(form), passed=outcome is not None and outcome.success,
            severity=dg.AssetCheckSeverity.WARN,
            metadata=check_metadata(
                {"evaluated": outcome.evaluated, "successful": outcome.successful,
                 "failed": ", ".join(outcome.failed) or "none"} if outcome is not None else
                {"evaluated": 0, "note": "no accepted table"}))


expectations_job = dg.define_asset_job(
    "expectations_job", selection=[EXPECTATIONS],
    description="Great Expectations and Data Docs for one country's accepted tables.")


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS, request_job=expectations_job,
    default_status=dg.DefaultSensorStatus.STOPPED, minimum_interval_seconds=60,
    description="After a successful country run, run Great Expectations on that country's "
                "accepted tables (off until switched on).")
def expectations_after_country(context: dg.RunStatusSensorContext
                               ) -> dg.RunRequest | dg.SkipReason:
    run = context.dagster_run
    partition = run.tags.get("dagster/partition")
    if run.job_name != "country_job" or not partition:
        return dg.SkipReason(f"run {run.run_id} is not a country run")
    return dg.RunRequest(run_key=f"expectations-{run.run_id}", partition_key=partition)
