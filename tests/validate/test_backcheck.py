"""Back-check comparison on small hand-made frames: exact error rates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dhsurvey.errors import DhsurveyError
from dhsurvey.validate.backcheck import compare, simulate_backcheck

VARIABLES = {"hh_size": 1, "head_name": 2, "income": 3}


def _frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    original = pd.DataFrame({
        "hh_id": [1, 2, 3, 4],
        "enum_id": [10, 10, 20, 20],
        "team": [1, 1, 2, 2],
        "hh_size": [5, 4, 6, 3],
        "head_name": ["Amani", "Juma ", "Neema", "Asha"],
        "income": [100.0, 200.0, 300.0, np.nan],
    })
    backcheck = pd.DataFrame({
        "hh_id": ["1", "2", "3", "4", "9"],  # ids as text still match; 9 has no original
        "hh_size": [5, 5, 6, 3, 2],  # id 2 differs: type 1 error
        "head_name": ["amani", "JUMA", " neema", "Asha", "X"],  # trimmed, case-insensitive
        "income": [105.0, 230.0, 300.0, 50.0, 1.0],  # 1 within 10; 2 beyond; 4 vs missing
        "bc_id": [7, 7, 8, 8, 8],
    })
    return original, backcheck


def test_comparison_and_error_rates() -> None:
    original, backcheck = _frames()
    out = compare(original, backcheck, id_columns=["hh_id"], variables=VARIABLES,
                  tolerances={"income": 10}, team="team", backchecker="bc_id")
    comp = out["comparison"].set_index(["hh_id", "variable"])
    assert len(comp) == 4 * 3
    assert comp.loc[(1, "income"), "differs"] and comp.loc[(1, "income"), "within_tolerance"]
    assert not comp.loc[(1, "income"), "error"]
    assert comp.loc[(2, "income"), "error"] and comp.loc[(4, "income"), "error"]
    assert comp.loc[(2, "income"), "difference"] == 30
    assert not comp.loc[(2, "head_name"), "differs"]  # "Juma " vs "JUMA"
    assert comp.loc[(2, "hh_size"), "error"]

    by_var = out["by_variable"].set_index("variable")
    assert by_var.loc["hh_size", "error_rate"] == pytest.approx(1 / 4)
    assert by_var.loc["head_name", "error_rate"] == 0
    assert by_var.loc["income", "differences"] == 3
    assert by_var.loc["income", "error_rate"] == pytest.approx(2 / 4)
    assert by_var.loc["hh_size", "action"].startswith("must not change")

    by_type = out["by_type"].set_index("type")
    assert by_type.loc["all", "errors"] == 3 and by_type.loc["all", "compared"] == 12
    assert by_type.loc["all", "error_rate"] == pytest.approx(3 / 12)
    assert by_type.loc["1", "error_rate"] == pytest.approx(1 / 4)
    assert by_type.loc["3", "error_rate"] == pytest.approx(2 / 4)

    by_enum = out["by_enumerator"].set_index(["enum_id", "type"])
    assert by_enum.loc[(10, "all"), "error_rate"] == pytest.approx(2 / 6)  # id 2: size, income
    assert by_enum.loc[(20, "all"), "error_rate"] == pytest.approx(1 / 6)  # id 4: income
    assert by_enum.loc[(10, "1"), "error_rate"] == pytest.approx(1 / 2)
    assert by_enum.loc[(20, "3"), "error_rate"] == pytest.approx(1 / 2)
    by_team = out["by_team"].set_index(["team", "type"])
    assert by_team.loc[(1, "all"), "errors"] == 2 and by_team.loc[(2, "all"), "errors"] == 1
    by_bc = out["by_backchecker"].set_index(["bc_id", "type"])
    assert by_bc.loc[(7, "all"), "compared"] == 6

    assert out["unmatched"]["hh_id"].tolist() == ["9"]


def test_exclude_missing_and_default_tolerance() -> None:
    original, backcheck = _frames()
    out = compare(original, backcheck, id_columns=["hh_id"], variables=VARIABLES,
                  exclude_missing=True)
    income = out["by_variable"].set_index("variable").loc["income"]
    assert income["compared"] == 3 and income["errors"] == 2  # no tolerance: 105 ≠ 100
    assert "by_team" not in out


def test_bad_input_is_refused() -> None:
    original, backcheck = _frames()
    with pytest.raises(ValueError, match="types"):
        compare(original, backcheck, id_columns=["hh_id"], variables={"hh_size": 4})
    with pytest.raises(ValueError, match="duplicate") as info:
        compare(pd.concat([original, original.head(1)]), backcheck, id_columns=["hh_id"],
                variables=VARIABLES)
    assert isinstance(info.value, DhsurveyError)
    assert info.value.code == "backcheck-duplicate-ids" and info.value.context == {
        "table": "original"}
    with pytest.raises(ValueError, match="lacks"):
        compare(original, backcheck.drop(columns="income"), id_columns=["hh_id"],
                variables=VARIABLES)


def test_simulated_backcheck_has_the_planted_error_rates() -> None:
    rng = np.random.default_rng(3)
    n = 2000
    original = pd.DataFrame({
        "cluster": np.repeat(np.arange(100), 20), "hh_number": np.tile(np.arange(20), 100),
        "enum_id": rng.integers(101, 109, n),
        "hh_size": pd.array(rng.integers(1, 12, n), dtype="Int64"),
        "head_sex": pd.array(rng.choice(["1", "2"], n), dtype="string"),
        "phones": pd.array(rng.integers(0, 6, n), dtype="Int64"),
    })
    variables = {"hh_size": 1, "head_sex": 2, "phones": 3}
    bc = simulate_backcheck(original, variables, share=0.1, error_rates={1: 0.0, 2: 0.3,
                                                                         3: 1.0},
                            rng=np.random.default_rng(0), id_columns=["cluster", "hh_number"])
    assert len(bc) == 200 and list(bc.columns) == ["cluster", "hh_number", *variables]
    assert bc["hh_size"].dtype == original["hh_size"].dtype
    out = compare(original, bc, id_columns=["cluster", "hh_number"], variables=variables)
    rates = out["by_variable"].set_index("variable")["error_rate"]
    assert rates["hh_size"] == 0 and rates["phones"] == 1
    assert 0.2 < rates["head_sex"] < 0.4
    assert out["unmatched"].empty


def test_backcheck_command_on_simulated_exports(tmp_path) -> None:
    """A back-check of 10 % of households, written as a Central export, read back and compared."""
    from pathlib import Path

    import numpy as np
    from click.testing import Result
    from typer.testing import CliRunner

    from dhsurvey.cli import app
    from dhsurvey.fieldwork.config import load_country, load_plan
    from dhsurvey.fieldwork.exports import write_central_zip
    from dhsurvey.fieldwork.simulate import FORMS, simulate_country
    from dhsurvey.forms.model import load_form
    from dhsurvey.ingest.canonical import RawForm
    from dhsurvey.validate.backcheck import simulate_backcheck

    instruments = Path(__file__).parents[2] / "instruments"
    models = {f: load_form(instruments / f"{f}.xlsx") for f in FORMS}
    sim = simulate_country(load_country(instruments / "countries" / "KEN.yaml"), models,
                           seed=6, households=500)
    hh = sim.forms["household"]
    plan = load_plan(instruments / "backcheck.yaml")
    done = hh.root[hh.root["disposition"] == "1"].reset_index(drop=True)
    checks = simulate_backcheck(done, plan.variables, share=0.2,
                                error_rates={1: 0.0, 2: 0.5, 3: 0.2},
                                rng=np.random.default_rng(1))
    checks["KEY"] = [f"uuid:bc-{i}" for i in range(len(checks))]
    write_central_zip(hh, models["household"], tmp_path / "original.csv.zip")

    def backcheck(table: pd.DataFrame, name: str) -> Result:
        write_central_zip(RawForm("household", table), models["household"],
                          tmp_path / f"{name}.csv.zip")
        return CliRunner().invoke(app, [
            "backcheck", str(tmp_path / "original.csv.zip"), str(tmp_path / f"{name}.csv.zip"),
            "--out", str(tmp_path / name), "--instruments", str(instruments)])

    result = backcheck(checks, "bc")
    assert result.exit_code == 0, result.output
    by_variable = pd.read_parquet(tmp_path / "bc" / "by_variable.parquet").set_index("variable")
    assert by_variable.loc["hh_size", "errors"] == 0  # type 1 never changed here
    assert by_variable.loc["hh_phones", "differences"] > 0
    assert "hh_size" in result.output
    refused = backcheck(pd.concat([checks, checks.head(1).assign(KEY="uuid:bc-again")],
                                  ignore_index=True), "twice")
    assert refused.exit_code == 2, refused.output
    assert "[backcheck-duplicate-ids] backcheck has duplicate ids" in refused.output
    assert "twice.csv.zip" in refused.output and "Traceback" not in refused.output
