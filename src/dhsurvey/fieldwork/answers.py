"""Answer a form the way a device would: in form order, only what is relevant, within constraints.

The simulator decides the story of each interview (who lives in the household, who consents,
what a child experienced) as *presets* for a few fields; everything else is generated here from
the form model. Relevance, constraints, calculations, choice filters and repeat counts are the
form's own expressions, evaluated by :mod:`dhsurvey.forms.expressions`, so a clean simulated
submission satisfies exactly the rules ODK Collect enforces — and a change to the instrument
changes the simulated data with no second list to maintain.

Any form the model loads can be answered (a designer's dry run, lint's reachability check):
every question type gets a value of its own shape, and where the simulator cannot satisfy a
rule (a constraint no draw meets, an expression it cannot evaluate) it gives up on those rows
only, leaves them empty and records why (:class:`GaveUp`), when the caller asks for that record.
"""

from __future__ import annotations

import datetime as dt
import importlib
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dhsurvey.errors import DhsurveyError
from dhsurvey.forms.expressions import (
    BinaryOp,
    Call,
    Current,
    ExpressionError,
    Node,
    Number,
    Ref,
    String,
    _walk,
    comparisons,
    conjuncts,
    parse,
    references,
)
from dhsurvey.forms.frames import PARENT, FormData, format_values
from dhsurvey.forms.model import REF_RE, FormModel, Item
from dhsurvey.ingest.canonical import repeat_key

#: Rarely chosen codes: other (specify), don't know, prefer not to say.
RARE = {"96": 0.03, "98": 0.03, "99": 0.02}
POSITION = "_position"
#: Instances of a repeat that has no repeat_count: 1 to this many.
MAX_INSTANCES = 3
_WORDS = ["market", "school", "church", "shop", "cousin", "neighbour", "radio", "library",
          "cafe", "clinic"]
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}
#: Values of types whose answer is a file on the device.
_FILES = {"image": "jpg", "audio": "m4a", "video": "mp4", "file": "pdf", "audit": "csv",
          "background-audio": "m4a"}
_TEXTS = {"deviceid": "collect:simulated", "username": "enumerator", "email": "enum@example.org",
          "phonenumber": "+254700000000", "simserial": "8925400000000000000",
          "subscriberid": "639020000000000", "acknowledge": "OK"}


@dataclass
class Presets:
    """Values the scenario fixes: root fields by row, repeat fields by (parent, position)."""

    root: dict[str, pd.Series] = field(default_factory=dict)
    repeats: dict[str, pd.DataFrame] = field(default_factory=dict)  # PARENT, _position, fields
    #: field → XPath expression evaluated at the field's turn (e.g. a disposition that follows
    #: the form's own derived code); it must satisfy the field's constraint like any preset.
    derived: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GaveUp:
    """Rows of one field the simulator could not answer by the form's rules, and why."""

    field: str
    row: int  # the field's row on the survey sheet
    column: str  # constraint, choice_filter, relevant, calculation, repeat_count, type
    rows: int  # submissions or repeat instances concerned
    reason: str

    def __str__(self) -> str:
        return (f"survey row {self.row} '{self.field}' ({self.column}): {self.reason} "
                f"[{self.rows} row(s)]")


@dataclass
class DryRun:
    """``n`` simulated submissions of one form and what happened in them."""

    data: FormData
    n: int
    #: Item name → submissions in which it was relevant (asked, shown) at least once.
    reached: dict[str, int]
    gave_up: list[GaveUp]

    def reach_table(self) -> pd.DataFrame:
        """Per question or note shown on a device (form order): row, name, type, repeat, the
        submissions that reached it and their share."""
        shown = [i for i in self.data.model.items if i.is_input or i.type == "note"]
        return pd.DataFrame(
            [{"row": i.row, "name": i.name, "type": i.type, "repeat": i.repeat or "",
              "reached": self.reached.get(i.name, 0),
              "share": round(self.reached.get(i.name, 0) / self.n, 4)} for i in shown],
            columns=["row", "name", "type", "repeat", "reached", "share"])

    def write(self, out: Path) -> list[str]:
        """The submissions as CSV (one file per table: ``<form_id>.csv``,
        ``<form_id>-<repeat>.csv`` with ``PARENT_KEY``), ``reached.csv`` and ``gave_up.csv``
        in ``out``; returns the table names."""
        from dhsurvey.io import atomic_write_text, neutralise_formulas

        form_id = self.data.model.form_id
        tables = {form_id: self.data.root.rename_axis("KEY")}
        tables |= {f"{form_id}-{name}": t.rename_axis("KEY").rename(columns={PARENT:
                                                                            "PARENT_KEY"})
                   for name, t in self.data.repeats.items()}
        out.mkdir(parents=True, exist_ok=True)
        for name, frame in tables.items():
            atomic_write_text(out / f"{name}.csv", neutralise_formulas(frame).to_csv())
        atomic_write_text(out / "reached.csv", self.reach_table().to_csv(index=False))
        gave_up = pd.DataFrame([vars(g) for g in self.gave_up],
                               columns=["field", "row", "column", "rows", "reason"])
        atomic_write_text(out / "gave_up.csv", neutralise_formulas(gave_up).to_csv(index=False))
        return list(tables)


