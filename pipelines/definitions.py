"""The code location loaded by ``dagster dev -w workspace.yaml``."""

import dagster as dg

from pipelines.defs.forms import assets as forms
from pipelines.defs.ingest import assets as ingest
from pipelines.defs.validate import assets as validate
from pipelines.defs.weight import assets as weight
from pipelines.resources import Secrets, StudyPaths

defs = dg.Definitions(
    assets=[forms.compiled_forms, *ingest.raw_assets, validate.validated, weight.weights],
    asset_checks=[forms.instruments_lint_clean],
    resources={"paths": StudyPaths.from_env(), "secrets": Secrets.from_env()},
)
