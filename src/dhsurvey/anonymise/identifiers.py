"""What counts as an identifier inside a string: a restricted value, an e-mail, a phone
number, a UUID or a pair of coordinates.

Why set-based: the values that must never appear in a release (every instanceID, every GPS
string, every planted canary) run to millions in a large country, and the scan reads tens
of millions of cells. A regex over a million alternatives, or ``phonenumbers`` on every
hex release ID, takes hours. Here each restricted value is indexed by one of its tokens
(runs of ``[0-9a-z]`` after case folding), so a string is matched by splitting it into
tokens and looking each up in a dict; only a token that names a restricted value leads to
a comparison. The matches are those of one case-insensitive regex over every value with
whole-token boundaries (not inside a longer word or number), leftmost and longest first.
Patterns run only on strings that could hold one: an ``@`` for an e-mail, a ``-`` for a
UUID, a ``.`` for coordinates, and for a phone number a run of at least seven digits that
``phonenumbers`` would not reject for touching a letter (:data:`PHONE_HINT`), so a hex ID
never reaches it. :func:`may_hold` makes the first cut for a whole column chunk in Arrow,
so most strings are never turned into Python objects at all.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
UUID_RE = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I)
#: Two decimal coordinates in one string, as in an ODK geopoint "lat lon alt acc".
COORD_RE = re.compile(r"(?<![\w.])-?\d{1,2}\.\d{4,}[ ,;]+-?\d{1,3}\.\d{4,}")
#: A number as a whole cell: statistics, not identifiers (no pattern is looked for in one).
DECIMAL_RE = re.compile(r"^[+-]?\d+(\.\d+)?([eE][+-]?\d+)?$")
PHONE_REGIONS = ("KE", "TZ", "UG", "GB", "US")

#: The tokens restricted values are indexed and matched by: a match never starts or ends
#: next to one of these characters (case folded), so tokens line up with its ends.
TOKEN_RE = re.compile(r"[0-9a-z]+")
#: What :meth:`str.splitlines` splits on: a match in a file read line by line never spans it.
LINE_BREAK_RE = re.compile(r"\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")

#: Fewest digits of a valid number in :data:`PHONE_REGIONS` (the shortest national number:
#: 7 digits in Kenya and the UK; a test checks it against the metadata).
PHONE_MIN_DIGITS = 7
_SEVEN_DIGITS = re.compile(rf"(?:\d\D*){{{PHONE_MIN_DIGITS}}}")
#: A stretch ``phonenumbers`` could report as a valid number: digits, spaces, dashes and
#: brackets (a leading "+"), at least :data:`PHONE_MIN_DIGITS` digits, ending in a digit,
#: neither preceded nor followed by a letter or digit (unless it opens with "+" or "("):
#: its matcher only starts a candidate after a non-digit and rejects one touching a Latin
#: letter. A hex ID such as ``3f8a921234567b0c`` has none. A run of 400 digits or more is a
#: candidate too (the matcher splits those inside).
PHONE_HINT = re.compile(
    rf"(?:(?:^|(?<=[^A-Za-z\d]))\+?|[+(])[\s\-()]*(?:\d[\s\-()]*){{{PHONE_MIN_DIGITS - 1},}}"
    r"\d(?![A-Za-z\d])|\d{400}")

# Twins of the patterns for Arrow (RE2, no look-around), each matching at least the ASCII
# strings its Python pattern matches: they pick the few strings :func:`pattern_hits` must
# look at. :func:`may_hold` looks at every non-ASCII string anyway, so a digit here is [0-9]
# (RE2 compiles Unicode classes such as \p{Nd} anew in every call, a millisecond each).
_ARROW_DECIMAL = r"^[+-]?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?$"
_ARROW_PATTERNS = "|".join([
    EMAIL_RE.pattern,
    r"(?i)[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    r"[0-9]{1,2}\.[0-9]{4,}[ ,;]+-?[0-9]{1,3}\.[0-9]{4,}",
    rf"(?:[0-9][^0-9]*){{{PHONE_MIN_DIGITS}}}",  # phones: :data:`PHONE_HINT` follows
])

#: Restricted values sharing their index token beyond this are re-indexed by a rarer token.
_BUCKET = 8

Entry = tuple[str, int, int]  # (folded value, offset of its index token, restricted index)


def _entries(found: Entry | list[Entry]) -> Sequence[Entry]:
    return (found,) if isinstance(found, tuple) else found


#: Bytes → themselves for token characters, a space for every other byte.
_RUN_TABLE = bytes(c if chr(c) in "0123456789abcdefghijklmnopqrstuvwxyz" else 32
                   for c in range(256))


def _runs(text: str) -> set[str]:
    """The distinct runs of token characters in ``text`` (what ``TOKEN_RE.findall`` finds),
    split in C: a megabyte of a binary file's bytes holds a million short runs. Characters
    beyond Latin-1 are never token characters and become ``?``."""
    return {run.decode("ascii") for run in
            set(text.encode("latin-1", "replace").translate(_RUN_TABLE).split())}


def _bounded(text: str, start: int, end: int) -> bool:
    """No token character right before ``start`` or right after ``end``."""
    return ((start == 0 or not ("0" <= text[start - 1] <= "9" or "a" <= text[start - 1] <= "z"))
            and (end == len(text) or not ("0" <= text[end] <= "9" or "a" <= text[end] <= "z")))


class RestrictedValues:
    """Values that must not appear in a release, indexed for :meth:`find`.

    Each value is stripped and case folded; values shorter than 3 characters are ignored (a
    two-letter code is in every file). A value's index is its position in ``values`` (the
    first, when it repeats): findings name that index, never the value.
    """

    def __init__(self, values: Iterable[Any]) -> None:
        self._by_token: dict[str, Entry | list[Entry]] = {}
        self._loose: list[tuple[str, int]] = []  # no token character: found by substring
        seen: set[str] = set()
        for i, value in enumerate(values):
            text = str(value).strip().casefold()
            if len(text) < 3 or text in seen:
                continue
            seen.add(text)
            tokens = TOKEN_RE.findall(text)
            if not tokens:
                self._loose.append((text, i))
                continue
            # The longest token is the most selective in practice (the last group of a UUID,
            # the digits of a GPS string); it is a whole run, so find gives its offset.
            key = max(tokens, key=len)
            self._add(key, (text, text.find(key), i))
        del seen
        for key in [k for k, e in self._by_token.items()
                    if isinstance(e, list) and len(e) > _BUCKET]:
            self._spread(key)

    def _add(self, token: str, entry: Entry) -> None:
        found = self._by_token.get(token)
        if found is None:
            self._by_token[token] = entry
        elif isinstance(found, list):
            found.append(entry)
        else:
            self._by_token[token] = [found, entry]

    def _spread(self, key: str) -> None:
        """Re-index the values of a crowded token by their rarest token among themselves
        (``zawadi canary-4821`` by ``4821``, not ``zawadi``)."""
        bucket = _entries(self._by_token.pop(key))
        counts = Counter(t for text, _, _ in bucket for t in set(TOKEN_RE.findall(text)))
        for text, _, i in bucket:
            runs = [(m.group(), m.start()) for m in TOKEN_RE.finditer(text)]
            token, start = min(runs, key=lambda r: (counts[r[0]], -len(r[0])))
            self._add(token, (text, start, i))

    def __bool__(self) -> bool:
        return bool(self._by_token or self._loose)

    def indexed(self, tokens: Iterable[str]) -> list[str]:
        """The ``tokens`` some restricted value is indexed by."""
        by_token = self._by_token
        return [t for t in tokens if t in by_token]

    @property
    def untokened(self) -> list[str]:
        """Values without a token character (found by substring search)."""
        return [value for value, _ in self._loose]

    def find(self, text: str) -> list[tuple[str, int]]:
        """(matched text, restricted index) of every restricted value in case-folded ``text``.

        As one regex's ``finditer`` would give them: leftmost first, the longest value at a
        position, not overlapping.
        """
        if text.isascii() and text.isalnum():  # one token: the whole text
            entry = self._by_token.get(text)
            if entry is None:
                return []
            best = min((i for value, _, i in _entries(entry) if value == text), default=None)
            return [] if best is None else [(text, best)]
        return [(text[start:end], i) for start, end, i in self.spans(text)]

    def spans(self, text: str, *, lines: bool = False) -> list[tuple[int, int, int]]:
        """(start, end, restricted index) of each match :meth:`find` gives. ``lines``:
        ``text`` holds whole lines of a file read line by line; no match spans a line break.
        """
        candidates = self._indexed(text) + self._substrings(text)
        if lines:
            candidates = [c for c in candidates
                          if not LINE_BREAK_RE.search(text, c[0], -c[1])]
        candidates.sort()
        out: list[tuple[int, int, int]] = []
        done = 0
        for start, neg_end, i in candidates:
            if start >= done:
                out.append((start, -neg_end, i))
                done = -neg_end
        return out

    def _indexed(self, text: str) -> list[tuple[int, int, int]]:
        """(start, -end, index) of every bounded occurrence of an indexed value."""
        by_token = self._by_token
        # The text's runs are tested against the index in C; a run indexed (rare: most text
        # holds none) is then found by substring search, each whole run of it in turn.
        present = by_token.keys() & _runs(text)
        out = []
        for token in present:
            at = text.find(token)
            while at >= 0:
                if _bounded(text, at, at + len(token)):
                    for value, offset, i in _entries(by_token[token]):
                        start = at - offset
                        end = start + len(value)
                        if start >= 0 and text.startswith(value, start) and \
                                _bounded(text, start, end):
                            out.append((start, -end, i))
                at = text.find(token, at + 1)
        return out

    def _substrings(self, text: str) -> list[tuple[int, int, int]]:
        """(start, -end, index) of every bounded occurrence of a value without tokens."""
        out = []
        for value, i in self._loose:
            start = text.find(value)
            while start >= 0:
                if _bounded(text, start, start + len(value)):
                    out.append((start, -start - len(value), i))
                start = text.find(value, start + 1)
        return out


def phones(text: str) -> list[str]:
    """Valid phone numbers of :data:`PHONE_REGIONS` written in ``text`` (digits, spaces,
    dashes and brackets only: lists of statistics and dates are not phone numbers)."""
    return list(_phones(text))


@functools.lru_cache(maxsize=4096)
def _phones(text: str) -> tuple[str, ...]:
    """:func:`phones`, remembered: the same stretches of digits (counts, totals) recur in a
    release's codebook, methods and manifest, and each costs five regions' parsing."""
    import phonenumbers

    found = []
    for region in PHONE_REGIONS:
        for m in phonenumbers.PhoneNumberMatcher(text, region,
                                                 leniency=phonenumbers.Leniency.VALID):
            raw = m.raw_string
            if DECIMAL_RE.match(raw) or re.fullmatch(r"\d{4}-\d{2}(-\d{2})?", raw):
                continue
            # Lists of statistics ("0 / 20365 / 117389 / 24149.7") are not phone numbers: a
            # number is written with digits, spaces, dashes, brackets and a leading "+" only.
            if not re.fullmatch(r"\+?[\d\s\-()]+", raw):
                continue
            found.append(raw)
    return tuple(sorted(set(found)))


def may_hold_phone(text: str) -> bool:
    """Whether ``text`` could hold a number :func:`phones` finds (never true of a hex ID)."""
    return bool(_SEVEN_DIGITS.search(text)) and bool(PHONE_HINT.search(text))


def pattern_hits(text: str) -> list[tuple[str, str]]:
    """(kind, matched text) of every e-mail, UUID, coordinate pair and phone number in
    ``text``; none in a number written as a whole cell."""
    if not text or DECIMAL_RE.match(text.strip()) or (text.isascii() and text.isalnum()):
        return []
    out: list[tuple[str, str]] = []
    if "@" in text:
        out += [("email", m.group(0)) for m in EMAIL_RE.finditer(text)]
    if "-" in text:
        out += [("uuid", m.group(0)) for m in UUID_RE.finditer(text)]
    if "." in text:
        out += [("coordinates", m.group(0)) for m in COORD_RE.finditer(text)]
    if may_hold_phone(text):
        # Only the stretches of digits, spaces, dashes and brackets that could be a number
        # go to ``phonenumbers`` (a number it reports is written with nothing else): a long
        # line of a codebook or a table of statistics is not parsed whole in five regions.
        found = {p for m in PHONE_HINT.finditer(text) for p in phones(m.group())}
        out += [("phone", p) for p in sorted(found)]
    return out


def may_hold(texts: Any, restricted: RestrictedValues) -> np.ndarray:
    """Which of ``texts`` (an Arrow string array without nulls) may hold a restricted value
    or a pattern: the rest holds neither, so only these are looked at one by one.

    Computed in Arrow: a text's tokens (ASCII texts; others are always looked at, since case
    folding may turn a non-ASCII letter into a token character) against the tokens the
    restricted values are indexed by, and RE2 twins of the patterns (for phone numbers:
    seven digits; :data:`PHONE_HINT` then keeps hex IDs from ``phonenumbers``).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    ascii_ = pc.string_is_ascii(texts)
    out = ~ascii_.to_numpy(zero_copy_only=False)
    if restricted:
        lower = pc.ascii_lower(texts)
        tokens = pc.split_pattern_regex(lower, r"[^0-9a-z]+")
        flat = pc.list_flatten(tokens)
        known = restricted.indexed(pc.unique(flat).to_pylist())
        if known:
            hit = pc.is_in(flat, value_set=pa.array(known, type=flat.type))
            out[pc.list_parent_indices(tokens).filter(hit).to_numpy()] = True
        for value in restricted.untokened:
            out |= pc.match_substring(lower, value).to_numpy(zero_copy_only=False)
    plain = pc.or_(pc.and_(ascii_, pc.ascii_is_alnum(texts)),
                   pc.match_substring_regex(pc.utf8_trim_whitespace(texts), _ARROW_DECIMAL))
    maybe = pc.match_substring_regex(texts, _ARROW_PATTERNS)
    out |= pc.and_not(maybe, plain).to_numpy(zero_copy_only=False)
    return out


def mask(text: str) -> str:
    """A finding names where, not what: the first characters only, never the value."""
    text = str(text)
    return text[:3] + "…" + f"({len(text)} chars)" if len(text) > 3 else "…"
