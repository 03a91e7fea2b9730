"""What the intruder can join: each file's keys with those of every file linked to it.

Why a profile per group of linked files: the household, child and caregiver files of a tier
that share ``hh_id`` can be joined by anyone holding them, so a child is found by its own
keys *and* its household's and caregiver's. The profile is that join, one row per household
(or, for a file released on its own, one row per record). Each file's risk is then counted
among that file's own respondents (the profile rows where it has a record), on every key of
the profile.

Why two kinds of missing: a value missing because the question was not asked (a child not in
school has no school level) or because the household has no record in a linked file (no
child interview) is something the intruder sees, so it is a category of its own here
(:data:`NOT_ASKED`, :data:`NO_RECORD`). Only a value blanked by local suppression could be
anything, so only that is a wildcard (sdcMicro's rule). Counting absent records as wildcards
let every household without a child pad every child's group.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from dhsurvey.anonymise.measure import risk_summary
from dhsurvey.anonymise.risk import (
    Compatible,
    _factorise,
    check_keys,
    compatible_sums,
    global_risk,
)
from dhsurvey.anonymise.scenario import Harmful
from dhsurvey.anonymise.working import WorkingForm
from dhsurvey.errors import DhsurveyError

#: Stand-ins for a value the intruder sees as absent: numeric keys, then text keys.
NOT_ASKED = np.inf
NO_RECORD = -np.inf
NOT_ASKED_TEXT = "\x00not asked"
NO_RECORD_TEXT = "\x00no record"
_SENTINELS = (NOT_ASKED, NO_RECORD, NOT_ASKED_TEXT, NO_RECORD_TEXT)


def plain_values(values: pd.Series) -> np.ndarray:
    """A key's values: numbers as float64 with NaN for missing (a nullable integer column
    would give an object per value), anything else as objects with None."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    out = values.to_numpy(dtype=object)
    out[pd.isna(out)] = None
    return out


def is_absent(values: np.ndarray) -> np.ndarray:
    """Cells holding a stand-in for "not asked" or "no record" (observed, never blanked)."""
    if values.dtype.kind == "f":
        return np.isinf(values)
    return np.isin(values, np.array([NOT_ASKED_TEXT, NO_RECORD_TEXT], dtype=object))


def key_view(values: pd.Series, suppressed: np.ndarray | None) -> np.ndarray:
    """A key as the intruder reads it: suppressed cells missing (wildcards), every other
    missing cell "not asked"."""
    out = plain_values(values)
    missing = pd.isna(out)
    if suppressed is not None:
        missing &= ~suppressed
    out[missing] = NOT_ASKED if out.dtype.kind == "f" else NOT_ASKED_TEXT
    return out


@dataclass
class Profile:
    """The keys of a group of linked files, one row per household (or per record).

    ``present[form]`` marks the rows where the form has a record and ``at[form]`` gives that
    record's row in the form's table (-1 where absent); ``targets`` maps each key column to
    the (form, key) cells a blank in it is written back to.
    """

    frame: pd.DataFrame
    keys: list[str]
    targets: dict[str, list[tuple[str, str]]]
    present: dict[str, np.ndarray]
    at: dict[str, np.ndarray]
    weights: dict[str, np.ndarray | None] = field(default_factory=dict)
    harmful: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    @property
    def forms(self) -> list[str]:
        return list(self.present)


def harmful_flags(table: pd.DataFrame, rules: Mapping[str, Harmful]) -> dict[str, np.ndarray]:
    """Per declared sensitive variable in ``table``, whether each record holds a harmful
    answer (missing: not asked, not harmful)."""
    out = {}
    for col, rule in rules.items():
        if col not in table.columns:
            continue
        values = table[col]
        if rule.at_least is not None:
            x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
            out[col] = np.nan_to_num(x, nan=-np.inf) >= rule.at_least
        else:
            out[col] = code_text(values).isin({str(v) for v in rule.values}).to_numpy()
    return out


