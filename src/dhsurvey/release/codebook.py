"""The codebook: one row per variable of each release table, from the form model and the data.

A researcher needs to know, for every column, what was asked (the label in every interview
language and the short Stata label), of whom (the universe: the relevance of the question and
its enclosing groups, put into words with the choice labels), what the codes mean, which codes
count as missing, and what the data look like (n, frequencies, simple statistics). Writing it
from the same model as the data files keeps the two from drifting apart.

The Excel and Markdown files are deterministic (no clock, stable formatting, fixed zip
timestamps) so a rerun on the same data changes nothing in version control.
"""

from __future__ import annotations

import io
import math
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dhsurvey.forms.expressions import (
    BinaryOp,
    Call,
    ExpressionError,
    Negate,
    Node,
    Number,
    Ref,
    parse,
)
from dhsurvey.forms.expressions import String as Literal
from dhsurvey.forms.model import STATA, FormModel, Item
from dhsurvey.io import atomic_write_bytes, atomic_write_text, neutralise_formulas
from dhsurvey.release.formats.parquet import ParquetTable
from dhsurvey.release.labels import (
    META_LABELS,
    choice_labels,
    dummy_columns,
    fields_for,
    language_code,
    missing_codes,
    pick_label,
    resolve_language,
)
from dhsurvey.release.writers import model_for

#: Zip entry time in the .xlsx and its document properties (no wall clock in the file).
_ZIP_TIME = (2000, 1, 1, 0, 0, 0)
#: Characters an xlsx cell holds at most.
XLSX_CELL_TEXT = 32_767
_CORE_TIME = "2000-01-01T00:00:00Z"
_MISSING_NAMES = {98: "don't know", 99: "refused / prefer not to say"}


# -- universe in words -----------------------------------------------------------------------------


class _Unrenderable(Exception):
    """An expression (part) with no wording; the raw expression is shown instead."""


