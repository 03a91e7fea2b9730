"""What the code location is built from: the instruments and the country configurations.

Assets and partitions are derived from these at load time, so a new country file or a new form
appears in the Dagster UI without touching the pipeline code.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import dagster as dg

from dhsurvey.fieldwork.config import CountryConfig, load_countries
from dhsurvey.forms.compile import instrument_paths
from dhsurvey.forms.model import FormModel, load_form


def instruments_dir() -> Path:
    return Path(os.environ.get("DHSURVEY_INSTRUMENTS", "instruments"))


@cache
def models() -> dict[str, FormModel]:
    loaded = [load_form(p) for p in instrument_paths(instruments_dir())]
    return {m.form_id: m for m in loaded}


@cache
def countries() -> list[CountryConfig]:
    return load_countries(instruments_dir(), list(models().values()))


def config_for(iso: str) -> CountryConfig:
    return next(c for c in countries() if c.iso == iso)


country_partitions = dg.StaticPartitionsDefinition([c.iso for c in countries()])
