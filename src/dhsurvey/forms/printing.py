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
* **Interviewer reads aloud** — everything else.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dhsurvey.forms.expressions import (
    BinaryOp,
    Call,
    Current,
    ExpressionError,
    Negate,
    Node,
    Number,
    Ref,
    String,
    parse,
)
from dhsurvey.forms.model import FormModel, Item

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


def language_code(language: str) -> str:
    """``'Kiswahili (sw)'`` → ``'sw'`` (the HTML ``lang``); a bare code is kept."""
    match = re.search(r"\(([A-Za-z]{2,3}(?:-[A-Za-z0-9]+)*)\)\s*$", language)
    return match.group(1) if match else language.strip()


def _same(a: Node, b: Node) -> bool:
    """The same field (``.`` or one ``${name}``), wherever it is written."""
    if isinstance(a, Current) and isinstance(b, Current):
        return True
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

    def __init__(self, form: FormModel, language: str, subject: Item | None) -> None:
        self.form, self.language, self.subject = form, language, subject

    def item_of(self, node: Node) -> Item | None:
        if isinstance(node, Ref):
            return self.form.by_name.get(node.name)
        return self.subject if isinstance(node, Current) else None

    def code(self, item: Item | None, literal: Node) -> str:
        """A literal compared with a field: with its choice label when the field is a select."""
        value = self.say(literal)
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
            return f"“{node.value}”"
        if isinstance(node, Ref):
            return node.name
        if isinstance(node, Current):
            return "the answer"
        if isinstance(node, Negate):
            return f"−{self.wrap(node.operand, 6)}"
        if isinstance(node, BinaryOp):
            return self.binary(node)
        if isinstance(node, Call):
            return self.call(node)
        raise _Unrenderable(type(node).__name__)

    def wrap(self, node: Node, level: int) -> str:
        text = self.say(node)
        if isinstance(node, BinaryOp) and _PRECEDENCE[node.op] < level:
            return f"({text})"
        return text

    def binary(self, node: BinaryOp) -> str:
        level = _PRECEDENCE[node.op]
        if node.op in ("and", "or"):
            bounds = self.range(node)
            if bounds:
                return bounds
            return f"{self.wrap(node.left, level)} {node.op} {self.wrap(node.right, level)}"
        if node.op in _COMPARE:
            return self.compare(node)
        return (f"{self.wrap(node.left, level)} {_ARITHMETIC[node.op]} "
                f"{self.wrap(node.right, level + 1)}")

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
        item = self.item_of(left)
        if item is not None and isinstance(right, String | Number):
            return f"{self.say(left)} {_COMPARE[node.op]} {self.code(item, right)}"
        level = _PRECEDENCE[node.op] + 1
        return f"{self.wrap(left, level)} {_COMPARE[node.op]} {self.wrap(right, level)}"

    def call(self, node: Call) -> str:
        name, args = node.name, node.args
        if name == "selected" and len(args) == 2:
            return f"{self.say(args[0])} includes {self.code(self.item_of(args[0]), args[1])}"
        if name == "not" and len(args) == 1:
            inner = args[0]
            alone = _alone(inner)
            if alone:
                return (f"{self.code(self.item_of(alone[0]), alone[1])} is not chosen "
                        f"together with another option")
            if isinstance(inner, Call) and inner.name == "selected" and len(inner.args) == 2:
                return (f"{self.say(inner.args[0])} does not include "
                        f"{self.code(self.item_of(inner.args[0]), inner.args[1])}")
            return f"not ({self.say(inner)})"
        if name == "count-selected" and len(args) == 1:
            return f"the number of options chosen in {self.say(args[0])}"
        if name == "string-length" and len(args) == 1:
            return f"the length of {self.say(args[0])}"
        if name in ("true", "false", "today", "now") and not args:
            return name
        if name == "if" and len(args) == 3:
            return (f"if {self.say(args[0])} then {self.say(args[1])} "
                    f"else {self.say(args[2])}")
        if name == "count" and len(args) == 1:
            return f"the number of {self.say(args[0])}"
        raise _Unrenderable(name)


def in_words(expression: str, form: FormModel, subject: Item | None = None) -> Wording:
    """An XLSForm expression in words, with the first language's choice labels, e.g.
    ``${age} >= 12 and ${consent} = 1`` → ``age ≥ 12 and consent is 1 (Yes)``. ``subject`` is
    the row that ``.`` stands for. Anything without wording gives the expression itself."""
    language = form.languages[0] if form.languages else ""
    try:
        return Wording(_Speaker(form, language, subject).say(parse(expression)), True)
    except (_Unrenderable, ExpressionError):
        return Wording(expression, False)


def reader(form: FormModel, item: Item) -> str:
    """Who reads ``item``'s text: :data:`SELF`, :data:`INSTRUCTION` or :data:`ALOUD` (the rule
    is in the module docstring)."""
    first = form.languages[0] if form.languages else ""
    if INTERVIEWER_LABEL.match(item.labels.get(first, "")):
        return INSTRUCTION
    if any(SELF_COMPLETION_NAME.match(name) for name in (*item.path, item.name)):
        return SELF
    return ALOUD


# -- HTML ----------------------------------------------------------------------------------------

