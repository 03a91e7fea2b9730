"""Headline indicators per country: design-based estimates with 95 % confidence intervals."""

import dagster as dg
import pandas as pd

from dhsurvey.errors import DhsurveyError
from dhsurvey.study import indicators as country_indicators
from pipelines.defs.release.files import release
from pipelines.defs.runlog import stage_failure
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
                "domain (`release/<ISO>/indicators`).",
)
def indicators(context: dg.AssetExecutionContext, paths: StudyPaths) -> dg.MaterializeResult:
    iso = context.partition_key
    try:
        table = country_indicators(paths.store, study(), iso)
    except DhsurveyError as error:
        raise stage_failure(error, iso, "indicators") from None
    for r in table[table["domain"] == "all"].itertuples():
        context.log.info(f"{iso}: {r.label}: {r.estimate:.1%} "
                         f"({r.ci_low:.1%}–{r.ci_high:.1%}, n = {r.n:,})")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(table),
        "indicators": indicators_table(table),
    })