_COMPARE = {"=": "=", "!=": "≠", "<": "<", "<=": "≤", ">": ">", ">=": "≥"}
_ARITHMETIC = {"+": "+", "-": "-", "*": "×", "div": "÷", "mod": "mod"}
# Precedence of rendered text: an operand of lower precedence gets parentheses.
_OR, _AND, _CMP, _ARITH, _ATOM = range(5)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class _Renderer:
    """Walk a parsed relevance and say it in words, with choice labels for select codes."""

    def __init__(self, model: FormModel, language: str) -> None:
        self.model = model
        self.language = language

    def __call__(self, node: Node) -> tuple[str, int]:
        if isinstance(node, BinaryOp):
            one_of = self.one_of(node)
            if one_of:
                return one_of, _CMP
            if node.op in ("and", "or"):
                level = _AND if node.op == "and" else _OR
                left, right = self.wrap(node.left, level), self.wrap(node.right, level)
                return f"{left} {node.op} {right}", level
            if node.op in _COMPARE:
                return self.compare(node), _CMP
            if node.op in _ARITHMETIC:
                left, right = self.wrap(node.left, _ARITH), self.wrap(node.right, _ARITH + 1)
                return f"{left} {_ARITHMETIC[node.op]} {right}", _ARITH
        if isinstance(node, Ref):
            return node.name, _ATOM
        if isinstance(node, Number):
            return _number(node.value), _ATOM
        if isinstance(node, Literal):
            return f"'{node.value}'", _ATOM
        if isinstance(node, Negate):
            return f"-{self.wrap(node.operand, _ATOM)}", _ATOM
        if isinstance(node, Call):
            return self.call(node)
        raise _Unrenderable(type(node).__name__)

    def one_of(self, node: BinaryOp) -> str | None:
        """``${x} = 2 or ${x} = 5 or ${x} = 6`` → "x is one of A / B / C"."""
        terms: list[Node] = []
        stack: list[Node] = [node]
        while stack:
            current = stack.pop()
            if isinstance(current, BinaryOp) and current.op == "or":
                stack += [current.right, current.left]
            else:
                terms.append(current)
        pairs: list[tuple[Ref, Node]] = []
        for term in terms:
            if not (isinstance(term, BinaryOp) and term.op == "=" and isinstance(term.left, Ref)
                    and isinstance(term.right, Number | Literal)):
                return None
            pairs.append((term.left, term.right))
        names = {ref.name for ref, _ in pairs}
        if len(pairs) < 3 or len(names) != 1:
            return None
        item = self.item(pairs[0][0])
        shown = []
        for _, literal in pairs:
            label = self.code_label(item, literal)
            shown.append(label if label is not None else self(literal)[0])
        return f"{names.pop()} is one of {' / '.join(shown)}"

    def wrap(self, node: Node, level: int) -> str:
        text, own = self(node)
        return f"({text})" if own < level else text

    def item(self, node: Node) -> Item | None:
        if isinstance(node, Ref) and node.name in self.model.by_name:
            return self.model[node.name]
        return None

    def code_label(self, item: Item | None, literal: Node) -> str | None:
        """The choice label of a literal compared with a select field, if it is one of its codes."""
        if item is None or not item.is_select or not isinstance(literal, Number | Literal):
            return None
        code = _number(literal.value) if isinstance(literal, Number) else literal.value
        return choice_labels(self.model, item, self.language, limit=None).get(code)

    def answered(self, node: Node) -> str | None:
        """``string-length(${x})`` → ``x``: the field whose answer's presence is tested."""
        if isinstance(node, Call) and node.name == "string-length" and len(node.args) == 1 \
                and isinstance(node.args[0], Ref):
            return node.args[0].name
        return None

    def compare(self, node: BinaryOp) -> str:
        op, left, right = node.op, node.left, node.right
        if isinstance(left, Number | Literal) and isinstance(right, Ref):
            flipped = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}.get(op, op)
            return self.compare(BinaryOp(node.pos, flipped, right, left))
        if isinstance(left, Ref) and isinstance(right, Literal) and right.value == "" \
                and op in ("=", "!="):
            return f"{left.name} is {'blank' if op == '=' else 'answered'}"
        name = self.answered(left)
        if name and isinstance(right, Number) and right.value == 0:
            if op in (">", "!="):
                return f"{name} is answered"
            if op == "=":
                return f"{name} is blank"
        label = self.code_label(self.item(left), right)
        right_text = label if label is not None else self.wrap(right, _ARITH)
        return f"{self.wrap(left, _ARITH)} {_COMPARE[op]} {right_text}"

    def call(self, node: Call) -> tuple[str, int]:
        args = node.args
        if node.name == "selected" and isinstance(args[0], Ref):
            label = self.code_label(self.item(args[0]), args[1])
            if label is None and not isinstance(args[1], Number | Literal):
                raise _Unrenderable("selected() with a computed choice")
            shown = label if label is not None else self(args[1])[0]
            return f"{args[0].name} includes {shown}", _CMP
        if node.name == "count-selected" and isinstance(args[0], Ref):
            return f"number of {args[0].name} choices", _ATOM
        if node.name == "not":
            return f"not ({self(args[0])[0]})", _ATOM
        if node.name in ("true", "false"):
            return ("always" if node.name == "true" else "never"), _ATOM
        raise _Unrenderable(node.name)


def describe_universe(model: FormModel, item: Item, language: str | None = None) -> str:
    """Who was asked ``item``, in words: "Asked if: consent = Yes and age ≥ 12".

    Each relevance (the enclosing groups' first, then the field's own) is rendered from its
    parsed expression; one that cannot be put into words is shown as the raw expression.
    """
    return _universe(model, item, language, {})


def _universe(model: FormModel, item: Item, language: str | None,
              rendered: dict[str, tuple[str, int]]) -> str:
    """:func:`describe_universe`, each expression rendered once into ``rendered`` (kept by
    the caller for one model and language: a group's relevance holds for all its fields)."""
    relevances = model.relevance(item)
    if not relevances:
        return f"All {item.repeat} entries" if item.repeat else "All respondents"
    lang = resolve_language(model, language)
    render = _Renderer(model, lang)
    parts: list[tuple[str, int]] = []
    for expression in relevances:
        if expression not in rendered:
            try:
                rendered[expression] = render(parse(expression))
            except (_Unrenderable, ExpressionError, KeyError):
                rendered[expression] = (expression, _OR)
        parts.append(rendered[expression])
    if len(parts) == 1:
        return f"Asked if: {parts[0][0]}"
    return "Asked if: " + " and ".join(f"({t})" if p < _AND else t for t, p in parts)


