"""XLSForm/XPath expressions (`relevant`, `constraint`, `calculation`, `choice_filter`) over pandas.

Why this exists: one form model feeds a simulator, a validator and a codebook, and all of them
must evaluate the same expressions over thousands (or millions) of submissions. Interpreting
each row the way JavaRosa does would be far too slow, so an expression is parsed once and then
evaluated column-wise with numpy/pandas, while keeping JavaRosa's typing rules so that the
answers match what ODK Collect would have decided on a device.

Typing rules are JavaRosa's (tests/forms/test_javarosa_agreement.py checks several hundred
cases against JavaRosa itself):

* A `${ref}` is a *node*: a missing answer (None, NaN, NaT, "") is the empty string "". A
  numeric column's answers are numbers, a datetime column's are dates, other columns' are text.
* `=`/`!=`: if either side is a boolean, compare booleans; else if either side is a number,
  compare numbers; else compare strings (a date as 'YYYY-MM-DD'). So `${age} = '012'` is true
  for a numeric age of 12, and a missing answer equals only ''.
* `<`, `<=`, `>`, `>=` and arithmetic convert to numbers: a date is whole days since
  1970-01-01 (a dateTime too: two times on the same day compare equal), text is a number only
  when it is plain decimal digits ('1e3' and '+5' are NaN; ',' is read as a decimal point).
  Text in a column that is an ISO date counts as that date, so that raw-text exports give the
  answers typed ones give.
* boolean(): a number is true when non-zero and not NaN, a string when non-empty. A node-set
  used as a value must hold at most one node (none is ""); a predicate keeps the nodes for
  which it is the boolean true (so `[2]` keeps none, as on the device: use position() = 2).
* Numbers print as Java prints them: whole numbers in int range without a decimal point ("12"),
  others as Java's Double.toString ("0.5", "1.0E20"); NaN as "NaN" (a missing numeric answer
  is ""). String lengths and substr() count UTF-16 code units; regex() uses Java's dialect.

The Java rules themselves live in xpath_text (numbers, strings, regex), xpath_dates and
xpath_geo (geo functions and randomize's seeded shuffle).
"""

from __future__ import annotations

import datetime as _dt
import functools
import itertools
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from dhsurvey.errors import DhsurveyError
from dhsurvey.forms import xpath_geo, xpath_text
from dhsurvey.forms.xpath_dates import MS_PER_DAY, DateFormatError, format_dates, parse_dates

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


# Supported functions and their arity (min, max; None = unbounded), as JavaRosa accepts them.
# Checked at parse time so that `dhsurvey lint` reports typos without needing data. Left out:
# functions that read the device (property(), version(), jr:itext()) and extract-signed().
FUNCTIONS: dict[str, tuple[int, int | None]] = {
    "if": (3, 3),
    "coalesce": (2, 2),
    "selected": (2, 2),
    "is-selected": (2, 2),
    "count-selected": (1, 1),
    "selected-at": (2, 2),
    "jr:choice-name": (2, 2),
    "string-length": (0, 1),
    "normalize-space": (0, 1),
    "regex": (2, 2),
    "concat": (0, None),
    "join": (1, None),
    "substr": (2, 3),
    "substring-before": (2, 2),
    "substring-after": (2, 2),
    "translate": (3, 3),
    "contains": (2, 2),
    "starts-with": (2, 2),
    "ends-with": (2, 2),
    "boolean-from-string": (1, 1),
    "digest": (2, 3),
    "base64-decode": (1, 1),
    "int": (1, 1),
    "number": (1, 1),
    "string": (1, 1),
    "round": (1, 2),
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
    "checklist": (2, None),
    "weighted-checklist": (4, None),
    "min": (1, None),
    "max": (1, None),
    "sum": (1, 1),
    "count": (1, 1),
    "count-non-empty": (1, 1),
    "indexed-repeat": (3, 3),
    "position": (0, 1),
    "instance": (1, 1),
    "pulldata": (4, 4),
    "randomize": (1, 2),
    "once": (1, 1),
    "random": (0, 0),
    "uuid": (0, 1),
    "today": (0, 0),
    "now": (0, 0),
    "date": (1, 1),
    "date-time": (1, 1),
    "decimal-date-time": (1, 1),
    "decimal-time": (1, 1),
    "format-date": (2, 2),
    "format-date-time": (2, 2),
    "distance": (1, None),
    "area": (1, 1),
    "enclosed-area": (1, 1),
    "geofence": (2, 2),
}


