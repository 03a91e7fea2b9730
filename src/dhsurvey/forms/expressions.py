"""XLSForm/XPath expressions (`relevant`, `constraint`, `calculation`, `choice_filter`) over pandas.

Why this exists: one form model feeds a simulator, a validator and a codebook, and all of them
must evaluate the same expressions over thousands (or millions) of submissions. Interpreting
each row the way JavaRosa does would be far too slow, so an expression is parsed once and then
evaluated column-wise with numpy/pandas, while keeping JavaRosa's typing rules so that the
answers match what ODK Collect would have decided on a device.

Typing rules (the ones that matter for relevance and constraints):

* A `${ref}` is a *node*: a missing answer (None, NaN, NaT, "") is the empty string "" in a
  string context and NaN in a numeric one. `${x} = ''` is therefore true for a missing x and
  `${age} >= 12` is false for a missing age.
* `=`/`!=`: if either side is a boolean, compare booleans; else if either side is a number,
  compare numbers; else if either side is a date, compare dates; else compare strings.
  `<`, `<=`, `>`, `>=` and arithmetic always convert to numbers (dates become days since
  1970-01-01, and strings that look like ISO dates convert to days too, so typed and raw-string
  exports give the same answers).
* boolean(): a number is true when non-zero and not NaN, a string when non-empty, a node-set
  when it has at least one node. A node follows its column's dtype: numeric columns use the
  number rule, other columns the string rule.
* Numbers format as XPath does: whole numbers without a decimal point ("12"), NaN as "NaN"
  (but a *missing* numeric answer is "").

Deliberate choices that differ from the letter of JavaRosa are listed in the function table
comments below (`regex` is a full match as in JavaRosa's `Pattern.matches`; `round` rounds
half away from zero for negative numbers too).
"""

from __future__ import annotations

import datetime as _dt
import functools
import itertools
import re
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from dhsurvey.errors import DhsurveyError

__all__ = [
    "BinaryOp",
    "Call",
    "Current",
    "ExpressionError",
    "Filter",
    "FUNCTIONS",
    "conjuncts",
    "Name",
    "Negate",
    "Node",
    "Number",
    "Parent",
    "Ref",
    "RepeatData",
    "Step",
    "String",
    "evaluate",
    "evaluate_bool",
    "functions",
    "parse",
    "references",
]


class ExpressionError(DhsurveyError, ValueError):
    """An expression that cannot be parsed or evaluated.

    Part of the library's error family (the CLI prints it as one block) and still a
    ``ValueError``. Carries the expression text and the 0-based character offset of the problem
    (when known) so that lint messages can point at the offending cell content; code
    ``expression-syntax`` when it does not parse, ``expression-evaluation`` when it fails on
    data. Whoever knows the cell adds it with :meth:`located` (file, sheet, row, column, form,
    field).
    """

    code = "expression-syntax"

    def __init__(
        self, message: str, expression: str | None = None, position: int | None = None, *,
        code: str | None = None, **context: Any,
    ) -> None:
        super().__init__(message, code=code, expression=expression or None, position=position,
                         **context)
        self.expression = expression
        self.position = position

    def located(self, **context: Any) -> ExpressionError:
        """Add where the expression is written; what is already known is kept."""
        for key, value in context.items():
            if value is not None:
                self.context.setdefault(key, value)
        return self

    def __str__(self) -> str:
        text = self.message
        if self.position is not None:
            text += f" at position {self.position}"
        if self.expression:
            text += f" in {self.expression!r}"
        where = self.where()
        return f"{where}: {text}" if where else text


class _Fail(Exception):
    """Internal evaluation failure; `_eval` turns it into an ExpressionError with a position."""


# --------------------------------------------------------------------------------------------
# Syntax tree
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """Base class of the syntax tree. `pos` is the 0-based offset of the node in the source."""

    pos: int
    # Only the root returned by parse() carries the source text (used in error messages).
    source: str = field(default="", compare=False, repr=False, kw_only=True)


@dataclass(frozen=True)
class Number(Node):
    value: float


@dataclass(frozen=True)
class String(Node):
    value: str


@dataclass(frozen=True)
class Ref(Node):
    """`${name}`."""

    name: str


@dataclass(frozen=True)
class Name(Node):
    """A bare name: a repeat column inside a predicate, else a column of `relative`."""

    name: str


@dataclass(frozen=True)
class Current(Node):
    """`.`"""


@dataclass(frozen=True)
class Parent(Node):
    """`..` (only valid as the argument of position())."""


@dataclass(frozen=True)
class Negate(Node):
    operand: Node


@dataclass(frozen=True)
class BinaryOp(Node):
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Call(Node):
    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Filter(Node):
    """`base[predicate]`."""

    base: Node
    predicate: Node


@dataclass(frozen=True)
class Step(Node):
    """`base/name`."""

    base: Node
    name: str


def _children(node: Node) -> Iterator[Node]:
    for f in fields(node):
        value = getattr(node, f.name)
        if isinstance(value, Node):
            yield value
        elif isinstance(value, tuple):
            yield from (v for v in value if isinstance(v, Node))


def _walk(node: Node) -> Iterator[Node]:
    """Every node, parents before children, in source order (iterative: any depth)."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(list(_children(current))))


# --------------------------------------------------------------------------------------------
# Deeply nested expressions
# --------------------------------------------------------------------------------------------
# Generated forms nest hundreds of if()s; the recursive-descent parser spends about a dozen
# Python frames per nesting level and the evaluator a few, so 82 nested if()s already pass
# Python's default recursion limit of 1,000. Parser and evaluator stay recursive (the parser
# reads as XPath's grammar, each node evaluates in one function; explicit-stack versions of
# both would be far harder to check against JavaRosa). Instead an expression that overflows
# is run again, once, in a worker thread with a large C stack and a high recursion limit:
# ordinary expressions never pay for the thread, and 1,000-deep nesting parses and evaluates.

_DEEP_STACK_BYTES = 512 * 1024 * 1024  # reserved address space; pages are used on demand
_DEEP_RECURSION_LIMIT = 250_000  # about 10,000 nesting levels of the parser
_deep_lock = threading.Lock()
_T = TypeVar("_T")


def _deep(text: str, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """``fn(*args, **kwargs)``, re-run with a deep stack if it recurses too deeply for the
    caller's; an ExpressionError on ``text`` if it is too deep even for that."""
    try:
        return fn(*args, **kwargs)
    except RecursionError:
        pass
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = fn(*args, **kwargs)
        except RecursionError:
            result["error"] = ExpressionError("expression is nested too deeply", text)
        except BaseException as exc:  # handed to the calling thread
            result["error"] = exc

    # The recursion limit is per interpreter, so it is raised only while the worker runs,
    # one deep expression at a time.
    with _deep_lock:
        old_limit = sys.getrecursionlimit()
        old_stack = threading.stack_size(_DEEP_STACK_BYTES)
        try:
            worker = threading.Thread(target=run, name="dhsurvey-deep-expression")
            sys.setrecursionlimit(max(old_limit, _DEEP_RECURSION_LIMIT))
            worker.start()
            worker.join()
        finally:
            threading.stack_size(old_stack)
            sys.setrecursionlimit(old_limit)
    if "error" in result:
        raise result["error"]
    return result["value"]


# Supported functions and their arity (min, max; None = unbounded). Checked at parse time so
# that `dhsurvey lint` reports typos without needing data.
FUNCTIONS: dict[str, tuple[int, int | None]] = {
    "if": (3, 3),
    "coalesce": (2, None),
    "selected": (2, 2),
    "count-selected": (1, 1),
    "selected-at": (2, 2),
    "string-length": (0, 1),
    "normalize-space": (0, 1),
    "regex": (2, 2),
    "concat": (1, None),
    "substr": (2, 3),
    "contains": (2, 2),
    "starts-with": (2, 2),
    "ends-with": (2, 2),
    "int": (1, 1),
    "number": (1, 1),
    "string": (0, 1),
    "round": (1, 2),
    "floor": (1, 1),
    "ceiling": (1, 1),
    "abs": (1, 1),
    "pow": (2, 2),
    # ODK's math functions (XForms spec), numbers in radians.
    "sqrt": (1, 1),
    "exp": (1, 1),
    "exp10": (1, 1),
    "log": (1, 1),
    "log10": (1, 1),
    "sin": (1, 1),
    "cos": (1, 1),
    "tan": (1, 1),
    "asin": (1, 1),
    "acos": (1, 1),
    "atan": (1, 1),
    "atan2": (2, 2),
    "pi": (0, 0),
    "true": (0, 0),
    "false": (0, 0),
    "boolean": (1, 1),
    "not": (1, 1),
    "min": (1, None),
    "max": (1, None),
    "sum": (1, 1),
    "count": (1, 1),
    "count-non-empty": (1, 1),
    "indexed-repeat": (3, 3),
    "position": (0, 1),
    "last": (0, 0),
    "once": (1, 1),
    "random": (0, 0),
    "uuid": (0, 0),
    "today": (0, 0),
    "now": (0, 0),
    "date": (1, 1),
    "date-time": (1, 1),
    "decimal-date-time": (1, 1),
    "format-date": (2, 2),
    "format-date-time": (2, 2),
}


