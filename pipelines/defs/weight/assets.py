"""Weights per country: read the sample file and accepted tables, write clean/<ISO>/weights/."""


import dagster as dg

from dhsurvey.errors import DhsurveyError
from dhsurvey.study import WEIGHTED, weight
from pipelines.defs.runlog import change, check_metadata, previous_metadata, stage_failure
from pipelines.defs.validate.assets import accepted_key
from pipelines.defs.validate.morning import fieldwork_day
from pipelines.resources import StudyPaths
from pipelines.study import country_partitions, study


@dg.asset(
    group_name="weights",
    partitions_def=country_partitions,
    # After the morning view: its quarantine-share check, when blocking, stops the country here.
    deps=[*[accepted_key(f) for f in WEIGHTED], fieldwork_day],
    kinds={"parquet"},
    check_specs=[dg.AssetCheckSpec("margins", asset="weights", blocking=True,
                                   partitions_def=country_partitions,
                                   description="achieved calibration margins equal the "
                                               "country's population totals")],
    description="Household, child and caregiver weights (design → nonresponse → raking → "
                "trimming), strata, PSU and JKn replicate weights; frontline workers "
                "unweighted.",
)
def weights(context: dg.AssetExecutionContext, paths: StudyPaths):
    iso = context.partition_key
    try:
        result = weight(paths.store, study(), iso)
    except DhsurveyError as error:
        raise stage_failure(error, iso, "weights") from None
    s = result.summary
    before = previous_metadata(context, "weights")
    context.log.info(
        f"{iso}: {s['children']['respondents']:,} children weighted"
        f"{change(s['children']['respondents'], before.get('children weighted'))}; Kish "
        f"deff {s['trim']['deff_before']:.2f} before trimming, {s['trim']['deff_after']:.2f} "
        f"after ({s['trim']['trimmed']} weights trimmed); "
        f"{int(s['replicates'].get('count', 0))} replicate weights")
    rows = "\n".join(f"| {k} | {v['target']:,.0f} | {v['achieved']:,.0f} |"
                     for k, v in s["margins"].items())
    yield dg.MaterializeResult(metadata={
        "dagster/row_count": len(result.child),
        "children weighted": s["children"]["respondents"],
        "Kish deff before trimming": round(s["trim"]["deff_before"], 3),
        "Kish deff after trimming": round(s["trim"]["deff_after"], 3),
        "weights trimmed": s["trim"]["trimmed"],
        "replicates": int(s["replicates"].get("count", 0)),
        "margins": dg.MetadataValue.md("| margin | target | achieved |\n|---|---|---|\n" + rows),
    })
    worst = max(abs(v["achieved"] - v["target"]) / v["target"] for v in s["margins"].values())
    yield dg.AssetCheckResult(check_name="margins", passed=bool(worst < 1e-8),
                              metadata=check_metadata({"largest relative difference": worst}))
