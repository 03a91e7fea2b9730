"""Headline indicators with design-based confidence intervals, reproducible from the files.

Indicators are declared in ``instruments/indicators.yaml`` in the instruments' own expression
language (a value and a universe over one form's fields), each with its definition in words
(numerator, universe, how "prefer not to say" is handled), so a survey manager can add one
without code and the same evaluator that validated the data decides who counts.

Why the released files, not the clean data: a researcher must get the published numbers from
what was published. So each indicator is a 0/1 variable of its form's file (missing outside
its universe) and each domain a variable named as the domain (:func:`release_variables`), both
derived from the released (recoded, suppressed) values; the estimates are then computed from
those files (:func:`compute_indicators`) exactly as R's ``survey`` package does with the
shipped ``svydesign.R``:

- the released weights raked to the country's population margins (``rake()`` on the design:
  the margin variables are released, never suppressed), and SEs from Taylor linearisation on
  ``stratum`` and ``psu`` with the raking residuals (calibration-aware, ``svymean`` on the
  raked design), lonely PSUs "adjust";
- the logit interval with the design's degrees of freedom, R's
  ``svyciprop(method = "logit", df = degf(design))``: logit(p̂) ± t(df) · SE/(p̂(1 − p̂)), back
  transformed, df = PSUs − strata holding the domain's records. It stays inside (0, 1) and is
  not symmetric near 0, where the Wald interval misses one-sidedly. At p̂ = 0 or 1 it is not
  defined and left empty.

A table without ``weight`` (frontline workers, not a probability sample) gives unweighted
shares with the simple-random-sampling SE and the same interval (df = n − 1), marked
``weighted = False``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from dhsurvey.errors import ConfigError
from dhsurvey.forms.expressions import ExpressionError, evaluate, evaluate_bool, references
from dhsurvey.forms.model import FormModel
from dhsurvey.io import load_yaml
from dhsurvey.weight.calibrate import Margins, rake
from dhsurvey.weight.variance import Design, Estimate

COLUMNS = ["indicator", "label", "form", "domain", "level", "level_label", "estimate", "se",
           "ci_low", "ci_high", "df", "n", "weighted"]
#: What each indicator's definition states, in words (indicators.yaml ``definition``).
DEFINITION = ("numerator", "universe", "refusals")
LEVEL = 0.95
#: Raking of the released weights stops within this share of the population total (R:
#: svydesign.R's ``epsilon``), so both give the same weights to ~1e-12.
RAKE_TOL = 1e-12


@dataclass(frozen=True)
class Indicator:
    """One declared indicator: a 0/1 value among a universe, over one form's fields."""

    id: str
    form: str
    label: str
    value: str
    universe: str
    definition: dict[str, str] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Domain:
    """A domain: a variable of the form's file named ``name``. ``expression`` derives it
    from the form's fields; ``margin`` names a calibration margin of the weights instead
    (the value the record was weighted with, released under that name)."""

    name: str
    expression: str
    labels: dict[str, str]
    margin: str | None = None

    @property
    def derived(self) -> bool:
        """Whether the release adds the variable (not a margin, nor a field of that name)."""
        return self.margin is None and self.expression.strip() != f"${{{self.name}}}"


