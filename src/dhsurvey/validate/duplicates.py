"""Which submission stands for an interview received more than once.

Two ways an interview arrives twice, each decided by a rule of its own:

- **Edits** (reason ``edited``): an ODK Central edit is a new submission whose
  ``deprecated_id`` (the instance's ``meta/deprecatedID``) names the instanceID it replaces.
  The edited submission is set aside as a duplicate of its replacement, whatever either one's
  errors: the edit is the server's current version, the earlier one is not a fallback. Chains
  (an edit of an edit) resolve to the last edit; an edit whose original was not received is
  simply a submission; two edits of one submission: the later received replaces it.
- **Copies** (reason ``copy``): submissions with the same identifying answers (the fields of
  the form's ``instance_name``), e.g. sent again from another tablet. The copy kept is the
  earliest received that validation does not quarantine; only when every copy is quarantined
  is the earliest kept (in quarantine) — so a clean later copy is never set aside for a
  quarantined first one. Every other copy is a duplicate of the kept one.

Every submission ends in exactly one of accepted, quarantined or duplicates; a duplicate's own
issues are not reported (its kept copy's are).
"""

from __future__ import annotations

import pandas as pd

#: The edited submission's column naming the instanceID it replaces (Central's deprecatedID).
DEPRECATED = "deprecated_id"
COLUMNS = ["instanceID", "duplicate_of", "submission_time", "reason"]


def _empty() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})


def replaced_by(root: pd.DataFrame) -> dict[str, str]:
    """Edited instanceID → the last edit that replaces it (chains followed to their end).

    A ``deprecated_id`` naming no submission received, or the submission itself, is ignored;
    a table without the column has no edits.
    """
    if DEPRECATED not in root.columns or root.empty:
        return {}
    keys = set(root["KEY"])
    edits = root[root[DEPRECATED].notna() & root[DEPRECATED].isin(keys) &
                 (root[DEPRECATED] != root["KEY"])]
    received = pd.to_datetime(edits["submission_time"], utc=True, errors="coerce")
    # Two edits of one submission: the later received wins (sorted last, kept last).
    edits = edits.assign(_t=received).sort_values("_t", kind="stable", na_position="first")
    step = dict(zip(edits[DEPRECATED], edits["KEY"], strict=True))
    out = {}
    for old in step:
        new, seen = step[old], {old}
        while new in step and new not in seen:  # a cycle (corrupt metadata) stops where it closes
            seen.add(new)
            new = step[new]
        out[old] = new
    return out


def find_duplicates(root: pd.DataFrame, ids: list[str], quarantined: set[str]) -> pd.DataFrame:
    """Edited submissions and later copies (:data:`COLUMNS`), given the instanceIDs validation
    quarantines (``quarantined``) — the copy kept is the earliest one not among them."""
    edited = replaced_by(root)
    rest = root[~root["KEY"].isin(set(edited))]
    usable = [c for c in ids if c in rest.columns]
    copies = _empty()
    kept: dict[str, str] = {}
    if usable and len(rest):
        order = rest.assign(_bad=rest["KEY"].isin(quarantined),
                            _t=pd.to_datetime(rest["submission_time"], utc=True,
                                              errors="coerce"))
        order = order.sort_values(["_bad", "_t"], kind="stable", na_position="last")
        first = order.drop_duplicates(usable, keep="first")
        later = order[order.duplicated(usable, keep="first")]
        if len(later):
            of = first.set_index(usable)["KEY"].reindex(
                pd.MultiIndex.from_frame(later[usable]) if len(usable) > 1
                else pd.Index(later[usable[0]])).to_numpy()
            kept = dict(zip(later["KEY"], of, strict=True))
            copies = pd.DataFrame({"instanceID": later["KEY"].to_numpy(), "duplicate_of": of,
                                   "submission_time": later["submission_time"].to_numpy(),
                                   "reason": "copy"})
    if not edited:
        return copies.reset_index(drop=True)
    at = root.drop_duplicates("KEY").set_index("KEY")["submission_time"]
    edits = pd.DataFrame({"instanceID": list(edited),
                          # The replacement may itself be a copy: point at what stands for both.
                          "duplicate_of": [kept.get(new, new) for new in edited.values()],
                          "submission_time": at.reindex(list(edited)).to_numpy(),
                          "reason": "edited"})
    parts = [p for p in (copies, edits) if len(p)]
    return pd.concat(parts, ignore_index=True)[COLUMNS]