#: XPath 1.0 functions JavaRosa does not have, and what to write instead.
_NOT_IN_JAVAROSA = {
    "floor": "use int() for numbers >= 0, or round()",
    "ceiling": "use round() or int()",
    "last": "compare position() with count()",
    "substring": "use substr(), whose positions start at 0",
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
            node = self.parse_predicates(node)
        return node

    def parse_predicates(self, node: Node) -> Node:
        while self.at_op("["):
            opened = self.next()
            predicate = self.parse_binary(0)
            self.expect("]", opened)
            node = Filter(opened.pos, node, predicate)
        return node

    def parse_filter(self) -> Node:
        return self.parse_predicates(self.parse_primary())

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
            hint = _NOT_IN_JAVAROSA.get(name.value)
            extra = f" (ODK Collect cannot evaluate it: {hint})" if hint else ""
            raise self.error(f"unknown function {name.value}(){extra}", name.pos)
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
        if name.value == "weighted-checklist" and len(args) % 2:
            raise self.error("weighted-checklist() takes min, max and then pairs of a value and "
                             f"its weight, got {len(args)} argument(s)", name.pos)
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


def comparisons(tree: Node, ops: Iterable[str] = ("=", "!=")
                ) -> Iterator[tuple[str, Node, Node]]:
    """(operator, one side, other side) of each comparison whose operator is in ``ops``, both
    ways round (the operator is not turned), and ("selected", field, code) of each
    ``selected(field, code)``: where an expression tests a field against a literal."""
    for node in _walk(tree):
        if isinstance(node, BinaryOp) and node.op in ops:
            yield node.op, node.left, node.right
            yield node.op, node.right, node.left
        elif isinstance(node, Call) and node.name == "selected" and len(node.args) == 2:
            yield "selected", node.args[0], node.args[1]


def references(expression: str | Node) -> list[str]:
    """The `${names}` used, in order of first appearance, without duplicates (dependency graph)."""
    refs = sorted((n.pos, n.name) for n in _walk(_root(expression)) if isinstance(n, Ref))
    return list(dict.fromkeys(name for _, name in refs))


def names_read(expression: str | Node) -> set[str]:
    """Every name through which the expression may read a value: `${names}`, bare names (a
    repeat's or a list's column in a predicate) and path steps. A superset of the fields its
    value depends on, for callers that re-evaluate only what a changed field can affect."""
    return {n.name for n in _walk(_root(expression)) if isinstance(n, (Ref, Name, Step))}


def functions(expression: str | Node) -> set[str]:
    """The function names used (e.g. to flag random()/now() as non-reproducible)."""
    return {n.name for n in _walk(_root(expression)) if isinstance(n, Call)}


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------

NUM, STR, BOOL, DATE, DATETIME = "number", "string", "boolean", "date", "datetime"
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
                return np.floor(self.days())  # JavaRosa: a date is whole days
            return _text_to_num(self.strs())

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
                return _days_to_str(self.days(), False)  # JavaRosa prints dates as dates
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


@dataclass(frozen=True)
class _InstanceRoot:
    """instance('name') (depth 0) or instance('name')/root (depth 1): a secondary instance,
    a table with one row per item (an attached CSV, a choice list)."""

    name: str
    frame: pd.DataFrame
    depth: int = 0


Value = _Atom | _Node | _NodeSet | _InstanceRoot


def _unpack(value: Value) -> _Atom | _Node:
    """Scalar context, as JavaRosa: a node-set must hold at most one node per row (none is
    ""); a repeat or an item used as a value is ""."""
    if isinstance(value, _InstanceRoot):
        raise _Fail(f"instance('{value.name}') is used as a value; select nodes with "
                    "/root/item[…]/name")
    if isinstance(value, _NodeSet):
        counts = value.groups()[1]
        if len(counts) and counts.max() > 1:
            what = f"{value.repeat}/{value.field}" if value.field else value.repeat
            raise _Fail(f"{what} has {int(counts.max())} nodes where one value is expected "
                        "(pick one with a predicate or indexed-repeat())")
        if value.field is None:
            return _Atom(STR, np.full(value.n, "", dtype=object))
        return value.nth(1)
    return value


# ---- scalar/array conversions ---------------------------------------------------------------


def _fmt_num(x: Any, missing: str = "NaN") -> Any:
    """XPath number -> string as JavaRosa prints it: whole numbers in int range without a
    decimal point, others as Java's Double.toString ('0.5', '1.0E20'), NaN as ``missing``."""
    if np.ndim(x) == 0:
        return _fmt_num(np.array([x], dtype=float), missing)[0]
    arr = np.asarray(x, dtype=float)
    out = np.empty(len(arr), dtype=object)
    with np.errstate(invalid="ignore"):
        trunc = np.trunc(arr)
        whole = (np.abs(arr) < 2.0**31) & (np.abs(arr - trunc) < 1e-12)
    if whole.any():
        out[whole] = np.array(list(map(str, trunc[whole].astype(np.int64).tolist())), object)
    if not whole.all():
        rest = ~whole
        out[rest] = np.array([xpath_text.format_number(v) for v in arr[rest].tolist()],
                             dtype=object)
        out[np.isnan(arr)] = missing
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


_ISO_START = re.compile(r"\d{4}-")


def _parse_days(strs: Any) -> Any:
    """Date/dateTime strings -> days since 1970-01-01, as JavaRosa reads them (NaN if not a
    date); a time zone offset is dropped so the recorded wall-clock time is kept."""
    if not _is_array(strs):
        return _parse_days(np.array([strs], dtype=object))[0]
    return parse_dates(strs)


def _str_to_num(strs: Any) -> Any:
    """XPath number() of strings, as JavaRosa: plain decimals only ('1e3' is NaN)."""
    if not _is_array(strs):
        return xpath_text.parse_numbers(np.array([strs], dtype=object))[0]
    return xpath_text.parse_numbers(strs)


def _text_to_num(strs: np.ndarray) -> np.ndarray:
    """A text column as numbers: JavaRosa's number(), and whole days for text that is an ISO
    date, so that raw-text exports compare dates the way typed ones do."""
    out = _str_to_num(strs)
    candidates = np.isnan(out) & (strs != "")
    if candidates.any():
        codes, distinct = pd.factorize(strs[candidates])  # a column repeats few values
        maybe = np.array([bool(_ISO_START.match(v)) for v in distinct], dtype=bool)[codes]
        if maybe.any():
            idx = np.flatnonzero(candidates)[maybe]
            out = out.copy()
            out[idx] = np.floor(_parse_days(strs[idx]))
    return out


def _dt64_to_days(values: np.ndarray) -> np.ndarray:
    ms = values.astype("datetime64[ms]")
    days = ms.astype(np.int64) / MS_PER_DAY
    days[np.isnat(ms)] = np.nan
    return days


def _days_to_dt64(days: Any) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(days, dtype=float))
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(arr) & (np.abs(arr) < _MAX_DAYS)
    ms = np.zeros(len(arr), dtype=np.int64)
    ms[ok] = np.round(arr[ok] * MS_PER_DAY).astype(np.int64)
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
    """JavaRosa toNumeric(): dates are whole days."""
    v = _unpack(value)
    if isinstance(v, _Node):
        return v.num()
    if v.kind == NUM:
        return v.data
    if v.kind in (DATE, DATETIME):
        return np.floor(v.data)
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
    return _days_to_str(v.data, False)  # JavaRosa's string of a date(-time) is the date


def _as_double(value: Value) -> Any:
    """JavaRosa toDouble() (math functions): a computed date keeps its time of day; a node is
    converted as by number()."""
    if isinstance(value, _Atom) and value.kind in (DATE, DATETIME):
        return value.data
    return _as_num(value)


def _as_bool(value: Value) -> Any:
    if isinstance(value, _NodeSet | _InstanceRoot):  # JavaRosa converts the node's value
        value = _unpack(value)
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