def load_indicators(path: str | Path, models: Mapping[str, FormModel]
                    ) -> tuple[list[Indicator], dict[str, list[Domain]]]:
    """Read and check the indicator file against the forms: fields exist, expressions parse,
    every definition is stated, and no indicator or domain takes the name of a field."""
    path = Path(path)
    data = load_yaml(path.read_text(encoding="utf-8")) or {}
    indicators = []
    for i, spec in enumerate(data.get("indicators", [])):
        where = f"indicators[{i}]"
        missing = [k for k in ("id", "form", "label", "value", "universe", "definition")
                   if not spec.get(k)]
        definition = spec.get("definition") or {}
        missing += [f"definition.{k}" for k in DEFINITION
                    if isinstance(definition, dict) and not definition.get(k)]
        if missing:
            raise ConfigError(f"{where} lacks {missing}", code="config-missing", file=path,
                              field=where)
        ind = Indicator(**{k: str(spec[k]) for k in ("id", "form", "label", "value",
                                                      "universe")},
                        definition={k: " ".join(str(definition[k]).split())
                                    for k in DEFINITION})
        _check(ind.form, [ind.value, ind.universe], models, path, where)
        _new_name(ind.id, ind.form, models, path, where)
        indicators.append(ind)
    domains: dict[str, list[Domain]] = {}
    for form, specs in (data.get("domains") or {}).items():
        for name, spec in specs.items():
            where = f"domains.{form}.{name}"
            labels = {str(k): str(v) for k, v in (spec.get("labels") or {}).items()}
            if spec.get("margin"):
                domains.setdefault(form, []).append(
                    Domain(str(name), "", labels, margin=str(spec["margin"])))
                continue
            if not spec.get("expression"):
                raise ConfigError(f"{where} needs an expression or a margin",
                                  code="config-missing", file=path, field=where)
            domain = Domain(str(name), str(spec["expression"]), labels)
            _check(form, [domain.expression], models, path, where)
            if domain.derived:
                _new_name(domain.name, form, models, path, where)
            domains.setdefault(form, []).append(domain)
    ids = [i.id for i in indicators]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise ConfigError(f"indicator id(s) {twice} declared twice", code="config-invalid",
                          file=path, field="indicators")
    return indicators, domains


def _new_name(name: str, form: str, models: Mapping[str, FormModel], path: Path,
              where: str) -> None:
    if name in models[form]:
        raise ConfigError(f"{where}: '{name}' is a field of {form}; the release adds this "
                          "variable under its name, so it needs a name of its own",
                          code="config-invalid", file=path, field=where)


def _check(form: str, expressions: list[str], models: Mapping[str, FormModel], path: Path,
           where: str) -> None:
    if form not in models:
        raise ConfigError(f"{where}: unknown form '{form}'", code="config-invalid", file=path,
                          field=where)
    for expression in expressions:
        try:
            refs = references(expression)
        except ExpressionError as exc:
            raise ConfigError(f"{where}: {exc}", code="config-invalid", file=path,
                              field=where) from None
        unknown = [r for r in refs if r not in models[form]]
        if unknown:
            raise ConfigError(f"{where}: {form} has no field(s) {unknown}",
                              code="config-invalid", file=path, field=where)


# ------------------------------------------------------------------- variables of the files


def indicator_values(frame: pd.DataFrame, ind: Indicator) -> pd.Series:
    """The indicator as a variable: 1/0 in its universe, missing outside it."""
    frame = frame.reset_index(drop=True)
    universe = evaluate_bool(ind.universe, frame).to_numpy()
    value = evaluate_bool(ind.value, frame).to_numpy()
    return pd.Series(pd.array(np.where(value, 1, 0), dtype="Int64")).where(universe)


def domain_values(frame: pd.DataFrame, dom: Domain) -> pd.Series:
    """The domain's level codes: missing where a field it reads is missing (suppressed or not
    asked), never a level the expression would give an empty value."""
    frame = frame.reset_index(drop=True)
    if dom.margin is not None:
        return pd.Series(pd.to_numeric(frame[dom.margin], errors="coerce")).astype("Int64")
    refs = references(dom.expression)
    known = np.ones(len(frame), dtype=bool)
    for ref in refs:
        known &= frame[ref].notna().to_numpy()
    levels = pd.to_numeric(evaluate(dom.expression, frame), errors="coerce")
    return pd.Series(levels).astype("Int64").where(known)


def variable(item: Indicator | Domain) -> str:
    """The name of the variable the release gives an indicator or a domain."""
    return item.id if isinstance(item, Indicator) else item.name


def reads(item: Indicator | Domain) -> list[str]:
    """The fields a variable is derived from."""
    if isinstance(item, Indicator):
        return list(dict.fromkeys([*references(item.value), *references(item.universe)]))
    return [item.margin] if item.margin else references(item.expression)


