"""High-frequency checks: what a data manager reviews every day of fieldwork.

Modelled on IPA's ``ipacheck`` 4.3 (form versions per day, duplicates, missingness, outliers,
constraints and logic, other-specify, survey and enumerator dashboards, progress, durations,
straight-lining, don't-know/refusal rates) plus AAPOR outcome rates and the distress-protocol
referrals this study owes every child. Each check returns one tidy table so it can be written
as Parquet, read into a report, or diffed between days.

Checks run on the typed root tables of *all* submissions — duplicates, outdated versions and
quarantined rows included — because those are exactly what field supervisors must act on.
Counts that describe the sample (progress, AAPOR) use one record per unit: the last submission
of each household or interview (see :func:`dhsurvey.validate.aapor.latest`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, overload

import numpy as np
import pandas as pd

from dhsurvey.fieldwork.config import CountryConfig
from dhsurvey.forms.expressions import evaluate_bool, references
from dhsurvey.forms.facts import Models, StudyFacts, gates_asked, study_facts
from dhsurvey.forms.model import FormModel, Item
from dhsurvey.io import atomic_write_parquet
from dhsurvey.validate import aapor
from dhsurvey.validate.timing import completed, duration_minutes, speeder_mask

if TYPE_CHECKING:
    from pandas._typing import AstypeArg

# The study facts these checks read come from the forms (dhsurvey.forms.facts): the household
# ID (one record per household per form), the consent gates in interview order (the first one
# asked decides the consent denominator), the disposition codes by AAPOR category (an
# interviewed household — roster taken — is a complete or partial one).
DONT_KNOW, REFUSED, OTHER = 98, 99, 96
#: The enumerator's ID field (integer, an identifier, not a measurement).
ENUMERATOR = "enum_id"
#: ``config.targets`` key → form whose interviews count towards it.
TARGET_FORMS = {"households": "household", "children": "child", "caregivers": "caregiver",
                "frontline_workers": "frontline_worker"}
GRID_MIN_ITEMS = 4


# -- helpers -----------------------------------------------------------------------------------


def _enumerator(table: pd.DataFrame) -> pd.Series:
    """Enumerator id (``enum_id``, else the server account that submitted)."""
    column = ENUMERATOR if ENUMERATOR in table else "submitter" if "submitter" in table else None
    if column is None:
        return pd.Series(pd.NA, index=table.index, dtype="Int64")
    return pd.to_numeric(table[column], errors="coerce").astype("Int64")


def enumerator_teams(config: CountryConfig | None) -> dict[int, int]:
    """Enumerator ID → the ID of the team the country file puts them in."""
    return {e: t.id for t in config.teams for e in t.enumerators} if config else {}


def _team_of(enum_ids: pd.Series, config: CountryConfig | None) -> pd.Series:
    """Each enumerator's team (``config.teams``); NA for an enumerator in no team."""
    teams = enumerator_teams(config)
    return pd.Series([pd.NA if pd.isna(v) else teams.get(int(v), pd.NA) for v in enum_ids],
                     index=enum_ids.index, dtype="Int64")


def psu_teams(households: pd.DataFrame, config: CountryConfig | None,
              regions: pd.Series | None = None) -> pd.Series:
    """The team of each PSU (``cluster``) from the country file, where no sample design says.

    The team whose ``regions`` hold the PSU's region (``regions``: the design's, by cluster;
    else the region most of its households answered); where no team or several name the
    region, the team of the enumerator who visited most of its households (among those in a
    team; ties to the lowest ID). NA where neither tells.
    """
    cluster = _codes(households["cluster"]).astype("Int64")
    region = (_codes(households["region"]).astype("Int64") if "region" in households
              else pd.Series(pd.NA, index=households.index, dtype="Int64"))
    frame = pd.DataFrame({"cluster": cluster, "region": region,
                          "enum_id": _enumerator(households)}).dropna(subset=["cluster"])
    answered = (frame.dropna(subset=["region"]).groupby("cluster")["region"]
                .agg(lambda s: s.mode().iloc[0]).astype("Int64"))
    if regions is not None:
        answered = regions.dropna().astype("Int64").combine_first(answered)
    clusters = pd.Index(sorted(set(frame["cluster"]) | set(answered.index)), dtype="Int64",
                        name="cluster")
    if config is None or not config.teams:
        return pd.Series(pd.NA, index=clusters, dtype="Int64", name="team")
    covering: dict[int, set[int]] = {}
    for t in config.teams:
        for r in t.regions:
            covering.setdefault(r, set()).add(t.id)
    by_region = answered.map(lambda r: next(iter(covering[int(r)]))
                             if len(covering.get(int(r), ())) == 1 else pd.NA,
                             na_action="ignore")
    frame = frame.assign(team=_team_of(frame["enum_id"], config)).dropna(subset=["team"])
    visits = (frame.groupby(["cluster", "enum_id"]).agg(households=("team", "size"),
                                                        team=("team", "first")).reset_index()
              .sort_values(["cluster", "households", "enum_id"], ascending=[True, False, True])
              .drop_duplicates("cluster").set_index("cluster")["team"])
    team = by_region.astype("Int64").reindex(clusters).fillna(
        visits.astype("Int64").reindex(clusters))
    return team.astype("Int64").rename("team")


def quarantined_by_enumerator(issues: pd.DataFrame, form: str) -> pd.DataFrame:
    """Per enumerator of ``form``: the submissions quarantined (``severity`` error in the
    :func:`issues_listing`) and why: each rule (with the question it broke) and its count of
    submissions, most frequent first ("constraint (enum_id) 3; orphan (hh_number) 1").
    Counts, rule and question names only: no instanceID, no value."""
    columns = ["enum_id", "quarantined", "quarantine_reasons"]
    errors = issues[(issues["form"] == form) & (issues["severity"] == "error")]
    if errors.empty:
        return _frame([], columns, {"enum_id": "Int64", "quarantined": "int64",
                                    "quarantine_reasons": "string"})
    column = errors["column"].astype("string").str.strip().fillna("")
    sub = pd.DataFrame({
        "enum_id": errors["enum_id"], "KEY": errors["KEY"],
        "rule": errors["rule"].astype("string").fillna("(no rule)")
        + column.map(lambda c: f" ({c})" if c else "")}).drop_duplicates()
    total = sub.groupby("enum_id", dropna=False)["KEY"].nunique().rename("quarantined")
    rules = (sub.groupby(["enum_id", "rule"], dropna=False)["KEY"].nunique().rename("n")
             .reset_index().sort_values(["enum_id", "n", "rule"],
                                        ascending=[True, False, True]))
    rules["reason"] = rules["rule"] + " " + rules["n"].astype("string")
    reasons = rules.groupby("enum_id", dropna=False, sort=False)["reason"].agg("; ".join)
    out = pd.concat([total, reasons.rename("quarantine_reasons")], axis=1).reset_index()
    return _frame(out.rename(columns={"index": "enum_id"}), columns,
                  {"enum_id": "Int64", "quarantined": "int64",
                   "quarantine_reasons": "string"})


