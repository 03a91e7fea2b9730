"""The pooled release: every country's released tables in one file per table.

Why a separate step and not a bigger country release: each country's release has passed its
own disclosure gate, and pooling anonymised tables adds no key a country file lacks (every
record already names its country). So the pooled files are built from the country *release*
tables, never from the clean data, and only three things change:

- **Design codes.** Stratum and PSU codes are scrambled per country (1…n each), so they are
  renumbered to be unique across countries: pooled codes follow (country, code) order.
- **Replicate weights.** Countries are independent samples, so the pooled replicate set is the
  union of the countries' replicates: in the block of country c, c's rows carry their
  replicate weight and every other row its full-sample weight; the multipliers are the
  countries' own. The JKn variance of any pooled estimate is then exact, not approximated.
- **Weights** stay as released: ``weight`` expands to each country's population, so pooled
  estimates describe all the countries' children together (large countries count more);
  ``weight_norm`` has mean 1 within each country (each country counts by its sample size).

Record and household IDs are random 16-hex strings per release and stay unique; pooling
refuses to go on if two countries' IDs collide. Recodes stay as each country's gate needed
them: a rare category merged in one country (code 995) is merged for that country's records
only, and the pooled labels name every merge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from dhsurvey.anonymise.release import DESIGN
from dhsurvey.errors import DhsurveyError
from dhsurvey.release.design import by_file
from dhsurvey.weight.study import REPLICATE, replicate_names

ID_COLUMNS = ("record_id",)


@dataclass
class PooledRelease:
    """Pooled tables, the pooled replicate description per table (or None) and notes for the
    reader."""

    tables: dict[str, pd.DataFrame]
    replicates: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)


def _renumber(parts: list[pd.DataFrame], column: str) -> None:
    """Pooled codes 1..n over (country, code), the same in every table of the release."""
    pairs = sorted({(iso, int(v)) for part in parts if column in part
                    for iso, v in zip(part["_country"], part[column], strict=True)
                    if pd.notna(v)})
    code = {pair: i for i, pair in enumerate(pairs, start=1)}
    for part in parts:
        if column in part:
            part[column] = pd.array([code.get((iso, int(v))) if pd.notna(v) else None
                                     for iso, v in zip(part["_country"], part[column],
                                                       strict=True)], dtype="Int64")


def pool_release(countries: Mapping[str, Mapping[str, pd.DataFrame]],
                 replicates: Mapping[str, Mapping[str, Any] | None],
                 margins: Sequence[str] = ()) -> PooledRelease:
    """Pool the released tables of several countries (``countries[iso][table]``).

    ``replicates[iso]`` describes the country's replicate weights per table (table →
    method, scale, rscales; or one description for every table) or is None. The pooled
    description is per table too. Countries are taken in ISO order, so the same inputs give
    the same bytes. ``margins``: the margin variables; a table whose margin variables some
    country withheld (too few respondents in a cell) is pooled without them, since a pooled
    design can only be raked again where every country's records carry them.
    """
    if len(countries) < 2:
        raise DhsurveyError("a pooled release needs at least two countries",
                            code="pooled-countries")
    order = sorted(countries)
    names = list(dict.fromkeys(n for iso in order for n in countries[iso]))
    notes: list[str] = []
    parts: dict[str, list[pd.DataFrame]] = {}
    for name in names:
        missing = [iso for iso in order if name not in countries[iso]]
        if missing:
            raise DhsurveyError(f"table {name!r} is missing from the release of {missing}",
                                code="pooled-tables", field=name)
        parts[name] = [countries[iso][name].reset_index(drop=True).assign(_country=iso)
                       for iso in order]
        carried = [m for m in margins if any(m in p.columns for p in parts[name])]
        withheld = [iso for iso, p in zip(order, parts[name], strict=True)
                    if any(m not in p.columns for m in carried)]
        if carried and withheld:
            parts[name] = [p.drop(columns=carried, errors="ignore") for p in parts[name]]
            notes.append(f"{name}: the margin variables ({', '.join(carried)}) are left out "
                         f"of the pooled file: {', '.join(withheld)} withheld them, so the "
                         "pooled weights are used as released, not raked again")
    everything = [p for ps in parts.values() for p in ps]
    for column in DESIGN:
        _renumber(everything, column)

    per_file = {iso: by_file(given) if (given := replicates.get(iso)) else {}
                for iso in order}
    pooled_reps: dict[str, dict[str, Any]] = {}
    tables: dict[str, pd.DataFrame] = {}
    for name in names:
        frames = parts[name]
        reps = [c for c in frames[0].columns if REPLICATE.match(str(c))]
        rep_info = _replicate_blocks(order, {iso: per_file[iso].get(name)
                                             for iso in order}, notes) if reps else None
        if reps and rep_info is not None:
            frames = _pool_replicates(frames, order, rep_info)
            pooled_reps[name] = rep_info
        elif reps:
            frames = [f.drop(columns=[c for c in f.columns if REPLICATE.match(str(c))])
                      for f in frames]
        table = pd.concat(frames, ignore_index=True).drop(columns="_country")
        for column in ID_COLUMNS:
            if column in table and table[column].dropna().duplicated().any():
                raise DhsurveyError(f"{column} values repeat across countries in {name!r}",
                                    code="pooled-ids", field=column)
        tables[name] = table
    return PooledRelease(tables, pooled_reps or None, list(dict.fromkeys(notes)))


def _replicate_blocks(order: list[str], replicates: Mapping[str, Mapping[str, Any] | None],
                      notes: list[str]) -> dict[str, Any] | None:
    """Which pooled replicate columns belong to which country, and their multipliers."""
    given = {iso: replicates.get(iso) or {} for iso in order}
    lacking = [iso for iso in order if not given[iso].get("rscales")]
    if lacking:
        notes.append(f"no pooled replicate weights: {', '.join(lacking)} released none; "
                     "use Taylor linearisation (stratum, psu, weight)")
        return None
    scales = {float(given[iso].get("scale", 1.0)) for iso in order}
    if len(scales) > 1:
        raise DhsurveyError(f"countries' replicate scales differ ({sorted(scales)})",
                            code="pooled-replicates")
    blocks, rscales, start = {}, [], 0
    for iso in order:
        r = [float(v) for v in given[iso]["rscales"]]
        blocks[iso] = (start, start + len(r))
        rscales += r
        start += len(r)
    notes.append("pooled replicate weights: each country's own JKn replicates, the other "
                 "countries at their full-sample weight")
    return {"method": "JKn", "scale": scales.pop(), "rscales": rscales, "count": start,
            "blocks": {iso: list(b) for iso, b in blocks.items()},
            "note": "JKn, the union of the countries' replicates (countries are independent "
                    "samples)"}


def _pool_replicates(frames: list[pd.DataFrame], order: list[str], info: dict[str, Any]
                     ) -> list[pd.DataFrame]:
    total = info["count"]
    names = replicate_names(total)
    out = []
    for iso, frame in zip(order, frames, strict=True):
        own = [c for c in frame.columns if REPLICATE.match(str(c))]
        lo, hi = info["blocks"][iso]
        if len(own) != hi - lo:
            raise DhsurveyError(f"{iso} has {len(own)} replicate columns, its summary "
                                f"{hi - lo}", code="pooled-replicates")
        weight = frame["weight"].to_numpy(dtype=float)
        values = np.repeat(weight[:, None], total, axis=1)
        values[:, lo:hi] = frame[own].to_numpy(dtype=float)
        rest = frame.drop(columns=own)
        out.append(pd.concat([rest, pd.DataFrame(values, columns=names, index=rest.index)],
                             axis=1))
    return out


__all__ = ["PooledRelease", "pool_release"]
