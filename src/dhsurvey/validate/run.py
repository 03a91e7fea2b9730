"""Validate one country's submissions: corrections, types, schema, linkage, quarantine, flags.

Errors move a submission to quarantine with the rule, column, value and message; warnings flag
it and keep it. An answer the skip logic hides is blanked before anything is accepted, with an
automatic entry in the corrections report (:mod:`dhsurvey.validate.skip`). An edited submission
and all but one copy of an interview are duplicates; the copy kept is the earliest one not
quarantined (:mod:`dhsurvey.validate.duplicates`). For every form the reconciliation proves
that raw = accepted + quarantined + duplicates, so no submission is lost between fieldwork and
weighting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dhsurvey.fieldwork.config import CountryConfig
from dhsurvey.forms.facts import gates_passed, is_linked, study_facts
from dhsurvey.forms.model import FormModel
from dhsurvey.ingest.canonical import SET_ASIDE_COPIES, RawForm
from dhsurvey.io import atomic_write_json, atomic_write_parquet
from dhsurvey.store import (
    ACCEPTED,
    CORRECTIONS,
    DATA_DOCS,
    ISSUES,
    QUALITY,
    RECONCILIATION,
    REPORT,
    accepted_repeat,
    issue_table,
)
from dhsurvey.validate.corrections import REPORT_COLUMNS, apply_corrections
from dhsurvey.validate.duplicates import find_duplicates
from dhsurvey.validate.linkage import link_interviews, one_per_household
from dhsurvey.validate.schema import ISSUE_COLUMNS, Window, build_schema
from dhsurvey.validate.skip import Blanked, blank_non_relevant, root_key
from dhsurvey.validate.timing import speeder_mask
from dhsurvey.validate.types import retyped, to_typed

OUTPUT_COLUMNS = ["instanceID", "rule", "column", "value", "message"]
#: Rules that flag a submission but keep it (everything else quarantines it).
WARNINGS = {
    "not-relevant": "answer to a question the skip logic hides (blanked in the accepted data, "
                    "logged in corrections.parquet)",
    "outside-window": "start or end outside the fieldwork window (device clock?)",
    "speeder": "interview far shorter than the questionnaire allows",
    "outdated-version": "submitted with an older version of the form",
}
#: The column of a linked interview (child, caregiver) that names the selected child's
#: roster line. Which forms link to the household: :func:`~dhsurvey.forms.facts.is_linked`.
SELECTED_LINE = "child_line"


@dataclass
class FormResult:
    form_id: str
    accepted: pd.DataFrame
    accepted_repeats: dict[str, pd.DataFrame]
    quarantine: pd.DataFrame
    flags: pd.DataFrame
    duplicates: pd.DataFrame
    reconciliation: dict
    typed: pd.DataFrame  # every root row as received, typed (for high-frequency checks)
    source: pd.DataFrame  # every root row as corrected and blanked strings (for linkage)
    corrections: pd.DataFrame = field(default_factory=pd.DataFrame)

    def received(self) -> pd.DataFrame:
        """Every interview received once (duplicates dropped), as corrected strings.

        Interviews link to these, not only to accepted households: a child is not an orphan
        because its household's record has an error of its own.
        """
        return self.source[~self.source["KEY"].isin(set(self.duplicates["instanceID"]))]


@dataclass
class ValidationResult:
    country: str | None
    forms: dict[str, FormResult]
    notes: list[str]

    def issues(self) -> pd.DataFrame:
        """Quarantine and flags of every form in one table (form, severity added)."""
        parts = []
        for form, r in self.forms.items():
            parts.append(r.quarantine.assign(form=form, severity="error"))
            parts.append(r.flags.assign(form=form, severity="warning"))
        parts = [p for p in parts if len(p)]
        if not parts:
            return pd.DataFrame(columns=["form", "severity", *OUTPUT_COLUMNS])
        return pd.concat(parts, ignore_index=True)


def id_fields(model: FormModel) -> list[str]:
    """The fields that identify an interview: those the form's ``instance_name`` is built from
    (:attr:`FormModel.instance_fields`)."""
    return list(model.instance_fields)


def _ingest_quarantine(raw: RawForm, kept: set[str]) -> pd.DataFrame:
    """What ingest quarantined, as written, less the copies it set aside beside a submission it
    kept under the same instanceID (they stay listed in the raw quarantine)."""
    q = raw.quarantine
    if not len(q):
        return pd.DataFrame(columns=OUTPUT_COLUMNS)
    return _out(q[~(q["rule"].isin(SET_ASIDE_COPIES) & q["KEY"].isin(kept))])


def _out(issues: pd.DataFrame) -> pd.DataFrame:
    """Issues as written: the submission's instanceID first."""
    if issues.empty:
        return pd.DataFrame(columns=OUTPUT_COLUMNS)
    out = issues.assign(instanceID=issues["KEY"].map(root_key))[OUTPUT_COLUMNS]
    # The stubs reject other=None, which pandas accepts.
    return out.astype(object).where(out.notna(), None).reset_index(  # type: ignore[call-overload]
        drop=True)


