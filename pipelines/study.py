"""What the code location is built from: the instruments and the country configurations.

Assets and partitions are derived from these at load time, so a new country file or a new form
appears in the Dagster UI without touching the pipeline code.
"""

from __future__ import annotations

import os
import warnings
from functools import cache
from pathlib import Path

import dagster as dg

from dhsurvey.fieldwork.config import CountryConfig
from dhsurvey.forms.model import FormModel
from dhsurvey.study import Study


def instruments_dir() -> Path:
    return Path(os.environ.get("DHSURVEY_INSTRUMENTS", "instruments"))


@cache
def study() -> Study:
    """The forms and country files, loaded and checked against each other once."""
    return Study.load(instruments_dir())


def models() -> dict[str, FormModel]:
    return study().models


def countries() -> list[CountryConfig]:
    return list(study().countries.values())


def config_for(iso: str) -> CountryConfig:
    return study().config(iso)


country_partitions = dg.StaticPartitionsDefinition([c.iso for c in countries()])

# Every check of a country's asset records its country (a partitioned check: the UI shows each
# country's status, and KEN's failed gate is not hidden by UGA's pass). Dagster marks
# partitioned checks as a preview; the warning would repeat at every load.
warnings.filterwarnings("ignore", category=dg.PreviewWarning,
                        message=".*partitions_def on an AssetCheckSpec")
