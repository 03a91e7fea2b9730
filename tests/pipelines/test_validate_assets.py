"""The pipeline from landing exports to accepted tables, in-process for one country."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg

from dhsurvey.fieldwork.faults import KINDS
from dhsurvey.fieldwork.run import simulate_to
from pipelines.definitions import defs
from pipelines.resources import Secrets, StudyPaths
from pipelines.study import countries, models

INSTRUMENTS = Path(__file__).parents[2] / "instruments"


def test_country_partition_runs_from_landing_to_accepted(tmp_path: Path) -> None:
    config = next(c for c in countries() if c.iso == "UGA")
    simulate_to(tmp_path / "landing", [config], models(), seed=5, households=400,
                faults=list(KINDS), formats=("central", "kobo"))
    resources = {"paths": StudyPaths(instruments=str(INSTRUMENTS), data_root=str(tmp_path)),
                 "secrets": Secrets()}
    assets = [a for a in defs.resolve_asset_graph().get_all_asset_keys()
              if a.to_user_string().startswith(("raw_", "accepted_", "fieldwork_", "weights",
                                                "expectations"))]
    result = dg.materialize(
        [*[defs.get_assets_def(k) for k in assets]],
        partition_key="UGA", resources=resources, selection=assets)
    assert result.success
    checks = {(e.asset_key.to_user_string(), e.check_name): e
              for e in result.get_asset_check_evaluations()}
    for form in models():
        assert checks[(f"raw_{form}", "structure")].passed
        assert checks[(f"accepted_{form}", "reconciliation")].passed
        assert checks[("expectations", f"suite_{form}")].passed
        assert (tmp_path / "clean" / "UGA" / form / "accepted.parquet").exists()
    child = next(m for m in result.asset_materializations_for_node("validated")
                 if m.asset_key == dg.AssetKey("accepted_child"))
    assert child.metadata["quarantined"].value > 0
    assert "rule" in child.metadata["top quarantine reasons"].value
    assert (tmp_path / "clean" / "UGA" / "data_docs" / "index.html").exists()
    quality = next(m for m in result.asset_materializations_for_node("validated")
                   if m.asset_key == dg.AssetKey("fieldwork_quality"))
    assert "RR1" in quality.metadata["response rates (AAPOR)"].value
    assert (tmp_path / "clean" / "UGA" / "report.html").exists()
    assert "| issues |" in quality.metadata["restricted listings (rows)"].value
    assert (tmp_path / "clean" / "UGA" / "restricted" / "listings" / "issues.parquet").exists()
    # Metadata is shared: counts, rates, rule and column names, no value of a submission.
    canaries = json.loads((tmp_path / "landing" / "UGA" / "faults.json").read_text())[
        "canaries"]
    shown = "\n".join(str(v.value) for e in result.get_asset_materialization_events()
                      for v in e.step_materialization_data.materialization.metadata.values())
    shown += "\n".join(str(v.value) for e in result.get_asset_check_evaluations()
                       for v in e.metadata.values())
    assert canaries and [c for c in canaries if c in shown] == []
    assert "uuid:" not in shown
    assert checks[("weights", "margins")].passed
    assert (tmp_path / "clean" / "UGA" / "weights" / "child.parquet").exists()


def test_the_duration_chart_marks_quarantined_and_teamless_enumerators() -> None:
    """Enumerator 1036 (interviews quarantined, ID in no team) is marked; others are not."""
    import pandas as pd

    from pipelines.defs.validate.assets import _marks

    dash = pd.DataFrame({"enum_id": pd.array([1036, 101, 102], dtype="Int64"),
                         "team": pd.array([None, 1, 1], dtype="Int64"),
                         "quarantined": pd.array([2, 0, None], dtype="Int64"),
                         "quarantine_reasons": pd.array(["constraint (enum_id) 2", None, None],
                                                        dtype="string")})
    marks = [_marks(r) for r in dash.itertuples()]
    assert marks == ["⚠ 2 quarantined (constraint (enum_id) 2); ⚠ in no team", "", ""]