@dataclass(frozen=True)
class Focus:
    """Where even draws lean (reachability mode): per field the literals its conditions test
    (favoured, ``share`` of the draws) and those it is compared ``!=`` with (drawn seldom)."""

    boost: dict[str, list[str]] = field(default_factory=dict)
    avoid: dict[str, set[str]] = field(default_factory=dict)
    share: float = 0.5


@dataclass
class _Run:
    """One call of :func:`answer_form`: its options and what it records."""

    data: FormData
    rng: np.random.Generator
    uniform: bool
    gave_up: list[GaveUp] | None
    focus: Focus
    reached: dict[str, int] | None

    def give_up(self, item: Item, column: str, rows: int, reason: str,
                error: Exception | None = None) -> None:
        """Record rows left unanswered, or raise (``error`` when given) when the caller keeps
        no record (the study's simulator: there a rule it cannot meet is a bug in the scenario
        or the instrument)."""
        if self.gave_up is None:
            if error is not None:
                raise error
            raise DhsurveyError(f"'{item.name}': {reason}", code="simulate-constraint",
                                form=self.data.model.form_id, field=item.name,
                                sheet="survey", row=item.row, column=column)
        self.gave_up.append(GaveUp(item.name, item.row, column, rows, reason))

    def tested(self, item: Item) -> list[str] | None:
        """The codes the form's conditions test ``item`` for (reachability mode), else None."""
        return self.focus.boost.get(item.name, []) if self.uniform else None

    def weights(self, item: Item, codes: list[str]) -> np.ndarray:
        return _weights(codes, self.tested(item), self.focus.share,
                        self.focus.avoid.get(item.name, set()))

    def reach(self, item: Item, relevant: np.ndarray) -> None:
        if self.reached is not None:
            owners = _submission_keys(self.data, item.repeat)[relevant]
            self.reached[item.name] = len(set(owners.tolist()))


def answer_form(
    model: FormModel,
    keys: pd.Index,
    presets: Presets,
    rng: np.random.Generator,
    *,
    today: dt.date | None = None,
    text: Mapping[str, pd.Series] | None = None,
    uniform: bool = False,
    gave_up: list[GaveUp] | None = None,
    reached: dict[str, int] | None = None,
    focus: Focus | None = None,
) -> FormData:
    """Fill every data field of ``model`` for submissions ``keys`` (their instanceIDs).

    A preset is used where the field is relevant and must satisfy the constraint (a violation
    is a bug in the scenario and raises); other fields, and rows a preset leaves empty, are
    drawn at random from what the constraint and choice filter allow. Non-relevant fields are
    left empty (None), as on a device.

    ``uniform`` draws every choice equally often and numbers across their whole range (and the
    values the form's own conditions compare with), so rare branches are taken too. With a
    ``gave_up`` list, rows the simulator cannot answer by the form's rules are left empty and
    recorded there instead of raising. ``reached`` receives, per item (notes and groups too),
    the number of submissions in which it was relevant. ``focus`` (with ``uniform``) steers
    the draws towards given values (default: those every condition of the form tests).
    """
    root = pd.DataFrame({f.name: pd.Series(None, index=keys, dtype=object)
                         for f in model.fields_in(None)}, index=keys)
    data = FormData(model, root, {}, today=today)
    if focus is None:
        focus = Focus(_compared_literals(model)) if uniform else Focus()
    run = _Run(data, rng, uniform, gave_up, focus, reached)
    for item in model.items:
        if item.is_repeat:
            _open_repeat(run, item, presets)
            continue
        relevant = _relevant(run, item)
        run.reach(item, relevant)
        if item.holds_data:
            _answer(run, item, presets, relevant)
    return data


def dry_run(model: FormModel, n: int, *, seed: int = 0, uniform: bool = False,
            today: dt.date | None = None, focus: Focus | None = None) -> DryRun:
    """``n`` interviews of ``model`` with nothing preset: what a designer checks before
    fieldwork (which questions are reached, what the data look like, which rules the
    simulator could not meet)."""
    keys = pd.Index([f"uuid:dry-run-{i:06d}" for i in range(n)])
    gave_up: list[GaveUp] = []
    reached: dict[str, int] = {}
    rng = np.random.default_rng(seed)
    presets = Presets() if uniform else _consenting(model, keys, rng)
    data = answer_form(model, keys, presets, rng, today=today,
                       uniform=uniform, gave_up=gave_up, reached=reached, focus=focus)
    return DryRun(data, n, reached, gave_up)


#: Share of a dry run's respondents who agree at each consent gate, as most do in fieldwork.
CONSENTING = 0.9


def _consenting(model: FormModel, keys: pd.Index, rng: np.random.Generator) -> Presets:
    """Most respondents agree: each consent gate of the root takes the answer that lets the
    interview go on in :data:`CONSENTING` of the rows (the others are drawn like any answer),
    so a dry run's interviews reach the questions behind consent as fieldwork does."""
    root: dict[str, pd.Series] = {}
    for gate, given in model.consent_given.items():
        if given is None or model[gate].repeat is not None:
            continue
        values = np.full(len(keys), None, dtype=object)
        values[rng.random(len(keys)) < CONSENTING] = given
        root[gate] = pd.Series(values, index=keys, dtype=object)
    return Presets(root)