def _beyond_consent(issues: pd.DataFrame, root: pd.DataFrame, model: FormModel) -> pd.Series:
    """Not-relevant answers in a submission whose consent or assent was not given."""
    gates = {g: v for g, v in model.consent_given.items() if g in root.columns}
    if not gates or issues.empty:
        return pd.Series(False, index=issues.index)
    refused = ~gates_passed(root.set_index("KEY")[list(gates)], gates)
    keys = issues["KEY"].map(root_key)
    return (issues["rule"] == "not-relevant") & keys.map(refused).eq(True)


def validate_form(raw: RawForm, model: FormModel, *, config: CountryConfig | None = None,
                  corrections: pd.DataFrame | None = None,
                  households: pd.DataFrame | None = None,
                  speeder_threshold: float | None = None) -> FormResult:
    """Validate one form's submissions (``households``: accepted household rows, for linkage).

    ``speeder_threshold`` (minutes): the form's threshold over all its interviews, when
    ``raw`` is one batch of them (:mod:`dhsurvey.batched`); else computed from ``raw``.

    Order matters: the corrections log first, then hidden answers blanked
    (:mod:`~dhsurvey.validate.skip`), then every rule on the blanked answers; only once each
    submission's errors are known is the copy of an interview to keep chosen
    (:mod:`~dhsurvey.validate.duplicates`).
    """
    return settle(own_checks(raw, model, config=config, corrections=corrections,
                             speeder_threshold=speeder_threshold), model, households)


@dataclass
class Checked:
    """A form's submissions after every check of their own: corrected, blanked, typed, and
    their issues. What is left (:func:`settle`) needs the household form's result."""

    raw: RawForm  # as corrected and blanked
    received: pd.DataFrame  # typed root rows as received
    typed: pd.DataFrame  # typed root rows, blanked
    typed_repeats: dict[str, pd.DataFrame]
    issues: list[pd.DataFrame]
    report: pd.DataFrame  # the corrections log applied
    blanked_log: pd.DataFrame


def own_checks(raw: RawForm, model: FormModel, *, config: CountryConfig | None = None,
               corrections: pd.DataFrame | None = None,
               speeder_threshold: float | None = None) -> Checked:
    """The first part of :func:`validate_form`: everything that reads this form alone (the
    corrections log, blanking, types, schema and rules, whole-submission checks)."""
    report = pd.DataFrame(columns=REPORT_COLUMNS)
    if corrections is not None and len(corrections):
        raw, report = apply_corrections(raw, corrections)
    blanked = blank_non_relevant(raw, model, identifiers={*model.instance_fields,
                                                          *model.household_id})
    received, typed, typed_repeats, found = _checked(raw, blanked, model, config)
    issues = [found, blanked.issues, *_submission_issues(blanked.raw.root, model, config,
                                                          speeder_threshold)]
    return Checked(blanked.raw, received, typed, typed_repeats, issues, report, blanked.log)