# -- frequencies and statistics --------------------------------------------------------------------


def _present_mask(values: pd.Series) -> np.ndarray:
    """Non-missing mask: NA/NaN/NaT and empty strings are missing."""
    dtype = values.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "biuf":  # numbers: only NaN is missing
        numbers = values.to_numpy()
        return ~np.isnan(numbers) if dtype.kind == "f" else np.ones(len(numbers), dtype=bool)
    if dtype.kind in "biuf" and hasattr(values.array, "_mask"):  # Int64, Float64, boolean
        return ~np.asarray(values.array.isna(), dtype=bool)
    mask = values.notna().to_numpy(dtype=bool)
    if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
        mask &= (values.astype("string").fillna("").str.strip() != "").to_numpy(dtype=bool)
    return mask


def _code_text(value: Any) -> str:
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _numbers(values: pd.Series, present: np.ndarray) -> np.ndarray | None:
    """The present values of a numeric (or bool) column as a numpy array without NaN, or None
    for other columns (counted the general way)."""
    dtype = values.dtype
    if not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)) \
            or isinstance(dtype, pd.CategoricalDtype) or dtype.kind not in "biuf":
        return None
    if isinstance(dtype, np.dtype):
        out = values.to_numpy()[present]
    else:
        numpy_dtype = getattr(dtype, "numpy_dtype", None)
        if numpy_dtype is None:
            return None
        out = values.array[present].to_numpy(dtype=numpy_dtype)
    if out.dtype.kind == "f" and bool(np.isnan(out).any()):
        return None  # NaN as a value (not NA) of a Float64 column: the general way
    return out


class _Frequencies:
    """Counts (and weighted sums) per code text of one column, each found once.

    ``counts``: answers per code text; ``weighted`` (when weights are given)
    holds, per code text, the weights summed in row order as pandas' groupby sums them, so
    the numbers are those of the frequency table computed value by value.
    """

    def __init__(self, values: pd.Series, present: np.ndarray, weights: np.ndarray | None,
                 multiple: bool) -> None:
        self.counts: dict[str, int] = {}
        self.weighted: dict[str, float] | None = None
        self.total = 0.0
        if weights is not None:
            self.total = float(pd.Series(weights[present]).sum())
        numbers = None if multiple else _numbers(values, present)
        if numbers is None or not self._numeric(numbers, present, weights):
            self._general(values, present, weights, multiple)

    def _numeric(self, numbers: np.ndarray, present: np.ndarray,
                 weights: np.ndarray | None) -> bool:
        """Counts of a numeric column by sorting; False (nothing done) if two values share
        a code text, which the general way sums in its own order."""
        distinct, inverse, counts = np.unique(numbers, return_inverse=True, return_counts=True)
        texts = [_code_text(v) for v in distinct.tolist()]
        if len(set(texts)) != len(texts):
            return False
        self.counts = dict(zip(texts, counts.tolist(), strict=True))
        if weights is not None:
            # groupby sums each group in row order (as the general way's per-value groups).
            by_value = pd.Series(weights[present]).groupby(inverse.ravel()).sum()
            sums = np.zeros(len(texts), dtype="float64")
            sums[by_value.index.to_numpy()] = by_value.to_numpy()
            self.weighted = dict(zip(texts, sums.tolist(), strict=True))
        return True

    def _general(self, values: pd.Series, present: np.ndarray, weights: np.ndarray | None,
                 multiple: bool) -> None:
        answered = values[present]
        if multiple:
            tokens = answered.astype("string").str.split().explode().dropna()
            counts = tokens.value_counts()
            owner = tokens.index
        else:  # counted per distinct value, then per code text (1.0 and 1 are code "1")
            distinct = answered.value_counts(sort=False)
            distinct = distinct[distinct > 0]  # a categorical's unused categories are not answers
            text = {v: _code_text(v) for v in distinct.index}
            counts = distinct.groupby([text[v] for v in distinct.index], sort=False).sum()
        self.counts = {str(c): int(n) for c, n in counts.items()}
        if weights is None:
            return
        w = pd.Series(weights, index=values.index)
        if multiple:
            by_code = pd.Series(w.loc[owner].to_numpy(),
                                index=tokens.to_numpy()).groupby(level=0).sum()
        else:
            by_value = w[present].groupby(answered, sort=False, observed=True).sum()
            by_value = by_value[[v in text for v in by_value.index]]
            by_code = by_value.groupby([text[v] for v in by_value.index], sort=False).sum()
        self.weighted = {str(c): float(s) for c, s in by_code.items()}