#: Interviews of each steered run of :func:`reachability`, and at most this many runs.
STEERED, MAX_STEERED = 100, 25


def reachability(model: FormModel, n: int, *, seed: int = 0) -> dict[str, int]:
    """Item name → interviews (of ``n`` drawn evenly) in which it was relevant; an item none
    of them reached gets another chance in a run of :data:`STEERED` interviews steered
    towards it: draws lean on the values of every condition on its way (its relevance, its
    groups', those of the questions and calculations they read). A branch only a rare
    combination of answers opens is then found without raising ``n``; an item still at 0
    is relevant for no answers the simulator can find."""
    reached = dict(dry_run(model, n, seed=seed, uniform=True).reached)
    todo = [i for i in model.items if (i.is_input or i.type == "note" or i.is_group)
            and reached.get(i.name, 1) == 0]
    # First one run steered towards all of them at once (they often share their way), then
    # one per item still not reached.
    for number, items in enumerate([todo, *([i] for i in todo[:MAX_STEERED])]):
        if not items or all(reached.get(i.name, 0) > 0 for i in items):
            continue  # reached on the way to an earlier one
        boost, avoid = _path_literals(model, *items)
        steered = dry_run(model, STEERED, seed=seed + 1 + number, uniform=True,
                          focus=Focus(boost, avoid, share=0.8))
        reached |= {name: count for name, count in steered.reached.items()
                    if count and not reached.get(name)}
    return reached


def _path_literals(model: FormModel, *items: Item) -> tuple[dict[str, list[str]],
                                                           dict[str, set[str]]]:
    """Per field, the literals the conditions on the way to ``items`` compare it with: to
    favour (``=``, ``selected``, ``<``…) and to avoid (``!=``)."""
    boost: dict[str, list[str]] = {}
    avoid: dict[str, set[str]] = {}
    seen: set[str] = set()
    stack = list(items)
    while stack:
        it = stack.pop()
        if it.name in seen:
            continue
        seen.add(it.name)
        texts = model.relevance(it)
        texts += [it.calculation] if it.calculation and not it.is_input else []
        for text in texts:
            try:
                tree = parse(text)
            except ExpressionError:
                continue
            for op, ref, literal in _comparisons(tree):
                if op == "!=":
                    avoid.setdefault(ref.name, set()).add(_literal_text(literal))
                else:
                    boost.setdefault(ref.name, []).append(_literal_text(literal))
            stack += [model.by_name[r] for r in references(tree) if r in model.by_name]
    return _through_calculations(model, boost), avoid


def _through_calculations(model: FormModel, boost: dict[str, list[str]]
                          ) -> dict[str, list[str]]:
    """Literals of a calculation passed on to the fields it copies (``if(c, ${a}, ${b})``,
    ``coalesce(${a}, ${b})``, ``${a}``): ``${age_now} >= 12`` leans ``age_self`` to 12."""
    out = {k: list(v) for k, v in boost.items()}
    stack = list(boost)
    seen: set[str] = set()
    while stack:
        name = stack.pop()
        item = model.by_name.get(name)
        if name in seen or item is None or not item.calculation or item.is_input:
            continue
        seen.add(name)
        try:
            tree = parse(item.calculation)
        except ExpressionError:
            continue
        for source in _copied(tree):
            out.setdefault(source, []).extend(out.get(name, []))
            stack.append(source)
    return {k: list(dict.fromkeys(v)) for k, v in out.items()}


def _copied(node: Node) -> list[str]:
    """The fields whose value an expression may be (not merely test)."""
    if isinstance(node, Ref):
        return [node.name]
    if isinstance(node, Call) and node.name == "if" and len(node.args) == 3:
        return _copied(node.args[1]) + _copied(node.args[2])
    if isinstance(node, Call) and node.name == "coalesce":
        return [name for arg in node.args for name in _copied(arg)]
    return []


def _relevant(run: _Run, item: Item) -> np.ndarray:
    """Where ``item`` is relevant; everywhere (and recorded) when its relevance fails."""
    try:
        return run.data.relevant(item).to_numpy().astype(bool)
    except (ExpressionError, ValueError, KeyError) as exc:
        n = len(run.data.table(item.repeat))
        run.give_up(item, "relevant", n, f"relevance not evaluated, taken as true: {exc}",
                    exc)
        return np.ones(n, dtype=bool)