def settle(checked: Checked, model: FormModel, households: pd.DataFrame | None = None
           ) -> FormResult:
    """The rest of :func:`validate_form`: the linkage to ``households`` (received household
    rows), then what depends on every issue (consent, duplicates, quarantine, one interview
    per household) and the reconciliation."""
    raw, received, typed = checked.raw, checked.received, checked.typed
    typed_repeats, report = checked.typed_repeats, checked.report
    root = raw.root
    issues = list(checked.issues)
    linked = households is not None and is_linked(model)
    if households is not None and linked:
        issues.append(link_interviews(households, root, form=model.form_id, line=SELECTED_LINE,
                                      household_id=model.household_id))
    all_issues = _concat(issues)
    promoted = _beyond_consent(all_issues, root, model)
    all_issues.loc[promoted, "rule"] = "beyond-consent"
    all_issues.loc[promoted, "message"] = "answer recorded after consent or assent was refused"

    issues_out = _out(all_issues)
    is_error = ~issues_out["rule"].isin(WARNINGS)
    ingest_quarantine = _ingest_quarantine(raw, set(root["KEY"]))
    duplicates = find_duplicates(root, id_fields(model),
                                 set(issues_out.loc[is_error, "instanceID"])
                                 | set(ingest_quarantine["instanceID"]))
    dup_keys = set(duplicates["instanceID"])
    issues_out = issues_out[~issues_out["instanceID"].isin(dup_keys)]
    is_warning = issues_out["rule"].isin(WARNINGS)
    quarantine = pd.concat([ingest_quarantine, issues_out[~is_warning]], ignore_index=True)
    bad = set(quarantine["instanceID"]) | dup_keys
    if linked:
        extra = one_per_household(root[~root["KEY"].isin(bad)], form=model.form_id,
                                  household_id=model.household_id)
        quarantine = pd.concat([quarantine, _out(extra)], ignore_index=True)
        bad |= set(extra["KEY"])
    accepted = typed[~typed["KEY"].isin(bad)].reset_index(drop=True)
    accepted_keys = set(accepted["KEY"])
    accepted_repeats = {name: t[t["KEY"].map(root_key).isin(accepted_keys)]
                        .reset_index(drop=True) for name, t in typed_repeats.items()}
    raw_keys = set(root["KEY"]) | set(raw.quarantine.get("KEY", pd.Series(dtype=object))
                                      .dropna().map(root_key))
    quarantined = set(quarantine["instanceID"]) - dup_keys
    flags = issues_out[is_warning]
    reconciliation = {
        "form": model.form_id,
        "raw": len(raw_keys),
        "accepted": len(accepted_keys),
        "quarantined": len(quarantined),
        "duplicates": len(dup_keys),
        "flagged": int(flags["instanceID"].nunique()),
        "balanced": len(raw_keys) == len(accepted_keys) + len(quarantined) + len(dup_keys),
        "quarantine_by_rule": _by_rule(quarantine),
        "flags_by_rule": _by_rule(flags),
        "duplicates_by_reason": duplicates["reason"].value_counts().to_dict(),
        "corrections": report["status"].value_counts().to_dict() if len(report) else {},
        # Values blanked by validation itself, per rule (each one in corrections.parquet).
        "automatic_corrections": checked.blanked_log["rule"].value_counts().to_dict(),
    }
    return FormResult(model.form_id, accepted, accepted_repeats,
                      quarantine.drop_duplicates().reset_index(drop=True),
                      flags.drop_duplicates().reset_index(drop=True),
                      duplicates, reconciliation, received, root,
                      _concat([report, checked.blanked_log], REPORT_COLUMNS))