def _table(freq: _Frequencies, labels: Mapping[str, str], n: int,
           weighted: bool) -> dict[str, Any]:
    """The frequency table's columns as arrays, the list's codes first in list order."""
    order = list(labels) + sorted(c for c in freq.counts if c not in labels)
    counts = np.array([freq.counts.get(c, 0) for c in order], dtype="int64")
    table: dict[str, Any] = {"code": order, "label": [labels.get(c, "") for c in order],
                             "n": counts,
                             "percent": counts / n * 100 if n else np.full(len(order), np.nan)}
    if weighted:
        sums = freq.weighted or {}
        shares = np.array([float(sums.get(c, 0.0)) for c in order], dtype="float64")
        table["weighted"] = shares
        table["weighted_percent"] = shares / freq.total * 100 if freq.total \
            else np.full(len(order), np.nan)
    return table


def _weights(weights: pd.Series | None) -> np.ndarray | None:
    if weights is None:
        return None
    return pd.to_numeric(weights, errors="coerce").astype("float64").to_numpy()


def frequency_table(values: pd.Series, labels: Mapping[str, str], *,
                    weights: pd.Series | None = None, multiple: bool = False) -> pd.DataFrame:
    """Counts (and weighted sums) per code, the list's codes first in list order.

    ``multiple``: values are space-separated select_multiple answers and each code counts the
    respondents who chose it (these add up to more than n). Percentages are of the non-missing
    answers (weighted: of their total weight; rows without a weight are left out there).
    """
    present = _present_mask(values)
    if weights is not None and not weights.index.equals(values.index):
        weights = weights.reindex(values.index)  # rows matched by label
    freq = _Frequencies(values, present, _weights(weights), multiple)
    return pd.DataFrame(_table(freq, labels, int(present.sum()), weights is not None))


def _render_frequencies(table: Mapping[str, Any], column: str) -> str:
    shares = table["percent" if column == "n" else "weighted_percent"].tolist()
    parts = []
    for code, label, count, share in zip(table["code"], table["label"],
                                         table[column].tolist(), shares, strict=True):
        shown = str(int(count)) if column == "n" else f"{count:.1f}"
        pct = "" if np.isnan(share) else f" ({share:.1f}%)"
        name = f"{code} {label}".strip()
        parts.append(f"{name}: {shown}{pct}")
    return "; ".join(parts)