# --------------------------------------------------------------------------------------------
# Tokenizer and parser
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    kind: str  # num, str, ref, name, func, op, eof
    value: str
    pos: int


_NAME = r"[^\W\d][\w.\-]*"  # XML names: letters of any script, then letters/digits/_.-
_LEX = re.compile(
    rf"""
    (?P<ws>\s+)
  | (?P<num>\d+(?:\.\d*)?|\.\d+)
  | (?P<str>'[^']*'|"[^"]*")
  | (?P<op>!=|<=|>=|//|::|\.\.|[=<>+\-*/|()\[\],.@])
  | (?P<name>{_NAME}(?::{_NAME})?)
    """,
    re.VERBOSE,
)
_REF_NAME = re.compile(rf"{_NAME}\Z")
_OPERATOR_NAMES = frozenset({"and", "or", "div", "mod"})


def _ends_operand(tok: _Token | None) -> bool:
    """XPath's lexical rule: after an operand, `*` and and/or/div/mod are operators."""
    if tok is None:
        return False
    if tok.kind in ("num", "str", "ref", "name"):
        return True
    return tok.kind == "op" and tok.value in (")", "]", ".", "..")


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        if text.startswith("${", i):
            end = text.find("}", i)
            if end < 0:
                raise ExpressionError("unterminated ${...} reference", text, i)
            name = text[i + 2 : end]
            if not _REF_NAME.match(name):
                raise ExpressionError(f"invalid reference name {name!r}", text, i)
            tokens.append(_Token("ref", name, i))
            i = end + 1
            continue
        m = _LEX.match(text, i)
        if m is None:
            if text[i] in "'\"":
                raise ExpressionError("unterminated string literal", text, i)
            raise ExpressionError(f"unexpected character {text[i]!r}", text, i)
        kind, value = m.lastgroup, m.group()
        assert kind is not None
        prev = tokens[-1] if tokens else None
        if kind == "name":
            if value in _OPERATOR_NAMES and _ends_operand(prev):
                kind = "op"
            else:
                rest = text[m.end() :].lstrip()
                if rest.startswith("(") and not rest.startswith("(:"):
                    kind = "func"
        elif kind == "op" and value == "*" and not _ends_operand(prev):
            raise ExpressionError("unexpected '*' (name tests are not supported)", text, i)
        if kind != "ws":
            tokens.append(_Token(kind, value, i))
        i = m.end()
    tokens.append(_Token("eof", "", n))
    return tokens


def _describe(tok: _Token) -> str:
    return "end of expression" if tok.kind == "eof" else repr(tok.value)


