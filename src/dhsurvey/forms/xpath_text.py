"""Numbers, strings and regular expressions as JavaRosa (ODK Collect's form engine) treats them.

Why this exists: the expression evaluator must give the answers a device gives, and the device
runs Java. Where Java and Python differ — how a string becomes a number, how a double prints,
what a regex means, how long a string is (UTF-16 code units) — the Java behaviour is written
down here once, as plain functions over Python/numpy values, so that the evaluator stays about
XPath and these rules can be checked against JavaRosa case by case.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
import sys
import unicodedata
from collections.abc import Callable
from decimal import ROUND_HALF_DOWN, ROUND_HALF_UP, Decimal, InvalidOperation

import numpy as np
import pandas as pd

__all__ = [
    "JavaRegexError",
    "digest",
    "base64_decode",
    "java_double",
    "java_regex",
    "java_round",
    "java_round_array",
    "normalize_space",
    "parse_numbers",
    "split_selection",
    "utf16_len",
    "utf16_slice",
]

_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1

# ---- numbers --------------------------------------------------------------------------------

_PLAIN_NUMBER = re.compile(r"[-.0-9]+")
_JAVA_TRIM = re.compile(r"^[\x00-\x20]+|[\x00-\x20]+$")  # String.trim(): chars <= ' '


def _parse_one(text: str) -> float:
    """JavaRosa toNumeric(String): ',' as decimal point, trimmed, only '-', '.' and digits
    (no exponent, no '+', no Infinity), then Double.parseDouble; anything else is NaN."""
    s = _JAVA_TRIM.sub("", text.replace(",", "."))
    if not _PLAIN_NUMBER.fullmatch(s):
        return np.nan
    try:
        return float(s)
    except ValueError:  # '1-2', '--5', '.', '1.2.3'
        return np.nan


def parse_numbers(strs: np.ndarray) -> np.ndarray:
    """:func:`_parse_one` over an object array of strings, once per distinct value."""
    if not len(strs):
        return np.zeros(0)
    codes, uniques = pd.factorize(strs, use_na_sentinel=False)
    if len(uniques) > 1_000 and len(uniques) * 4 > len(strs):  # mostly distinct: vectorise
        plain = pd.Series(strs, dtype=object).str.fullmatch(r"-?[0-9]+(?:\.[0-9]*)?")
        if plain.fillna(False).to_numpy(bool).all():
            return strs.astype(float)
    return np.array([_parse_one(u) if isinstance(u, str) else np.nan for u in uniques],
                    dtype=float)[codes]


def _scientific(value: float) -> str:
    """Java's computerized scientific notation: '1.0E20', '1.23E-4'."""
    digits, exponent = _shortest_digits(value)
    mantissa = digits[0] + "." + (digits[1:] or "0")
    return f"{'-' if value < 0 else ''}{mantissa}E{exponent}"


def _shortest_digits(value: float) -> tuple[str, int]:
    """The shortest decimal digits that read back as ``value`` (Java's Double.toString picks
    the same digits as Python's repr), and the decimal exponent of the first digit."""
    _, digit_tuple, exp = Decimal(repr(abs(value))).as_tuple()
    digits = "".join(map(str, digit_tuple))
    assert isinstance(exp, int)
    return digits.rstrip("0") or "0", exp + len(digits) - 1


def java_double(value: float) -> str:
    """Java's Double.toString: plain notation from 0.001 up to 10^7, scientific outside."""
    if 1e-3 <= abs(value) < 1e7:
        text = repr(value)
        return text if "." in text else text + ".0"
    return _scientific(value)


def format_number(value: float) -> str:
    """JavaRosa toString(Double): NaN, ±Infinity, '0' within 1e-12 of zero, a whole number in
    int range without a decimal point, anything else as Java prints a double ('1.0E20')."""
    if value != value:
        return "NaN"
    if abs(value) < 1e-12:
        return "0"
    if value in (np.inf, -np.inf):
        return "Infinity" if value > 0 else "-Infinity"
    whole = min(max(int(value), _INT_MIN), _INT_MAX)  # Java's (int) cast saturates
    if abs(value - whole) < 1e-12:
        return str(whole)
    return java_double(value)


def java_round(value: float, places: int) -> float:
    """JavaRosa round(x, places): BigDecimal of Double.toString(x), half up for positive and
    half down (toward zero) for negative numbers; negative places round to tens, hundreds …
    by truncating x/10^-places + 0.5, as JavaRosa does."""
    if value != value or value in (np.inf, -np.inf):
        return value
    if places > 30 or places < -30:
        return np.nan
    exact = Decimal(java_double(value).replace("E", "e"))
    if places >= 0:
        mode = ROUND_HALF_DOWN if value < 0 else ROUND_HALF_UP
        try:
            return float(exact.quantize(Decimal(1).scaleb(-places), rounding=mode))
        except InvalidOperation:  # more digits than the context holds: already exact
            return value
    scaled = float(exact.scaleb(places))
    return float(Decimal(int(scaled + 0.5)).scaleb(-places))