def _concat(parts: list[pd.DataFrame], columns: list[str] = ISSUE_COLUMNS) -> pd.DataFrame:
    """The non-empty ``parts`` in one table (an empty one with ``columns`` if none)."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True)


def _by_rule(issues: pd.DataFrame) -> dict[str, int]:
    """Submissions per rule, most frequent first."""
    counts = issues.groupby("rule")["instanceID"].nunique().sort_values(ascending=False)
    return {str(rule): int(n) for rule, n in counts.items()}


def _checked(received: RawForm, blanked: Blanked, model: FormModel,
             config: CountryConfig | None) -> tuple[pd.DataFrame, pd.DataFrame,
                                                    dict[str, pd.DataFrame], pd.DataFrame]:
    """Typed root rows as received and as blanked, typed repeat rows (blanked), and every type
    and schema failure of the blanked answers.

    The rows as received feed the high-frequency checks, which look at what happened in the
    field (a hidden answer included); everything accepted comes from the blanked ones.
    """
    raw = blanked.raw
    data = raw.to_form_data(model)
    window = Window(config.fieldwork_start, config.fieldwork_end, config.utc_offset) \
        if config else None
    typed, type_errors = to_typed(raw.root, model)
    # The blanked columns typed again as received (blanking can change a calculation's dtype).
    as_received = retyped(typed, received.root, model, set(blanked.log["field"])) \
        if len(blanked.log) else typed
    issues = [type_errors, build_schema(data, window=window, logic=blanked.logic).failures(
                  typed.set_index("KEY", drop=False))]
    typed_repeats = {}
    for name, table in raw.repeats.items():
        rep_typed, rep_errors = to_typed(table, model, name)
        typed_repeats[name] = rep_typed
        issues.append(rep_errors)
        issues.append(build_schema(data, name, logic=blanked.logic).failures(
            rep_typed.set_index("KEY", drop=False)))
    return as_received, typed, typed_repeats, _concat(issues)


def _submission_issues(root: pd.DataFrame, model: FormModel, config: CountryConfig | None,
                       speeder_threshold: float | None) -> list[pd.DataFrame]:
    """Issues of whole submissions: sample frame, speeders, outdated form version."""
    issues = [_frame_issues(root, config)] if config is not None else []
    speeders, threshold = speeder_mask(root, threshold=speeder_threshold,
                                       gates=model.consent_given)
    issues.append(pd.DataFrame({"KEY": root.loc[speeders, "KEY"].to_numpy(), "rule": "speeder",
                                "column": "end", "value": root.loc[speeders, "end"].to_numpy(),
                                "message": f"interview shorter than {threshold:.1f} minutes"},
                               columns=ISSUE_COLUMNS))
    old = root["form_version"].astype("string").fillna("") != model.version
    issues.append(pd.DataFrame({"KEY": root.loc[old, "KEY"].to_numpy(),
                                "rule": "outdated-version", "column": "form_version",
                                "value": root.loc[old, "form_version"].to_numpy(),
                                "message": f"current version is {model.version}"},
                               columns=ISSUE_COLUMNS))
    return issues


def _frame_issues(root: pd.DataFrame, config: CountryConfig) -> pd.DataFrame:
    """Answers outside the country's sample frame: region, cluster and household numbers."""
    checks = []
    if "region" in root:
        bad = ~root["region"].astype("string").isin([str(r) for r in config.regions]) & \
            root["region"].notna()
        checks.append(("region", bad, f"not a region of {config.name}"))
    if "cluster" in root:
        n = pd.to_numeric(root["cluster"], errors="coerce")
        checks.append(("cluster", root["cluster"].notna() & ~n.between(1, config.psus),
                       f"not a cluster of the sample (1–{config.psus})"))
    if "hh_number" in root:
        n = pd.to_numeric(root["hh_number"], errors="coerce")
        # Household numbers follow the listing; the orphan rule catches unknown households.
        checks.append(("hh_number", root["hh_number"].notna() & ~n.between(1, 999),
                       "not a household number of the listing"))
    parts = [pd.DataFrame({"KEY": root.loc[m, "KEY"].to_numpy(), "rule": "frame",
                           "column": col, "value": root.loc[m, col].to_numpy(),
                           "message": msg}, columns=ISSUE_COLUMNS)
             for col, m, msg in checks if m.any()]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=ISSUE_COLUMNS)


def validate_forms(raws: Mapping[str, RawForm], models: Mapping[str, FormModel], *,
                   config: CountryConfig | None = None,
                   corrections: pd.DataFrame | None = None,
                   speeder_thresholds: Mapping[str, float] | None = None) -> ValidationResult:
    """Validate the forms given together; household first so interviews link to it.

    Most of a form's validation reads that form alone (:func:`own_checks`): it is done for
    every form side by side (:func:`~dhsurvey.parallel.forked_map`, the largest first). Only
    the linkage and what follows it (:func:`settle`) wait for the household form's result.

    ``speeder_thresholds``: form → minutes, when the forms given are one batch of a country.
    """
    from dhsurvey.parallel import forked_map

    household = study_facts(models).household_form  # forms that disagree on the ID fail here
    notes = []
    if config is None:
        notes.append("country not given: fieldwork window, frame and targets not checked")

    def checks(form: str) -> Checked:
        return own_checks(raws[form], models[form], config=config, corrections=corrections,
                          speeder_threshold=(speeder_thresholds or {}).get(form))

    checked = dict(forked_map(checks, list(raws), size=lambda f: raws[f].root.size))
    results: dict[str, FormResult] = {}
    households: pd.DataFrame | None = None
    if household is not None and household in raws:
        results[household] = settle(checked.pop(household), models[household])
        households = results[household].received()
    for form in sorted(checked):
        if households is None and is_linked(models[form]):
            notes.append(f"{form}: household form not given, linkage skipped")
        results[form] = settle(checked[form], models[form], households)
    return ValidationResult(config.iso if config else None, results, notes)


def write_validation(result: ValidationResult, out: str | Path) -> list[Path]:
    """``out/<form>/{accepted,quarantine,flags,duplicates}.parquet`` + ``reconciliation.json``,
    and ``corrections.parquet`` when anything was corrected (the log's or blanked answers)."""
    out = Path(out)
    paths = []
    for form, r in result.forms.items():
        folder = out / form
        paths.append(atomic_write_parquet(folder / ACCEPTED, r.accepted))
        for name, table in r.accepted_repeats.items():
            paths.append(atomic_write_parquet(folder / accepted_repeat(name), table))
        for name in ISSUES:
            paths.append(atomic_write_parquet(folder / issue_table(name), getattr(r, name)))
        if len(r.corrections):
            paths.append(atomic_write_parquet(folder / CORRECTIONS, r.corrections))
        paths.append(atomic_write_json(folder / RECONCILIATION,
                                       {**r.reconciliation, "notes": result.notes,
                                        "country": result.country}))
    return paths