def _statistics(values: pd.Series, present: np.ndarray | None = None) -> dict[str, Any]:
    """min/median/max/mean of a numeric column (min/max dates as ISO text for date columns);
    ``present``: the column's :func:`_present_mask`, if known."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        stamps = values.dropna()
        if stamps.empty:
            return {}
        if stamps.dt.tz is None and bool((stamps == stamps.dt.normalize()).all()):
            return {"min": stamps.min().date().isoformat(), "max": stamps.max().date().isoformat()}
        return {"min": stamps.min().isoformat(), "max": stamps.max().isoformat()}
    if pd.api.types.is_bool_dtype(values.dtype) or not pd.api.types.is_numeric_dtype(values.dtype):
        return {}
    plain = _numbers(values, _present_mask(values) if present is None else present)
    if plain is not None:  # pandas' reductions, on the numpy array
        floats = plain.astype("float64")
        if not len(floats):
            return {}
        return {"min": _tidy(floats.min()), "median": _tidy(np.nanmedian(floats)),
                "max": _tidy(floats.max()),
                "mean": _tidy(round(float(floats.sum() / np.float64(len(floats))), 4))}
    numbers = pd.to_numeric(values).astype("Float64").dropna().astype("float64")
    if numbers.empty:
        return {}
    return {"min": _tidy(numbers.min()), "median": _tidy(numbers.median()),
            "max": _tidy(numbers.max()), "mean": _tidy(round(float(numbers.mean()), 4))}


def _tidy(x: float) -> float | int:
    return int(x) if float(x).is_integer() else float(x)


# -- the codebook table ----------------------------------------------------------------------------


def _languages(models: list[FormModel]) -> list[str]:
    out: list[str] = []
    for model in models:
        for lang in [*model.languages, STATA]:
            if lang not in out:
                out.append(lang)
    return [lang for lang in out if lang != STATA] + [STATA]


def _type_text(item: Item) -> str:
    return " ".join(p for p in (item.type, item.list_name or "", "or_other" if item.or_other
                                else "") if p)


class _TableMemo:
    """What the rows of one table's model share: each relevance rendered once (a group's
    holds for all its fields) and each choice list's labels made once per language (a yes/no
    list serves hundreds of fields)."""

    def __init__(self, model: FormModel) -> None:
        self.model = model
        self.universes: dict[str, tuple[str, int]] = {}
        self._labels: dict[tuple[str | None, str | None], dict[str, str]] = {}
        self._texts: dict[tuple[str | None, str], str] = {}

    def choice_labels(self, item: Item, language: str | None) -> dict[str, str]:
        """:func:`~dhsurvey.release.labels.choice_labels` of ``item``, not cut short."""
        key = (item.list_name, language)
        if key not in self._labels:
            self._labels[key] = choice_labels(self.model, item, language, limit=None)
        return self._labels[key]

    def values_text(self, item: Item, language: str) -> str:
        """``code = label; …`` of ``item``'s choices in ``language``."""
        key = (item.list_name, language)
        if key not in self._texts:
            self._texts[key] = "; ".join(f"{code} = {text}" for code, text
                                         in self.choice_labels(item, language).items())
        return self._texts[key]


def build_codebook(tables: Mapping[str, pd.DataFrame | ParquetTable],
                   models: Mapping[str, FormModel], *,
                   weights: Mapping[str, str] | None = None,
                   language: str | None = None,
                   variance: str | None = None) -> pd.DataFrame:
    """One row per column of every table (``form`` or ``form.repeat`` keys, as for release).

    Columns: form, variable, position, ``label_<lang>`` for every interview language and
    ``label_stata``, type, group, pii, universe (in ``language``, default the form's default
    language), relevance (raw), ``values_<lang>`` (codes with labels, every language),
    missing_codes, dtype, n (non-missing, 98/99 included: they are answers), n_missing,
    frequencies and, when ``weights[form]`` names a column of the table, weighted_frequencies
    for categorical variables, and min/median/max/mean for numeric ones. ``variance``: how to
    estimate variances from the design variables, shown in the codebook's preamble.
    """
    weights = weights or {}
    table_models = {name: model_for(name, models) for name in tables}
    langs = _languages(list(table_models.values()))
    rows: list[dict[str, Any]] = []
    for name, df in tables.items():
        model = table_models[name]
        df = df.reset_index(drop=True)
        weight_column = weights.get(name)
        # The weights as numbers once per table, not once per variable.
        w = _weights(df[weight_column]) if weight_column is not None \
            and weight_column in df.columns else None
        dummies = dummy_columns(model)
        tags = missing_codes(model)
        columns = list(map(str, df.columns))
        items = fields_for(model, columns)
        memo = _TableMemo(model)
        for position, column in enumerate(columns, start=1):
            rows.append(_row(name, model, df[column], column, position, langs, language,
                             (items[column], dummies.get(column)), tags, w, weight_column,
                             memo))
    codebook = pd.DataFrame(rows)
    ordered = ["form", "variable", "position", *[f"label_{language_code(lang)}" for lang in langs],
               "type", "group", "pii", "universe", "relevance",
               *[f"values_{language_code(lang)}" for lang in langs], "missing_codes", "dtype",
               "n", "n_missing", "frequencies", "weighted_frequencies", "min", "median", "max",
               "mean"]
    codebook = codebook.reindex(columns=ordered)
    codebook.attrs["tables"] = {
        name: {"title": m.title, "form_id": m.form_id, "version": m.version,
               "records": len(tables[name]), "weight": weights.get(name)
               if weights.get(name) in tables[name].columns else None}
        for name, m in table_models.items()
    }
    codebook.attrs["languages"] = langs
    codebook.attrs["variance"] = variance
    return codebook


