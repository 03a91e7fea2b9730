"""Canaries: fake identifiers planted in restricted fields, so a test can prove none leaks.

Why in the simulator: a canary is test data. The simulator plants them in the submissions
it writes (:func:`dhsurvey.fieldwork.simulate.plant_canaries`, listed in ``faults.json``),
tests plant them in accepted tables (:func:`plant_canaries`), and the release scan is given
the planted values and must find none of them in any release file. The release stages
never import this module: they get the values, not the generator.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
import pandas as pd

from dhsurvey.errors import DhsurveyError
from dhsurvey.forms.model import FormModel

#: First names of name canaries (common Swahili names, so they look like a respondent's).
CANARY_NAMES = ("Zawadi", "Baraka", "Neema", "Juma", "Imani", "Tumaini", "Amani", "Subira")


def canary_values(n: int, rng: np.random.Generator) -> list[str]:
    """``n`` unique fake identifiers cycling name, phone, e-mail, GPS string.

    Realistic in shape (a Kenyan mobile number in international format, a geopoint as ODK
    writes it) so pattern scanners and humans treat them like the real thing, and tagged
    ("Canary", "canary.") so nobody mistakes one for a respondent.
    """
    if n < 0 or n > 9000:
        raise DhsurveyError("n must be between 0 and 9000", code="release-bad-argument")
    tags = rng.choice(np.arange(1000, 10000), size=n, replace=False)
    out: list[str] = []
    for i, tag in enumerate(tags):
        kind = i % 4
        if kind == 0:
            out.append(f"{CANARY_NAMES[int(rng.integers(len(CANARY_NAMES)))]} Canary-{tag}")
        elif kind == 1:
            out.append(f"+254 7{int(rng.integers(10, 30))} {int(rng.integers(10, 100))} "
                       f"{tag:04d}")
        elif kind == 2:
            out.append(f"canary.{tag}@example.org")
        else:
            lat = rng.uniform(-4.5, 4.5)
            lon = rng.uniform(34.0, 41.5)
            alt = rng.uniform(0, 2500)
            acc = rng.uniform(3, 15)
            out.append(f"{lat:.6f} {lon:.6f} {alt:.1f} {acc:.1f}")
    if len(set(out)) != len(out):  # a phone or GPS collision: redraw (vanishingly rare)
        return canary_values(n, rng)
    return out


def _model_for_table(name: str, models: Mapping[str, FormModel]) -> FormModel | None:
    """``household`` or ``household/roster`` (any separator) -> the household model."""
    if name in models:
        return models[name]
    head = re.split(r"[/.:\-]", name, maxsplit=1)[0]
    return models.get(head)


def _targets(tables: dict[str, pd.DataFrame], models: Mapping[str, FormModel]
             ) -> list[tuple[str, str, str]]:
    """(table, column, kind) of every restricted column: ``gps``, ``name`` or ``text``."""
    targets = []
    for name, table in tables.items():
        model = _model_for_table(name, models)
        if model is None:
            continue
        for col in table.columns:
            if col not in model:
                continue
            item = model[col]
            if item.pii not in ("direct", "free_text"):
                continue
            kind = "gps" if item.type == "geopoint" else (
                "name" if item.pii == "direct" else "text")
            targets.append((name, col, kind))
    return targets


def plant_canaries(tables: dict[str, pd.DataFrame], models: Mapping[str, FormModel],
                   rng: np.random.Generator, per_field: int = 3) -> list[str]:
    """Write canaries into the restricted fields (direct, free_text) of ``tables``, in place.

    Geopoints get GPS canaries, other direct fields (names) name canaries, free-text fields
    phones, e-mails and names in turn. ``per_field`` random rows of each such column are
    overwritten. Returns every planted value, for
    :func:`~dhsurvey.anonymise.scan.scan_release`.
    """
    planted: list[str] = []
    targets = _targets(tables, models)
    pool = iter(canary_values(4 * per_field * max(len(targets), 1) + 4, rng))
    by_kind: dict[str, list[str]] = {"name": [], "phone": [], "email": [], "gps": []}
    kinds = ("name", "phone", "email", "gps")

    def take(kind: str) -> str:
        while not by_kind[kind]:
            for i in range(4):
                by_kind[kinds[i]].append(next(pool))
        return by_kind[kind].pop()

    for name, col, kind in targets:
        table = tables[name]
        if table.empty:
            continue
        if not (pd.api.types.is_string_dtype(table[col]) or table[col].dtype == object):
            table[col] = table[col].astype("string")
        rows = rng.choice(len(table), size=min(per_field, len(table)), replace=False)
        for j, row in enumerate(sorted(rows)):
            if kind == "text":
                value = take(("phone", "email", "name")[j % 3])
            else:
                value = take(kind)
            at = table.columns.get_loc(col)
            if not isinstance(at, int):
                raise ValueError(f"column {col} of {name} is not unique")
            table.iloc[int(row), at] = value
            planted.append(value)
    return planted
