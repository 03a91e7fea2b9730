"""Weighting-class nonresponse adjustment with a documented collapsing rule.

Why weighting classes: DHS/MICS divide the design weight by the response rate within classes
(region × residence, say) so that respondents stand in for the eligible non-respondents most
like them. Small or poorly responding classes make that factor noisy, so they are collapsed
by a fixed rule, written into the weighting report from the table this module returns.

Input: one row per *eligible* unit (respondents and eligible non-respondents). Units found
ineligible are dropped before this step; units of unknown eligibility must be resolved (e.g.
by the AAPOR ``e`` share) first. Within each final class c:

    factor_c = Σ_{eligible in c} w / Σ_{respondents in c} w

respondents' weights are multiplied by factor_c and non-respondents get weight 0, so the class
totals of the eligible units are preserved.

Collapsing rule. Classes are the combinations of ``classes`` (most important variable first);
levels of each variable are taken in sorted order. A class *fails* when it has fewer than
``min_respondents`` respondents, no respondent weight, or a factor above ``max_factor``.
Repeatedly, the failing class with the fewest respondents (ties: first in sort order) is merged
with its neighbour along the **last** class variable within the same values of the earlier
variables: the next level (or the previous one, for the last level), together with whatever
class holds it. Once a class spans every level of its last variable, that variable is dropped
for it (it becomes the parent class) and later merges happen along the variable before, with
the neighbouring parent class taken whole. If the whole sample fails, ``nonresponse-infeasible``
is raised (e.g. an overall response rate below 1/max_factor).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dhsurvey.errors import DhsurveyError
from dhsurvey.weight.calibrate import weights_array


@dataclass(frozen=True)
class AdjustResult:
    """Adjusted weights (non-respondents 0), the final classes and the collapse log."""

    weights: pd.Series
    classes: pd.DataFrame  # one row per final adjustment class
    cells: pd.DataFrame  # one row per original class combination, with its final class
    log: tuple[str, ...]


@dataclass
class _Group:
    depth: int  # number of class variables that define it (the last one may span levels)
    prefix: tuple[int, ...]  # level codes of the first depth-1 variables
    levels: list[int]  # contiguous sorted level codes of variable depth-1


def _respondent_mask(df: pd.DataFrame, column: str) -> np.ndarray:
    if column not in df.columns:
        raise DhsurveyError(f"respondent column {column!r} not found",
                            code="nonresponse-column-missing", column=column)
    col = df[column]
    if col.isna().any():
        raise DhsurveyError(f"respondent column {column!r} has missing values",
                            code="nonresponse-bad-respondent", column=column)
    if pd.api.types.is_bool_dtype(col):
        return col.to_numpy(dtype=bool)
    values = pd.to_numeric(col, errors="coerce")
    if values.isna().any() or not values.isin([0, 1]).all():
        raise DhsurveyError(f"respondent column {column!r} must be boolean (or 0/1)",
                            code="nonresponse-bad-respondent", column=column)
    return values.to_numpy() == 1


def _class_codes(df: pd.DataFrame, classes: list[str]
                 ) -> tuple[list[np.ndarray], list[list[Any]]]:
    """Per class variable: each row's level code and the levels (sorted when sortable)."""
    code_cols, level_names = [], []
    for col in classes:
        if col not in df.columns:
            raise DhsurveyError(f"class column {col!r} not found",
                                code="nonresponse-column-missing", column=col)
        try:
            codes, uniques = pd.factorize(df[col], sort=True)
        except TypeError:
            codes, uniques = pd.factorize(df[col], sort=False)
        if (codes < 0).any():
            raise DhsurveyError(f"class column {col!r} has missing values",
                                code="nonresponse-missing-class", column=col,
                                row=df.index[int(np.flatnonzero(codes < 0)[0])])
        code_cols.append(codes.astype(np.int64))
        level_names.append(list(uniques))
    return code_cols, level_names