def code_text(values: pd.Series) -> pd.Series:
    """Codes as the text a choice list names them by (1.0 -> "1"), one conversion per
    distinct value; missing stays missing."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    names = [str(int(v)) if isinstance(v, float | np.floating) and float(v).is_integer()
             else str(v) for v in uniques]
    table = np.array([*names, None], dtype=object)
    return pd.Series(table[codes], index=values.index, dtype=object)


def _source(form: WorkingForm, source: str) -> pd.DataFrame:
    table = getattr(form, source)
    if table is None:
        raise DhsurveyError(f"stage {source} not kept", code="release-bad-argument",
                            form=form.name)
    return table


def build_profile(forms: Sequence[WorkingForm], source: str = "table",
                  sensitive: Mapping[str, Mapping[str, Harmful]] | None = None,
                  keys: Mapping[str, Sequence[str]] | None = None,
                  flags: Mapping[str, dict[str, np.ndarray]] | None = None,
                  absent_known: bool = True) -> Profile:
    """The profile of ``forms`` (one form: its records; several: joined on ``hh_id``).

    ``source`` picks the stage (``before``, ``after_recode`` or ``table``); ``keys`` the
    keys per form at that stage (default: each form's current keys); ``flags`` the harmful
    answers per form when known (:func:`harmful_flags`; they do not change with recoding).
    ``absent_known=False`` (a scenario whose intruder does not know who else in the
    household was interviewed) makes a missing linked record a wildcard, not a category.
    Keys several forms carry (stratum, region) appear once; the others are named
    ``form:key``.
    """
    sensitive = sensitive or {}
    flags = flags or {}
    keyed = {f.name: list((keys or {}).get(f.name, f.keys)) for f in forms}
    tables = {f.name: _source(f, source) for f in forms}
    suppressed = {f.name: (f.suppressed_cells if source == "table" else {}) for f in forms}
    if len(forms) == 1:
        f = forms[0]
        t = tables[f.name]
        n = len(t)
        frame = pd.DataFrame({key: key_view(t[key], suppressed[f.name].get(key))
                              for key in keyed[f.name]}, copy=False)
        return Profile(frame, list(keyed[f.name]),
                       {key: [(f.name, key)] for key in keyed[f.name]},
                       {f.name: np.ones(n, dtype=bool)}, {f.name: np.arange(n)},
                       {f.name: t["weight"].to_numpy(dtype=float) if f.weighted else None},
                       {f.name: flags[f.name] if f.name in flags
                        else harmful_flags(t, sensitive.get(f.name, {}))})
    counts: dict[str, int] = {}
    for f in forms:
        for key in keyed[f.name]:
            counts[key] = counts.get(key, 0) + 1
    ids = [tables[f.name]["hh_id"] for f in forms]
    codes, uniques = pd.factorize(pd.concat(ids, ignore_index=True), sort=True)
    n = len(uniques)
    starts = np.cumsum([0, *map(len, ids)])
    columns: dict[str, np.ndarray] = {}
    targets: dict[str, list[tuple[str, str]]] = {}
    present: dict[str, np.ndarray] = {}
    at: dict[str, np.ndarray] = {}
    weights: dict[str, np.ndarray | None] = {}
    harmful: dict[str, dict[str, np.ndarray]] = {}
    for i, f in enumerate(forms):
        t = tables[f.name]
        code = codes[starts[i]:starts[i + 1]]
        if (code < 0).any():
            raise DhsurveyError("a record of a linked file has no hh_id",
                                code="release-bad-argument", form=f.name)
        if len(np.unique(code)) != len(code):
            raise DhsurveyError("two records of one household in a linked file",
                                code="release-bad-argument", form=f.name)
        rows = np.full(n, -1, dtype=np.int64)
        rows[code] = np.arange(len(t))
        at[f.name] = rows
        present[f.name] = rows >= 0
        if f.weighted:
            w = np.full(n, np.nan)
            w[code] = t["weight"].to_numpy(dtype=float)
            weights[f.name] = w
        else:
            weights[f.name] = None
        harmful[f.name] = {}
        own = flags[f.name] if f.name in flags else harmful_flags(t, sensitive.get(f.name, {}))
        for col, flag in own.items():
            h = np.zeros(n, dtype=bool)
            h[code] = flag
            harmful[f.name][col] = h
        for key in keyed[f.name]:
            values = key_view(t[key], suppressed[f.name].get(key))
            name = key if counts[key] > 1 else f"{f.name}:{key}"
            targets.setdefault(name, []).append((f.name, key))
            if name in columns:  # a shared key: the first form's value, else this one's
                shared = columns[name]
                if values.dtype != shared.dtype:
                    shared, values = shared.astype(object), values.astype(object)
                lacking = pd.Series(shared).isin([NO_RECORD, NO_RECORD_TEXT]).to_numpy() \
                    | pd.isna(shared)
                take = lacking[code]
                shared[code[take]] = values[take]
                columns[name] = shared
                continue
            blank: Any = (NO_RECORD if values.dtype.kind == "f" else NO_RECORD_TEXT) \
                if absent_known else (np.nan if values.dtype.kind == "f" else None)
            column = np.full(n, blank, dtype=values.dtype)
            column[code] = values
            columns[name] = column
    frame = pd.DataFrame(columns, copy=False)
    return Profile(frame, list(targets), targets, present, at, weights, harmful)


def encode_keys(frames: Sequence[pd.DataFrame], keys: Sequence[str]
                ) -> tuple[list[np.ndarray], np.ndarray]:
    """The ``keys`` of several frames as integer codes, one code per value across all of
    them: per frame an (n x K) array (-1 = missing), and each key's number of codes.

    Why: the counts of :func:`compatible_sums` compare the intruder's values with the
    released ones code against code, so both must be coded together (one frame given
    several times is factorised once)."""
    out = [np.empty((len(f), len(keys)), dtype=np.int64) for f in frames]
    cards = np.zeros(len(keys), dtype=np.int64)
    starts = np.cumsum([0, *map(len, frames)])
    same = all(f is frames[0] for f in frames)
    for j, key in enumerate(keys):
        if same:
            column = frames[0][key]
            if isinstance(column.dtype, pd.CategoricalDtype):
                codes, cards[j] = _factorise(column)
            else:  # the values themselves: no index of the distinct values is built
                codes, uniques = pd.factorize(column.to_numpy(), use_na_sentinel=True)
                cards[j] = len(uniques)
            for o in out:
                o[:, j] = codes
            continue
        codes, cards[j] = _factorise(pd.concat([f[key] for f in frames], ignore_index=True))
        for i, o in enumerate(out):
            o[:, j] = codes[starts[i]:starts[i + 1]]
    return out, cards


def intruder_counts(keys: Sequence[str], truth: pd.DataFrame, released: pd.DataFrame,
                    values: np.ndarray) -> np.ndarray:
    """For each record as the intruder knows it (``truth``: its values before suppression;
    missing only where the intruder does not know), the column sums of ``values`` over the
    released records compatible with it: equal on every key, or suppressed there.

    Why not sdcMicro's symmetric count: a record whose age was suppressed matches every age
    in sdcMicro's f_k, but the intruder looking for that child still knows its age, and
    finds only the records of that age and those whose age is suppressed too.
    """
    (t, r), cards = encode_keys([truth, released], check_keys(released, keys))
    return compatible_sums(t, r, cards, values)


def respondent_counts(profile: Profile, truth: pd.DataFrame, frame: pd.DataFrame, form: str
            ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(rows of the form's respondents, compatible records per respondent, compatible
    records holding each harmful answer)."""
    (t, f), cards = encode_keys([truth, frame], profile.keys)
    return Respondents(profile, t, cards).counts(f, form)


class Respondents:
    """Each file's respondents in a profile as the intruder knows them (``truth``: the
    profile's keys coded by :func:`encode_keys`), counted against released codes.

    Why an object: local suppression counts the same respondents every round with a few
    more cells blanked, so the truth side of each count (:class:`Compatible`) is prepared
    once per file.
    """

    def __init__(self, profile: Profile, truth: np.ndarray, cards: np.ndarray) -> None:
        self.profile = profile
        self.idx = {form: np.flatnonzero(rows) for form, rows in profile.present.items()}
        self.flags = {form: profile.harmful.get(form, {}) for form in profile.present}
        self.compatible = {form: Compatible(truth[idx], cards) for form, idx in self.idx.items()}

    def counts(self, codes: np.ndarray, form: str
               ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """:func:`respondent_counts` with the released keys coded as ``codes``."""
        idx, flags = self.idx[form], self.flags[form]
        values = np.column_stack([np.ones(len(idx))] + [flags[c][idx] for c in flags])
        sums = self.compatible[form].sums(codes[idx], values)
        fk = np.rint(sums[:, 0]).astype(np.int64)
        return idx, fk, {c: np.rint(sums[:, j + 1]).astype(np.int64)
                         for j, c in enumerate(flags)}

    def shortfall(self, codes: np.ndarray, k: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per file, its profile rows and the compatible records each lacks with the released
        keys coded as ``codes``: k - fk, at least 1 where every compatible record shares a
        harmful answer of its own, 0 where safe."""
        if not self.profile.keys:
            return {}
        return {form: self.needs(codes, k, form) for form, idx in self.idx.items() if len(idx)}

    def needs(self, codes: np.ndarray, k: int, form: str) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`shortfall` of one file."""
        idx, fk, harmful = self.counts(codes, form)
        mixing = np.zeros(len(idx), dtype=bool)
        for c, count in harmful.items():
            mixing |= self.flags[form][c][idx] & (count == fk)
        return idx, np.maximum(k - fk, mixing.astype(np.int64))

    def unsafe(self, codes: np.ndarray, k: int,
               short: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None) -> np.ndarray:
        """:func:`unsafe_rows` with the released keys coded as ``codes`` (``short``: their
        :meth:`shortfall`, when known)."""
        unsafe = np.zeros(len(codes), dtype=bool)
        for idx, needs in (self.shortfall(codes, k) if short is None else short).values():
            unsafe[idx[needs > 0]] = True
        return unsafe


def file_measures(profile: Profile, frame: pd.DataFrame | None = None, *, k: int,
                  truth: pd.DataFrame | None = None) -> dict[str, dict[str, Any]]:
    """Per file, among its own respondents: records with fewer than k compatible released
    records (:func:`intruder_counts`; ``truth`` the values before suppression, default the
    frame itself), the smallest such count, sdcMicro's weighted global risk, and per
    sensitive variable the records whose compatible records all share its harmful answer."""
    frame = profile.frame if frame is None else frame
    truth = frame if truth is None else truth
    out: dict[str, dict[str, Any]] = {}
    (t, f), cards = encode_keys([truth, frame], profile.keys)
    respondents = Respondents(profile, t, cards)
    for form, rows in profile.present.items():
        flags = profile.harmful.get(form, {})
        if not rows.any() or not profile.keys:
            out[form] = {"violations": 0, "min_fk": None,
                         "risk": risk_summary(frame.iloc[:0], [], None),
                         "l_violations": dict.fromkeys(flags, 0)}
            continue
        idx, fk, harmful = respondents.counts(f, form)
        sub = frame.iloc[idx][profile.keys]
        weight = profile.weights.get(form)
        g = global_risk(sub, profile.keys, None if weight is None else weight[idx])
        out[form] = {
            "violations": int((fk < k).sum()), "min_fk": int(fk.min()),
            "risk": {"risk": g.risk, "expected_reidentifications": g.expected_reidentifications},
            "l_violations": {c: int((flags[c][idx] & (harmful[c] == fk)).sum())
                             for c in flags},
        }
    return out


def unsafe_rows(profile: Profile, frame: pd.DataFrame, k: int) -> np.ndarray:
    """Profile rows where some file's record, as the intruder knows it (the profile's own
    values), has fewer than k compatible records in ``frame`` or only compatible records
    sharing a harmful answer."""
    if not profile.keys:
        return np.zeros(len(frame), dtype=bool)
    (truth, codes), cards = encode_keys([profile.frame, frame], profile.keys)
    return Respondents(profile, truth, cards).unsafe(codes, k)


__all__ = ["NOT_ASKED", "NOT_ASKED_TEXT", "NO_RECORD", "NO_RECORD_TEXT", "Profile",
           "Respondents", "build_profile", "code_text", "encode_keys", "file_measures",
           "harmful_flags", "intruder_counts", "is_absent", "key_view", "plain_values",
           "respondent_counts", "unsafe_rows"]