def _answer(run: _Run, item: Item, presets: Presets, relevant: np.ndarray) -> None:
    data = run.data
    table = data.table(item.repeat)
    fixed = np.zeros(len(table), dtype=bool)  # rows the scenario decided
    if item.type == "calculate" or (item.type == "hidden" and item.calculation):
        values = _evaluated(run, item, item.calculation, "calculation", relevant)
    elif item.name in presets.derived:
        values = format_values(data.evaluate(item, presets.derived[item.name], rng=run.rng))
        fixed = relevant.copy()
    elif item.name in _preset_columns(presets, item):
        values = format_values(_preset(presets, item, data))
        fixed = relevant & values.notna().to_numpy()
        # A preset may fix some rows only: the others are drawn like any answer.
        open_rows = relevant & ~fixed
        if open_rows.any():
            values.loc[open_rows] = _draw(run, item, open_rows).to_numpy()
    elif item.default and not item.dynamic_default:
        values = _defaulted(run, item, relevant)
    else:
        values = pd.Series(None, index=table.index, dtype=object)
        if relevant.any():
            values.loc[relevant] = _draw(run, item, relevant).to_numpy()
    values = values.astype(object)
    values.loc[~relevant] = None
    if item.constraint and item.type != "calculate":
        values = _enforce(run, item, values, relevant, fixed=fixed)
    table[item.name] = values.to_numpy()


def _defaulted(run: _Run, item: Item, relevant: np.ndarray) -> pd.Series:
    """A literal default, as the device prefills it; in reachability mode half the answers
    are changed by the interviewer, as they may be (a default is not the only answer)."""
    values = pd.Series(item.default, index=run.data.table(item.repeat).index, dtype=object)
    if run.uniform and item.is_input:
        change = relevant & (run.rng.random(len(values)) < 0.5)
        if change.any():
            values.loc[change] = _draw(run, item, change).to_numpy()
    return values


def _evaluated(run: _Run, item: Item, expression: str, column: str,
               relevant: np.ndarray) -> pd.Series:
    try:
        return format_values(run.data.evaluate(item, expression, rng=run.rng))
    except (ExpressionError, ValueError, KeyError) as exc:
        index = run.data.table(item.repeat).index
        run.give_up(item, column, int(relevant.sum()), f"not evaluated, left empty: {exc}",
                    exc)
        return pd.Series(None, index=index, dtype=object)


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


def _open_repeat(run: _Run, item: Item, presets: Presets) -> None:
    """Create the repeat's instances: ``repeat_count`` per relevant parent row (1 to
    :data:`MAX_INSTANCES` when the form leaves the number to the interviewer)."""
    data, rng = run.data, run.rng
    outer = data.table(item.repeat)
    relevant = _relevant(run, item)
    run.reach(item, relevant)
    if item.repeat_count:
        evaluated = _evaluated(run, item, item.repeat_count, "repeat_count", relevant)
        counts = pd.to_numeric(evaluated, errors="coerce").fillna(0).to_numpy()
        counts = np.clip(counts, 0, 10 * MAX_INSTANCES).astype(int)
    elif item.name in presets.repeats:
        sizes = presets.repeats[item.name].groupby(PARENT).size()
        counts = sizes.reindex(outer.index).fillna(0).to_numpy().astype(int)
    else:
        counts = rng.integers(1, MAX_INSTANCES + 1, len(outer))
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


def _weights(codes: list[str], tested: list[str] | None = None, share: float = 0.5,
             avoid: set[str] | frozenset[str] = frozenset()) -> np.ndarray:
    """Choice probabilities: the special codes rarely, as respondents choose them; or, with
    ``tested`` (the reachability mode), every code equally often plus half the mass on the
    codes the form's conditions test, so each branch behind a chain of gates is taken in a few
    hundred interviews."""
    if tested is not None:
        w = np.array([0.1 if c in avoid else 1.0 for c in codes])
        w = w / w.sum()
        hits = np.array([c in tested for c in codes])
        if hits.any():
            w = w * (1 - share) + hits / hits.sum() * share
        return w
    w = np.array([RARE.get(c, 0.0) for c in codes])
    common = w == 0
    if common.any():
        w[common] = (1 - w.sum()) / common.sum()
    return w / w.sum()


Drawer = Callable[["_Run", Item, np.ndarray, int], list[object]]


def _draw(run: _Run, item: Item, rows: np.ndarray) -> pd.Series:
    """Random answers for the rows where ``item`` is relevant."""
    n = int(rows.sum())
    index = run.data.table(item.repeat).index[rows]
    drawer = _DRAWERS.get(item.type)
    pattern = None if item.is_select else _regex_of(item)
    texts = [sample_regex(pattern, run.rng) for _ in range(n)] if pattern else [None]
    if all(t is not None for t in texts):
        values: list[object] = list(texts)  # the format the constraint asks for
    elif drawer is not None:
        values = drawer(run, item, rows, n)
    elif item.type in _FILES:
        values = [f"{item.name}-{i}.{_FILES[item.type]}" for i in range(n)]
    else:
        values = [_TEXTS.get(item.type, "1")] * n
    return pd.Series(values, index=index, dtype=object)


def _draw_select_one(run: _Run, item: Item, rows: np.ndarray, n: int) -> list[object]:
    if _repeat_source(item):
        return list(_pick_from_repeat(run.data, item, rows, run.rng))
    mask, codes = _allowed(run, item, rows)
    if mask is None:
        return _file_codes(run, item, n)
    return list(_pick_one(mask, run.weights(item, codes), codes, run.rng))


def _per_row_options(run: _Run, item: Item, rows: np.ndarray, n: int,
                     pick: Callable[[list[str]], object]) -> list[object]:
    """``pick`` applied to the codes each row's choice filter allows (None where it allows
    none): the draw of a question that answers with several codes."""
    mask, codes = _allowed(run, item, rows)
    if mask is None:
        return _file_codes(run, item, n)
    out: list[object] = []
    for allowed in mask:
        options = [c for c, ok in zip(codes, allowed, strict=True) if ok]
        out.append(pick(options) if options else None)
    return out


