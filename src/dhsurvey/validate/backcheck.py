"""Back-checks: a short re-interview of a random subset, compared with the original answers.

In the spirit of IPA's ``ipabcstats``. Each back-checked variable has a type that says what a
difference means and who acts on it:

- type 1 — should never change (household size, a child's age): a difference points at the
  enumerator (fabrication, wrong household) → enumerator follow-up;
- type 2 — hard to administer (skip-heavy or sensitive questions): differences show where
  enumerators need retraining;
- type 3 — stability of answers over a few days: informs data quality, not individuals.

Numbers are compared with an absolute tolerance per variable (``|bc − original| ≤ tol`` agrees);
text is compared trimmed and case-insensitive. A missing answer on one side only is a
difference unless ``exclude_missing`` drops such pairs.

A country's back-checks arrive like its fieldwork, as exports in ``landing/<ISO>/backcheck/``
(never read as fieldwork); :func:`country_backcheck` compares them with the raw interviews and
writes per-enumerator error rates, with their teams, to ``clean/<ISO>/backcheck/``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from dhsurvey.errors import DhsurveyError
from dhsurvey.fieldwork.config import TYPES, CountryConfig, Plan
from dhsurvey.forms.model import FormModel
from dhsurvey.io import atomic_write_parquet
from dhsurvey.store import Store

ALL = "all"


class BackcheckError(DhsurveyError, ValueError):
    """Tables or arguments a back-check cannot be run on (still a ``ValueError``)."""

    code = "backcheck"


def _key(values: pd.Series) -> pd.Series:
    """Id values as comparable text: 7, 7.0 and "7 " all match."""
    numbers = pd.to_numeric(values, errors="coerce")
    text = values.astype("string").str.strip()
    whole = numbers.notna() & (numbers % 1 == 0)
    out = text.copy()
    out[whole] = numbers[whole].astype("int64").astype("string")
    return out


def _is_numeric(*columns: pd.Series) -> bool:
    for column in columns:
        if pd.api.types.is_bool_dtype(column):
            return False
        if pd.api.types.is_numeric_dtype(column):
            continue
        present = column.dropna()
        present = present[present.astype(str).str.strip() != ""]
        if pd.to_numeric(present, errors="coerce").isna().any():
            return False
    return True


def _present(values: pd.Series) -> pd.Series:
    return (values.notna() & (values.astype("string").str.strip().fillna("") != "")).astype(
        bool)


def _rates(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Compared pairs, differences, errors and the error rate per group (and per type)."""
    def agg(data: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
        if keys:
            out = data.groupby(keys, dropna=False).agg(
                compared=("error", "size"), differences=("differs", "sum"),
                errors=("error", "sum")).reset_index()
        else:
            out = pd.DataFrame({"compared": [len(data)], "differences": [
                int(data["differs"].sum())], "errors": [int(data["error"].sum())]})
        return out

    total = agg(frame, by).assign(type=ALL)
    per_type = agg(frame, [*by, "type"])
    per_type["type"] = per_type["type"].astype(str)
    out = pd.concat([total, per_type], ignore_index=True)
    out["error_rate"] = out["errors"] / out["compared"].where(out["compared"] > 0)
    out = out.sort_values([*by, "type"], kind="stable").reset_index(drop=True)
    return out[[*by, "type", "compared", "differences", "errors", "error_rate"]].astype(
        {"type": "string", "compared": "int64", "differences": "int64", "errors": "int64",
         "error_rate": "float64"})


def compare(original: pd.DataFrame, backcheck: pd.DataFrame, *, id_columns: list[str],
            variables: Mapping[str, int], tolerances: Mapping[str, float] | None = None,
            enumerator: str = "enum_id", team: str | None = None,
            backchecker: str | None = None, exclude_missing: bool = False
            ) -> dict[str, pd.DataFrame]:
    """Compare back-check answers with the original interview, ipabcstats-style.

    Returns ``comparison`` (one row per id × variable: original, backcheck, differs,
    within_tolerance, error), error rates ``by_variable``, ``by_type``, ``by_enumerator`` (and
    ``by_team`` / ``by_backchecker`` when those columns are named), and ``unmatched``: back-check
    ids with no original interview. Enumerator and team come from the original interview (the
    person whose work is checked); the back-checker from the back-check.
    """
    tolerances = dict(tolerances or {})
    bad_types = {v: t for v, t in variables.items() if t not in TYPES}
    if bad_types:
        raise BackcheckError(f"variable types must be 1, 2 or 3: {bad_types}",
                             code="backcheck-types")
    for name, frame, extra in (("original", original, [enumerator] + ([team] if team else [])),
                               ("backcheck", backcheck,
                                [backchecker] if backchecker else [])):
        missing = [c for c in [*id_columns, *variables, *extra] if c not in frame.columns]
        if missing:
            raise BackcheckError(f"{name} lacks column(s) {missing}", code="backcheck-columns",
                                 table=name)
        dup = frame.duplicated(id_columns, keep=False)
        if dup.any():
            ids = frame.loc[dup, id_columns].drop_duplicates().head(5).to_dict("records")
            raise BackcheckError(f"{name} has duplicate ids (first: {ids}); keep one record per "
                                 "id", code="backcheck-duplicate-ids", table=name)

    keys = [f"_id{i}" for i in range(len(id_columns))]
    left = original.assign(**{k: _key(original[c]) for k, c in zip(keys, id_columns,
                                                                    strict=True)})
    right = backcheck.assign(**{k: _key(backcheck[c]) for k, c in zip(keys, id_columns,
                                                                      strict=True)})
    people = [enumerator] + ([team] if team else [])
    merged = left[list(dict.fromkeys([*keys, *id_columns, *people, *variables]))].merge(
        right[[*keys, *variables] + ([backchecker] if backchecker else [])],
        on=keys, how="inner", suffixes=("", "_bc"))
    matched = right[keys].merge(left[keys], on=keys, how="left", indicator=True)["_merge"]
    unmatched = backcheck.loc[(matched == "left_only").to_numpy(), id_columns].reset_index(
        drop=True)

    parts = []
    for variable, vtype in variables.items():
        o_raw, b_raw = merged[variable], merged[f"{variable}_bc"]
        o_has, b_has = _present(o_raw), _present(b_raw)
        both_missing = ~o_has & ~b_has
        one_missing = o_has ^ b_has
        if _is_numeric(original[variable], backcheck[variable]):
            o = pd.to_numeric(o_raw, errors="coerce").astype("float64")
            b = pd.to_numeric(b_raw, errors="coerce").astype("float64")
            difference = b - o
            tol = float(tolerances.get(variable, 0.0))
            within = (difference.abs() <= tol + 1e-12).fillna(False)
            differs = (difference != 0).fillna(False)
        else:
            o_text = o_raw.astype("string").str.strip().str.casefold()
            b_text = b_raw.astype("string").str.strip().str.casefold()
            difference = pd.Series(np.nan, index=merged.index)
            differs = (o_text != b_text).fillna(False).astype(bool)
            within = ~differs
        differs = (differs | one_missing) & ~both_missing
        within = (within | both_missing) & ~one_missing
        part = merged[[*id_columns, *people] + ([backchecker] if backchecker else [])].copy()
        part["variable"], part["type"] = variable, vtype
        part["original"] = o_raw.astype("string").to_numpy()
        part["backcheck"] = b_raw.astype("string").to_numpy()
        part["difference"] = difference.to_numpy()
        part["differs"] = differs.to_numpy(dtype=bool)
        part["within_tolerance"] = within.to_numpy(dtype=bool)
        part["error"] = ~part["within_tolerance"]
        if exclude_missing:
            part = part[(o_has & b_has).to_numpy()]
        parts.append(part)
    comparison = pd.concat(parts, ignore_index=True)
    comparison["type"] = comparison["type"].astype("int64")

    by_variable = comparison.groupby(["variable", "type"], sort=False).agg(
        compared=("error", "size"), differences=("differs", "sum"),
        errors=("error", "sum")).reset_index()
    by_variable["error_rate"] = by_variable["errors"] / by_variable["compared"].where(
        by_variable["compared"] > 0)
    by_variable["action"] = by_variable["type"].map(TYPES)
    by_type = _rates(comparison, [])
    by_type["action"] = by_type["type"].map({str(k): v for k, v in TYPES.items()}).fillna("")
    out = {"comparison": comparison, "by_variable": by_variable, "by_type": by_type,
           "by_enumerator": _rates(comparison, [enumerator])}
    if team:
        out["by_team"] = _rates(comparison, [team])
    if backchecker:
        out["by_backchecker"] = _rates(comparison, [backchecker])
    out["unmatched"] = unmatched
    return out


def _same(value: object) -> object:
    return value.strip().casefold() if isinstance(value, str) else value


def simulate_backcheck(original: pd.DataFrame, variables: Mapping[str, int], *,
                       share: float = 0.1, error_rates: Mapping[int, float],
                       rng: np.random.Generator, id_columns: list[str] | None = None
                       ) -> pd.DataFrame:
    """A plausible back-check of a random ``share`` of ``original``.

    Each variable's answer changes with probability ``error_rates[type]`` to another value
    seen in that column (or ±1 / a changed string when there is none), so a demo and tests
    have realistic differences to find. Missing answers stay missing. With ``id_columns``
    only the ids and back-checked variables are kept, like a real back-check form. Draw
    ``original`` from completed interviews: only those can be back-checked.
    """
    if not 0 < share <= 1:
        raise BackcheckError(f"share must be in (0, 1], got {share}", code="backcheck-share")
    n = min(len(original), max(1, round(share * len(original)))) if len(original) else 0
    rows = np.sort(rng.choice(len(original), n, replace=False)) if n else np.array([], int)
    sample = original.iloc[rows].copy()
    for variable, vtype in variables.items():
        p = float(error_rates.get(vtype, 0.0))
        column = cast(int, sample.columns.get_loc(variable))  # column names are unique
        observed = pd.unique(original[variable].dropna())
        numeric = pd.api.types.is_numeric_dtype(original[variable])
        for i in np.flatnonzero(rng.random(n) < p):
            value: Any = sample.iat[int(i), column]
            if pd.isna(value):
                continue
            others = [v for v in observed if _same(v) != _same(value)]
            if others:
                new = others[int(rng.integers(len(others)))]
            elif numeric:
                new = value + 1
            else:
                new = f"{value} (changed)"
            sample.iat[int(i), column] = new
    if id_columns is not None:
        keep = list(dict.fromkeys([*id_columns, *variables]))
        sample = sample[keep]
    return sample.reset_index(drop=True)


def run_backcheck(original: str | Path, backcheck: str | Path, plan: Plan,
                  models: Mapping[str, FormModel], out: str | Path) -> dict[str, pd.DataFrame]:
    """Read both exports (any format), compare them by the plan, write the tables as Parquet."""
    from dhsurvey.ingest.read import read_export

    tables = []
    for path in (original, backcheck):
        raw = read_export(path, models)
        if raw.form_id != plan.form:
            raise DhsurveyError(f"export is form '{raw.form_id}', the plan checks "
                                f"'{plan.form}'", code="backcheck-form", file=path)
        tables.append(raw.root)
    missing = [v for v in [*plan.id_columns, *plan.variables] if v not in tables[0].columns]
    if missing:
        raise DhsurveyError(f"the form has no field(s) {missing}", code="backcheck-fields",
                            file=original)
    try:
        result = compare(tables[0], tables[1], id_columns=plan.id_columns,
                         variables=plan.variables, tolerances=plan.tolerances,
                         enumerator=plan.enumerator)
    except BackcheckError as exc:
        table = exc.context.get("table")
        if table is not None:
            exc.context.setdefault("file", original if table == "original" else backcheck)
        raise
    for name, table in result.items():
        atomic_write_parquet(Path(out) / f"{name}.parquet", table.astype(
            {c: "string" for c in table.columns if table[c].dtype == object}))
    return result


# --------------------------------------------------------------------------- a country

#: Column of the original interviewer's team (from the country file) in a country's tables.
TEAM = "team"
#: Column of the back-checker (the back-check's submitter) in a country's tables.
BACKCHECKER = "backchecker"
#: Per group and in total: compared answers, differences, errors, error rate; per type
#: ``type<k>_compared``, ``type<k>_errors``, ``type<k>_error_rate`` follow.
RATES = ("compared", "differences", "errors", "error_rate")
TYPE_RATES = ("compared", "errors", "error_rate")


def country_backcheck(store: Store, plan: Plan, models: Mapping[str, FormModel], iso: str,
                      config: CountryConfig | None = None, *,
                      private_key: bytes | None = None) -> dict[str, pd.DataFrame] | None:
    """Compare a country's back-checks with its original interviews; write the tables.

    The back-checks are every export in ``landing/<ISO>/backcheck/``
    (:meth:`~dhsurvey.store.Store.backcheck_exports`, any format ingest reads), combined as
    ingest combines exports (one copy of a submission delivered twice). The original
    interviews are the raw root table of the plan's form (``raw/<ISO>/``, as ingest wrote it):
    per household id the last submission (by receipt time) where several. Rows without a
    complete id are left out, on both sides (the back-check's listed in ``quarantine``).

    Returns :func:`compare`'s ``comparison`` (with ``team`` and ``backchecker``),
    ``by_variable``, ``by_type`` and ``unmatched``, and instead of its long tables one row per
    enumerator, ``by_enumerator``: the plan's enumerator column, ``team`` (from ``config``;
    NA without one or for an enumerator of no team), ``submissions`` (the enumerator's
    original interviews), ``backchecked`` (households), then :data:`RATES` over every
    variable and per type (``type1_error_rate``: answers that must not change, which point at
    the enumerator), the highest type-1 error rate first; an enumerator never back-checked
    has 0 compared. ``by_team`` (with ``config``) and ``by_backchecker`` (when the back-checks name
    their submitter) have the same columns. ``quarantine``: back-check rows not compared (the
    readers' quarantine, rows without an id). The tables are written to
    ``clean/<ISO>/backcheck/`` (:meth:`~dhsurvey.store.Store.backchecks`; encrypted at rest),
    replacing an earlier run's.

    None, and no tables, when the country has no back-check export. An export of another
    form, two back-checks of one household or no raw table of the form is a
    :class:`BackcheckError` naming the file (an unreadable export: the reader's
    :class:`~dhsurvey.errors.DhsurveyError`, naming it too); a plan naming fields the form
    lacks, one naming the form.
    """
    folder = store.backchecks(iso)
    exports = store.backcheck_exports(iso)
    _clear(folder)
    if not exports:
        return None
    _check_plan(plan, models)
    checks, quarantine = _read_backchecks(exports, plan, models, private_key)
    original = _originals(store, iso, plan, config)
    backchecker = BACKCHECKER if checks[BACKCHECKER].notna().any() else None
    try:
        result = compare(original, checks, id_columns=plan.id_columns,
                         variables=plan.variables, tolerances=plan.tolerances,
                         enumerator=plan.enumerator, team=TEAM, backchecker=backchecker)
    except BackcheckError as exc:  # the checks above leave little; say where
        exc.context.setdefault("file", store.raw(iso) if exc.context.get("table") ==
                               "original" else ", ".join(map(str, exports)))
        raise
    comparison = result["comparison"]
    out = {"comparison": comparison, "by_variable": result["by_variable"],
           "by_type": result["by_type"],
           "by_enumerator": _per(plan.enumerator, result["by_enumerator"], comparison,
                                 original, plan.id_columns)}
    if config is not None:
        out["by_team"] = _per(TEAM, result["by_team"], comparison, original, plan.id_columns)
    if backchecker:
        out["by_backchecker"] = _per(BACKCHECKER, result["by_backchecker"], comparison, None,
                                     plan.id_columns)
    out["unmatched"] = result["unmatched"]
    out["quarantine"] = quarantine
    for name, table in out.items():
        atomic_write_parquet(folder / f"{name}.parquet", table.astype(
            {c: "string" for c in table.columns if table[c].dtype == object}))
    return out


def _clear(folder: Path) -> None:
    """Remove an earlier run's tables (a back-check export taken away takes its tables)."""
    for path in folder.glob("*.parquet") if folder.is_dir() else []:
        path.unlink()


def _check_plan(plan: Plan, models: Mapping[str, FormModel]) -> None:
    if plan.form not in models:
        raise BackcheckError(f"the back-check plan checks form '{plan.form}', which the study "
                             f"does not have ({', '.join(sorted(models))})",
                             code="backcheck-form", form=plan.form)
    root = {i.name for i in models[plan.form].fields_in(None)}
    missing = [v for v in [*plan.id_columns, plan.enumerator, *plan.variables]
               if v not in root]
    if missing:
        raise BackcheckError(f"the back-check plan names field(s) {missing}, which form "
                             f"'{plan.form}' lacks (at its top level)",
                             code="backcheck-fields", form=plan.form)


def _id_keys(table: pd.DataFrame, id_columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: _key(table[c]).to_numpy() for c in id_columns}, index=table.index)