def _label_columns(memo: _TableMemo, item: Item | None, dummy: Any, column: str,
                   langs: list[str], weight_column: str | None) -> dict[str, str]:
    """A column's ``label_<code>`` and ``values_<code>`` per language (empty where the form
    lacks the language)."""
    model = memo.model
    row: dict[str, str] = {}
    available = [*model.languages, STATA]
    for lang in langs:
        code = language_code(lang)
        if lang not in available:
            text = ""
        elif dummy is not None:
            text = f"{dummy[0].name}: {pick_label(dummy[1].labels, lang, model)}"
        elif item is not None:
            text = pick_label(item.labels, lang, model)
        else:
            text = META_LABELS.get(column, "Survey weight" if column == weight_column else "")
        row[f"label_{code}"] = text
        if item is not None and item.is_select and dummy is None and lang in available:
            row[f"values_{code}"] = memo.values_text(item, lang)
        elif dummy is not None:
            row[f"values_{code}"] = "1 = selected; 0 = not selected"
    return row


def _row(table: str, model: FormModel, values: pd.Series, column: str, position: int,
         langs: list[str], language: str | None, field: tuple[Item | None, Any],
         tags: Mapping[str, Mapping[int, str]], w: np.ndarray | None,
         weight_column: str | None, memo: _TableMemo) -> dict[str, Any]:
    item, dummy = field  # the column's form field and, for a dummy, its (field, choice)
    present = _present_mask(values)
    row: dict[str, Any] = {"form": table, "variable": column, "position": position,
                           "dtype": str(values.dtype), "n": int(present.sum()),
                           "n_missing": int((~present).sum())}
    row.update(_label_columns(memo, item, dummy, column, langs, weight_column))
    categorical: Mapping[str, str] | None = None
    multiple = False
    if item is None:
        row["type"] = "weight" if column == weight_column else (
            "meta" if column in META_LABELS else "")
        row["universe"] = "All records"
    else:
        row["type"] = "select_multiple dummy" if dummy is not None else _type_text(item)
        row["group"] = "/".join(item.path)
        row["pii"] = item.pii
        row["universe"] = _universe(model, item, language, memo.universes)
        relevances = model.relevance(item)
        row["relevance"] = relevances[0] if len(relevances) == 1 else " and ".join(
            f"({r})" for r in relevances)
        if dummy is not None:
            categorical = {"1": "selected", "0": "not selected"}
        elif item.is_select:
            categorical = memo.choice_labels(item, language)
            multiple = item.is_select_multiple
        if item.name in tags and dummy is None:
            choices = memo.choice_labels(item, language)
            row["missing_codes"] = "; ".join(
                f"{code} = .{tag} ({choices.get(str(code)) or _MISSING_NAMES[code]})"
                for code, tag in sorted(tags[item.name].items()))
    if categorical is not None:
        freq = _table(_Frequencies(values, present, w, multiple), categorical,
                      int(present.sum()), w is not None)
        row["frequencies"] = _render_frequencies(freq, "n")
        if w is not None:
            row["weighted_frequencies"] = _render_frequencies(freq, "weighted")
    else:
        row.update(_statistics(values, present))
    return row