@dataclass
class _Cells:
    """The original cells (observed class combinations, in sorted order) and the classes
    (groups) they are collapsed into."""

    classes: list[str]
    level_names: list[list[Any]]
    leaves: np.ndarray  # one row of level codes per cell
    stats: np.ndarray  # per cell: n_eligible, n_respondents, weight_eligible, weight_respondents
    groups: dict[int, _Group]
    leaf_group: np.ndarray  # per cell: the id of its group

    @classmethod
    def start(cls, classes: list[str], level_names: list[list[Any]], leaves: np.ndarray,
              stats: np.ndarray) -> _Cells:
        """One group per cell."""
        k, n = len(classes), len(leaves)
        groups = {i: _Group(k, tuple(leaves[i, :-1]), [int(leaves[i, -1])]) for i in range(n)}
        return cls(classes, level_names, leaves, stats, groups, np.arange(n))

    def label(self, g: _Group) -> str:
        names = self.level_names
        parts = [f"{self.classes[j]}={names[j][c]}" for j, c in enumerate(g.prefix)]
        lv = "+".join(str(names[g.depth - 1][c]) for c in g.levels)
        parts.append(f"{self.classes[g.depth - 1]}={lv}")
        return ", ".join(parts)

    def members(self, prefix: tuple[int, ...]) -> np.ndarray:
        """The cells under the level codes ``prefix`` of the first variables."""
        d = len(prefix)
        return np.flatnonzero((self.leaves[:, :d] == np.asarray(prefix, dtype=np.int64))
                              .all(axis=1) if d else np.ones(len(self.leaves), dtype=bool))

    def observed(self, g: _Group) -> list[int]:
        """The levels of ``g``'s last variable observed under its prefix."""
        return sorted(set(int(c) for c in self.leaves[self.members(g.prefix), g.depth - 1]))

    def totals(self, gid: int) -> np.ndarray:
        return self.stats[self.leaf_group == gid].sum(axis=0)

    def first_cell(self, gid: int) -> int:
        return int(np.flatnonzero(self.leaf_group == gid)[0])

    def failure(self, gid: int, min_respondents: int, max_factor: float) -> str | None:
        n_elig, n_resp, w_elig, w_resp = self.totals(gid)
        if n_resp < min_respondents:
            return f"{int(n_resp)} respondents < {min_respondents}"
        if w_resp <= 0:
            return "no respondent weight"
        if w_elig / w_resp > max_factor:
            return f"factor {w_elig / w_resp:.3f} > {max_factor:g}"
        return None

    def lift(self, gid: int) -> None:
        """A class spanning every level of its last variable becomes the parent class."""
        g = self.groups[gid]
        while g.depth > 0:
            if g.levels != self.observed(g):
                return
            if g.depth == 1:
                g.depth, g.levels = 0, []
                return
            g.levels = [g.prefix[-1]]
            g.prefix = g.prefix[:-1]
            g.depth -= 1

    def merge(self, gid: int, reason: str) -> str:
        """Merge failing group ``gid`` with its neighbour (module docstring); the log line."""
        g = self.groups[gid]
        if g.depth == 0:
            raise DhsurveyError(
                f"even the whole sample fails the adjustment rule ({reason}): lower "
                "min_respondents or raise max_factor", code="nonresponse-infeasible")
        observed = self.observed(g)
        last = observed.index(g.levels[-1])
        first = observed.index(g.levels[0])
        neighbour = observed[last + 1] if last + 1 < len(observed) else observed[first - 1]
        who = self.label(g)
        # The neighbour's leaves may already be in this group (merged into it before).
        absorbed = sorted(set(int(x) for x in
                              self.leaf_group[self.members(g.prefix + (neighbour,))]) - {gid})
        names = []
        for other in absorbed:
            og = self.groups.pop(other)
            names.append(self.label(og))
            self.leaf_group[self.leaf_group == other] = gid
            if og.depth == g.depth and og.prefix == g.prefix:
                g.levels = sorted(set(g.levels) | set(og.levels))
        g.levels = sorted(set(g.levels) | {neighbour})
        self.lift(gid)
        return (f"{who} ({reason}) merged with {' & '.join(names)} -> "
                f"{self.label(g) if g.depth else '(all)'}")

    def class_columns(self, g: _Group) -> dict[str, Any]:
        """A final class's level of each class variable ("a+b" when merged, "(all)")."""
        row: dict[str, Any] = {}
        for j, col in enumerate(self.classes):
            if j < len(g.prefix):
                row[col] = self.level_names[j][g.prefix[j]]
            elif j == g.depth - 1:
                row[col] = "+".join(str(self.level_names[j][c]) for c in g.levels) \
                    if len(g.levels) > 1 else self.level_names[j][g.levels[0]]
            else:
                row[col] = "(all)"
        return row


