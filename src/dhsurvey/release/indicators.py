"""Headline indicators with design-based confidence intervals.

Indicators are declared in ``instruments/indicators.yaml`` in the instruments' own expression
language (a value and a universe over one form's fields), so a survey manager can add one
without code, and the same evaluator that validated the data decides who counts. Each is a
weighted proportion estimated with the design — strata, PSUs, calibrated weights, Taylor
linearisation with calibration-aware SEs — overall and in each domain, with the unweighted n.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from dhsurvey.errors import ConfigError
from dhsurvey.forms.expressions import ExpressionError, evaluate, evaluate_bool, references
from dhsurvey.forms.model import FormModel
from dhsurvey.weight.variance import Design

COLUMNS = ["indicator", "label", "form", "domain", "level", "level_label", "estimate", "se",
           "ci_low", "ci_high", "n", "weighted"]


@dataclass(frozen=True)
class Indicator:
    id: str
    form: str
    label: str
    value: str
    universe: str


@dataclass(frozen=True)
class Domain:
    name: str
    expression: str
    labels: dict[str, str]


def load_indicators(path: str | Path, models: Mapping[str, FormModel]
                    ) -> tuple[list[Indicator], dict[str, list[Domain]]]:
    """Read and check the indicator file against the forms (fields exist, expressions parse)."""
    path = Path(path)
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    indicators = []
    for i, spec in enumerate(data.get("indicators", [])):
        where = f"indicators[{i}]"
        missing = [k for k in ("id", "form", "label", "value", "universe") if not spec.get(k)]
        if missing:
            raise ConfigError(f"{where} lacks {missing}", code="config-missing", file=path,
                              field=where)
        ind = Indicator(**{k: str(spec[k]) for k in ("id", "form", "label", "value",
                                                      "universe")})
        _check(ind.form, [ind.value, ind.universe], models, path, where)
        indicators.append(ind)
    domains: dict[str, list[Domain]] = {}
    for form, specs in (data.get("domains") or {}).items():
        for name, spec in specs.items():
            _check(form, [spec["expression"]], models, path, f"domains.{form}.{name}")
            domains.setdefault(form, []).append(Domain(name, str(spec["expression"]), {
                str(k): str(v) for k, v in (spec.get("labels") or {}).items()}))
    return indicators, domains


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


def join_weights(accepted: Mapping[str, pd.DataFrame], weights: Mapping[str, pd.DataFrame]
                 ) -> dict[str, pd.DataFrame]:
    """Accepted answers of each weighted form with its weights and design variables joined
    (the weights table's stratum and cluster are the design's; the answer's cluster goes)."""
    return {form: accepted[form].drop(columns=["cluster"], errors="ignore")
            .merge(weights[form], on="KEY") for form in weights if form in accepted}


def compute_indicators(tables: Mapping[str, pd.DataFrame], indicators: list[Indicator],
                       domains: Mapping[str, list[Domain]], *, weight: str = "weight",
                       strata: str = "stratum", psu: str = "cluster") -> pd.DataFrame:
    """Estimate, SE, 95 % CI and unweighted n per indicator, overall and by domain.

    ``tables[form]`` holds the accepted answers with the weight and design columns joined. A
    table without ``weight`` (frontline workers) gives unweighted proportions with a simple
    random sampling SE, marked ``weighted = False``.
    """
    rows = []
    for ind in indicators:
        table = tables.get(ind.form)
        if table is None or table.empty:
            continue
        frame = table.reset_index(drop=True)
        in_universe = evaluate_bool(ind.universe, frame).to_numpy()
        y = evaluate_bool(ind.value, frame).astype(float).to_numpy()
        frame = frame.assign(_y=np.where(in_universe, y, np.nan))
        groups = [("all", pd.Series("all", index=frame.index), {"all": "All"})]
        for dom in domains.get(ind.form, []):
            levels = evaluate(dom.expression, frame).map(_level)
            groups.append((dom.name, levels, dom.labels))
        for name, levels, labels in groups:
            rows += _estimate(ind, frame, in_universe, name, levels, labels, weight, strata, psu)
    return pd.DataFrame(rows, columns=COLUMNS)


def _level(value: object) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _estimate(ind: Indicator, frame: pd.DataFrame, in_universe: np.ndarray, domain: str,
              levels: pd.Series, labels: Mapping[str, str], weight: str, strata: str,
              psu: str) -> list[dict]:
    out = []
    weighted = weight in frame.columns
    for level in sorted(levels.dropna().unique(), key=str):
        member = (levels == level).to_numpy() & in_universe
        n = int(member.sum())
        if n == 0:
            continue
        if weighted:
            data = frame.assign(_d=member.astype(float), _yd=np.where(member, frame["_y"], 0.0))
            design = Design(data, weight, strata=strata, psu=psu, lonely_psu="adjust")
            est = design.ratio("_yd", "_d")
            estimate, se = est.estimate, est.se
        else:
            values = frame.loc[member, "_y"]
            estimate = float(values.mean())
            se = float(np.sqrt(estimate * (1 - estimate) / n)) if n > 1 else float("nan")
        out.append({"indicator": ind.id, "label": ind.label, "form": ind.form, "domain": domain,
                    "level": level, "level_label": labels.get(level, level),
                    "estimate": estimate, "se": se, "ci_low": max(0.0, estimate - 1.96 * se),
                    "ci_high": min(1.0, estimate + 1.96 * se), "n": n, "weighted": weighted})
    return out