class _Parser:
    """Recursive descent over XPath 1.0 precedence: or < and < = != < < <= > >= < + - <
    * div mod < unary - < path/filter < primary."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    def error(self, message: str, pos: int) -> ExpressionError:
        return ExpressionError(message, self.text, pos)

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def next(self) -> _Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def at_op(self, *values: str) -> bool:
        tok = self.peek()
        return tok.kind == "op" and tok.value in values

    def expect(self, value: str, opened: _Token | None = None) -> _Token:
        tok = self.peek()
        if tok.kind == "op" and tok.value == value:
            return self.next()
        if tok.kind == "eof" and opened is not None:
            raise self.error(
                f"missing {value!r} to close {opened.value!r} opened at position {opened.pos}",
                tok.pos,
            )
        raise self.error(f"expected {value!r}, found {_describe(tok)}", tok.pos)

    def parse(self) -> Node:
        if self.peek().kind == "eof":
            raise self.error("empty expression", 0)
        node = self.parse_binary(0)
        tok = self.peek()
        if tok.kind != "eof":
            raise self.error(f"unexpected {_describe(tok)} after a complete expression", tok.pos)
        return node

    _LEVELS: tuple[frozenset[str], ...] = (
        frozenset({"or"}),
        frozenset({"and"}),
        frozenset({"=", "!="}),
        frozenset({"<", "<=", ">", ">="}),
        frozenset({"+", "-"}),
        frozenset({"*", "div", "mod"}),
    )

    def parse_binary(self, level: int) -> Node:
        if level == len(self._LEVELS):
            return self.parse_unary()
        ops = self._LEVELS[level]
        left = self.parse_binary(level + 1)
        while self.peek().kind == "op" and self.peek().value in ops:
            tok = self.next()
            right = self.parse_binary(level + 1)
            left = BinaryOp(tok.pos, tok.value, left, right)
        return left

    def parse_unary(self) -> Node:
        if self.at_op("-"):
            tok = self.next()
            operand = self.parse_unary()
            if isinstance(operand, Number):  # fold literal negatives
                return Number(tok.pos, -operand.value)
            return Negate(tok.pos, operand)
        node = self.parse_path()
        if self.at_op("|"):
            raise self.error("the union operator '|' is not supported", self.peek().pos)
        return node

    def parse_path(self) -> Node:
        if self.at_op("/", "//"):
            raise self.error("absolute paths are not supported; use ${name}", self.peek().pos)
        node = self.parse_filter()
        while self.at_op("/", "//"):
            slash = self.next()
            if slash.value == "//":
                raise self.error("'//' is not supported", slash.pos)
            step = self.next()
            if step.kind != "name":
                raise self.error(f"expected a field name after '/', found {_describe(step)}",
                                 step.pos)
            node = Step(slash.pos, node, step.value)
        return node

    def parse_filter(self) -> Node:
        node = self.parse_primary()
        while self.at_op("["):
            opened = self.next()
            predicate = self.parse_binary(0)
            self.expect("]", opened)
            node = Filter(opened.pos, node, predicate)
        return node

    def parse_primary(self) -> Node:
        tok = self.next()
        if tok.kind == "num":
            return Number(tok.pos, float(tok.value))
        if tok.kind == "str":
            return String(tok.pos, tok.value[1:-1])
        if tok.kind == "ref":
            return Ref(tok.pos, tok.value)
        if tok.kind == "func":
            return self.parse_call(tok)
        if tok.kind == "name":
            return Name(tok.pos, tok.value)
        if tok.kind == "op":
            if tok.value == "(":
                inner = self.parse_binary(0)
                self.expect(")", tok)
                return inner
            if tok.value == ".":
                return Current(tok.pos)
            if tok.value == "..":
                raise self.error("'..' is only supported as position(..)", tok.pos)
        if tok.kind == "eof":
            raise self.error("unexpected end of expression", tok.pos)
        raise self.error(f"unexpected {_describe(tok)}", tok.pos)

    def parse_call(self, name: _Token) -> Node:
        spec = FUNCTIONS.get(name.value)
        if spec is None:
            raise self.error(f"unknown function {name.value}()", name.pos)
        opened = self.expect("(")
        args: list[Node] = []
        if name.value == "position" and self.at_op(".."):
            args.append(Parent(self.next().pos))
        elif not self.at_op(")"):
            args.append(self.parse_binary(0))
            while self.at_op(","):
                self.next()
                args.append(self.parse_binary(0))
        self.expect(")", opened)
        low, high = spec
        if len(args) < low or (high is not None and len(args) > high):
            wanted = str(low) if low == high else f"{low}+" if high is None else f"{low}-{high}"
            raise self.error(
                f"{name.value}() takes {wanted} argument(s), got {len(args)}", name.pos
            )
        if name.value == "position" and args and not isinstance(args[0], Parent):
            raise self.error("position() only accepts '..' as its argument", args[0].pos)
        return Call(name.pos, name.value, tuple(args))


@functools.lru_cache(maxsize=4096)
def _parse_cached(expression: str) -> Node:
    return replace(_Parser(expression).parse(), source=expression)


def parse(expression: str) -> Node:
    """Parse an expression into an immutable syntax tree (cached, so re-parsing is cheap).

    Raises ExpressionError with the offending position on syntax errors, unknown functions and
    wrong argument counts, so forms can be linted without any data.
    """
    if not isinstance(expression, str):
        raise ExpressionError(f"expression must be a string, not {type(expression).__name__}")
    return _deep(expression, _parse_cached, expression)


def _text(expression: str | Node) -> str:
    return expression if isinstance(expression, str) else expression.source


def _root(expression: str | Node) -> Node:
    return expression if isinstance(expression, Node) else parse(expression)


def conjuncts(expression: str | Node) -> list[Node]:
    """The top-level ``and`` operands of an expression (the whole tree when there is none):
    the parts of a constraint that must each hold, e.g. its bounds."""
    out: list[Node] = []
    stack = [_root(expression)]
    while stack:
        node = stack.pop()
        if isinstance(node, BinaryOp) and node.op == "and":
            stack += [node.right, node.left]
        else:
            out.append(node)
    return out


def references(expression: str | Node) -> list[str]:
    """The `${names}` used, in order of first appearance, without duplicates (dependency graph)."""
    refs = sorted((n.pos, n.name) for n in _walk(_root(expression)) if isinstance(n, Ref))
    return list(dict.fromkeys(name for _, name in refs))


def functions(expression: str | Node) -> set[str]:
    """The function names used (e.g. to flag random()/now() as non-reproducible)."""
    return {n.name for n in _walk(_root(expression)) if isinstance(n, Call)}


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------

NUM, STR, BOOL, DATE, DATETIME = "number", "string", "boolean", "date", "datetime"
_MS_PER_DAY = 86_400_000.0
_MAX_DAYS = 106_000.0  # keeps datetime64[ns] in range (years 1679..2260)
_EPOCH = _dt.datetime(1970, 1, 1)


@dataclass
class _Atom:
    """A computed value: `data` is an array with one entry per context row, or a scalar."""

    kind: str
    data: Any


def _is_array(x: Any) -> bool:
    return isinstance(x, np.ndarray)


def _category(dtype: Any) -> str:
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_numeric_dtype(dtype):
        return "num"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "date"
    return "obj"


class _Node:
    """A column of answers (positionally indexed). Conversions are computed lazily and cached
    because the same reference often appears in several clauses."""

    __slots__ = ("raw", "cat", "_cache")

    def __init__(self, raw: pd.Series, cache: dict[str, np.ndarray] | None = None) -> None:
        self.raw = raw
        self.cat = _category(raw.dtype)
        self._cache = cache if cache is not None else {}

    def __len__(self) -> int:
        return len(self.raw)

    def _memo(self, key: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
        value = self._cache.get(key)
        if value is None:
            value = self._cache[key] = compute()
        return value

    def num(self) -> np.ndarray:
        def compute() -> np.ndarray:
            if self.cat in ("num", "bool"):
                return self.raw.to_numpy(dtype=float, na_value=np.nan)
            if self.cat == "date":
                return self.days()
            return _str_to_num(self.strs())

        return self._memo("num", compute)

    def strs(self) -> np.ndarray:
        def compute() -> np.ndarray:
            if self.cat == "num":
                return _fmt_num(self.num(), missing="")
            if self.cat == "bool":
                # pandas-stubs reject na_value=None, which pandas documents and accepts
                values = self.raw.to_numpy(dtype=object, na_value=None)  # type: ignore[call-overload]
                return np.array([_py_to_str(v) for v in values], dtype=object)
            if self.cat == "date":
                return _days_to_str(self.days(), None)
            return _obj_to_str(self.raw)

        return self._memo("str", compute)

    def truth(self) -> np.ndarray:
        def compute() -> np.ndarray:
            if self.cat == "num":
                return np.abs(self.num()) > 1e-12
            if self.cat == "bool":
                return self.raw.to_numpy(dtype=bool, na_value=False)
            if self.cat == "date":
                return ~np.isnan(self.days())
            values = self.raw.to_numpy(dtype=object)
            if pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"):
                return self.strs() != ""
            return np.fromiter((_py_truth(v) for v in values), bool, len(values))

        return self._memo("truth", compute)

    def days(self) -> np.ndarray:
        def compute() -> np.ndarray:
            if self.cat == "date":
                raw = self.raw
                if getattr(raw.dtype, "tz", None) is not None:
                    raw = raw.dt.tz_localize(None)  # keep the wall-clock time
                return _dt64_to_days(raw.to_numpy())
            if self.cat in ("num", "bool"):
                return self.num()
            return _parse_days(self.strs())

        return self._memo("days", compute)

    def empty(self) -> np.ndarray:
        def compute() -> np.ndarray:
            if self.cat == "obj":
                return self.strs() == ""
            return self.raw.isna().to_numpy()

        return self._memo("empty", compute)

    def take(self, idx: np.ndarray) -> _Node:
        """Rows `idx` (all valid), keeping already computed conversions."""
        raw = self.raw.iloc[idx]
        raw.index = pd.RangeIndex(len(idx))
        return _Node(raw, {k: v[idx] for k, v in self._cache.items()})


def _positional(series: pd.Series) -> pd.Series:
    return pd.Series(series.array, copy=False)


def _take_or_missing(series: pd.Series, idx: np.ndarray) -> pd.Series:
    """series at positions idx, with -1 meaning "no such node" (missing)."""
    base = _positional(series)
    out = base.iloc[idx] if (idx >= 0).all() else base.reindex(idx)
    out.index = pd.RangeIndex(len(idx))
    return out


class _NodeSet:
    """Instances of a repeat (optionally one field of them), grouped by context row.

    `rows` are positions in the repeat frame (document order), `owner` the context row each
    instance belongs to. Positions are always computed within an owner, so predicates renumber
    the way XPath does.
    """

    __slots__ = ("repeat", "rframe", "rows", "owner", "n", "field", "_groups")

    def __init__(self, repeat: str, rframe: pd.DataFrame, rows: np.ndarray, owner: np.ndarray,
                 n: int, field: str | None = None) -> None:
        self.repeat, self.rframe, self.rows, self.owner = repeat, rframe, rows, owner
        self.n, self.field = n, field
        self._groups: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    def groups(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(1-based position of each node, nodes per owner, first slot per owner, order)."""
        if self._groups is None:
            owner = self.owner
            counts = np.bincount(owner, minlength=self.n)
            order = np.argsort(owner, kind="stable")
            starts = np.zeros(self.n, dtype=np.int64)
            if self.n:
                starts[1:] = np.cumsum(counts)[:-1]
            pos = np.empty(len(owner), dtype=np.int64)
            pos[order] = np.arange(len(owner)) - starts[owner[order]] + 1
            self._groups = (pos, counts, starts, order)
        return self._groups

    def subset(self, mask: np.ndarray) -> _NodeSet:
        return _NodeSet(self.repeat, self.rframe, self.rows[mask], self.owner[mask], self.n,
                        self.field)

    def with_field(self, name: str) -> _NodeSet:
        if self.field is not None:
            raise _Fail(f"paths below a field are not supported (/{self.field}/{name})")
        if name not in self.rframe.columns:
            raise _Fail(f"repeat {self.repeat!r} has no field {name!r}")
        return _NodeSet(self.repeat, self.rframe, self.rows, self.owner, self.n, name)

    def column(self, name: str) -> _Node:
        return _Node(_take_or_missing(self.rframe[name], self.rows))

    def _field(self) -> str:
        if self.field is None:
            raise _Fail(
                f"a repeat ({self.repeat!r}) is used as a value; select a field with /name"
            )
        return self.field

    def values(self) -> _Node:
        return self.column(self._field())

    def nth(self, k: Any) -> _Node:
        """The k-th (1-based) node of each owner, missing where there is none."""
        field = self._field()
        _, counts, starts, order = self.groups()
        kk = np.broadcast_to(np.asarray(k, dtype=float), (self.n,))
        with np.errstate(invalid="ignore"):
            valid = np.isfinite(kk) & (kk >= 1) & (kk <= counts)
        sel = np.full(self.n, -1, dtype=np.int64)
        sel[valid] = self.rows[order[starts[valid] + kk[valid].astype(np.int64) - 1]]
        return _Node(_take_or_missing(self.rframe[field], sel))


Value = _Atom | _Node | _NodeSet


def _unpack(value: Value) -> _Atom | _Node:
    """Scalar context: a node-set yields its first node ("" when empty)."""
    if isinstance(value, _NodeSet):
        return value.nth(1)
    return value


