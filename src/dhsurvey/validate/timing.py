"""Interview timing: durations from the ``start``/``end`` metadata and speeders.

A speeder is an interview finished far faster than the questionnaire can be read: below a share
of the form's median duration among completed interviews (or an absolute floor). Speeders are
flagged, not removed: a supervisor calls the household back before anything is discarded.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from dhsurvey.forms.facts import gates_passed, study_facts

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


def completed(table: pd.DataFrame, gates: Mapping[str, str | None] | None = None
              ) -> pd.Series:
    """Interviews that went past their consent gate(s): those are the ones to time.

    ``gates``: the form's :attr:`~dhsurvey.forms.model.FormModel.consent_given`; without
    it, the gates of every form of the study's instruments found in ``table``.
    """
    return gates_passed(table, study_facts().all_gates if gates is None else gates)


def speeder_threshold(median: float, *, share: float = SPEEDER_SHARE,
                      floor: float = SPEEDER_FLOOR_MINUTES) -> float:
    """The speeder threshold in minutes for a form whose completed interviews' median is
    ``median`` (NaN when no interview was completed)."""
    return float("nan") if pd.isna(median) else max(floor, share * float(median))


def speeder_mask(table: pd.DataFrame, *, threshold: float | None = None,
                 gates: Mapping[str, str | None] | None = None) -> tuple[pd.Series, float]:
    """(mask of speeders among completed interviews, threshold in minutes).

    ``threshold`` given: the form's threshold was computed over more interviews than
    ``table`` holds (a country validated in batches); else it comes from ``table``.
    ``gates``: as for :func:`completed`.
    """
    minutes = duration_minutes(table)
    done = completed(table, gates)
    if threshold is None:
        threshold = speeder_threshold(minutes[done].median())
    if pd.isna(threshold):
        return pd.Series(False, index=table.index), float("nan")
    return (done & (minutes < threshold)).fillna(False), threshold
