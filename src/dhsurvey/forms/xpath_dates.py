"""Dates and times as JavaRosa (ODK Collect's form engine) reads and writes them.

Why this exists: date functions must give the device's answers, and JavaRosa's rules are its
own — '2024-1-5' is a date, '2024-02-30' is not, text after the seconds is ignored, a time
zone offset moves the time — and format-date() has its own pattern letters (%W counts weeks
as a US calendar does). Values are days since 1970-01-01 as floats (the time is the fraction),
the evaluator's representation of dates; the wall-clock time a value was recorded at is kept
(its offset dropped), as the device that recorded it showed it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pandas as pd

__all__ = ["MS_PER_DAY", "DateFormatError", "format_dates", "parse_dates"]

MS_PER_DAY = 86_400_000.0

_DATE = re.compile(r"(\+?\d+)-(\+?\d+)-(\+?\d+)")
_TIME = re.compile(r"(\+?\d+):(\+?\d+)(?::([\d.]*))?")


class DateFormatError(ValueError):
    """A format-date() pattern JavaRosa refuses (unknown %-letter, trailing %)."""


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (any year)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _parse_time(text: str) -> float | None:
    """Seconds into the day of 'hh:mm[:ss[.fff]]' with an optional Z / ±hh[:mm] (dropped)."""
    if not text:
        return None
    if text.endswith("Z"):
        text = text[:-1]
    elif "+" in text or "-" in text:
        text = text.split("+")[0] if "+" in text else text.split("-")[0]
    m = _TIME.match(text)
    if m is None or (m.group(3) is None and m.end() != len(text)):
        return None
    hour, minute = int(m.group(1)), int(m.group(2))
    seconds = 0.0
    if m.group(3) is not None:
        try:
            seconds = float(m.group(3))  # Java parseDouble: '' and '1.2.3' fail
        except ValueError:
            return None
    second = int(seconds)
    ticks = int(1000.0 * seconds - 1000.0 * second)
    if not (0 <= hour <= 23 and 0 <= minute <= 59 and 0 <= second <= 59 and 0 <= ticks <= 999):
        return None
    return hour * 3600 + minute * 60 + second + ticks / 1000.0


def _parse_one(text: str) -> float:
    """JavaRosa DateUtils.parseDateTime: 'y-m-d' (numbers of any width) with an optional
    'T' and time; NaN when JavaRosa would not read it as a date."""
    date_part, sep, time_part = text.partition("T")
    m = _DATE.fullmatch(date_part)
    if m is None:
        return np.nan
    year, month, day = (int(g) for g in m.groups())
    if not (1 <= month <= 12 and 1 <= day <= _days_in_month(year, month)):
        return np.nan
    days = float(_days_from_civil(year, month, day))
    if not sep:
        return days
    seconds = _parse_time(time_part)
    return np.nan if seconds is None else days + seconds / 86_400.0


def parse_dates(strs: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of each string as JavaRosa reads a date or dateTime (NaN where it
    cannot), each distinct string parsed once."""
    if not len(strs):
        return np.zeros(0)
    codes, uniques = pd.factorize(strs, use_na_sentinel=False)
    return np.array([_parse_one(u) if isinstance(u, str) else np.nan for u in uniques],
                    dtype=float)[codes]


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _fields(days: np.ndarray) -> dict[str, np.ndarray]:
    """Calendar fields of each (valid) day count, by integer arithmetic: any year works."""
    ms = np.round(days * MS_PER_DAY).astype(np.int64)
    day = np.floor_divide(ms, int(MS_PER_DAY))
    in_day = ms - day * int(MS_PER_DAY)
    d = day.astype("datetime64[D]")
    y, m = d.astype("datetime64[Y]"), d.astype("datetime64[M]")
    year_start = y.astype("datetime64[D]").astype(np.int64)
    next_year = (y + 1).astype("datetime64[D]").astype(np.int64)
    doy = day - year_start + 1
    sunday_based = (day + 4) % 7  # 1970-01-01 was a Thursday; Sunday = 0
    # java.util.Calendar WEEK_OF_YEAR in a US locale: weeks start on Sunday and week 1 holds
    # 1 January, so the last days of December may be week 1 of the next year.
    week = (doy - 1 + (year_start + 4) % 7) // 7 + 1
    week = np.where(next_year - day <= 6 - sunday_based, 1, week)
    return {"year": y.astype(np.int64) + 1970, "month": m.astype(np.int64) % 12 + 1,
            "day": (d - m.astype("datetime64[D]")).astype(np.int64) + 1,
            "hour": in_day // 3_600_000, "minute": in_day // 60_000 % 60,
            "second": in_day // 1000 % 60, "ms": in_day % 1000,
            "weekday": (day + 3) % 7, "week": week}  # weekday: Monday = 0


Fields = dict[str, list[int]]

#: format-date() letter → the text of each date.
_TOKENS: dict[str, Callable[[Fields], list[str]]] = {
    "Y": lambda f: [f"{v:04d}" for v in f["year"]],
    "y": lambda f: [f"{v:04d}"[2:] for v in f["year"]],
    "m": lambda f: [f"{v:02d}" for v in f["month"]],
    "n": lambda f: [str(v) for v in f["month"]],
    "b": lambda f: [_MONTHS[v - 1] for v in f["month"]],
    "d": lambda f: [f"{v:02d}" for v in f["day"]],
    "e": lambda f: [str(v) for v in f["day"]],
    "H": lambda f: [f"{v:02d}" for v in f["hour"]],
    "h": lambda f: [str(v) for v in f["hour"]],
    "M": lambda f: [f"{v:02d}" for v in f["minute"]],
    "S": lambda f: [f"{v:02d}" for v in f["second"]],
    "3": lambda f: [f"{v:03d}" for v in f["ms"]],
    "a": lambda f: [_WEEKDAYS[v] for v in f["weekday"]],
    "W": lambda f: [str(v) for v in f["week"]],
    "%": lambda f: ["%"] * len(f["year"]),
}


def _pieces(fmt: str) -> list[str]:
    """The format split into literal text and %-letters, refused as JavaRosa refuses it."""
    pieces, i = [], 0
    while i < len(fmt):
        if fmt[i] != "%":
            j = fmt.find("%", i)
            j = len(fmt) if j < 0 else j
            pieces.append(fmt[i:j])
            i = j
            continue
        if i + 1 >= len(fmt):
            raise DateFormatError("format-date(): the format ends with %")
        letter = fmt[i + 1]
        if letter not in _TOKENS:
            kind = "unsupported" if letter in "ZAB" else "unrecognized"
            raise DateFormatError(f"format-date(): {kind} format letter %{letter}")
        pieces.append("%" + letter)
        i += 2
    return pieces


def format_dates(days: np.ndarray, fmt: str) -> np.ndarray:
    """format-date(): each date in the format ('' where there is no date); each distinct
    date is formatted once."""
    arr = np.asarray(days, dtype=float)
    out = np.full(len(arr), "", dtype=object)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(arr) & (np.abs(arr) < 1e8)
    if not ok.any():
        return out
    codes, uniques = pd.factorize(arr[ok])
    fields = {k: v.tolist() for k, v in _fields(np.asarray(uniques, dtype=float)).items()}
    count = len(uniques)
    columns = [_TOKENS[p[1]](fields) if p.startswith("%") else [p] * count
               for p in _pieces(fmt)]
    texts = ["".join(p) for p in zip(*columns, strict=True)] if columns else [""] * count
    out[ok] = np.array(texts, dtype=object)[codes]
    return out