def _offset(config: CountryConfig | None) -> pd.Timedelta:
    if config is None:
        return pd.Timedelta(0)
    m = re.fullmatch(r"([+-])(\d{2}):?(\d{2})", config.utc_offset.strip())
    if not m:
        return pd.Timedelta(0)
    sign = -1 if m.group(1) == "-" else 1
    return sign * pd.Timedelta(hours=int(m.group(2)), minutes=int(m.group(3)))


def interview_day(table: pd.DataFrame, config: CountryConfig | None = None) -> pd.Series:
    """Local calendar day of the interview (``start``, else ``submission_time``).

    Days are in the country's UTC offset: an interview at 01:00 local time belongs to the
    fieldwork day it was done on, not to the previous UTC day.
    """
    for column in ("start", "submission_time"):
        if column in table:
            when = pd.to_datetime(table[column], utc=True, errors="coerce", format="ISO8601")
            if when.notna().any():
                return (when + _offset(config)).dt.tz_localize(None).dt.normalize()
    return pd.Series(pd.NaT, index=table.index, dtype="datetime64[ns]")


def _codes(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values, errors="coerce")


def _present(values: pd.Series) -> pd.Series:
    """Answered: present, and for text not blank (a text of spaces only is no answer)."""
    present = values.notna()
    if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
        raw = values.to_numpy(dtype=object)
        mask = present.to_numpy(dtype=bool)
        mask[mask] = [bool((x if isinstance(x, str) else str(x)).strip()) for x in raw[mask]]
        return pd.Series(mask, index=values.index, name=values.name)
    return present.astype(bool)


def _has_code(values: pd.Series, item: Item, code: int) -> pd.Series:
    """Whether each answer is (select_one) or includes (select_multiple) ``code``."""
    if item.is_select_multiple:
        tokens = values.astype("string").fillna("")
        return tokens.str.contains(rf"(?:^|\s){code}(?:\s|$)", regex=True).astype(bool)
    return _codes(values).eq(code).fillna(False).astype(bool)


def _offers(model: FormModel, item: Item, code: int) -> bool:
    lst = model.choices_for(item)
    return lst is not None and str(code) in lst.codes()


def _root_questions(model: FormModel, table: pd.DataFrame) -> list[Item]:
    return [i for i in model.fields_in(None) if i.is_input and i.name in table.columns]


def _selects(model: FormModel, table: pd.DataFrame) -> list[Item]:
    return [i for i in _root_questions(model, table)
            if (i.is_select_one or i.is_select_multiple)]


def _consent(table: pd.DataFrame, gates: Mapping[str, str | None]
             ) -> tuple[pd.Series, pd.Series]:
    """(asked: the first consent gate was put, done: every gate passed), for the form's
    ``gates`` (:attr:`FormModel.consent_given`)."""
    if not any(g in table.columns for g in gates):
        none = pd.Series(False, index=table.index)
        return none, none
    asked = gates_asked(table, gates)
    return asked, completed(table, gates) & asked


def _gates(form: str, models: Models | StudyFacts | None) -> dict[str, str | None]:
    return study_facts(models).gates(form)


@overload
def _rate(num: pd.Series | float, den: pd.Series) -> pd.Series: ...
@overload
def _rate(num: float, den: float) -> float: ...
def _rate(num: pd.Series | float, den: pd.Series | float) -> pd.Series | float:
    if isinstance(den, pd.Series):
        return (num / den.where(den > 0)).astype("float64")
    return float(num) / float(den) if den else float("nan")


def relevance_masks(table: pd.DataFrame, model: FormModel) -> dict[str, pd.Series]:
    """Whether each root question is asked in each row, from the form's own relevance.

    Expressions are evaluated once each (groups share them); a question whose relevance
    cannot be evaluated on the table (e.g. it counts a repeat not passed) is left out, and
    checks then treat it as always asked.
    """
    cache: dict[str, pd.Series | None] = {}
    out: dict[str, pd.Series] = {}
    for item in _root_questions(model, table):
        mask = pd.Series(True, index=table.index)
        for expression in model.relevance(item):
            if expression not in cache:
                try:
                    cache[expression] = evaluate_bool(expression, table)
                except Exception:  # any unevaluable expression: unknown
                    cache[expression] = None
            value = cache[expression]
            if value is None:
                break
            mask = mask & value
        else:
            out[item.name] = mask.astype(bool)
    return out


def _frame(rows: list[dict] | pd.DataFrame, columns: list[str],
           dtypes: Mapping[str, AstypeArg] | None = None) -> pd.DataFrame:
    """A table with exactly ``columns`` (empty but typed when there are no rows)."""
    out = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    out = out.reindex(columns=columns).reset_index(drop=True)
    for column, dtype in (dtypes or {}).items():
        out[column] = out[column].astype(dtype)
    return out


# -- checks ------------------------------------------------------------------------------------


def form_versions(table: pd.DataFrame, model: FormModel,
                  config: CountryConfig | None = None) -> pd.DataFrame:
    """Submissions per day and form version; ``current`` is False for outdated versions."""
    columns = ["form", "date", "form_version", "current", "submissions"]
    if "form_version" not in table:
        return _frame([], columns)
    frame = pd.DataFrame({"date": interview_day(table, config),
                          "form_version": table["form_version"].astype("string")})
    out = (frame.groupby(["date", "form_version"], dropna=False).size()
           .rename("submissions").reset_index())
    out["form"] = model.form_id
    out["current"] = out["form_version"] == model.version
    return _frame(out.sort_values(["date", "form_version"]), columns,
                  {"form": "string", "current": "bool", "submissions": "int64"})


