"""Interview timing: durations from the ``start``/``end`` metadata and speeders.

A speeder is an interview finished far faster than the questionnaire can be read: below a share
of the form's median duration among completed interviews (or an absolute floor). Speeders are
flagged, not removed: a supervisor calls the household back before anything is discarded.
"""

from __future__ import annotations

import pandas as pd

from dhsurvey.forms.lint import CONSENT_RE

#: Flag interviews shorter than this share of the median completed interview ...
SPEEDER_SHARE = 0.33
#: ... or shorter than this many minutes, whichever is longer.
SPEEDER_FLOOR_MINUTES = 5.0


def duration_minutes(table: pd.DataFrame) -> pd.Series:
    """Minutes from ``start`` to ``end`` (ISO strings with offsets, or timestamps)."""
    if "start" not in table or "end" not in table:
        return pd.Series(float("nan"), index=table.index)
    start = pd.to_datetime(table["start"], utc=True, errors="coerce", format="ISO8601")
    end = pd.to_datetime(table["end"], utc=True, errors="coerce", format="ISO8601")
    return (end - start).dt.total_seconds() / 60


def completed(table: pd.DataFrame) -> pd.Series:
    """Interviews that went past their consent gate(s) — the fields the linter treats as
    gates — : those are the ones to time."""
    done = pd.Series(True, index=table.index)
    for gate in (c for c in table.columns if CONSENT_RE.match(str(c))):
        done &= table[gate].astype("string").fillna("") == "1"
    return done


def speeder_threshold(median: float, *, share: float = SPEEDER_SHARE,
                      floor: float = SPEEDER_FLOOR_MINUTES) -> float:
    """The speeder threshold in minutes for a form whose completed interviews' median is
    ``median`` (NaN when no interview was completed)."""
    return float("nan") if pd.isna(median) else max(floor, share * float(median))


def speeder_mask(table: pd.DataFrame, *, threshold: float | None = None
                 ) -> tuple[pd.Series, float]:
    """(mask of speeders among completed interviews, threshold in minutes).

    ``threshold`` given: the form's threshold was computed over more interviews than
    ``table`` holds (a country validated in batches); else it comes from ``table``.
    """
    minutes = duration_minutes(table)
    done = completed(table)
    if threshold is None:
        threshold = speeder_threshold(minutes[done].median())
    if pd.isna(threshold):
        return pd.Series(False, index=table.index), float("nan")
    return (done & (minutes < threshold)).fillna(False), threshold
