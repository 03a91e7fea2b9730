"""Answer a form the way a device would: in form order, only what is relevant, within constraints.

The simulator decides the story of each interview (who lives in the household, who consents,
what a child experienced) as *presets* for a few fields; everything else is generated here from
the form model. Relevance, constraints, calculations, choice filters and repeat counts are the
form's own expressions, evaluated by :mod:`dhsurvey.forms.expressions`, so a clean simulated
submission satisfies exactly the rules ODK Collect enforces — and a change to the instrument
changes the simulated data with no second list to maintain.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dhsurvey.errors import DhsurveyError
from dhsurvey.forms.expressions import BinaryOp, Current, conjuncts
from dhsurvey.forms.frames import PARENT, FormData, format_values
from dhsurvey.forms.model import REF_RE, FormModel, Item
from dhsurvey.ingest.canonical import repeat_key

#: Rarely chosen codes: other (specify), don't know, prefer not to say.
RARE = {"96": 0.03, "98": 0.03, "99": 0.02}
POSITION = "_position"


@dataclass
class Presets:
    """Values the scenario fixes: root fields by row, repeat fields by (parent, position)."""

    root: dict[str, pd.Series] = field(default_factory=dict)
    repeats: dict[str, pd.DataFrame] = field(default_factory=dict)  # PARENT, _position, fields
    #: field → XPath expression evaluated at the field's turn (e.g. a disposition that follows
    #: the form's own derived code); it must satisfy the field's constraint like any preset.
    derived: dict[str, str] = field(default_factory=dict)


def answer_form(
    model: FormModel,
    keys: pd.Index,
    presets: Presets,
    rng: np.random.Generator,
    *,
    today: dt.date | None = None,
    text: Mapping[str, pd.Series] | None = None,
) -> FormData:
    """Fill every data field of ``model`` for submissions ``keys`` (their instanceIDs).

    A preset is used where the field is relevant and must satisfy the constraint (a violation
    is a bug in the scenario and raises); other fields, and rows a preset leaves empty, are
    drawn at random from what the constraint and choice filter allow. Non-relevant fields are
    left empty (None), as on a device.
    """
    root = pd.DataFrame({f.name: pd.Series(None, index=keys, dtype=object)
                         for f in model.fields_in(None)}, index=keys)
    data = FormData(model, root, {}, today=today)
    for item in model.items:
        if item.is_repeat:
            _open_repeat(data, item, presets, rng)
            continue
        if not item.holds_data:
            continue
        table = data.table(item.repeat)
        relevant = data.relevant(item).to_numpy()
        fixed = np.zeros(len(table), dtype=bool)  # rows the scenario decided
        if item.type == "calculate" or (item.type == "hidden" and item.calculation):
            values = format_values(data.evaluate(item, item.calculation, rng=rng))
        elif item.name in presets.derived:
            values = format_values(data.evaluate(item, presets.derived[item.name], rng=rng))
            fixed = relevant.copy()
        elif item.name in _preset_columns(presets, item):
            values = format_values(_preset(presets, item, data))
            fixed = relevant & values.notna().to_numpy()
            # A preset may fix some rows only: the others are drawn like any answer.
            open_rows = relevant & ~fixed
            if open_rows.any():
                values[open_rows] = _draw(data, item, open_rows, rng).to_numpy()
        elif item.default and not item.dynamic_default:
            values = pd.Series(item.default, index=table.index, dtype=object)
        else:
            values = pd.Series(None, index=table.index, dtype=object)
            values[relevant] = _draw(data, item, relevant, rng).to_numpy()
        values = values.astype(object)
        values[~relevant] = None
        if item.constraint and item.type != "calculate":
            values = _enforce(data, item, values, relevant, rng, fixed=fixed)
        table[item.name] = values.to_numpy()
    return data


def _preset_columns(presets: Presets, item: Item) -> set[str]:
    if item.repeat is None:
        return set(presets.root)
    frame = presets.repeats.get(item.repeat)
    return set(frame.columns) if frame is not None else set()


def _preset(presets: Presets, item: Item, data: FormData) -> pd.Series:
    table = data.table(item.repeat)
    if item.repeat is None:
        return presets.root[item.name].reindex(table.index).astype(object)
    frame = presets.repeats[item.repeat]
    keyed = frame.set_index([PARENT, POSITION])[item.name]
    position = data.position(item.repeat)
    index = pd.MultiIndex.from_arrays([table[PARENT].to_numpy(), position.to_numpy()])
    return pd.Series(keyed.reindex(index).to_numpy(), index=table.index, dtype=object)


def _open_repeat(data: FormData, item: Item, presets: Presets, rng: np.random.Generator) -> None:
    """Create the repeat's instances: ``repeat_count`` per relevant parent row."""
    outer = data.table(item.repeat)
    relevant = data.relevant(item).to_numpy()
    if item.repeat_count:
        counts = pd.to_numeric(data.evaluate(item, item.repeat_count, rng=rng),
                               errors="coerce").fillna(0).to_numpy().astype(int)
    elif item.name in presets.repeats:
        sizes = presets.repeats[item.name].groupby(PARENT).size()
        counts = sizes.reindex(outer.index).fillna(0).to_numpy().astype(int)
    else:
        counts = rng.integers(1, 4, len(outer))
    counts = np.where(relevant, np.maximum(counts, 0), 0)
    parents = np.repeat(outer.index.to_numpy(), counts)
    positions = np.concatenate([np.arange(1, c + 1) for c in counts]) if counts.sum() else \
        np.array([], dtype=int)
    keys = [repeat_key(str(p), data.model, item.name, int(i))
            for p, i in zip(parents, positions, strict=True)]
    table = pd.DataFrame({f.name: pd.Series(None, index=keys, dtype=object)
                          for f in data.model.fields_in(item.name)}, index=pd.Index(keys))
    table.insert(0, PARENT, parents)
    data.repeats[item.name] = table