def duplicate_ids(table: pd.DataFrame, form: str) -> pd.DataFrame:
    """instanceIDs (``KEY``) received more than once."""
    columns = ["form", "KEY", "copies"]
    counts = table["KEY"].value_counts()
    counts = counts[counts > 1].sort_index()
    out = pd.DataFrame({"form": form, "KEY": counts.index.astype(str),
                        "copies": counts.to_numpy()})
    return _frame(out, columns, {"form": "string", "KEY": "string", "copies": "int64"})


def duplicate_units(table: pd.DataFrame, form: str, keys: list[str],
                    config: CountryConfig | None = None) -> pd.DataFrame:
    """Every submission of a unit (e.g. cluster + household number) submitted more than once."""
    columns = ["form", "unit", "copies", "KEY", "enum_id", "date", "submission_time"]
    if not set(keys) <= set(table.columns):
        return _frame([], columns)
    values = table[keys].astype("string")
    dup = values.duplicated(keep=False) & values.notna().all(axis=1)
    sub = table[dup.to_numpy()]
    unit = values[dup.to_numpy()].aggregate(lambda r: "/".join(f"{k}={v}" for k, v in
                                                               zip(keys, r, strict=True)), axis=1)
    out = pd.DataFrame({
        "form": form, "unit": unit, "KEY": sub["KEY"].astype("string"),
        "enum_id": _enumerator(sub), "date": interview_day(sub, config),
        "submission_time": sub["submission_time"].astype("string")
        if "submission_time" in sub else pd.NA,
    })
    out["copies"] = out.groupby("unit")["KEY"].transform("size")
    out = out.sort_values(["unit", "submission_time", "KEY"], na_position="first")
    return _frame(out, columns, {"form": "string", "unit": "string", "copies": "int64",
                                 "KEY": "string", "enum_id": "Int64",
                                 "submission_time": "string"})


def missingness(table: pd.DataFrame, model: FormModel,
                relevant: Mapping[str, pd.Series] | None = None) -> pd.DataFrame:
    """Share missing per question among rows where it is relevant.

    ``relevant`` maps a question to a boolean mask (e.g. :func:`relevance_masks`); a question
    without one is judged over every row (``relevance`` = "none"), which overstates missingness
    for skipped questions — so pass masks whenever the form's logic can be evaluated.
    """
    relevant = relevant or {}
    rows = []
    for item in _root_questions(model, table):
        mask = relevant.get(item.name)
        asked = (pd.Series(True, index=table.index) if mask is None
                 else mask.reindex(table.index).fillna(False).astype(bool))
        missing = asked & ~_present(table[item.name])
        n = int(asked.sum())
        rows.append({"form": model.form_id, "variable": item.name, "type": item.type,
                     "relevance": "none" if mask is None else "form", "relevant": n,
                     "missing": int(missing.sum()), "share_missing": _rate(missing.sum(), n)})
    return _frame(rows, ["form", "variable", "type", "relevance", "relevant", "missing",
                         "share_missing"],
                  {"form": "string", "variable": "string", "type": "string",
                   "relevance": "string", "relevant": "int64", "missing": "int64",
                   "share_missing": "float64"})


def numeric_fields(model: FormModel, table: pd.DataFrame) -> list[str]:
    """Measured numbers (integer/decimal questions): identifiers (the interview's, the
    household's, the enumerator's) and roster lines excluded."""
    ids = {*model.instance_fields, *model.household_id, ENUMERATOR}
    return [i.name for i in _root_questions(model, table)
            if i.type in ("integer", "decimal", "range") and i.name not in ids
            and not i.name.endswith("_line")]


def outliers(table: pd.DataFrame, variables: list[str], *, form: str = "",
             method: str = "iqr", multiplier: float | None = None,
             by: str | None = None) -> pd.DataFrame:
    """Values outside [Q1 − k·IQR, Q3 + k·IQR] (``iqr``, k = 1.5) or mean ± k·SD (``sd``, k = 3).

    ``by`` computes the bounds within groups (e.g. ``urban_rural``: rural households own
    fewer phones, so one national bound would flag the wrong ones).
    """
    if method not in ("iqr", "sd"):
        raise ValueError(f"method must be 'iqr' or 'sd', got {method!r}")
    k = multiplier if multiplier is not None else (1.5 if method == "iqr" else 3.0)
    columns = ["form", "variable", "KEY", "enum_id", "group", "value", "low", "high", "method"]
    groups = (table[by].astype("string").fillna("") if by and by in table
              else pd.Series("all", index=table.index, dtype="string"))
    enum = _enumerator(table)
    parts = []
    for variable in variables:
        if variable not in table:
            continue
        values = pd.to_numeric(table[variable], errors="coerce").astype("float64")
        grouped = values.groupby(groups.to_numpy())
        if method == "iqr":
            q1, q3 = grouped.transform(lambda s: s.quantile(0.25)), grouped.transform(
                lambda s: s.quantile(0.75))
            low, high = q1 - k * (q3 - q1), q3 + k * (q3 - q1)
        else:
            mean, sd = grouped.transform("mean"), grouped.transform("std")
            low, high = mean - k * sd, mean + k * sd
        hit = (values.notna() & ((values < low) | (values > high))).to_numpy()
        if hit.any():
            parts.append(pd.DataFrame({
                "form": form, "variable": variable, "KEY": table["KEY"].to_numpy()[hit],
                "enum_id": enum.to_numpy()[hit], "group": groups.to_numpy()[hit],
                "value": values.to_numpy()[hit], "low": low.to_numpy()[hit],
                "high": high.to_numpy()[hit], "method": f"{method} x{k:g}"}))
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    return _frame(out, columns, {"form": "string", "variable": "string", "KEY": "string",
                                 "enum_id": "Int64", "group": "string", "value": "float64",
                                 "low": "float64", "high": "float64", "method": "string"})


ISSUE_INPUT = ["form", "KEY", "rule", "column", "value", "message", "severity"]


