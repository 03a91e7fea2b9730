"""The code location loaded by ``dagster dev -w workspace.yaml``."""

import dagster as dg

from pipelines.defs import forms
from pipelines.resources import StudyPaths

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([forms.assets]),
    asset_checks=dg.load_asset_checks_from_modules([forms.assets]),
    resources={"paths": StudyPaths.from_env()},
)