def _read_backchecks(exports: list[Path], plan: Plan, models: Mapping[str, FormModel],
                     private_key: bytes | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The back-checks of every export as one table (``backchecker``: the submitter), and the
    rows not compared."""
    from dhsurvey.ingest.canonical import QUARANTINE_COLUMNS
    from dhsurvey.ingest.read import read_export_forms
    from dhsurvey.ingest.store import combine

    parts, origin = [], {}
    for path in exports:
        for raw in read_export_forms(path, models, private_key_pem=private_key):
            if raw.form_id != plan.form:
                raise BackcheckError(f"holds submissions of form '{raw.form_id}', not back-checks:"
                                     f" the back-check plan checks '{plan.form}'",
                                     code="backcheck-form", file=path, form=raw.form_id)
            parts.append(raw)
            origin.update({k: path for k in raw.root["KEY"] if k not in origin})
    raw = combine(parts)
    checks = raw.root.assign(**{BACKCHECKER: raw.root["submitter"]})
    keys = _id_keys(checks, plan.id_columns)
    no_id = keys.isna().any(axis=1)
    dup = keys.duplicated(keep=False) & ~no_id
    if dup.any():
        ids = checks.loc[dup, plan.id_columns].drop_duplicates().head(5).to_dict("records")
        files = sorted({str(origin.get(k, "?")) for k in checks.loc[dup, "KEY"]})
        raise BackcheckError(f"household(s) back-checked more than once (first: {ids}); keep "
                             "one back-check per household", code="backcheck-duplicate-ids",
                             file=", ".join(files), form=plan.form)
    missing = checks[no_id]
    left_out = pd.DataFrame({
        "source_file": missing["source_file"].to_numpy(), "row": None,
        "KEY": missing["KEY"].to_numpy(), "rule": "backcheck-id-missing",
        "column": ", ".join(plan.id_columns), "value": None,
        "message": "a back-check without its household id cannot be compared"},
        columns=QUARANTINE_COLUMNS)
    frames = [f for f in (raw.quarantine, left_out) if len(f)]
    quarantine = pd.concat(frames, ignore_index=True) if frames else raw.quarantine
    return checks[~no_id].reset_index(drop=True), quarantine.astype(object)


def _enumerator_ids(values: pd.Series) -> pd.Series:
    """Enumerator ids as whole numbers (as the country files have them) where every one is."""
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().sum() == values.notna().sum() and (numbers.dropna() % 1 == 0).all():
        return numbers.astype("Int64")
    return values.astype("string")


def _originals(store: Store, iso: str, plan: Plan, config: CountryConfig | None
               ) -> pd.DataFrame:
    """The raw interviews of the plan's form, the last per household id, with ``team``."""
    from dhsurvey.io import read_parquet
    from dhsurvey.store import raw_table

    path = store.raw(iso) / raw_table(plan.form)
    if not path.exists():
        raise BackcheckError("no raw table of the back-checked form: ingest the country "
                             "first", code="backcheck-no-original", file=path, country=iso,
                             form=plan.form)
    columns = list(dict.fromkeys(["KEY", "submission_time", *plan.id_columns,
                                  plan.enumerator, *plan.variables]))
    root = read_parquet(path, columns=columns)
    root = root.iloc[np.argsort(root["submission_time"].fillna("").astype(str).to_numpy(),
                                kind="stable")]
    keys = _id_keys(root, plan.id_columns)
    root = root[~keys.isna().any(axis=1) & ~keys.duplicated(keep="last")]
    root = root.reset_index(drop=True)
    root[plan.enumerator] = _enumerator_ids(root[plan.enumerator])
    teams = {str(e): t.id for t in (config.teams if config else ()) for e in t.enumerators}
    root[TEAM] = _key(root[plan.enumerator]).map(teams).astype("Int64")
    return root


def _per(by: str, long: pd.DataFrame, comparison: pd.DataFrame,
         original: pd.DataFrame | None, id_columns: list[str]) -> pd.DataFrame:
    """One row per value of ``by`` from :func:`_rates`' long table (see
    :func:`country_backcheck`)."""
    total = long[long["type"] == ALL].set_index(by)
    out = pd.DataFrame(index=total.index)
    if original is not None:
        out = out.join(original.groupby(by, dropna=False).size().rename("submissions"),
                       how="outer")
        if by != TEAM:
            out[TEAM] = original.groupby(by, dropna=False)[TEAM].first()
    checked = comparison.drop_duplicates(id_columns).groupby(by, dropna=False).size()
    out["backchecked"] = checked.reindex(out.index)
    for column in RATES:
        out[column] = total[column].reindex(out.index)
    for vtype in TYPES:
        part = long[long["type"] == str(vtype)].set_index(by)
        for column in TYPE_RATES:
            out[f"type{vtype}_{column}"] = part[column].reindex(out.index)
    counts = [c for c in out.columns if not c.endswith("error_rate") and c != TEAM]
    out[counts] = out[counts].fillna(0).astype("int64")
    out = out.rename_axis(by).reset_index()
    if TEAM in out and by != TEAM:
        out = out[[by, TEAM, *[c for c in out.columns if c not in (by, TEAM)]]]
    return out.sort_values(["type1_error_rate", "error_rate", by],
                           ascending=[False, False, True], na_position="last",
                           kind="stable").reset_index(drop=True)