# -- files -----------------------------------------------------------------------------------------


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def _sheet_name(name: str, taken: set[str]) -> str:
    base = re.sub(r"[\[\]:*?/\\]", "_", name)[:31] or "table"
    out, i = base, 1
    while out.lower() in taken:
        i += 1
        out = f"{base[:28]}_{i}"
    taken.add(out.lower())
    return out


def _about(codebook: pd.DataFrame) -> list[tuple[str, str]]:
    """Key/value lines explaining the codebook (Excel 'about' sheet and Markdown preamble)."""
    tables = codebook.attrs.get("tables", {})
    lines = [("Codebook", "One row per variable of each release table, in file column order.")]
    for name in dict.fromkeys(codebook["form"]):
        info = tables.get(name, {})
        count = int((codebook["form"] == name).sum())
        title = f"{info['title']} (form {info['form_id']}, version {info['version']}), " \
            if info else ""
        records = f", {info['records']} records" if info else ""
        lines.append((f"Table {name}", f"{title}{count} variables{records}"))
    languages = codebook.attrs.get("languages") or [
        c[len("label_"):] for c in codebook.columns if c.startswith("label_")]
    lines += [
        ("Languages", "label_<code> / values_<code> columns: "
         + ", ".join(language_code(lang) for lang in languages)
         + " (stata: the short labels used in the .dta and .sav files)."),
        ("Universe", "Who was asked: the relevance of the question and of its groups, in words "
         "with choice labels; the raw expression where it cannot be put into words."),
        ("Missing codes", "98 don't know → Stata .d, 99 refused / prefer not to say → Stata .r; "
         "both user-missing in SPSS and plain codes in CSV/Parquet. 96 (other) is an answer."),
        ("n", "Non-missing values (98 and 99 included, they are answers); n_missing: blank, "
         "i.e. not asked or not answered."),
        ("Frequencies", "code label: count (percent of n). select_multiple: respondents choosing "
         "each option, which add up to more than n."),
    ]
    weighted = {name: info["weight"] for name, info in tables.items() if info.get("weight")}
    if weighted:
        lines.append(("Weighted frequencies", "Sum of weights per code (percent of the total "
                      "weight of non-missing answers), weight column: "
                      + ", ".join(f"{k}: {v}" for k, v in weighted.items())))
    lines.append(("Statistics", "min / median / max / mean for numeric variables, "
                  "first and last value for dates."))
    if codebook.attrs.get("variance"):
        lines.append(("Variance estimation", codebook.attrs["variance"]))
    return lines