def nonresponse_adjust(df: pd.DataFrame, weight: str, respondent: str, classes: Sequence[str],
                       min_respondents: int = 20, max_factor: float = 3.0) -> AdjustResult:
    """Weighting-class nonresponse adjustment (see the module docstring for the rule).

    Returns adjusted weights on ``df.index`` (non-respondents 0), a table of final classes
    (labels, counts, weight sums, factor, number of original cells, whether collapsed), a
    table of the original cells and their final class, and the collapse log in order.
    """
    w = weights_array(df, weight, code="nonresponse-bad-weight")
    resp = _respondent_mask(df, respondent)
    classes = list(classes)
    if not classes:
        raise DhsurveyError("at least one class variable is needed",
                            code="nonresponse-invalid")
    code_cols, level_names = _class_codes(df, classes)

    # Original cells: the observed combinations, in sorted order.
    stacked = np.stack(code_cols, axis=1)
    leaves, leaf_of_row = np.unique(stacked, axis=0, return_inverse=True)
    leaf_of_row = leaf_of_row.ravel()
    n_leaves = len(leaves)
    stats = np.stack([
        np.bincount(leaf_of_row, minlength=n_leaves).astype(np.float64),
        np.bincount(leaf_of_row, weights=resp.astype(np.float64), minlength=n_leaves),
        np.bincount(leaf_of_row, weights=w, minlength=n_leaves),
        np.bincount(leaf_of_row, weights=np.where(resp, w, 0.0), minlength=n_leaves),
    ], axis=1)  # n_eligible, n_respondents, weight_eligible, weight_respondents
    cells = _Cells.start(classes, level_names, leaves, stats)
    leaf_group = cells.leaf_group

    log: list[str] = []
    while True:
        failing = [(stats[leaf_group == gid, 1].sum(), cells.first_cell(gid), gid, reason)
                   for gid in cells.groups
                   if (reason := cells.failure(gid, min_respondents, max_factor)) is not None]
        if not failing:
            break
        _, _, gid, reason = min(failing)
        log.append(cells.merge(gid, reason))

    # Final classes in sort order of their first cell.
    order = sorted(cells.groups, key=cells.first_cell)
    class_id = {gid: i + 1 for i, gid in enumerate(order)}
    rows, factors = [], np.zeros(n_leaves)
    for gid in order:
        n_elig, n_resp, w_elig, w_resp = cells.totals(gid)
        factor = w_elig / w_resp
        factors[leaf_group == gid] = factor
        row: dict[str, Any] = {"class": class_id[gid], **cells.class_columns(cells.groups[gid])}
        row.update(n_eligible=int(n_elig), n_respondents=int(n_resp), weight_eligible=w_elig,
                   weight_respondents=w_resp, factor=factor,
                   n_cells=int((leaf_group == gid).sum()),
                   collapsed=bool((leaf_group == gid).sum() > 1))
        rows.append(row)
    table = pd.DataFrame({col: [level_names[j][c] for c in leaves[:, j]]
                          for j, col in enumerate(classes)})
    table["n_eligible"] = stats[:, 0].astype(int)
    table["n_respondents"] = stats[:, 1].astype(int)
    table["class"] = [class_id[int(g)] for g in leaf_group]
    table["factor"] = factors
    adjusted = np.where(resp, w * factors[leaf_of_row], 0.0)
    return AdjustResult(weights=pd.Series(adjusted, index=df.index, name=weight),
                        classes=pd.DataFrame(rows), cells=table, log=tuple(log))
