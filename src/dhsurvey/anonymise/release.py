"""Study-level anonymisation: accepted, weighted tables in, public release tables out.

Why a study layer on top of the generic engine (:mod:`~dhsurvey.anonymise.risk`,
:mod:`~dhsurvey.anonymise.suppress`, :mod:`~dhsurvey.anonymise.pseudonym`, ...): the engine
knows k-anonymity, not this survey. This module runs the steps in order; each step lives in
the module named after it, the way sdcMicro keeps one function per method.

The release of one country (:func:`anonymise_country`) does, in this order:

1. **Classify and drop** (:mod:`~dhsurvey.anonymise.classify`): direct identifiers, free
   text (unless allowed; then scrubbed), device and server metadata, interviewer codes, the
   ID fields of each form's ``instance_name`` and roster line pointers never leave the
   restricted zone. Dates become months. Columns not in the form model are dropped: unknown
   means unreviewed.
2. **Design and links** (:mod:`~dhsurvey.anonymise.ids`): only records with a weight are
   released (non-respondents carry no answers); ``stratum`` and ``psu`` get fresh random
   codes, household links a fresh random ``hh_id`` and every record a fresh random
   ``record_id`` (so two releases cannot be joined record by record); the keyed HMAC
   pseudonym of the household and the code mappings go to ``restricted`` only: ``records``
   (form, KEY, record_id, hh_id), ``households`` (hh_pseudonym, hh_id), ``strata`` and
   ``psu``. Rows are shuffled, since file order follows cluster and visit order.
3. **Global recoding** (:mod:`~dhsurvey.anonymise.recode`, ``recode=True``): the fixed
   top-codes, bands and rare merges.
4. **Recoding steps and local suppression** (:mod:`~dhsurvey.anonymise.ladder`,
   :mod:`~dhsurvey.anonymise.suppression`): the fewest of the rules' steps that let
   suppression protect every record within the budget, on the profile of the files the
   tier links (:mod:`~dhsurvey.anonymise.linked`: each file's respondents, on every key the
   intruder can join to them). With ``link: auto`` the files stay linked only if they can
   be protected together; otherwise they are released without ``hh_id``.
5. **Masked design** (:mod:`~dhsurvey.anonymise.masked`, tiers with ``design: masked``):
   pseudo-strata and pseudo-PSUs, rounded weights, no replicate weights.
6. **Report** (:mod:`~dhsurvey.anonymise.report`), as a dict and as Markdown.

Choices worth knowing:

- ``stratum`` is a key of every weighted file and is never suppressed, nor what it pins
  down (its region, and its urban/rural setting unless the strata were collapsed): the
  gate blocks a release whose records cannot be protected otherwise. ``psu`` is not a key:
  its code is random per release (a pseudo-PSU in the public tier) and carries no
  geography.
- Dates become months and identifiers are dropped even with ``recode=False``: that switch
  exists to show what global recoding buys on the keys, not to release exact dates.
- Unweighted files (frontline workers) get risk 1/f_k with the sample as population; their
  records without consent are not released.

:func:`~dhsurvey.anonymise.scan.scan_release` then reads the written files back and looks for
restricted values and identifier patterns; :func:`~dhsurvey.anonymise.gate.gate` turns the
report and the scan into a release decision. The names of those modules are re-exported
here, where the pipeline has always imported them.

Errors are :class:`~dhsurvey.errors.DhsurveyError` with codes ``release-bad-argument``,
``release-weights`` and ``release-scan``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from dhsurvey.anonymise.classify import (
    ACTIONS,
    DROP_TYPES,
    FIELD_DROP,
    LINE_POINTER,
    META_DROP,
    MONTH_TYPES,
    classify,
    classify_with_reasons,
    column_reasons,
    local_tz,
    released_column,
)
from dhsurvey.anonymise.gate import GateResult, gate
from dhsurvey.anonymise.identifiers import COORD_RE, EMAIL_RE, PHONE_REGIONS, UUID_RE
from dhsurvey.anonymise.ids import (
    DESIGN,
    HOUSEHOLD_COLUMN,
    HOUSEHOLD_PURPOSE,
    assign_ids,
    household_numbers,
    text_ids,
)
from dhsurvey.anonymise.ladder import Search, Trial, apply_trial, linked_groups
from dhsurvey.anonymise.linked import code_text
from dhsurvey.anonymise.masked import collapse_strata, mask_design
from dhsurvey.anonymise.measure import distinct_l, distinct_ls
from dhsurvey.anonymise.recode import (
    BANDS,
    FIXED_TOPCODES,
    NO_MERGE,
    PERCENTILE_TOPCODE,
    RARE_CODE,
    RARE_LABEL,
    TOPCODE_QUANTILE,
    recodable,
    recode_form,
)
from dhsurvey.anonymise.report import (
    form_markdown,
    form_report,
    tier_markdown,
    tier_measures,
    tier_report,
)
from dhsurvey.anonymise.scan import release_files, scan_release
from dhsurvey.anonymise.scenario import UNDECLARED, Rules, Tier
from dhsurvey.anonymise.suppression import (
    DEFAULT_IMPORTANCE,
    LINK_PRIORITY,
    form_importance,
)
from dhsurvey.anonymise.working import WorkingForm
from dhsurvey.errors import DhsurveyError
from dhsurvey.fieldwork.config import CountryConfig
from dhsurvey.forms.facts import StudyFacts, study_facts
from dhsurvey.forms.model import FormModel
from dhsurvey.weight.study import REPLICATE

__all__ = [
    "ACTIONS",
    "BANDS",
    "COORD_RE",
    "DEFAULT_IMPORTANCE",
    "DESIGN",
    "DROP_TYPES",
    "EMAIL_RE",
    "FIELD_DROP",
    "FIXED_TOPCODES",
    "HOUSEHOLD_PURPOSE",
    "LINE_POINTER",
    "LINK_PRIORITY",
    "META_DROP",
    "MONTH_TYPES",
    "NO_MERGE",
    "PERCENTILE_TOPCODE",
    "PHONE_REGIONS",
    "RARE_CODE",
    "RARE_LABEL",
    "TOPCODE_QUANTILE",
    "UUID_RE",
    "WEIGHT_COLUMNS",
    "AnonymisedRelease",
    "GateResult",
    "ReleasePlan",
    "anonymise_country",
    "anonymise_form",
    "calibration_columns",
    "classify",
    "classify_with_reasons",
    "gate",
    "plan_columns",
    "release_files",
    "scan_release",
]

#: Weight columns of a released table (replicate weights follow them, last).
WEIGHT_COLUMNS = ["weight", "weight_norm"]


@dataclass
class AnonymisedRelease:
    """Public tables, the restricted mappings that undo the release IDs, and the report.

    ``restricted`` must never leave the restricted zone: it joins the release back to
    instanceIDs, household pseudonyms, cluster numbers and strata.
    """

    tables: dict[str, pd.DataFrame]
    restricted: dict[str, pd.DataFrame]
    report: dict[str, dict[str, Any]]
    report_md: dict[str, str]
    #: The tier: scenario, thresholds, linking decision, budget (:func:`tier_report`).
    tier: dict[str, Any] = field(default_factory=dict)

    @property
    def merged_codes(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Per form and column, the rare levels merged into a new code (for its labels)."""
        return {form: {col: {"levels": m["levels"], "into": m["into"]}
                       for col, m in rep.get("rare_merged", {}).items()}
                for form, rep in self.report.items() if rep.get("rare_merged")}

    def markdown(self) -> str:
        """The whole report as one Markdown document (linked profile last)."""
        parts = ["# Disclosure control report", ""]
        if self.tier:
            parts.append(tier_markdown(self.tier, self.report))
        parts += [self.report_md[name] for name in self.report_md]
        return "\n".join(parts)