# -- drawing answers ----------------------------------------------------------------------------


def _codes(model: FormModel, item: Item) -> list[str]:
    """The codes of a select's choice list."""
    lst = model.choices_for(item)
    if lst is None:
        raise ValueError(f"'{item.name}' has no choice list")
    return lst.codes()


def _weights(codes: list[str]) -> np.ndarray:
    w = np.array([RARE.get(c, 0.0) for c in codes])
    common = w == 0
    if common.any():
        w[common] = (1 - w.sum()) / common.sum()
    return w / w.sum()


def _draw(data: FormData, item: Item, rows: np.ndarray, rng: np.random.Generator) -> pd.Series:
    """Random answers for the rows where ``item`` is relevant."""
    n = int(rows.sum())
    index = data.table(item.repeat).index[rows]
    if item.type == "select_one" and _repeat_source(item):
        return pd.Series(_pick_from_repeat(data, item, rows, rng), index=index, dtype=object)
    if item.type == "select_one":
        mask = data.choice_mask(item).to_numpy()[rows]
        codes = list(data.choice_mask(item).columns)
        return pd.Series(_pick_one(mask, _weights(codes), codes, rng), index=index)
    if item.type == "select_multiple":
        codes = _codes(data.model, item)
        return pd.Series(_pick_many(codes, n, rng), index=index)
    if item.type in ("integer", "decimal"):
        lo, hi = _bounds(data, item)
        lo, hi = lo[rows], hi[rows]
        span = np.maximum(hi - lo, 0)
        if item.type == "integer":
            draw = lo + np.minimum(span, np.floor(rng.exponential(np.maximum(1, span / 4))))
            return pd.Series(format_values(pd.Series(draw)).to_numpy(), index=index)
        return pd.Series([f"{v:.1f}" for v in lo + span * rng.random(n)], index=index)
    if item.type in ("date", "today"):
        day = data.today or dt.date(2026, 1, 1)
        return pd.Series(day.isoformat(), index=index)
    if item.type == "geopoint":
        lat = -1 + rng.random(n)
        lon = 36 + rng.random(n)
        return pd.Series([f"{a:.6f} {b:.6f} 1500.0 5.0" for a, b in zip(lat, lon,
                                                                       strict=True)],
                         index=index)
    if item.type == "text":
        words = ["market", "school", "church", "shop", "cousin", "neighbour", "radio",
                 "library", "cafe", "clinic"]
        return pd.Series([f"{words[i]} {j}" for i, j in zip(rng.integers(0, len(words), n),
                                                             rng.integers(1, 99, n),
                                                             strict=True)], index=index)
    if item.type in ("start", "end", "datetime"):
        return pd.Series("2026-01-01T09:00:00.000+00:00", index=index)
    if item.type == "deviceid":
        return pd.Series("collect:simulated", index=index)
    return pd.Series("1", index=index)


def _repeat_source(item: Item) -> str | None:
    """The field whose answers in a repeat are the choices (``select_one ${name}``)."""
    found = REF_RE.fullmatch(item.list_name or "")
    return found.group(1) if found else None


def _submission_keys(data: FormData, repeat: str | None) -> np.ndarray:
    """For each row of ``repeat``'s table, the key of the submission it belongs to."""
    keys = data.table(repeat).index.to_numpy()
    while repeat is not None:
        parents = data.repeats[repeat][PARENT]
        keys = parents.reindex(keys).to_numpy()
        repeat = data.model[repeat].repeat
    return keys


