"""Headline indicators per country: design-based estimates with 95 % confidence intervals."""

import dagster as dg
import pandas as pd

from dhsurvey.study import indicators as country_indicators
from pipelines.defs.release.files import release
from pipelines.resources import StudyPaths
from pipelines.study import country_partitions, study


def indicators_table(table: pd.DataFrame) -> dg.MetadataValue:
    """The overall estimates as Markdown."""
    overall = table[table["domain"] == "all"]
    rows = "\n".join(f"| {r.label} | {r.estimate:.1%} | {r.ci_low:.1%}–{r.ci_high:.1%} | {r.n} |"
                     for r in overall.itertuples())
    return dg.MetadataValue.md("| indicator | estimate | 95 % CI | n |\n|---|---|---|---|\n"
                               + rows)


@dg.asset(
    group_name="release",
    partitions_def=country_partitions,
    deps=[release],
    kinds={"parquet", "csv"},
    description="Every indicator of instruments/indicators.yaml estimated from the released "
                "public-use files (as R's survey package does with the shipped svydesign.R): "
                "SE, 95 % logit CI with the design's df and unweighted n, overall and by "
                "domain (release/<ISO>/indicators).",
)
def indicators(context: dg.AssetExecutionContext, paths: StudyPaths) -> dg.MaterializeResult:
    table = country_indicators(paths.store, study(), context.partition_key)
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(table),
        "indicators": indicators_table(table),
    })