def issues_listing(issues: pd.DataFrame, tables: Mapping[str, pd.DataFrame],
                   config: CountryConfig | None = None) -> pd.DataFrame:
    """Constraint violations and logic assertions with the enumerator and day of each.

    ``issues`` has columns form, KEY, rule, column, value, message, severity (``instanceID``
    is accepted for ``KEY``, as the validation run names it).
    """
    if "KEY" not in issues.columns and "instanceID" in issues.columns:
        issues = issues.rename(columns={"instanceID": "KEY"})
    missing = [c for c in ISSUE_INPUT if c not in issues.columns]
    if missing:
        raise ValueError(f"issues table lacks column(s) {missing}")
    lookup = []
    for form, table in tables.items():
        lookup.append(pd.DataFrame({"form": form, "KEY": table["KEY"].astype("string"),
                                    "enum_id": _enumerator(table),
                                    "date": interview_day(table, config)}))
    who = (pd.concat(lookup, ignore_index=True).drop_duplicates(["form", "KEY"])
           if lookup else pd.DataFrame(columns=["form", "KEY", "enum_id", "date"]))
    base = issues[ISSUE_INPUT].copy()
    for column in ISSUE_INPUT:
        base[column] = base[column].map(lambda v: None if v is None or v is pd.NA or (
            isinstance(v, float) and np.isnan(v)) else str(v)).astype("string")
    who = who.astype({"form": "string", "KEY": "string"})
    out = base.merge(who, on=["form", "KEY"], how="left")
    out = out.sort_values(["severity", "form", "rule", "column", "KEY"], kind="stable")
    return _frame(out, ["form", "KEY", "enum_id", "date", "severity", "rule", "column", "value",
                        "message"], {"enum_id": "Int64", "date": "datetime64[ns]"})


def issues_summary(listing: pd.DataFrame) -> pd.DataFrame:
    """Issue counts per form, rule, column and severity (what to fix first)."""
    columns = ["form", "severity", "rule", "column", "issues", "submissions"]
    if listing.empty:
        return _frame([], columns, {"issues": "int64", "submissions": "int64"})
    keys = ["form", "severity", "rule", "column"]
    out = listing.fillna({"column": ""}).groupby(keys, dropna=False).agg(
        issues=("KEY", "size"), submissions=("KEY", "nunique")).reset_index()
    out = out.sort_values(["issues", *keys], ascending=[False, True, True, True, True])
    return _frame(out, columns, {"issues": "int64", "submissions": "int64"})


def other_parent(model: FormModel, item: Item) -> str | None:
    """The select question whose "other" answer opens ``item`` (from its relevance)."""
    selects = [r for r in references(item.relevant) if r in model
               and (model[r].is_select_one or model[r].is_select_multiple)] if item.relevant else []
    if selects:
        return selects[0]
    stem = re.sub(r"_(oth|other|specify)$", "", item.name)
    return stem if stem != item.name and stem in model else None


def other_specify(table: pd.DataFrame, model: FormModel,
                  config: CountryConfig | None = None) -> pd.DataFrame:
    """Every non-empty free-text answer next to the select answer that opened it."""
    columns = ["form", "KEY", "enum_id", "date", "field", "parent", "parent_value", "text"]
    enum, day = _enumerator(table), interview_day(table, config)
    parts = []
    for item in model.by_pii("free_text"):
        if item.repeat is not None or item.name not in table:
            continue
        text = table[item.name].astype("string")
        hit = _present(text).to_numpy()
        if not hit.any():
            continue
        parent = other_parent(model, item)
        parent_value = (table[parent].astype("string").to_numpy()[hit] if parent in table
                        else pd.NA)
        parts.append(pd.DataFrame({
            "form": model.form_id, "KEY": table["KEY"].to_numpy()[hit],
            "enum_id": enum.to_numpy()[hit], "date": day.to_numpy()[hit], "field": item.name,
            "parent": parent, "parent_value": parent_value,
            "text": text.str.strip().to_numpy()[hit]}))
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    return _frame(out, columns, {"form": "string", "KEY": "string", "enum_id": "Int64",
                                 "date": "datetime64[ns]", "field": "string",
                                 "parent": "string", "parent_value": "string",
                                 "text": "string"})


def survey_dashboard(table: pd.DataFrame, form: str,
                     config: CountryConfig | None = None, *,
                     models: Models | StudyFacts | None = None) -> pd.DataFrame:
    """Per day: submissions, cumulative, consent rate, completed interviews, median duration.

    ``models``: the study's forms, for the consent gates of ``form`` (default: its
    instruments)."""
    asked, done = _consent(table, _gates(form, models))
    minutes = duration_minutes(table).where(done)
    frame = pd.DataFrame({"date": interview_day(table, config), "asked": asked, "done": done,
                          "minutes": minutes})
    out = frame.groupby("date", dropna=False).agg(
        submissions=("done", "size"), asked=("asked", "sum"), completed=("done", "sum"),
        median_duration=("minutes", "median")).reset_index()
    out["form"] = form
    out["cumulative"] = out["submissions"].cumsum()
    out["cumulative_completed"] = out["completed"].cumsum()
    out["consent_rate"] = _rate(out["completed"], out["asked"])
    return _frame(out, ["form", "date", "submissions", "cumulative", "completed",
                        "cumulative_completed", "consent_rate", "median_duration"],
                  {"form": "string", "submissions": "int64", "cumulative": "int64",
                   "completed": "int64", "cumulative_completed": "int64",
                   "consent_rate": "float64", "median_duration": "float64"})


def code_counts(table: pd.DataFrame, model: FormModel,
                relevant: Mapping[str, pd.Series] | None) -> pd.DataFrame:
    """Per row: answers that could be DK/refused/other, and how many were; asked vs missing
    (what the enumerator dashboard and the DK/refusal check both count)."""
    n = len(table)
    out = {k: np.zeros(n, dtype="int64") for k in
           ("dk_base", "dk", "refusal_base", "refused", "other_base", "other", "asked",
            "missing")}
    for item in _root_questions(model, table):
        values = table[item.name]
        answered = _present(values).to_numpy()
        mask = (relevant or {}).get(item.name)
        asked = np.ones(n, dtype=bool) if mask is None else mask.reindex(
            table.index).fillna(False).to_numpy(dtype=bool)
        out["asked"] += asked
        out["missing"] += asked & ~answered
        if not (item.is_select_one or item.is_select_multiple):
            continue
        for code, base, hit in ((DONT_KNOW, "dk_base", "dk"), (REFUSED, "refusal_base",
                                                               "refused"),
                                (OTHER, "other_base", "other")):
            if _offers(model, item, code):
                out[base] += answered
                out[hit] += answered & _has_code(values, item, code).to_numpy()
    return pd.DataFrame(out, index=table.index)