def java_round_array(values: np.ndarray, places: int) -> np.ndarray:
    """:func:`java_round` over an array with one number of places: numpy where the value is
    clearly not halfway between two results (any rounding mode agrees there), the exact
    decimal rule for the rest."""
    out = np.empty(len(values))
    if 0 <= places <= 15:
        scale = 10.0**places
        with np.errstate(all="ignore"):
            y = np.abs(values) * scale
            frac = y - np.floor(y)
            clear = np.isfinite(y) & (y < 2.0**52) & (
                np.abs(frac - 0.5) > np.maximum(y, 1.0) * 1e-12)
            out[clear] = np.copysign(np.floor(y[clear] + 0.5) / scale, values[clear])
    else:
        clear = np.zeros(len(values), bool)
    rest = ~clear
    if rest.any():
        out[rest] = [java_round(v, places) for v in values[rest].tolist()]
    return out


# ---- strings --------------------------------------------------------------------------------


def utf16_len(s: str) -> int:
    """Java's String.length(): UTF-16 code units (a character beyond U+FFFF counts twice)."""
    if s.isascii():
        return len(s)
    return len(s) + sum(1 for ch in s if ord(ch) > 0xFFFF)


def utf16_slice(s: str, start: int, end: int | None) -> str:
    """JavaRosa substr(s, start, end): indices in UTF-16 code units, negatives from the end,
    clamped; a cut through a surrogate pair keeps the lone half, as Java does."""
    units = utf16_len(s)
    stop = units if end is None else end
    if start < 0:
        start += units
    if stop < 0:
        stop += units
    stop = min(max(0, stop), units)
    start = min(max(0, start), units)
    if start > stop:
        return ""
    if units == len(s):
        return s[start:stop]
    raw = s.encode("utf-16-le", "surrogatepass")
    return raw[2 * start : 2 * stop].decode("utf-16-le", "surrogatepass")


_JAVA_SPACE = re.compile(r"[ \t\n\x0b\f\r]+")


def normalize_space(s: str) -> str:
    """JavaRosa: trim (chars <= ' '), then runs of Java's ASCII \\s become one space."""
    return _JAVA_SPACE.sub(" ", _JAVA_TRIM.sub("", s))


def split_selection(s: str) -> list[str]:
    """A select_multiple answer's choices: split on single spaces, empty pieces dropped."""
    return [p for p in s.split(" ") if p]


_DIGESTS = {"MD5": "md5", "SHA1": "sha1", "SHA256": "sha256", "SHA384": "sha384",
            "SHA512": "sha512"}


def digest(payload: str, algorithm: str, encoding: str = "base64") -> str:
    """digest(): the hash of the UTF-8 bytes, base64 (padded) or lowercase hex."""
    name = _DIGESTS.get(algorithm.upper().replace("-", ""))
    if name is None:
        raise ValueError(f"digest(): unsupported algorithm {algorithm!r} "
                         "(md5, sha-1, sha-256, sha-384, sha-512)")
    code = encoding.upper()
    if code not in ("HEX", "BASE64"):
        raise ValueError(f"digest(): unsupported encoding {encoding!r} (base64, hex)")
    raw = hashlib.new(name, payload.encode("utf-8", "surrogatepass")).digest()
    return raw.hex() if code == "HEX" else base64.b64encode(raw).decode("ascii")


def base64_decode(text: str) -> str:
    """base64-decode(): the UTF-8 text the base64 encodes (invalid bytes replaced)."""
    try:
        raw = base64.b64decode(text.encode("utf-8"), validate=False)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"base64-decode(): not base64: {text!r}") from exc
    return raw.decode("utf-8", errors="replace")


# ---- Java regular expressions ---------------------------------------------------------------


class JavaRegexError(ValueError):
    """A pattern Java's java.util.regex would reject (or that cannot be translated)."""


