"""A readable questionnaire for ethics boards and translators, printed from the form model.

Why this exists: an ethics board approves, and a translator checks, the questionnaire as a
document — not an Excel workbook with XPath in its cells. Writing that document by hand means a
second copy of the instrument that drifts from the one the tablets run. This renders it from the
same :class:`~dhsurvey.forms.model.FormModel` every other tool uses: one self-contained HTML page
per form (inline CSS, UTF-8, one column per interview language) and a PDF printed from it by
headless Chromium. Skip logic and constraints are put into words with the project's own
expression parser (:mod:`dhsurvey.forms.expressions`); anything it cannot put into words is shown
as the expression itself.

Who reads each text (shown on every question and note):

* **Respondent reads it themselves** — the row, or a group it sits in, is a self-completion
  block: its name starts with ``sc_`` or ``self`` (child.xlsx: the group ``self_completion`` and
  the notes ``sc_instructions``/``sc_handback``).  Such a group is printed with a banner.
* **For the interviewer, not read aloud** — a note or question whose label in the form's first
  language starts with ``INTERVIEWER`` (an instruction such as ``sc_handover``, or a question
  the interviewer answers such as ``privacy``), wherever it is; this wins over self-completion.
  So does a question the interviewer records without asking anyone
  (:func:`recorded_by_interviewer`: everything before the first consent gate, the final
  disposition, GPS locations).
* **Interviewer reads aloud** — everything else.

The page opens with a table of contents (one entry per top-level group, and one per run of rows
outside any group, so that nothing is left out of it), linked to the sections; the PDF keeps the
links and has an outline (bookmarks) of the sections. A calculation is shown with its
description and its formula in words, beside the formula as written; a formula that cannot be
put into words is shown as written and marked so.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from dhsurvey.forms.expressions import (
    BinaryOp,
    Call,
    Current,
    ExpressionError,
    Filter,
    Name,
    Negate,
    Node,
    Number,
    Parent,
    Ref,
    Step,
    String,
    parse,
    references,
)
from dhsurvey.forms.model import REF_RE, FormModel, Item, language_code

#: The id of the table of contents (a colon: no field name can spell it).
CONTENTS_ID = "dhsurvey:contents"
#: A group or row whose name matches is completed by the respondent alone.
SELF_COMPLETION_NAME = re.compile(r"^(sc_|self)", re.IGNORECASE)
#: A label (first language) that starts so is an instruction to the interviewer.
INTERVIEWER_LABEL = re.compile(r"^\s*INTERVIEWER\b")

SELF, INSTRUCTION, ALOUD = "respondent", "instruction", "aloud"
READER_WORDS = {
    SELF: "Respondent reads it themselves (self-completion)",
    INSTRUCTION: "For the interviewer — not read aloud",
    ALOUD: "Interviewer reads aloud",
}

TYPE_WORDS = {
    "select_one": "select one",
    "select_multiple": "select all that apply",
    "select_one_from_file": "select one (list from a file)",
    "select_multiple_from_file": "select all that apply (list from a file)",
    "rank": "rank the options",
    "integer": "integer",
    "decimal": "decimal number",
    "text": "text",
    "range": "number on a scale",
    "date": "date",
    "datetime": "date and time",
    "time": "time",
    "geopoint": "GPS location",
    "geotrace": "GPS line",
    "geoshape": "GPS area",
    "image": "photo",
    "audio": "audio recording",
    "video": "video recording",
    "file": "file",
    "barcode": "barcode",
    "acknowledge": "acknowledge (OK)",
    "note": "note",
}

_COMPARE = {"=": "is", "!=": "is not", "<": "<", "<=": "≤", ">": ">", ">=": "≥"}
_ARITHMETIC = {"+": "+", "-": "−", "*": "×", "div": "÷", "mod": "mod"}
_PRECEDENCE = {"or": 0, "and": 1, "=": 2, "!=": 2, "<": 3, "<=": 3, ">": 3, ">=": 3,
               "+": 4, "-": 4, "*": 5, "div": 5, "mod": 5}


class _Unrenderable(Exception):
    """A part of an expression with no wording; the whole expression is shown instead."""


@dataclass(frozen=True)
class Wording:
    """An expression in words, or the expression itself when ``in_words`` is false."""

    text: str
    in_words: bool


def _same(a: Node, b: Node) -> bool:
    """The same field (``.`` or one ``${name}``) or the same function of it, wherever it is
    written."""
    if isinstance(a, Current) and isinstance(b, Current):
        return True
    if isinstance(a, Call) and isinstance(b, Call):  # string-length(.) and string-length(.)
        return (a.name == b.name and len(a.args) == len(b.args)
                and all(_same(x, y) for x, y in zip(a.args, b.args, strict=True)))
    return isinstance(a, Ref) and isinstance(b, Ref) and a.name == b.name


def _alone(node: Node) -> tuple[Node, Node] | None:
    """``selected(x, c) and count-selected(x) > 1`` → (x, c): option c chosen with others."""
    if not (isinstance(node, BinaryOp) and node.op == "and"):
        return None
    sel, count = node.left, node.right
    if (isinstance(sel, Call) and sel.name == "selected" and len(sel.args) == 2
            and isinstance(count, BinaryOp) and count.op == ">"
            and isinstance(count.right, Number) and count.right.value == 1
            and isinstance(count.left, Call) and count.left.name == "count-selected"
            and len(count.left.args) == 1 and _same(count.left.args[0], sel.args[0])):
        return sel.args[0], sel.args[1]
    return None


class _Speaker:
    """Puts one expression into words, with the choice labels of one language."""

    def __init__(self, form: FormModel, language: str, subject: Item | None,
                 options: bool = False) -> None:
        self.form, self.language, self.subject = form, language, subject
        self.options = options  # a choice filter: a bare name is a column of the choices sheet
        self.entry = False  # inside a repeat's [predicate]: a bare name is a field of the entry
        # A calculation whose value the form names as a code of a select's list (by
        # jr:choice-name): its literal results are printed with their labels.
        self.codes_of = _value_select(form, subject) if subject is not None else None

    def item_of(self, node: Node) -> Item | None:
        if isinstance(node, Ref):
            return self.form.by_name.get(node.name)
        return self.subject if isinstance(node, Current) else None

    def code(self, item: Item | None, literal: Node) -> str:
        """A literal compared with a field: with its choice label when the field is a select."""
        value = self.say(literal)
        if item is not None and item.type == "calculate":
            item = _value_select(self.form, item)  # a calculation that holds a code
        if item is not None and isinstance(literal, String | Number):
            choices = self.form.choices_for(item)
            raw = literal.value if isinstance(literal, String) else value
            if choices is not None and str(raw) in choices.codes():
                label = choices.label(str(raw), self.language)
                return f"{raw} ({label})" if label else str(raw)
        return value

    def say(self, node: Node) -> str:
        if isinstance(node, Number):
            return f"{node.value:g}"
        if isinstance(node, String):
            return f"“{node.value}”" if node.value else "empty"
        if isinstance(node, Ref):
            return node.name
        if isinstance(node, Current):
            return "the answer"
        if isinstance(node, Name) and (self.options or self.entry):
            if self.entry:  # inside [ ]: a field of the repeat's entry
                return node.name
            return f"the option's {'code' if node.name == 'name' else node.name}"
        if isinstance(node, Step | Filter):
            return self.nodeset(node)
        if isinstance(node, Negate):
            return f"−{self.wrap(node.operand, 6)}"
        if isinstance(node, BinaryOp):
            return self.binary(node)
        if isinstance(node, Call):
            return self.call(node)
        raise _Unrenderable(type(node).__name__)

    def wrap(self, node: Node, level: int) -> str:
        text = self.say(node)
        if isinstance(node, BinaryOp) and _PRECEDENCE[node.op] < level or (
                isinstance(node, Call) and node.name in _PHRASES):
            return f"({text})"  # "(the whole-number part of x) + 1", not "… of x + 1"
        return text

    def binary(self, node: BinaryOp) -> str:
        level = _PRECEDENCE[node.op]
        if node.op in ("and", "or"):
            bounds = self.range(node)
            if bounds:
                return bounds
            return f"{self.joined(node.left, node.op)} {node.op} {self.joined(node.right, node.op)}"
        if node.op in _COMPARE:
            return self.compare(node)
        terms = _terms(node)
        if len(terms) > 1 and all(isinstance(t, Call) and t.name == "if" and len(t.args) == 3
                                  and _indicator(t.args) for t in terms):
            conditions = "; ".join(self.say(t.args[0]) for t in terms if isinstance(t, Call))
            return f"counts how many of these hold: {conditions}"
        return (f"{self.wrap(node.left, level)} {_ARITHMETIC[node.op]} "
                f"{self.wrap(node.right, level + 1)}")

    def joined(self, node: Node, op: str) -> str:
        """One side of an and/or: an "and" inside an "or" is bracketed, so that it reads
        "(a and b) or c", never "a and b or c"."""
        if op == "or" and isinstance(node, BinaryOp) and node.op == "and":
            return f"({self.say(node)})"
        return self.wrap(node, _PRECEDENCE[op])

    def range(self, node: BinaryOp) -> str:
        """``x >= a and x <= b`` → ``x is from a to b``."""
        left, right = node.left, node.right
        if (node.op == "and" and isinstance(left, BinaryOp) and isinstance(right, BinaryOp)
                and left.op == ">=" and right.op == "<=" and _same(left.left, right.left)):
            return (f"{self.say(left.left)} is from {self.say(left.right)} "
                    f"to {self.say(right.right)}")
        return ""

    def compare(self, node: BinaryOp) -> str:
        left, right = node.left, node.right
        if isinstance(right, String) and right.value == "" and node.op in ("=", "!="):
            return f"{self.say(left)} is {'empty' if node.op == '=' else 'answered'}"
        if (isinstance(left, Call) and left.name == "string-length" and len(left.args) == 1
                and isinstance(right, Number) and right.value == 0
                and node.op in ("=", ">", "!=")):
            return f"{self.say(left.args[0])} is {'empty' if node.op == '=' else 'answered'}"
        item = self.item_of(left)
        if item is not None and isinstance(right, String | Number):
            return f"{self.say(left)} {_COMPARE[node.op]} {self.code(item, right)}"
        level = _PRECEDENCE[node.op] + 1
        return f"{self.side(left, level)} {_COMPARE[node.op]} {self.side(right, level)}"

    def side(self, node: Node, level: int) -> str:
        """A side of a comparison: a phrase that ends in a value of its own ("the roster entry
        whose position is n") is bracketed; "the length of x ≥ 3" needs no brackets."""
        if isinstance(node, Call) and node.name in _PHRASES - _OPEN_ENDED:
            return self.say(node)
        return self.wrap(node, level)

    def nodeset(self, node: Node) -> str:
        """``${roster}[eligible = 1][position() = ${k}]/line`` → ``line of entry number k
        among the roster entries where eligible is 1``. Only a position asked last is worded
        (``[position() = k][eligible = 1]`` means something else)."""
        field = node.name if isinstance(node, Step) else ""
        base = node.base if isinstance(node, Step) else node
        predicates: list[Node] = []
        while isinstance(base, Filter):
            predicates.insert(0, base.predicate)
            base = base.base
        repeat = self.item_of(base)
        if repeat is None or not repeat.is_repeat or not predicates and not field:
            raise _Unrenderable("path")
        position = predicates.pop() if predicates and _is_position(predicates[-1]) else None
        if any(_is_position(p) for p in predicates):
            raise _Unrenderable("position()")
        self.entry = True
        try:
            where = " and ".join(self.say(p) for p in predicates)
            number = self.operand(position.right) if isinstance(position, BinaryOp) else ""
        finally:
            self.entry = False
        text = f"the {self.say(base)} entries" + (f" where {where}" if where else "")
        if number:
            text = f"entry number {number} among {text}"
        return f"{field} of {text}" if field else text

    def call(self, node: Call) -> str:
        handler = _CALLS.get(node.name)
        text = (handler(self, node.args) if handler is not None
                else self._simple(node.args, node.name))
        if text is None:
            raise _Unrenderable(node.name)
        return text

    def operand(self, node: Node) -> str:
        """A term inside a longer phrase: an ``if`` is bracketed, so that what follows its
        ``otherwise`` is not read as part of it."""
        text = self.say(node)
        return f"({text})" if isinstance(node, Call) and node.name == "if" else text

    def _selected(self, args: tuple[Node, ...]) -> str | None:
        if len(args) != 2:
            return None
        return f"{self.say(args[0])} includes {self.code(self.item_of(args[0]), args[1])}"

    def _not(self, args: tuple[Node, ...]) -> str | None:
        if len(args) != 1:
            return None
        inner = args[0]
        alone = _alone(inner)
        if alone:
            return (f"{self.code(self.item_of(alone[0]), alone[1])} is not chosen "
                    f"together with another option")
        if isinstance(inner, Call) and inner.name == "selected" and len(inner.args) == 2:
            return (f"{self.say(inner.args[0])} does not include "
                    f"{self.code(self.item_of(inner.args[0]), inner.args[1])}")
        return f"not ({self.say(inner)})"

    def _if(self, args: tuple[Node, ...]) -> str | None:
        """``if(c, 1, 0)`` → ``1 if c, otherwise 0``; a chain of ifs in the else branch reads
        as ``if a then x, else if b then y, otherwise z``; an if inside a branch is
        bracketed."""
        if len(args) != 3:
            return None
        if _indicator(args) and self.codes_of is None:
            return f"1 if {self.say(args[0])}, otherwise 0"
        parts = []
        node: Node = Call(0, "if", args)
        while isinstance(node, Call) and node.name == "if" and len(node.args) == 3:
            cond, then, node = node.args
            parts.append(f"if {self.say(cond)} then {self.result(then)}")
        return f"{', else '.join(parts)}, otherwise {self.result(node)}"

    def result(self, node: Node) -> str:
        """A branch of an if: a code with its label when the value is a code of a list."""
        if self.codes_of is not None and isinstance(node, String | Number) and (
                not isinstance(node, String) or node.value):
            return self.code(self.codes_of, node)
        return self.operand(node)

    def _coalesce(self, args: tuple[Node, ...]) -> str | None:
        flat: list[Node] = []
        for arg in args:  # coalesce(a, coalesce(b, c)) is one choice among a, b, c
            nested = isinstance(arg, Call) and arg.name == "coalesce"
            flat.extend(arg.args if isinstance(arg, Call) and nested else (arg,))
        return f"the first of {', '.join(self.operand(a) for a in flat)} that is answered"

    def _count(self, args: tuple[Node, ...]) -> str | None:
        if len(args) != 1:
            return None
        item = self.item_of(args[0])
        if item is not None and item.is_repeat:
            return f"the number of {self.say(args[0])} entries"
        return f"the number of {self.say(args[0])}"

    def _sum(self, args: tuple[Node, ...]) -> str | None:
        item = self.item_of(args[0]) if len(args) == 1 else None
        if item is None or item.repeat is None:
            return None
        return f"the sum of {self.say(args[0])} over all {item.repeat} entries"

    def _position(self, args: tuple[Node, ...]) -> str | None:
        if args and not isinstance(args[0], Parent):
            return None
        where = f" of {self.subject.repeat}" if self.subject and self.subject.repeat else ""
        return f"the position of this entry{where.replace(' of', ' in')} (1 for the first)"

    def _indexed(self, args: tuple[Node, ...]) -> str | None:
        repeat = self.item_of(args[1]) if len(args) == 3 else None
        if repeat is None or not repeat.is_repeat:
            return None
        return (f"{self.say(args[0])} of the {self.say(args[1])} entry whose position is "
                f"{self.operand(args[2])}")

    def _choice_name(self, args: tuple[Node, ...]) -> str | None:
        """``jr:choice-name(${x}, '${x}')``: the label of x's chosen option."""
        if len(args) != 2 or not isinstance(args[1], String):
            return None
        field = re.fullmatch(r"\s*\$\{([^}]+)\}\s*", args[1].value)
        if field is None:
            return None
        if isinstance(args[0], Ref) and args[0].name == field.group(1):
            return f"the label of the option chosen in {field.group(1)}"
        return f"the label of option {self.operand(args[0])} of {field.group(1)}"

    def _simple(self, args: tuple[Node, ...], name: str) -> str | None:
        """Calls whose wording is a fixed phrase around their one argument (or none)."""
        phrases = {"count-selected": "the number of options chosen in {}",
                   "string-length": "the length of {}",
                   "int": "the whole-number part of {}",
                   "once": "{}, set once and then kept",
                   "round": "{} rounded"}
        if name in ("true", "false", "today", "now") and not args:
            return name
        if name == "random" and not args:
            return "a random number between 0 and 1"
        if name in phrases and len(args) == 1:
            arg = args[0]
            inner = self.wrap(arg, 6) if isinstance(arg, BinaryOp) else self.operand(arg)
            return phrases[name].format(inner)
        return None


#: Functions worded as a phrase: bracketed where they are a term of arithmetic.
_PHRASES = frozenset({"if", "coalesce", "count", "sum", "position", "indexed-repeat",
                      "jr:choice-name",
                      "count-selected", "string-length", "int", "once", "round", "random"})
#: Phrases that end in an operand of their own, which a comparison after them could be read
#: as part of: bracketed on a side of a comparison too.
_OPEN_ENDED = frozenset({"if", "coalesce", "indexed-repeat", "once"})
#: Functions with their own wording (the rest: :meth:`_Speaker._simple`, else verbatim).
_CALLS: dict[str, Callable[[_Speaker, tuple[Node, ...]], str | None]] = {
    "selected": _Speaker._selected, "not": _Speaker._not, "if": _Speaker._if,
    "coalesce": _Speaker._coalesce, "count": _Speaker._count, "sum": _Speaker._sum,
    "position": _Speaker._position, "indexed-repeat": _Speaker._indexed,
    "jr:choice-name": _Speaker._choice_name,
}


_CHOICE_NAME = re.compile(r"jr:choice-name\(\s*\$\{([^}]+)\}\s*,\s*(['\"])\$\{([^}]+)\}\2\s*\)")


def _value_select(form: FormModel, item: Item) -> Item | None:
    """The select whose codes a calculation holds, so that its values can be printed with
    their labels: the one the form names by ``jr:choice-name(${item}, '${select}')``, else
    the select(s) of one list its value is taken from (``coalesce(${v3}, ${v2}, ${v1})``)."""
    if item.type != "calculate":
        return None
    key = (str(form.path), form.content_hash)
    if key not in _CODED:
        if len(_CODED) > 16:
            _CODED.clear()
        _CODED[key] = _coded_by(form)
    name = _CODED[key].get(item.name)
    return form.by_name.get(name) if name else None


#: (workbook, content hash) → calculation → the select whose codes it holds (by name).
_CODED: dict[tuple[str, str], dict[str, str]] = {}


def _coded_by(form: FormModel) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in form.items:
        for text in item.expressions().values():
            for value, _, select in _CHOICE_NAME.findall(text):
                target = form.by_name.get(select)
                if target is not None and form.choices_for(target) is not None:
                    out.setdefault(value, select)
    for item in form.items:
        if item.type == "calculate" and item.name not in out and item.calculation:
            sources = _copied_from(item.calculation)
            selects = [form.by_name.get(n) for n in sources]
            lists = {s.list_name for s in selects if s is not None and s.type == "select_one"}
            if sources and len(lists) == 1 and all(s is not None and s.type == "select_one"
                                                   for s in selects):
                out[item.name] = sources[0]
    return out


def _copied_from(expression: str) -> list[str]:
    """The fields an expression's value is copied from, when it is only a choice among fields
    (``coalesce`` of references); empty otherwise."""
    try:
        node = parse(expression)
    except ExpressionError:
        return []
    names: list[str] = []
    stack = [node]
    while stack:
        node = stack.pop()
        if isinstance(node, Ref):
            names.append(node.name)
        elif isinstance(node, Call) and node.name == "coalesce":
            stack.extend(reversed(node.args))
        else:
            return []
    return names


def _is_position(node: Node) -> bool:
    """``position() = n``."""
    return (isinstance(node, BinaryOp) and node.op == "=" and isinstance(node.left, Call)
            and node.left.name == "position" and not node.left.args)


def _indicator(args: tuple[Node, ...]) -> bool:
    """``if(c, 1, 0)``: 1 when c holds."""
    then, other = args[1], args[2]
    return (isinstance(then, Number) and then.value == 1
            and isinstance(other, Number) and other.value == 0)


def _terms(node: Node) -> list[Node]:
    """``a + b + c`` → [a, b, c]."""
    if isinstance(node, BinaryOp) and node.op == "+":
        return [*_terms(node.left), *_terms(node.right)]
    return [node]


def in_words(expression: str, form: FormModel, subject: Item | None = None, *,
             choice_filter: bool = False) -> Wording:
    """An XLSForm expression in words, with the first language's choice labels, e.g.
    ``${age} >= 12 and ${consent} = 1`` → ``age ≥ 12 and consent is 1 (Yes)``. ``subject`` is
    the row that ``.`` stands for; in a ``choice_filter`` a bare name is a column of the
    choices sheet (``country = ${country}`` → ``the option's country is country``). Anything
    without wording gives the expression itself."""
    language = form.languages[0] if form.languages else ""
    try:
        speaker = _Speaker(form, language, subject, choice_filter)
        return Wording(speaker.say(parse(expression)), True)
    except (_Unrenderable, ExpressionError):
        return Wording(expression, False)


def reader(form: FormModel, item: Item, recorded: frozenset[str] | None = None) -> str:
    """Who reads ``item``'s text: :data:`SELF`, :data:`INSTRUCTION` or :data:`ALOUD` (the rule
    is in the module docstring). ``recorded`` is :func:`recorded_by_interviewer` of the form,
    for a caller asking about every row."""
    first = form.languages[0] if form.languages else ""
    if INTERVIEWER_LABEL.match(item.labels.get(first, "")):
        return INSTRUCTION
    if item.name in (recorded_by_interviewer(form) if recorded is None else recorded):
        return INSTRUCTION
    if any(SELF_COMPLETION_NAME.match(name) for name in item.xml_path):
        return SELF
    return ALOUD


#: Questions whose answer the interviewer takes from the device or the place, not a person.
RECORDED_TYPES = frozenset({"geopoint", "geotrace", "geoshape", "barcode"})


def recorded_by_interviewer(form: FormModel) -> frozenset[str]:
    """The questions the interviewer answers without asking anyone, read from the form itself:

    * every question before the first consent gate: nobody has agreed to an interview yet, so
      nobody is asked (identification, visits);
    * the final disposition, and GPS locations and barcodes;
    * a text follow-up, in the same group, asked only on such answers (“describe the other
      result”). A consent gate is never one: whatever decides whether it is asked, the
      respondent answers it.
    """
    gates = [form[name].row for name in form.consent_gates if name in form]
    first_gate = min(gates) if gates else None
    out: set[str] = set()
    for item in form.items:
        if not item.is_input:
            continue
        if (first_gate is not None and item.row < first_gate
                or item.name == form.disposition_field or item.type in RECORDED_TYPES):
            out.add(item.name)
        elif (item.type == "text" and item.name not in form.consent_gates and item.relevant
              and _follows(form, item, out)):
            out.add(item.name)
    return frozenset(out)


def _follows(form: FormModel, item: Item, recorded: set[str]) -> bool:
    """Whether ``item`` is asked only on answers in ``recorded`` of its own group."""
    try:
        names = references(item.relevant)
    except ExpressionError:
        return False
    return bool(names) and all(name in recorded and name in form
                               and form[name].path == item.path for name in names)


# -- HTML ----------------------------------------------------------------------------------------

CSS = """
@page { size: A4; margin: 14mm 12mm; }
* { box-sizing: border-box; }
body { font-family: "DejaVu Sans", "Noto Sans", "Noto Sans Ethiopic", "Noto Sans Khmer",
       "Noto Sans Thai", Arial, sans-serif; font-size: 10.5pt;
       line-height: 1.35; color: #111; max-width: 1400px; margin: 0 auto; padding: 12px; }
h1 { font-size: 18pt; margin: 0 0 4px; }
.meta { color: #444; margin: 0 0 10px; }
.legend { border: 1px solid #bbb; padding: 6px 10px; margin-bottom: 12px; font-size: 9.5pt; }
section { margin: 12px 0 6px; }
.sec-title { font-size: 12.5pt; margin: 6px 0 2px; padding: 3px 6px; background: #e8eef5;
             break-after: avoid; }
section section > .sec-title { font-size: 11.5pt; background: #f2f2f2; }
nav.contents { border: 1px solid #bbb; padding: 6px 10px; margin-bottom: 12px; }
nav.contents h2 { font-size: 12.5pt; margin: 0 0 4px; }
nav.contents ol { margin: 0; padding-left: 1.6em; }
nav.contents li { margin: 1px 0; }
nav.contents .outside { color: #444; font-style: italic; }
a { color: #0b4f8a; text-decoration: none; }
nav.contents .line { display: flex; justify-content: space-between; gap: 1em; }
nav.contents .page { min-width: 3em; text-align: right; flex: none; }
.formula { margin-top: 2px; color: #555; }
.verbatim { color: #a00; font-style: italic; }
.sec-note { margin: 2px 6px 4px; font-size: 9.5pt; color: #333; break-after: avoid; }
section.self { border-left: 6px solid #b35900; padding-left: 8px; }
.self-banner { background: #ffe7cc; border: 1px solid #b35900; padding: 4px 8px;
               font-weight: bold; margin: 4px 0; break-after: avoid; }
table { border-collapse: collapse; width: 100%; table-layout: fixed; }
th, td { border: 1px solid #ccc; padding: 4px 6px; vertical-align: top; text-align: left;
         overflow-wrap: anywhere; }
th { background: #fafafa; font-size: 9.5pt; }
thead { display: table-header-group; }
tr { break-inside: avoid; page-break-inside: avoid; }
td.q { width: 30%; font-size: 9.5pt; }
.num { font-weight: bold; }
.var { font-family: "DejaVu Sans Mono", monospace; font-weight: bold; }
.type { color: #444; }
.req { color: #a00; font-weight: bold; }
.who { display: inline-block; margin-top: 2px; padding: 0 4px; border-radius: 3px;
       font-size: 8.5pt; background: #eef; }
.who.respondent { background: #ffe7cc; }
.who.instruction { background: #eee; font-style: italic; }
.logic { margin-top: 3px; }
.logic code, .calc code { font-size: 8.5pt; background: #f4f4f4; }
.hint { color: #555; font-style: italic; margin-top: 2px; }
.draft { color: #a05a00; font-weight: normal; font-size: 8.5pt; }
.label { font-weight: 600; }
tr.note .label { font-weight: normal; }
ol.options { margin: 3px 0 0; padding: 0; list-style: none; }
ol.options li .code { display: inline-block; min-width: 2.2em; font-weight: bold; }
tr.calc td { font-size: 8.5pt; color: #444; background: #fcfcfc; }
@media print { body { max-width: none; padding: 0; font-size: 9pt; } td.q { width: 27%; } }
"""


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _words(wording: Wording) -> str:
    return _e(wording.text) if wording.in_words else f"<code>{_e(wording.text)}</code>"


class _Page:
    """Builds the HTML of one form."""

    def __init__(self, form: FormModel, page_numbers: dict[str, int] | None = None,
                 languages: Sequence[str] | None = None, country: str | None = None) -> None:
        self.form = form
        self.country = country  # its code: the rows of attached lists printed
        self.page_numbers = page_numbers  # anchor → PDF page; None: for the screen
        self.languages = list(languages or form.languages) or [""]
        self.drafts = set(form.draft_languages)
        self.number = 0
        self.recorded = recorded_by_interviewer(form)

    def header_row(self) -> str:
        cells = "".join(f'<th lang="{_e(language_code(lang))}">{_e(lang)}'
                        + ('<br><span class="draft">draft translation, for professional '
                           'review</span>' if lang in self.drafts else "") + "</th>"
                        for lang in self.languages)
        return f'<thead><tr><th class="q">Question</th>{cells}</tr></thead>'

    def render(self) -> str:
        form = self.form
        first = language_code(self.languages[0])
        body = "\n".join(self.body())
        auto = [i.name for i in form.items if not i.is_group and i.type not in TYPE_WORDS
                and i.type != "calculate" and i.type not in ("hidden",)]
        auto_line = (f'<p class="meta">Recorded automatically by the tablet: '
                     f'{_e(", ".join(auto))}.</p>' if auto else "")
        legend = "".join(f'<span class="who {k}">{_e(v)}</span> ' for k, v in
                         READER_WORDS.items())
        return (
            f'<!DOCTYPE html>\n<html lang="{_e(first)}">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{_e(form.title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            f"<h1>{_e(form.title)}</h1>\n"
            f'<p class="meta">Form id <b class="var">{_e(form.form_id)}</b> · version '
            f'<b>{_e(form.version)}</b> · languages: {_e(", ".join(self.languages))}'
            f"{self.drafts_line()}</p>\n"
            f'<div class="legend">Who reads each text: {legend}<br>'
            f'<span class="req">*</span> required · “Asked if” gives when a question is '
            f"shown; “Accepted if” what an answer must satisfy. Codes are the values stored "
            f"in the data.</div>\n{self.contents()}\n{auto_line}\n{body}\n</body>\n</html>\n"
        )

    def drafts_line(self) -> str:
        drafts = [lang for lang in self.languages if lang in self.drafts]
        if not drafts:
            return ""
        return (f' · <span class="draft">draft translation{"s" if len(drafts) > 1 else ""}, '
                f'for professional review: {_e(", ".join(drafts))}</span>')

    def printed(self, item: Item) -> bool:
        """Whether ``item`` has a row or section of its own (metadata is listed at the top)."""
        return item.is_group or item.type in TYPE_WORDS or item.type == "calculate"

    def title(self, group: Item) -> str:
        """A group's labels in every language, as HTML (its name when it has none)."""
        titles = " / ".join(_e(group.labels.get(lang, "")) for lang in self.languages
                            if group.labels.get(lang))
        return titles or _e(group.name)

    def contents(self) -> str:
        """The table of contents: each top-level group with the groups inside it (nested as
        in the form), and each run of rows outside any group, linked to where they are
        printed; where self-completion starts is marked."""
        entries: list[str] = []
        loose: list[Item] = []
        inner: dict[str, list[Item]] = {}
        for item in self.form.items:
            if item.is_group and item.path:
                inner.setdefault(item.path[-1], []).append(item)

        def flush() -> None:
            if loose:
                text = self.line(f"q-{loose[0].name}", f"Outside any section: {_e(_run(loose))}")
                entries.append(f'<li class="outside">{text}</li>')
                loose.clear()

        for item in self.form.items:
            if item.path or not self.printed(item):
                continue
            if not item.is_group:
                loose.append(item)
                continue
            flush()
            entries.append(self.entry(item, inner, outer_self=False))
        flush()
        return (f'<nav class="contents" id="{CONTENTS_ID}"><h2>Contents</h2><ol>'
                f'{"".join(entries)}</ol></nav>')

    def entry(self, group: Item, inner: dict[str, list[Item]], outer_self: bool) -> str:
        """A group's contents entry, with the groups inside it as a nested list."""
        own_self = reader(self.form, group, self.recorded) == SELF
        mark = (' <span class="who respondent">self-completion</span>'
                if own_self and not outer_self else "")
        line = self.line(group.name, f'{self.title(group)} <span class="var">'
                                     f"[{_e(group.name)}]</span>", mark)
        subs = "".join(self.entry(g, inner, own_self) for g in inner.get(group.name, []))
        return f"<li>{line}{f'<ol>{subs}</ol>' if subs else ''}</li>"

    def line(self, anchor: str, text: str, after: str = "") -> str:
        """One line of the contents, linked to ``anchor``; for print, with its page number
        (a box of the same width while the page is not known yet, so that the pages of the
        first printing are those of the second)."""
        link = f'<a href="#{_e(anchor)}">{text}</a>{after}'
        if self.page_numbers is None:
            return link
        page = self.page_numbers.get(anchor)
        return (f'<div class="line"><span>{link}</span>'
                f'<span class="page">{page if page is not None else ""}</span></div>')

    def body(self) -> Iterator[str]:
        open_path: list[str] = []
        in_table = False
        for item in self.form.items:
            if not self.printed(item):
                continue  # metadata: listed once at the top
            while tuple(open_path) != item.path[:len(open_path)] or len(open_path) > len(
                    item.path):
                if in_table:
                    yield "</tbody></table>"
                    in_table = False
                yield "</section>"
                open_path.pop()
            if item.is_group:
                if in_table:
                    yield "</tbody></table>"
                    in_table = False
                yield self.section(item)
                open_path.append(item.name)
                continue
            if not in_table:
                yield f"<table>{self.header_row()}<tbody>"
                in_table = True
            yield self.row(item)
        if in_table:
            yield "</tbody></table>"
        yield "</section>" * len(open_path)

    def section(self, group: Item) -> str:
        self_completed = reader(self.form, group, self.recorded) == SELF
        level = min(2 + len(group.path), 6)  # the PDF's outline nests sections by heading level
        parts = [f'<section class="{"self" if self_completed else "group"}" '
                 f'id="{_e(group.name)}">',
                 f'<h{level} class="sec-title">{self.title(group)} '
                 f'<span class="var">[{_e(group.name)}]</span></h{level}>']
        outer_self = any(reader(self.form, self.form[name], self.recorded) == SELF
                         for name in group.path)
        if self_completed and not outer_self:  # once, where self-completion starts
            parts.append('<div class="self-banner">SELF-COMPLETION: the respondent reads and '
                         "answers this section alone; the interviewer does not see the "
                         "screen.</div>")
        if group.is_repeat:
            count = (f" — {_words(in_words(group.repeat_count, self.form))} times"
                     if group.repeat_count else ", as many as the interviewer adds")
            label = group.labels.get(self.languages[0], "") or group.name
            parts.append(f'<p class="sec-note">Repeated for each {_e(label.lower())}{count}.'
                         "</p>")
        if group.relevant:
            parts.append(f'<p class="sec-note">Asked if '
                         f"{_words(in_words(group.relevant, self.form))}.</p>")
        return "".join(parts)

    def row(self, item: Item) -> str:
        span = len(self.languages) + 1
        if item.type == "calculate":
            return f'<tr class="calc" id="q-{_e(item.name)}"><td colspan="{span}">' \
                   f"{self.calculation(item)}</td></tr>"
        return (f'<tr class="{"note" if item.type == "note" else "question"}" '
                f'id="q-{_e(item.name)}">{self.meta_cell(item)}'
                + "".join(self.text_cell(item, lang) for lang in self.languages) + "</tr>")

    def calculation(self, item: Item) -> str:
        """A calculation: its description (first language), its formula in words and the
        formula as written; a formula without wording is shown as written, marked so."""
        expr = item.calculation or item.default
        described = item.labels.get(self.languages[0], "")
        head = f'<span class="var">{_e(item.name)}</span> calculated'
        if described:
            head += f" — {_e(described)}"
        wording = in_words(expr, self.form, item)
        if wording.in_words:
            text = (f"{head}: {_e(wording.text)}"
                    f'<div class="formula">Formula: <code>{_e(expr)}</code></div>')
        else:
            text = (f"{head}: <code>{_e(expr)}</code> <span class=\"verbatim\">(formula as "
                    f"written: not put into words)</span>")
        if item.relevant:
            text += (f'<div class="formula">Only when '
                     f"{_words(in_words(item.relevant, self.form, item))}.</div>")
        return text

    def meta_cell(self, item: Item) -> str:
        parts = []
        if item.type != "note":
            self.number += 1
            parts.append(f'<span class="num">{self.number}.</span> ')
        parts.append(f'<span class="var">{_e(item.name)}</span>')
        if item.required == "yes":
            parts.append(' <span class="req" title="required">*</span>')
        kind = TYPE_WORDS.get(item.type, item.type)
        if item.list_name and item.type != "note":
            kind += f" ({_e(item.list_name)})"
        parts.append(f'<br><span class="type">{_e(kind)}</span>')
        who = reader(self.form, item, self.recorded)
        parts.append(f'<br><span class="who {who}">{_e(READER_WORDS[who])}</span>')
        logic = (("Required if", item.required if item.required not in ("", "yes") else ""),
                 ("Asked if", item.relevant), ("Accepted if", item.constraint),
                 ("Options shown if", item.choice_filter))
        for words, expression in logic:
            if expression:
                wording = in_words(expression, self.form, item,
                                   choice_filter=words.startswith("Options"))
                parts.append(f'<div class="logic">{words} {_words(wording)}.</div>')
        parts.extend(f'<div class="logic">{text}</div>' for text in self.answer_notes(item))
        return f'<td class="q">{"".join(parts)}</td>'

    def answer_notes(self, item: Item) -> Iterator[str]:
        """What the device does with the answer beyond asking: a value it is pre-filled with,
        a value that cannot be changed, the text field of an "or other" select (HTML)."""
        if item.default:
            if item.dynamic_default:
                value = _words(in_words(item.default, self.form, item))
            else:
                literal = String(0, item.default.strip())
                value = _e(_Speaker(self.form, self.languages[0], item).code(item, literal))
            yield f"Pre-filled with {value}."
        if "true()" in (item.bind("read_only"), item.bind("readonly")):
            yield "Shown but cannot be changed."
        if item.or_other:
            yield (f'If “Other”: written in <span class="var">{_e(item.xml_name)}_other'
                   "</span>.")

    def text_cell(self, item: Item, lang: str) -> str:
        parts = [f'<div class="label">{_e(item.labels.get(lang, ""))}</div>']
        if item.hints.get(lang):
            parts.append(f'<div class="hint">{_e(item.hints[lang])}</div>')
        if item.constraint_messages.get(lang):
            parts.append(f'<div class="hint">If not accepted: '
                         f"{_e(item.constraint_messages[lang])}</div>")
        choices = self.form.choices_for(item)
        attached = item.list_name in self.form.attached_lists
        if choices is not None and attached and self.country is None:
            parts.append(f'<div class="hint">{_e(_option_source(item))} (per country: print '
                         "with --country to list one country's)</div>")
        elif choices is not None:
            rows = [(c.name, c.labels.get(lang) or c.labels.get(self.form.default_language, ""))
                    for c in choices.choices
                    if not attached or self.country in (c.extra.get("country"), c.name)]
            if item.or_other and "other" not in choices.codes():
                rows.append(("other", "Other"))  # pyxform adds it, labelled so in every language
            options = "".join(f'<li><span class="code">{_e(code)}</span> {_e(label)}</li>'
                              for code, label in rows)
            parts.append(f'<ol class="options">{options}</ol>')
        elif item.is_select:
            parts.append(f'<div class="hint">{_e(_option_source(item))}</div>')
        return f'<td lang="{_e(language_code(lang))}">{"".join(parts)}</td>'


def _option_source(item: Item) -> str:
    """Where the options of a select without a list on the choices sheet come from."""
    source = item.list_name or ""
    if REF_RE.fullmatch(source):
        return f"Options: the entries of {source[2:-1]} given earlier."
    if item.type == "select_one_external":
        return f"Options from the external_choices sheet (list {source})."
    return f"Options from the file {source}." if source else "Options from a file."


def _run(items: list[Item]) -> str:
    """Rows outside any section, for the contents: the questions and notes by name (the first
    four), then how many calculations."""
    shown = [i.name for i in items if i.type != "calculate"]
    calculations = len(items) - len(shown)
    text = ", ".join(shown[:4]) + (f" and {len(shown) - 4} more" if len(shown) > 4 else "")
    if calculations:
        plural = "s" if calculations > 1 else ""
        text += f"{' (and ' if shown else ''}{calculations} calculation{plural}" \
                f"{')' if shown else ''}"
    return text


def questionnaire_html(form: FormModel, page_numbers: dict[str, int] | None = None,
                       languages: Sequence[str] | None = None,
                       country: str | None = None) -> str:
    """The questionnaire of one form as a self-contained HTML page. ``page_numbers`` (anchor →
    page of the PDF) gives the contents a page column, for print; ``{}`` reserves it.
    ``languages`` are the columns printed (default: every language of the workbook);
    ``country`` (its code) lists that country's rows of the attached files (regions,
    schools), which are otherwise only named."""
    return _Page(form, page_numbers, languages, country).render()


# -- PDF -----------------------------------------------------------------------------------------

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """``$DHSURVEY_CHROMIUM``, else the first Chromium on the PATH, else Debian's."""
    override = os.environ.get("DHSURVEY_CHROMIUM")
    if override:
        return override if Path(override).exists() else shutil.which(override)
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


@dataclass(frozen=True)
class Printed:
    """What :func:`print_form` wrote; ``note`` says why there is no PDF when there is none."""

    form_id: str
    html: Path
    pdf: Path | None
    note: str = ""


def html_to_pdf(html_path: Path, pdf_path: Path, chromium: str, *,
                timeout: float = 120) -> str:
    """Print an HTML file to PDF with headless Chromium; '' on success, else why not."""
    with tempfile.TemporaryDirectory(prefix="dhsurvey-chromium-") as profile:
        cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
               "--generate-pdf-document-outline",  # bookmarks from the section headings
               f"--user-data-dir={profile}", f"--print-to-pdf={pdf_path}",
               html_path.resolve().as_uri()]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"Chromium could not print the PDF ({exc})"
    if done.returncode != 0 or not pdf_path.exists() or pdf_path.stat().st_size == 0:
        tail = (done.stderr or "").strip().splitlines()[-1:] or [""]
        return f"Chromium could not print the PDF (exit {done.returncode}) {tail[0]}".strip()
    return ""


