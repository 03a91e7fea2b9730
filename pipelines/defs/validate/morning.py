"""The data manager's morning view: ``fieldwork_day``, one per country, and its anomaly checks.

Its metadata is the morning report (:mod:`dhsurvey.validate.morning`) in Markdown: new
submissions since the previous run by team and enumerator, quarantine and flags by enumerator
with reasons, flagged enumerators with the thresholds that flagged them, progress and response
rates by team, stratum and PSU, and the country's own time series. Its checks warn when this
run's new submissions jump against the earlier ones (thresholds in
``instruments/monitoring.yaml``); the quarantine-share check stops the country before
weighting when the file says ``blocking: true``.
"""

from collections.abc import Iterator

import dagster as dg

from dhsurvey.errors import DhsurveyError
from dhsurvey.study import morning
from dhsurvey.validate.morning import Jump, Morning
from pipelines.defs.runlog import stage_failure
from pipelines.defs.validate.assets import FORMS, QUALITY, accepted_key
from pipelines.resources import Secrets, StudyPaths
from pipelines.study import country_partitions, study

#: Anomaly check per kind of jump (:func:`dhsurvey.validate.morning.jumps`).
JUMP_CHECKS = {"duplicates": "duplicates_jump", "quarantine rate": "quarantine_rate_jump",
               "speeders": "speeders_jump", "refusal rate": "refusal_rate_jump"}
SHARE_CHECK = "enumerator_quarantine_share"


def _spec(name: str, description: str, blocking: bool = False) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(name, asset="fieldwork_day", description=description,
                             blocking=blocking, partitions_def=country_partitions)


@dg.asset(
    group_name="clean",
    partitions_def=country_partitions,
    deps=[*[accepted_key(f) for f in FORMS], QUALITY],
    kinds={"markdown"},
    check_specs=[
        _spec(JUMP_CHECKS["duplicates"], "new duplicates of a form in this run reach "
              "`anomalies.new_duplicates` (warns)"),
        _spec(JUMP_CHECKS["quarantine rate"], "a form's quarantine share among this run's new "
              "submissions rises above the earlier share by more than "
              "`anomalies.quarantine_rate` (warns)"),
        _spec(JUMP_CHECKS["speeders"], "the speeder share among new submissions rises by more "
              "than `anomalies.speeder_rate` (warns)"),
        _spec(JUMP_CHECKS["refusal rate"], "the household or child refusal rate among new "
              "cases rises by more than `anomalies.refusal_rate` (warns)"),
        _spec(SHARE_CHECK, "no enumerator has `quarantine_share.threshold` or more of their "
              "submissions quarantined; stops the country before weighting when "
              "`quarantine_share.blocking` is true, else warns", blocking=True),
    ],
    description="The morning report of `clean/<ISO>/`: what arrived since the previous run "
                "by team and enumerator, quarantine and flags by enumerator, flagged "
                "enumerators with their thresholds, back-check error rates (exports in "
                "`landing/<ISO>/backcheck/`), progress and response rates by team, "
                "stratum and PSU, this country's runs over time; anomaly checks against the "
                "previous run (`instruments/monitoring.yaml`).",
)
def fieldwork_day(context: dg.AssetExecutionContext, paths: StudyPaths,
                  secrets: Secrets) -> Iterator:
    iso = context.partition_key
    try:
        day = morning(paths.store, study(), iso, private_key=secrets.private_key())
    except DhsurveyError as error:
        raise stage_failure(error, iso, "morning report") from None
    for line in day.story():
        context.log.info(line)
    yield dg.MaterializeResult(metadata=_metadata(day, paths, iso))
    yield from _jump_results(day)
    yield _share_result(day)


def _metadata(day: Morning, paths: StudyPaths, iso: str) -> dict:
    sections = day.sections()
    return {
        "morning report": dg.MetadataValue.md(day.markdown()),
        "since the previous run": day.since(),
        "anomalies": len(day.anomalies),
        "flagged enumerators": int(day.flagged["enum_id"].nunique()) if len(day.flagged)
        else 0,
        "by enumerator": dg.MetadataValue.md(
            sections["quarantine and flags by enumerator"]),
        "fieldwork quality report": dg.MetadataValue.url(paths.report_url(iso)),
        "previous run": day.previous or "none (first run)",
        "latest interview": day.latest_interview or "none",
    }


def _jump_results(day: Morning) -> Iterator[dg.AssetCheckResult]:
    for kind, check in JUMP_CHECKS.items():
        found: list[Jump] = [j for j in day.jumps if j.check == kind]
        jumped = [j for j in found if j.jumped]
        if day.previous is None:
            text = "first run: nothing to compare with"
        else:
            text = "; ".join(j.text() for j in (jumped or found)) or "nothing to compare"
        yield dg.AssetCheckResult(
            check_name=check, passed=not jumped, severity=dg.AssetCheckSeverity.WARN,
            description=text,
            metadata={"jumps": dg.MetadataValue.md(
                "\n".join(f"- {j.text()}" for j in found) or text),
                "compared with": day.previous or "none"})


def _share_result(day: Morning) -> dg.AssetCheckResult:
    t = day.thresholds
    over = day.over_share
    rows = "\n".join(f"| {'' if r.enum_id is None else r.enum_id} | {r.received} | "
                     f"{r.quarantined} | {r.share:.0%} |" for r in over.itertuples())
    return dg.AssetCheckResult(
        check_name=SHARE_CHECK, passed=not len(over),
        severity=dg.AssetCheckSeverity.ERROR if t.block_on_quarantine_share
        else dg.AssetCheckSeverity.WARN,
        description=(f"{len(over)} enumerator(s) with {t.quarantine_share:.0%} or more of "
                     "their submissions quarantined") if len(over) else
        f"no enumerator at {t.quarantine_share:.0%} or more",
        metadata={"threshold": f"{t.quarantine_share:.0%}",
                  "blocking": "yes" if t.block_on_quarantine_share else "no (warns)",
                  "enumerators": dg.MetadataValue.md(
                      "| enumerator | submissions | quarantined | share |\n|---|---|---|---|\n"
                      + rows if rows else "none")})