def dk_refusal(table: pd.DataFrame, model: FormModel,
               relevant: Mapping[str, pd.Series] | None = None, *,
               counts: pd.DataFrame | None = None) -> pd.DataFrame:
    """Don't-know (98) and refusal (99) rates by enumerator, against the form's own rate.

    Denominators are answers to questions that offer the code. ``*_z`` is the enumerator's
    deviation from the form rate in binomial standard errors: |z| > 3 deserves a call.
    ``counts``: :func:`code_counts` of the same arguments, when the caller has it already.
    """
    counts = (code_counts(table, model, relevant) if counts is None else counts).assign(
        enum_id=_enumerator(table))
    out = counts.groupby("enum_id", dropna=False).agg(
        submissions=("dk", "size"), dk_base=("dk_base", "sum"), dk=("dk", "sum"),
        refusal_base=("refusal_base", "sum"), refused=("refused", "sum")).reset_index()
    out["form"] = model.form_id
    for hit, base, name in (("dk", "dk_base", "dk"), ("refused", "refusal_base", "refusal")):
        p = _rate(counts[hit].sum(), counts[base].sum())
        rate = _rate(out[hit], out[base])
        out[f"{name}_rate"] = rate
        se = np.sqrt(p * (1 - p) / out[base].where(out[base] > 0)) if 0 < p < 1 else np.nan
        out[f"{name}_z"] = ((rate - p) / se).astype("float64")
    return _frame(out, ["form", "enum_id", "submissions", "dk_base", "dk", "dk_rate", "dk_z",
                        "refusal_base", "refused", "refusal_rate", "refusal_z"],
                  {"form": "string", "enum_id": "Int64", "submissions": "int64",
                   "dk_base": "int64", "dk": "int64", "dk_rate": "float64",
                   "dk_z": "float64", "refusal_base": "int64", "refused": "int64",
                   "refusal_rate": "float64", "refusal_z": "float64"})