# ---- scalar/array conversions ---------------------------------------------------------------


def _fmt_num(x: Any, missing: str = "NaN") -> Any:
    """XPath number -> string: whole numbers without decimals, NaN/Infinity spelled out."""
    if np.ndim(x) == 0:
        return _fmt_num(np.array([x], dtype=float), missing)[0]
    arr = np.asarray(x, dtype=float)
    out = np.empty(len(arr), dtype=object)
    with np.errstate(invalid="ignore"):
        trunc = np.trunc(arr)
        whole = np.isfinite(arr) & (np.abs(arr) < 1e15) & (np.abs(arr - trunc) < 1e-12)
    if whole.any():
        out[whole] = np.array(list(map(str, trunc[whole].astype(np.int64).tolist())), object)
    if not whole.all():
        frac = np.isfinite(arr) & ~whole
        out[frac] = np.array([repr(v) for v in arr[frac].tolist()], dtype=object)
        out[np.isnan(arr)] = missing
        out[arr == np.inf] = "Infinity"
        out[arr == -np.inf] = "-Infinity"
    return out


def _py_to_str(v: Any) -> str:
    if isinstance(v, str):
        return v
    if v is None or v is pd.NA or v is pd.NaT:
        return ""
    if isinstance(v, bool | np.bool_):
        return "true" if v else "false"
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        return "" if np.isnan(v) else _fmt_num(float(v))
    if isinstance(v, _dt.datetime):
        if (v.hour, v.minute, v.second, v.microsecond) == (0, 0, 0, 0):
            return v.date().isoformat()
        return v.replace(tzinfo=None).isoformat(timespec="milliseconds")
    if isinstance(v, _dt.date):
        return v.isoformat()
    return str(v)


def _py_truth(v: Any) -> bool:
    if isinstance(v, str):
        return v != ""
    if v is None or v is pd.NA or v is pd.NaT:
        return False
    if isinstance(v, bool | np.bool_):
        return bool(v)
    if isinstance(v, int | float):
        return abs(v) > 1e-12  # NaN compares False
    if isinstance(v, np.number):
        return bool(abs(v) > 1e-12)
    return _py_to_str(v) != ""


def _obj_to_str(raw: pd.Series) -> np.ndarray:
    values = raw.to_numpy(dtype=object)
    if pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"):
        missing = pd.isna(values)
        if missing.any():
            values = values.copy()  # never write into the caller's frame
            values[missing] = ""
        return values
    return np.array([_py_to_str(v) for v in values], dtype=object)


_ISO_DATE = r"\s*\d{4}-\d{2}-\d{2}"
_TZ_SUFFIX = re.compile(r"(T[\d:.]+)\s*(?:Z|[+-]\d{2}(?::?\d{2})?)$")


def _parse_days(strs: Any) -> Any:
    """ISO date/datetime strings -> days since 1970-01-01 (NaN if not a date).

    A timezone suffix is dropped so the local wall-clock time is kept, as on the device."""
    if not _is_array(strs):
        return _parse_days(np.array([strs], dtype=object))[0]
    out = np.full(len(strs), np.nan)
    if not len(strs):
        return out
    series = pd.Series(strs, dtype=object)
    ok = series.str.match(_ISO_DATE).to_numpy(dtype=bool, na_value=False)
    if ok.any():
        sub = series[ok].str.strip().str.replace(_TZ_SUFFIX, r"\1", regex=True)
        parsed = pd.to_datetime(sub, format="ISO8601", errors="coerce")
        if getattr(parsed.dtype, "tz", None) is not None:
            parsed = parsed.dt.tz_localize(None)
        out[ok] = _dt64_to_days(parsed.to_numpy())
    return out


def _str_to_num(strs: Any) -> Any:
    """XPath number(): "" -> NaN; ISO dates -> days so raw-string date columns behave like
    typed ones in arithmetic and comparisons."""
    if not _is_array(strs):
        return _str_to_num(np.array([strs], dtype=object))[0]
    empty = strs == ""
    tmp = strs
    if empty.any():
        tmp = strs.copy()
        tmp[empty] = "nan"
    try:
        out = tmp.astype(np.float64)
    except (ValueError, TypeError):
        out = pd.to_numeric(pd.Series(strs, dtype=object), errors="coerce").to_numpy(float)
    candidates = np.isnan(out) & ~empty
    if candidates.any():
        days = _parse_days(strs[candidates])
        out = out.copy()
        out[candidates] = days
    return out


def _dt64_to_days(values: np.ndarray) -> np.ndarray:
    ms = values.astype("datetime64[ms]")
    days = ms.astype(np.int64) / _MS_PER_DAY
    days[np.isnat(ms)] = np.nan
    return days


def _days_to_dt64(days: Any) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(days, dtype=float))
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(arr) & (np.abs(arr) < _MAX_DAYS)
    ms = np.zeros(len(arr), dtype=np.int64)
    ms[ok] = np.round(arr[ok] * _MS_PER_DAY).astype(np.int64)
    out = ms.astype("datetime64[ms]")
    out[~ok] = np.datetime64("NaT")
    return out


def _days_to_str(days: Any, with_time: bool | None) -> Any:
    """Dates as 'YYYY-MM-DD', datetimes as 'YYYY-MM-DDTHH:MM:SS.sss'; None = per value."""
    if np.ndim(days) == 0:
        return _days_to_str(np.array([days], dtype=float), with_time)[0]
    dt64 = _days_to_dt64(days)
    out = np.datetime_as_string(dt64.astype("datetime64[D]"), unit="D").astype(object)
    if with_time is not False:
        full = np.datetime_as_string(dt64, unit="ms").astype(object)
        timed = np.ones(len(out), bool) if with_time else (np.asarray(days) % 1 != 0)
        out[timed] = full[timed]
    out[np.isnat(dt64)] = ""
    return out


def _as_num(value: Value) -> Any:
    v = _unpack(value)
    if isinstance(v, _Node):
        return v.num()
    if v.kind in (NUM, DATE, DATETIME):
        return v.data
    if v.kind == BOOL:
        return v.data.astype(float) if _is_array(v.data) else np.float64(bool(v.data))
    return _str_to_num(v.data)


def _as_str(value: Value) -> Any:
    v = _unpack(value)
    if isinstance(v, _Node):
        return v.strs()
    if v.kind == STR:
        return v.data
    if v.kind == NUM:
        return _fmt_num(v.data)
    if v.kind == BOOL:
        if _is_array(v.data):
            return np.where(v.data, "true", "false").astype(object)
        return "true" if v.data else "false"
    return _days_to_str(v.data, v.kind == DATETIME)


def _as_bool(value: Value) -> Any:
    if isinstance(value, _NodeSet):  # XPath: a node-set is true when it is non-empty
        return value.groups()[1] > 0
    if isinstance(value, _Node):
        return value.truth()
    kind, data = value.kind, value.data
    if kind == BOOL:
        return data
    if kind == NUM:
        with np.errstate(invalid="ignore"):
            return np.abs(data) > 1e-12
    if kind == STR:
        return data != "" if _is_array(data) else bool(data)
    return ~np.isnan(data)


def _as_days(value: Value) -> Any:
    v = _unpack(value)
    if isinstance(v, _Node):
        return v.days()
    if v.kind in (NUM, DATE, DATETIME):
        return v.data
    if v.kind == STR:
        return _parse_days(v.data)
    return np.full(np.shape(v.data), np.nan) if _is_array(v.data) else np.nan


def _is_empty(value: Value) -> Any:
    """JavaRosa's isNull: "" or NaN (a missing answer)."""
    v = _unpack(value)
    if isinstance(v, _Node):
        return v.empty()
    if v.kind == STR:
        return v.data == ""
    if v.kind == BOOL:
        return np.zeros(len(v.data), bool) if _is_array(v.data) else False
    return np.isnan(v.data)


def _kind(v: _Atom | _Node) -> str:
    return f"node-{v.cat}" if isinstance(v, _Node) else v.kind


def _num_equal(a: Any, b: Any) -> Any:
    with np.errstate(invalid="ignore"):
        return (a == b) | (np.abs(a - b) < 1e-12)