def release_variables(frame: pd.DataFrame, form: str, indicators: Sequence[Indicator],
                      domains: Mapping[str, Sequence[Domain]]) -> pd.DataFrame:
    """``frame`` (released rows) with the form's indicator variables and derived domain
    variables added after its answers, computed from the released values. A variable whose
    fields the frame lacks (left out of this release) is not added."""
    added: dict[str, Any] = {}
    for ind in indicators:
        if ind.form == form and set(reads(ind)) <= set(frame.columns):
            added[ind.id] = indicator_values(frame, ind).array
    for dom in domains.get(form, []):
        if dom.derived and set(reads(dom)) <= set(frame.columns):
            added[dom.name] = domain_values(frame, dom).array
    if not added:
        return frame
    # After the answers, before the weights (and replicate weights) that close a table.
    at = next((i for i, c in enumerate(frame.columns) if c in ("weight", "weight_norm")
               or str(c).startswith("rep_")), len(frame.columns))
    columns = list(frame.columns)
    parts = {c: frame[c] for c in columns[:at]}
    parts.update({c: pd.Series(v, index=frame.index) for c, v in added.items()})
    parts.update({c: frame[c] for c in columns[at:]})
    return pd.DataFrame(parts, index=frame.index)


def unreproducible(released: pd.DataFrame, original: pd.DataFrame,
                   items: Sequence[Indicator | Domain]) -> dict[str, str]:
    """The variables the released values do not give as the collected values do (a field
    recoded across the domain's boundary, say), with the reason: these are left out of the
    release rather than published wrong. Rows are the same records in the same order; a
    record whose field was suppressed counts as missing, not as a difference."""
    out = {}
    for item in items:
        needed = reads(item)
        if not set(needed) <= set(released.columns) or not set(needed) <= set(original.columns):
            continue
        if isinstance(item, Indicator):
            a, b = indicator_values(released, item), indicator_values(original, item)
        else:
            a, b = domain_values(released, item), domain_values(original, item)
        both = a.notna().to_numpy() & b.notna().to_numpy()
        differ = int((a.to_numpy()[both] != b.to_numpy()[both]).sum())
        if differ:
            out[variable(item)] = (
                f"the released values of {needed} give {differ} record(s) another value "
                "than the collected ones (a recoding crosses its boundary)")
    return out


# --------------------------------------------------------------------------------- estimates


def join_weights(accepted: Mapping[str, pd.DataFrame], weights: Mapping[str, pd.DataFrame]
                 ) -> dict[str, pd.DataFrame]:
    """Accepted answers of each weighted form with its weights and design variables joined
    (the weights table's stratum and cluster are the design's; the answer's cluster goes)."""
    return {form: accepted[form].drop(columns=["cluster"], errors="ignore")
            .merge(weights[form], on="KEY") for form in weights if form in accepted}


def logit_interval(p: float, se: float, df: float, level: float = LEVEL
                   ) -> tuple[float, float]:
    """R's ``svyciprop(method = "logit")``: expit(logit p ± t_df · se / (p(1 − p)));
    undefined (NaN) at p = 0 or 1, or without degrees of freedom."""
    if not 0.0 < p < 1.0 or not np.isfinite(se) or not df > 0:
        return float("nan"), float("nan")
    q = _t_quantile(0.5 + level / 2.0, df)
    centre, half = np.log(p / (1.0 - p)), q * se / (p * (1.0 - p))
    low, high = centre - half, centre + half
    return float(1.0 / (1.0 + np.exp(-low))), float(1.0 / (1.0 + np.exp(-high)))


def _t_quantile(prob: float, df: float) -> float:
    """Student's t quantile, as ``scipy.stats.t.ppf`` computes it (through the same
    ``stdtrit``; ``scipy.special`` imports in a fraction of ``scipy.stats``' time)."""
    if not np.isfinite(df):
        return NormalDist().inv_cdf(prob)
    from scipy.special import stdtrit

    return float(stdtrit(df, prob))


