"""The corrections log: field teams' fixes, applied reproducibly before validation.

Supervisors correct data after call-backs (a mistyped age, a wrong household number). The log
is a table — instanceID, field, old value, new value, reason, author — kept under version
control and applied in file order every time, so the cleaned data can always be rebuilt from
the raw exports. A correction whose old value no longer matches is not applied and is reported.

The report of what was applied (``<form>/corrections.parquet``) also holds validation's own
automatic corrections — answers the skip logic hides, blanked (:mod:`dhsurvey.validate.skip`) —
told apart by ``source`` (``log`` or ``automatic``) and ``rule``; ``KEY`` is the row changed
(a repeat instance's KEY for a repeat's answer).
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pandas as pd

from dhsurvey.errors import DhsurveyError
from dhsurvey.ingest.canonical import RawForm

COLUMNS = ["instanceID", "field", "old_value", "new_value", "reason", "author"]
#: Columns of the corrections report: the log's own, the row changed, how it was applied.
REPORT_COLUMNS = ["instanceID", "KEY", "field", "old_value", "new_value", "reason", "author",
                  "form", "status", "rule", "source"]
#: The report's ``rule`` of a correction from the log (automatic ones name their own).
LOGGED = "corrections-log"


def read_corrections(path: str | Path) -> pd.DataFrame:
    """A corrections log from CSV or XLSX, checked for its columns."""
    path = Path(path)
    if not path.exists():
        raise DhsurveyError("corrections log not found", code="corrections-missing", file=path)
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        table = pd.read_excel(path, dtype=str)
    else:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise DhsurveyError(f"corrections log lacks column(s) {', '.join(missing)}",
                            code="corrections-columns", file=path, row=1)
    table = table[COLUMNS].fillna("")
    empty = table[(table["instanceID"] == "") | (table["field"] == "") |
                  (table["reason"] == "") | (table["author"] == "")]
    if len(empty):
        raise DhsurveyError("every correction needs instanceID, field, reason and author",
                            code="corrections-incomplete", file=path, row=int(empty.index[0]) + 2)
    return table


def apply_corrections(raw: RawForm, corrections: pd.DataFrame) -> tuple[RawForm, pd.DataFrame]:
    """A corrected copy of ``raw`` and a report: one row per correction with its status.

    Status: ``applied``; ``already-applied`` (the value is already the new one);
    ``conflict`` (the current value is neither old nor new); ``unknown-instance`` or
    ``unknown-field`` (for another form, or a typo). An empty new value clears the answer.
    """
    root = raw.root.copy()
    position = {key: i for i, key in enumerate(root["KEY"])}
    statuses = []
    for row in corrections.itertuples(index=False):
        i = position.get(row.instanceID)
        if i is None:
            statuses.append("unknown-instance")
            continue
        if row.field not in root.columns:
            statuses.append("unknown-field")
            continue
        column = cast(int, root.columns.get_loc(row.field))  # column names are unique
        current = root.iat[i, column]
        current = "" if current is None or (isinstance(current, float) and pd.isna(current)) \
            else str(current)
        if current == row.new_value:
            statuses.append("already-applied")
        elif current == row.old_value:
            root.iat[i, column] = row.new_value or None
            statuses.append("applied")
        else:
            statuses.append("conflict")
    report = corrections.assign(KEY=corrections["instanceID"], form=raw.form_id,
                                status=statuses, rule=LOGGED, source="log")
    report = report[report["status"] != "unknown-instance"][REPORT_COLUMNS]
    return RawForm(raw.form_id, root, raw.repeats, raw.quarantine), report.reset_index(drop=True)