# Java's predefined classes are ASCII-only by default; these are their members as ranges.
_ASCII_CLASSES = {
    "d": "0-9", "w": "a-zA-Z0-9_", "s": " \\t\\n\\x0b\\f\\r",
    "h": " \\t\\xa0\\u1680\\u180e\\u2000-\\u200a\\u202f\\u205f\\u3000",
    "v": "\\n\\x0b\\f\\r\\x85\\u2028\\u2029",
}
_POSIX = {
    "Lower": "a-z", "Upper": "A-Z", "ASCII": "\\x00-\\x7f", "Alpha": "a-zA-Z", "Digit": "0-9",
    "Alnum": "a-zA-Z0-9", "Punct": "!-/:-@\\[-`{-~", "Graph": "!-~", "Print": " -~",
    "Blank": " \\t", "Cntrl": "\\x00-\\x1f\\x7f", "XDigit": "0-9a-fA-F",
    "Space": " \\t\\n\\x0b\\f\\r",
}
_SIMPLE_ESCAPES = {"t": "\\t", "n": "\\n", "r": "\\r", "f": "\\f", "a": "\\a", "e": "\\x1b"}
_WORD = "[a-zA-Z0-9_]"
_ANCHORS = {
    "b": f"(?:(?<={_WORD})(?!{_WORD})|(?<!{_WORD})(?={_WORD}))",
    "B": f"(?:(?<={_WORD})(?={_WORD})|(?<!{_WORD})(?!{_WORD}))",
    "z": "\\Z",
    "Z": "(?=[\\n\\r\\x85\\u2028\\u2029]?\\Z)",
    "R": "(?:\\r\\n|[\\n\\x0b\\f\\r\\x85\\u2028\\u2029])",
    "A": "\\A",
}


def _ranges_to_class(ranges: list[tuple[int, int]]) -> str:
    return "".join(f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges)


def _complement(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out, start = [], 0
    for a, b in sorted(ranges):
        if a > start:
            out.append((start, a - 1))
        start = max(start, b + 1)
    if start <= sys.maxunicode:
        out.append((start, sys.maxunicode))
    return out


def _runs(test: Callable[[str], object], stop: int) -> list[tuple[int, int]]:
    """The code point ranges below ``stop`` whose characters pass ``test``."""
    ranges: list[tuple[int, int]] = []
    for cp in range(stop):
        if test(chr(cp)):
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1] = (ranges[-1][0], cp)
            else:
                ranges.append((cp, cp))
    return ranges


@functools.lru_cache(maxsize=64)
def _class_ranges(body: str) -> list[tuple[int, int]]:
    """The code point ranges of one of the small class bodies above (all below U+3001)."""
    return _runs(re.compile(f"[{body}]").match, 0x3001)


@functools.lru_cache(maxsize=64)
def _unicode_ranges(prop: str) -> tuple[tuple[int, int], ...]:
    """Code point ranges of a Unicode general category (L, Lu, Nd, P …) or IsAlphabetic."""
    name = prop[2:] if prop.startswith("Is") else prop
    wanted = {"Alphabetic": ("L", "Nl"), "Letter": ("L",), "Digit": ("Nd",)}.get(name, (name,))
    if not all(re.fullmatch(r"[LMNPSZC][a-z]?", w) for w in wanted):
        raise JavaRegexError(f"unsupported character property \\p{{{prop}}}")
    return tuple(_runs(lambda c: unicodedata.category(c).startswith(wanted),
                       sys.maxunicode + 1))


def _property(prop: str, negate: bool) -> str:
    """A \\p{…} / \\P{…} class as the body of a Python character class."""
    if prop.startswith("Is") and prop[2:] in _POSIX:
        prop = prop[2:]
    if prop in _POSIX:
        ranges = _class_ranges(_POSIX[prop])
    elif prop.startswith("java"):
        raise JavaRegexError(f"unsupported character property \\p{{{prop}}}")
    else:
        ranges = list(_unicode_ranges(prop))
    return _ranges_to_class(_complement(ranges) if negate else ranges)


def _predefined(letter: str) -> str:
    """\\d \\w \\s \\h \\v and their upper-case complements, as a Python class body."""
    body = _ASCII_CLASSES[letter.lower()]
    if letter.islower():
        return body
    return _ranges_to_class(_complement(_class_ranges(body)))