CSS = """
@page { size: A4; margin: 14mm 12mm; }
* { box-sizing: border-box; }
body { font-family: "DejaVu Sans", "Noto Sans", Arial, sans-serif; font-size: 10.5pt;
       line-height: 1.35; color: #111; max-width: 1400px; margin: 0 auto; padding: 12px; }
h1 { font-size: 18pt; margin: 0 0 4px; }
.meta { color: #444; margin: 0 0 10px; }
.legend { border: 1px solid #bbb; padding: 6px 10px; margin-bottom: 12px; font-size: 9.5pt; }
section { margin: 12px 0 6px; }
section > h2 { font-size: 12.5pt; margin: 6px 0 2px; padding: 3px 6px; background: #e8eef5;
               break-after: avoid; }
section section > h2 { background: #f2f2f2; }
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

    def __init__(self, form: FormModel) -> None:
        self.form = form
        self.languages = list(form.languages) or [""]
        self.number = 0
        self.out: list[str] = []

    def header_row(self) -> str:
        cells = "".join(f'<th lang="{_e(language_code(lang))}">{_e(lang)}</th>'
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
            f'<b>{_e(form.version)}</b> · languages: {_e(", ".join(form.languages))}</p>\n'
            f'<div class="legend">Who reads each text: {legend}<br>'
            f'<span class="req">*</span> required · “Asked if” gives when a question is '
            f"shown; “Accepted if” what an answer must satisfy. Codes are the values stored "
            f"in the data.</div>\n{auto_line}\n{body}\n</body>\n</html>\n"
        )

    def body(self) -> Iterator[str]:
        open_path: list[str] = []
        in_table = False
        for item in self.form.items:
            if not item.is_group and item.type not in TYPE_WORDS and item.type != "calculate":
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
        self_completed = reader(self.form, group) == SELF
        titles = " / ".join(_e(group.labels.get(lang, "")) for lang in self.languages
                            if group.labels.get(lang))
        parts = [f'<section class="{"self" if self_completed else "group"}" '
                 f'id="{_e(group.name)}">',
                 f'<h2>{titles or _e(group.name)} <span class="var">[{_e(group.name)}]</span>'
                 f"</h2>"]
        if self_completed:
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
            expr = item.calculation or item.default
            asked = (f" (when {_words(in_words(item.relevant, self.form))})"
                     if item.relevant else "")
            return (f'<tr class="calc"><td colspan="{span}"><span class="var">'
                    f"{_e(item.name)}</span> calculated: <code>{_e(expr)}</code>{asked}</td></tr>")
        return (f'<tr class="{"note" if item.type == "note" else "question"}" '
                f'id="q-{_e(item.name)}">{self.meta_cell(item)}'
                + "".join(self.text_cell(item, lang) for lang in self.languages) + "</tr>")

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
        who = reader(self.form, item)
        parts.append(f'<br><span class="who {who}">{_e(READER_WORDS[who])}</span>')
        if item.required not in ("", "yes"):
            parts.append(f'<div class="logic">Required if '
                         f"{_words(in_words(item.required, self.form, item))}.</div>")
        if item.relevant:
            parts.append(f'<div class="logic">Asked if '
                         f"{_words(in_words(item.relevant, self.form, item))}.</div>")
        if item.constraint:
            parts.append(f'<div class="logic">Accepted if '
                         f"{_words(in_words(item.constraint, self.form, item))}.</div>")
        if item.choice_filter:
            parts.append(f'<div class="logic">Options shown if '
                         f"<code>{_e(item.choice_filter)}</code>.</div>")
        return f'<td class="q">{"".join(parts)}</td>'

    def text_cell(self, item: Item, lang: str) -> str:
        parts = [f'<div class="label">{_e(item.labels.get(lang, ""))}</div>']
        if item.hints.get(lang):
            parts.append(f'<div class="hint">{_e(item.hints[lang])}</div>')
        if item.constraint_messages.get(lang):
            parts.append(f'<div class="hint">If not accepted: '
                         f"{_e(item.constraint_messages[lang])}</div>")
        choices = self.form.choices_for(item)
        if choices is not None:
            options = "".join(
                f'<li><span class="code">{_e(c.name)}</span> {_e(c.labels.get(lang, ""))}</li>'
                for c in choices.choices)
            parts.append(f'<ol class="options">{options}</ol>')
        elif item.or_other or item.type.endswith("_from_file"):
            parts.append('<div class="hint">Options from a file.</div>')
        return f'<td lang="{_e(language_code(lang))}">{"".join(parts)}</td>'


def questionnaire_html(form: FormModel) -> str:
    """The questionnaire of one form as a self-contained HTML page."""
    return _Page(form).render()


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


def print_form(form: FormModel, out: str | Path, *, pdf: bool = True) -> Printed:
    """Write ``<form_id>.html`` and, when Chromium is found, ``<form_id>.pdf`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    html_path = out / f"{form.form_id}.html"
    html_path.write_text(questionnaire_html(form), encoding="utf-8")
    if not pdf:
        return Printed(form.form_id, html_path, None, "PDF not requested")
    chromium = find_chromium()
    if chromium is None:
        return Printed(form.form_id, html_path, None,
                       "the PDF needs Chromium (install chromium, or set DHSURVEY_CHROMIUM); "
                       "open the HTML in a browser and print it instead")
    pdf_path = out / f"{form.form_id}.pdf"
    pdf_path.unlink(missing_ok=True)
    problem = html_to_pdf(html_path, pdf_path, chromium)
    return Printed(form.form_id, html_path, None if problem else pdf_path, problem)
