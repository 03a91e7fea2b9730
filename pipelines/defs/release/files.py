"""The release per country: anonymised, labelled files, codebook, risk report, and the gate."""

import hashlib
import hmac
import json
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from dhsurvey.anonymise.release import anonymise_country, gate, release_files, scan_release
from dhsurvey.io import atomic_write_json, atomic_write_parquet, atomic_write_text
from dhsurvey.release.codebook import build_codebook, write_codebook
from dhsurvey.release.design import variance_text, write_design
from dhsurvey.release.labels import column_labels, with_merged_codes
from dhsurvey.release.manifest import write_manifest
from dhsurvey.release.writers import ReleaseFiles, write_release
from pipelines.defs.release.assets import indicators
from pipelines.defs.validate.assets import accepted_key
from pipelines.defs.weight.assets import weights
from pipelines.resources import Secrets, StudyPaths
from pipelines.study import config_for, country_partitions, models

FORMS = ("household", "child", "caregiver", "frontline_worker")
K = 3
MAX_GLOBAL_RISK = 0.01


def replicate_info(clean: Path) -> dict | None:
    """The weights summary's replicate description (method, scale, multipliers), or None
    when the country's weights were made without replicates."""
    info = json.loads((clean / "weights" / "summary.json").read_text()).get("replicates")
    return info if isinstance(info, dict) and info.get("rscales") else None


def write_labelled_release(tables: dict[str, pd.DataFrame], labelled: dict, out: Path,
                           language: str, replicates: dict | None) -> ReleaseFiles:
    """The data files, the codebook and, with replicates, the design set-ups of a release."""
    written = write_release(tables, labelled, out, language=language)
    codebook = build_codebook(tables, labelled,
                              weights={f: "weight" for f in ("household", "child", "caregiver")},
                              language=language,
                              variance=variance_text(replicates) if replicates else None)
    write_codebook(codebook, out)
    if replicates:
        write_design(out, replicates)
    return written


def child_schema(table: pd.DataFrame, language: str) -> dg.TableSchema:
    """The released child table's columns with their labels, shown on the asset's page."""
    labels = column_labels(table.columns, models()["child"], language)
    return dg.TableSchema(columns=[dg.TableColumn(str(c), str(t.dtype), description=labels[c]
                                                  or None)
                                   for c, t in table.items()])


def release_rng(key: bytes, iso: str, label: str) -> np.random.Generator:
    """Release IDs: fresh for each release label, identical when a release is rebuilt."""
    digest = hmac.new(key, f"release-ids\x00{iso}\x00{label}".encode(), hashlib.sha256)
    return np.random.default_rng(int.from_bytes(digest.digest()[:8], "little"))


def restricted_values(landing: Path, accepted: dict[str, pd.DataFrame]) -> list[str]:
    """What must never appear in a release: planted canaries, instanceIDs, GPS strings."""
    values: list[str] = []
    manifest = landing / "faults.json"
    if manifest.exists():
        values += json.loads(manifest.read_text()).get("canaries", [])
    for form, table in accepted.items():
        values += [str(v) for v in table["KEY"].dropna()]
        for item in models()[form].fields_in(None):
            if item.type == "geopoint" and item.name in table:
                values += [str(v) for v in table[item.name].dropna()]
    return values


@dg.asset(
    group_name="release",
    partitions_def=country_partitions,
    deps=[weights, indicators, *[accepted_key(f) for f in FORMS]],
    kinds={"parquet", "csv", "stata", "spss"},
    check_specs=[dg.AssetCheckSpec(
        "disclosure_gate", asset="release", blocking=True,
        description=f"k ≥ {K} on every key combination, global risk ≤ {MAX_GLOBAL_RISK}, and "
                    "no direct identifier or canary in any release file")],
    description="Anonymised, labelled release (Parquet, CSV, Stata, SPSS), codebook and "
                "disclosure-risk report in release/<ISO>/; restricted mappings in clean/<ISO>/.",
)
def release(context: dg.AssetExecutionContext, paths: StudyPaths, secrets: Secrets):  # noqa: ANN201
    iso = context.partition_key
    config = config_for(iso)
    clean, out = paths.zone("clean", iso), paths.zone("release", iso)
    accepted = {f: pd.read_parquet(clean / f / "accepted.parquet") for f in FORMS}
    wts = {f: pd.read_parquet(clean / "weights" / f"{f}.parquet")
           for f in ("household", "child", "caregiver")}
    key = secrets.pseudonym_key()
    anonymised = anonymise_country(accepted, wts, models(), config, key=key,
                                   rng=release_rng(key, iso, paths.release_label), k=K)
    for name, table in anonymised.restricted.items():
        atomic_write_parquet(clean / "restricted" / f"{name}.parquet", table)
    # Codes recoding introduced (merged rare levels) are labelled in every file.
    labelled = with_merged_codes(models(), anonymised.merged_codes)
    replicates = replicate_info(clean)
    written = write_labelled_release(anonymised.tables, labelled, out,
                                     config.release_language, replicates)
    atomic_write_text(out / "disclosure_risk.md", anonymised.markdown())
    findings = scan_release(release_files(out), restricted_values(paths.zone("landing", iso),
                                                                  accepted))
    verdict = gate(anonymised, findings, k=K, max_global_risk=MAX_GLOBAL_RISK)
    # Written after the scan: file names, checksums and form versions, no data values.
    manifest = write_manifest(out, anonymised.tables, models(), {
        "release": paths.release_label, "country": iso,
        "disclosure_gate": "passed" if verdict.passed else "failed"})
    # The pooled release takes only countries whose latest gate passed.
    atomic_write_json(clean / "gate.json", {"passed": verdict.passed,
                                            "reasons": list(verdict.reasons),
                                            "merged_codes": anonymised.merged_codes})
    versions = {f: m.version for f, m in models().items()}
    yield dg.MaterializeResult(metadata={
        "files": len(release_files(out)),
        "rows": {f: len(t) for f, t in anonymised.tables.items()},
        "dagster/row_count": len(anonymised.tables["child"]),
        "dagster/column_schema": child_schema(anonymised.tables["child"],
                                              config.release_language),
        "form versions": versions,
        "format warnings": "; ".join(written.warnings) or "none",
        "replicates": f"{replicates['count']} ({replicates['note']})" if replicates else "none",
        "disclosure report": dg.MetadataValue.path(str(out / "disclosure_risk.md")),
        "manifest": dg.MetadataValue.path(str(manifest)),
    }, data_version=dg.DataVersion(hashlib.sha256(json.dumps(
        {f.name: f.stat().st_size for f in release_files(out)}, sort_keys=True).encode())
        .hexdigest()[:16]))
    yield dg.AssetCheckResult(
        check_name="disclosure_gate", passed=verdict.passed,
        metadata={"reasons": "; ".join(verdict.reasons) or "none",
                  "notes": "; ".join(verdict.notes) or "none",
                  "scan findings": len(findings)})
