"""Local suppression on a profile of linked files: which keys are blanked first, and the pass.

Why an order: sdcMicro's ``localSuppression`` blanks the least important key of a violating
record first. Analysts need the stratum and region (design domains) and the child's age and
sex more than, say, school level, so every form has a default order
(:data:`DEFAULT_IMPORTANCE`), overridable per release; a profile of linked files takes the
shared keys first and then interleaves the forms' orders, the child's first.

Why on the profile (:mod:`~dhsurvey.anonymise.linked`): a record is safe only when it is safe
among its file's respondents on everything the intruder can join to it, and a record that
sits in a group whose members all share a harmful answer (l-diversity) is as exposed as a
unique one. Each round blanks, for every unsafe record, its least important key that is
still observed, in it and in its neighbours (:func:`protect` says why); a "not asked" or "no
record" cell is never blanked (it stays visible in the files whatever is done). Blanks only
add candidates, so a safe record stays safe; the pass ends when no record is unsafe or no
unsafe record has anything left to blank.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from dhsurvey.anonymise.linked import Profile, Respondents, encode_keys, is_absent
from dhsurvey.anonymise.risk import _combine
from dhsurvey.anonymise.working import WorkingForm

#: Default importance per form, most important first (least important is suppressed first).
#: Keys a form has but this list does not name are appended (suppressed before all listed).
DEFAULT_IMPORTANCE: dict[str, list[str]] = {
    "household": ["stratum", "region", "urban_rural", "n_members", "n_eligible"],
    "child": ["stratum", "region", "urban_rural", "age_now", "child_sex", "in_school",
              "school_level"],
    "caregiver": ["stratum", "region", "urban_rural", "cg_sex", "cg_relation", "cg_age",
                  "cg_educ"],
    # Frontline workers: a purposive sample analysed by agency and role, not by region.
    "frontline_worker": ["org_type", "role", "region", "years_service"],
}

#: Keys local suppression never blanks: the stratum is a design variable analysts need in
#: every record (a record it cannot protect otherwise stays unsafe and the gate says so).
LOCKED = frozenset({"stratum"})


def locked(keys: Sequence[str], collapsed: bool = False,
           calibration: Iterable[str] = ()) -> frozenset[str]:
    """Keys never blanked: the margin variables of the weights (``calibration``: a design
    re-raked on them needs every record's value) and, beside a released stratum, the stratum
    itself and what it pins down, its region (and its urban/rural setting, unless the strata
    were collapsed to regions)."""
    fixed = frozenset(calibration)
    if "stratum" not in keys:
        return fixed
    return fixed | LOCKED | {"region"} | (frozenset() if collapsed else {"urban_rural"})

#: Round-robin order of the forms in a profile: the child's keys first.
LINK_PRIORITY = ("child", "caregiver", "household")


def importance(keys: Sequence[str], preferred: Sequence[str]) -> list[str]:
    """Keys most important first: ``preferred`` order, unlisted keys after (suppressed first)."""
    listed = [k for k in preferred if k in keys]
    return listed + [k for k in keys if k not in listed]


def form_importance(form: WorkingForm, preferred: Mapping[str, list[str]]) -> list[str]:
    """A form's keys in suppression order: the release's order for it, else the default."""
    return importance(form.keys, preferred.get(form.name, DEFAULT_IMPORTANCE.get(form.name, [])))


def profile_importance(profile: Profile, preferred: Mapping[str, list[str]]) -> list[str]:
    """A profile's key columns, most important first: shared keys (stratum, region) in the
    forms' own order, then each form's keys interleaved, child first."""
    if len(profile.forms) == 1:
        form = profile.forms[0]
        return importance(profile.keys, preferred.get(form, DEFAULT_IMPORTANCE.get(form, [])))
    forms = sorted(profile.forms, key=lambda f: (LINK_PRIORITY.index(f) if f in LINK_PRIORITY
                                                 else len(LINK_PRIORITY), f))
    own = {f: importance([key for col in profile.keys for g, key in profile.targets[col]
                          if g == f],
                         preferred.get(f, DEFAULT_IMPORTANCE.get(f, []))) for f in forms}
    shared = [c for c in profile.keys if ":" not in c]
    shared.sort(key=lambda c: min(o.index(c) for o in own.values() if c in o))
    orders = [[f"{f}:{key}" for key in o if f"{f}:{key}" in profile.keys] for f, o in own.items()]
    rest: list[str] = []
    for i in range(max((len(o) for o in orders), default=0)):
        rest += [o[i] for o in orders if i < len(o)]
    return importance(profile.keys, shared + rest)


def _neighbourhoods(codes: np.ndarray, cards: np.ndarray, col: int) -> np.ndarray:
    """A group number per row: rows agreeing on every key but ``col`` (a blank agrees with
    a blank) share one."""
    others = [j for j in range(codes.shape[1]) if j != col]
    if not others:
        return np.zeros(len(codes), dtype=np.int64)
    combined = _combine([codes[:, j] + 1 for j in others], cards[others] + 1)
    return pd.factorize(combined)[0]


def _with_neighbours(codes: np.ndarray, cards: np.ndarray, col: int, rows: np.ndarray,
                     can: np.ndarray, blank: np.ndarray, harmful: np.ndarray, k: int
                     ) -> np.ndarray:
    """``rows`` and, in each of their neighbourhoods (:func:`_neighbourhoods` of key
    ``col``), as few other records as make k blanks there (records without a harmful answer
    first, then in row order): the records whose key is blanked this round."""
    group = _neighbourhoods(codes, cards, col)
    size = int(group.max()) + 1 if len(group) else 0
    hit = np.zeros(size, dtype=bool)
    hit[group[rows]] = True
    mixing = np.zeros(size, dtype=bool)  # a record to protect holds a harmful answer
    mixing[group[rows & harmful]] = True
    need = k - np.bincount(group, weights=blank | rows, minlength=size).astype(np.int64)
    take = np.where(hit, np.maximum(need, mixing.astype(np.int64)), 0)
    out = rows.copy()
    donors = np.flatnonzero((take[group] > 0) & can & ~rows)
    if not len(donors):
        return out
    g = group[donors]
    donors = donors[np.lexsort((donors, harmful[donors], g))]  # per group: harmless first
    g = group[donors]
    first = np.flatnonzero(np.concatenate([[True], g[1:] != g[:-1]]))
    rank = np.arange(len(donors)) - np.repeat(first, np.diff(np.append(first, len(donors))))
    out[donors[rank < take[g]]] = True
    return out


def _donate(respondents: Respondents, truth: np.ndarray, codes: np.ndarray,
            absent: np.ndarray, text_absent: np.ndarray, first: list[int], k: int,
            harmful: np.ndarray, blanked: list[np.ndarray], *,
            short: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
            blocks: _Blocks | None = None) -> bool:
    """For records still unsafe once their neighbourhoods are spent: find, key by key (least
    important first), respondents of the same file that differ from the record's true
    values on that key only, and blank it in as many as the record lacks (without a harmful
    answer first). ``codes``: the keys as released (:func:`protect`), blanked in place;
    ``first``: their columns, least important first; ``absent``: cells holding a stand-in
    for "not asked" or "no record" (never blanked), ``text_absent`` those of text keys (a
    record's own is not looked for; a numeric one is, as it always was). ``short``: the
    records' :meth:`~dhsurvey.anonymise.linked.Respondents.shortfall` at ``codes``, and
    ``blocks`` the search's index of them, when the caller has them. Returns whether
    anything was blanked."""
    progress = False
    present = respondents.profile.present
    blocks = _Blocks(codes) if blocks is None else blocks
    for form in respondents.idx:
        # Counted again once a file's donors have changed what the next file's records see.
        idx, needs = short[form] if short is not None and form in short and not progress \
            else respondents.needs(codes, k, form)
        for row, need in _distinct(truth, idx[needs > 0], needs[needs > 0]):
            target = truth[row]
            near = blocks.near(target)  # every record that may differ on one key only
            held = codes[near]
            # A key the intruder does not know of the record (no linked record, a wildcard)
            # is matched by any value; a blank matches anything.
            clash = (held != target) & (held >= 0) & (target >= 0)
            clashes = clash.sum(axis=1)
            for j, col in enumerate(first):
                if target[col] < 0 or text_absent[row, col]:
                    continue
                donors = near[present[form][near] & ~absent[near, col] & clash[:, col]
                              & (clashes == 1)]
                if len(donors) < need:
                    continue
                donors = donors[np.argsort(harmful[donors], kind="stable")][:need]
                codes[donors, col] = -1
                blocks.blanked(col, donors)
                blanked[j][donors] = True
                progress = True
                break
    return progress


def _distinct(truth: np.ndarray, rows: np.ndarray, needs: np.ndarray
              ) -> list[tuple[int, int]]:
    """(row, need) once per distinct record as the intruder knows it (``truth``), in row
    order, with the largest need among its rows: records known alike have the same
    compatible records, so the donors found for one serve them all (looking again for
    each would blank more than they lack, and cost a search per copy)."""
    if not len(rows):
        return []
    _, first, inverse = np.unique(truth[rows], axis=0, return_index=True,
                                  return_inverse=True)
    most = np.zeros(len(first), dtype=np.int64)
    np.maximum.at(most, inverse.ravel(), needs)
    order = np.argsort(first, kind="stable")
    return list(zip(rows[first[order]].tolist(), most[order].tolist(), strict=True))


class _Blocks:
    """The records that may differ from a record on at most one key, found without comparing
    every key of every record (which made the donor search cost records x keys per record
    to protect).

    A record differing from it on one key only agrees (holds its value or a blank) on all
    but at most one of any three keys the record knows. The keys' values are indexed once,
    the three most selective known keys of the record are looked up, and the records agreeing
    on two of them are compared in full; the blanks made meanwhile are added as they come
    (codes only ever become blanks; a row blanked after indexing also counts on its old
    value, so more rows may be compared in full, never fewer)."""

    #: Keys looked up per record: more narrow the records down, each costs a pass.
    LOOKED_UP = 3

    def __init__(self, codes: np.ndarray) -> None:
        self.codes = codes
        n, width = codes.shape
        self.rows: list[np.ndarray] = []  # per key: rows sorted by code
        self.starts: list[np.ndarray] = []  # per key and code + 1: where its rows start
        self.blanks: list[list[np.ndarray]] = []
        cost = np.zeros(width)
        for c in range(width):
            col = codes[:, c]
            valued = col >= 0
            order = np.flatnonzero(valued)
            order = order[np.argsort(col[order], kind="stable")]
            sizes = np.bincount(col[valued], minlength=int(col.max(initial=-1)) + 1)
            self.rows.append(order)
            self.starts.append(np.concatenate([[0], np.cumsum(sizes)]))
            self.blanks.append([np.flatnonzero(~valued)])
            # Rows looked up for a record of this key: its value's share, plus the blanks.
            cost[c] = (sizes.astype(float) ** 2).sum() / max(n, 1) + (n - len(order))
        self.order = np.argsort(cost, kind="stable")

    def near(self, target: np.ndarray) -> np.ndarray:
        """Rows (sorted) agreeing with ``target`` on all but at most one of its most
        selective known keys; every row when it knows fewer than two keys."""
        keys = [c for c in self.order if target[c] >= 0][:self.LOOKED_UP]
        if len(keys) < 2:
            return np.arange(len(self.codes))
        agree = np.zeros(len(self.codes), dtype=np.int8)
        for c in keys:
            value = int(target[c])
            starts = self.starts[c]
            if value + 1 < len(starts):
                agree[self.rows[c][starts[value]:starts[value + 1]]] += 1
            for blank in self.blanks[c]:
                agree[blank] += 1
        return np.flatnonzero(agree >= len(keys) - 1)

    def blanked(self, col: int, rows: np.ndarray) -> None:
        """``rows`` were blanked on key ``col``."""
        self.blanks[col].append(rows)


def protect(profile: Profile, order: Sequence[str], k: int, collapsed: bool = False,
            calibration: Iterable[str] = ()) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Blank key cells of the profile until no file's record, as the intruder knows it, has
    fewer than k compatible records or only compatible records sharing a harmful answer.
    ``order``: the profile's keys, most important first; ``collapsed``: the strata are
    regions, ``calibration`` the margin variables (:func:`locked`).

    Each round every unsafe record picks its least important key still observed, and that
    key is blanked in it *and in enough of its neighbours* (records agreeing with it on all
    its other keys) to make k blanks there, neighbours without a harmful answer first:
    blanking a record's own value does not hide it from an intruder who knows the value,
    but blanking its neighbours' values makes them candidates too.

    The keys are coded once (:func:`~dhsurvey.anonymise.linked.encode_keys`): a blank is a
    code of -1, so every round counts and groups integer codes.

    Returns the cells blanked per key column and the rows still unsafe (empty when done).
    """
    keys = list(profile.keys)
    (truth,), cards = encode_keys([profile.frame], keys)
    absent = np.column_stack([is_absent(profile.frame[c].to_numpy()) for c in keys]) \
        if keys else np.zeros((len(profile.frame), 0), dtype=bool)
    text_absent = absent & np.array([profile.frame[c].dtype.kind != "f" for c in keys],
                                    dtype=bool)
    codes = truth.copy()  # the keys as released: -1 where missing or blanked
    # Suppressed first; never what the stratum pins down (:func:`locked`).
    fixed = locked([key for c in keys for _, key in profile.targets[c]], collapsed,
                   calibration)
    first = [keys.index(c) for c in reversed(list(order))
             if not any(key in fixed for _, key in profile.targets[c])]
    blanked = {c: np.zeros(len(codes), dtype=bool) for c in keys}
    cells = [blanked[keys[j]] for j in first]
    harmful = np.zeros(len(codes), dtype=bool)
    for flags in profile.harmful.values():
        for flag in flags.values():
            harmful |= flag
    respondents = Respondents(profile, truth, cards)
    short = respondents.shortfall(codes, k)
    unsafe = respondents.unsafe(codes, k, short)
    known = (truth[:, first] >= 0) & ~absent[:, first]
    blocks: _Blocks | None = None  # the donor search's index, made when first needed
    while unsafe.any():
        can = (codes[:, first] >= 0) & ~absent[:, first]
        # A record with nothing of its own left to blank still gains candidates when its
        # neighbours' values are blanked on a key the intruder knows of it.
        own = can.any(axis=1)
        candidates = unsafe & (own | known.any(axis=1))
        if not candidates.any():
            break
        choice = np.where(own, np.argmax(can, axis=1), np.argmax(known, axis=1))
        progress = False
        for j, col in enumerate(first):
            rows = candidates & (choice == j)
            if rows.any():
                chosen = _with_neighbours(codes, cards, col, rows, can[:, j], cells[j],
                                          harmful, k) & can[:, j]
                if chosen.any():
                    codes[chosen, col] = -1
                    cells[j] |= chosen
                    if blocks is not None:
                        blocks.blanked(col, np.flatnonzero(chosen))
                    progress = True
        if not progress:  # nothing changed since ``short`` was counted
            blocks = _Blocks(codes) if blocks is None else blocks
            progress = _donate(respondents, truth, codes, absent, text_absent, first, k,
                               harmful, cells, short=short, blocks=blocks)
        if not progress:
            break
        short = respondents.shortfall(codes, k)
        unsafe = respondents.unsafe(codes, k, short)
    return blanked, unsafe


def blanked_cells(profile: Profile, blanked: Mapping[str, np.ndarray],
                  tables: Mapping[str, pd.DataFrame]) -> dict[tuple[str, str], np.ndarray]:
    """The profile's blanks as cells of each form's table: (form, key) -> rows (bool), only
    where the form's value is observed."""
    out: dict[tuple[str, str], np.ndarray] = {}
    for col, mask in blanked.items():
        if not mask.any():
            continue
        for form, key in profile.targets[col]:
            rows = profile.at[form][mask]
            rows = rows[rows >= 0]
            t = tables[form]
            hit = out.get((form, key), np.zeros(len(t), dtype=bool))
            hit[rows] = True
            out[(form, key)] = hit & t[key].notna().to_numpy()
    return out


def restore_dtype(values: pd.Series, original: pd.Series) -> pd.Series:
    """Blanking may widen Int64 to Float64 or object; narrow it back, so Stata and SPSS files
    keep integer codes."""
    if original.dtype == "Int64" and values.dtype != "Int64":
        return pd.to_numeric(values, errors="coerce").astype("Float64").round().astype("Int64")
    return values


def write_back(forms: Mapping[str, WorkingForm],
               cells: Mapping[tuple[str, str], np.ndarray]) -> None:
    """Blank the cells in the forms' tables and count them (``suppressed``,
    ``suppressed_cells``)."""
    for (name, key), hit in cells.items():
        n = int(hit.sum())
        if not n:
            continue
        f = forms[name]
        original = f.table[key]
        blanked = original.copy()  # a new column: the stages keep the old one
        blanked[hit] = None
        f.table[key] = restore_dtype(blanked, original)
        mask = f.suppressed_cells.get(key)
        f.suppressed_cells[key] = hit if mask is None else (mask | hit)
        f.suppressed[key] = f.suppressed.get(key, 0) + n


__all__ = ["DEFAULT_IMPORTANCE", "LINK_PRIORITY", "LOCKED", "blanked_cells", "locked",
           "form_importance", "importance", "profile_importance", "protect", "restore_dtype",
           "write_back"]