def _draw_select_multiple(run: _Run, item: Item, rows: np.ndarray, n: int) -> list[object]:
    return _per_row_options(run, item, rows, n, lambda options: _pick_many(
        options, run.rng, run.weights(item, options) if run.uniform else None, run.focus.share))


def _draw_rank(run: _Run, item: Item, rows: np.ndarray, n: int) -> list[object]:
    return _per_row_options(run, item, rows, n,
                            lambda options: " ".join(run.rng.permutation(options)))


def _allowed(run: _Run, item: Item, rows: np.ndarray
             ) -> tuple[np.ndarray | None, list[str]]:
    """Which codes each row may choose (its choice filter applied); (None, []) when the
    choices are in a file the workbook does not carry."""
    lst = run.data.model.choices_for(item)
    if lst is None or not lst.choices:
        return None, []
    try:
        mask = run.data.choice_mask(item)
        return mask.to_numpy()[rows].astype(bool), list(mask.columns)
    except (ExpressionError, ValueError, KeyError) as exc:
        run.give_up(item, "choice_filter", int(rows.sum()),
                    f"choice filter not evaluated, every choice offered: {exc}", exc)
        codes = lst.codes()
        return np.ones((int(rows.sum()), len(codes)), dtype=bool), codes


def _file_codes(run: _Run, item: Item, n: int) -> list[object]:
    """Answers to a select whose choices are in a file the workbook does not carry
    (select_one_from_file): "1", or in reachability mode also the codes the form's
    conditions test it for (``${species} = 'other'``)."""
    codes = ["1", *(run.tested(item) or [])]
    return [codes[i] for i in run.rng.integers(0, len(codes), n)] if len(codes) > 1 else \
        ["1"] * n


def _draw_number(run: _Run, item: Item, rows: np.ndarray, n: int) -> list[object]:
    lo, hi = _bounds(run, item)
    lo, hi = lo[rows], hi[rows]
    span = np.maximum(hi - lo, 0)
    if run.uniform:
        # A third each: small values (as respondents give them), anywhere in the range, and
        # the values the form's conditions compare with.
        small = lo + np.minimum(span, np.floor(run.rng.exponential(np.maximum(1, span / 20))))
        wide = lo + span * run.rng.random(n)
        if item.type == "integer":
            wide = np.floor(lo + (span + 1) * run.rng.random(n)).clip(lo, hi)
        draw = _with_literals(run, item, np.where(run.rng.random(n) < 0.5, small, wide))
    elif item.type == "integer":
        draw = lo + np.minimum(span, np.floor(run.rng.exponential(np.maximum(1, span / 4))))
    else:
        draw = lo + span * run.rng.random(n)
    if item.type == "integer":
        return list(format_values(pd.Series(np.floor(draw))).to_numpy())
    return [f"{v:.1f}" for v in draw]


def _with_literals(run: _Run, item: Item, draw: np.ndarray) -> np.ndarray:
    """Half the draws replaced by a number the form compares this field with (or one off),
    so a branch at ``${age} >= 60`` is taken even when the bounds are wide."""
    numbers = [float(v) for v in run.focus.boost.get(item.name, []) if _is_number(v)]
    if not numbers:
        return draw
    near = np.array([v + d for v in numbers for d in (-1, 0, 1)])
    take = run.rng.random(len(draw)) < run.focus.share * 2 / 3
    return np.where(take, run.rng.choice(near, len(draw)), draw)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _draw_range(run: _Run, item: Item, rows: np.ndarray, n: int) -> list[object]:
    """A value of a range question: start to end by step (``parameters`` column)."""
    params = dict(re.findall(r"(\w+)\s*=\s*(-?[\d.]+)", item.get("parameters")))
    start, end = float(params.get("start", 1)), float(params.get("end", 10))
    step = abs(float(params.get("step", 1))) or 1.0
    values = np.arange(min(start, end), max(start, end) + step / 2, step)
    return list(format_values(pd.Series(run.rng.choice(values, n))).to_numpy())


def _draw_text(run: _Run, item: Item, rows: np.ndarray, n: int) -> list[object]:
    words = run.rng.integers(0, len(_WORDS), n)
    numbers = run.rng.integers(1, 99, n)
    out: list[object] = [f"{_WORDS[i]} {j}" for i, j in zip(words, numbers, strict=True)]
    strings = [v for v in run.focus.boost.get(item.name, []) if v.strip()]
    if strings:
        take = run.rng.random(n) < run.focus.share
        out = [str(run.rng.choice(strings)) if t else v for t, v in zip(take, out, strict=True)]
    return out


def _draw_date(run: _Run, item: Item, rows: np.ndarray, n: int) -> list[object]:
    day = run.data.today or dt.date(2026, 1, 1)
    return [day.isoformat()] * n