def _pick_from_repeat(data: FormData, item: Item, rows: np.ndarray,
                      rng: np.random.Generator) -> list[str | None]:
    """Answers to a select_one whose choices are the answers to a field of a repeat in the
    same submission (pyxform accepts this for select_one only); None when there are none."""
    source = data.model[_repeat_source(item) or ""]
    options: dict[object, list[str]] = {}
    if source.repeat is None or source.repeat in data.repeats:
        table = data.table(source.repeat)
        if source.name in table.columns:
            owners = _submission_keys(data, source.repeat)
            for owner, value in zip(owners, table[source.name].to_numpy(), strict=True):
                if value is not None and value == value and str(value) != "":
                    options.setdefault(owner, []).append(str(value))
    out: list[str | None] = []
    for owner in _submission_keys(data, item.repeat)[rows]:
        codes = list(dict.fromkeys(options.get(owner, [])))
        out.append(codes[int(rng.integers(len(codes)))] if codes else None)
    return out


def _pick_one(mask: np.ndarray, weights: np.ndarray, codes: list[str],
              rng: np.random.Generator) -> list[str | None]:
    p = mask * weights
    total = p.sum(axis=1, keepdims=True)
    p = np.divide(p, total, out=np.zeros_like(p), where=total > 0)
    u = rng.random(len(p))[:, None]
    idx = (np.cumsum(p, axis=1) < u).sum(axis=1)
    return [codes[min(i, len(codes) - 1)] if t > 0 else None
            for i, t in zip(idx, total[:, 0], strict=True)]


def _pick_many(codes: list[str], n: int, rng: np.random.Generator) -> list[str]:
    """1–3 common codes per answer, rarely one of the special ones alone."""
    common = [c for c in codes if c not in RARE]
    special = [c for c in codes if c in RARE]
    out = []
    for _ in range(n):
        if special and rng.random() < 0.04:
            out.append(str(rng.choice(special)))
            continue
        k = min(len(common), 1 + int(rng.random() < 0.5) + int(rng.random() < 0.2))
        chosen = sorted(rng.choice(common, k, replace=False), key=codes.index)
        out.append(" ".join(chosen))
    return out


def _bounds(data: FormData, item: Item) -> tuple[np.ndarray, np.ndarray]:
    """Lower/upper bounds per row from ``. >= expr`` / ``. <= expr`` parts of the constraint."""
    n = len(data.table(item.repeat))
    lo, hi = np.zeros(n), np.full(n, 20.0)
    for part in conjuncts(item.constraint) if item.constraint else ():
        if not (isinstance(part, BinaryOp) and part.op in (">=", "<=", ">", "<")
                and isinstance(part.left, Current)):
            continue
        op, expr = part.op, part.right
        try:
            value = pd.to_numeric(data.evaluate(item, expr), errors="coerce").to_numpy(float)
        except Exception:  # a bound we cannot read just widens the range
            continue
        value = np.broadcast_to(value, (n,))
        if op in (">=", ">"):
            lo = np.where(np.isnan(value), lo, value + (op == ">"))
        else:
            hi = np.where(np.isnan(value), hi, value - (op == "<"))
    return lo, np.maximum(lo, hi)


def _enforce(data: FormData, item: Item, values: pd.Series, relevant: np.ndarray,
             rng: np.random.Generator, *, fixed: np.ndarray, tries: int = 40) -> pd.Series:
    """Redraw answers that break the constraint; a preset that breaks it is a scenario bug."""
    for attempt in range(tries + 1):
        ok = data.evaluate_bool(item, item.constraint, current=values).to_numpy()
        bad = relevant & ~ok & values.notna().to_numpy()
        if not bad.any():
            return values
        if (bad & fixed).any():
            rows = list(data.table(item.repeat).index[bad & fixed][:3])
            raise DhsurveyError(
                f"simulated value of '{item.name}' breaks its constraint "
                f"'{item.constraint}' for {int((bad & fixed).sum())} row(s), e.g. {rows}",
                code="simulate-constraint", form=data.model.form_id, field=item.name)
        redraw = _draw(data, item, bad, rng)
        if item.type == "select_multiple" and attempt >= tries // 2:
            codes = _codes(data.model, item)
            redraw = pd.Series(rng.choice(codes, int(bad.sum())), index=redraw.index)
        values = values.copy()
        values[bad] = redraw.to_numpy()
    bad_rows = list(data.table(item.repeat).index[bad][:3])
    raise DhsurveyError(
        f"could not draw a value of '{item.name}' that satisfies '{item.constraint}' "
        f"(e.g. rows {bad_rows})", code="simulate-constraint", form=data.model.form_id,
        field=item.name)