def validate_exports(paths: list[Path], models: Mapping[str, FormModel],
                     configs: list[CountryConfig], out: str | Path, *,
                     country: str | None = None, forms: list[str] | None = None,
                     corrections: pd.DataFrame | None = None,
                     private_key_pem: bytes | None = None,
                     expectations: bool = True) -> ValidationResult:
    """Read exports of any kind, validate and link the forms given together, write results.

    Without ``country`` the country-specific rules are skipped (and the notes say so).
    """
    from dhsurvey.ingest.read import read_export_forms
    from dhsurvey.ingest.run import UNKNOWN, split_by_country
    from dhsurvey.ingest.store import combine

    config = next((c for c in configs if c.iso == country), None) if country else None
    if country and config is None:
        from dhsurvey.errors import ConfigError

        raise ConfigError(f"no configuration for country '{country}'", code="config-missing")
    parts: dict[str, list[RawForm]] = {}
    # A device's or Briefcase's folder holds several forms: a table per form it holds.
    read = [raw for path in paths
            for raw in read_export_forms(path, models, private_key_pem=private_key_pem)]
    for raw in read:
        if forms and raw.form_id not in forms:
            continue
        if config is not None:
            split = split_by_country(raw, {str(config.code): config.iso}, config.iso)
            # Submissions of no known country stay accounted for, in this run's quarantine.
            raw = combine([p for p in (split.get(config.iso), split.get(UNKNOWN)) if p] or
                          [RawForm(raw.form_id, raw.root.iloc[0:0], {})])
        parts.setdefault(raw.form_id, []).append(raw)
    raws = {form: combine(p) for form, p in parts.items()}
    result = validate_forms(raws, models, config=config, corrections=corrections)
    write_validation(result, out)
    write_quality(result, models, out, config=config, expectations=expectations)
    return result


def write_quality(result: ValidationResult, models: Mapping[str, FormModel], out: str | Path, *,
                  config: CountryConfig | None = None, expectations: bool = True,
                  design: pd.DataFrame | None = None) -> dict[str, Path]:
    """High-frequency check tables, the HTML report and (optionally) GX Data Docs under ``out``.

    The checks run on every submission received (typed), not only accepted ones: the point is
    to see what goes wrong in the field, by whom. What is shared — the check tables in
    ``QUALITY/``, the report, the Data Docs — holds counts, codes and enumerator IDs; the
    instanceIDs, free text and identifying values behind the listed rows go to the restricted
    listings (``LISTINGS/<check>.parquet``), which the report points to
    (:mod:`dhsurvey.validate.disclosure`).
    """
    from dhsurvey.validate.disclosure import LISTINGS, share_checks, write_listings
    from dhsurvey.validate.quality import run_checks, write_checks
    from dhsurvey.validate.report import write_report

    out = Path(out)
    tables = {form: r.typed for form, r in result.forms.items()}
    checks = run_checks(tables, models, config=config, issues=result.issues(), design=design)
    shared = share_checks(checks, models)
    write_checks(shared.tables, out / QUALITY)
    listed = write_listings(shared.listings, out / LISTINGS)
    summary = {"country": result.country or "not given", "notes": "; ".join(result.notes)
               or "none"}
    for form, r in result.forms.items():
        rec = r.reconciliation
        reasons = ", ".join(f"{n} {why}" for why, n in
                            rec.get("duplicates_by_reason", {}).items())
        blanked = sum(rec.get("automatic_corrections", {}).values())
        summary[form] = (f"{rec['raw']} received, {rec['accepted']} accepted, "
                         f"{rec['quarantined']} quarantined, {rec['duplicates']} duplicates"
                         f"{f' ({reasons})' if reasons else ''}, {rec['flagged']} flagged, "
                         f"{blanked} hidden answers blanked")
    paths = {"report": write_report(
        shared.tables, out / REPORT, title=f"Fieldwork quality — {result.country or 'all'}",
        summary=summary, models=models,
        listings={name: (len(shared.listings[name]), path.relative_to(out).as_posix())
                  for name, path in listed.items()}),
        "listings": out / LISTINGS}
    if expectations:
        from dhsurvey.validate.expectations import validate_accepted

        ge = validate_accepted({f: r.accepted for f, r in result.forms.items()}, models,
                               out / DATA_DOCS, name=result.country or "validation")
        paths["data_docs"] = ge.index
    return paths