def _equals(left: Value, right: Value) -> Any:
    a, b = _unpack(left), _unpack(right)
    kinds = {_kind(a), _kind(b)}
    if BOOL in kinds or "node-bool" in kinds:
        return np.equal(_as_bool(a), _as_bool(b))
    if NUM in kinds:
        return _num_equal(_as_num(a), _as_num(b))
    if kinds & {DATE, DATETIME, "node-date"}:
        return _num_equal(_as_days(a), _as_days(b)) | (_is_empty(a) & _is_empty(b))
    # Numeric columns against a string: avoid formatting every number (a hot path).
    for node, other in ((a, b), (b, a)):
        if (isinstance(node, _Node) and node.cat == "num" and isinstance(other, _Atom)
                and not _is_array(other.data)):
            return _num_column_equals_literal(node, other.data)
    if kinds == {"node-num"}:
        assert isinstance(a, _Node) and isinstance(b, _Node)
        return _num_equal(a.num(), b.num()) | (a.empty() & b.empty())
    result = _as_str(a) == _as_str(b)
    return result if _is_array(result) else bool(result)


def _num_column_equals_literal(node: _Node, literal: str) -> np.ndarray:
    if literal == "":
        return node.empty()
    try:
        number = float(literal)
    except ValueError:
        return np.zeros(len(node), bool)
    if _fmt_num(number) != literal:  # e.g. '01' or '1.0' never equals a formatted number
        return np.zeros(len(node), bool)
    return _num_equal(node.num(), number)


def _common_kind(a: str, b: str) -> str:
    if a == b:
        return a
    if {a, b} <= {NUM, BOOL}:
        return NUM
    if {a, b} <= {DATE, DATETIME}:
        return DATETIME
    return STR


def _raw_values(v: _Atom | _Node, n: int) -> np.ndarray:
    """Per-row Python/numpy values, for merging branches that include answer columns."""
    if isinstance(v, _Node):
        if v.cat == "num":
            return v.num()
        if v.cat == "date":
            return _days_to_dt64(v.days()).astype("datetime64[ns]")
        return v.raw.to_numpy(dtype=object)
    data = np.broadcast_to(v.data, (n,))
    if v.kind in (DATE, DATETIME):
        return _days_to_dt64(data).astype("datetime64[ns]")
    if v.kind == STR:
        return np.asarray(data, dtype=object)
    return np.asarray(data)


def _to_object(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "M":  # numpy would turn ns datetimes into ints
        return pd.Series(values).to_numpy(dtype=object)
    return values.astype(object)


def _choose(mask: Any, a: Value, b: Value, n: int) -> Value:
    """Row-wise `mask ? a : b` with one result type (if() and coalesce())."""
    if np.ndim(mask) == 0:
        return a if bool(mask) else b
    x, y = _unpack(a), _unpack(b)
    if isinstance(x, _Node) or isinstance(y, _Node):
        # Keep node semantics (missing stays "" / NaN) by merging the raw answers.
        rx, ry = _raw_values(x, n), _raw_values(y, n)
        if rx.dtype.kind == ry.dtype.kind and rx.dtype.kind in "fM":
            merged = np.where(mask, rx, ry)
        else:
            merged = np.where(mask, _to_object(rx), _to_object(ry))
        return _Node(pd.Series(merged))
    kind = _common_kind(x.kind, y.kind)
    if kind == STR:  # object operands keep np.where from building a fixed-width '<U' array
        return _Atom(STR, np.where(mask, np.asarray(_as_str(x), dtype=object),
                                   np.asarray(_as_str(y), dtype=object)))
    convert = {NUM: _as_num, BOOL: _as_bool, DATE: _as_days, DATETIME: _as_days}[kind]
    return _Atom(kind, np.where(mask, convert(x), convert(y)))


def _gather(value: Value, idx: np.ndarray) -> Value:
    if isinstance(value, _Node):
        return value.take(idx)
    if isinstance(value, _Atom) and _is_array(value.data):
        return _Atom(value.kind, value.data[idx])
    if isinstance(value, _NodeSet):
        raise _Fail("repeat references inside a predicate are not supported")
    return value


# --------------------------------------------------------------------------------------------
# Evaluation contexts
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RepeatData:
    """The instances of one repeat: `frame` has one row per instance (in form order within each
    parent) and the repeat's fields as columns; `parent` (same index as `frame`) holds the index
    label of the owning row in the outer frame."""

    frame: pd.DataFrame
    parent: pd.Series


class _Env:
    """Everything shared by one evaluate() call."""

    def __init__(self, source: str, frame: pd.DataFrame, current: pd.Series | str | None,
                 repeats: Mapping[str, RepeatData] | None, position: pd.Series | None,
                 relative: pd.DataFrame | None, rng: np.random.Generator | None,
                 today: _dt.date | None, now: _dt.datetime | None) -> None:
        self.source = source
        self.frame = frame
        self.index = frame.index
        self.n = len(frame)
        self.current = current
        self.repeats = dict(repeats or {})
        self.position = position
        self.relative = relative
        self.rng = rng
        self.today = today
        self.now = now
        self.columns: dict[str, _Node] = {}
        self.repeat_sets: dict[str, _NodeSet] = {}

    def align(self, series: pd.Series, what: str) -> pd.Series:
        if series.index.equals(self.index):
            return _positional(series)
        try:
            return _positional(series.reindex(self.index))
        except ValueError:  # duplicate labels
            raise _Fail(f"{what} is not aligned with the frame's index") from None

    def repeat_set(self, name: str) -> _NodeSet:
        if name not in self.repeat_sets:
            data = self.repeats[name]
            parent = data.parent
            if not parent.index.equals(data.frame.index):
                parent = parent.reindex(data.frame.index)
            if not self.index.is_unique:
                raise _Fail("the frame's index must be unique to resolve repeats")
            owner = self.index.get_indexer(pd.Index(parent.to_numpy()))
            rows = np.flatnonzero(owner >= 0)  # instances of other parents are ignored...
            if self.n and len(owner) and not len(rows):
                # ...but none matching at all is almost surely a key mismatch (e.g. int vs str)
                raise _Fail(f"no parent label of repeat {name!r} is in the frame's index")
            self.repeat_sets[name] = _NodeSet(name, data.frame, rows, owner[rows], self.n)
        return self.repeat_sets[name]


class _TopCtx:
    """One row per row of `frame`."""

    def __init__(self, env: _Env) -> None:
        self.env = env
        self.n = env.n

    def column(self, name: str) -> _Node | None:
        env = self.env
        node = env.columns.get(name)
        if node is None:
            if name not in env.frame.columns:
                return None
            col = env.frame[name]
            if isinstance(col, pd.DataFrame):
                raise _Fail(f"the frame has several columns named {name!r}")
            node = env.columns[name] = _Node(_positional(col))
        return node

    def ref(self, name: str) -> Value:
        node = self.column(name)
        if node is not None:
            return node
        repeats = self.env.repeats
        if name in repeats:
            return self.env.repeat_set(name)
        owners = [r for r, data in repeats.items() if name in data.frame.columns]
        if len(owners) > 1:
            raise _Fail(f"${{{name}}} is a field of several repeats: {', '.join(owners)}")
        if owners:
            return self.env.repeat_set(owners[0]).with_field(name)
        raise _Fail(f"unknown reference ${{{name}}} (not a column, a repeat or a repeat field)")

    def bare(self, name: str) -> Value:
        relative = self.env.relative
        if relative is None or name not in relative.columns:
            raise _Fail(f"unknown name {name!r}: outside predicates, bare names refer to "
                        "columns of `relative` (e.g. the choices sheet)")
        return _Node(self.env.align(relative[name], "relative"))

    def current(self) -> Value:
        current = self.env.current
        if current is None:
            raise _Fail("'.' needs the current= argument")
        if isinstance(current, str):
            node = self.column(current)
            if node is None:
                raise _Fail(f"current column {current!r} is not in the frame")
            return node
        return _Node(self.env.align(current, "current"))

    def position(self, parent: bool) -> Value:
        if self.env.position is None:
            raise _Fail("position(..) needs the position= argument (1-based instance numbers)")
        node = _Node(self.env.align(self.env.position, "position"))
        return _Atom(NUM, node.num())

    def last(self) -> Value:
        raise _Fail("last() is only supported inside a predicate")


class _PredCtx:
    """One row per node of a node-set being filtered: bare names are the repeat's columns,
    ${refs} are the outer row's values (via the owner of each node)."""

    def __init__(self, outer: _TopCtx, nodes: _NodeSet) -> None:
        self.outer = outer
        self.env = outer.env
        self.nodes = nodes
        self.n = len(nodes.rows)

    def ref(self, name: str) -> Value:
        node = self.outer.column(name)
        if node is not None:
            return node.take(self.nodes.owner)
        if name in self.nodes.rframe.columns:
            return self.nodes.column(name)
        self.outer.ref(name)  # raises "unknown reference" for unknown names
        raise _Fail(f"${{{name}}}: repeat references inside a predicate are not supported")

    def bare(self, name: str) -> Value:
        if name not in self.nodes.rframe.columns:
            raise _Fail(f"repeat {self.nodes.repeat!r} has no field {name!r}")
        return self.nodes.column(name)

    def current(self) -> Value:
        if self.nodes.field is None:
            raise _Fail("'.' inside a predicate on a repeat is the instance; use a field name")
        return self.nodes.values()

    def position(self, parent: bool) -> Value:
        if parent:
            return _gather(self.outer.position(True), self.nodes.owner)
        return _Atom(NUM, self.nodes.groups()[0].astype(float))

    def last(self) -> Value:
        counts = self.nodes.groups()[1]
        return _Atom(NUM, counts[self.nodes.owner].astype(float))


_Ctx = _TopCtx | _PredCtx


# --------------------------------------------------------------------------------------------
# Evaluator
# --------------------------------------------------------------------------------------------


def _eval(node: Node, ctx: _Ctx) -> Value:
    try:
        return _EVALUATORS[type(node)](node, ctx)
    except _Fail as exc:
        raise ExpressionError(str(exc), ctx.env.source, node.pos,
                              code="expression-evaluation") from None


def _eval_binary(node: BinaryOp, ctx: _Ctx) -> Value:
    a, b = _eval(node.left, ctx), _eval(node.right, ctx)
    op = node.op
    if op == "and":
        return _Atom(BOOL, np.logical_and(_as_bool(a), _as_bool(b)))
    if op == "or":
        return _Atom(BOOL, np.logical_or(_as_bool(a), _as_bool(b)))
    if op == "=":
        return _Atom(BOOL, _equals(a, b))
    if op == "!=":
        return _Atom(BOOL, np.logical_not(_equals(a, b)))
    x, y = _as_num(a), _as_num(b)
    with np.errstate(all="ignore"):
        if op in _COMPARE:
            return _Atom(BOOL, _COMPARE[op](x, y))
        return _Atom(NUM, _ARITH[op](x, y))


_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal,
}
_ARITH: dict[str, Callable[[Any, Any], Any]] = {
    "+": np.add, "-": np.subtract, "*": np.multiply, "div": np.true_divide,
    "mod": np.fmod,  # XPath mod keeps the sign of the dividend, like Java's %
}