def _num_equal(a: Any, b: Any) -> Any:
    """JavaRosa: |a - b| < 1e-12 (so NaN and two infinities are never equal)."""
    with np.errstate(invalid="ignore"):
        return np.abs(a - b) < 1e-12


def _eq_kinds(v: _Atom | _Node) -> tuple[Any, Any]:
    """(is a boolean, is a number) per row, for JavaRosa's choice of comparison: a missing
    answer of a numeric column is the string "", not a number."""
    if isinstance(v, _Node):
        if v.cat == "bool":
            return True, False
        if v.cat == "num":
            return False, ~v.empty()
        return False, False
    return v.kind == BOOL, v.kind == NUM


def _equals(left: Value, right: Value) -> Any:
    """JavaRosa's `=`: booleans if either side is one, else numbers if either side is one,
    else strings (a date as 'YYYY-MM-DD')."""
    a, b = _unpack(left), _unpack(right)
    fast = _equals_fast(a, b)
    if fast is not None:
        return fast
    bool_a, num_a = _eq_kinds(a)
    bool_b, num_b = _eq_kinds(b)
    as_bool = np.logical_or(bool_a, bool_b)
    as_num = np.logical_and(np.logical_or(num_a, num_b), np.logical_not(as_bool))
    as_str = np.logical_not(np.logical_or(as_bool, as_num))
    parts = []
    if np.any(as_bool):
        parts.append((as_bool, np.asarray(np.equal(_as_bool(a), _as_bool(b)), dtype=bool)))
    if np.any(as_num):
        parts.append((as_num, np.asarray(_num_equal(_as_num(a), _as_num(b)), dtype=bool)))
    if np.any(as_str):
        parts.append((as_str, np.asarray(np.equal(_as_str(a), _as_str(b)), dtype=bool)))
    if not parts:  # nothing to compare: an empty node-set, or no rows
        result = np.zeros(np.size(as_bool), bool)
    elif len(parts) == 1:
        result = parts[0][1]
    else:
        result = np.zeros(max(np.size(m) for m, _ in parts), bool)
        for mask, values in parts:
            result = np.where(mask, values, result)
    return result if np.ndim(result) else bool(result)


def _equals_fast(a: _Atom | _Node, b: _Atom | _Node) -> Any:
    """The common shapes (a column against a literal, two numeric columns) without building
    per-row kinds; None for any other shape."""
    for node, other in ((a, b), (b, a)):
        if isinstance(node, _Node) and isinstance(other, _Atom) and not _is_array(other.data):
            if node.cat == "num" and other.kind == NUM:
                return _num_equal(node.num(), other.data)
            if node.cat == "num" and other.kind == STR:
                return _num_column_equals_literal(node, other.data)
            if node.cat == "obj" and other.kind == STR:
                return node.strs() == other.data
    if isinstance(a, _Node) and isinstance(b, _Node) and a.cat == b.cat == "num":
        return _num_equal(a.num(), b.num()) | (a.empty() & b.empty())
    return None


def _num_column_equals_literal(node: _Node, literal: str) -> np.ndarray:
    """A numeric answer against text: numbers compared (JavaRosa reads '012' as 12); a missing
    answer is "" and equals only ''."""
    if literal == "":
        return node.empty()
    number = _str_to_num(literal)
    if np.isnan(number):
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
                 today: _dt.date | None, now: _dt.datetime | None,
                 instances: Mapping[str, pd.DataFrame] | None = None,
                 choice_labels: Mapping[str, Mapping[str, str]] | None = None) -> None:
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
        self.instances = instances if instances is not None else {}
        self.choice_labels = choice_labels if choice_labels is not None else {}
        self.columns: dict[str, _Node] = {}
        self.repeat_sets: dict[str, _NodeSet] = {}

    def align(self, series: pd.Series, what: str) -> pd.Series:
        if series.index.equals(self.index):
            return _positional(series)
        try:
            return _positional(series.reindex(self.index))
        except ValueError:  # duplicate labels
            raise _Fail(f"{what} is not aligned with the frame's index") from None

    def instance(self, name: str) -> pd.DataFrame:
        """The items of secondary instance ``name`` (an attached CSV, a choice list)."""
        try:
            return self.instances[name]
        except KeyError:
            raise _Fail(f"no secondary instance {name!r} (an attached {name}.csv or a choice "
                        "list of that name)") from None

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
    value = _unpack(_eval(node.predicate, pred_ctx))
    # JavaRosa keeps a node only where the predicate is the boolean true: [2] keeps none.
    if isinstance(value, _Atom) and value.kind == BOOL:
        mask = value.data
    elif isinstance(value, _Node) and value.cat == "bool":
        mask = value.truth()
    else:
        mask = False
    return base.subset(np.broadcast_to(mask, (pred_ctx.n,)))


def _eval_step(node: Step, ctx: _Ctx) -> Value:
    if isinstance(node.base, Current) and isinstance(ctx, _PredCtx):
        return ctx.bare(node.name)  # ./field inside a predicate
    base = _eval(node.base, ctx)
    if isinstance(base, _InstanceRoot):
        return _instance_step(base, node.name, ctx)
    if not isinstance(base, _NodeSet):
        raise _Fail(f"/{node.name} can only follow a repeat, e.g. ${{roster}}[...]/{node.name}")
    return base.with_field(node.name)


def _instance_step(base: _InstanceRoot, name: str, ctx: _Ctx) -> Value:
    """instance('x')/root, then /item: every item of the instance for every context row."""
    if base.depth == 0 and name == "root":
        return replace(base, depth=1)
    if base.depth == 1 and name == "item":
        m = len(base.frame)
        return _NodeSet(f"instance('{base.name}')/root/item", base.frame,
                        np.tile(np.arange(m), ctx.n), np.repeat(np.arange(ctx.n), m), ctx.n)
    step = "/root" if base.depth == 0 else "/item"
    raise _Fail(f"instance('{base.name}') is followed by /{name}; expected {step}")


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
    """if(): JavaRosa evaluates only the branch it takes, so an error in a branch no row takes
    (date('') on rows that skip it) is not an error."""
    cond = _as_bool(_eval(node.args[0], ctx))
    if np.ndim(cond) == 0:
        return _eval(node.args[1] if cond else node.args[2], ctx)
    branches: list[Value | None] = []
    for arg, taken in ((node.args[1], cond), (node.args[2], ~cond)):
        try:
            branches.append(_eval(arg, ctx))
        except ExpressionError:
            if taken.any():
                raise
            branches.append(None)
    a, b = branches
    if a is None:
        assert b is not None
        return b
    if b is None:
        return a
    return _choose(cond, a, b, ctx.n)


