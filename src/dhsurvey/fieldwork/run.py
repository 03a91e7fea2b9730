"""Simulated fieldwork written to disk as field teams' servers would deliver it.

Per country: an ODK Central CSV zip, a KoboToolbox v2 JSON file and a folder of instance XML
(optionally encrypted) for every form, the fault manifest, and the sample design with its
selection probabilities (which weighting reads).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dhsurvey.fieldwork.config import CountryConfig
from dhsurvey.fieldwork.exports import write_central_zip, write_kobo_json, write_xml_folder
from dhsurvey.fieldwork.faults import inject_faults
from dhsurvey.fieldwork.simulate import SimulatedCountry, seeded_rng, simulate_country
from dhsurvey.forms.model import FormModel
from dhsurvey.io import atomic_write_json, atomic_write_parquet

FORMATS = ("central", "kobo", "xml")


@dataclass(frozen=True)
class CountryOutput:
    iso: str
    folder: Path
    counts: dict[str, int]  # form → submissions
    faults: int


def write_design(sim: SimulatedCountry, folder: Path) -> None:
    """PSUs and households with their selection probabilities, as Parquet."""
    for name, table in (("psus", sim.sample.psus), ("households", sim.sample.households)):
        atomic_write_parquet(folder / "design" / f"{name}.parquet", table)


def simulate_to(out: str | Path, configs: list[CountryConfig], models: dict[str, FormModel], *,
                seed: int = 0, households: int | None = None, faults: Sequence[str] = (),
                formats: tuple[str, ...] = FORMATS, public_key_pem: bytes | None = None,
                faults_per_kind: int = 3) -> list[CountryOutput]:
    """Simulate each country and write ``out/<ISO>/{central,kobo,xml}/…``; deterministic."""
    outputs = []
    for config in configs:
        sim = simulate_country(config, models, seed=seed, households=households)
        if faults:
            inject_faults(sim, models, list(faults), seeded_rng(seed, config.iso, "faults"),
                          per_kind=faults_per_kind)
        folder = Path(out) / config.iso
        crypto_rng = random.Random(f"{seed}/{config.iso}/encrypt").randbytes
        for form_id, raw in sim.forms.items():
            model = models[form_id]
            if "central" in formats:
                write_central_zip(raw, model, folder / "central" / f"{form_id}.csv.zip")
            if "kobo" in formats:
                write_kobo_json(raw, model, folder / "kobo" / f"{form_id}.json")
            if "xml" in formats:
                write_xml_folder(raw, model, folder / "xml" / form_id,
                                 public_key_pem=public_key_pem, rng=crypto_rng)
        write_design(sim, folder)
        atomic_write_json(folder / "faults.json", {"country": config.iso, "seed": seed,
                                                   "faults": sim.faults,
                                                   "canaries": sim.canaries})
        outputs.append(CountryOutput(config.iso, folder,
                                     {k: len(v.root) for k, v in sim.forms.items()},
                                     len(sim.faults)))
    return outputs


__all__ = ["FORMATS", "CountryOutput", "simulate_to", "write_design"]