def calibration_columns(weights: pd.DataFrame | None, config: CountryConfig) -> list[str]:
    """The margin variables a weights table carries: the values each record's weight was
    raked with (``config.margins``), released so that users can rake the design again."""
    return [] if weights is None else [m for m in config.margins if m in weights.columns]


def _join_weights(form: str, table: pd.DataFrame, weights: pd.DataFrame,
                  calibration: Sequence[str] = ()) -> pd.DataFrame:
    """Inner join on KEY: stratum, cluster, weight, weight_norm, the margin variables
    (``calibration``) and replicate weights."""
    clash = [m for m in calibration if m in table.columns]
    if clash:
        raise DhsurveyError(f"margin variable(s) {clash} are also fields of the form",
                            code="release-weights", form=form)
    need = ["KEY", "stratum", "cluster", "weight", *calibration]
    missing = [c for c in need if c not in weights.columns]
    if missing:
        raise DhsurveyError(f"weights table lacks column(s) {missing}", code="release-weights",
                            form=form)
    if weights["KEY"].duplicated().any():
        raise DhsurveyError("weights table has duplicated KEYs", code="release-weights",
                            form=form)
    cols = need + [c for c in weights.columns if c == "weight_norm" or REPLICATE.match(str(c))]
    w = weights[cols].rename(columns={"cluster": "_cluster", "stratum": "_stratum"})
    return table.merge(w, on="KEY", how="inner", validate="one_to_one")


