"""Simulated, typed child and household tables with known don't-know/refused answers."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from dhsurvey.fieldwork.config import load_country
from dhsurvey.fieldwork.simulate import FORMS, simulate_country
from dhsurvey.forms.model import FormModel, load_form
from dhsurvey.validate.types import to_typed

INSTRUMENTS = Path(__file__).parents[2] / "instruments"


@pytest.fixture(scope="session")
def models() -> dict[str, FormModel]:
    return {f: load_form(INSTRUMENTS / f"{f}.xlsx") for f in FORMS}


@pytest.fixture(scope="session")
def _tables(models: dict[str, FormModel]) -> dict[str, pd.DataFrame]:
    sim = simulate_country(load_country(INSTRUMENTS / "countries" / "KEN.yaml"), models, seed=1,
                           households=300)
    child, _ = to_typed(sim.forms["child"].root, models["child"])
    household, _ = to_typed(sim.forms["household"].root, models["household"])
    roster, _ = to_typed(sim.forms["household"].repeats["roster"], models["household"], "roster")
    # Known reserved answers, each followed by a plain missing in the same column.
    child.loc[0, "contact_unknown"] = 98
    child.loc[1, "contact_unknown"] = 99
    child.loc[2, "contact_unknown"] = pd.NA
    child.loc[3, "sex_content"] = 99
    roster.loc[0, "internet_use"] = 98
    roster.loc[1, "internet_use"] = pd.NA
    return {"child": child, "household": household, "household.roster": roster}


@pytest.fixture
def tables(_tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Fresh copies, so no test sees another's edits."""
    return {name: df.copy() for name, df in _tables.items()}