def _draw_time(run: _Run, item: Item, rows: np.ndarray, n: int) -> list[object]:
    minutes = run.rng.integers(8 * 60, 18 * 60, n)
    return [f"{m // 60:02d}:{m % 60:02d}:00.000+00:00" for m in minutes]


def _draw_datetime(run: _Run, item: Item, rows: np.ndarray, n: int) -> list[object]:
    day = (run.data.today or dt.date(2026, 1, 1)).isoformat()
    return [f"{day}T{t}" for t in _draw_time(run, item, rows, n)]


def _points(run: _Run, n: int, count: int) -> list[list[str]]:
    lat = -1 + run.rng.random((n, count)) * 0.01 + run.rng.random((n, 1))
    lon = 36 + run.rng.random((n, count)) * 0.01 + run.rng.random((n, 1))
    return [[f"{a:.6f} {b:.6f} 1500.0 5.0" for a, b in zip(la, lo, strict=True)]
            for la, lo in zip(lat, lon, strict=True)]


def _draw_geopoint(run: _Run, item: Item, rows: np.ndarray, n: int) -> list[object]:
    return [p[0] for p in _points(run, n, 1)]


def _draw_geotrace(run: _Run, item: Item, rows: np.ndarray, n: int) -> list[object]:
    return [";".join(p) for p in _points(run, n, 3)]


def _draw_geoshape(run: _Run, item: Item, rows: np.ndarray, n: int) -> list[object]:
    # A closed ring: the first point again at the end (ODK needs at least four points).
    return [";".join([*p, p[0]]) for p in _points(run, n, 3)]


def _draw_barcode(run: _Run, item: Item, rows: np.ndarray, n: int) -> list[object]:
    return [str(v) for v in run.rng.integers(10**11, 10**12, n)]


def _draw_stamp(run: _Run, item: Item, rows: np.ndarray, n: int) -> list[object]:
    return ["2026-01-01T09:00:00.000+00:00"] * n


_DRAWERS: dict[str, Drawer] = {
    "select_one": _draw_select_one, "select_one_external": _draw_select_one,
    "select_one_from_file": _draw_select_one, "select_multiple": _draw_select_multiple,
    "select_multiple_from_file": _draw_select_multiple, "rank": _draw_rank,
    "integer": _draw_number, "decimal": _draw_number, "range": _draw_range,
    "text": _draw_text, "date": _draw_date, "today": _draw_date, "time": _draw_time,
    "datetime": _draw_datetime, "start": _draw_stamp, "end": _draw_stamp,
    "geopoint": _draw_geopoint, "start-geopoint": _draw_geopoint,
    "geotrace": _draw_geotrace, "geoshape": _draw_geoshape, "barcode": _draw_barcode,
}


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


def _pick_many(codes: list[str], rng: np.random.Generator,
               weights: np.ndarray | None = None, alone: float = 0.5) -> str:
    """1–3 common codes, rarely one of the special ones alone; with ``weights``
    (reachability mode) one code alone drawn by them (share ``alone``), else 1–3 of any."""
    if weights is not None:
        if rng.random() < alone:
            return str(rng.choice(codes, p=weights))
        k = 1 + int(rng.random() < 0.5) + int(rng.random() < 0.2)
        return " ".join(sorted(rng.choice(codes, min(k, len(codes)), replace=False),
                               key=codes.index))
    common = [c for c in codes if c not in RARE] or codes
    special = [c for c in codes if c in RARE]
    if special and rng.random() < 0.04:
        return str(rng.choice(special))
    k = min(len(common), 1 + int(rng.random() < 0.5) + int(rng.random() < 0.2))
    return " ".join(sorted(rng.choice(common, k, replace=False), key=codes.index))


def _self_bound(item: Item, part: Node) -> tuple[str, Node] | None:
    """``. op expr`` (either way round; ``${self}`` reads as ``.``) as (op, expr)."""
    if not (isinstance(part, BinaryOp) and part.op in _FLIP):
        return None

    def is_self(node: Node) -> bool:
        return isinstance(node, Current) or (isinstance(node, Ref) and node.name == item.name)

    if is_self(part.left) and not is_self(part.right):
        return part.op, part.right
    if is_self(part.right) and not is_self(part.left):
        return _FLIP[part.op], part.left
    return None


def _bounds(run: _Run, item: Item) -> tuple[np.ndarray, np.ndarray]:
    """Lower/upper bounds per row from ``. >= expr`` / ``. <= expr`` parts of the constraint
    (0 to 20 without one; ``uniform`` also reaches far beyond 20 when nothing caps it)."""
    data = run.data
    n = len(data.table(item.repeat))
    lo, hi = np.zeros(n), np.full(n, np.nan)
    try:
        parts = conjuncts(item.constraint) if item.constraint else []
    except ExpressionError:
        parts = []
    for part in parts:
        bound = _self_bound(item, part)
        if bound is None:
            continue
        op, expr = bound
        try:
            value = pd.to_numeric(data.evaluate(item, expr), errors="coerce").to_numpy(float)
        except Exception:  # a bound we cannot read just widens the range
            continue
        value = np.broadcast_to(value, (n,))
        step = 1.0 if item.type == "integer" else 0.1
        if op in (">=", ">"):
            lo = np.where(np.isnan(value), lo, value + step * (op == ">"))
        else:
            hi = np.where(np.isnan(value), hi, value - step * (op == "<"))
    width = run.rng.choice([20.0, 120.0, 1000.0], n) if run.uniform else 20.0
    hi = np.where(np.isnan(hi), lo + width, hi)
    return lo, np.maximum(lo, hi)


