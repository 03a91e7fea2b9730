"""The code location loaded by ``dagster dev -w workspace.yaml``."""

import dagster as dg

from pipelines.defs import automation
from pipelines.defs.forms import assets as forms
from pipelines.defs.ingest import assets as ingest
from pipelines.defs.release import assets as release
from pipelines.defs.release import files as release_files
from pipelines.defs.release import pooled
from pipelines.defs.validate import assets as validate
from pipelines.defs.validate import expectations, morning
from pipelines.defs.weight import assets as weight
from pipelines.executors import executor_from_env
from pipelines.resources import Secrets, StudyPaths


def build_defs(paths: StudyPaths, secrets: Secrets) -> dg.Definitions:
    """The code location with explicit resources (the demo and tests pass their own)."""
    return dg.Definitions(
        assets=[forms.compiled_forms, ingest.landing, *ingest.raw_assets, validate.validated,
                expectations.expectations, morning.fieldwork_day, weight.weights,
                release.indicators, release_files.release, pooled.pooled_release],
        asset_checks=[forms.instruments_lint_clean],
        jobs=[automation.country_job, automation.pooled_job, automation.central_sync_job,
              automation.forms_job, expectations.expectations_job],
        sensors=[automation.landing_sensor, expectations.expectations_after_country],
        schedules=[automation.central_sync],
        resources={"paths": paths, "secrets": secrets},
        # Runs launched from the UI: multiprocess, or Celery workers (DHSURVEY_EXECUTOR); the
        # demo and tests run in-process.
        executor=executor_from_env(),
    )


defs = build_defs(StudyPaths.from_env(), Secrets.from_env())
