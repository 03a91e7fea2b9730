"""Local suppression of a release, file by file: which keys are blanked first, and the pass.

Why an order: sdcMicro's ``localSuppression`` blanks the least important key of a
violating record first. Analysts need the stratum and region (design domains) and the
child's age and sex more than, say, school level, so every form has a default order
(:data:`DEFAULT_IMPORTANCE`), overridable per release. The linked household profile
(:mod:`~dhsurvey.anonymise.linked`) interleaves the forms' orders, the child's first.
The engine itself is :func:`~dhsurvey.anonymise.suppress.local_suppression`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from dhsurvey.anonymise.suppress import local_suppression
from dhsurvey.anonymise.working import WorkingForm

#: Default importance per form, most important first (least important is suppressed first).
#: Keys a form has but this list does not name are appended (suppressed before all listed).
DEFAULT_IMPORTANCE: dict[str, list[str]] = {
    "household": ["stratum", "region", "urban_rural", "n_members", "n_eligible"],
    "child": ["stratum", "region", "age_now", "child_sex", "in_school", "school_level"],
    "caregiver": ["stratum", "region", "cg_sex", "cg_relation", "cg_age", "cg_educ"],
    # Frontline workers: a purposive sample analysed by agency and role, not by region.
    "frontline_worker": ["org_type", "role", "region", "years_service"],
}

#: Name of the linked household profile in a release's report and ``importance`` option.
LINKED = "linked"

#: Round-robin order of the forms in the linked profile: the child's keys first.
LINK_PRIORITY = ("child", "caregiver", "household")


def importance(keys: list[str], preferred: Sequence[str]) -> list[str]:
    """Keys most important first: ``preferred`` order, unlisted keys after (suppressed first)."""
    listed = [k for k in preferred if k in keys]
    return listed + [k for k in keys if k not in listed]


def form_importance(form: WorkingForm, preferred: Mapping[str, list[str]]) -> list[str]:
    """A form's keys in suppression order: the release's order for it, else the default."""
    return importance(form.keys, preferred.get(form.name, DEFAULT_IMPORTANCE.get(form.name, [])))


def linked_importance(forms: Mapping[str, WorkingForm], keys: list[str],
                      preferred: Sequence[str] | None) -> list[str]:
    """Shared keys (stratum, region), then the forms' own orders interleaved, child first."""
    if preferred is not None:
        return importance(keys, preferred)
    linked = sorted((f for f in forms.values() if "hh_id" in f.table.columns),
                    key=lambda f: (LINK_PRIORITY.index(f.name) if f.name in LINK_PRIORITY
                                   else len(LINK_PRIORITY), f.name))
    own = {f.name: importance(f.keys, DEFAULT_IMPORTANCE.get(f.name, [])) for f in linked}
    shared = [k for k in keys if ":" not in k]
    shared.sort(key=lambda k: min(o.index(k) for o in own.values() if k in o))
    orders = [[f"{name}:{k}" for k in o if f"{name}:{k}" in keys] for name, o in own.items()]
    rest: list[str] = []
    for i in range(max((len(o) for o in orders), default=0)):
        rest += [o[i] for o in orders if i < len(o)]
    return importance(keys, shared + rest)


def restore_dtypes(table: pd.DataFrame, original: pd.DataFrame, keys: list[str]) -> None:
    """local_suppression widens Int64 to Float64 to hold missing values; narrow them back,
    so Stata and SPSS files keep integer codes."""
    for key in keys:
        if original[key].dtype == "Int64" and table[key].dtype != "Int64":
            table[key] = table[key].astype("Float64").round().astype("Int64")


def suppress_form(form: WorkingForm, k: int, order: list[str]) -> None:
    """Make one form k-anonymous on its keys, blanking in ``order`` (least important last in
    the list, blanked first); counts go to ``form.suppressed``."""
    if not form.keys or form.table.empty:
        return
    weight = "weight" if form.weighted else None
    result = local_suppression(form.table, form.keys, k, importance=order, weight=weight)
    restore_dtypes(result.data, form.table, form.keys)
    for key_col, n in result.suppressions.items():
        if n:
            form.suppressed[key_col] = form.suppressed.get(key_col, 0) + n
    form.table = result.data