def print_form(form: FormModel, out: str | Path, *, pdf: bool = True,
               languages: Sequence[str] | None = None, suffix: str = "",
               country: str | None = None) -> Printed:
    """Write ``<form_id><suffix>.html`` and, when Chromium is found, its PDF into ``out``,
    with ``languages`` side by side (default: all of the workbook's)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    html_path = out / f"{form.form_id}{suffix}.html"
    html_path.write_text(questionnaire_html(form, None, languages, country), encoding="utf-8")
    if not pdf:
        return Printed(form.form_id, html_path, None, "PDF not requested")
    chromium = find_chromium()
    if chromium is None:
        return Printed(form.form_id, html_path, None,
                       "the PDF needs Chromium (install chromium, or set DHSURVEY_CHROMIUM); "
                       "open the HTML in a browser and print it instead")
    pdf_path = html_path.with_suffix(".pdf")
    pdf_path.unlink(missing_ok=True)
    # Printed twice: the first printing says on which page each section starts (the PDF's
    # named destinations), the second prints those pages in the contents.
    with tempfile.TemporaryDirectory(prefix="dhsurvey-print-") as tmp:
        draft = Path(tmp) / html_path.name
        draft.write_text(questionnaire_html(form, {}, languages, country), encoding="utf-8")
        problem = html_to_pdf(draft, pdf_path, chromium)
        pages = {} if problem else pdf_destinations(pdf_path.read_bytes())
        if pages:
            draft.write_text(questionnaire_html(form, pages, languages, country), encoding="utf-8")
            pdf_path.unlink()
            problem = html_to_pdf(draft, pdf_path, chromium)
    return Printed(form.form_id, html_path, None if problem else pdf_path, problem)


def _pdf_object(data: bytes, number: int) -> bytes:
    """The dictionary of object ``number`` of a PDF whose objects are written out (not in
    object streams), as Chromium writes them; b'' when there is none."""
    found = re.search(rb"(?<![0-9])%d 0 obj(.*?)(?:endobj|stream)" % number, data, re.DOTALL)
    return found.group(1) if found else b""


def _pdf_ref(dictionary: bytes, key: bytes) -> int | None:
    found = re.search(rb"/" + key + rb"\s+(\d+)\s+0\s+R", dictionary)
    return int(found.group(1)) if found else None


def _pdf_pages(data: bytes, number: int, depth: int = 0) -> list[int]:
    """The page objects under page-tree node ``number``, in order."""
    node = _pdf_object(data, number)
    if depth > 32 or not re.search(rb"/Type\s*/Pages\b", node):
        return [number]
    kids = re.search(rb"/Kids\s*\[(.*?)\]", node, re.DOTALL)
    refs = re.findall(rb"(\d+)\s+0\s+R", kids.group(1)) if kids else []
    return [page for ref in refs for page in _pdf_pages(data, int(ref), depth + 1)]


def pdf_destinations(data: bytes) -> dict[str, int]:
    """Each named destination of a PDF Chromium printed (an element id the page links to) →
    its page, 1-based; empty when the PDF has none this reader understands."""
    found = re.search(rb"/Type\s*/Catalog\b", data)
    if found is None:
        return {}
    start = data.rfind(b" 0 obj", 0, found.start())
    catalog_text = data[max(start, 0):data.find(b"endobj", found.end())]
    root, dests = _pdf_ref(catalog_text, b"Pages"), _pdf_ref(catalog_text, b"Dests")
    if root is None or dests is None:
        return {}
    index = {page: n for n, page in enumerate(_pdf_pages(data, root), start=1)}
    out: dict[str, int] = {}
    for name, page in re.findall(rb"/([^\s/\[\]<>()]+)\s*\[\s*(\d+)\s+0\s+R",
                                 _pdf_object(data, dests)):
        decoded = re.sub(rb"#([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), name)
        if int(page) in index:
            out[decoded.decode("utf-8", "replace")] = index[int(page)]
    return out