def _eval_filter(node: Filter, ctx: _Ctx) -> Value:
    base = _eval(node.base, ctx)
    if not isinstance(base, _NodeSet) or not isinstance(ctx, _TopCtx):
        raise _Fail("predicates [...] can only filter a repeat, e.g. ${roster}[age > 5]")
    pred_ctx = _PredCtx(ctx, base)
    value = _eval(node.predicate, pred_ctx)
    if isinstance(value, _Atom) and value.kind == NUM:  # [2] means [position() = 2]
        mask = base.groups()[0] == value.data
    else:
        mask = _as_bool(value)
    return base.subset(np.broadcast_to(mask, (pred_ctx.n,)))


def _eval_step(node: Step, ctx: _Ctx) -> Value:
    if isinstance(node.base, Current) and isinstance(ctx, _PredCtx):
        return ctx.bare(node.name)  # ./field inside a predicate
    base = _eval(node.base, ctx)
    if not isinstance(base, _NodeSet):
        raise _Fail(f"/{node.name} can only follow a repeat, e.g. ${{roster}}[...]/{node.name}")
    return base.with_field(node.name)


def _eval_call(node: Call, ctx: _Ctx) -> Value:
    return _FUNCTION_IMPLS[node.name](node, ctx)


def _eval_parent(node: Parent, ctx: _Ctx) -> Value:
    raise _Fail("'..' is only supported as position(..)")


_EVALUATORS: dict[type, Callable[[Any, _Ctx], Value]] = {
    Number: lambda node, ctx: _Atom(NUM, np.float64(node.value)),
    String: lambda node, ctx: _Atom(STR, node.value),
    Ref: lambda node, ctx: ctx.ref(node.name),
    Name: lambda node, ctx: ctx.bare(node.name),
    Current: lambda node, ctx: ctx.current(),
    Parent: _eval_parent,
    Negate: lambda node, ctx: _Atom(NUM, np.negative(_as_num(_eval(node.operand, ctx)))),
    BinaryOp: _eval_binary,
    Filter: _eval_filter,
    Step: _eval_step,
    Call: _eval_call,
}


# ---- functions ------------------------------------------------------------------------------


def _args(node: Call, ctx: _Ctx) -> list[Value]:
    return [_eval(arg, ctx) for arg in node.args]


def _str_arg(node: Call, ctx: _Ctx) -> Any:
    """The first argument as strings; no argument means the current value (XPath context)."""
    return _as_str(_eval(node.args[0], ctx) if node.args else ctx.current())


def _pack(kind: str, results: list[Any]) -> np.ndarray:
    if kind == STR:
        return np.array(results, dtype=object)
    return np.array(results, dtype=bool if kind == BOOL else float)


