"""Release IDs: fresh random record, household, stratum and PSU codes, and their mappings.

Why fresh codes per release: the instanceID, the household's own ID (the fields the forms
declare as ``household_id``, e.g. cluster and household number) and the stratum's name
would let anyone holding two releases (or the field files) join them record by record.
Every release draws new codes from its own random generator; only the restricted mappings
(``records``, ``households``, ``strata``, ``psu``) join them back, and those never leave
the restricted zone. The household's keyed HMAC pseudonym stays in the mapping, so a
household keeps one identity across releases for those allowed to hold it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from dhsurvey.anonymise.pseudonym import id_text, numbered, pseudonym
from dhsurvey.anonymise.working import WorkingForm
from dhsurvey.fieldwork.config import CountryConfig

#: HMAC purpose of the household pseudonym in the restricted mapping.
HOUSEHOLD_PURPOSE = "release-household"

#: Design variables added to the released tables.
DESIGN = ["stratum", "psu"]

#: Households whose pseudonyms are computed at once (their text goes to Arrow per block).
_PSEUDONYM_BLOCK = 100_000

#: Prefix of the ID frame's columns that hold the household ID fields (``_hh:cluster``, ...).
HOUSEHOLD_COLUMN = "_hh:"


def household_numbers(table: pd.DataFrame, household_id: Sequence[str]) -> list[np.ndarray]:
    """The household's own ID, one array per field of ``household_id`` (the forms'
    :attr:`~dhsurvey.forms.model.FormModel.household_id`, e.g. cluster and hh_number), as
    whole numbers, NaN when missing."""
    return [np.trunc(pd.to_numeric(table[c], errors="coerce").astype(float)
                     .to_numpy(dtype=float, na_value=np.nan))
            for c in household_id]


def _household_pseudonyms(parts: Sequence[np.ndarray], config: CountryConfig,
                          key: bytes) -> pd.api.extensions.ExtensionArray:
    """HMAC pseudonym of ``HH-<country>-<field>-<field>...`` per household, the fields of its
    ID in order (``HH-<country>-<cluster>-<hh_number>``). Arrow text: a million pseudonyms as
    one buffer, not a million Python strings."""
    import pyarrow as pa

    prefix = f"HH-{config.code}-"
    n = len(parts[0]) if parts else 0
    blocks = [pa.array([pseudonym(key, HOUSEHOLD_PURPOSE,
                                  prefix + "-".join(map(str, map(int, values))))
                        for values in zip(*(p[i:i + _PSEUDONYM_BLOCK] for p in parts),
                                          strict=True)],
                       type=pa.string())
              for i in range(0, n, _PSEUDONYM_BLOCK)]
    text = pa.chunked_array(blocks, type=pa.string()).combine_chunks()
    return pd.array(text, dtype="string[pyarrow]")


def _id_value(value: Any) -> Any:
    """1.0 -> 1: cluster numbers pass through a float column when a form has none."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return int(value)
    return value.item() if hasattr(value, "item") else value


def _random_codes(values: Iterable[Any], rng: np.random.Generator) -> dict[Any, int]:
    """A random permutation of 1..n over the distinct values: a fresh code per release."""
    distinct = sorted({_id_value(v) for v in values if not pd.isna(v)},
                      key=lambda v: (not isinstance(v, int), v if isinstance(v, int) else 0,
                                     str(v)))
    codes = rng.permutation(len(distinct)) + 1
    return {v: int(c) for v, c in zip(distinct, codes, strict=True)}


def _coded(values: pd.Series, codes: dict[Any, int]) -> pd.api.extensions.ExtensionArray:
    """Each value's code (Int64), looked up once per distinct value."""
    at, distinct = pd.factorize(values, use_na_sentinel=True)
    table = np.array([codes[_id_value(v)] for v in distinct] + [0], dtype=np.int64)
    return pd.arrays.IntegerArray(table[at], at < 0)


