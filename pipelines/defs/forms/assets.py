"""Compiled XForms: the first asset; every later stage depends on the form versions."""

import dagster as dg

from dhsurvey.forms.compile import build
from dhsurvey.forms.lint import ERROR, lint_paths
from pipelines.defs.runlog import counts_table
from pipelines.resources import StudyPaths


@dg.asset(group_name="instruments", kinds={"xlsform"})
def compiled_forms(paths: StudyPaths) -> dg.MaterializeResult:
    """Every instrument compiled with pyxform and ODK Validate, with a content-derived version."""
    compiled = build(paths.instruments, paths.store.build)
    rows = "\n".join(
        f"| {c.model.form_id} | {c.model.version} | {len(c.model.fields)} | "
        f"{', '.join(c.model.languages)} |"
        for c in compiled
    )
    return dg.MaterializeResult(
        metadata={
            "forms": dg.MetadataValue.md(
                "| form | version | fields | languages |\n|---|---|---|---|\n" + rows
            ),
            "versions": counts_table({c.model.form_id: c.model.version for c in compiled},
                                     "form", "version"),
            "manifest": dg.MetadataValue.path(str(paths.store.build / "forms" / "manifest.json")),
        },
        data_version=dg.DataVersion("-".join(c.model.version for c in compiled)),
    )


@dg.asset_check(asset=compiled_forms, blocking=True)
def instruments_lint_clean(paths: StudyPaths) -> dg.AssetCheckResult:
    """The instruments have no lint errors (warnings are reported, not blocking)."""
    findings = lint_paths([paths.instruments], validate=False)
    errors = [f for f in findings if f.severity == ERROR]
    return dg.AssetCheckResult(
        passed=not errors,
        metadata={
            "errors": len(errors),
            "warnings": len(findings) - len(errors),
            "first errors": dg.MetadataValue.md(
                "\n".join(f"- {f.location()} {f.rule}: {f.message}" for f in errors[:20]) or "none"
            ),
        },
    )
