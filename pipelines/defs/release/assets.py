"""Headline indicators per country: design-based estimates with 95 % confidence intervals."""

from collections.abc import Mapping
from pathlib import Path

import dagster as dg
import pandas as pd

from dhsurvey.io import atomic_write_parquet, atomic_write_text
from dhsurvey.release.indicators import compute_indicators, join_weights, load_indicators
from pipelines.defs.validate.assets import accepted_key
from pipelines.defs.weight.assets import weights
from pipelines.resources import StudyPaths
from pipelines.study import country_partitions, instruments_dir, models

WEIGHTED = ("child", "caregiver")


def weighted_tables(clean: Path, accepted: Mapping[str, pd.DataFrame] | None = None
                    ) -> dict[str, pd.DataFrame]:
    """Accepted answers joined to their weights and design variables (``accepted``: the
    tables when the caller has read them already)."""
    if accepted is None:
        accepted = {f: pd.read_parquet(clean / f / "accepted.parquet") for f in WEIGHTED}
    return join_weights({f: accepted[f] for f in WEIGHTED},
                        {f: pd.read_parquet(clean / "weights" / f"{f}.parquet")
                         for f in WEIGHTED})


def write_indicators(folder: Path, table: pd.DataFrame) -> dg.MetadataValue:
    """``indicators.parquet`` and ``.csv`` in ``folder``; the overall estimates as Markdown."""
    atomic_write_parquet(folder / "indicators.parquet", table)
    atomic_write_text(folder / "indicators.csv", table.to_csv(index=False, float_format="%.6f"))
    overall = table[table["domain"] == "all"]
    rows = "\n".join(f"| {r.label} | {r.estimate:.1%} | {r.ci_low:.1%}–{r.ci_high:.1%} | {r.n} |"
                     for r in overall.itertuples())
    return dg.MetadataValue.md("| indicator | estimate | 95 % CI | n |\n|---|---|---|---|\n"
                               + rows)


@dg.asset(
    group_name="release",
    partitions_def=country_partitions,
    deps=[weights, *[accepted_key(f) for f in WEIGHTED]],
    kinds={"parquet", "csv"},
    description="Every indicator of instruments/indicators.yaml with SE, 95 % CI and "
                "unweighted n, overall, by sex and by age group (release/<ISO>/indicators).",
)
def indicators(context: dg.AssetExecutionContext, paths: StudyPaths) -> dg.MaterializeResult:
    iso = context.partition_key
    declared, domains = load_indicators(instruments_dir() / "indicators.yaml", models())
    table = compute_indicators(weighted_tables(paths.zone("clean", iso)), declared, domains)
    table.insert(0, "country", iso)
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(table),
        "indicators": write_indicators(paths.zone("release", iso), table),
    })