def _normalise_xlsx(data: bytes) -> bytes:
    """Rezip an .xlsx with fixed entry times and document dates: same workbook, same bytes."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as zin, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            content = zin.read(info.filename)
            if info.filename == "docProps/core.xml":
                content = re.sub(rb"(<dcterms:(created|modified)[^>]*>)[^<]*",
                                 rb"\g<1>" + _CORE_TIME.encode(), content)
            entry = zipfile.ZipInfo(info.filename, date_time=_ZIP_TIME)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            zout.writestr(entry, content)
    return out.getvalue()


def _xlsx_text(value: Any) -> Any:
    """A cell as codebook.xlsx holds it: text that could run as a formula quoted, text
    beyond a cell's 32,767 characters cut with an ellipsis (codebook.md keeps it whole), and
    an infinite statistic as the text ``inf`` (a cell's number cannot be infinite)."""
    value = neutralise_formulas(_cell(value))
    if isinstance(value, float) and math.isinf(value):
        return neutralise_formulas(str(value))
    if isinstance(value, str) and len(value) > XLSX_CELL_TEXT:
        return value[:XLSX_CELL_TEXT - 1] + "…"
    return value


def _write_xlsx(codebook: pd.DataFrame, path: Path) -> Path:
    """Written with XlsxWriter, which writes a codebook's tens of thousands of cells in under
    half the time openpyxl takes (openpyxl still reads them back, in the tests and the
    scan)."""
    import xlsxwriter

    buffer = io.BytesIO()
    # Text stays text: never a number, a formula or a link.
    book = xlsxwriter.Workbook(buffer, {"in_memory": True, "strings_to_numbers": False,
                                        "strings_to_formulas": False,
                                        "strings_to_urls": False})
    book.set_properties({"author": "dhsurvey"})
    bold = book.add_format({"bold": True})
    taken: set[str] = set()

    def add(title: str, header: list[str], rows: list[list[Any]], frozen: int) -> None:
        ws = book.add_worksheet(_sheet_name(title, taken))
        ws.write_row(0, 0, [_xlsx_text(h) for h in header], bold)
        for r, row in enumerate(rows, start=1):
            ws.write_row(r, 0, [_xlsx_text(v) for v in row])
        ws.freeze_panes(1, frozen)  # the header row, and the first ``frozen`` columns
        for i, name in enumerate(header):
            longest = max([len(str(name)), *(len(str(r[i])) for r in rows[:200]
                                              if r[i] is not None)])
            ws.set_column(i, i, min(60, longest + 2))

    add("about", ["item", "description"], [list(line) for line in _about(codebook)], 0)
    columns = [c for c in codebook.columns if c != "form"]
    for name in dict.fromkeys(codebook["form"]):
        part = codebook[codebook["form"] == name]
        add(name, columns, [[_cell(v) for v in r] for r in part[columns].itertuples(index=False)],
            2)
    book.close()
    return atomic_write_bytes(path, _normalise_xlsx(buffer.getvalue()))


def _md(value: Any) -> str:
    value = _cell(value)
    if value is None or value == "":
        return ""
    if isinstance(value, float):
        value = f"{value:.6g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _markdown(codebook: pd.DataFrame) -> str:
    label_columns = [c for c in codebook.columns if c.startswith("label_")]
    value_columns = [c for c in codebook.columns if c.startswith("values_")]
    main_label = label_columns[0] if label_columns else None
    out = ["# Codebook", ""]
    out += [f"- **{key}:** {_md(text)}" for key, text in _about(codebook)]
    for name in dict.fromkeys(codebook["form"]):
        part = codebook[codebook["form"] == name]
        out += ["", f"## {name}", "", "| Variable | Label | Type | Universe | n |",
                "|---|---|---|---|---|"]
        # Rows as dicts of python values, as iterrows gives them, without a Series per row.
        records = part.to_dict("records")
        for row in records:
            label = _md(row.get(main_label)) if main_label else ""
            out.append(f"| `{row['variable']}` | {label} | {_md(row['type'])} | "
                       f"{_md(row['universe'])} | {row['n']} |")
        for row in records:
            out += ["", f"### `{row['variable']}`", ""]
            lines = [(f"Label ({c[len('label_'):]})", row[c]) for c in label_columns]
            lines += [("Type", row["type"]), ("Group", row["group"]), ("PII", row["pii"]),
                      ("Universe", row["universe"]), ("Relevance", row["relevance"])]
            lines += [(f"Values ({c[len('values_'):]})", row[c]) for c in value_columns]
            lines += [("Missing codes", row["missing_codes"]), ("Storage", row["dtype"]),
                      ("n", f"{row['n']} ({row['n_missing']} missing)"),
                      ("Frequencies", row["frequencies"]),
                      ("Weighted frequencies", row["weighted_frequencies"])]
            stats = [(k, _md(row[k])) for k in ("min", "median", "max", "mean") if _md(row[k])]
            if stats:
                lines.append((" / ".join(k for k, _ in stats), " / ".join(v for _, v in stats)))
            out += [f"- **{key}:** {_md(text)}" for key, text in lines if _md(text)]
    return "\n".join(out) + "\n"


def write_codebook(codebook: pd.DataFrame, folder: str | Path) -> list[Path]:
    """``codebook.xlsx`` (an 'about' sheet, then one sheet per table; bold header, frozen
    panes) and ``codebook.md``, both byte-identical on a rerun with the same codebook."""
    folder = Path(folder)
    return [_write_xlsx(codebook, folder / "codebook.xlsx"),
            atomic_write_text(folder / "codebook.md", _markdown(codebook))]


__all__ = ["build_codebook", "describe_universe", "frequency_table", "write_codebook"]