def _fn_coalesce(node: Call, ctx: _Ctx) -> Value:
    first = _eval(node.args[0], ctx)
    empty = _is_empty(first)
    if not np.any(empty):
        return first
    return _choose(np.logical_not(empty), first, _eval(node.args[1], ctx), ctx.n)


def _text_arg(value: Value, function: str) -> Any:
    """An argument JavaRosa casts to text: a number or boolean there is an error."""
    v = _unpack(value)
    if isinstance(v, _Atom) and v.kind in (NUM, BOOL):
        raise _Fail(f"{function}(): the choice must be text in quotes (like '1')")
    return _as_str(v)


def _fn_selected(node: Call, ctx: _Ctx) -> Value:
    subject, token = _as_str(_eval(node.args[0], ctx)), _text_arg(_eval(node.args[1], ctx),
                                                                   node.name)
    # JavaRosa's test: (" " + answer + " ").contains(" " + token.trim() + " ").
    if not _is_array(token):
        needle = f" {token.strip()} "
        return _map_strings(BOOL, lambda s: needle in f" {s} ", subject)
    return _rowwise(BOOL, lambda s, t: f" {t.strip()} " in f" {s} ", subject, token)


def _selected_at(s: str, i: float) -> str:
    tokens = xpath_text.split_selection(s)
    k = int(i)
    return tokens[k] if 0 <= k < len(tokens) else ""


def _to_int(x: Any) -> Any:
    """JavaRosa toInt() as used for indices: truncate, NaN -> 0."""
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(np.trunc(x), nan=0.0, posinf=2**31 - 1, neginf=-(2**31))


def _fn_substr(node: Call, ctx: _Ctx) -> Value:
    values = _args(node, ctx)
    s = _as_str(values[0])
    start = _to_int(_as_num(values[1]))
    end = _to_int(_as_num(values[2])) if len(values) > 2 else None
    if end is None:
        return _rowwise(STR, lambda x, a: xpath_text.utf16_slice(x, int(a), None), s, start)
    return _rowwise(STR, lambda x, a, b: xpath_text.utf16_slice(x, int(a), int(b)),
                    s, start, end)


def _before(s: str, sub: str) -> str:
    pos = s.find(sub)
    return s[:pos] if pos >= 0 else ""


def _after(s: str, sub: str) -> str:
    pos = s.find(sub)
    return s[pos + len(sub):] if pos >= 0 else ""


def _translate(s: str, source: str, target: str) -> str:
    """XPath translate(): the first occurrence of a character in ``source`` decides."""
    table: dict[int, int | None] = {}
    for i, ch in enumerate(source):
        table.setdefault(ord(ch), ord(target[i]) if i < len(target) else None)
    return s.translate(table)


def _string_fn(kind: str, fn: Callable[..., Any]) -> Callable[[Call, _Ctx], Value]:
    """A function of the string values of all its arguments, row by row."""

    def impl(node: Call, ctx: _Ctx) -> Value:
        return _rowwise(kind, fn, *(_as_str(v) for v in _args(node, ctx)))

    return impl


def _fn_regex(node: Call, ctx: _Ctx) -> Value:
    # JavaRosa uses Pattern.matches(re, s): Java's dialect, and the WHOLE string must match.
    subject, pattern = (_as_str(v) for v in _args(node, ctx))

    def compiled(p: str) -> re.Pattern[str]:
        try:
            return xpath_text.java_regex(p)
        except xpath_text.JavaRegexError as exc:
            raise _Fail(f"invalid regular expression {p!r}: {exc}") from None

    if not _is_array(pattern):
        regex = compiled(pattern)
        return _map_strings(BOOL, lambda s: regex.fullmatch(s) is not None, subject)
    return _rowwise(BOOL, lambda s, p: compiled(p).fullmatch(s) is not None, subject, pattern)


def _node_strings(nodes: _NodeSet) -> list[np.ndarray]:
    """The string values of each owner's nodes, in node-set order."""
    _, counts, _, order = nodes.groups()
    if nodes.field is None:  # a repeat's (or an item's) own value is ""
        values = np.full(len(order), "", dtype=object)
    else:
        values = nodes.values().strs()[order]
    return np.split(values, np.cumsum(counts)[:-1]) if nodes.n else []


def _join(sep: Any, parts: list[Value], n: int) -> Value:
    """JavaRosa join(): one node-set argument joins its nodes, else each argument's value."""
    if len(parts) == 1 and isinstance(parts[0], _NodeSet):
        groups = _node_strings(parts[0])
        if _is_array(sep):
            return _Atom(STR, np.array([s.join(g) for s, g in zip(sep, groups, strict=True)],
                                       dtype=object))
        return _Atom(STR, np.array([sep.join(g) for g in groups], dtype=object))
    if not parts:
        return _Atom(STR, "")
    strings = [_as_str(v) for v in parts]
    if _is_array(sep):
        return _rowwise(STR, lambda s, *p: s.join(p), sep, *strings)
    return _rowwise(STR, lambda *p: sep.join(p), *strings)


def _fn_concat(node: Call, ctx: _Ctx) -> Value:
    return _join("", _args(node, ctx), ctx.n)


def _fn_join(node: Call, ctx: _Ctx) -> Value:
    sep, *parts = _args(node, ctx)
    return _join(_as_str(sep), parts, ctx.n)


def _or_fail(fn: Callable[..., str]) -> Callable[..., str]:
    """``fn`` with its ValueError (a bad argument value) as an evaluation failure."""
    def wrapped(*args: str) -> str:
        try:
            return fn(*args)
        except ValueError as exc:
            raise _Fail(str(exc)) from None

    return wrapped


def _fn_digest(node: Call, ctx: _Ctx) -> Value:
    payload, *how = (_as_str(v) for v in _args(node, ctx))
    return _rowwise(STR, _or_fail(xpath_text.digest), payload, *how)


