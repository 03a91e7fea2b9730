"""Exports in, raw zone out: recognise each export, split by country, combine, store.

Every submission that enters is accounted for: it lands in ``raw/<ISO>/<form>.parquet`` or in
that form's quarantine with a rule and a message (an export whose country cannot be told goes to
``raw/_unknown/``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dhsurvey.fieldwork.config import CountryConfig
from dhsurvey.forms.model import FormModel
from dhsurvey.ingest.canonical import QUARANTINE_COLUMNS, RawForm, empty_quarantine
from dhsurvey.ingest.read import read_export_forms
from dhsurvey.ingest.store import combine, write_raw

UNKNOWN = "_unknown"


@dataclass(frozen=True)
class IngestResult:
    country: str
    form_id: str
    submissions: int
    repeat_rows: int
    quarantined: int
    paths: tuple[Path, ...]


def split_by_country(raw: RawForm, codes: Mapping[str, str],
                     only: str | None = None) -> dict[str, RawForm]:
    """One RawForm per country ISO, by the ``country`` answer (codes: choice code → ISO)."""
    country = raw.root.get("country", pd.Series(None, index=raw.root.index))
    iso = country.map(lambda c: codes.get(str(c)) if c is not None else None)
    if only is not None:
        iso = iso.where(iso.isna() | (iso == only), "_other")
    out: dict[str, RawForm] = {}
    for name in sorted(set(iso.dropna())):
        keep = (iso == name).to_numpy()
        keys = set(raw.root.loc[keep, "KEY"])
        repeats = {r: t[t["KEY"].str.split("/", n=1).str[0].isin(keys)].reset_index(drop=True)
                   for r, t in raw.repeats.items()}
        q = raw.quarantine[raw.quarantine["KEY"].isin(keys)] if len(raw.quarantine) else \
            empty_quarantine()
        out[name] = RawForm(raw.form_id, raw.root[keep].reset_index(drop=True), repeats, q)
    missing = iso.isna().to_numpy()
    loose_quarantine = raw.quarantine[~raw.quarantine["KEY"].isin(set(raw.root["KEY"]))]
    if missing.any() or len(loose_quarantine):
        bad = raw.root[missing]
        q = pd.DataFrame({"source_file": bad["source_file"].to_numpy(), "row": None,
                          "KEY": bad["KEY"].to_numpy(), "rule": "country-unknown",
                          "column": "country", "value": bad.get("country"),
                          "message": "the country answer is missing or not a study country"},
                         columns=QUARANTINE_COLUMNS)
        frames = [f for f in (q, loose_quarantine) if len(f)]
        out.setdefault(UNKNOWN, RawForm(raw.form_id, raw.root.iloc[0:0].copy(), {},
                                        empty_quarantine()))
        out[UNKNOWN].quarantine = pd.concat([out[UNKNOWN].quarantine, *frames],
                                            ignore_index=True)
    out.pop("_other", None)
    return out


def ingest_exports(paths: Sequence[str | Path], models: Mapping[str, FormModel],
                   configs: Sequence[CountryConfig], out: str | Path, *,
                   private_key_pem: bytes | None = None,
                   country: str | None = None) -> list[IngestResult]:
    """Read every export, combine per country and form, write ``out/raw/<ISO>/``."""
    codes = {str(c.code): c.iso for c in configs}
    parts: dict[tuple[str, str], list[RawForm]] = {}
    for path in paths:
        for raw in read_export_forms(path, models, private_key_pem=private_key_pem):
            for iso, part in split_by_country(raw, codes, country).items():
                parts.setdefault((iso, raw.form_id), []).append(part)
    results = []
    for (iso, form_id), raws in sorted(parts.items()):
        raw = combine(raws)
        written = write_raw(raw, Path(out) / "raw" / iso)
        results.append(IngestResult(iso, form_id, len(raw.root),
                                    sum(len(t) for t in raw.repeats.values()),
                                    len(raw.quarantine), tuple(written)))
    return results