def _map_strings(kind: str, fn: Callable[[str], Any], strs: Any) -> _Atom:
    """fn applied to every string. String functions have no numpy form, and pandas' .str
    methods loop in Python for object data too, so when a column has few distinct values (select
    answers, codes, regions) fn runs once per distinct value: ~6x faster on 1M rows."""
    if not _is_array(strs):
        return _Atom(kind, fn(strs))
    n = len(strs)
    if n >= 10_000 and len(pd.unique(strs[:: n // 2_000])) <= 200:
        codes, uniques = pd.factorize(strs)
        return _Atom(kind, _pack(kind, [fn(u) for u in uniques])[codes])
    return _Atom(kind, _pack(kind, [fn(x) for x in strs]))


def _rowwise(kind: str, fn: Callable[..., Any], *args: Any) -> _Atom:
    """fn per row over broadcast arguments (only where no vectorised form exists)."""
    arrays = [a for a in args if _is_array(a)]
    if not arrays:
        return _Atom(kind, fn(*args))
    if len(arrays) == 1 and _is_array(args[0]):
        rest = args[1:]
        return _map_strings(kind, lambda x: fn(x, *rest), args[0])
    n = len(arrays[0])
    columns = [a if _is_array(a) else itertools.repeat(a, n) for a in args]
    return _Atom(kind, _pack(kind, [fn(*row) for row in zip(*columns, strict=False)]))


def _fn_if(node: Call, ctx: _Ctx) -> Value:
    cond, a, b = _args(node, ctx)
    return _choose(_as_bool(cond), a, b, ctx.n)


def _fn_coalesce(node: Call, ctx: _Ctx) -> Value:
    values = _args(node, ctx)
    result = values[-1]
    for value in reversed(values[:-1]):
        result = _choose(np.logical_not(_is_empty(value)), value, result, ctx.n)
    return result


def _fn_selected(node: Call, ctx: _Ctx) -> Value:
    subject, token = (_as_str(v) for v in _args(node, ctx))
    # JavaRosa's test: (" " + answer + " ").contains(" " + token.trim() + " ").
    if not _is_array(token):
        needle = f" {token.strip()} "
        return _map_strings(BOOL, lambda s: needle in f" {s} ", subject)
    return _rowwise(BOOL, lambda s, t: f" {t.strip()} " in f" {s} ", subject, token)


def _selected_at(s: str, i: float) -> str:
    tokens = s.split()
    k = int(i) if np.isfinite(i) else -1
    return tokens[k] if 0 <= k < len(tokens) else ""


def _to_int(x: Any) -> Any:
    """JavaRosa toInt() as used for indices: truncate, NaN -> 0."""
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(np.trunc(x), nan=0.0, posinf=2**31, neginf=-(2**31))


def _fn_substr(node: Call, ctx: _Ctx) -> Value:
    values = _args(node, ctx)
    s = _as_str(values[0])
    start = _to_int(_as_num(values[1]))
    end = _to_int(_as_num(values[2])) if len(values) > 2 else None
    # Python slicing has JavaRosa's semantics: 0-based, end exclusive, negatives from the end.
    if np.ndim(start) == 0 and (end is None or np.ndim(end) == 0):
        first, stop = int(start), None if end is None else int(end)
        return _map_strings(STR, lambda x: x[first:stop], s)
    if end is None:
        return _rowwise(STR, lambda x, a: x[int(a):], s, start)
    return _rowwise(STR, lambda x, a, b: x[int(a):int(b)], s, start, end)


def _string_pair(name: str) -> Callable[[Call, _Ctx], Value]:
    scalar: Callable[[str, str], bool] = {
        "contains": lambda a, b: b in a,
        "starts-with": lambda a, b: a.startswith(b),
        "ends-with": lambda a, b: a.endswith(b),
    }[name]

    def impl(node: Call, ctx: _Ctx) -> Value:
        a, b = (_as_str(v) for v in _args(node, ctx))
        return _rowwise(BOOL, scalar, a, b)

    return impl


@functools.lru_cache(maxsize=256)
def _compile_regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise _Fail(f"invalid regular expression {pattern!r}: {exc}") from None


def _fn_regex(node: Call, ctx: _Ctx) -> Value:
    # JavaRosa uses Pattern.matches(re, s): the WHOLE string must match (not a search).
    subject, pattern = (_as_str(v) for v in _args(node, ctx))
    if not _is_array(pattern):
        compiled = _compile_regex(pattern)
        return _map_strings(BOOL, lambda s: compiled.fullmatch(s) is not None, subject)
    return _rowwise(BOOL, lambda s, p: _compile_regex(p).fullmatch(s) is not None,
                    subject, pattern)


def _fn_concat(node: Call, ctx: _Ctx) -> Value:
    parts = [_as_str(v) for v in _args(node, ctx)]
    return _rowwise(STR, lambda *p: "".join(p), *parts)


def _round(node: Call, ctx: _Ctx) -> Value:
    values = _args(node, ctx)
    x = _as_num(values[0])
    digits = np.trunc(_as_num(values[1])) if len(values) > 1 else 0.0
    with np.errstate(all="ignore"):
        scale = np.power(10.0, digits)
        y = np.abs(x) * scale
        # Half away from zero on the decimal value: the tiny nudge undoes binary representation
        # error (2.675 * 100 == 267.49999999999997), like JavaRosa's BigDecimal(toString(x)).
        rounded = np.floor(y + 0.5 + y * 2.0**-50)
        return _Atom(NUM, np.where(np.isfinite(y), np.sign(x) * rounded / scale, x))


def _numeric(fn: Callable[..., Any]) -> Callable[[Call, _Ctx], Value]:
    def impl(node: Call, ctx: _Ctx) -> Value:
        with np.errstate(all="ignore"):
            return _Atom(NUM, fn(*(_as_num(v) for v in _args(node, ctx))))

    return impl


def _group_numbers(nodes: _NodeSet) -> np.ndarray:
    return nodes.values().num()


def _fn_sum(node: Call, ctx: _Ctx) -> Value:
    (value,) = _args(node, ctx)
    if isinstance(value, _NodeSet):
        numbers = _group_numbers(value)
        # JavaRosa skips NaN (unanswered) values when summing.
        weights = np.where(np.isnan(numbers), 0.0, numbers)
        return _Atom(NUM, np.bincount(value.owner, weights=weights, minlength=value.n))
    if isinstance(value, _Node):
        numbers = value.num()
        return _Atom(NUM, np.where(np.isnan(numbers), 0.0, numbers))
    raise _Fail("sum() needs a node-set, e.g. sum(${field_in_repeat})")


def _fn_count(node: Call, ctx: _Ctx) -> Value:
    (value,) = _args(node, ctx)
    if isinstance(value, _NodeSet):
        return _Atom(NUM, np.bincount(value.owner, minlength=value.n).astype(float))
    if isinstance(value, _Node):
        return _Atom(NUM, np.float64(1.0))
    raise _Fail("count() needs a node-set, e.g. count(${roster})")


def _fn_count_non_empty(node: Call, ctx: _Ctx) -> Value:
    (value,) = _args(node, ctx)
    if isinstance(value, _NodeSet):
        filled = ~value.values().empty()
        return _Atom(NUM, np.bincount(value.owner, weights=filled, minlength=value.n))
    if isinstance(value, _Node):
        return _Atom(NUM, (~value.empty()).astype(float))
    raise _Fail("count-non-empty() needs a node-set")


def _extreme(reducer: np.ufunc, start: float) -> Callable[[Call, _Ctx], Value]:
    """min()/max(): over the arguments and/or the nodes of node-sets, skipping NaN like
    JavaRosa (NaN only when there is no number at all)."""

    def impl(node: Call, ctx: _Ctx) -> Value:
        parts = []
        for value in _args(node, ctx):
            if isinstance(value, _NodeSet):
                numbers = _group_numbers(value)
                out = np.full(value.n, start)
                reducer.at(out, value.owner, numbers)
                has = np.bincount(value.owner, weights=~np.isnan(numbers), minlength=value.n)
                out[has == 0] = np.nan
                parts.append(out)
            else:
                parts.append(_as_num(value))
        return _Atom(NUM, functools.reduce(reducer, parts))

    return impl


def _fn_indexed_repeat(node: Call, ctx: _Ctx) -> Value:
    if not isinstance(ctx, _TopCtx):
        raise _Fail("indexed-repeat() inside a predicate is not supported")
    target, group, index = _args(node, ctx)
    if not isinstance(target, _NodeSet) or target.field is None:
        raise _Fail("indexed-repeat(): the first argument must be a field inside a repeat")
    if not isinstance(group, _NodeSet) or group.field is not None:
        raise _Fail("indexed-repeat(): the second argument must be a repeat")
    if group.repeat != target.repeat:
        raise _Fail(f"indexed-repeat(): {target.field!r} is not in repeat {group.repeat!r}")
    k = np.trunc(_as_num(index))
    with np.errstate(invalid="ignore"):
        k = np.where(k < 1, 1.0, k)  # JavaRosa treats indices below 1 as 1
    return target.nth(k)


def _fn_random(node: Call, ctx: _Ctx) -> Value:
    if ctx.env.rng is None:
        raise _Fail("random() needs the rng= argument (a numpy Generator)")
    return _Atom(NUM, ctx.env.rng.random(ctx.n))


def _fn_uuid(node: Call, ctx: _Ctx) -> Value:
    if ctx.env.rng is None:
        raise _Fail("uuid() needs the rng= argument (a numpy Generator)")
    n = ctx.n
    raw = np.frombuffer(ctx.env.rng.bytes(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    text = raw.tobytes().hex()
    out = [f"uuid:{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
           for h in (text[i : i + 32] for i in range(0, 32 * n, 32))]
    return _Atom(STR, np.array(out, dtype=object))


def _fn_today(node: Call, ctx: _Ctx) -> Value:
    today = ctx.env.today or _dt.date.today()
    if isinstance(today, _dt.datetime):
        today = today.date()
    return _Atom(DATE, np.float64((today - _EPOCH.date()).days))


def _fn_now(node: Call, ctx: _Ctx) -> Value:
    now = (ctx.env.now or _dt.datetime.now()).replace(tzinfo=None)  # local wall clock
    return _Atom(DATETIME, np.float64((now - _EPOCH).total_seconds() / 86_400.0))


def _fn_date(node: Call, ctx: _Ctx) -> Value:
    return _Atom(DATE, np.floor(_as_days(_eval(node.args[0], ctx))))


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


#: JavaRosa format-date token → the text of each date (a pandas DatetimeIndex).
_DATE_TOKENS: dict[str, Callable[[pd.DatetimeIndex], list[str]]] = {
    "Y": lambda idx: [f"{v:04d}" for v in idx.year],
    "y": lambda idx: [f"{v % 100:02d}" for v in idx.year],
    "m": lambda idx: [f"{v:02d}" for v in idx.month],
    "n": lambda idx: [str(v) for v in idx.month],
    "b": lambda idx: [_MONTHS[v - 1] for v in idx.month],
    "d": lambda idx: [f"{v:02d}" for v in idx.day],
    "e": lambda idx: [str(v) for v in idx.day],
    "H": lambda idx: [f"{v:02d}" for v in idx.hour],
    "h": lambda idx: [str(v) for v in idx.hour],
    "M": lambda idx: [f"{v:02d}" for v in idx.minute],
    "S": lambda idx: [f"{v:02d}" for v in idx.second],
    "3": lambda idx: [f"{v // 1000:03d}" for v in idx.microsecond],
    "a": lambda idx: [_WEEKDAYS[v] for v in idx.dayofweek],
    "%": lambda idx: ["%"] * len(idx),
}


def _format_dates(days: np.ndarray, fmt: str) -> np.ndarray:
    """JavaRosa format-date tokens: %Y %y %m %n %b %d %e %H %h %M %S %3 %a (and %%)."""
    out = np.full(len(days), "", dtype=object)
    dt64 = _days_to_dt64(days)
    ok = ~np.isnat(dt64)
    if not ok.any():
        return out
    idx = pd.DatetimeIndex(dt64[ok].astype("datetime64[ns]"))
    parts: list[list[str]] = []
    cursor = 0
    for m in re.finditer(r"%(.)", fmt):
        parts.append([fmt[cursor : m.start()]] * len(idx))
        cursor = m.end()
        token = _DATE_TOKENS.get(m.group(1))
        if token is None:
            raise _Fail(f"format-date(): unsupported format token %{m.group(1)}")
        parts.append(token(idx))
    parts.append([fmt[cursor:]] * len(idx))
    out[ok] = np.array(["".join(p) for p in zip(*parts, strict=True)], dtype=object)
    return out


def _fn_format_date(node: Call, ctx: _Ctx) -> Value:
    value, fmt = _args(node, ctx)
    days, pattern = _as_days(value), _as_str(fmt)
    if _is_array(pattern):
        raise _Fail("format-date(): the format must be the same for every row")
    if not _is_array(days):
        return _Atom(STR, _format_dates(np.array([days], dtype=float), pattern)[0])
    return _Atom(STR, _format_dates(days, pattern))


def _fn_position(node: Call, ctx: _Ctx) -> Value:
    return ctx.position(bool(node.args))


_FUNCTION_IMPLS: dict[str, Callable[[Call, _Ctx], Value]] = {
    "if": _fn_if,
    "coalesce": _fn_coalesce,
    "selected": _fn_selected,
    "count-selected": lambda node, ctx: _rowwise(
        NUM, lambda s: float(len(s.split())), _str_arg(node, ctx)),
    "selected-at": lambda node, ctx: _rowwise(
        STR, _selected_at, _str_arg(node, ctx), _as_num(_eval(node.args[1], ctx))),
    "string-length": lambda node, ctx: _map_strings(
        NUM, lambda s: float(len(s)), _str_arg(node, ctx)),
    "normalize-space": lambda node, ctx: _rowwise(
        STR, lambda s: " ".join(s.split()), _str_arg(node, ctx)),
    "regex": _fn_regex,
    "concat": _fn_concat,
    "substr": _fn_substr,
    "contains": _string_pair("contains"),
    "starts-with": _string_pair("starts-with"),
    "ends-with": _string_pair("ends-with"),
    "int": _numeric(np.trunc),  # toward zero: int(-2.7) = -2
    "number": _numeric(lambda x: x),
    "string": lambda node, ctx: _Atom(STR, _str_arg(node, ctx)),
    "round": _round,
    "floor": _numeric(np.floor),
    "ceiling": _numeric(np.ceil),
    "abs": _numeric(np.abs),
    "pow": _numeric(np.power),
    "sqrt": _numeric(np.sqrt),
    "exp": _numeric(np.exp),
    "exp10": _numeric(lambda x: np.power(10.0, x)),
    "log": _numeric(np.log),
    "log10": _numeric(np.log10),
    "sin": _numeric(np.sin),
    "cos": _numeric(np.cos),
    "tan": _numeric(np.tan),
    "asin": _numeric(np.arcsin),
    "acos": _numeric(np.arccos),
    "atan": _numeric(np.arctan),
    "atan2": _numeric(np.arctan2),
    "pi": lambda node, ctx: _Atom(NUM, np.pi),
    "true": lambda node, ctx: _Atom(BOOL, True),
    "false": lambda node, ctx: _Atom(BOOL, False),
    "boolean": lambda node, ctx: _Atom(BOOL, _as_bool(_eval(node.args[0], ctx))),
    "not": lambda node, ctx: _Atom(BOOL, np.logical_not(_as_bool(_eval(node.args[0], ctx)))),
    "min": _extreme(np.fmin, np.inf),
    "max": _extreme(np.fmax, -np.inf),
    "sum": _fn_sum,
    "count": _fn_count,
    "count-non-empty": _fn_count_non_empty,
    "indexed-repeat": _fn_indexed_repeat,
    "position": _fn_position,
    "last": lambda node, ctx: ctx.last(),
    "once": lambda node, ctx: _eval(node.args[0], ctx),  # the caller keeps the first value
    "random": _fn_random,
    "uuid": _fn_uuid,
    "today": _fn_today,
    "now": _fn_now,
    "date": _fn_date,
    "date-time": lambda node, ctx: _Atom(DATETIME, _as_days(_eval(node.args[0], ctx))),
    "decimal-date-time": lambda node, ctx: _Atom(NUM, _as_days(_eval(node.args[0], ctx))),
    "format-date": _fn_format_date,
    "format-date-time": _fn_format_date,
}
assert set(_FUNCTION_IMPLS) == set(FUNCTIONS)


# --------------------------------------------------------------------------------------------
# Public evaluation API
# --------------------------------------------------------------------------------------------


def _run(expression: str | Node, frame: pd.DataFrame, current: pd.Series | str | None,
         repeats: Mapping[str, RepeatData] | None, position: pd.Series | None,
         relative: pd.DataFrame | None, rng: np.random.Generator | None,
         today: _dt.date | None, now: _dt.datetime | None) -> tuple[Value, _Env, Node]:
    root = _root(expression)
    env = _Env(root.source, frame, current, repeats, position, relative, rng, today, now)
    return _eval(root, _TopCtx(env)), env, root


def evaluate(
    expression: str | Node,
    frame: pd.DataFrame,
    *,
    current: pd.Series | str | None = None,
    repeats: Mapping[str, RepeatData] | None = None,
    position: pd.Series | None = None,
    relative: pd.DataFrame | None = None,
    rng: np.random.Generator | None = None,
    today: _dt.date | None = None,
    now: _dt.datetime | None = None,
) -> pd.Series:
    """Evaluate an expression for every row of `frame` at once.

    `frame` has one row per evaluation context (a submission, or a repeat instance with the
    outer fields it needs joined in); `${x}` is `frame[x]`. `repeats` maps repeat names to their
    instances for `count(${roster})`, `sum(${age})`, `${roster}[...]/field`, indexed-repeat().
    `current` is `.` (constraints), `position` the 1-based instance number for position(..),
    `relative` the columns bare names refer to (choice filters over a submissions x choices
    cross join), `rng` drives random()/uuid(), `today`/`now` pin the clock.

    Returns a Series on frame.index: float64 for numbers, object for strings, bool for
    booleans, datetime64[ns] for dates; a bare `${x}` returns the column's values unchanged.
    """
    value, env, root = _deep(_text(expression), _run, expression, frame, current, repeats,
                             position, relative, rng, today, now)
    try:
        value = _unpack(value)
    except _Fail as exc:
        raise ExpressionError(str(exc), env.source, root.pos,
                              code="expression-evaluation") from None
    if isinstance(value, _Node):
        out = value.raw.copy()
        out.index = env.index
        return out
    data = np.broadcast_to(value.data, (env.n,))
    if value.kind == NUM:
        values: Any = np.array(data, dtype=np.float64)
    elif value.kind == BOOL:
        values = np.array(data, dtype=bool)
    elif value.kind == STR:
        values = np.array(data, dtype=object)
    else:
        values = _days_to_dt64(data).astype("datetime64[ns]")
    return pd.Series(values, index=env.index)


def evaluate_bool(
    expression: str | Node,
    frame: pd.DataFrame,
    *,
    current: pd.Series | str | None = None,
    repeats: Mapping[str, RepeatData] | None = None,
    position: pd.Series | None = None,
    relative: pd.DataFrame | None = None,
    rng: np.random.Generator | None = None,
    today: _dt.date | None = None,
    now: _dt.datetime | None = None,
) -> pd.Series:
    """XPath boolean() of the result, as a bool Series: what `relevant`, `constraint` and
    `choice_filter` mean (a missing answer makes a comparison false, never NaN)."""
    value, env, _ = _deep(_text(expression), _run, expression, frame, current, repeats,
                          position, relative, rng, today, now)
    truth = np.broadcast_to(_as_bool(value), (env.n,))
    return pd.Series(np.array(truth, dtype=bool), index=env.index)