def _fn_base64_decode(node: Call, ctx: _Ctx) -> Value:
    return _map_strings(STR, _or_fail(xpath_text.base64_decode), _str_arg(node, ctx))


def _fn_choice_name(node: Call, ctx: _Ctx) -> Value:
    """jr:choice-name(value, '${field}'): the label of the choice of that select field."""
    value, ref = (_as_str(v) for v in _args(node, ctx))
    if _is_array(ref):
        raise _Fail("jr:choice-name(): the field must be the same for every row")
    name = ref.strip().removeprefix("${").removesuffix("}").rstrip("/").rsplit("/", 1)[-1]
    labels = ctx.env.choice_labels.get(name, {})
    return _map_strings(STR, lambda s: labels.get(s, ""), value)


def _round(node: Call, ctx: _Ctx) -> Value:
    values = _args(node, ctx)
    x = _as_num(values[0])
    places = _to_int(_as_num(values[1])) if len(values) > 1 else 0.0
    if np.ndim(x) == 0 and np.ndim(places) == 0:
        return _Atom(NUM, np.float64(xpath_text.java_round(float(x), int(places))))
    if np.ndim(places) == 0:
        xs = np.broadcast_to(np.asarray(x, dtype=float), (ctx.n,))
        return _Atom(NUM, xpath_text.java_round_array(xs, int(places)))
    xs, ps = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(places, dtype=float))
    return _Atom(NUM, np.array([xpath_text.java_round(a, int(b))
                                for a, b in zip(xs.tolist(), ps.tolist(), strict=True)]))


def _numeric(fn: Callable[..., Any], as_double: bool = False) -> Callable[[Call, _Ctx], Value]:
    """A numpy function of the arguments as numbers (as_double: JavaRosa's toDouble, for the
    math functions, which keeps a computed date's time of day)."""
    convert = _as_double if as_double else _as_num

    def impl(node: Call, ctx: _Ctx) -> Value:
        with np.errstate(all="ignore"):
            return _Atom(NUM, fn(*(convert(v) for v in _args(node, ctx))))

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


_DOUBLE_MIN, _DOUBLE_MAX = 5e-324, 1.7976931348623157e308


def _extreme(reducer: np.ufunc, start: float) -> Callable[[Call, _Ctx], Value]:
    """min()/max(): over the nodes of a single node-set argument, else over the arguments;
    NaN skipped (NaN only when there is no number at all). JavaRosa starts max() at
    Double.MIN_VALUE (the smallest positive double) and min() at Double.MAX_VALUE, so
    max(-5, -3) is 4.9E-324 on the device too."""
    floor = _DOUBLE_MIN if reducer is np.fmax else _DOUBLE_MAX

    def impl(node: Call, ctx: _Ctx) -> Value:
        values = _args(node, ctx)
        if len(values) == 1 and isinstance(values[0], _NodeSet):
            nodes = values[0]
            numbers = _group_numbers(nodes)
            out = np.full(nodes.n, start)
            reducer.at(out, nodes.owner, numbers)
            has = np.bincount(nodes.owner, weights=~np.isnan(numbers), minlength=nodes.n) > 0
        else:
            parts = [_as_num(v) for v in values]
            out = functools.reduce(reducer, parts)
            has = functools.reduce(np.logical_or, [~np.isnan(p) for p in parts])
        with np.errstate(invalid="ignore"):
            return _Atom(NUM, np.where(has, reducer(out, floor), np.nan))

    return impl


def _node_truths(nodes: _NodeSet) -> np.ndarray:
    return nodes.values().truth()


def _fn_checklist(node: Call, ctx: _Ctx) -> Value:
    """checklist(min, max, factors…): whether the number of true factors is within [min, max]
    (-1: no bound); one node-set argument counts its nodes."""
    low, high, *factors = _args(node, ctx)
    if len(factors) == 1 and isinstance(factors[0], _NodeSet):
        nodes = factors[0]
        count: Any = np.bincount(nodes.owner, weights=_node_truths(nodes), minlength=nodes.n)
    else:
        count = sum((np.asarray(_as_bool(f), dtype=float) for f in factors), np.float64(0.0))
    lo, hi = _to_int(_as_num(low)), _to_int(_as_num(high))
    return _Atom(BOOL, ((lo < 0) | (count >= lo)) & ((hi < 0) | (count <= hi)))


def _fn_weighted_checklist(node: Call, ctx: _Ctx) -> Value:
    """weighted-checklist(min, max, value, weight, …): whether the weights of the true values
    add up to within [min, max]; two node-set arguments pair their nodes."""
    low, high, *rest = _args(node, ctx)
    flags, weights = rest[0::2], rest[1::2]
    if len(rest) == 2 and all(isinstance(v, _NodeSet) for v in rest):
        f, w = rest
        assert isinstance(f, _NodeSet) and isinstance(w, _NodeSet)
        if not np.array_equal(f.groups()[1], w.groups()[1]):
            raise _Fail("weighted-checklist(): the two node-sets differ in length")
        added = np.where(_node_truths(f)[f.groups()[3]], _group_numbers(w)[w.groups()[3]], 0.0)
        total: Any = np.bincount(np.sort(f.owner), weights=added, minlength=f.n)
    else:
        total = sum((np.where(_as_bool(a), _as_num(b), 0.0) for a, b in zip(flags, weights,
                                                                          strict=True)),
                    np.float64(0.0))
    with np.errstate(invalid="ignore"):
        return _Atom(BOOL, (total >= _as_num(low)) & (total <= _as_num(high)))


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


def _rng(ctx: _Ctx, function: str) -> np.random.Generator:
    """The caller's generator: draws are reproducible, or an error says what is missing."""
    if ctx.env.rng is None:
        raise _Fail(f"{function}() needs the rng= argument (a numpy Generator)")
    return ctx.env.rng


def _fn_random(node: Call, ctx: _Ctx) -> Value:
    return _Atom(NUM, _rng(ctx, "random").random(ctx.n))


