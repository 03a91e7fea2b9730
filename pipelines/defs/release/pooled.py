"""The pooled release: every country whose release passed its gate, in one set of files."""

import json

import dagster as dg
import pandas as pd

from dhsurvey.anonymise.release import release_files, scan_release
from dhsurvey.release.indicators import Domain, compute_indicators, load_indicators
from dhsurvey.release.labels import with_merged_codes
from dhsurvey.release.manifest import write_manifest
from dhsurvey.release.pooled import pool_release
from pipelines.defs.release.assets import weighted_tables, write_indicators
from pipelines.defs.release.files import (
    FORMS,
    child_schema,
    release,
    replicate_info,
    restricted_values,
    write_labelled_release,
)
from pipelines.resources import StudyPaths
from pipelines.study import config_for, countries, instruments_dir, models

POOLED = "pooled"


def released_countries(paths: StudyPaths) -> tuple[list[str], dict[str, str]]:
    """Countries whose latest release passed the disclosure gate, and why the others are out."""
    included, left_out = [], {}
    for config in countries():
        verdict = paths.zone("clean", config.iso) / "gate.json"
        if not verdict.exists():
            left_out[config.iso] = "not released yet"
        elif not json.loads(verdict.read_text())["passed"]:
            left_out[config.iso] = "its disclosure gate failed"
        else:
            included.append(config.iso)
    return included, left_out


def merged_codes(paths: StudyPaths, isos: list[str]) -> dict[str, dict[str, dict]]:
    """The countries' merged rare levels, per form and column, united for the pooled labels."""
    out: dict[str, dict[str, dict]] = {}
    for iso in isos:
        gate = json.loads((paths.zone("clean", iso) / "gate.json").read_text())
        for form, columns in gate.get("merged_codes", {}).items():
            for column, merge in columns.items():
                into = out.setdefault(form, {}).setdefault(column, {"levels": [],
                                                                    "into": merge["into"]})
                into["levels"] = sorted({*map(str, into["levels"]), *map(str, merge["levels"])})
    return out


def pooled_indicators(paths: StudyPaths, accepted: dict[str, dict[str, pd.DataFrame]]
                      ) -> pd.DataFrame:
    """Indicators over all included countries (population-weighted), overall, by the
    indicator file's domains and by country; strata and PSUs kept distinct per country.
    ``accepted[iso][form]``: the countries' accepted tables."""
    declared, domains = load_indicators(instruments_dir() / "indicators.yaml", models())
    parts: dict[str, list[pd.DataFrame]] = {}
    for iso, tables in accepted.items():
        tables = {**weighted_tables(paths.zone("clean", iso), tables),
                  "frontline_worker": tables["frontline_worker"]}
        for form, table in tables.items():
            if "stratum" in table:
                table = table.assign(stratum=iso + ":" + table["stratum"].astype(str),
                                     cluster=iso + ":" + table["cluster"].astype(str))
            parts.setdefault(form, []).append(table)
    pooled = {form: pd.concat(frames, ignore_index=True) for form, frames in parts.items()}
    names = {str(c.code): c.name for c in countries()}
    by_country = {form: [*doms, Domain("country", "${country}", names)]
                  for form, doms in {f: domains.get(f, []) for f in pooled}.items()}
    table = compute_indicators(pooled, declared, by_country)
    table.insert(0, "country", "+".join(accepted))
    return table


@dg.asset(
    group_name="release",
    deps=[release],
    kinds={"parquet", "csv", "stata", "spss"},
    check_specs=[dg.AssetCheckSpec(
        "pooled_scan", asset="pooled_release", blocking=True,
        description="no direct identifier, instanceID, GPS string or canary in any pooled "
                    "file; every included country passed its own disclosure gate")],
    description="All countries' released tables pooled (release/pooled/): renumbered strata "
                "and PSUs, the union of the countries' replicate weights, codebook, "
                "indicators overall and by country.",
)
def pooled_release(context: dg.AssetExecutionContext, paths: StudyPaths):  # noqa: ANN201
    isos, left_out = released_countries(paths)
    if len(isos) < 2:
        raise dg.Failure(f"a pooled release needs two released countries; have {isos}, "
                         f"left out: {left_out}")
    out = paths.zone("release", POOLED)
    country_tables, replicates, accepted, restricted = {}, {}, {}, []
    for iso in isos:
        folder, clean = paths.zone("release", iso), paths.zone("clean", iso)
        country_tables[iso] = {p.stem: pd.read_parquet(p) for p in sorted(folder.glob(
            "*.parquet")) if p.stem != "indicators"}
        replicates[iso] = replicate_info(clean)
        accepted[iso] = {f: pd.read_parquet(clean / f / "accepted.parquet") for f in FORMS}
        restricted += restricted_values(paths.zone("landing", iso), accepted[iso])
    pooled = pool_release(country_tables, replicates)
    language = config_for(isos[0]).release_language
    labelled = with_merged_codes(models(), merged_codes(paths, isos))
    written = write_labelled_release(pooled.tables, labelled, out, language, pooled.replicates)
    table = pooled_indicators(paths, accepted)
    indicators_md = write_indicators(out, table)
    findings = scan_release(release_files(out), restricted)
    # Written after the scan: file names, checksums and form versions, no data values.
    manifest = write_manifest(out, pooled.tables, models(), {
        "release": paths.release_label, "countries": isos, "left_out": left_out,
        "pooled_scan": "passed" if not findings else "failed"})
    yield dg.MaterializeResult(metadata={
        "countries": ", ".join(isos),
        "left out": "; ".join(f"{k}: {v}" for k, v in left_out.items()) or "none",
        "rows": {name: len(t) for name, t in pooled.tables.items()},
        "dagster/row_count": len(pooled.tables["child"]),
        "dagster/column_schema": child_schema(pooled.tables["child"], language),
        "replicates": pooled.replicates["count"] if pooled.replicates else 0,
        "notes": "; ".join(pooled.notes + list(written.warnings)) or "none",
        "files": len(release_files(out)),
        "manifest": dg.MetadataValue.path(str(manifest)),
        "indicators": indicators_md,
    })
    yield dg.AssetCheckResult(check_name="pooled_scan", passed=not findings,
                              metadata={"scan findings": len(findings),
                                        "countries": ", ".join(isos)})
