"""Calibration of survey weights to population margins: raking, linear (GREG), trimming.

Why a cell model: calibration to margins never distinguishes two rows that share the same
combination of margin levels (a *cell*), so every calibrated weight is the starting weight times
a factor that depends on the cell only. All iterations therefore run on the small cell table
(at most the product of the margins' level counts) and touch the rows twice: one ``bincount``
to build the table and one gather to apply the factors. A million rows rake in tens of
milliseconds, and replicate weights (one column per replicate) rake all at once.

Conventions, stated once:

- ``margins`` is ``{column: {level: population_total}}``. Levels are matched to the column's
  values by a normalised string form (``1``, ``1.0``, ``"1"`` are one level; ``True`` is
  ``"True"``), so margins read from YAML/JSON (string keys) fit integer columns.
- Every margin must add to the same population total ``N``. ``tol`` is *relative to N*: the
  calibrated weights reproduce every margin cell within ``tol * N``. R's ``rake()`` stops when
  the change is below ``epsilon = 1`` (absolute) after at most 10 iterations, which is far
  looser; set the tolerance here explicitly and rely on the final assertion.
- Errors are :class:`~dhsurvey.errors.DhsurveyError` with codes ``rake-column-missing``,
  ``rake-missing-value``, ``rake-level-missing``, ``rake-margin-invalid``,
  ``rake-margin-mismatch``, ``rake-no-convergence``, ``rake-bad-weight``,
  ``calibrate-no-convergence``, ``trim-infeasible`` and ``trim-no-convergence``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dhsurvey.errors import DhsurveyError

Margins = Mapping[str, Mapping[Any, float]]

#: Above this many possible cells the cell ids are found by sorting instead of a dense table.
_DENSE_CELL_LIMIT = 20_000_000


# --------------------------------------------------------------------------------------------
# Small helpers shared with variance.py
# --------------------------------------------------------------------------------------------


def level_key(value: Any) -> str:
    """Normalised string form of a category level, for matching margins to data robustly."""
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        f = float(value)
        return str(int(f)) if f.is_integer() else repr(f)
    text = str(value).strip()
    try:
        f = float(text)
    except ValueError:
        return text
    if np.isfinite(f) and f.is_integer() and text.lstrip("+-").replace(".", "", 1).isdigit():
        return str(int(f))
    return text


def weights_array(df: pd.DataFrame, weight: str, *, code: str = "rake-bad-weight") -> np.ndarray:
    """The weight column as float64, refusing missing, negative or infinite values."""
    if weight not in df.columns:
        raise DhsurveyError(f"weight column {weight!r} not found", code=code, column=weight)
    w = pd.to_numeric(df[weight], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DhsurveyError(
            f"weight column {weight!r} has {int(bad.sum())} missing, negative or infinite values",
            code=code, column=weight, row=df.index[i],
        )
    return w


def group_sum(codes: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """Sum ``values`` (1-D, or 2-D with one column per replicate) by integer ``codes``."""
    if values.ndim == 1:
        return np.bincount(codes, weights=values, minlength=size)
    k = values.shape[1]
    flat = (codes[:, None] * k + np.arange(k)).ravel()
    return np.bincount(flat, weights=values.ravel(), minlength=size * k).reshape(size, k)


def kish_deff(w: Any) -> float:
    """Kish's design effect from unequal weighting, ``1 + CV²`` = n·Σw² / (Σw)².

    Why: it is the variance inflation a weighted mean suffers from the weights alone, the
    number trimming decisions are judged by. Zero weights count as sample units with no
    weight (as in R's ``deff``); the CV uses the population (ddof=0) standard deviation.
    """
    arr = np.asarray(w, dtype=np.float64)
    total = arr.sum()
    if arr.size == 0 or total <= 0:
        return float("nan")
    return float(arr.size * np.dot(arr, arr) / (total * total))


def normalise(w: Any) -> pd.Series:
    """Weights rescaled to mean 1 (weighted n = n), for analysis files.

    Why: analysts expect weighted counts close to sample counts; totals and pooled estimates
    need the *expansion* weights (the calibrated ones), which should be published too.
    """
    series = w if isinstance(w, pd.Series) else pd.Series(np.asarray(w, dtype=np.float64))
    values = series.to_numpy(dtype=np.float64)
    mean = values.mean() if values.size else float("nan")
    if not np.isfinite(mean) or mean <= 0:
        raise DhsurveyError("cannot normalise weights with a non-positive mean",
                            code="rake-bad-weight")
    return pd.Series(values / mean, index=series.index, name=series.name)


# --------------------------------------------------------------------------------------------
# The cell model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Margin:
    column: str
    codes: np.ndarray  # (n,) index into ``levels``
    levels: tuple[Any, ...]  # the margin's own level labels, in ``targets`` order
    targets: np.ndarray  # population totals per level


def _prepare_margin(df: pd.DataFrame, column: str, spec: Mapping[Any, float]) -> _Margin:
    if column not in df.columns:
        raise DhsurveyError(f"margin column {column!r} not found", code="rake-column-missing",
                            column=column)
    if not isinstance(spec, Mapping) or not spec:
        raise DhsurveyError(f"margin {column!r} must be a non-empty {{level: total}} mapping",
                            code="rake-margin-invalid", column=column)
    by_key: dict[str, tuple[Any, float]] = {}
    for level, total in spec.items():
        key = level_key(level)
        if key in by_key:
            raise DhsurveyError(
                f"margin {column!r} lists level {level!r} twice (as {by_key[key][0]!r})",
                code="rake-margin-invalid", column=column, level=level)
        value = float(total)
        if not np.isfinite(value) or value < 0:
            raise DhsurveyError(f"margin {column!r} level {level!r} has total {total!r}",
                                code="rake-margin-invalid", column=column, level=level)
        by_key[key] = (level, value)

    raw_codes, uniques = pd.factorize(df[column], sort=False)
    if (raw_codes < 0).any():
        i = int(np.flatnonzero(raw_codes < 0)[0])
        raise DhsurveyError(f"margin column {column!r} has missing values",
                            code="rake-missing-value", column=column, row=df.index[i])
    keys = list(by_key)
    position = {k: i for i, k in enumerate(keys)}
    mapping = np.empty(len(uniques), dtype=np.int64)
    for j, value in enumerate(uniques):
        key = level_key(value)
        if key not in position:
            raise DhsurveyError(
                f"level {value!r} of {column!r} occurs in the sample but not in the margin",
                code="rake-level-missing", column=column, level=value)
        mapping[j] = position[key]
    codes = mapping[raw_codes]
    present = np.bincount(codes, minlength=len(keys)) > 0
    targets = np.array([by_key[k][1] for k in keys])
    for i, key in enumerate(keys):
        level, total = by_key[key]
        if total > 0 and not present[i]:
            raise DhsurveyError(
                f"level {level!r} of {column!r} has population total {total:g} but no sample rows",
                code="rake-level-missing", column=column, level=level)
        if total == 0 and present[i]:
            raise DhsurveyError(
                f"level {level!r} of {column!r} has sample rows but population total 0",
                code="rake-level-missing", column=column, level=level)
    # Drop levels absent from both sample and population; renumber the codes.
    keep = np.flatnonzero(present)
    renumber = np.full(len(keys), -1, dtype=np.int64)
    renumber[keep] = np.arange(keep.size)
    return _Margin(column, renumber[codes], tuple(by_key[keys[i]][0] for i in keep),
                   targets[keep])


class CellModel:
    """Rows grouped into cells (combinations of margin levels); calibration works on cells.

    Internal to ``dhsurvey.weight``: :class:`~dhsurvey.weight.variance.Design` reuses it for
    calibration-aware variances and replicate re-calibration.
    """

    def __init__(self, df: pd.DataFrame, margins: Margins, *, tol: float = 1e-10) -> None:
        if not isinstance(margins, Mapping) or not margins:
            raise DhsurveyError("margins must be a non-empty {column: {level: total}} mapping",
                                code="rake-margin-invalid")
        self.margins = [_prepare_margin(df, str(c), spec) for c, spec in margins.items()]
        self.n = len(df)
        totals = [float(m.targets.sum()) for m in self.margins]
        self.total = totals[0]
        for m, t in zip(self.margins[1:], totals[1:], strict=True):
            if abs(t - self.total) > max(tol, 1e-12) * max(self.total, t):
                raise DhsurveyError(
                    f"margin {m.column!r} adds to {t:.10g} but {self.margins[0].column!r} adds "
                    f"to {self.total:.10g}: raking cannot satisfy both",
                    code="rake-margin-mismatch", column=m.column, level="(all)",
                    total=t, expected=self.total)
        self._build_cells()

    def _build_cells(self) -> None:
        sizes = [len(m.levels) for m in self.margins]
        n_possible = int(np.prod(np.array(sizes, dtype=np.float64)))
        combined = np.zeros(self.n, dtype=np.int64)
        if n_possible <= _DENSE_CELL_LIMIT:
            for m, size in zip(self.margins, sizes, strict=True):
                combined = combined * size + m.codes
            occupied = np.flatnonzero(np.bincount(combined, minlength=n_possible))
            remap = np.full(n_possible, -1, dtype=np.int64)
            remap[occupied] = np.arange(occupied.size)
            self.cell = remap[combined]
            # Decode each occupied cell's margin levels from the mixed-radix code.
            codes = []
            rest = occupied.copy()
            for size in reversed(sizes):
                codes.append(rest % size)
                rest //= size
            self.cell_codes = list(reversed(codes))
        else:
            stacked = np.stack([m.codes for m in self.margins], axis=1)
            uniq, self.cell = np.unique(stacked, axis=0, return_inverse=True)
            self.cell = self.cell.ravel()
            self.cell_codes = [uniq[:, j] for j in range(uniq.shape[1])]
        self.n_cells = len(self.cell_codes[0])
        self.sizes = sizes

    # -- cell-space helpers --------------------------------------------------------------------

    def cell_sum(self, values: np.ndarray) -> np.ndarray:
        """Row values (1-D or 2-D) summed into cells."""
        return group_sum(self.cell, values, self.n_cells)

    def _achieved(self, cw: np.ndarray) -> list[np.ndarray]:
        return [group_sum(cc, cw, size)
                for cc, size in zip(self.cell_codes, self.sizes, strict=True)]

    def _targets(self, m: int, cw: np.ndarray) -> np.ndarray:
        t = self.margins[m].targets
        return t if cw.ndim == 1 else t[:, None]

    def _worst(self, cw: np.ndarray, targets: Sequence[np.ndarray] | None = None
               ) -> tuple[float, int, int]:
        worst = (-1.0, 0, 0)
        for m, got in enumerate(self._achieved(cw)):
            t = self._targets(m, cw) if targets is None else targets[m]
            err = np.abs(got - t)
            if err.ndim == 2:
                err = err.max(axis=1)
            i = int(np.argmax(err))
            if err[i] > worst[0]:
                worst = (float(err[i]), m, i)
        return worst

    # -- raking ----------------------------------------------------------------------------------

    def rake_cells(self, base: np.ndarray, *, tol: float, max_iter: int,
                   targets: Sequence[np.ndarray] | None = None) -> np.ndarray:
        """Iterative proportional fitting of cell totals ``base`` (C,) or (C, R) to the margins.

        Returns the raked cell totals. ``targets`` overrides the margins' totals (trimming
        rakes the uncapped rows to what the capped rows leave).
        """
        cw = base.astype(np.float64, copy=True)
        tgt = [self._targets(m, cw) if targets is None else
               (targets[m] if cw.ndim == 1 else targets[m][:, None])
               for m in range(len(self.margins))]
        limit = tol * self.total
        for _ in range(max_iter):
            for m, (cc, size) in enumerate(zip(self.cell_codes, self.sizes, strict=True)):
                got = group_sum(cc, cw, size)
                empty = (got <= 0) & (tgt[m] > 0)
                if empty.any():
                    i = int(np.argwhere(empty)[0][0])
                    margin = self.margins[m]
                    raise DhsurveyError(
                        f"level {margin.levels[i]!r} of {margin.column!r} has no positive "
                        "weight to scale up", code="rake-level-missing",
                        column=margin.column, level=margin.levels[i])
                with np.errstate(divide="ignore", invalid="ignore"):
                    factor = np.where(got > 0, tgt[m] / got, 0.0)
                cw *= factor[cc]
            err, m, i = self._worst(cw, tgt)
            if err <= limit:
                return cw
        margin = self.margins[m]
        raise DhsurveyError(
            f"raking did not converge in {max_iter} iterations: {margin.column!r} level "
            f"{margin.levels[i]!r} is off by {err:.3g} (tolerance {limit:.3g})",
            code="rake-no-convergence", column=margin.column, level=margin.levels[i])

    # -- linear (GREG) calibration -------------------------------------------------------------

    def basis(self) -> tuple[np.ndarray, np.ndarray]:
        """Full-rank cell design matrix (intercept + all but the first level of each margin)
        and the matching population totals, as R's ``model.matrix(~a + b)`` builds them."""
        cols = [np.ones(self.n_cells)]
        totals = [self.total]
        for m, cc in zip(self.margins, self.cell_codes, strict=True):
            for level in range(1, len(m.levels)):
                cols.append((cc == level).astype(np.float64))
                totals.append(float(m.targets[level]))
        return np.stack(cols, axis=1), np.array(totals)

    def linear_cells(self, base: np.ndarray, *, bounds: tuple[float, float] | None,
                     method: str, tol: float, max_iter: int) -> np.ndarray:
        """Calibration factors g per cell (1-D or one column per replicate), R's ``grake``."""
        x, totals = self.basis()
        if base.ndim == 2:
            return np.stack([self.linear_cells(base[:, r], bounds=bounds, method=method,
                                               tol=tol, max_iter=max_iter)
                             for r in range(base.shape[1])], axis=1)
        lower, upper = (-np.inf, np.inf) if bounds is None else (float(bounds[0]),
                                                                 float(bounds[1]))
        sample = x.T @ base
        if method == "linear" and bounds is None:
            lam = np.linalg.lstsq((x * base[:, None]).T @ x, totals - sample, rcond=None)[0]
            return 1.0 + x @ lam

        def fm1(u: np.ndarray) -> np.ndarray:  # g - 1 as a function of x'eta
            if method == "linear":
                return np.clip(u + 1.0, lower, upper) - 1.0
            a = (upper - lower) / ((upper - 1.0) * (1.0 - lower))
            eau = np.exp(np.clip(a * u, -700, 700))
            return ((lower * (upper - 1.0) + upper * (1.0 - lower) * eau)
                    / (upper - 1.0 + (1.0 - lower) * eau) - 1.0)

        def dfm(u: np.ndarray) -> np.ndarray:
            if method == "linear":
                return ((u < upper - 1.0) & (u > lower - 1.0)).astype(np.float64)
            a = (upper - lower) / ((upper - 1.0) * (1.0 - lower))
            eau = np.exp(np.clip(a * u, -700, 700))
            den = upper - 1.0 + (1.0 - lower) * eau
            return (upper * (1.0 - lower) * eau * a / den
                    - (lower * (upper - 1.0) + upper * (1.0 - lower) * eau)
                    * (1.0 - lower) * eau * a / den**2)

        eta = np.zeros(x.shape[1])
        u = x @ eta
        limit = tol * self.total
        for _ in range(max_iter):
            tmat = (x * (base * dfm(u))[:, None]).T @ x
            misfit = totals - sample - x.T @ (base * fm1(u))
            eta = eta + np.linalg.pinv(tmat, rcond=256 * np.finfo(float).eps) @ misfit
            u = x @ eta
            misfit = totals - sample - x.T @ (base * fm1(u))
            if np.max(np.abs(misfit)) <= limit:
                return 1.0 + fm1(u)
        raise DhsurveyError(
            f"{method} calibration with bounds {bounds} did not converge in {max_iter} "
            f"iterations (largest misfit {np.max(np.abs(misfit)):.3g}); widen the bounds",
            code="calibrate-no-convergence")

    # -- checks ----------------------------------------------------------------------------------

    def assert_margins(self, w: np.ndarray, tol: float, *, code: str = "rake-no-convergence",
                       what: str = "calibrated weights") -> None:
        """Raise unless row weights ``w`` reproduce every margin within ``tol * N``."""
        limit = max(tol, 1e-12) * self.total
        for m in self.margins:
            got = np.bincount(m.codes, weights=w, minlength=len(m.levels))
            err = np.abs(got - m.targets)
            i = int(np.argmax(err))
            if err[i] > limit:
                raise DhsurveyError(
                    f"{what} give {got[i]:.10g} for {m.column!r} level {m.levels[i]!r}, "
                    f"margin {m.targets[i]:.10g}", code=code, column=m.column,
                    level=m.levels[i])