def compute_indicators(tables: Mapping[str, pd.DataFrame], indicators: Sequence[Indicator],
                       domains: Mapping[str, Sequence[Domain]], *,
                       margins: Mapping[str, Margins] | None = None, weight: str = "weight",
                       strata: str = "stratum", psu: str = "psu") -> pd.DataFrame:
    """Estimate, SE, 95 % logit CI, df and unweighted n per indicator, overall and by domain.

    ``tables[form]`` holds the indicator and domain variables (:func:`release_variables`)
    and, for weighted forms, ``weight``, ``strata`` and ``psu``. ``margins[form]``: the
    population margins the weights are raked to before estimation (the margin variables in
    the table), as R's ``rake()`` on the design; without them the weights are used as they
    are. Indicators and domains whose variable a table lacks are left out.
    """
    rows: list[dict[str, Any]] = []
    for form in dict.fromkeys(i.form for i in indicators):
        table = tables.get(form)
        if table is None or table.empty:
            continue
        frame = table.reset_index(drop=True)
        design = _design(frame, (margins or {}).get(form), weight, strata, psu)
        groups: list[tuple[str, np.ndarray, list[str], Mapping[str, str]]] = [
            ("all", np.zeros(len(frame), dtype=np.int64), ["all"], {"all": "All"})]
        for dom in domains.get(form, []):
            if dom.name in frame.columns:
                levels = pd.to_numeric(frame[dom.name], errors="coerce")
                present = sorted(levels.dropna().unique())
                codes = levels.map({v: i for i, v in enumerate(present)}).fillna(-1)
                groups.append((dom.name, codes.to_numpy(dtype=np.int64),
                               [_level(v) for v in present], dom.labels))
        for ind in indicators:
            if ind.form != form or ind.id not in frame.columns:
                continue
            y = pd.to_numeric(frame[ind.id], errors="coerce").to_numpy(dtype=float)
            for name, group, names, labels in groups:
                for i, level in enumerate(names):
                    member = (group == i) & ~np.isnan(y)
                    if member.any():
                        rows.append(_row(ind, frame, design, y, member, name, level,
                                         labels.get(level, level), strata, psu))
    return pd.DataFrame(rows, columns=COLUMNS)


def _design(frame: pd.DataFrame, margins: Margins | None, weight: str, strata: str,
            psu: str) -> Design | None:
    if weight not in frame.columns:
        return None
    if margins:
        # Converged as far as R's rake() with svydesign.R's epsilon (1e-12 of the total).
        frame[weight] = rake(frame, weight, margins, tol=RAKE_TOL).to_numpy()
    return Design(frame, weight, strata=strata, psu=psu, lonely_psu="adjust",
                  calibrated_on=margins or None)


def _level(value: Any) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _row(ind: Indicator, frame: pd.DataFrame, design: Design | None, y: np.ndarray,
         member: np.ndarray, domain: str, level: str, level_label: str, strata: str,
         psu: str) -> dict[str, Any]:
    n = int(member.sum())
    if design is not None:
        frame["_yd"], frame["_d"] = np.where(member, y, 0.0), member.astype(float)
        est = design.ratio("_yd", "_d")
        assert isinstance(est, Estimate)
        estimate, se = est.estimate, est.se
        # R's degf() of the domain's design: PSUs minus strata that hold its records.
        df = float(frame.loc[member, psu].nunique() - frame.loc[member, strata].nunique())
    else:
        values = y[member]
        estimate = float(values.mean())
        se = float(np.sqrt(estimate * (1 - estimate) / (n - 1))) if n > 1 else float("nan")
        df = float(n - 1)
    low, high = logit_interval(estimate, se, df)
    return {"indicator": ind.id, "label": ind.label, "form": ind.form, "domain": domain,
            "level": level, "level_label": level_label, "estimate": estimate, "se": se,
            "ci_low": low, "ci_high": high, "df": df, "n": n, "weighted": design is not None}


# ------------------------------------------------------------------ the files they come from


def estimate_columns(form: str, present: Sequence[str], indicators: Sequence[Indicator],
                     domains: Mapping[str, Sequence[Domain]], margins: Sequence[str] = (),
                     also: Sequence[str] = ()) -> list[str]:
    """The columns of a released ``form`` table (``present``) the estimates read: indicator,
    domain and margin variables, the design (``stratum``, ``psu``, ``weight``), and ``also``
    (``country`` in a pooled release)."""
    wanted = [*[i.id for i in indicators if i.form == form],
              *[d.name for d in domains.get(form, [])],
              *margins, "stratum", "psu", "weight", *also]
    have = set(present)
    return [c for c in dict.fromkeys(wanted) if c in have]


