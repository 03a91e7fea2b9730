"""Fixtures of the pipeline tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="module", autouse=True)
def small_sample_rules(study_instruments: Path) -> Iterator[Path]:
    """The study's instruments with local suppression unbounded, for the code location.

    These tests run countries of a few hundred households through Dagster: too few children
    per stratum for the study's 5 % budget, so the gate would rightly block their releases.
    What they test is the wiring; the gate at the study's own rules is tested on full
    samples (tests/anonymise/test_intruder.py). The folder is the session's one
    (tests/conftest.py), the one the demo's shared run used too.
    """
    from pipelines import study

    folder = study_instruments
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DHSURVEY_INSTRUMENTS", str(folder))
        study.study.cache_clear()
        yield folder
    study.study.cache_clear()
