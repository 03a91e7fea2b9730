"""Design-based estimates and standard errors that reproduce R's ``survey`` package.

Why our own code: published figures must be checkable against R (the reference tool of
reviewers), and the Python options either miss stratified cluster variance or build jackknife
replicates wrongly for unsorted strata (see ``shared/REFERENCE.md``). Everything here is
vectorised with ``np.bincount``: no loop over strata, PSUs or rows.

What R computes, and therefore what this module computes:

- **Taylor linearisation** (``svydesign`` + ``svymean``/``svytotal``/``svyratio``): the
  estimator's linearised values x_i (mean: (y_i − ȳ)·w_i/Σw; total: y_i·w_i; ratio:
  (y_i − R·x_i)·w_i/X̂) are summed by PSU; per stratum h with n_h PSUs,
  v_h = f_h · n_h/(n_h − 1) · Σ (t_hi − t̄_h)², f_h = (N_h − n_h)/N_h (1 without ``fpc``).
- **Multistage** (several ``psu`` columns with one ``fpc`` column per stage, R's default
  ``survey.ultimate.cluster = FALSE``): stage-2 variance within each PSU, weighted by the
  first-stage sampling fraction n_h/N_h, and so on down. Without ``fpc`` only the first stage
  counts (the ultimate-cluster, with-replacement approximation), as in R.
- **Domains** (``by=``): x is set to 0 outside the domain and the *full* design is used, as R's
  ``svyby`` does — never a subset design, which would understate the SE.
- **Calibration-aware SEs** (``calibrated_on=``): x is replaced by its residual before the PSU
  sums. For ``rake()`` R backfits: for 10 sweeps over the margins,
  ``x ← x − w · ave(x / w, margin)`` — an *unweighted* projection of x/w on the margin
  dummies, stopped after exactly 10 sweeps (:data:`RAKING_SWEEPS`). For ``calibrate()``
  (linear, bounded, logit) R takes the exact residual of x/w regressed on the calibration
  model matrix *weighted by the base weights*, times w. Both are reproduced to ~1e-13.
- **Lonely PSUs** (a stratum with one PSU), R's ``options(survey.lonely.psu)``: ``"fail"``
  (default here as in R: choose a policy up front), ``"adjust"`` (the lonely PSU's total is
  compared with 0 instead of its stratum mean, i.e. with the grand mean for centred x),
  ``"certainty"`` and ``"remove"`` (the stratum contributes 0; in R 4.1 these two coincide for
  Taylor variances). A stratum whose ``fpc`` says every PSU was taken contributes 0 first.
- **Replicates** (``Design.jk1``/``Design.jkn`` = R's ``as.svrepdesign(type="JK1"/"JKn")``):
  JK1 drops each PSU in turn, scaling the others by n/(n−1), with
  ``scale = f·(n−1)/n``; JKn does so within strata with ``rscales_h = f_h·(n_h−1)/n_h``.
  v = scale · Σ_r rscales_r (θ_r − θ̄)², θ̄ the mean of the replicates (R's default
  ``survey.replicates.mse = FALSE``; ``mse=True`` centres on θ̂). Replicate factors are built
  per PSU code, so row order never matters. ``recalibrate=True`` re-rakes (or re-calibrates)
  every replicate to the margins, as R's ``rake()``/``calibrate()`` on a replicate design.
- **Confidence intervals** use the normal quantile, R's ``confint`` default for these
  statistics (``df = Inf``).

``fpc`` is a column giving, per stratum (stage 1) or per parent unit (later stages), either
the population number of units (all values ≥ 1) or the sampling fraction (all values ≤ 1);
it must be constant within its stratum.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from dhsurvey.errors import DhsurveyError
from dhsurvey.weight.calibrate import CellModel, Margins, group_sum, weights_array

#: Lonely-PSU policies (R's ``survey.lonely.psu`` values this module supports).
LONELY_PSU = ("fail", "adjust", "certainty", "remove")
#: R's ``svyrecvar`` backfits raking residuals for exactly this many sweeps.
RAKING_SWEEPS = 10
#: R treats a stratum as sampled with certainty when its finite population correction is below.
_CERTAINTY = 1e-7
_CALIBRATIONS = ("rake", "linear")


def variance_units(strata: pd.Series, psu: pd.Series, per_stratum: int) -> np.ndarray:
    """Variance units: each PSU its own unit, or PSUs dealt into ``per_stratum`` groups.

    Why: a JKn release carries one replicate weight per PSU, so a sample grown by adding PSUs
    grows its columns too (1,760 replicates at 10,000 children). Grouping the PSUs of a
    stratum into at most ``per_stratum`` variance units keeps the replicate count fixed while
    the jackknife stays valid (the random-groups principle: each group is a sample of the
    stratum's PSUs). PSUs are taken in order of their number — frame order — and dealt round
    robin, so every group spreads across the stratum like a systematic subsample. The result
    is a unit code per row, unique across strata (stratum rank × per_stratum + group).
    """
    if per_stratum < 2:
        raise DhsurveyError("variance units need at least 2 per stratum", code="design-invalid")
    frame = pd.DataFrame({"h": strata.to_numpy(), "psu": psu.to_numpy()})
    if frame.isna().any().any():
        raise DhsurveyError("stratum or PSU missing on some rows", code="design-invalid")
    pairs = frame.drop_duplicates().sort_values(["h", "psu"], kind="stable")
    rank = pairs.groupby("h", sort=False).cumcount().to_numpy()
    h_code = pd.factorize(pairs["h"], sort=True)[0]
    pairs["unit"] = h_code * per_stratum + rank % per_stratum
    return frame.merge(pairs, on=["h", "psu"], how="left")["unit"].to_numpy()


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its standard error; ``n`` is the number of sample rows used."""

    estimate: float
    se: float
    n: int
    deff: float | None = None
    statistic: str = "mean"

    @property
    def var(self) -> float:
        """The variance (``se`` squared)."""
        return self.se * self.se

    @property
    def cv(self) -> float:
        """Coefficient of variation, se / |estimate|."""
        return self.se / abs(self.estimate) if self.estimate else float("nan")

    def ci(self, level: float = 0.95) -> tuple[float, float]:
        """Normal-theory interval, as R's ``confint`` for ``svymean``/``svytotal``."""
        z = NormalDist().inv_cdf(0.5 + level / 2.0)
        return (self.estimate - z * self.se, self.estimate + z * self.se)


@dataclass(frozen=True)
class Replicates:
    """User-supplied replicate weights (for data published with them).

    ``columns`` hold full replicate weights (the analysis weights of each replicate), the
    variance is ``scale · Σ rscales_r (θ_r − θ̄)²`` (``rscales`` default all 1); ``mse=True``
    centres on the full-sample estimate instead of the replicate mean.
    """

    columns: Sequence[str]
    scale: float
    rscales: Sequence[float] | None = None
    mse: bool = False


# --------------------------------------------------------------------------------------------
# Design structure
# --------------------------------------------------------------------------------------------


@dataclass
class _Stage:
    unit: np.ndarray  # (n,) unit code at this stage
    n_units: int
    parent: np.ndarray  # (n_units,) stratum (stage 1) or parent unit (later stages)
    n_parent: int
    count: np.ndarray  # (n_parent,) units per parent
    weight: np.ndarray  # (n_parent,) scale × multiplier of earlier stages; 0 = no contribution
    center: np.ndarray  # (n_parent,) False only for lonely 'adjust'
    fraction: np.ndarray  # (n_parent,) sampling fraction n/N passed down to the next stage
    f: np.ndarray  # (n_parent,) finite population correction (N − n)/N
    mult: np.ndarray  # (n_parent,) product of earlier stages' sampling fractions


def _factorize(values: pd.Series | np.ndarray, what: str, column: str) -> tuple[np.ndarray, Any]:
    codes, uniques = pd.factorize(values, sort=False)
    if (codes < 0).any():
        raise DhsurveyError(f"{what} column {column!r} has missing values",
                            code="design-missing-value", column=column)
    return codes.astype(np.int64), uniques


def _per_group(codes: np.ndarray, values: np.ndarray, size: int, column: str,
               group: str) -> np.ndarray:
    """The one value each group carries (fpc per stratum); refuse values varying within."""
    out = np.full(size, np.nan)
    out[codes] = values
    if not np.allclose(out[codes], values, rtol=1e-12, atol=0.0, equal_nan=True):
        raise DhsurveyError(f"{column!r} varies within a {group}", code="design-fpc-invalid",
                            column=column)
    return out


def _jk1_replicates(st: _Stage) -> tuple[np.ndarray, float, np.ndarray]:
    """JK1 (unstratified delete-one) replicate factors per PSU, scale and rscales; no
    replicate when the one stratum was taken whole."""
    n1, f = st.n_units, st.f
    if n1 < 2:
        raise DhsurveyError("JK1 needs at least two PSUs", code="design-invalid")
    if f[0] < _CERTAINTY and st.fraction[0] > 0:
        factors = np.ones((n1, 0))
    else:
        factors = np.full((n1, n1), n1 / (n1 - 1))
        np.fill_diagonal(factors, 0.0)
    return factors, float(f[0] * (n1 - 1) / n1), np.ones(factors.shape[1])


def _jkn_replicates(st: _Stage, lonely_psu: str) -> tuple[np.ndarray, float, np.ndarray]:
    """JKn (stratified delete-one) replicate factors per PSU, scale and rscales: one
    replicate per PSU of a stratum with two or more (strata taken whole have none), plus one
    per lonely stratum under ``lonely_psu='adjust'``."""
    count, f, parent, n_strata = st.count, st.f, st.parent, st.n_parent
    dropped: list[int] = []  # the PSU each ordinary replicate deletes
    adjust: list[int] = []  # lonely strata getting an 'adjust' replicate
    certain = (f < _CERTAINTY) & (st.fraction > 0)
    for u in range(st.n_units):  # PSU codes run in order of first appearance
        h = parent[u]
        if certain[h]:
            continue
        if count[h] == 1:
            if lonely_psu == "adjust":
                adjust.append(int(h))
            continue
        dropped.append(u)
    d = np.asarray(dropped, dtype=np.int64)
    rep_stratum = parent[d]
    same = parent[:, None] == rep_stratum[None, :]
    factors = np.where(same, (count / np.maximum(count - 1, 1))[rep_stratum], 1.0)
    factors[d, np.arange(d.size)] = 0.0
    rscales = f[rep_stratum] * (count[rep_stratum] - 1) / count[rep_stratum]
    if adjust:
        extra = np.where(parent[:, None] == np.asarray(adjust)[None, :], 0.0,
                         n_strata / (n_strata - 1))
        factors = np.concatenate([factors, extra], axis=1)
        rscales = np.concatenate([rscales, np.full(len(adjust), (n_strata - 1) / n_strata)])
    if factors.shape[1] == 0 and st.n_units:
        raise DhsurveyError("all strata were sampled exhaustively: no replicates",
                            code="design-invalid")
    return factors, 1.0, rscales


class _RakeProjection:
    """R's raking residuals, backfitted in margin-level space (rows touched once per margin)."""

    def __init__(self, model: CellModel, w: np.ndarray) -> None:
        positive = (w > 0).astype(np.float64)
        self.codes = [m.codes for m in model.margins]
        self.sizes = [len(m.levels) for m in model.margins]
        self.count = [np.bincount(c, weights=positive, minlength=s)
                      for c, s in zip(self.codes, self.sizes, strict=True)]
        k = len(self.codes)
        self.cross: dict[tuple[int, int], np.ndarray] = {}
        for a in range(k):
            for b in range(k):
                if a != b:
                    flat = self.codes[a] * self.sizes[b] + self.codes[b]
                    self.cross[a, b] = np.bincount(
                        flat, weights=positive, minlength=self.sizes[a] * self.sizes[b]
                    ).reshape(self.sizes[a], self.sizes[b])
        self.w = w
        with np.errstate(divide="ignore"):
            self.inv_w = np.where(w > 0, 1.0 / w, 0.0)

    def residuals(self, x: np.ndarray) -> np.ndarray:
        out = np.empty_like(x)
        k = len(self.codes)
        for j in range(x.shape[1]):
            e = x[:, j] * self.inv_w
            sums: list[np.ndarray] = [np.bincount(c, weights=e, minlength=s)
                    for c, s in zip(self.codes, self.sizes, strict=True)]
            adj = [np.zeros(s) for s in self.sizes]
            for _ in range(RAKING_SWEEPS):
                for a in range(k):
                    acc = sums[a].copy()
                    for b in range(k):
                        if b != a:
                            acc -= self.cross[a, b] @ adj[b]
                    with np.errstate(divide="ignore", invalid="ignore"):
                        adj[a] = np.where(self.count[a] > 0, acc / self.count[a], 0.0)
            fitted = adj[0][self.codes[0]]
            for a in range(1, k):
                fitted = fitted + adj[a][self.codes[a]]
            out[:, j] = x[:, j] - self.w * fitted
        return out


class _GregProjection:
    """R's ``greg_calibration`` residuals: x/w regressed on the model, base-weighted."""

    def __init__(self, model: CellModel, w: np.ndarray, w0: np.ndarray) -> None:
        self.cell = model.cell
        self.n_cells = model.n_cells
        self.basis, _ = model.basis()
        base = model.cell_sum(w0)
        self.root = np.sqrt(base)
        self.pinv = np.linalg.pinv(self.basis * self.root[:, None])
        self.w = w
        self.w0 = w0
        with np.errstate(divide="ignore"):
            self.inv_w = np.where(w > 0, 1.0 / w, 0.0)

    def residuals(self, x: np.ndarray) -> np.ndarray:
        out = np.empty_like(x)
        for j in range(x.shape[1]):
            cells = np.bincount(self.cell, weights=self.w0 * x[:, j] * self.inv_w,
                                minlength=self.n_cells)
            with np.errstate(divide="ignore", invalid="ignore"):
                rhs = np.where(self.root > 0, cells / self.root, 0.0)
            fitted = (self.basis @ (self.pinv @ rhs))[self.cell]
            out[:, j] = x[:, j] - self.w * fitted
        return out


@dataclass
class _ReplicateSet:
    """Replicate weights, stored compactly.

    Factor form (jackknife): replicate r's weight of row i is
    ``start_i · factors[unit_i, r] · cal[cell_i, r]`` (``cal`` only when re-calibrated).
    Matrix form (user columns): ``matrix[i, r]``.
    """

    kind: str
    scale: float
    rscales: np.ndarray
    mse: bool
    start: np.ndarray | None = None
    unit: np.ndarray | None = None
    n_units: int = 0
    factors: np.ndarray | None = None
    cell: np.ndarray | None = None
    n_cells: int = 1
    cal: np.ndarray | None = None
    matrix: np.ndarray | None = None

    @property
    def n_replicates(self) -> int:
        return len(self.rscales)

    def totals(self, v: np.ndarray) -> np.ndarray:
        """Replicate totals Σ_i w_ri v_ij, shape (R, k), for row values ``v`` (n, k)."""
        if self.matrix is not None:
            return self.matrix.T @ v
        assert self.start is not None and self.unit is not None and self.factors is not None
        if self.cal is None:
            t = group_sum(self.unit, self.start[:, None] * v, self.n_units)
            return self.factors.T @ t
        assert self.cell is not None
        out = np.empty((self.n_replicates, v.shape[1]))
        flat = self.unit * self.n_cells + self.cell
        for j in range(v.shape[1]):
            t = np.bincount(flat, weights=self.start * v[:, j],
                            minlength=self.n_units * self.n_cells).reshape(self.n_units,
                                                                           self.n_cells)
            out[:, j] = ((t.T @ self.factors) * self.cal).sum(axis=0)
        return out

    def weights(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Dense (n, R) replicate analysis weights (for export; memory n × R), or those of
        the positions ``rows`` only (a release written in batches)."""
        if self.matrix is not None:
            return self.matrix if rows is None else self.matrix[rows]
        assert self.start is not None and self.unit is not None and self.factors is not None
        take = slice(None) if rows is None else rows
        out = self.start[take][:, None] * self.factors[self.unit[take]]
        if self.cal is not None and self.cell is not None:
            out = out * self.cal[self.cell[take]]
        return out

    def variance(self, theta: np.ndarray, reps: np.ndarray) -> np.ndarray:
        """R's ``svrVar`` for each column: replicates with NaN are dropped as R does."""
        out = np.empty(reps.shape[1])
        for j in range(reps.shape[1]):
            r = reps[:, j]
            ok = np.isfinite(r)
            rs = self.rscales[ok]
            if not ok.any():
                out[j] = np.nan if self.n_replicates else 0.0
                continue
            center = theta[j] if self.mse else r[ok][rs > 0].mean()
            out[j] = self.scale * np.sum(rs * (r[ok] - center) ** 2)
        return out


class Design:
    """A survey design: weights, strata, clusters, fpc, calibration and/or replicates.

    ``psu`` and ``fpc`` take one column per stage (a string for one stage). ``nest=True``
    makes PSU ids unique within strata (R's ``nest=TRUE``); otherwise a PSU id seen in two
    strata is an error. ``calibrated_on`` is the margins dict the ``weight`` column was
    calibrated to; with ``calibration="rake"`` (default, R's ``rake()``) nothing else is
    needed, with ``calibration="linear"`` (R's ``calibrate()``) pass the pre-calibration
    weights as ``base_weight``. ``lonely_psu`` is R's ``survey.lonely.psu`` (default
    ``"fail"``, as in R). ``replicates`` takes user-supplied replicate weight columns
    (:class:`Replicates`); :meth:`jk1` and :meth:`jkn` build jackknife replicates.
    """

    def __init__(self, df: pd.DataFrame, weight: str, strata: str | None = None,
                 psu: str | Sequence[str] | None = None,
                 fpc: str | Sequence[str] | None = None, calibrated_on: Margins | None = None,
                 lonely_psu: str = "fail", replicates: Replicates | None = None, *,
                 nest: bool = False, calibration: str = "rake",
                 base_weight: str | None = None) -> None:
        if lonely_psu not in LONELY_PSU:
            raise DhsurveyError(f"lonely_psu must be one of {LONELY_PSU}, not {lonely_psu!r}",
                                code="design-invalid")
        if calibration not in _CALIBRATIONS:
            raise DhsurveyError(f"calibration must be one of {_CALIBRATIONS}",
                                code="design-invalid")
        self.df = df
        self.weight = weight
        self.lonely_psu = lonely_psu
        self.calibrated_on = calibrated_on
        self.calibration = calibration
        self._n = len(df)
        self._w = weights_array(df, weight, code="design-bad-weight")
        self._strata_col = strata
        psu_cols = [psu] if isinstance(psu, str) else list(psu or [])
        fpc_cols = [fpc] if isinstance(fpc, str) else list(fpc or [])
        if len(fpc_cols) > max(len(psu_cols), 1):
            raise DhsurveyError("more fpc columns than sampling stages", code="design-invalid")
        self._psu_cols = psu_cols
        self._fpc_cols = fpc_cols
        self._build_stages(strata, psu_cols, fpc_cols, nest)
        self._projection: _RakeProjection | _GregProjection | None = None
        self._model: CellModel | None = None
        if calibrated_on is not None:
            self._model = CellModel(df, calibrated_on, tol=1e-6)
            self._model.assert_margins(
                self._w, 1e-6, code="design-calibration-mismatch",
                what=f"weights {weight!r} (expected calibrated to calibrated_on)")
            if calibration == "rake":
                self._projection = _RakeProjection(self._model, self._w)
            else:
                if base_weight is None:
                    raise DhsurveyError("calibration='linear' needs base_weight (the weights "
                                        "before calibration)", code="design-invalid")
                w0 = weights_array(df, base_weight, code="design-bad-weight")
                self._projection = _GregProjection(self._model, self._w, w0)
        self._rep: _ReplicateSet | None = None
        if replicates is not None:
            self._rep = self._user_replicates(replicates)

    # -- construction --------------------------------------------------------------------------

    def _build_stages(self, strata: str | None, psu_cols: list[str], fpc_cols: list[str],
                      nest: bool) -> None:
        n = self._n
        if strata is not None:
            if strata not in self.df.columns:
                raise DhsurveyError(f"strata column {strata!r} not found",
                                    code="design-column-missing", column=strata)
            s_codes, s_labels = _factorize(self.df[strata], "strata", strata)
        else:
            s_codes, s_labels = np.zeros(n, dtype=np.int64), pd.Index(["(all)"])
        self._strata_codes = s_codes
        self._strata_labels = list(s_labels)
        for col in psu_cols + fpc_cols:
            if col not in self.df.columns:
                raise DhsurveyError(f"design column {col!r} not found",
                                    code="design-column-missing", column=col)
        # Stage-1 units.
        if psu_cols:
            raw, _ = _factorize(self.df[psu_cols[0]], "psu", psu_cols[0])
            if nest:
                raw, _ = _factorize(s_codes * (int(raw.max()) + 1) + raw, "psu", psu_cols[0])
        else:
            raw = np.arange(n, dtype=np.int64)
        n_units = int(raw.max()) + 1 if n else 0
        parent = np.full(n_units, -1, dtype=np.int64)
        parent[raw] = s_codes
        if (parent[raw] != s_codes).any():
            raise DhsurveyError(
                f"PSU ids of {psu_cols[0]!r} repeat across strata: pass nest=True if ids are "
                "only unique within strata", code="design-psu-not-nested", column=psu_cols[0])
        if strata is None and n_units == 1:
            raise DhsurveyError("the design has only one primary sampling unit",
                                code="design-invalid")
        stages = [self._stage(raw, n_units, parent, len(s_labels), fpc_cols[:1], 1,
                              np.ones(len(s_labels)), self._strata_labels)]
        # Later stages only while every earlier stage has an fpc (R's multistage rule).
        for k in range(1, len(psu_cols)):
            if len(fpc_cols) <= k:
                break
            prev = stages[-1]
            vals, _ = _factorize(self.df[psu_cols[k]], "psu", psu_cols[k])
            unit, _ = _factorize(prev.unit * (int(vals.max()) + 1) + vals, "psu", psu_cols[k])
            m = int(unit.max()) + 1
            par = np.empty(m, dtype=np.int64)
            par[unit] = prev.unit
            mult = (prev.mult * prev.fraction)[prev.parent]
            stages.append(self._stage(unit, m, par, prev.n_units, fpc_cols[k:k + 1], k + 1,
                                      mult, None))
        self._stages = stages
        self._psu_codes = raw
        self._n_psu = n_units

    def _stage(self, unit: np.ndarray, n_units: int, parent: np.ndarray, n_parent: int,
               fpc_col: list[str], stage: int, mult: np.ndarray,
               labels: list[Any] | None) -> _Stage:
        count = np.bincount(parent, minlength=n_parent).astype(np.float64)
        if fpc_col:
            col = fpc_col[0]
            values = pd.to_numeric(self.df[col], errors="coerce").to_numpy(np.float64)
            if not np.isfinite(values).all() or (values < 0).any():
                raise DhsurveyError(f"fpc column {col!r} has missing or negative values",
                                    code="design-fpc-invalid", column=col)
            row_parent = parent[unit]
            per = _per_group(row_parent, values, n_parent, col,
                             "stratum" if stage == 1 else f"stage-{stage - 1} unit")
            if (values > 1).any():
                if (values < 1).any():
                    raise DhsurveyError(f"fpc column {col!r} mixes population counts (> 1) and "
                                        "sampling fractions (< 1)", code="design-fpc-invalid",
                                        column=col)
                popsize = per
            else:
                with np.errstate(divide="ignore"):
                    popsize = np.where(per > 0, count / per, np.inf)
            if (popsize < count - 1e-9).any():
                raise DhsurveyError(f"fpc column {col!r} implies more than 100% sampling",
                                    code="design-fpc-invalid", column=col)
            with np.errstate(invalid="ignore"):
                f = np.where(np.isinf(popsize), 1.0, (popsize - count) / popsize)
                fraction = np.where(np.isinf(popsize), 0.0, count / popsize)
        else:
            f = np.ones(n_parent)
            fraction = np.zeros(n_parent)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(count > 1, f * count / np.maximum(count - 1, 1), f)
        scale = np.where(f < _CERTAINTY, 0.0, scale)
        center = np.ones(n_parent, dtype=bool)
        lonely = (count == 1) & (f >= _CERTAINTY)
        if lonely.any():
            where = [labels[i] if labels is not None else i for i in np.flatnonzero(lonely)]
            if self.lonely_psu == "fail":
                what = "stratum" if stage == 1 else f"stage-{stage - 1} unit"
                raise DhsurveyError(
                    f"{int(lonely.sum())} {what}(s) have a single sampling unit at stage "
                    f"{stage} (e.g. {where[0]!r}); choose lonely_psu='adjust', 'certainty' or "
                    "'remove'", code="design-lonely-psu", stratum=where[0], stage=stage)
            if self.lonely_psu == "adjust":
                center[lonely] = False
            else:
                scale = np.where(lonely, 0.0, scale)
        st = _Stage(unit=unit, n_units=n_units, parent=parent, n_parent=n_parent, count=count,
                    weight=scale * mult, center=center, fraction=fraction, f=f, mult=mult)
        return st

    def _user_replicates(self, spec: Replicates) -> _ReplicateSet:
        cols = list(spec.columns)
        missing = [c for c in cols if c not in self.df.columns]
        if missing:
            raise DhsurveyError(f"replicate weight column {missing[0]!r} not found",
                                code="design-column-missing", column=missing[0])
        matrix = np.column_stack([weights_array(self.df, c, code="design-bad-weight")
                                  for c in cols])
        rscales = (np.ones(len(cols)) if spec.rscales is None
                   else np.asarray(spec.rscales, dtype=np.float64))
        if rscales.shape != (len(cols),):
            raise DhsurveyError("rscales must have one value per replicate column",
                                code="design-invalid")
        return _ReplicateSet(kind="user", scale=float(spec.scale), rscales=rscales,
                             mse=spec.mse, matrix=matrix)

    @classmethod
    def jk1(cls, df: pd.DataFrame, weight: str, psu: str | None = None,
            fpc: str | None = None, calibrated_on: Margins | None = None,
            recalibrate: bool | None = None, *, calibration: str = "rake",
            mse: bool = False, tol: float = 1e-10) -> Design:
        """Delete-one-PSU jackknife for an unstratified design (R's ``type="JK1"``).

        ``recalibrate`` (default: True when ``calibrated_on`` is given) calibrates the full
        sample and every replicate to ``calibrated_on`` by ``calibration`` ("rake" or
        "linear"), so ``weight`` may be the base weights; for raking, already-raked weights
        give the same result.
        """
        design = cls(df, weight, psu=psu, fpc=fpc, lonely_psu="fail")
        design._jackknife("JK1", calibrated_on, recalibrate, calibration, mse, tol)
        return design

    @classmethod
    def jkn(cls, df: pd.DataFrame, weight: str, strata: str, psu: str | None = None,
            fpc: str | None = None, calibrated_on: Margins | None = None,
            recalibrate: bool | None = None, lonely_psu: str = "fail", *,
            nest: bool = False, calibration: str = "rake", mse: bool = False,
            tol: float = 1e-10) -> Design:
        """Stratified delete-one-PSU jackknife (R's ``type="JKn"``), one replicate per PSU.

        Lonely strata follow R's ``jknweights``: "fail" raises, "certainty"/"remove" give
        the stratum no replicate, "adjust" adds a replicate zeroing the lonely PSU and scaling
        every other PSU by H/(H−1) with rscale (H−1)/H. See :meth:`jk1` for ``recalibrate``.
        """
        design = cls(df, weight, strata=strata, psu=psu, fpc=fpc, lonely_psu=lonely_psu,
                     nest=nest)
        design._jackknife("JKn", calibrated_on, recalibrate, calibration, mse, tol)
        return design

    def _jackknife(self, kind: str, calibrated_on: Margins | None, recalibrate: bool | None,
                   calibration: str, mse: bool, tol: float) -> None:
        st = self._stages[0]
        if recalibrate is None:
            recalibrate = calibrated_on is not None
        if recalibrate and calibrated_on is None:
            raise DhsurveyError("recalibrate=True needs calibrated_on", code="design-invalid")
        if calibration not in _CALIBRATIONS:
            raise DhsurveyError(f"calibration must be one of {_CALIBRATIONS}",
                                code="design-invalid")
        n_units = st.n_units
        if kind == "JK1":
            factors, scale, rscales = _jk1_replicates(st)
        else:
            factors, scale, rscales = _jkn_replicates(st, self.lonely_psu)
        rep = _ReplicateSet(kind=kind, scale=scale, rscales=np.asarray(rscales, dtype=float),
                            mse=mse, start=self._w.copy(), unit=self._psu_codes,
                            n_units=n_units, factors=factors)
        if recalibrate:
            assert calibrated_on is not None
            model = CellModel(self.df, calibrated_on, tol=tol)
            flat = self._psu_codes * model.n_cells + model.cell
            table = np.bincount(flat, weights=self._w,
                                minlength=n_units * model.n_cells).reshape(n_units,
                                                                           model.n_cells)
            base = table.sum(axis=0)
            rep_base = table.T @ factors  # (cells, R)
            if calibration == "rake":
                g = _ratio(model.rake_cells(base, tol=tol, max_iter=1000), base)
                cal = _ratio(model.rake_cells(rep_base, tol=tol, max_iter=1000), rep_base)
            else:
                g = model.linear_cells(base, bounds=None, method="linear", tol=tol,
                                       max_iter=100)
                cal = model.linear_cells(rep_base, bounds=None, method="linear", tol=tol,
                                         max_iter=100)
            self._w = self._w * g[model.cell]
            model.assert_margins(self._w, tol)
            rep.cell, rep.n_cells, rep.cal = model.cell, model.n_cells, cal
            self._model = model
        self.calibrated_on = calibrated_on
        self.calibration = calibration
        self._rep = rep

    # -- public helpers ------------------------------------------------------------------------

    @property
    def weights(self) -> pd.Series:
        """The analysis (expansion) weights of the full sample."""
        return pd.Series(self._w, index=self.df.index, name=self.weight)

    @property
    def n_replicates(self) -> int:
        """Number of replicates (0 for a linearisation design)."""
        return 0 if self._rep is None else self._rep.n_replicates

    @property
    def replicate_scales(self) -> tuple[float, np.ndarray]:
        """``(scale, rscales)`` of the replicate variance, to publish with replicate weights."""
        if self._rep is None:
            raise DhsurveyError("not a replicate design", code="design-invalid")
        return self._rep.scale, self._rep.rscales.copy()

    def replicate_weights(self, rows: np.ndarray | None = None) -> pd.DataFrame:
        """Replicate analysis weights, one column per replicate (dense: n × R), of every row
        or of the row positions ``rows`` (kept in factor form until asked for: a million
        rows × 200 replicates would take 1.6 GB)."""
        if self._rep is None:
            raise DhsurveyError("not a replicate design", code="design-invalid")
        values = self._rep.weights(rows)
        index = self.df.index if rows is None else self.df.index[rows]
        return pd.DataFrame(values, index=index,
                            columns=[f"rep{r + 1}" for r in range(values.shape[1])])

    # -- estimation ----------------------------------------------------------------------------

    def _values(self, y: str, na_rm: bool) -> tuple[np.ndarray, np.ndarray]:
        if y not in self.df.columns:
            raise DhsurveyError(f"column {y!r} not found", code="design-column-missing",
                                column=y)
        col = self.df[y]
        if pd.api.types.is_bool_dtype(col):
            col = col.astype("float64")
        values = pd.to_numeric(col, errors="coerce").to_numpy(np.float64, na_value=np.nan)
        bad = np.isnan(values) & col.notna().to_numpy()
        if bad.any():
            raise DhsurveyError(f"column {y!r} is not numeric: use proportion() for categories",
                                code="design-not-numeric", column=y)
        missing = ~np.isfinite(values)
        if missing.any() and not na_rm:
            raise DhsurveyError(f"column {y!r} has {int(missing.sum())} missing values; pass "
                                "na_rm=True to estimate over the rows that have one",
                                code="design-missing-value", column=y,
                                row=self.df.index[int(np.flatnonzero(missing)[0])])
        return np.where(missing, 0.0, values), ~missing

    def _domains(self, by: str | None, valid: np.ndarray) -> tuple[list[Any], list[np.ndarray]]:
        if by is None:
            return [None], [valid]
        codes, levels = self._levels(by)
        return list(levels), [valid & (codes == i) for i in range(len(levels))]

    def _levels(self, column: str) -> tuple[np.ndarray, pd.Index]:
        """Codes (−1 for missing) and levels of a column, sorted when the values allow."""
        if column not in self.df.columns:
            raise DhsurveyError(f"column {column!r} not found", code="design-column-missing",
                                column=column)
        try:
            return pd.factorize(self.df[column], sort=True)
        except TypeError:  # mixed types: first-appearance order
            return pd.factorize(self.df[column], sort=False)

    def _variance(self, x: np.ndarray) -> np.ndarray:
        """Taylor variance of the totals of each column of linearised values x (n, k)."""
        if self._projection is not None:
            x = self._projection.residuals(x)
        v = np.zeros(x.shape[1])
        for st in self._stages:
            for j in range(x.shape[1]):
                t = np.bincount(st.unit, weights=x[:, j], minlength=st.n_units)
                mean = np.bincount(st.parent, weights=t, minlength=st.n_parent) / np.maximum(
                    st.count, 1)
                d = t - np.where(st.center, mean, 0.0)[st.parent]
                v[j] += np.dot(st.weight,
                               np.bincount(st.parent, weights=d * d, minlength=st.n_parent))
        return v

    def _estimate(self, kind: str, y: str, x: str | None, by: str | None, na_rm: bool,
                  deff: bool) -> tuple[list[Any], list[Estimate]]:
        yv, valid = self._values(y, na_rm)
        xv = None
        if x is not None:
            xv, valid_x = self._values(x, na_rm)
            valid = valid & valid_x
        levels, masks = self._domains(by, valid)
        w = self._w
        thetas: list[float] = []
        lin: list[np.ndarray] = []
        nums: list[np.ndarray] = []
        dens: list[np.ndarray | None] = []  # None: no denominator (a total)
        for mask in masks:
            wd = np.where(mask, w, 0.0)
            if kind == "total":
                thetas.append(float(np.dot(wd, yv)))
                lin.append(yv * wd)
                nums.append(np.where(mask, yv, 0.0))
                dens.append(None)
                continue
            denom_values = np.where(mask, 1.0 if xv is None else xv, 0.0)
            big_y, big_x = float(np.dot(wd, yv)), float(np.dot(w, denom_values))
            theta = big_y / big_x if big_x else float("nan")
            thetas.append(theta)
            with np.errstate(invalid="ignore", divide="ignore"):
                lin.append((yv - theta * denom_values) * wd / big_x if big_x else
                           np.zeros(self._n))
            nums.append(np.where(mask, yv, 0.0))
            dens.append(denom_values)
        if self._rep is None:
            se = np.sqrt(self._variance(np.column_stack(lin)))
        else:
            cols = nums + [d for d in dens if d is not None]
            reps = self._rep.totals(np.column_stack(cols))
            k = len(nums)
            if kind == "total":
                rep_theta = reps[:, :k]
            else:
                with np.errstate(invalid="ignore", divide="ignore"):
                    rep_theta = reps[:, :k] / reps[:, k:]
            se = np.sqrt(self._rep.variance(np.asarray(thetas), rep_theta))
        out = []
        for i, mask in enumerate(masks):
            d = None
            if deff and by is None and self._rep is None and kind != "ratio":
                d = self._deff(kind, yv, mask, thetas[i], se[i] ** 2)
            out.append(Estimate(estimate=thetas[i], se=float(se[i]),
                                n=int(np.count_nonzero(mask & (w > 0))), deff=d,
                                statistic=kind))
        return levels, out

    def _deff(self, kind: str, yv: np.ndarray, mask: np.ndarray, theta: float,
              v: float) -> float:
        """R's ``deff=TRUE``: variance over that of simple random sampling without
        replacement of the same size (NaN when Σw < n, as R gives NA)."""
        w = np.where(mask, self._w, 0.0)
        nobs = int(np.count_nonzero(w))
        psum = float(w.sum())
        ybar = float(np.dot(w, yv)) / psum
        s2 = float(np.dot(w, (yv - ybar) ** 2)) / psum * nobs / (nobs - 1)
        if psum < nobs:
            return float("nan")
        if kind == "mean":
            vsrs = s2 * (psum - nobs) / (psum * nobs)
        else:
            vsrs = s2 * psum * psum * (psum - nobs) / (psum * nobs)
        return v / vsrs if vsrs else float("nan")

    @staticmethod
    def _frame(levels: list[Any], results: list[Estimate], name: str) -> pd.DataFrame:
        frame = pd.DataFrame({"estimate": [r.estimate for r in results],
                              "se": [r.se for r in results],
                              "n": [r.n for r in results]},
                             index=pd.Index(levels, name=name))
        return frame

    def mean(self, y: str, by: str | None = None, *, na_rm: bool = False,
             deff: bool = False) -> Estimate | pd.DataFrame:
        """Weighted mean of ``y`` (a proportion for a 0/1 column); with ``by``, one row per
        domain level (estimate, se, n), domains estimated on the full design.

        ``na_rm`` treats rows with missing ``y`` as outside the domain (R's ``na.rm=TRUE``).
        ``deff`` adds R's ``deff=TRUE`` design effect (Taylor designs, whole sample only).
        """
        levels, res = self._estimate("mean", y, None, by, na_rm, deff)
        return res[0] if by is None else self._frame(levels, res, by)

    def total(self, y: str, by: str | None = None, *, na_rm: bool = False,
              deff: bool = False) -> Estimate | pd.DataFrame:
        """Weighted (expansion) total of ``y``; ``by`` gives domain totals (see :meth:`mean`
        for ``na_rm`` and ``deff``)."""
        levels, res = self._estimate("total", y, None, by, na_rm, deff)
        return res[0] if by is None else self._frame(levels, res, by)

    def ratio(self, y: str, x: str, by: str | None = None, *,
              na_rm: bool = False) -> Estimate | pd.DataFrame:
        """Ratio of totals Ŷ/X̂ (R's ``svyratio``), linearised as (y − R·x)/X̂."""
        levels, res = self._estimate("ratio", y, x, by, na_rm, False)
        return res[0] if by is None else self._frame(levels, res, by)

    def proportion(self, y: str, *, na_rm: bool = False) -> pd.DataFrame:
        """Share of each level of a categorical ``y`` (R's ``svymean(~factor)``): one row per
        level with estimate, se and n; rows with missing ``y`` need ``na_rm=True``."""
        codes, levels = self._levels(y)
        valid = codes >= 0
        if not valid.all() and not na_rm:
            raise DhsurveyError(f"column {y!r} has missing values; pass na_rm=True",
                                code="design-missing-value", column=y)
        w = np.where(valid, self._w, 0.0)
        total = float(w.sum())
        indicators = [(codes == i).astype(np.float64) for i in range(len(levels))]
        thetas = [float(np.dot(w, ind)) / total for ind in indicators]
        if self._rep is None:
            lin = [(ind - p) * w / total for ind, p in zip(indicators, thetas, strict=True)]
            se = np.sqrt(self._variance(np.column_stack(lin)))
        else:
            reps = self._rep.totals(np.column_stack(indicators + [valid.astype(np.float64)]))
            rep_theta = reps[:, :-1] / reps[:, -1:]
            se = np.sqrt(self._rep.variance(np.asarray(thetas), rep_theta))
        results = [Estimate(thetas[i], float(se[i]),
                            int(np.count_nonzero((codes == i) & (self._w > 0))),
                            statistic="proportion") for i in range(len(levels))]
        return self._frame(list(levels), results, y)


def _ratio(cw: np.ndarray, base: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(base > 0, cw / base, 0.0)


__all__ = ["Design", "Estimate", "LONELY_PSU", "RAKING_SWEEPS", "Replicates"]