def _consented(model: FormModel, table: pd.DataFrame) -> np.ndarray:
    """Records that passed every consent gate of the form (the others hold no answers)."""
    keep = np.ones(len(table), dtype=bool)
    for gate_name, answer in model.consent_given.items():
        if answer is not None and gate_name in table.columns:
            keep &= code_text(table[gate_name]).eq(str(answer)).to_numpy()
    return keep


def _prepare(form: str, table: pd.DataFrame, model: FormModel, weights: pd.DataFrame | None,
             config: CountryConfig, allowed: Sequence[str], rng: np.random.Generator,
             facts: StudyFacts, replicates: bool = True) -> tuple[WorkingForm, pd.DataFrame]:
    """Drop, convert dates, join weights (replicate weights only if ``replicates``),
    shuffle. Returns the form and its ID frame."""
    reasons = column_reasons(form, table.columns, model, allowed)
    if "KEY" not in table.columns:
        raise DhsurveyError("accepted table has no KEY column", code="release-bad-argument",
                            form=form)
    accepted_rows = len(table)
    data = table.copy()
    calibration = calibration_columns(weights, config)
    if weights is not None:
        data = _join_weights(form, data, weights, calibration)
    else:  # no weight marks the non-respondents of an unweighted form: its consent does
        data = data[_consented(model, data)]
    _release_geography(data, config)
    data = data.iloc[rng.permutation(len(data))].reset_index(drop=True)

    # Numbered records (a country in batches) keep integer KEYs: no object per row.
    record_keys = data["KEY"] if pd.api.types.is_integer_dtype(data["KEY"]) else \
        data["KEY"].astype(object)
    ids = pd.DataFrame({"form": form, "KEY": record_keys})
    household_id = model.household_id
    if household_id:
        missing = [c for c in household_id if c not in data.columns]
        if missing:
            raise DhsurveyError(f"accepted table lacks the household ID field(s) {missing}",
                                code="release-bad-argument", form=form)
        for field, part in zip(household_id, household_numbers(data, household_id),
                               strict=True):
            ids[HOUSEHOLD_COLUMN + field] = part
    if weights is not None:
        ids["cluster"] = data["_cluster"].to_numpy()
        # Each stratum's name once, not once per record.
        strata = data["_stratum"].astype("category")
        ids["stratum"] = strata.cat.rename_categories(
            [str(c) for c in strata.cat.categories]).astype(object).to_numpy()

    tz = local_tz(config.utc_offset)
    parts: dict[Any, Any] = {}  # the columns, made into one frame (not one insert each)
    months: list[str] = []
    scrubbed: list[str] = []
    keys: list[str] = []
    for col in [c for c in table.columns if c in reasons]:
        action = reasons[col][0]
        if action == "drop":
            continue
        parts[col] = released_column(data[col], action, tz, facts)
        {"month": months, "scrub": scrubbed, "key": keys}.get(action, []).append(col)
    for col in calibration:  # keys an intruder may know, never suppressed nor recoded
        parts[col] = pd.to_numeric(data[col], errors="coerce").astype("Int64").to_numpy()
        keys.append(col)
    out = pd.DataFrame(parts, index=data.index)
    if weights is not None:
        # Hundreds of replicate columns: added in one concat, not one insert each.
        wanted = ["weight", *[c for c in data.columns if c == "weight_norm"
                              or (replicates and REPLICATE.match(str(c)))]]
        out = pd.concat([out, data[wanted].astype(float)], axis=1)
    return WorkingForm(form, model, reasons, out, keys, weights is not None, accepted_rows,
                       scrubbed, months, calibration=calibration), ids