def enumerator_dashboard(table: pd.DataFrame, model: FormModel,
                         relevant: Mapping[str, pd.Series] | None = None,
                         config: CountryConfig | None = None,
                         issues: pd.DataFrame | None = None, *,
                         counts: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per enumerator: team, submissions, quarantined submissions, consent rate, median
    duration, speeders, DK/refusal/missing/other rates, first and last day, and the rules
    that quarantined their submissions (ipacheck's enumerator dashboard).

    ``team``: from ``config.teams`` (NA for an enumerator in no team). ``issues``: the
    :func:`issues_listing`; without it ``quarantined`` and ``quarantine_reasons`` are NA.
    ``counts``: :func:`code_counts` of the same table, model and relevance, if at hand."""
    counts = code_counts(table, model, relevant) if counts is None else counts
    asked, done = _consent(table, model.consent_given)
    speeders, _ = speeder_mask(table, gates=model.consent_given)
    counts = counts.assign(enum_id=_enumerator(table), consent_asked=asked, done=done,
                           minutes=duration_minutes(table).where(done), speeder=speeders,
                           date=interview_day(table, config))
    out = counts.groupby("enum_id", dropna=False).agg(
        submissions=("done", "size"), consent_asked=("consent_asked", "sum"),
        completed=("done", "sum"), median_duration=("minutes", "median"),
        speeders=("speeder", "sum"), first_day=("date", "min"), last_day=("date", "max"),
        **{k: (k, "sum") for k in ("dk_base", "dk", "refusal_base", "refused", "other_base",
                                   "other", "asked", "missing")}).reset_index()
    out["form"] = model.form_id
    out["consent_rate"] = _rate(out["completed"], out["consent_asked"])
    out["dk_rate"] = _rate(out["dk"], out["dk_base"])
    out["refusal_rate"] = _rate(out["refused"], out["refusal_base"])
    out["other_rate"] = _rate(out["other"], out["other_base"])
    out["missing_rate"] = _rate(out["missing"], out["asked"])
    out["team"] = _team_of(out["enum_id"], config)
    if issues is not None:
        held = quarantined_by_enumerator(issues, model.form_id)
        # Joined on the ID as text: a missing enumerator ID is a row of its own on each side.
        key = held["enum_id"].astype("string").fillna("")
        mine = out["enum_id"].astype("string").fillna("")
        for column in ("quarantined", "quarantine_reasons"):
            out[column] = mine.map(dict(zip(key, held[column], strict=True))).to_numpy()
        out["quarantined"] = out["quarantined"].fillna(0)
    return _frame(out, ["form", "enum_id", "team", "submissions", "quarantined", "completed",
                        "consent_rate", "median_duration", "speeders", "dk_rate",
                        "refusal_rate", "missing_rate", "other_rate", "first_day", "last_day",
                        "quarantine_reasons"],
                  {"form": "string", "enum_id": "Int64", "team": "Int64",
                   "submissions": "int64", "quarantined": "Int64", "completed": "int64",
                   "speeders": "int64", "consent_rate": "float64",
                   "median_duration": "float64", "dk_rate": "float64",
                   "refusal_rate": "float64", "missing_rate": "float64",
                   "other_rate": "float64", "quarantine_reasons": "string"})


def stratum(table: pd.DataFrame) -> pd.Series:
    """Stratum code ``f"{region}{urban_rural}"`` (NA where either is missing)."""
    region = _codes(table["region"]).astype("Int64").astype("string")
    ur = _codes(table["urban_rural"]).astype("Int64").astype("string")
    return (region + ur).rename("stratum")


def _disposition(table: pd.DataFrame, facts: StudyFacts) -> pd.Series:
    """The household's final disposition code as text ("1"), NA where none."""
    if facts.disposition not in table:
        return pd.Series(pd.NA, index=table.index, dtype="string")
    codes = _codes(table[facts.disposition])
    return codes.map(lambda v: pd.NA if pd.isna(v) else str(int(v)) if float(v).is_integer()
                     else str(v)).astype("string")


def _fill_teams(per: pd.DataFrame, households: pd.DataFrame, config: CountryConfig | None,
                design: pd.DataFrame | None) -> pd.Series:
    """The team of each PSU of ``per`` (indexed by cluster): the design's, else the country
    file's (:func:`psu_teams`, with the design's regions where it has them)."""
    given = (pd.to_numeric(per["team"], errors="coerce").astype("Int64") if "team" in per
             else pd.Series(pd.NA, index=per.index, dtype="Int64"))
    if not given.isna().any():
        return given
    regions = None
    if design is not None and {"cluster", "region"} <= set(design.columns):
        regions = (pd.DataFrame({"cluster": _codes(design["cluster"]).astype("Int64"),
                                 "region": _codes(design["region"]).astype("Int64")})
                   .dropna().groupby("cluster")["region"].first())
    derived = psu_teams(households, config, regions)
    return given.fillna(derived.reindex(per.index))


def progress_psu(households: pd.DataFrame, *, config: CountryConfig | None = None,
                 design: pd.DataFrame | None = None,
                 children: pd.DataFrame | None = None,
                 models: Models | StudyFacts | None = None) -> pd.DataFrame:
    """Households done per PSU against the PSU's target, and the share done.

    The target is the design's count of sampled households in the cluster (a households
    table with the household ID, or a PSU table with ``households``), else
    ``config.households_per_psu``. The team is the design's, else the country file's
    (:func:`psu_teams`: by region, else by who visited the PSU's households). "Done" =
    households with a final disposition (one per household); "interviewed" = roster taken
    (AAPOR complete or partial); refusals and non-contacts by their AAPOR category.
    ``models``: the study's forms (default: its instruments).
    """
    facts = study_facts(models)
    household_id = list(facts.household_id)
    columns = ["cluster", "stratum", "team", "target", "done", "share_done", "interviewed",
               "refusals", "non_contacts", "children_interviewed"]
    hh = aapor.latest(households, household_id)
    disp = _disposition(hh, facts)
    done = pd.DataFrame({
        "cluster": _codes(hh["cluster"]).astype("Int64"),
        "stratum": stratum(hh) if {"region", "urban_rural"} <= set(hh.columns) else pd.NA,
        "done": disp.notna(), "interviewed": disp.isin(facts.codes("I", "P")),
        "refusals": disp.isin(facts.codes("R")), "non_contacts": disp.isin(facts.codes("NC"))})
    per = done.groupby("cluster").agg(
        stratum=("stratum", "first"), done=("done", "sum"), interviewed=("interviewed", "sum"),
        refusals=("refusals", "sum"), non_contacts=("non_contacts", "sum"))
    if design is not None and "cluster" in design:
        d = design.assign(cluster=_codes(design["cluster"]).astype("Int64"))
        if set(household_id) <= set(d.columns):
            target = d.groupby("cluster").size().rename("target")
        elif "households" in d:
            target = d.groupby("cluster")["households"].sum().rename("target")
        else:
            target = pd.Series(config.households_per_psu if config else pd.NA,
                               index=d["cluster"].unique(), name="target")
        extra = pd.DataFrame(index=target.index)
        for column in ("stratum", "team"):
            if column in d:
                extra[column] = d.groupby("cluster")[column].first()
        if "stratum" in extra:
            extra["stratum"] = extra["stratum"].astype("string")
        per = pd.concat([target, extra], axis=1).join(per, how="outer", rsuffix="_data")
        if "stratum_data" in per:
            per["stratum"] = per["stratum"].fillna(per.pop("stratum_data"))
    else:
        per["target"] = config.households_per_psu if config else pd.NA
    per["team"] = _fill_teams(per, hh, config, design)
    if children is not None and set(household_id) <= set(children.columns):
        ch = aapor.latest(children, household_id)
        _, ok = _consent(ch, facts.gates(aapor.CHILD_FORM))
        per["children_interviewed"] = (ok.groupby(_codes(ch["cluster"]).astype("Int64"))
                                       .sum().reindex(per.index))
    per.index.name = "cluster"
    out = per.reset_index()
    for column in ("done", "interviewed", "refusals", "non_contacts"):
        out[column] = out[column].fillna(0)
    out["target"] = pd.to_numeric(out["target"], errors="coerce")
    out["share_done"] = _rate(out["done"], out["target"])
    return _frame(out.sort_values("cluster"), columns,
                  {"cluster": "Int64", "stratum": "string", "team": "Int64", "target": "Int64",
                   "done": "int64", "share_done": "float64", "interviewed": "int64",
                   "refusals": "int64", "non_contacts": "int64",
                   "children_interviewed": "Int64"})


def progress_country(tables: Mapping[str, pd.DataFrame], config: CountryConfig, *,
                     models: Models | StudyFacts | None = None) -> pd.DataFrame:
    """Each of ``config.targets`` against what is achieved so far.

    Households count when visited to a final disposition (the target is the sample size);
    interviews (children, caregivers, frontline workers) count when every consent gate was
    passed. One record per unit (the last submission of a household, for the forms of a
    household). ``models``: the study's forms (default: its instruments).
    """
    facts = study_facts(models)
    rows = []
    for key, target in sorted(config.targets.items()):
        form = TARGET_FORMS.get(key, key)
        table = tables.get(form)
        achieved: float = float("nan")
        if table is not None:
            model = facts.model(form)
            unit = aapor.latest(table, list(model.household_id if model and model.household_id
                                            else ["KEY"]))
            if form == facts.household_form:
                achieved = float(_present(unit[facts.disposition]).sum()
                                 if facts.disposition in unit else len(unit))
            else:
                achieved = float(_consent(unit, facts.gates(form))[1].sum())
        rows.append({"country": config.iso, "target_name": key, "form": form,
                     "target": target, "achieved": achieved,
                     "share": _rate(achieved, target) if table is not None else np.nan})
    return _frame(rows, ["country", "target_name", "form", "target", "achieved", "share"],
                  {"country": "string", "target_name": "string", "form": "string",
                   "target": "int64", "achieved": "Int64", "share": "float64"})


def durations(table: pd.DataFrame, form: str, *,
              models: Models | StudyFacts | None = None) -> pd.DataFrame:
    """Interview length distribution among completed interviews and the speeder threshold."""
    gates = _gates(form, models)
    done = completed(table, gates)
    minutes = duration_minutes(table)[done].dropna()
    speeders, threshold = speeder_mask(table, gates=gates)
    q = minutes.quantile([0.1, 0.25, 0.5, 0.75, 0.9]) if len(minutes) else pd.Series(
        np.nan, index=[0.1, 0.25, 0.5, 0.75, 0.9])
    row = {"form": form, "interviews": len(minutes),
           "min": minutes.min() if len(minutes) else np.nan, "p10": q[0.1], "p25": q[0.25],
           "median": q[0.5], "p75": q[0.75], "p90": q[0.9],
           "max": minutes.max() if len(minutes) else np.nan,
           "speeder_threshold": threshold, "speeders": int(speeders.sum())}
    return _frame([row], list(row), {"form": "string", "interviews": "int64",
                                     "speeders": "int64", **{k: "float64" for k in (
                                         "min", "p10", "p25", "median", "p75", "p90", "max",
                                         "speeder_threshold")}})


def speeders(table: pd.DataFrame, form: str,
             config: CountryConfig | None = None, *,
             models: Models | StudyFacts | None = None) -> pd.DataFrame:
    """Completed interviews shorter than :func:`timing.speeder_mask`'s threshold."""
    mask, threshold = speeder_mask(table, gates=_gates(form, models))
    hit = mask.to_numpy(dtype=bool)
    out = pd.DataFrame({"form": form, "KEY": table["KEY"].to_numpy()[hit],
                        "enum_id": _enumerator(table).to_numpy()[hit],
                        "date": interview_day(table, config).to_numpy()[hit],
                        "minutes": duration_minutes(table).to_numpy()[hit],
                        "threshold": threshold})
    return _frame(out.sort_values(["minutes", "KEY"]),
                  ["form", "KEY", "enum_id", "date", "minutes", "threshold"],
                  {"form": "string", "KEY": "string", "enum_id": "Int64",
                   "date": "datetime64[ns]", "minutes": "float64", "threshold": "float64"})


def grids(model: FormModel) -> dict[str, list[str]]:
    """Grids: field-list groups whose select_one questions (≥ 4) all share one choice list."""
    out = {}
    for group in model.groups:
        if "field-list" not in group.appearance or group.repeat is not None:
            continue
        items = [i for i in model.items if i.path and i.path[-1] == group.name
                 and i.is_select_one]
        if len(items) >= GRID_MIN_ITEMS and len({i.list_name for i in items}) == 1:
            out[group.name] = [i.name for i in items]
    return out


def _all_equal(values: pd.DataFrame, full: np.ndarray) -> pd.Series:
    """Whether each row's values are all equal (``full``: rows without a missing value, the
    only ones compared). Elementwise Python equality, as the distinct count of a row has it."""
    out = np.zeros(len(values), dtype=bool)
    rows = values.to_numpy(dtype=object)[full]
    out[full] = (rows == rows[:, :1]).all(axis=1) if rows.size else True
    return pd.Series(out, index=values.index)


def straightlining(table: pd.DataFrame, model: FormModel
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(share of grid answers all identical, by enumerator; the interviews that did so).

    Only interviews that answered every item of a grid count; identical answers to 4+
    statements are rare in honest interviews and common when an enumerator fills in a grid.
    """
    summary_cols = ["form", "grid", "items", "enum_id", "interviews", "straightlined", "share",
                    "grid_share"]
    case_cols = ["form", "grid", "KEY", "enum_id", "value"]
    enum = _enumerator(table)
    summaries, cases = [], []
    for grid, items in grids(model).items():
        if not set(items) <= set(table.columns):
            continue
        values = table[items].apply(_codes)
        full = values.notna().all(axis=1)
        same = full & _all_equal(values, full.to_numpy())
        frame = pd.DataFrame({"enum_id": enum, "full": full, "same": same})
        per = frame[full].groupby("enum_id", dropna=False).agg(interviews=("full", "size"),
                                                 straightlined=("same", "sum")).reset_index()
        per["form"], per["grid"], per["items"] = model.form_id, grid, len(items)
        per["share"] = _rate(per["straightlined"], per["interviews"])
        per["grid_share"] = _rate(same.sum(), full.sum())
        summaries.append(per)
        hit = same.to_numpy()
        cases.append(pd.DataFrame({"form": model.form_id, "grid": grid,
                                   "KEY": table["KEY"].to_numpy()[hit],
                                   "enum_id": enum.to_numpy()[hit],
                                   "value": values.iloc[:, 0].to_numpy()[hit]}))
    s = pd.concat(summaries, ignore_index=True) if summaries else pd.DataFrame()
    c = pd.concat(cases, ignore_index=True) if cases else pd.DataFrame()
    return (_frame(s, summary_cols, {"form": "string", "grid": "string", "items": "int64",
                                     "enum_id": "Int64", "interviews": "int64",
                                     "straightlined": "int64", "share": "float64",
                                     "grid_share": "float64"}),
            _frame(c, case_cols, {"form": "string", "grid": "string", "KEY": "string",
                                  "enum_id": "Int64", "value": "float64"}))


def aapor_table(households: pd.DataFrame, *, country: str = "",
                children: pd.DataFrame | None = None,
                models: Models | StudyFacts | None = None) -> pd.DataFrame:
    """AAPOR rates for the country and each stratum (household level, and child level when
    the child table is given); one record per household (the last submission).
    ``models``: the study's forms (default: its instruments)."""
    facts = study_facts(models)
    hh = aapor.latest(households, list(facts.household_id))
    by = stratum(hh) if {"region", "urban_rural"} <= set(hh.columns) else None
    parts = [aapor.rates(hh[facts.disposition], by=by, models=facts)
             .assign(interview="household")]
    child_gates = facts.gates(aapor.CHILD_FORM)
    if children is not None and child_gates and set(child_gates) <= set(children.columns):
        parts.append(aapor.child_rates(hh, children, by=by, models=facts)
                     .assign(interview="child"))
    out = pd.concat(parts, ignore_index=True)
    group = "stratum" if "stratum" in out else "group"
    out = out.rename(columns={group: "stratum"})
    out["level"] = np.where(out["stratum"] == aapor.ALL, "country", "stratum")
    out["country"] = country
    lead = ["country", "interview", "level", "stratum"]
    out = out[lead + [c for c in out.columns if c not in lead]]
    return out.astype({"country": "string", "interview": "string", "level": "string",
                       "stratum": "string"}).reset_index(drop=True)


def referrals(children: pd.DataFrame, *,
              models: Models | StudyFacts | None = None) -> pd.DataFrame:
    """Distress-protocol referrals among child interviews: overall, by enumerator, by distress
    code at each checkpoint. Every referral offered is a follow-up the team owes the child."""
    columns = ["dimension", "value", "interviews", "referrals", "share"]
    _, done = _consent(children, _gates(aapor.CHILD_FORM, models))
    flag = _codes(children["referral_flag"]).eq(1).fillna(False) if "referral_flag" in \
        children else pd.Series(False, index=children.index)
    frame = pd.DataFrame({"all": "all", "enum_id": _enumerator(children),
                          "interview": done, "referral": flag & done})
    dimensions = ["all", "enum_id"]
    for checkpoint in ("distress_1", "distress_2"):
        if checkpoint in children:
            frame[checkpoint] = _codes(children[checkpoint]).astype("Int64")
            dimensions.append(checkpoint)
    frame = frame[frame["interview"]]
    rows = []
    for dim in dimensions:
        per = frame.groupby(dim, dropna=False).agg(interviews=("interview", "size"),
                                     referrals=("referral", "sum")).reset_index()
        per = per.rename(columns={dim: "value"}).assign(dimension=dim)
        per["value"] = per["value"].astype("string")
        rows.append(per)
    out = pd.concat(rows, ignore_index=True)
    out["share"] = _rate(out["referrals"], out["interviews"])
    return _frame(out, columns, {"dimension": "string", "value": "string",
                                 "interviews": "int64", "referrals": "int64",
                                 "share": "float64"})


# -- entry points ------------------------------------------------------------------------------


#: Order of the checks (and of the report's sections): progress first, then what to act on.
_ORDER = ["progress_country", "progress_psu", "survey_dashboard", "enumerator_dashboard",
          "aapor", "form_versions", "duplicate_ids", "duplicate_units", "durations",
          "speeders", "issues_summary", "issues", "missingness", "outliers", "other_specify",
          "straightlining", "straightlining_cases", "dk_refusal", "referrals", "skipped"]


def run_checks(tables: Mapping[str, pd.DataFrame], models: Mapping[str, FormModel], *,
               config: CountryConfig | None = None, issues: pd.DataFrame | None = None,
               design: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """Every high-frequency check for one country, by table name.

    ``tables`` are typed root tables of all submissions per form id. A check whose forms (or
    inputs: ``issues``, ``config``) are absent is listed in the ``skipped`` table with why,
    rather than failing the day's run.
    """
    forms = [f for f in tables if f in models]
    facts = study_facts(models)
    skipped: list[dict] = [{"check": "all", "form": f, "reason": "no form model"}
                           for f in tables if f not in models]
    masks = {f: relevance_masks(tables[f], models[f]) for f in forms}

    def per_form(fn: Callable[[str], pd.DataFrame]) -> pd.DataFrame:
        parts = [fn(f) for f in forms]
        parts = [p for p in parts if len(p)] or parts[:1]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()

    checks: dict[str, pd.DataFrame] = {}
    checks["form_versions"] = per_form(lambda f: form_versions(tables[f], models[f], config))
    checks["duplicate_ids"] = per_form(lambda f: duplicate_ids(tables[f], f))
    checks["duplicate_units"] = per_form(
        lambda f: duplicate_units(tables[f], f, list(models[f].household_id), config))
    checks["missingness"] = per_form(lambda f: missingness(tables[f], models[f], masks[f]))
    checks["outliers"] = per_form(lambda f: outliers(
        tables[f], numeric_fields(models[f], tables[f]), form=f))
    if issues is not None:
        checks["issues"] = issues_listing(issues, {f: tables[f] for f in forms}, config)
        checks["issues_summary"] = issues_summary(checks["issues"])
    else:
        skipped.append({"check": "issues", "form": "", "reason": "no issues table passed"})
    checks["other_specify"] = per_form(lambda f: other_specify(tables[f], models[f], config))
    checks["survey_dashboard"] = per_form(lambda f: survey_dashboard(tables[f], f, config,
                                                                     models=facts))
    counts = {f: code_counts(tables[f], models[f], masks[f]) for f in forms}
    checks["enumerator_dashboard"] = per_form(
        lambda f: enumerator_dashboard(tables[f], models[f], masks[f], config,
                                       checks.get("issues"), counts=counts[f]))
    checks["dk_refusal"] = per_form(lambda f: dk_refusal(tables[f], models[f], masks[f],
                                                         counts=counts[f]))
    checks["durations"] = per_form(lambda f: durations(tables[f], f, models=facts))
    checks["speeders"] = per_form(lambda f: speeders(tables[f], f, config, models=facts))
    lines = {f: straightlining(tables[f], models[f]) for f in forms}
    checks["straightlining"] = per_form(lambda f: lines[f][0])
    checks["straightlining_cases"] = per_form(lambda f: lines[f][1])

    household = tables.get(facts.household_form or "")
    child = tables.get(aapor.CHILD_FORM)
    if household is not None:
        checks["progress_psu"] = progress_psu(household, config=config, design=design,
                                              children=child, models=facts)
        checks["aapor"] = aapor_table(household, country=config.iso if config else "",
                                      children=child, models=facts)
        if child is None:
            skipped.append({"check": "aapor", "form": aapor.CHILD_FORM,
                            "reason": "child form absent: household-level rates only"})
    else:
        for name in ("progress_psu", "aapor"):
            skipped.append({"check": name, "form": facts.household_form or "household",
                            "reason": "form absent"})
    if config is not None:
        checks["progress_country"] = progress_country(tables, config, models=facts)
    else:
        skipped.append({"check": "progress_country", "form": "",
                        "reason": "no country configuration (targets)"})
    if child is not None and aapor.CHILD_FORM in models:
        checks["referrals"] = referrals(child, models=facts)
    else:
        skipped.append({"check": "referrals", "form": aapor.CHILD_FORM,
                        "reason": "form absent"})
    for f in forms:
        if not grids(models[f]):
            skipped.append({"check": "straightlining", "form": f, "reason": "no grid"})
    checks["skipped"] = _frame(skipped, ["check", "form", "reason"],
                               {"check": "string", "form": "string", "reason": "string"})
    return {name: checks[name] for name in sorted(checks, key=_ORDER.index)}


def _arrow_safe(table: pd.DataFrame) -> pd.DataFrame:
    """Object columns as strings: Parquet needs one type per column."""
    out = table.reset_index(drop=True).copy()
    for column in out.columns:
        if out[column].dtype == object:
            out[column] = out[column].map(
                lambda v: None if v is None or v is pd.NA or (isinstance(v, float) and
                                                              np.isnan(v)) else str(v)
            ).astype("string")
    out.columns = [str(c) for c in out.columns]
    return out


def write_checks(checks: Mapping[str, pd.DataFrame], folder: str | Path) -> list[Path]:
    """Each check as ``<name>.parquet``, atomically (same checks → same bytes; encrypted at
    rest in the clean zone: :func:`~dhsurvey.io.atomic_write_parquet`)."""
    folder = Path(folder)
    return [atomic_write_parquet(folder / f"{name}.parquet", _arrow_safe(checks[name]),
                                 engine="pyarrow", compression="zstd")
            for name in sorted(checks)]
