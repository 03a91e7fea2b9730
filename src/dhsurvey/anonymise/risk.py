"""Re-identification risk of a microdata file, with sdcMicro 5.8 semantics.

A *key* is the combination of quasi-identifiers (region, age, sex, ...) an intruder could know.
``f_k`` counts the sample records sharing a record's key and ``F_k`` sums their weights (an
estimate of the population count). Everything here is computed per record and aligned on
``df.index`` so it can be joined back, thresholded or summed.

**Missing values are wildcards.** Two records match when they agree on every key that is
observed in *both*; a missing value matches anything. This is what sdcMicro's ``freqCalc``
does (a suppressed value could be any category, so the record hides among all of them) and it
is why local suppression lowers risk. Matching is symmetric: a complete record also counts
every incomplete record compatible with it.

How the wildcard rule is computed (``_matched_sums``):

1. Each key is factorised to integer codes (-1 = missing) and the rows are collapsed by one
   hash pass into *cells*: distinct code vectors, with their row count and weight sum.
   Complete data stop here: ``f_k`` is the cell count.
2. Cells are grouped by *missingness pattern* P (the set of missing keys). Two cells of
   patterns P and Q match iff they agree on S = keys observed in both, so for every unordered
   pair {P, Q} both sides are projected on S, the smaller side is sorted and the larger side
   is looked up in it by binary search; matched totals flow both ways. Within one pattern a
   cell only matches itself.

Cost: O(n*K) to encode and O(n) to collapse, then O(m * U * (K + log U)) for the wildcard
pass, where U <= n is the number of distinct cells and m <= min(2**K, U) the number of
distinct missingness patterns (each cell takes part in m - 1 pairs). sdcMicro's C++
``freqCalc`` rescans all n rows for every incomplete key, O(n_incomplete * n * K).

Errors are :class:`~dhsurvey.errors.DhsurveyError` with codes ``sdc-no-keys``,
``sdc-column-missing``, ``sdc-bad-weight``, ``sdc-missing-household``, ``sdc-bad-argument``.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from math import prod
from typing import Any, Literal

import numpy as np
import pandas as pd

from dhsurvey.errors import DhsurveyError

#: Combined integer codes stay below this; beyond it partial codes are re-factorised.
_CODE_LIMIT = 1 << 62

Weight = str | pd.Series | np.ndarray | None


@dataclass(frozen=True)
class GlobalRisk:
    """File-level risk: ``risk`` = mean individual risk, ``expected_reidentifications`` = sum."""

    risk: float
    expected_reidentifications: float
    n: int


# --------------------------------------------------------------------------- encoding


def _check_columns(df: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DhsurveyError(
            f"column(s) not in the data: {', '.join(map(str, missing))}",
            code="sdc-column-missing",
            column=missing[0],
        )


def check_keys(df: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    """``keys`` as a list: at least one, none repeated, every one a column of ``df``."""
    keys = list(keys)
    if not keys:
        raise DhsurveyError("at least one key variable is needed", code="sdc-no-keys")
    if len(set(keys)) != len(keys):
        raise DhsurveyError("key variables are repeated", code="sdc-bad-argument")
    _check_columns(df, keys)
    return keys


def _factorise(col: pd.Series) -> tuple[np.ndarray, int]:
    """Integer codes (-1 = missing) and the number of categories of one column."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        return col.cat.codes.to_numpy(dtype=np.int64), len(col.cat.categories)
    codes, uniques = pd.factorize(col, use_na_sentinel=True)
    return codes.astype(np.int64, copy=False), len(uniques)


