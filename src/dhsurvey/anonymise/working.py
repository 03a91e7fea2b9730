"""One form while it is being anonymised: the table each step changes and what it did.

Why a record of its own: the release's steps (IDs, recoding, suppression per file and on the
linked profile, the report) each change the table or note what they changed, and the report
compares the keys at three stages. Keeping that state on one object lets each step live in
the module named after it without passing a dozen values between them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from dhsurvey.forms.model import FormModel


@dataclass
class WorkingForm:
    """One form between its accepted table and its release.

    ``table`` holds the released columns (and IDs), one row per released record; ``before``
    and ``after_recode`` share its arrays as they were before recoding and after it (the
    report's stages); ``recodes``, ``rare`` and ``suppressed`` say what changed, and
    ``suppressed_cells`` which key cells suppression blanked (a value missing otherwise was
    not asked, which the intruder sees).
    """

    name: str
    model: FormModel
    reasons: dict[str, tuple[str, str]]
    table: pd.DataFrame
    keys: list[str]
    weighted: bool
    accepted_rows: int
    scrubbed: list[str] = field(default_factory=list)
    months: list[str] = field(default_factory=list)
    before: pd.DataFrame | None = None
    recodes: dict[str, str] = field(default_factory=dict)
    rare: dict[str, dict[str, Any]] = field(default_factory=dict)
    suppressed: dict[str, int] = field(default_factory=dict)
    after_recode: pd.DataFrame | None = None
    #: Key cells blanked by local suppression (the only wildcards), per key.
    suppressed_cells: dict[str, np.ndarray] = field(default_factory=dict)
    #: The tier's keys before any was left out by recoding (what "before" is measured on).
    initial_keys: list[str] = field(default_factory=list)
    #: Margin variables of the weights (keys in every tier, never suppressed or recoded:
    #: users rake the design on them).
    calibration: list[str] = field(default_factory=list)
    #: Recoding steps of the rules applied, per variable (:mod:`~dhsurvey.anonymise.ladder`).
    steps: dict[str, list[Any]] = field(default_factory=dict)