def _release_geography(data: pd.DataFrame, config: CountryConfig) -> None:
    """In place: ``region`` becomes the release zone it lies in and the design stratum the
    zone's urban or rural part (a country without zones keeps its regions). A region of a
    few dozen children cannot be released safely; the restricted zone keeps the region."""
    if not config.zones:
        return
    if "region" in data.columns:
        regions = config.released_regions
        codes = pd.to_numeric(data["region"], errors="coerce")
        data["region"] = codes.map(regions).astype("Int64")
    if "_stratum" in data.columns:
        strata = config.released_strata
        data["_stratum"] = data["_stratum"].astype(str).map(lambda s: strata.get(s, s))


def _stage(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Some columns of ``table`` as a frame over the same arrays (no copy)."""
    return pd.DataFrame({c: table[c] for c in columns}, copy=False)


def anonymise_country(
    accepted: Mapping[str, pd.DataFrame],
    weights: Mapping[str, pd.DataFrame],
    models: Mapping[str, FormModel],
    config: CountryConfig,
    *,
    key: bytes,
    rng: np.random.Generator,
    recode: bool = True,
    k: int | None = None,
    importance: Mapping[str, list[str]] | None = None,
    allowed_free_text: Mapping[str, list[str]] | None = None,
    suppress: bool = True,
    numeric_ids: bool = False,
    rules: Rules | None = None,
    tier: str = "public",
) -> AnonymisedRelease:
    """Anonymise every form of one country into one tier's release (see the module docstring).

    ``accepted``: typed root tables by form; ``weights``: form -> weights table (KEY, stratum,
    cluster, weight, weight_norm, rep_*), absent for unweighted forms (frontline workers);
    ``key``: the pseudonym key (:func:`~dhsurvey.anonymise.pseudonym.load_key`); ``rng``:
    the source of every release ID and code (never store its seed with a release).
    ``rules`` (``disclosure.yaml``, :func:`~dhsurvey.anonymise.scenario.load_rules`) and
    ``tier`` name the intruder scenario, thresholds and recoding steps; without rules every
    quasi-identifier is a key, the files stay linked and no recoding step is searched.
    ``k`` overrides the rules' k. ``importance``: form -> keys most important first;
    unlisted keys are suppressed first. ``recode=False`` skips global recoding (top-codes,
    bands, rare merges, steps) but never the drops or the months; ``suppress=False`` skips
    local suppression (both for comparison in reports and tests). ``numeric_ids=True``
    leaves ``record_id`` and ``hh_id`` as the numbers their text is made of (a plan for
    millions of records, :class:`ReleasePlan`, writes them per batch).
    """
    rules = rules if rules is not None else Rules(tiers={"public": UNDECLARED})
    rules = replace(rules, k=rules.k if k is None else k)
    k = rules.k
    scenario = _check(accepted, models, rules, tier)
    # The forms of a household must identify it by the same fields (an error otherwise):
    # one household gets one pseudonym and one hh_id whichever form names it.
    facts = study_facts([models[f] for f in accepted])
    allowed = dict(allowed_free_text or {})
    importance = dict(importance or {})
    forms: dict[str, WorkingForm] = {}
    ids: dict[str, pd.DataFrame] = {}
    masked = scenario.design == "masked"
    for name, table in accepted.items():
        w = weights.get(name)
        forms[name], ids[name] = _prepare(name, table, models[name], w, config,
                                          allowed.get(name, []), rng, facts,
                                          replicates=not masked)
    restricted = assign_ids(forms, ids, rng, config, key)
    del ids
    if masked:
        restricted.update(collapse_strata(forms, rng))
    for f in forms.values():
        _stages(f, scenario, rules, recode)
    search = Search(forms, rules, k, importance, scenario.knows_participation, masked)
    if not recode:
        search.rules = replace(rules, recoding={})
    linked, trial = _protect(forms, search, scenario.link, suppress, tier)
    groups = linked_groups(forms, linked)
    if not linked:
        for f in forms.values():
            if "hh_id" in f.table.columns:
                f.table = f.table.drop(columns=["hh_id"])
                f.reasons["hh_id"] = ("drop", f"household link: the {tier} tier's files "
                                      "cannot be protected together, so they share no ID")
    if masked:
        restricted.update(mask_design(forms, rules, rng))
    report: dict[str, dict[str, Any]] = {}
    report_md: dict[str, str] = {}
    recoded = trial.forms if trial is not None else None
    measures = tier_measures(forms, groups, rules, recoded, scenario.knows_participation)
    for f in forms.values():
        rep = form_report(f, k, suppress, measures[f.name], rules,
                          recoded[f.name] if recoded else None)
        rep["importance"] = form_importance(f, importance)
        report[f.name] = rep
        report_md[f.name] = form_markdown(rep)
    tier_rep = tier_report(tier, scenario, rules, groups, linked, trial, forms)
    tables = {name: _order_columns(f.table if numeric_ids else text_ids(f.table))
              for name, f in forms.items()}
    return AnonymisedRelease(tables, restricted, report, report_md, tier_rep)


def _check(accepted: Mapping[str, pd.DataFrame], models: Mapping[str, FormModel],
           rules: Rules, tier: str) -> Tier:
    """The tier's scenario, once the arguments are known to fit together."""
    if rules.k < 1:
        raise DhsurveyError("k must be at least 1", code="release-bad-argument")
    if tier not in rules.tiers:
        raise DhsurveyError(f"no release tier '{tier}' in the disclosure rules",
                            code="release-bad-argument", file=rules.source or None)
    missing = [f for f in accepted if f not in models]
    if missing:
        raise DhsurveyError(f"no form model for {missing}", code="release-bad-argument")
    return rules.tiers[tier]


def _stages(f: WorkingForm, scenario: Tier, rules: Rules, recode: bool) -> None:
    """The tier's keys of a form, its stage before recoding and after the fixed recodes.

    The stages keep what the report reads: keys, columns recoding may change, the household
    link, the weight and the declared sensitive answers (not the release IDs). A stage
    shares the table's arrays: recoding and suppression replace a column, never write into
    it.
    """
    f.keys = [c for c in f.keys if c in f.calibration or scenario.is_key(f.name, c)]
    f.initial_keys = list(f.keys)
    staged = [c for c in f.table.columns if c in f.keys or c in ("hh_id", "weight")
              or recodable(c) or c in rules.sensitive.get(f.name, {})]
    f.before = _stage(f.table, staged)
    if recode:
        recode_form(f, rules.k)
    f.after_recode = _stage(f.table, staged)


def _protect(forms: Mapping[str, WorkingForm], search: Search, link: Any, suppress: bool,
             tier: str) -> tuple[bool, Trial | None]:
    """Choose the recoding steps and suppress (:mod:`~dhsurvey.anonymise.ladder`); whether
    the files stay linked. ``link="auto"``: linked only if the rules can be met so without
    leaving any variable out, else each file on its own."""
    linked = link is not False
    if not suppress:
        return linked, None
    budget = search.rules.suppression_budget
    groups = linked_groups(forms, True)
    trial = None
    if link == "auto" and len(groups) < len(forms):
        together = groups[0]
        if search.coarsest(groups).ok(budget, together):
            trial = search.search(groups, strict=together)
        if trial is None or not trial.ok(budget, together):
            linked, trial = False, None
    if trial is None:
        trial = search.search(linked_groups(forms, linked))
    apply_trial(forms, trial, search.rules, tier)
    return linked, trial


def _column_order(columns: Sequence[Any]) -> list[Any]:
    """IDs and design first, data in the order given (form order), weights last."""
    head = [c for c in ("record_id", "hh_id", *DESIGN) if c in columns]
    tail = [c for c in columns if c in WEIGHT_COLUMNS or REPLICATE.match(str(c))]
    return head + [c for c in columns if c not in head and c not in tail] + tail


def _order_columns(table: pd.DataFrame) -> pd.DataFrame:
    return table[_column_order(list(table.columns))].reset_index(drop=True)


def anonymise_form(
    table: pd.DataFrame,
    model: FormModel,
    config: CountryConfig,
    weights: pd.DataFrame | None = None,
    **options: Any,
) -> AnonymisedRelease:
    """One form on its own (same rules and options as :func:`anonymise_country`).

    No linked household profile is built: use :func:`anonymise_country` for the household,
    child and caregiver files of a release, or the linkage risk is not controlled.
    """
    name = model.form_id
    return anonymise_country({name: table}, {name: weights} if weights is not None else {},
                             {name: model}, config, **options)


# ------------------------------------------------------------------ a release in batches


def plan_columns(model: FormModel, columns: Iterable[str],
                 rules: Rules | None = None) -> list[str]:
    """The columns of an accepted table whose release depends on the whole sample.

    KEY, the household ID fields (pseudonyms), keys (frequencies, suppression) and globally
    recoded counts (top-codes at percentiles, bands): :func:`anonymise_country` on these
    columns alone decides every record's release IDs, order and suppressions. Every other
    column is released value by value (:class:`ReleasePlan`), so a country larger than
    memory is anonymised in batches; sensitive answers, of which the report only needs
    l-diversity, are added one column at a time (:meth:`ReleasePlan.diversity`).
    """
    reasons = classify_with_reasons(model)
    sensitive = (rules.sensitive if rules is not None else {}).get(model.form_id, {})
    wanted = {"KEY", *model.household_id, *sensitive}
    return [c for c in columns if c in wanted or recodable(c)
            or reasons.get(c, ("drop", ""))[0] == "key"]


class ReleasePlan:
    """A release decided on :func:`plan_columns` and applied to batches of whole records.

    ``release`` is :func:`anonymise_country` of the plan columns (all columns for forms
    given whole, e.g. the small frontline-worker file); ``columns`` names every column of
    each form's accepted table, so the report lists all drops, months and scrubbed text.
    :meth:`rows` of every batch, stacked, equal the whole-table release of the same rows
    (the test compares them), in the order the release's shuffle gave.
    """

    def __init__(self, release: AnonymisedRelease, models: Mapping[str, FormModel],
                 config: CountryConfig, columns: Mapping[str, Sequence[str]], *,
                 allowed_free_text: Mapping[str, list[str]] | None = None) -> None:
        self.release = release
        self.facts = study_facts(models)
        self.tz = local_tz(config.utc_offset)
        self.columns = {f: list(c) for f, c in columns.items()}
        allowed = dict(allowed_free_text or {})
        self.reasons = {f: column_reasons(f, cols, models[f], allowed.get(f, []))
                        for f, cols in self.columns.items()}
        for form, entry in release.report.items():  # left out by the tier's recoding steps
            for col, reason in entry.get("dropped", {}).items():
                if form in self.reasons and col in self.reasons[form]:
                    self.reasons[form][col] = ("drop", reason)
        records = release.restricted["records"]
        self.positions: dict[str, pd.Index] = {}
        for form, table in release.tables.items():
            keys = records.loc[records["form"] == form, "KEY"]
            if len(keys) != len(table):
                raise DhsurveyError("restricted records do not match the released rows",
                                    code="release-bad-argument", form=form)
            self.positions[form] = pd.Index(keys.tolist())  # int64 for numbered records
        for form, cols in self.columns.items():
            rep = release.report.get(form)
            if rep is None:
                continue
            actions = [(c, self.reasons[form][c]) for c in cols if c in self.reasons[form]]
            rep["dropped"] = {c: r for c, (a, r) in self.reasons[form].items() if a == "drop"}
            rep["months"] = [c for c, (a, _) in actions if a == "month"]
            rep["free_text_scrubbed"] = [c for c, (a, _) in actions if a == "scrub"]
            release.report_md[form] = form_markdown(rep)

    def sensitive(self, form: str) -> list[str]:
        """The form's sensitive columns (released unchanged; the plan leaves them out)."""
        return [c for c, (a, _) in self.reasons[form].items()
                if a == "sensitive" and c in self.columns[form]]

    def diversity(self, form: str, values: pd.DataFrame) -> None:
        """Add the l-diversity of sensitive columns to the report: ``values`` holds KEY and
        some of :meth:`sensitive` over the whole sample (a few columns at a time)."""
        rep = self.release.report[form]
        keys = list(rep["keys"])
        rows = values.set_index("KEY").reindex(self.positions[form])
        frame = self.release.tables[form][keys].reset_index(drop=True)
        found = rep.setdefault("l_diversity", {})
        columns = [c for c in values.columns if c != "KEY"]
        if set(columns) & set(keys):  # a key measured as an answer: one column at a time
            for col in columns:
                found[col] = distinct_l(frame.assign(**{col: rows[col].to_numpy()}), keys, col)
        else:  # the keys coded once for every column
            found.update(distinct_ls(frame.assign(**{c: rows[c].to_numpy() for c in columns}),
                                     keys, columns))
        # In the order the whole-table report lists them.
        rep["l_diversity"] = {c: found[c] for c in self.sensitive(form) if c in found}
        self.release.report_md[form] = form_markdown(rep)

    def table(self, form: str) -> pd.DataFrame:
        """A form planned with all its columns (given whole), as released."""
        return text_ids(self.release.tables[form].copy())

    def released_columns(self, form: str, replicates: Sequence[str] = ()) -> list[str]:
        """The released table's columns in release order (IDs, design, data, weights)."""
        data = [c for c in self.columns[form] if self.reasons[form][c][0] != "drop"]
        ids = [c for c in self.release.tables[form].columns if c not in data]
        return _column_order([*ids, *data, *replicates])

    def rows(self, form: str, batch: pd.DataFrame,
             replicates: Any = None) -> pd.DataFrame:
        """The released rows of the accepted records ``batch`` (all columns, KEY included).

        Records the plan does not release (no weight) are left out; ``replicates(keys)``
        gives the replicate weight columns of those KEYs (weighted forms whose weights
        keep replicates in factor form).
        """
        planned = self.release.tables[form]
        found = self.positions[form].get_indexer(pd.Index(batch["KEY"].tolist()))
        take = np.sort(found[found >= 0])
        plan_rows = text_ids(planned.iloc[take].reset_index(drop=True))
        keys = self.positions[form][take]
        source = batch.set_index("KEY").loc[keys].reset_index(drop=True)
        parts = {c: plan_rows[c] for c in plan_rows.columns}
        for col in source.columns:
            action = self.reasons[form].get(col, ("drop", ""))[0]
            if action != "drop" and col not in parts:
                parts[col] = released_column(source[col], action, self.tz, self.facts)
        reps = replicates(keys) if replicates is not None else pd.DataFrame(index=plan_rows.index)
        for col in reps.columns:
            parts[col] = reps[col].astype(float)
        order = self.released_columns(form, list(reps.columns))
        return pd.DataFrame({c: parts[c] for c in order})