def _encode(df: pd.DataFrame, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Codes as an (n, K) column-major array with -1 for missing, and each key's cardinality."""
    codes = np.empty((len(df), len(keys)), dtype=np.int64, order="F")
    cards = np.empty(len(keys), dtype=np.int64)
    for j, key in enumerate(keys):
        codes[:, j], cards[j] = _factorise(df[key])
    return codes, cards


def _combine(columns: Sequence[np.ndarray], radices: Sequence[int] | np.ndarray) -> np.ndarray:
    """Mixed-radix code of several non-negative code columns (equal codes = equal rows).

    When the code space would overflow int64 the partial code is re-factorised to dense ids
    first, so any number of high-cardinality keys works.
    """
    out = np.zeros(len(columns[0]) if columns else 0, dtype=np.int64)
    span = 1
    for col, radix in zip(columns, radices, strict=True):
        radix = max(int(radix), 1)
        if span * radix >= _CODE_LIMIT:
            out, uniques = pd.factorize(out)
            out = out.astype(np.int64, copy=False)
            span = max(len(uniques), 1)
        out = out * radix + col
        span *= radix
    return out


def _pair_codes(
    a: np.ndarray, b: np.ndarray, radices: Sequence[int] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Comparable codes for two code matrices over the same columns."""
    if prod(int(r) for r in radices) < _CODE_LIMIT:
        return (
            _combine([a[:, j] for j in range(a.shape[1])], radices),
            _combine([b[:, j] for j in range(b.shape[1])], radices),
        )
    # Rare: compression must be shared, so code both sides together.
    both = np.concatenate([a, b])
    codes = _combine([both[:, j] for j in range(both.shape[1])], radices)
    return codes[: len(a)], codes[len(a):]


def _cells(codes: np.ndarray, cards: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Collapse rows to distinct code vectors: (cell id per row, codes per cell)."""
    n, k = codes.shape
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros((0, k), dtype=np.int64)
    combined = _combine([codes[:, j] + 1 for j in range(k)], cards + 1)
    cell_of_row, uniques = pd.factorize(combined)
    rep = np.empty(len(uniques), dtype=np.int64)
    rep[cell_of_row] = np.arange(n)  # any row of a cell represents it
    return cell_of_row.astype(np.int64, copy=False), codes[rep]


# ----------------------------------------------------------------------- wildcard pass


def _cross_sums(
    ca: np.ndarray, va: np.ndarray, cb: np.ndarray, vb: np.ndarray, span: int
) -> tuple[np.ndarray, np.ndarray]:
    """For codes ``ca`` and ``cb`` (< ``span``, or -1 when out of range): per a-cell the sum
    of ``vb`` over b-cells with an equal code, and per b-cell the same from the a side."""
    m = va.shape[1]
    if span <= max(4 * (len(ca) + len(cb)), 1 << 16):
        # Dense table over the code space: two bincounts and two gathers per column.
        gain_a = np.empty_like(va)
        gain_b = np.empty_like(vb)
        for col in range(m):
            gain_a[:, col] = np.bincount(cb, weights=vb[:, col], minlength=span)[ca]
            gain_b[:, col] = np.bincount(ca, weights=va[:, col], minlength=span)[cb]
        return gain_a, gain_b
    swapped = len(ca) < len(cb)
    if swapped:
        ca, va, cb, vb = cb, vb, ca, va
    # Sparse: sort the smaller side, binary-search the larger side into it.
    uniq, inv = np.unique(cb, return_inverse=True)
    inv = inv.ravel()
    small_sum = np.empty((len(uniq), m))
    for col in range(m):
        small_sum[:, col] = np.bincount(inv, weights=vb[:, col], minlength=len(uniq))
    pos = np.searchsorted(uniq, ca)
    pos[pos == len(uniq)] = 0
    hit = uniq[pos] == ca
    gain_a = np.zeros_like(va)
    gain_a[hit] = small_sum[pos[hit]]
    large_sum = np.empty((len(uniq), m))
    for col in range(m):
        large_sum[:, col] = np.bincount(pos[hit], weights=va[hit, col], minlength=len(uniq))
    gain_b = large_sum[inv]
    return (gain_b, gain_a) if swapped else (gain_a, gain_b)


def _matched_sums(cell_codes: np.ndarray, cards: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per cell, the column sums of ``values`` over every cell it matches (wildcard rule)."""
    n_cells, k = cell_codes.shape
    totals = values.astype(np.float64, copy=True)
    if n_cells == 0:
        return totals
    missing = cell_codes < 0
    if not missing.any():
        return totals
    pattern = missing.astype(np.int64) @ (np.int64(1) << np.arange(k, dtype=np.int64))
    order = np.argsort(pattern, kind="stable")
    pats, starts = np.unique(pattern[order], return_index=True)
    groups = np.split(order, starts[1:])
    sub_codes = [cell_codes[g] for g in groups]
    sub_vals = [values[g].astype(np.float64) for g in groups]
    sub_tot = [v.sum(axis=0) for v in sub_vals]
    gains = [v.copy() for v in sub_vals]  # own cell: a cell matches itself only
    for a, b in itertools.combinations(range(len(pats)), 2):
        either = int(pats[a]) | int(pats[b])
        shared = [j for j in range(k) if not (either >> j) & 1]
        if not shared:  # nothing observed in common: everything matches
            gains[a] += sub_tot[b]
            gains[b] += sub_tot[a]
            continue
        radices = cards[shared]
        span = prod(int(r) for r in radices)
        ca, cb = _pair_codes(sub_codes[a][:, shared], sub_codes[b][:, shared], radices)
        gain_a, gain_b = _cross_sums(ca, sub_vals[a], cb, sub_vals[b], span)
        gains[a] += gain_a
        gains[b] += gain_b
    for g, gain in zip(groups, gains, strict=True):
        totals[g] = gain
    return totals


def _weights(df: pd.DataFrame, weight: Weight) -> np.ndarray | None:
    """Weights as float array, checked: finite and positive (a zero weight has no meaning)."""
    if weight is None:
        return None
    if isinstance(weight, str):
        _check_columns(df, [weight])
        w = df[weight].to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        if isinstance(weight, pd.Series) and not weight.index.equals(df.index):
            raise DhsurveyError(
                "weight series is not indexed like the data", code="sdc-bad-weight"
            )
        w = np.asarray(weight, dtype=np.float64)
    if w.shape != (len(df),):
        raise DhsurveyError("weights must have one value per record", code="sdc-bad-weight")
    bad = ~np.isfinite(w) | (w <= 0)
    if bad.any():
        raise DhsurveyError(
            f"{int(bad.sum())} weight(s) missing, infinite or not positive",
            code="sdc-bad-weight",
            row=str(df.index[int(np.argmax(bad))]),
        )
    return w


def _cell_frequencies(
    df: pd.DataFrame, keys: Sequence[str], weight: Weight
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cell id per row, fk per cell, Fk per cell); risk is a function of the cell only."""
    keys = check_keys(df, keys)
    w = _weights(df, weight)
    codes, cards = _encode(df, keys)
    cell_of_row, cell_codes = _cells(codes, cards)
    n_cells = len(cell_codes)
    cols: list[np.ndarray] = [np.bincount(cell_of_row, minlength=n_cells).astype(np.float64)]
    if w is not None:
        cols.append(np.bincount(cell_of_row, weights=w, minlength=n_cells))
    totals = _matched_sums(cell_codes, cards, np.column_stack(cols))
    fk = np.rint(totals[:, 0]).astype(np.int64)
    fk_weighted = totals[:, 1] if w is not None else fk.astype(np.float64)
    return cell_of_row, fk, fk_weighted


# ------------------------------------------------------------------------------ public


def frequencies(df: pd.DataFrame, keys: Sequence[str], weight: Weight = None) -> pd.DataFrame:
    """Sample frequency ``fk`` and weighted frequency ``Fk`` of each record's key.

    ``weight`` is a column name or an array with one value per record; without weights
    ``Fk = fk``. Missing key values are wildcards (see the module docstring for the
    algorithm and its cost). A record with every key missing matches the whole file.
    """
    cell, fk, fk_weighted = _cell_frequencies(df, keys, weight)
    return pd.DataFrame({"fk": fk[cell], "Fk": fk_weighted[cell]}, index=df.index)


def _risk_from_frequencies(fk: np.ndarray, fk_weighted: np.ndarray) -> np.ndarray:
    """Benedetti-Franconi approximation, exactly as in REFERENCE.md.

    With p = f/F: f = 1 -> p/(1-p) ln(1/p); f = 2 -> p/(1-p) - (p/(1-p))^2 ln(1/p);
    f >= 3 -> p/(f - (1-p)). Where F <= f (no weights, or weights <= 1) the sample is the
    population and the risk is 1/f. sdcMicro's C++ ``compute_risk`` subtracts 1e-4 from p;
    the reference check points use the formula without that offset, as here.
    """
    f = fk.astype(np.float64)
    big_f = fk_weighted.astype(np.float64)
    risk = 1.0 / f
    est = big_f > f
    p = f[est] / big_f[est]
    q = (big_f[est] - f[est]) / big_f[est]  # 1 - p without cancellation
    log_inv_p = np.log(big_f[est] / f[est])
    odds = p / q
    fe = f[est]
    risk[est] = np.where(
        fe == 1,
        odds * log_inv_p,
        np.where(fe == 2, odds - odds**2 * log_inv_p, p / (fe - q)),
    )
    return risk


def individual_risk(df: pd.DataFrame, keys: Sequence[str], weight: Weight = None) -> pd.Series:
    """Per-record re-identification risk (Benedetti-Franconi), sdcMicro's ``risk$individual``.

    Reference check points (f, F) -> r: (1, 215) -> 0.025096439, (2, 360) -> 0.005424520,
    (3, 108) -> 0.01369863, (1, 45.5) -> 0.08579129.
    """
    cell, fk, fk_weighted = _cell_frequencies(df, keys, weight)
    risk = _risk_from_frequencies(fk, fk_weighted)
    return pd.Series(risk[cell], index=df.index, name="risk")


def global_risk(df: pd.DataFrame, keys: Sequence[str], weight: Weight = None) -> GlobalRisk:
    """Mean individual risk and expected number of re-identifications (their sum)."""
    r = individual_risk(df, keys, weight).to_numpy()
    total = float(r.sum())
    n = len(r)
    return GlobalRisk(risk=total / n if n else 0.0, expected_reidentifications=total, n=n)


def household_risk(
    df: pd.DataFrame, keys: Sequence[str], weight: Weight, household: str
) -> pd.Series:
    """Household risk 1 - prod(1 - r_j) over its members, repeated on every member's record.

    Why: identifying any one member identifies the household, and with it every child in it,
    so a household is as exposed as the union of its members' risks (members assumed
    independent, as in sdcMicro).
    """
    _check_columns(df, [household])
    hh = df[household]
    if hh.isna().any():
        raise DhsurveyError(
            f"{int(hh.isna().sum())} record(s) have no household id",
            code="sdc-missing-household",
            column=household,
        )
    r = individual_risk(df, keys, weight).to_numpy()
    with np.errstate(divide="ignore"):
        log_safe = np.log1p(-np.minimum(r, 1.0))  # -inf when a member's risk is 1
    hh_codes, _ = pd.factorize(hh)
    sums = np.bincount(hh_codes, weights=log_safe)
    return pd.Series(-np.expm1(sums[hh_codes]), index=df.index, name="household_risk")


def matched_counts(df: pd.DataFrame, keys: Sequence[str], values: np.ndarray) -> np.ndarray:
    """Per record, the column sums of ``values`` (n x m) over the records its key matches
    (the wildcard rule of :func:`frequencies`): with a column of ones that is ``fk``, with a
    0/1 flag the matched records that carry it (all of them: the group shares the answer)."""
    keys = check_keys(df, keys)
    values = np.asarray(values, dtype=np.float64).reshape(len(df), -1)
    codes, cards = _encode(df, keys)
    cell_of_row, cell_codes = _cells(codes, cards)
    n_cells = len(cell_codes)
    sums = np.column_stack([np.bincount(cell_of_row, weights=values[:, j], minlength=n_cells)
                            for j in range(values.shape[1])]) if n_cells else \
        np.zeros((0, values.shape[1]))
    return _matched_sums(cell_codes, cards, sums)[cell_of_row]


def k_anonymity_violations(df: pd.DataFrame, keys: Sequence[str], k: int) -> pd.Series:
    """True for records whose key is shared by fewer than ``k`` records (wildcards counted)."""
    if k < 1:
        raise DhsurveyError("k must be at least 1", code="sdc-bad-argument")
    cell, fk, _ = _cell_frequencies(df, keys, None)
    return pd.Series((fk < k)[cell], index=df.index, name="violates")


def l_diversity(
    df: pd.DataFrame,
    keys: Sequence[str],
    sensitive: str,
    kind: Literal["distinct", "entropy", "recursive"] = "distinct",
    c: float | None = None,
) -> pd.Series:
    """l-diversity of the sensitive variable among the records matching each record's key.

    Per record, over the same wildcard-matched set that defines ``fk``; with complete keys
    that is the usual key group. ``kind``:

    - ``distinct``: number of distinct sensitive values;
    - ``entropy``: exp(-sum p ln p) over the value shares;
    - ``recursive``: largest l with r_1 < c * (r_l + ... + r_m), r sorted counts descending
      (at least 1 when any value is present, as in sdcMicro); ``c`` defaults to 2, sdcMicro's
      ``l_recurs_c`` default.

    Missing sensitive values are ignored, i.e. they add no diversity. sdcMicro counts them as
    one extra category; that would let "unknown" mask a group in which every known answer is
    the same disclosure, so the conservative reading is used. Records whose matched set has no
    known sensitive value get 0. Integers for distinct and recursive, floats for entropy.
    """
    if kind not in ("distinct", "entropy", "recursive"):
        raise DhsurveyError(f"unknown l-diversity kind {kind!r}", code="sdc-bad-argument")
    if c is None:
        c = 2.0
    keys = check_keys(df, keys)
    _check_columns(df, [sensitive])
    if sensitive in keys:
        raise DhsurveyError("the sensitive variable cannot be a key", code="sdc-bad-argument")
    codes, cards = _encode(df, keys)
    cell_of_row, cell_codes = _cells(codes, cards)
    per_cell = cell_diversity(cell_of_row, cell_codes, cards, df[sensitive], kind, c)
    return pd.Series(per_cell[cell_of_row], index=df.index, name=f"l_{kind}")


def cell_diversity(
    cell_of_row: np.ndarray,
    cell_codes: np.ndarray,
    cards: np.ndarray,
    sensitive: pd.Series,
    kind: Literal["distinct", "entropy", "recursive"] = "distinct",
    c: float = 2.0,
) -> np.ndarray:
    """:func:`l_diversity` per cell of the keys (``_cells`` of ``_encode``): several sensitive
    variables over the same keys share one coding of the keys."""
    s_codes, n_levels = _factorise(sensitive)
    n_cells = len(cell_codes)
    known = s_codes >= 0
    counts = np.bincount(
        cell_of_row[known] * max(n_levels, 1) + s_codes[known],
        minlength=n_cells * max(n_levels, 1),
    ).reshape(n_cells, max(n_levels, 1)).astype(np.float64)
    matched = _matched_sums(cell_codes, cards, counts)
    present = matched > 0
    used = present.sum(axis=1)
    if kind == "distinct":
        per_cell = used.astype(np.int64)
    elif kind == "entropy":
        total = matched.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(present, matched / np.where(total > 0, total, 1), 0.0)
            plogp = np.where(present, share * np.log(np.where(present, share, 1.0)), 0.0)
        per_cell = np.where(used > 0, np.exp(-plogp.sum(axis=1)), 0.0)
    else:
        r = -np.sort(-matched, axis=1)
        suffix = np.cumsum(r[:, ::-1], axis=1)[:, ::-1]  # suffix[:, l-1] = r_l + ... + r_m
        holds = r[:, :1] < c * suffix
        per_cell = np.where(used > 0, np.maximum(holds.sum(axis=1), 1), 0).astype(np.int64)
    return per_cell


# ------------------------------------------------------------------------------ SUDA2


def _suda_weights(n_att: int, max_k: int) -> np.ndarray:
    """Score of one MSU of size k (index k-1): prod_{i=k}^{M}(ATT - i).

    The factor i = ATT would be zero, so the product stops at min(M, ATT - 1); with
    M = ATT this is sdcMicro's (ATT - k)! (it always searches every size), and an MSU of
    size ATT scores 1 (empty product).
    """
    top = min(max_k, n_att - 1)
    return np.array(
        [prod(n_att - i for i in range(k, top + 1)) for k in range(1, max_k + 1)],
        dtype=np.float64,
    )


def suda2(
    df: pd.DataFrame,
    keys: Sequence[str],
    missing_value: Hashable = -999,
    max_k: int | None = None,
    dis_fraction: float = 0.01,
) -> pd.DataFrame:
    """SUDA scores from minimal sample uniques (MSUs), sdcMicro ``suda2`` semantics.

    An MSU of a record is a set of keys on which the record is unique in the sample while no
    proper subset is. Each MSU of size k adds prod_{i=k}^{M}(ATT - i) to the record's
    ``score`` (ATT = number of keys, M = ``max_k``; see ``_suda_weights``). The
    ``dis_score`` follows sdcMicro's C++ code: with U full-key uniques and P records in
    full-key pairs, Dis = U f / (U f + P (1 - f)) for sampling fraction ``f``,
    Q = 1 + (8 - ATT)/20 and dis_i = 1 / (1 + (U/Dis - U) / (score_i^Q * sum_j score_j^-Q)).

    Missing values (NaN, or equal to ``missing_value``) never form part of an MSU and do not
    match anything in subset counts (unlike the wildcard rule of ``frequencies``), as in
    SUDA2 where a missing value is not an item.

    Method: an exact level-wise search. For each subset size k = 1..M every k-subset of keys
    is counted on the distinct full-key cells (weighted by multiplicity); a record is an MSU
    on S if unique on S and not unique on any (k-1)-subset of S. Cost
    O(sum_k C(ATT, k) * U) for U distinct cells, fine for the usual <= 12 keys; the
    recursive SUDA2 algorithm prunes more but finds the same MSUs.

    Returns per record: ``score``, ``dis_score``, ``n_msu`` and ``min_msu_size`` (0 = none).
    """
    keys = check_keys(df, keys)
    n_att = len(keys)
    max_k = n_att if max_k is None else int(max_k)
    if not 1 <= max_k <= n_att:
        raise DhsurveyError(f"max_k must be between 1 and {n_att}", code="sdc-bad-argument")
    if not 0 < dis_fraction < 1:
        raise DhsurveyError("dis_fraction must be in (0, 1)", code="sdc-bad-argument")
    frame = df[keys]
    if missing_value is not None:
        frame = frame.mask(frame == missing_value)
    codes, cards = _encode(frame, keys)
    cell_of_row, cell_codes = _cells(codes, cards)
    mult = np.bincount(cell_of_row, minlength=len(cell_codes)).astype(np.int64)
    n_cells = len(cell_codes)
    observed = cell_codes >= 0

    weights = _suda_weights(n_att, max_k)
    score = np.zeros(n_cells)
    n_msu = np.zeros(n_cells, dtype=np.int64)
    min_size = np.zeros(n_cells, dtype=np.int64)
    unique_prev: dict[tuple[int, ...], np.ndarray] = {}
    for k in range(1, max_k + 1):
        unique_now: dict[tuple[int, ...], np.ndarray] = {}
        for subset in itertools.combinations(range(n_att), k):
            cols = list(subset)
            ok = observed[:, cols].all(axis=1)
            code = _combine([cell_codes[:, j] for j in cols], cards[cols])
            code = np.where(ok, code, -1)
            ids, _ = pd.factorize(code)
            count = np.bincount(ids, weights=mult * ok)
            unique = ok & (count[ids] == 1)
            unique_now[subset] = unique
            if k == 1:
                msu = unique
            else:
                smaller = np.zeros(n_cells, dtype=bool)
                for drop in range(k):
                    smaller |= unique_prev[subset[:drop] + subset[drop + 1:]]
                msu = unique & ~smaller
            if msu.any():
                score[msu] += weights[k - 1]
                n_msu[msu] += 1
                min_size[msu & (min_size == 0)] = k
        unique_prev = unique_now

    # DIS: uniques and pairs on the full key, missing counted as its own value (as sdcMicro).
    full_u = int((mult == 1).sum())
    full_pairs = int(2 * (mult == 2).sum())
    row_score = score[cell_of_row]
    dis_score = np.zeros(len(df))
    if full_u:
        dis = full_u * dis_fraction / (full_u * dis_fraction + full_pairs * (1 - dis_fraction))
        q = 1.0 + (8.0 - n_att) / 20.0
        pos = row_score > 0
        adj = float(np.sum(row_score[pos] ** -q))
        dis_score[pos] = 1.0 / (1.0 + (full_u / dis - full_u) / (row_score[pos] ** q * adj))
    return pd.DataFrame(
        {
            "score": row_score,
            "dis_score": dis_score,
            "n_msu": n_msu[cell_of_row],
            "min_msu_size": min_size[cell_of_row],
        },
        index=df.index,
    )


def _lookup_sums(ca: np.ndarray, cb: np.ndarray, vb: np.ndarray) -> np.ndarray:
    """Per code of ``ca``, the column sums of ``vb`` over the rows of ``cb`` with that code
    (all columns in one pass: the b side sorted and summed per code, the a side looked up in
    it)."""
    out = np.zeros((len(ca), vb.shape[1]))
    order = np.argsort(cb, kind="stable")
    codes = cb[order]
    starts = np.flatnonzero(np.concatenate([[True], codes[1:] != codes[:-1]]))
    sums = np.add.reduceat(vb[order], starts, axis=0)
    codes = codes[starts]
    pos = np.searchsorted(codes, ca)
    pos[pos == len(codes)] = 0
    hit = codes[pos] == ca
    out[hit] = sums[pos[hit]]
    return out


def _pattern_groups(cell_codes: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """Cells grouped by missingness pattern: (bit mask of the missing keys, cell numbers)."""
    bits = np.int64(1) << np.arange(cell_codes.shape[1], dtype=np.int64)
    pattern = (cell_codes < 0).astype(np.int64) @ bits
    order = np.argsort(pattern, kind="stable")
    pats, starts = np.unique(pattern[order], return_index=True)
    return [(int(p), g) for p, g in zip(pats, np.split(order, starts[1:]), strict=True)]


def compatible_sums(truth: np.ndarray, released: np.ndarray, cards: np.ndarray,
                    values: np.ndarray) -> np.ndarray:
    """Per row of ``truth``, the column sums of ``values`` (one row per row of ``released``)
    over the rows of ``released`` compatible with it: equal on every key, or missing on
    either side (the wildcard rule of :func:`matched_counts`, counted one way only).

    Why on codes: the suppression loop asks this of the same keys dozens of times, each time
    with a few more cells blanked; ``truth`` and ``released`` are (n x K) integer codes
    (-1 = missing, below ``cards`` otherwise, one code per value on both sides), so nothing
    is factorised again (:class:`Compatible` keeps the truth side between calls). Sums of
    whole numbers (counts, 0/1 flags) are exact in any order.
    """
    return Compatible(truth, cards).sums(released, values)


class Compatible:
    """:func:`compatible_sums` against one fixed ``truth`` (n x K codes), for released codes
    that change between calls.

    The truth rows are collapsed to cells and grouped by missingness pattern once, and their
    codes on each set of keys a released pattern shares with them are combined once; each
    call groups the released rows by pattern and matches every pair of a truth and a
    released pattern on the keys observed in both.
    """

    def __init__(self, truth: np.ndarray, cards: np.ndarray) -> None:
        self.n, self.k = truth.shape
        self.cards = np.asarray(cards, dtype=np.int64)
        self.cell: np.ndarray = np.zeros(self.n, dtype=np.int64)
        self.codes: np.ndarray = np.zeros((min(self.n, 1), 0), dtype=np.int64)
        if self.k:
            self.cell, self.codes = _cells(truth, self.cards)
        self.groups = _pattern_groups(self.codes)
        self._shared: dict[tuple[int, int], tuple[list[int], Any, Any]] = {}

    def _on(self, q: int, tq: np.ndarray, either: int
            ) -> tuple[list[int], np.ndarray | None, np.ndarray | None]:
        """The keys observed outside the pattern ``either``, their place values in a
        combined code and the codes of truth pattern ``q``'s cells on them (combined once;
        no place values when the code would overflow)."""
        found = self._shared.get((q, either))
        if found is None:
            shared = [j for j in range(self.k) if not (either >> j) & 1]
            place = ca = None
            radices = [int(r) for r in self.cards[shared]]
            if shared and prod(radices) < _CODE_LIMIT:
                place = np.array([prod(radices[i + 1:]) for i in range(len(shared))],
                                 dtype=np.int64)
                ca = self.codes[tq][:, shared] @ place
            found = self._shared[(q, either)] = (shared, place, ca)
        return found

    def sums(self, released: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Per truth row, the column sums of ``values`` over the compatible ``released``
        rows."""
        values = np.asarray(values, dtype=np.float64).reshape(len(released), -1)
        m = values.shape[1]
        if self.n == 0 or len(released) == 0:
            return np.zeros((self.n, m))
        if self.k == 0:  # no keys: every record matches every other
            return np.tile(values.sum(axis=0), (self.n, 1))
        gains = np.zeros((len(self.codes), m))
        released_groups = [(p, released[g], values[g]) for p, g in _pattern_groups(released)]
        for q, tq in self.groups:
            for p, codes, vals in released_groups:
                shared, place, ca = self._on(q, tq, q | p)
                if not shared:  # nothing observed in common: everything matches
                    gains[tq] += vals.sum(axis=0)
                elif place is not None and ca is not None:
                    gains[tq] += _lookup_sums(ca, codes[:, shared] @ place, vals)
                else:  # rare: compression must be shared, so code both sides together
                    ca, cb = _pair_codes(self.codes[tq][:, shared], codes[:, shared],
                                         self.cards[shared])
                    gains[tq] += _lookup_sums(ca, cb, vals)
        return gains[self.cell]
