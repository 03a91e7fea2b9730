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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from dhsurvey.errors import DhsurveyError
from dhsurvey.forms.model import FormModel

TYPES = {1: "must not change: enumerator follow-up",
         2: "hard to administer: retraining",
         3: "stability: data quality"}
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


@dataclass(frozen=True)
class Plan:
    """What a back-check re-asks and how differences are read (``instruments/backcheck.yaml``)."""

    form: str
    id_columns: list[str]
    variables: dict[str, int]
    tolerances: dict[str, float]
    enumerator: str = "enum_id"


def load_plan(path: str | Path) -> Plan:
    """Read and check a back-check plan; errors name the file and the key."""
    import yaml

    from dhsurvey.errors import ConfigError

    path = Path(path)
    if not path.exists():
        raise ConfigError("back-check plan not found", code="config-missing", file=path)
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    for key in ("form", "id_columns", "variables"):
        if not data.get(key):
            raise ConfigError(f"missing '{key}'", code="config-missing", file=path, field=key)
    bad = {v: t for v, t in data["variables"].items() if t not in TYPES}
    if bad:
        raise ConfigError(f"variable types must be 1, 2 or 3: {bad}", code="config-invalid",
                          file=path, field="variables")
    return Plan(str(data["form"]), list(data["id_columns"]), dict(data["variables"]),
                {k: float(v) for k, v in (data.get("tolerances") or {}).items()},
                str(data.get("enumerator", "enum_id")))


def run_backcheck(original: str | Path, backcheck: str | Path, plan: Plan,
                  models: Mapping[str, FormModel], out: str | Path) -> dict[str, pd.DataFrame]:
    """Read both exports (any format), compare them by the plan, write the tables as Parquet."""
    from dhsurvey.ingest.read import read_export
    from dhsurvey.io import atomic_write_parquet

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
