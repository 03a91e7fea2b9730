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
  earliest received that validation does not quarantine, or, when every copy is quarantined,
  the earliest (kept in quarantine). Copies received after the kept one are its duplicates;
  copies received before it stay in quarantine with their own errors (that is why they were
  not kept). So a clean later copy is never set aside for a quarantined first one, and no
  copy is a duplicate of a quarantined one unless no copy is clean.

Every submission ends in exactly one of accepted, quarantined or duplicates; a duplicate's own
issues are not reported (its kept copy's are).
"""

from __future__ import annotations

import pandas as pd

from dhsurvey.ingest.canonical import DEPRECATED_ID

#: The edited submission's column naming the instanceID it replaces (ODK's deprecatedID).
DEPRECATED = DEPRECATED_ID
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
    copies, kept = _empty(), dict[str, str]()
    if usable and len(rest):
        copies, kept = _copies(rest, usable, quarantined)
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


def _copies(root: pd.DataFrame, ids: list[str], quarantined: set[str]
            ) -> tuple[pd.DataFrame, dict[str, str]]:
    """Copies received after the copy kept of their interview, and duplicate → kept KEY."""
    order = root.assign(_t=pd.to_datetime(root["submission_time"], utc=True, errors="coerce"))
    order = order.sort_values("_t", kind="stable", na_position="last").reset_index(drop=True)
    # The interview each row is a copy of (missing identifiers compare equal, as before).
    group = order.groupby(ids, sort=False, dropna=False).ngroup()
    bad = order["KEY"].isin(quarantined)
    # Kept: the first copy in time order that is not quarantined, else the first.
    first_good = pd.Series(order.index, index=order.index)[~bad].groupby(group[~bad]).min()
    first = pd.Series(order.index, index=order.index).groupby(group).min()
    kept_at = first_good.reindex(first.index).fillna(first).astype(int)
    at = kept_at.reindex(group.to_numpy()).to_numpy()
    later = order.index.to_numpy() > at
    keys = order["KEY"].to_numpy()
    dups = order[later]
    of = keys[at[later]]
    out = pd.DataFrame({"instanceID": dups["KEY"].to_numpy(), "duplicate_of": of,
                        "submission_time": dups["submission_time"].to_numpy(),
                        "reason": "copy"}, columns=COLUMNS)
    return out, dict(zip(out["instanceID"], out["duplicate_of"], strict=True))