def _household_codes(parts: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Each row's household (-1 when a field of its ID is missing), households numbered in
    order of first appearance, and each household's ID fields (one array per field)."""
    valid = ~np.logical_or.reduce([np.isnan(p) for p in parts])
    at = np.zeros(int(valid.sum()), dtype=np.int64)
    for j, part in enumerate(parts):
        field, distinct = pd.factorize(part[valid])
        # Kept dense (renumbered after each field), so any number of fields fits in int64.
        at = field.astype(np.int64) if j == 0 else \
            pd.factorize(at * max(len(distinct), 1) + field)[0].astype(np.int64)
    codes = np.full(len(valid), -1, dtype=np.int64)
    codes[valid] = at
    _, first = np.unique(at, return_index=True)  # each household's first row
    return codes, [p[valid][first] for p in parts]


def assign_ids(forms: dict[str, WorkingForm], ids: dict[str, pd.DataFrame],
               rng: np.random.Generator, config: CountryConfig, key: bytes
               ) -> dict[str, pd.DataFrame]:
    """record_id, hh_id, stratum and psu codes for every form; the restricted mappings.

    ``ids`` holds each form's ID frame (form, KEY, the fields of the household's ID as
    ``_hh:<field>`` columns (:func:`household_numbers`) when the form has them, stratum and
    cluster when weighted), row for row with its table. The IDs go into the
    tables as numbers (UInt64) and are written as text at the end (:func:`text_ids`); the
    restricted mappings hold their text in Arrow columns. Weighted forms get ``stratum`` as
    their first (most important) key.
    """
    names = list(forms)
    all_ids = pd.concat([ids[f] for f in names], ignore_index=True)
    lengths = [len(ids[f]) for f in names]
    starts = np.cumsum([0, *lengths])

    codes, distinct = pd.factorize(all_ids["KEY"], use_na_sentinel=True)
    record, _ = numbered(codes, len(distinct), rng)
    del codes, distinct
    restricted: dict[str, pd.DataFrame] = {}
    records = pd.DataFrame({"form": all_ids["form"].astype("category"), "KEY": all_ids["KEY"],
                            "record_id": id_text(record)})
    household = [c for c in all_ids.columns if str(c).startswith(HOUSEHOLD_COLUMN)]
    if household:
        # One household per value of its ID fields in order of first appearance, as a
        # factorisation of the pseudonyms would give; one HMAC per household.
        codes, parts = _household_codes([all_ids.pop(c).to_numpy(dtype=float)
                                         for c in household])
        hh, numbers = numbered(codes, len(parts[0]), rng)
        names_ = _household_pseudonyms(parts, config, key)
        restricted["households"] = pd.DataFrame({"hh_pseudonym": names_,
                                                 "hh_id": id_text(numbers)})
        # A record's household by its release ID; the households' mapping gives its
        # pseudonym (one pseudonym per household, not one per record).
        records["hh_id"] = id_text(hh)
        del codes, parts, numbers, names_
    restricted["records"] = records
    if "stratum" in all_ids.columns:
        strata = _random_codes(pd.unique(all_ids["stratum"]), rng)
        psus = _random_codes(pd.unique(all_ids["cluster"]), rng)
        restricted["strata"] = pd.DataFrame({"stratum": list(strata),
                                             "stratum_code": list(strata.values())})
        restricted["psu"] = pd.DataFrame({"cluster": list(psus), "psu": list(psus.values())})
    for i, f in enumerate(names):
        rows = slice(starts[i], starts[i + 1])
        head = pd.DataFrame({"record_id": record[rows]})
        if any(str(c).startswith(HOUSEHOLD_COLUMN) for c in ids[f].columns):
            # A form of households (then every form's households were numbered).
            head["hh_id"] = hh[rows]
        if forms[f].weighted:
            part = all_ids.iloc[rows]
            head["stratum"] = _coded(part["stratum"], strata)
            head["psu"] = _coded(part["cluster"], psus)
            forms[f].keys = ["stratum", *forms[f].keys]
        forms[f].table = pd.concat([head, forms[f].table.reset_index(drop=True)], axis=1)
    return restricted


def text_ids(table: pd.DataFrame) -> pd.DataFrame:
    """record_id and hh_id as released: 16 hex digits (pandas ``string``), in place."""
    for col in ("record_id", "hh_id"):
        if col in table.columns and not pd.api.types.is_string_dtype(table[col]):
            table[col] = pd.array(np.asarray(id_text(table[col].array), dtype=object),
                                  dtype="string")
    return table
