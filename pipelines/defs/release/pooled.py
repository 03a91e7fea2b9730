"""The pooled release: every country whose release passed its gate, in one set of files."""

import json

import dagster as dg
import pandas as pd

from dhsurvey.anonymise.release import release_files, scan_release
from dhsurvey.io import atomic_write_parquet, atomic_write_text
from dhsurvey.release.codebook import build_codebook, write_codebook
from dhsurvey.release.design import variance_text, write_design
from dhsurvey.release.indicators import Domain, compute_indicators, load_indicators
from dhsurvey.release.labels import with_merged_codes
from dhsurvey.release.manifest import write_manifest
from dhsurvey.release.pooled import pool_release
from dhsurvey.release.writers import write_release
from pipelines.defs.release.assets import weighted_tables
from pipelines.defs.release.files import FORMS, child_schema, release, restricted_values
from pipelines.resources import StudyPaths
from pipelines.study import countries, instruments_dir, models

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


def pooled_indicators(paths: StudyPaths, isos: list[str]) -> pd.DataFrame:
    """Indicators over all included countries (population-weighted), overall, by the
    indicator file's domains and by country; strata and PSUs kept distinct per country."""
    declared, domains = load_indicators(instruments_dir() / "indicators.yaml", models())
    parts: dict[str, list[pd.DataFrame]] = {}
    for iso in isos:
        clean = paths.zone("clean", iso)
        tables = weighted_tables(clean)
        tables["frontline_worker"] = pd.read_parquet(clean / "frontline_worker" /
                                                     "accepted.parquet")
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
    table.insert(0, "country", "+".join(isos))
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
    country_tables, replicates, restricted = {}, {}, []
    for iso in isos:
        folder = paths.zone("release", iso)
        country_tables[iso] = {p.stem: pd.read_parquet(p) for p in sorted(folder.glob(
            "*.parquet")) if p.stem != "indicators"}
        summary = json.loads((paths.zone("clean", iso) / "weights" / "summary.json")
                             .read_text())
        replicates[iso] = summary.get("replicates") if isinstance(
            summary.get("replicates"), dict) else None
        clean = paths.zone("clean", iso)
        restricted += restricted_values(paths.zone("landing", iso), {
            f: pd.read_parquet(clean / f / "accepted.parquet", columns=None) for f in FORMS})
    pooled = pool_release(country_tables, replicates)
    language = next(c.release_language for c in countries() if c.iso == isos[0])
    labelled = with_merged_codes(models(), merged_codes(paths, isos))
    written = write_release(pooled.tables, labelled, out, language=language)
    codebook = build_codebook(
        pooled.tables, labelled, weights={f: "weight" for f in ("household", "child",
                                                                 "caregiver")},
        language=language,
        variance=variance_text(pooled.replicates) if pooled.replicates else None)
    write_codebook(codebook, out)
    if pooled.replicates:
        write_design(out, pooled.replicates)
    table = pooled_indicators(paths, isos)
    atomic_write_parquet(out / "indicators.parquet", table)
    atomic_write_text(out / "indicators.csv", table.to_csv(index=False, float_format="%.6f"))
    findings = scan_release(release_files(out), restricted)
    # Written after the scan: file names, checksums and form versions, no data values.
    manifest = write_manifest(out, pooled.tables, models(), {
        "release": paths.release_label, "countries": isos, "left_out": left_out,
        "pooled_scan": "passed" if not findings else "failed"})
    overall = table[(table["domain"] == "all")]
    rows = "\n".join(f"| {r.label} | {r.estimate:.1%} | {r.ci_low:.1%}–{r.ci_high:.1%} | {r.n} |"
                     for r in overall.itertuples())
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
        "indicators": dg.MetadataValue.md(
            "| indicator | estimate | 95 % CI | n |\n|---|---|---|---|\n" + rows),
    })
    yield dg.AssetCheckResult(check_name="pooled_scan", passed=not findings,
                              metadata={"scan findings": len(findings),
                                        "countries": ", ".join(isos)})