def _fn_uuid(node: Call, ctx: _Ctx) -> Value:
    """uuid(): a random (version 4) UUID; uuid(n): n random letters and digits."""
    n, rng = ctx.n, _rng(ctx, "uuid")
    if node.args:
        length = int(np.max(_to_int(_as_num(_eval(node.args[0], ctx)))))
        digits = np.array(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
        draws = digits[rng.integers(0, 36, size=(n, max(length, 0)))]
        return _Atom(STR, np.array(["".join(row) for row in draws], dtype=object))
    raw = np.frombuffer(rng.bytes(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    text = raw.tobytes().hex()
    out = [f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
           for h in (text[i : i + 32] for i in range(0, 32 * n, 32))]
    return _Atom(STR, np.array(out, dtype=object))


def _fn_once(node: Call, ctx: _Ctx) -> Value:
    """once(x): the field's own value when it has one (a value drawn once is kept), else x."""
    value = _eval(node.args[0], ctx)
    if not isinstance(ctx, _TopCtx) or ctx.env.current is None:
        return value
    own = ctx.current()
    kept = np.logical_not(_is_empty(own))
    return _choose(kept, own, value, ctx.n)


def _fn_today(node: Call, ctx: _Ctx) -> Value:
    today = ctx.env.today or _dt.date.today()
    if isinstance(today, _dt.datetime):
        today = today.date()
    return _Atom(DATE, np.float64((today - _EPOCH.date()).days))


def _fn_now(node: Call, ctx: _Ctx) -> Value:
    now = (ctx.env.now or _dt.datetime.now()).replace(tzinfo=None)  # local wall clock
    return _Atom(DATETIME, np.float64((now - _EPOCH).total_seconds() / 86_400.0))


def _check_range(days: Any) -> None:
    with np.errstate(invalid="ignore"):
        bad = np.isinf(days) | (np.abs(days) > 2**31 - 1)
    if np.any(bad):
        value = np.asarray(days, dtype=float)[np.flatnonzero(np.atleast_1d(bad))[0]] \
            if np.ndim(days) else float(days)
        raise _Fail(f"the value {xpath_text.format_number(float(value))} is out of range for "
                    "a date")


def _text_days(strs: Any) -> Any:
    """Dates of text ('' stays missing); text JavaRosa cannot read as a date is an error."""
    days = _parse_days(strs)
    bad = np.isnan(days) & (strs != "")
    if np.any(bad):
        text = strs[np.flatnonzero(bad)[0]] if _is_array(strs) else strs
        raise _Fail(f"the value {text!r} can't be converted to a date")
    return days


def _date_days(value: Value, keep_time: bool) -> Any:
    """JavaRosa toDate(): days since 1970-01-01 (NaN = no date). A number is days (whole days
    unless ``keep_time``), text is parsed (its time kept), a date loses its time unless
    ``keep_time``; a boolean is an error."""
    v = _unpack(value)
    if isinstance(v, _Node):
        if v.cat == "date":
            return v.days() if keep_time else np.floor(v.days())
        if v.cat == "num":
            kind, data = NUM, v.num()
        elif v.cat == "bool":
            raise _Fail("a boolean can't be converted to a date")
        else:
            return _text_days(v.strs())
    else:
        kind, data = v.kind, v.data
    if kind == BOOL:
        raise _Fail("a boolean can't be converted to a date")
    if kind == STR:
        return _text_days(data)
    if kind == NUM:
        _check_range(data)
        if keep_time:
            with np.errstate(invalid="ignore"):  # JavaRosa keeps whole milliseconds
                return np.trunc(np.asarray(data) * MS_PER_DAY) / MS_PER_DAY
        return np.trunc(data)
    return data if keep_time else np.floor(data)


def _decimal_days(node: Call, ctx: _Ctx) -> Any:
    """The argument as days since 1970 with the time as a fraction (a number is taken as
    such, within JavaRosa's range)."""
    value = _unpack(_eval(node.args[0], ctx))
    if isinstance(value, _Atom) and value.kind == NUM:
        _check_range(value.data)
        return value.data
    return _date_days(value, keep_time=True)


def _fn_decimal_time(node: Call, ctx: _Ctx) -> Value:
    days = _decimal_days(node, ctx)
    return _Atom(NUM, days - np.floor(days))


def _fn_decimal_date_time(node: Call, ctx: _Ctx) -> Value:
    return _Atom(NUM, _decimal_days(node, ctx))


def _fn_format_date(node: Call, ctx: _Ctx) -> Value:
    value, fmt = _args(node, ctx)
    days, pattern = _date_days(value, keep_time=True), _as_str(fmt)
    try:
        if not _is_array(pattern):
            if not _is_array(days):
                return _Atom(STR, format_dates(np.array([days], dtype=float), pattern)[0])
            return _Atom(STR, format_dates(days, pattern))
        return _rowwise(STR, lambda d, p: format_dates(np.array([d], dtype=float), p)[0],
                        np.broadcast_to(days, (ctx.n,)), pattern)
    except DateFormatError as exc:
        raise _Fail(str(exc)) from None


def _fn_position(node: Call, ctx: _Ctx) -> Value:
    return ctx.position(bool(node.args))


def _scalar_text(value: Value, what: str) -> str:
    text = _as_str(value)
    if _is_array(text):
        raise _Fail(f"{what} must be the same for every row (a text in quotes)")
    return str(text)


def _fn_instance(node: Call, ctx: _Ctx) -> Value:
    name = _scalar_text(_eval(node.args[0], ctx), "instance()'s name")
    return _InstanceRoot(name, ctx.env.instance(name))


def _fn_pulldata(node: Call, ctx: _Ctx) -> Value:
    """pulldata('file', 'column', 'key column', value): the column of the first row of the
    attached file whose key column is the value's text, '' when there is none."""
    source, column, key, value = _args(node, ctx)
    table = ctx.env.instance(_scalar_text(source, "pulldata()'s file"))
    column_name = _scalar_text(column, "pulldata()'s column")
    key_name = _scalar_text(key, "pulldata()'s key column")
    if column_name not in table.columns or key_name not in table.columns:
        return _Atom(STR, "")
    keys = table[key_name].astype(str)
    first = ~keys.duplicated()
    lookup = dict(zip(keys[first], table[column_name][first].astype(str), strict=True))
    return _map_strings(STR, lambda s: lookup.get(s, ""), _as_str(value))


def _seeds(value: Value, n: int) -> list[int]:
    """JavaRosa's randomize() seed per row: the value as a number (as a Java long), else — for
    text that is no number — derived from the text's SHA-256."""
    v = _unpack(value)
    text = isinstance(v, _Atom) and v.kind == STR or isinstance(v, _Node) and (
        v.cat == "obj" or bool(v.empty().any()))
    if not text:
        numbers = np.broadcast_to(_as_num(v), (n,))
        if np.isnan(numbers).any():
            raise _Fail("randomize(): the seed is not a number")
        return [xpath_geo.java_long(float(x)) for x in numbers]
    strs = np.broadcast_to(np.asarray(_as_str(v), dtype=object), (n,))
    numbers = np.broadcast_to(_str_to_num(_as_str(v)), (n,))
    return [xpath_geo.seed_from_text(t) if x != x else xpath_geo.java_long(float(x))
            for x, t in zip(numbers, strs, strict=True)]


def _fn_randomize(node: Call, ctx: _Ctx) -> Value:
    """randomize(nodes, seed): the nodes in JavaRosa's seeded order (a fresh order without a
    seed)."""
    nodes = _eval(node.args[0], ctx)
    if isinstance(nodes, _Node):
        raise _Fail("randomize(): the first argument must be a node-set of several nodes")
    if not isinstance(nodes, _NodeSet):
        raise _Fail("randomize(): the first argument must be a node-set")
    _, counts, starts, order = nodes.groups()
    if len(node.args) > 1:
        seeds = _seeds(_eval(node.args[1], ctx), nodes.n)
        orders: dict[tuple[int, int], list[int]] = {}  # rows often share a seed
        perms = []
        for key in zip(counts.tolist(), seeds, strict=True):
            if key not in orders:
                orders[key] = xpath_geo.shuffled_order(*key)
            perms.append(orders[key])
    else:
        rng = _rng(ctx, "randomize")
        perms = [list(rng.permutation(int(k))) for k in counts]
    ordered = nodes.rows[order]
    rows = np.concatenate([ordered[s : s + k][p] for s, k, p in zip(starts, counts, perms,
                                                                   strict=True)]
                          or [np.zeros(0, dtype=ordered.dtype)])
    owner = np.repeat(np.arange(nodes.n), counts)
    return _NodeSet(nodes.repeat, nodes.rframe, rows, owner, nodes.n, nodes.field)


def _geo_strings(value: Value) -> list[list[str]]:
    """Each row's node values of a field argument (a node-set or a single field)."""
    if isinstance(value, _NodeSet):
        return [list(g) for g in _node_strings(value)]
    if isinstance(value, _Node):
        return [[s] for s in value.strs()]
    raise _Fail("the argument must be a field")


def _geo_points(texts: list[str]) -> list[xpath_geo.Point]:
    """One value is a shape or trace (points split by ';'); several are one point each."""
    if len(texts) == 1:
        return xpath_geo.parse_shape(texts[0])
    return [xpath_geo.parse_point(t) for t in texts]


def _geo(fn: Callable[[list[xpath_geo.Point]], float], name: str,
         text_allowed: bool) -> Callable[[Call, _Ctx], Value]:
    """distance()/area(): of one field (or, for distance, text), or of several points."""

    def impl(node: Call, ctx: _Ctx) -> Value:
        values = _args(node, ctx)
        try:
            if len(values) > 1:
                texts = [np.broadcast_to(_as_str(v), (ctx.n,)) for v in values]
                paths = [[xpath_geo.parse_point(t) for t in row] for row in zip(*texts,
                                                                               strict=True)]
            elif isinstance(values[0], _Atom) and values[0].kind == STR and text_allowed:
                strs = np.broadcast_to(values[0].data, (ctx.n,))
                paths = [xpath_geo.parse_shape(s) for s in strs]
            elif isinstance(values[0], _NodeSet | _Node):
                paths = [_geo_points(t) for t in _geo_strings(values[0])]
            else:
                raise _Fail(f"{name}() requires a field as the parameter")
        except xpath_geo.GeoError as exc:
            raise _Fail(f"{name}(): {exc}") from None
        return _Atom(NUM, np.array([fn(p) for p in paths], dtype=float))

    return impl


def _fn_geofence(node: Call, ctx: _Ctx) -> Value:
    point, shape = _args(node, ctx)
    try:
        points = [xpath_geo.parse_point(s) for s in np.broadcast_to(_as_str(point), (ctx.n,))]
        if not isinstance(shape, _NodeSet | _Node):
            raise _Fail("geofence() requires a field as the shape")
        shapes = [_geo_points(t) for t in _geo_strings(shape)]
    except xpath_geo.GeoError as exc:
        raise _Fail(f"geofence(): {exc}") from None
    return _Atom(BOOL, np.array([xpath_geo.geofence(p, s) for p, s in zip(points, shapes,
                                                                       strict=True)]))


_FUNCTION_IMPLS: dict[str, Callable[[Call, _Ctx], Value]] = {
    "if": _fn_if,
    "coalesce": _fn_coalesce,
    "selected": _fn_selected,
    "is-selected": _fn_selected,
    "count-selected": lambda node, ctx: _map_strings(
        NUM, lambda s: float(len(xpath_text.split_selection(s))), _str_arg(node, ctx)),
    "selected-at": lambda node, ctx: _rowwise(
        STR, _selected_at, _str_arg(node, ctx), _to_int(_as_num(_eval(node.args[1], ctx)))),
    "jr:choice-name": _fn_choice_name,
    "string-length": lambda node, ctx: _map_strings(
        NUM, lambda s: float(xpath_text.utf16_len(s)), _str_arg(node, ctx)),
    "normalize-space": lambda node, ctx: _map_strings(
        STR, xpath_text.normalize_space, _str_arg(node, ctx)),
    "regex": _fn_regex,
    "concat": _fn_concat,
    "join": _fn_join,
    "substr": _fn_substr,
    "substring-before": _string_fn(STR, _before),
    "substring-after": _string_fn(STR, _after),
    "translate": _string_fn(STR, _translate),
    "contains": _string_fn(BOOL, lambda a, b: b in a),
    "starts-with": _string_fn(BOOL, lambda a, b: a.startswith(b)),
    "ends-with": _string_fn(BOOL, lambda a, b: a.endswith(b)),
    "boolean-from-string": lambda node, ctx: _map_strings(
        BOOL, lambda s: s.lower() == "true" or s == "1", _str_arg(node, ctx)),
    "digest": _fn_digest,
    "base64-decode": _fn_base64_decode,
    "int": _numeric(np.trunc),  # toward zero: int(-2.7) = -2
    "number": _numeric(lambda x: x),
    "string": lambda node, ctx: _Atom(STR, _str_arg(node, ctx)),
    "round": _round,
    "abs": _numeric(np.abs, as_double=True),
    "pow": _numeric(np.power, as_double=True),
    "sqrt": _numeric(np.sqrt, as_double=True),
    "exp": _numeric(np.exp, as_double=True),
    "exp10": _numeric(lambda x: np.power(10.0, x), as_double=True),
    "log": _numeric(np.log, as_double=True),
    "log10": _numeric(np.log10, as_double=True),
    "sin": _numeric(np.sin, as_double=True),
    "cos": _numeric(np.cos, as_double=True),
    "tan": _numeric(np.tan, as_double=True),
    "asin": _numeric(np.arcsin, as_double=True),
    "acos": _numeric(np.arccos, as_double=True),
    "atan": _numeric(np.arctan, as_double=True),
    "atan2": _numeric(np.arctan2, as_double=True),
    "pi": lambda node, ctx: _Atom(NUM, np.pi),
    "true": lambda node, ctx: _Atom(BOOL, True),
    "false": lambda node, ctx: _Atom(BOOL, False),
    "boolean": lambda node, ctx: _Atom(BOOL, _as_bool(_eval(node.args[0], ctx))),
    "not": lambda node, ctx: _Atom(BOOL, np.logical_not(_as_bool(_eval(node.args[0], ctx)))),
    "checklist": _fn_checklist,
    "weighted-checklist": _fn_weighted_checklist,
    "min": _extreme(np.fmin, np.inf),
    "max": _extreme(np.fmax, -np.inf),
    "sum": _fn_sum,
    "count": _fn_count,
    "count-non-empty": _fn_count_non_empty,
    "indexed-repeat": _fn_indexed_repeat,
    "position": _fn_position,
    "instance": _fn_instance,
    "pulldata": _fn_pulldata,
    "randomize": _fn_randomize,
    "once": _fn_once,
    "random": _fn_random,
    "uuid": _fn_uuid,
    "today": _fn_today,
    "now": _fn_now,
    "date": lambda node, ctx: _Atom(DATE, _date_days(_eval(node.args[0], ctx), False)),
    "date-time": lambda node, ctx: _Atom(DATETIME, _date_days(_eval(node.args[0], ctx), True)),
    "decimal-date-time": _fn_decimal_date_time,
    "decimal-time": _fn_decimal_time,
    "format-date": _fn_format_date,
    "format-date-time": _fn_format_date,
    "distance": _geo(xpath_geo.distance, "distance", text_allowed=True),
    "area": _geo(xpath_geo.area, "area", text_allowed=False),
    "enclosed-area": _geo(xpath_geo.area, "enclosed-area", text_allowed=False),
    "geofence": _fn_geofence,
}
assert set(_FUNCTION_IMPLS) == set(FUNCTIONS)


# --------------------------------------------------------------------------------------------
# Public evaluation API
# --------------------------------------------------------------------------------------------


def _run(expression: str | Node, frame: pd.DataFrame, current: pd.Series | str | None,
         repeats: Mapping[str, RepeatData] | None, position: pd.Series | None,
         relative: pd.DataFrame | None, rng: np.random.Generator | None,
         today: _dt.date | None, now: _dt.datetime | None,
         instances: Mapping[str, pd.DataFrame] | None,
         choice_labels: Mapping[str, Mapping[str, str]] | None) -> tuple[Value, _Env, Node]:
    root = _root(expression)
    env = _Env(root.source, frame, current, repeats, position, relative, rng, today, now,
               instances, choice_labels)
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
    instances: Mapping[str, pd.DataFrame] | None = None,
    choice_labels: Mapping[str, Mapping[str, str]] | None = None,
) -> pd.Series:
    """Evaluate an expression for every row of `frame` at once.

    `frame` has one row per evaluation context (a submission, or a repeat instance with the
    outer fields it needs joined in); `${x}` is `frame[x]`. `repeats` maps repeat names to their
    instances for `count(${roster})`, `sum(${age})`, `${roster}[...]/field`, indexed-repeat().
    `current` is `.` (constraints, once()), `position` the 1-based instance number for
    position(..), `relative` the columns bare names refer to (choice filters over a submissions
    x choices cross join), `rng` drives random()/uuid()/randomize() without a seed (a fresh
    generator when None), `today`/`now` pin the clock. `instances` are the form's secondary
    instances by name (one row per item, e.g. an attached CSV as text) for instance() and
    pulldata(); `choice_labels` maps a select field to {choice name: label} for
    jr:choice-name().

    Returns a Series on frame.index: float64 for numbers, object for strings, bool for
    booleans, datetime64[ns] for dates; a bare `${x}` returns the column's values unchanged.
    """
    value, env, root = _deep(_text(expression), _run, expression, frame, current, repeats,
                             position, relative, rng, today, now, instances, choice_labels)
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
    instances: Mapping[str, pd.DataFrame] | None = None,
    choice_labels: Mapping[str, Mapping[str, str]] | None = None,
) -> pd.Series:
    """XPath boolean() of the result, as a bool Series: what `relevant`, `constraint` and
    `choice_filter` mean (a missing answer makes a comparison false, never NaN)."""
    value, env, root = _deep(_text(expression), _run, expression, frame, current, repeats,
                             position, relative, rng, today, now, instances, choice_labels)
    try:
        truth = np.broadcast_to(_as_bool(value), (env.n,))
    except _Fail as exc:
        raise ExpressionError(str(exc), env.source, root.pos,
                              code="expression-evaluation") from None
    return pd.Series(np.array(truth, dtype=bool), index=env.index)
