"""Fieldwork faults planted in clean simulated submissions, each recorded in a manifest.

Validation is only trustworthy if it catches what goes wrong in the field. Each fault kind here
is one that data managers see in real surveys; the manifest lists every planted fault by form,
instanceID and kind, so a test can demand that validation catches all of them (recall) and
quarantines nothing else (no false rejects).
"""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pandas as pd

from dhsurvey.errors import DhsurveyError
from dhsurvey.fieldwork.simulate import SimulatedCountry, completed_with_child, instance_ids
from dhsurvey.forms.facts import gates_passed
from dhsurvey.forms.frames import PARENT
from dhsurvey.forms.model import FormModel
from dhsurvey.ingest.canonical import repeat_key

KINDS = (
    "duplicate",  # the same household submitted twice under a new instanceID
    "speeder",  # a child interview far too short to be real
    "out_of_range",  # a number beyond its constraint (entered on a form without it)
    "non_relevant",  # an answer to a question the skip logic hides
    "orphan_child",  # a child record whose household does not exist
    "wrong_child",  # a child interview with a roster line other than the selected child
    "outdated_version",  # a submission made with an older form version
    "missing_required",  # a required answer missing where the question is relevant
)
OUTDATED = "2025-pilot"


def parse_faults(spec: str | None) -> list[str]:
    """``all``, ``none``/empty, or a comma list of :data:`KINDS`."""
    if not spec or spec == "none":
        return []
    if spec == "all":
        return list(KINDS)
    kinds = [k.strip() for k in spec.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise DhsurveyError(f"unknown fault kind(s) {unknown}; choose from {', '.join(KINDS)} "
                            "or 'all'", code="faults-unknown")
    return kinds


class _Planter:
    """Plants faults on distinct rows so each one stays attributable to one kind."""

    def __init__(self, sim: SimulatedCountry, models: dict[str, FormModel],
                 rng: np.random.Generator) -> None:
        self.sim = sim
        self.models = models
        self.rng = rng
        self.used: set[str] = set()

    def rows(self, form: str, n: int, where: pd.Series | None = None) -> list[int]:
        root = self.sim.forms[form].root
        ok = ~root["KEY"].isin(self.used)
        if where is not None:
            ok &= where.fillna(False).astype(bool)
        candidates = np.flatnonzero(ok.to_numpy())
        if len(candidates) == 0:
            return []
        chosen = np.sort(self.rng.choice(candidates, min(n, len(candidates)), replace=False))
        self.used.update(root["KEY"].iloc[chosen])
        return [int(i) for i in chosen]

    def record(self, form: str, row: int, kind: str, field: str | None, detail: str) -> None:
        key = self.sim.forms[form].root["KEY"].iloc[row]
        self.sim.faults.append({"form": form, "instanceID": key, "kind": kind,
                                "field": field, "detail": detail})

    def interviewed(self, form: str) -> pd.Series:
        """The form's interviews past every consent gate (child: permission and assent)."""
        return gates_passed(self.sim.forms[form].root, self.models[form].consent_given)

    def set(self, form: str, row: int, column: str, value: str | None) -> None:
        root = self.sim.forms[form].root
        at = root.columns.get_loc(column)
        if not isinstance(at, int):
            raise ValueError(f"column {column} of {form} is not unique")
        root.iloc[row, at] = value

    # -- kinds --------------------------------------------------------------------------------
    def duplicate(self, n: int) -> None:
        raw = self.sim.forms["household"]
        root = raw.root
        for row in self.rows("household", n,
                             completed_with_child(root, self.models["household"])):
            copy = root.iloc[[row]].copy()
            original = copy["KEY"].iloc[0]
            new_key = instance_ids(self.rng, 1)[0]
            copy["KEY"] = new_key
            # Sent again from another tablet a few hours later.
            sent = dt.datetime.fromisoformat(copy["submission_time"].iloc[0].replace("Z", ""))
            later = sent + dt.timedelta(hours=int(self.rng.integers(2, 30)))
            copy["submission_time"] = later.strftime("%Y-%m-%dT%H:%M:%S.000Z")
            raw.root = pd.concat([raw.root, copy], ignore_index=True)
            for name, table in raw.repeats.items():
                rows = table[table[PARENT] == original].copy()
                positions = range(1, len(rows) + 1)
                rows["KEY"] = [repeat_key(new_key, self.models["household"], name, i)
                               for i in positions]
                rows[PARENT] = new_key
                raw.repeats[name] = pd.concat([table, rows], ignore_index=True)
            self.used.add(new_key)
            self.sim.faults.append({"form": "household", "instanceID": new_key,
                                    "kind": "duplicate", "field": None,
                                    "detail": f"duplicate of {original}"})

    def speeder(self, n: int) -> None:
        root = self.sim.forms["child"].root
        for row in self.rows("child", n, self.interviewed("child")):
            start = dt.datetime.fromisoformat(root["start"].iloc[row])
            end = (start + dt.timedelta(minutes=4)).isoformat(timespec="milliseconds")
            self.set("child", row, "end", end)
            self.record("child", row, "speeder", "end", "interview of 4 minutes")

    def out_of_range(self, n: int) -> None:
        for form in ("household", "child"):
            model, root = self.models[form], self.sim.forms[form].root
            # Answers only: identifiers (what instance_name is built from) would also orphan
            # the household's other interviews, which is a different fault.
            ids = set(model.instance_fields)
            bounded = [(f.name, int(m.group(1))) for f in model.fields_in(None)
                       if f.type == "integer" and f.name not in ids
                       and (m := re.search(r"\.\s*<=\s*(\d+)\b", f.constraint))]
            for row in self.rows(form, n, root[[b for b, _ in bounded]].notna().any(axis=1)):
                answered = [(b, hi) for b, hi in bounded if root[b].iloc[row] is not None]
                name, hi = answered[int(self.rng.integers(len(answered)))]
                self.set(form, row, name, str(hi + 37))
                self.record(form, row, "out_of_range", name, f"{hi + 37} > {hi}")

    def non_relevant(self, n: int) -> None:
        form = "child"
        model, root = self.models[form], self.sim.forms[form].root
        hidden = [f.name for f in model.fields_in(None)
                  if f.is_select_one and f.relevant]
        has_hidden = root[hidden].isna().any(axis=1)
        for row in self.rows(form, n, self.interviewed(form) & has_hidden):
            empty = [h for h in hidden if root[h].iloc[row] is None]
            name = empty[int(self.rng.integers(len(empty)))]
            choices = model.choices_for(model[name])
            if choices is None:
                raise ValueError(f"{name} of {form} has no choice list")
            code = choices.codes()[0]
            self.set(form, row, name, code)
            self.record(form, row, "non_relevant", name, f"answered {code} although hidden")

    def orphan_child(self, n: int) -> None:
        number = self.models["child"].household_id[-1]  # the household's own number
        for row in self.rows("child", n):
            self.set("child", row, number, "999")
            self.record("child", row, "orphan_child", number, "no household 999")

    def wrong_child(self, n: int) -> None:
        child = self.sim.forms["child"].root
        ids = list(self.models["child"].household_id)
        hh = (self.sim.forms["household"].root.drop_duplicates(ids).set_index(ids).sort_index())
        roster = self.sim.forms["household"].repeats["roster"]
        for row in self.rows("child", n):
            key = tuple(child[c].iloc[row] for c in ids)
            members = roster[roster[PARENT] == hh.loc[key, "KEY"]]
            others = [line for line in members["line"] if line != child["child_line"].iloc[row]]
            if not others:
                continue
            line = others[int(self.rng.integers(len(others)))]
            self.set("child", row, "child_line", line)
            self.record("child", row, "wrong_child", "child_line",
                        f"line {line} instead of the selected child")

    def outdated_version(self, n: int) -> None:
        for form in ("household", "child"):
            for row in self.rows(form, n):
                self.set(form, row, "form_version", OUTDATED)
                self.record(form, row, "outdated_version", "form_version", OUTDATED)

    def missing_required(self, n: int) -> None:
        form = "child"
        model, root = self.models[form], self.sim.forms[form].root
        required = [f.name for f in model.fields_in(None) if f.is_input and f.required == "yes"]
        for row in self.rows(form, n, self.interviewed(form)):
            answered = [r for r in required if root[r].iloc[row] is not None]
            name = answered[int(self.rng.integers(len(answered)))]
            self.set(form, row, name, None)
            self.record(form, row, "missing_required", name, "answer removed")


def inject_faults(sim: SimulatedCountry, models: dict[str, FormModel], kinds: list[str],
                  rng: np.random.Generator, per_kind: int = 3) -> list[dict]:
    """Plant ``per_kind`` faults of each kind; returns (and keeps) the manifest entries."""
    planter = _Planter(sim, models, rng)
    for kind in kinds:
        getattr(planter, kind)(per_kind)
    return sim.faults