def _regex_of(item: Item) -> str | None:
    """The pattern of a ``regex(., '…')`` part of the constraint (the first), if any."""
    if not item.constraint:
        return None
    try:
        parts = conjuncts(item.constraint)
    except ExpressionError:
        return None
    for part in parts:
        for node in _walk(part):
            if isinstance(node, Call) and node.name == "regex" and len(node.args) == 2 \
                    and isinstance(node.args[1], String):
                return node.args[1].value
    return None


def _compared_literals(model: FormModel) -> dict[str, list[str]]:
    """Field → the literals the form's expressions compare it with (``${age} >= 60``)."""
    out: dict[str, list[str]] = {}
    for item in model.items:
        for text in item.expressions().values():
            try:
                tree = parse(text)
            except ExpressionError:
                continue
            for _, ref, literal in _comparisons(tree):
                out.setdefault(ref.name, []).append(_literal_text(literal))
    return _through_calculations(model, out)


def _literal_text(literal: String | Number) -> str:
    value = literal.value
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _comparisons(tree: Node) -> Iterator[tuple[str, Ref, String | Number]]:
    """(operator, field, literal) of each ``${x} op literal`` (either way round) and
    ``selected(${x}, literal)`` (operator 'selected') in an expression."""
    for op, ref, literal in comparisons(tree, ("=", "!=", *_FLIP)):
        if isinstance(ref, Ref) and isinstance(literal, (String, Number)):
            yield op, ref, literal


def _enforce(run: _Run, item: Item, values: pd.Series, relevant: np.ndarray, *,
             fixed: np.ndarray, tries: int = 40) -> pd.Series:
    """Redraw answers that break the constraint; a preset that breaks it is a scenario bug.
    When random draws keep failing, every value a row may take is tried (a select's codes, a
    short integer range); rows nothing satisfies are given up (left empty) when the run keeps
    a record."""
    data = run.data
    bad = np.zeros(len(values), dtype=bool)
    for attempt in range(tries + 1):
        try:
            ok = _satisfied(run, item, values)
        except (ExpressionError, ValueError, KeyError) as exc:
            run.give_up(item, "constraint", int(relevant.sum()),
                        f"constraint not evaluated, answers not checked: {exc}", exc)
            return values
        bad = relevant & ~ok & values.notna().to_numpy()
        if not bad.any():
            return values
        if (bad & fixed).any():
            rows = list(data.table(item.repeat).index[bad & fixed][:3])
            raise DhsurveyError(
                f"simulated value of '{item.name}' breaks its constraint "
                f"'{item.constraint}' for {int((bad & fixed).sum())} row(s), e.g. {rows}",
                code="simulate-constraint", form=data.model.form_id, field=item.name)
        if attempt == tries:
            break
        redraw = _draw(run, item, bad)
        if item.is_select_multiple and attempt >= tries // 2:
            mask, codes = _allowed(run, item, bad)
            if mask is not None:
                redraw = pd.Series([_single(codes, row, run.rng) for row in mask],
                                   index=redraw.index, dtype=object)
        values = values.copy()
        values.loc[bad] = redraw.to_numpy()
    values, bad = _search(run, item, values, bad)
    if bad.any():
        values = values.copy()
        values.loc[bad] = None
        run.give_up(item, "constraint", int(bad.sum()),
                    f"no value satisfies '{item.constraint}', left empty")
    return values


def _satisfied(run: _Run, item: Item, values: pd.Series) -> np.ndarray:
    """Whether each row's value meets the constraint (``${name}`` of the field itself in its
    own constraint reads the value being tried, as ``.`` does)."""
    data = run.data
    frame = None
    if f"${{{item.name}}}" in item.constraint.replace(" ", ""):
        frame = data.level_frame(item.repeat).copy()
        frame[item.name] = values.to_numpy()
    return data.evaluate_bool(item, item.constraint, current=values,
                              frame=frame).to_numpy().astype(bool)


#: Values :func:`_search` tries at most per field.
SEARCH_LIMIT = 60


def _search(run: _Run, item: Item, values: pd.Series, bad: np.ndarray
            ) -> tuple[pd.Series, np.ndarray]:
    """Try, for the rows random draws did not fix, each value they may take (a select_one's
    allowed codes, an integer's values when its range is short): the answer a respondent
    with that one possible answer gives. Returns the values and the rows still unmet."""
    rows = np.flatnonzero(bad)
    if item.is_select_one and not _repeat_source(item):
        mask, codes = _allowed(run, item, bad)
    elif item.type == "integer":
        lo, hi = (b[bad] for b in _bounds(run, item))
        if hi.max() - lo.min() > SEARCH_LIMIT:
            return values, bad
        numbers = np.arange(lo.min(), hi.max() + 1)
        codes = [str(int(v)) for v in numbers]
        mask = (numbers[None, :] >= lo[:, None]) & (numbers[None, :] <= hi[:, None])
    else:
        return values, bad
    if mask is None:
        return values, bad
    open_ = np.ones(len(rows), dtype=bool)
    for j in run.rng.permutation(len(codes))[:SEARCH_LIMIT]:
        trying = open_ & mask[:, j]
        if not trying.any():
            continue
        trial = values.copy()
        trial.iloc[rows[trying]] = codes[j]
        try:
            ok = _satisfied(run, item, trial)[rows]
        except (ExpressionError, ValueError, KeyError):
            break
        fixed = trying & ok
        values.iloc[rows[fixed]] = codes[j]
        open_ &= ~fixed
        if not open_.any():
            break
    still = np.zeros(len(values), dtype=bool)
    still[rows[open_]] = True
    return values, still


