"""Weighting-class nonresponse adjustment: factors, class totals and the collapsing rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dhsurvey.errors import DhsurveyError
from dhsurvey.weight import nonresponse_adjust


def frame(cells: dict[tuple, tuple[int, int]], weight: float = 10.0) -> pd.DataFrame:
    """Rows per cell: ``{(region, urban): (respondents, non_respondents)}``."""
    rows = []
    for key, (r, nr) in cells.items():
        for i in range(r + nr):
            rows.append({**dict(zip(("region", "urban", "size"), key, strict=False)),
                         "responded": i < r, "w": weight + (i % 3)})
    return pd.DataFrame(rows)


def class_totals_preserved(df: pd.DataFrame, result, classes: list[str]) -> None:
    cell_class = result.cells.set_index(classes)["class"]
    row_class = cell_class.loc[pd.MultiIndex.from_frame(df[classes])].to_numpy()
    before = df["w"].groupby(row_class).sum()
    after = result.weights.groupby(row_class).sum()
    pd.testing.assert_series_equal(before, after, rtol=1e-12)
    assert result.weights.sum() == pytest.approx(df["w"].sum(), rel=1e-12)


def test_factors_without_collapsing() -> None:
    df = frame({("A", "R"): (30, 10), ("A", "U"): (25, 5), ("B", "R"): (40, 40),
                ("B", "U"): (22, 3)})
    result = nonresponse_adjust(df, "w", "responded", ["region", "urban"])
    assert result.log == () and len(result.classes) == 4
    assert not result.classes["collapsed"].any()
    assert (result.weights[~df["responded"]] == 0).all()
    for _, row in result.classes.iterrows():
        sel = (df["region"] == row["region"]) & (df["urban"] == row["urban"])
        expected = df.loc[sel, "w"].sum() / df.loc[sel & df["responded"], "w"].sum()
        assert row["factor"] == pytest.approx(expected)
        got = result.weights[sel & df["responded"]] / df.loc[sel & df["responded"], "w"]
        assert np.allclose(got, expected)
    class_totals_preserved(df, result, ["region", "urban"])


def test_small_class_merges_with_next_level_then_lifts() -> None:
    df = frame({("A", "R"): (5, 5), ("A", "U"): (30, 10), ("B", "R"): (40, 10),
                ("B", "U"): (22, 3)})
    result = nonresponse_adjust(df, "w", "responded", ["region", "urban"])
    assert len(result.log) == 1 and "5 respondents < 20" in result.log[0]
    assert "region=A, urban=R" in result.log[0] and "region=A, urban=U" in result.log[0]
    first = result.classes.iloc[0]
    assert (first["region"], first["urban"]) == ("A", "(all)")  # urban dropped within A
    assert first["collapsed"] and first["n_cells"] == 2 and first["n_respondents"] == 35
    assert result.cells.loc[result.cells["region"] == "A", "class"].nunique() == 1
    class_totals_preserved(df, result, ["region", "urban"])


def test_last_level_merges_with_previous_and_large_factor_collapses() -> None:
    # (B, U) responds at 25 %: factor 4 > 3 -> merged with (B, R), the previous level.
    df = frame({("A", "R"): (30, 10), ("A", "U"): (30, 10), ("B", "R"): (40, 10),
                ("B", "U"): (25, 75)})
    result = nonresponse_adjust(df, "w", "responded", ["region", "urban"])
    assert len(result.log) == 1 and "factor" in result.log[0]
    row = result.classes.set_index("region").loc["B"]
    assert row["urban"] == "(all)" and row["factor"] <= 3.0
    class_totals_preserved(df, result, ["region", "urban"])


def test_three_variables_collapse_within_then_across_parents() -> None:
    cells = {}
    for region in ("A", "B"):
        for urban in ("R", "U"):
            for size in (1, 2, 3):
                cells[(region, urban, size)] = (12, 4)
    cells[("A", "R", 1)] = (2, 2)
    df = frame(cells)
    result = nonresponse_adjust(df, "w", "responded", ["region", "urban", "size"])
    # Every final class passes the rule; A/R cells were merged along 'size' first.
    assert (result.classes["n_respondents"] >= 20).all()
    assert (result.classes["factor"] <= 3.0).all()
    assert result.log[0].startswith("region=A, urban=R, size=1 (2 respondents < 20)")
    assert "size=2" in result.log[0]
    class_totals_preserved(df, result, ["region", "urban", "size"])


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_random_designs_preserve_class_totals(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 1500
    df = pd.DataFrame({
        "region": rng.choice(["N", "S", "E", "W"], n),
        "urban": rng.choice(["R", "U"], n, p=[0.7, 0.3]),
        "size": rng.choice([1, 2, 3, 4, 5], n, p=[0.1, 0.3, 0.3, 0.2, 0.1]),
        "w": rng.lognormal(3, 0.5, n),
    })
    df["responded"] = rng.random(n) < np.where(df["urban"] == "U", 0.5, 0.8)
    result = nonresponse_adjust(df, "w", "responded", ["region", "urban", "size"],
                                min_respondents=25, max_factor=2.2)
    assert (result.classes["n_respondents"] >= 25).all()
    assert (result.classes["factor"] <= 2.2).all()
    assert result.classes["n_eligible"].sum() == n
    class_totals_preserved(df, result, ["region", "urban", "size"])
    assert result.weights.index.equals(df.index)


def test_infeasible_and_invalid_inputs() -> None:
    df = frame({("A", "R"): (10, 40), ("A", "U"): (10, 40)})
    with pytest.raises(DhsurveyError) as err:
        nonresponse_adjust(df, "w", "responded", ["region", "urban"])
    assert err.value.code == "nonresponse-infeasible"
    bad = frame({("A", "R"): (30, 5)})
    bad.loc[0, "region"] = None
    with pytest.raises(DhsurveyError) as err:
        nonresponse_adjust(bad, "w", "responded", ["region"])
    assert err.value.code == "nonresponse-missing-class"
    bad = frame({("A", "R"): (30, 5)}).assign(responded="yes")
    with pytest.raises(DhsurveyError) as err:
        nonresponse_adjust(bad, "w", "responded", ["region"])
    assert err.value.code == "nonresponse-bad-respondent"
    ok = frame({("A", "R"): (30, 5)}).assign(responded=lambda x: x["responded"].astype(int))
    assert nonresponse_adjust(ok, "w", "responded", ["region"]).weights.sum() == pytest.approx(
        ok["w"].sum())