def _factor(cw: np.ndarray, base: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(base > 0, cw / base, 0.0)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def rake(df: pd.DataFrame, weight: str, margins: Margins, tol: float = 1e-10,
         max_iter: int = 1000) -> pd.Series:
    """Rake (iterative proportional fitting) the ``weight`` column to population ``margins``.

    Why raking: margins (sex, age group, region) are what censuses publish; raking matches all
    of them at once without needing the joint table, and stays positive. The result is the
    *expansion* weight (sums to N). Achieved margins are asserted within ``tol * N`` before
    returning, so a silent partial convergence (R's default ``epsilon = 1``) cannot happen.

    Returns the calibrated weights as a Series on ``df.index``.
    """
    w = weights_array(df, weight)
    model = CellModel(df, margins, tol=tol)
    base = model.cell_sum(w)
    cw = model.rake_cells(base, tol=tol, max_iter=max_iter)
    out = w * _factor(cw, base)[model.cell]
    model.assert_margins(out, tol)
    return pd.Series(out, index=df.index, name=weight)


def linear_calibrate(df: pd.DataFrame, weight: str, margins: Margins,
                     bounds: tuple[float, float] | None = None, *, method: str = "linear",
                     tol: float = 1e-10, max_iter: int = 100) -> pd.Series:
    """Linear (GREG) calibration of ``weight`` to the same ``margins`` as :func:`rake`.

    Why: the linear (chi-square distance) calibration has a closed form and is what R's
    ``calibrate(design, ~a + b, totals)`` computes; its weights ``w0 · (1 + x'λ)`` can be
    negative. ``bounds=(L, U)`` restricts the ratio g = w / w0 to [L, U]: with
    ``method="linear"`` by truncation, with ``method="logit"`` by the smooth logit distance
    (both iterate as R's ``grake`` does; unlike R, the bounds are never reinterpreted after
    rescaling small base weights). Use :class:`~dhsurvey.weight.variance.Design` with
    ``calibration="linear"`` and ``base_weight`` for matching variances.
    """
    if method not in ("linear", "logit"):
        raise DhsurveyError(f"unknown calibration method {method!r}",
                            code="calibrate-bad-method")
    if method == "logit" and bounds is None:
        raise DhsurveyError("logit calibration needs finite bounds (L < 1 < U)",
                            code="calibrate-bad-method")
    if bounds is not None and not (bounds[0] < 1.0 < bounds[1]):
        raise DhsurveyError(f"bounds {bounds} must satisfy L < 1 < U",
                            code="calibrate-bad-method")
    w = weights_array(df, weight)
    model = CellModel(df, margins, tol=tol)
    g = model.linear_cells(model.cell_sum(w), bounds=bounds, method=method, tol=tol,
                           max_iter=max_iter)
    out = w * g[model.cell]
    model.assert_margins(out, tol, code="calibrate-no-convergence")
    return pd.Series(out, index=df.index, name=weight)


@dataclass(frozen=True)
class TrimResult:
    """Outcome of :func:`trim`: the weights and the numbers a weighting report quotes."""

    weights: pd.Series
    cap: float
    rounds: int
    n_trimmed: int
    deff_before: float
    deff_after: float
    max_before: float
    max_after: float


def trim(df: pd.DataFrame, weight: str, margins: Margins, cap: float | None = None,
         max_rounds: int = 20, *, cap_factor: float = 3.5, tol: float = 1e-10,
         max_iter: int = 1000) -> TrimResult:
    """Trim extreme weights, then re-rake, so both the cap and the margins hold.

    Rule (documented for the weighting report):

    1. Rake ``weight`` to ``margins`` (the untrimmed expansion weights; Kish deff *before*).
    2. ``cap`` defaults to ``cap_factor`` (3.5) × the median positive raked weight.
    3. Each round: every weight above the cap is set to the cap and stays there; the excess
       is redistributed by re-raking *only the uncapped rows* to what the capped rows leave of
       each margin. Stop when no uncapped weight exceeds the cap.

    Because capped rows are frozen, the capped set only grows and the loop ends in a few
    rounds with margins met within ``tol * N`` and every weight ≤ cap. Raises
    ``trim-infeasible`` when the capped rows alone exceed a margin level, and
    ``trim-no-convergence`` after ``max_rounds``.
    """
    w0 = weights_array(df, weight)
    model = CellModel(df, margins, tol=tol)
    base = model.cell_sum(w0)
    w = w0 * _factor(model.rake_cells(base, tol=tol, max_iter=max_iter), base)[model.cell]
    deff_before, max_before = kish_deff(w), float(w.max(initial=0.0))
    if cap is None:
        positive = w[w > 0]
        cap = cap_factor * float(np.median(positive)) if positive.size else 0.0
    cap = float(cap)
    if not cap > 0:
        raise DhsurveyError(f"trimming cap must be positive, got {cap}", code="trim-infeasible")
    capped = np.zeros(w.size, dtype=bool)
    rounds = 0
    while True:
        over = ~capped & (w > cap * (1 + 1e-12))
        if not over.any():
            break
        if rounds == max_rounds:
            raise DhsurveyError(
                f"trimming still finds weights above the cap {cap:.6g} after {max_rounds} "
                "rounds", code="trim-no-convergence", cap=cap)
        rounds += 1
        capped |= over
        free = np.where(capped, 0.0, w)
        left = [m.targets - np.bincount(m.codes, weights=np.where(capped, cap, 0.0),
                                        minlength=len(m.levels)) for m in model.margins]
        for m, t in zip(model.margins, left, strict=True):
            if (t < -tol * model.total).any():
                i = int(np.argmin(t))
                raise DhsurveyError(
                    f"capped weights alone exceed the margin of {m.column!r} level "
                    f"{m.levels[i]!r}: raise the cap", code="trim-infeasible",
                    column=m.column, level=m.levels[i], cap=cap)
        fbase = model.cell_sum(free)
        try:
            cw = model.rake_cells(fbase, tol=tol, max_iter=max_iter,
                                  targets=[np.maximum(t, 0.0) for t in left])
        except DhsurveyError as exc:
            raise DhsurveyError(f"re-raking after trimming failed: {exc.message}",
                                code="trim-infeasible", cap=cap, **exc.context) from exc
        w = np.where(capped, cap, free * _factor(cw, fbase)[model.cell])
    model.assert_margins(w, tol, code="trim-no-convergence", what="trimmed weights")
    return TrimResult(
        weights=pd.Series(w, index=df.index, name=weight), cap=cap, rounds=rounds,
        n_trimmed=int(capped.sum()), deff_before=deff_before, deff_after=kish_deff(w),
        max_before=max_before, max_after=float(w.max(initial=0.0)),
    )
