"""A tier whose margin cells cannot be protected is released without the margin variables.

The margin variables (``sex``, ``age_group``, ``urban_rural``) are never suppressed, so a
cell of stratum × margins with fewer than k respondents cannot be protected while they are
released. A pilot-sized UGA sample under the study's k, l and risk thresholds (only the
suppression budget widened) has such cells: each tier is released without the margin
variables, its gate passes, methods.md says what that costs, and R still reproduces its
indicators from the Stata files (the shipped svydesign.R rakes only files that carry the
margins).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from rsurvey import compare, run_r
from workbooks import INSTRUMENTS

from dhsurvey.fieldwork.run import simulate_to
from dhsurvey.store import Store
from dhsurvey.study import Study, run_country


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("withheld")
    instruments = root / "instruments"
    shutil.copytree(INSTRUMENTS, instruments)
    rules = yaml.safe_load((instruments / "disclosure.yaml").read_text(encoding="utf-8"))
    rules["suppression_budget"] = 1.0  # k, l and global risk stay the study's
    (instruments / "disclosure.yaml").write_text(yaml.safe_dump(rules, sort_keys=False),
                                                 encoding="utf-8")
    study = Study.load(instruments)
    simulate_to(root / "landing", [study.config("UGA")], study.models, seed=5,
                households=900, formats=("central",))
    run = run_country(Store(root), study, "UGA", key=bytes(range(32)))
    for name, tier in run.release.tiers.items():
        assert tier.gate.passed, (name, tier.gate.reasons)
    return root


@pytest.mark.parametrize("folder", ["release/UGA", "licensed/UGA"])
def test_a_tier_without_its_margin_variables_still_reproduces_in_r(
        released: Path, folder: str, tmp_path: Path) -> None:
    root = released / folder
    child = pd.read_parquet(root / "child.parquet")
    assert not {"sex", "age_group", "urban_rural"} & set(child.columns)
    published = pd.read_parquet(root / "indicators.parquet")
    assert not {"sex", "age_group"} & set(published["domain"])
    note = (root / "methods.md").read_text(encoding="utf-8")
    assert "margin variables (sex, age_group, urban_rural) are withheld" in note
    r, svyset = run_r(root, tmp_path)
    compare(published, r)
    assert set(svyset["file"]) == {"household", "child", "caregiver"}