def file_tables(folder: str | Path, indicators: Sequence[Indicator],
                domains: Mapping[str, Sequence[Domain]], margins: Sequence[str] = ()
                ) -> dict[str, pd.DataFrame]:
    """The columns the estimates read (:func:`estimate_columns`) from a release folder's
    Parquet files."""
    import pyarrow.parquet as pq

    out = {}
    for form in dict.fromkeys(i.form for i in indicators):
        path = Path(folder) / f"{form}.parquet"
        if path.exists():
            out[form] = pd.read_parquet(path, columns=estimate_columns(
                form, pq.read_schema(path).names, indicators, domains, margins))
    return out


def form_margins(tables: Mapping[str, pd.DataFrame], margins: Margins,
                 forms: Sequence[str]) -> dict[str, Margins]:
    """The margins each weighted table of ``forms`` is raked to: those whose variables it
    holds (the raked forms carry them all)."""
    return {f: margins for f in forms if f in tables and "weight" in tables[f]
            and all(m in tables[f].columns for m in margins)}


def pooled_margins(tables: dict[str, pd.DataFrame], by_country: Mapping[str, Margins],
                   forms: Sequence[str], country: str = "country") -> dict[str, Margins]:
    """Pooled tables raked within each country: each margin variable ``m`` gets a column
    ``m_by_country`` (added in place) holding its country × level cell (``404:1``), and the
    countries' totals are listed per cell, as R's ``rake()`` on
    ``interaction(country, m, sep = ":")``. ``by_country``: the margins of each country, keyed
    by the code of the ``country`` column."""
    out: dict[str, Margins] = {}
    names = list(dict.fromkeys(m for margins in by_country.values() for m in margins))
    for form in forms:
        table = tables.get(form)
        if table is None or "weight" not in table or country not in table or \
                not all(m in table.columns for m in names):
            continue
        code = pd.to_numeric(table[country], errors="coerce").astype("Int64").astype(str)
        cells: dict[str, dict[str, float]] = {}
        for m in names:
            table[f"{m}_by_{country}"] = code + ":" + pd.to_numeric(
                table[m], errors="coerce").astype("Int64").astype(str)
            cells[f"{m}_by_{country}"] = {f"{c}:{level}": total
                                          for c, margins in by_country.items()
                                          for level, total in margins[m].items()}
        out[form] = cells
    return out


def labelled_variables(model: FormModel, form: str, indicators: Sequence[Indicator],
                       domains: Sequence[Domain], margins: Mapping[str, Mapping[str, str]]
                       ) -> FormModel:
    """A copy of ``model`` whose fields also describe the variables the release adds to its
    file: each indicator (Yes/No), each derived domain and each margin variable with its
    levels, so codebook, Stata and SPSS labels come from one place. ``margins``: margin
    variable → code → label."""
    from dataclasses import replace

    from dhsurvey.forms.model import STATA, Choice, ChoiceList, Item

    langs = [*model.languages, STATA]
    items, lists = list(model.items), dict(model.choice_lists)
    names = set(model.by_name)

    def add(name: str, label: str, codes: Mapping[str, str]) -> None:
        if name in names:
            return
        names.add(name)
        list_name = f"_release_{name}"
        lists[list_name] = ChoiceList(list_name, [
            Choice(list_name, str(code), {lang: text for lang in langs}, {}, -1)
            for code, text in codes.items()], -1)
        items.append(Item(name, "select_one", -1, (), None, {"pii": "none"},
                          list_name=list_name, labels={lang: label for lang in langs}))

    for name, codes in margins.items():
        add(name, f"Raking margin: {name.replace('_', ' ')} (selected child, household "
                  "roster)", codes)
    for dom in domains:
        if dom.derived:
            add(dom.name, f"Domain: {dom.name.replace('_', ' ')}", dom.labels)
    for ind in indicators:
        if ind.form == form:
            add(ind.id, f"Indicator: {ind.label}", {"1": "Yes", "0": "No"})
    # A new model (not a copy of this one's cached lookups): fields, names and classes are
    # derived afresh with the added variables.
    return replace(model, items=items, choice_lists=lists)


__all__ = ["COLUMNS", "DEFINITION", "Domain", "Indicator", "compute_indicators",
           "domain_values", "estimate_columns", "file_tables", "form_margins",
           "indicator_values", "join_weights", "labelled_variables", "load_indicators",
           "logit_interval", "pooled_margins", "reads", "release_variables", "unreproducible",
           "variable"]