def _single(codes: list[str], allowed: np.ndarray, rng: np.random.Generator) -> str | None:
    options = [c for c, ok in zip(codes, allowed, strict=True) if ok]
    return str(rng.choice(options)) if options else None


# -- strings matching a constraint's regular expression ------------------------------------------

_MAX_REPEAT = 6


def sample_regex(pattern: str, rng: np.random.Generator) -> str | None:
    """A random string that ``pattern`` matches in full (what ``regex(., pattern)`` tests), so
    a text question with a format rule (an email, a phone number, an ID) gets a valid answer;
    None when the pattern is not a Python regular expression or uses what cannot be sampled
    (lookarounds, back references)."""
    try:
        tree = _re_module("_parser").parse(pattern)
        text = "".join(_sample(tree, rng))
    except (re.error, _Unsampled, RecursionError):
        return None
    return text if re.search(pattern, text) else None


class _Unsampled(Exception):
    pass


def _re_module(name: str) -> Any:
    """The standard library's own pattern parser (``re._parser``) or its opcodes
    (``re._constants``): what Python itself understands of a pattern, no second parser."""
    return importlib.import_module(f"re.{name}")


def _sample(tree: Any, rng: np.random.Generator) -> Iterator[str]:
    c = _re_module("_constants")

    for op, arg in tree:
        if op is c.LITERAL:
            yield chr(arg)
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT):
            low, high, sub = arg
            high = min(high, max(low, _MAX_REPEAT)) if high is not c.MAXREPEAT else \
                max(low, _MAX_REPEAT)
            for _ in range(int(rng.integers(low, high + 1))):
                yield from _sample(sub, rng)
        elif op is c.SUBPATTERN:
            yield from _sample(arg[-1], rng)
        elif op is c.ATOMIC_GROUP:
            yield from _sample(arg, rng)
        elif op is c.BRANCH:
            yield from _sample(arg[1][int(rng.integers(len(arg[1])))], rng)
        elif op in (c.IN, c.ANY, c.NOT_LITERAL, c.CATEGORY):
            yield _one_char(op, arg, rng)
        elif op is not c.AT:
            raise _Unsampled(str(op))


_CATEGORY_CHARS = {"CATEGORY_DIGIT": "0123456789", "CATEGORY_WORD": "abcxyzABC019_",
                   "CATEGORY_SPACE": " ", "CATEGORY_NOT_DIGIT": "abcXYZ",
                   "CATEGORY_NOT_WORD": "-+.", "CATEGORY_NOT_SPACE": "abc123"}
_PRINTABLE = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .-_@"


def _one_char(op: Any, arg: Any, rng: np.random.Generator) -> str:
    """One character an IN/ANY/NOT_LITERAL/CATEGORY node matches."""
    c = _re_module("_constants")

    if op is c.ANY:
        return _PRINTABLE[int(rng.integers(len(_PRINTABLE)))]
    if op is c.NOT_LITERAL:
        return next(ch for ch in _PRINTABLE if ord(ch) != arg)
    if op is c.CATEGORY:
        chars = _CATEGORY_CHARS.get(str(arg), "a")
        return chars[int(rng.integers(len(chars)))]
    items = list(arg)
    if items and items[0][0] is c.NEGATE:
        pattern = re.compile(f"[^{''.join(re.escape(ch) for ch in _forbidden(items[1:]))}]")
        options = [ch for ch in _PRINTABLE if pattern.fullmatch(ch)]
        if not options:
            raise _Unsampled("negated class")
        return options[int(rng.integers(len(options)))]
    sub, sub_arg = items[int(rng.integers(len(items)))]
    if sub is c.RANGE:
        return chr(int(rng.integers(sub_arg[0], sub_arg[1] + 1)))
    if sub is c.LITERAL:
        return chr(sub_arg)
    if sub is c.CATEGORY:
        chars = _CATEGORY_CHARS.get(str(sub_arg), "a")
        return chars[int(rng.integers(len(chars)))]
    raise _Unsampled(str(sub))


def _forbidden(items: list[tuple[Any, Any]]) -> Iterator[str]:
    c = _re_module("_constants")

    for op, arg in items:
        if op is c.LITERAL:
            yield chr(arg)
        elif op is c.RANGE:
            low, high = arg
            yield from (chr(i) for i in range(low, min(high, low + 200) + 1))
        elif op is c.CATEGORY:
            yield from _CATEGORY_CHARS.get(str(arg), "")