class _Translator:
    """Rewrites a java.util.regex pattern into Python's re syntax, with Java's meaning."""

    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0
        self.ignore_case = False

    def error(self, message: str) -> JavaRegexError:
        return JavaRegexError(f"{message} near index {self.i}")

    def translate(self) -> str:
        out: list[str] = []
        if self.p.startswith("(?i)"):
            self.ignore_case, self.i = True, 4
        while self.i < len(self.p):
            out.append(self.atom())
        return "".join(out)

    def letter(self, ch: str) -> str:
        """Java's (?i) folds ASCII letters only."""
        if self.ignore_case and ch.isascii() and ch.isalpha():
            return f"[{ch.lower()}{ch.upper()}]"
        return re.escape(ch) if ch in ".^$*+?{}[]\\|()" else ch

    def atom(self) -> str:
        ch = self.p[self.i]
        self.i += 1
        if ch == "\\":
            return self.escape(in_class=False)
        if ch == "[":
            return self.char_class()
        if ch == ".":
            return "[^\\n\\r\\x85\\u2028\\u2029]"
        if ch == "{":
            m = re.compile(r"\d+(?:,\d*)?\}").match(self.p, self.i)
            if m is None or self.i == 1:
                raise self.error("Illegal repetition")
            self.i = m.end()
            return "{" + m.group()
        if ch == "(" and self.p.startswith("?<", self.i) and self.p[self.i + 2 : self.i + 3] \
                not in ("=", "!", ""):
            self.i += 1
            return "(?P"
        if ch in "()|^$*+?":
            return ch
        return self.letter(ch)

    def escape(self, in_class: bool) -> str:
        if self.i >= len(self.p):
            raise self.error("Unexpected internal error")
        ch = self.p[self.i]
        self.i += 1
        if ch in "dwshvDWSHVpP":
            body = self.class_escape(ch)
            return body if in_class else f"[{body}]"
        if ch == "Q":
            end = self.p.find("\\E", self.i)
            text = self.p[self.i :] if end < 0 else self.p[self.i : end]
            self.i = len(self.p) if end < 0 else end + 2
            return "".join(self.letter(c) if not in_class else re.escape(c) for c in text)
        if not in_class and (ch in _ANCHORS or ch == "k" or ch.isdigit()):
            return self.anchor_escape(ch)
        if ch in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[ch]
        if ch in "xu0":
            return self.code_point(ch)
        if ch.isalnum():
            raise self.error(f"Illegal/unsupported escape sequence \\{ch}")
        return re.escape(ch) if not self.ignore_case else self.letter(ch)

    def class_escape(self, ch: str) -> str:
        """\\d \\w \\s \\h \\v (and complements), \\p{…} \\P{…}: a class body."""
        if ch not in "pP":
            return _predefined(ch)
        m = re.compile(r"\{(\w+)\}|([A-Za-z])").match(self.p, self.i)
        if m is None:
            raise self.error("Illegal character property")
        self.i = m.end()
        return _property(m.group(1) or m.group(2), ch == "P")

    def anchor_escape(self, ch: str) -> str:
        """Escapes outside a class: boundaries (ASCII words), \\z \\Z \\R, back-references."""
        if ch == "k":
            m = re.compile(r"<(\w+)>").match(self.p, self.i)
            if m is None:
                raise self.error("\\k is not followed by '<' for named capturing group")
            self.i = m.end()
            return f"(?P={m.group(1)})"
        return _ANCHORS.get(ch, "\\" + ch)

    def code_point(self, kind: str) -> str:
        """\\xhh, \\x{h…h}, \\uhhhh and \\0ooo: the character, as Python's \\U escape."""
        forms = {"x": r"\{([0-9a-fA-F]+)\}|([0-9a-fA-F]{2})", "u": r"([0-9a-fA-F]{4})",
                 "0": r"([0-3]?[0-7]{1,2})"}
        m = re.compile(forms[kind]).match(self.p, self.i)
        if m is None:
            raise self.error(f"Illegal {kind} escape sequence")
        self.i = m.end()
        value = int(next(g for g in m.groups() if g), 8 if kind == "0" else 16)
        return f"\\U{value:08x}"

    def char_class(self) -> str:
        """[...] with Java's nested classes (union) and && (intersection)."""
        negate = self.p.startswith("^", self.i)
        if negate:
            self.i += 1
        parts: list[str] = []  # alternatives (Python regex snippets) of the union
        body: list[str] = []
        first = True
        while True:
            if self.i >= len(self.p):
                raise self.error("Unclosed character class")
            ch = self.p[self.i]
            if ch == "]" and not first:
                self.i += 1
                break
            first = False
            if self.p.startswith("&&", self.i):
                self.i += 2
                left = self._union(body, parts)
                right = self.char_class()  # the rest, up to this class's closing ']'
                expr = f"(?:(?={right}){left})"
                return f"(?:(?!{expr})[\\s\\S])" if negate else expr
            self.i += 1
            if ch == "[":
                parts.append(self.char_class())
            elif ch == "\\":
                body.append(self.escape(in_class=True))
            elif ch == "-" and body and self.p[self.i] not in "]&[":
                body.append("-")
            elif self.ignore_case and ch.isascii() and ch.isalpha():
                body.append(ch.lower() + ch.upper())
            else:
                body.append(re.escape(ch) if ch in "[]\\^-" else ch)
        union = self._union(body, parts)
        return f"(?:(?!{union})[\\s\\S])" if negate else union

    @staticmethod
    def _union(body: list[str], parts: list[str]) -> str:
        simple = f"[{''.join(body)}]" if body else ""
        options = ([simple] if simple else []) + parts
        if not options:
            return "(?!)"
        return options[0] if len(options) == 1 else "(?:" + "|".join(options) + ")"


@functools.lru_cache(maxsize=512)
def java_regex(pattern: str) -> re.Pattern[str]:
    """A compiled Python pattern that matches what Java's Pattern matches (full-match use)."""
    try:
        return re.compile(_Translator(pattern).translate())
    except re.error as exc:
        raise JavaRegexError(str(exc)) from None
