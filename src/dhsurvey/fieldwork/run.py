"""Simulated fieldwork written to disk as field teams' servers would deliver it.

Per country: an ODK Central CSV zip, a KoboToolbox v2 JSON file and a folder of instance XML
(optionally encrypted) for every form, the fault manifest, the sample design with its
selection probabilities (which weighting reads), and the back-checks: short re-interviews of
a sample of completed households by the study's back-check plan (``backcheck.yaml`` beside
``countries/``), in which one or two enumerators' households differ far more often than the
others' (named in the fault manifest), so the back-check comparison has someone to find.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from dhsurvey.fieldwork.config import PLAN_FILE, CountryConfig, Plan, load_plan
from dhsurvey.fieldwork.exports import (
    device_field,
    write_central_zip,
    write_kobo_json,
    write_xml_folder,
)
from dhsurvey.fieldwork.faults import inject_faults
from dhsurvey.fieldwork.simulate import (
    SimulatedCountry,
    instance_ids,
    seeded_rng,
    simulate_country,
)
from dhsurvey.forms.model import FormModel
from dhsurvey.ingest.canonical import META, RawForm
from dhsurvey.io import atomic_write_json, atomic_write_parquet
from dhsurvey.parallel import forked_map, workers_for_countries
from dhsurvey.store import BACKCHECK

FORMATS = ("central", "kobo", "xml")
#: Share of each enumerator's completed households that is back-checked, and the least
#: number per enumerator (every enumerator is checked, as back-check samples are drawn).
BACKCHECK_SHARE = 0.10
BACKCHECK_LEAST = 2
#: The chance that a back-checked answer differs from the interview, by variable type (1: must
#: not change, 2: hard to administer, 3: may change), for most enumerators and for the one or
#: two planted worse ones.
BACKCHECK_ERRORS = {1: 0.02, 2: 0.10, 3: 0.15}
WORSE_ERRORS = {1: 0.60, 2: 0.30, 3: 0.15}
#: Who re-interviews (ODK Central app users of the back-check team).
BACKCHECKERS = ("backchecker-1", "backchecker-2", "backchecker-3")


@dataclass(frozen=True)
class CountryOutput:
    iso: str
    folder: Path
    counts: dict[str, int]  # form → submissions
    faults: int
    backchecks: int = 0  # back-checked households (backcheck/)


def write_design(sim: SimulatedCountry, folder: Path) -> None:
    """PSUs and households with their selection probabilities, as Parquet."""
    for name, table in (("psus", sim.sample.psus), ("households", sim.sample.households)):
        atomic_write_parquet(folder / "design" / f"{name}.parquet", table)


def simulate_to(out: str | Path, configs: list[CountryConfig], models: dict[str, FormModel], *,
                seed: int = 0, households: int | None = None, faults: Sequence[str] = (),
                formats: tuple[str, ...] = FORMATS, public_key_pem: bytes | None = None,
                faults_per_kind: int = 3, workers: int | None = None,
                devices: float = 1.0) -> list[CountryOutput]:
    """Simulate each country and write ``out/<ISO>/{central,kobo,xml}/…`` and its back-checks
    (``out/<ISO>/backcheck/``, in the first of ``formats``, when the study has a back-check
    plan); deterministic.

    ``devices``: the share of the country's tablets whose instance folders are in ``xml/``
    when another format holds every submission (:func:`pulled_devices`); 1 writes them all.

    Countries are independent (each draws from its own seeds), so several are simulated at
    once in ``workers`` forked processes (default:
    :func:`~dhsurvey.parallel.workers_for_countries`); the files are the same whatever the
    number of workers."""
    one = partial(_simulate_country_to, Path(out), models=models, seed=seed,
                  households=households, faults=tuple(faults), formats=formats,
                  public_key_pem=public_key_pem, faults_per_kind=faults_per_kind,
                  devices=devices)
    return [output for _, output in forked_map(one, configs,
                                               workers=workers_for_countries(len(configs),
                                                                             workers),
                                               size=lambda c: c.households)]


def _simulate_country_to(out: Path, config: CountryConfig, *, models: dict[str, FormModel],
                         seed: int, households: int | None, faults: tuple[str, ...],
                         formats: tuple[str, ...], public_key_pem: bytes | None,
                         faults_per_kind: int, devices: float) -> CountryOutput:
    sim = simulate_country(config, models, seed=seed, households=households)
    plan = backcheck_plan(config, models)
    checked: tuple[RawForm, dict[str, Any]] | None = None
    if plan is not None:  # drawn from the interviews as done, before any fault
        checked = simulate_backchecks(sim.forms[plan.form], models[plan.form], plan,
                                      seeded_rng(seed, config.iso, "backcheck"))
    if faults:
        inject_faults(sim, models, list(faults), seeded_rng(seed, config.iso, "faults"),
                      per_kind=faults_per_kind)
    folder = out / config.iso
    crypto_rng = random.Random(f"{seed}/{config.iso}/encrypt").randbytes
    pulled = pulled_devices(sim.forms, models, devices if len(formats) > 1 else 1.0,
                            seeded_rng(seed, config.iso, "devices"))
    for form_id, raw in sim.forms.items():
        model = models[form_id]
        if "central" in formats:
            write_central_zip(raw, model, folder / "central" / f"{form_id}.csv.zip")
        if "kobo" in formats:
            write_kobo_json(raw, model, folder / "kobo" / f"{form_id}.json")
        if "xml" in formats:
            write_xml_folder(on_devices(raw, model, pulled), model, folder / "xml" / form_id,
                             public_key_pem=public_key_pem, rng=crypto_rng)
    write_design(sim, folder)
    manifest: dict[str, Any] = {"country": config.iso, "seed": seed, "faults": sim.faults,
                                "canaries": sim.canaries}
    if checked is not None:
        raw, planted = checked
        path = write_backcheck(raw, models[raw.form_id], folder, formats, crypto_rng)
        manifest["backcheck"] = {**planted, "export": path.relative_to(folder).as_posix()}
    atomic_write_json(folder / "faults.json", manifest)
    return CountryOutput(config.iso, folder, {k: len(v.root) for k, v in sim.forms.items()},
                         len(sim.faults), len(checked[0].root) if checked else 0)


def pulled_devices(forms: Mapping[str, RawForm], models: Mapping[str, FormModel],
                   share: float, rng: np.random.Generator) -> set[str] | None:
    """The tablets whose instance folders a field team copies off as well (a back-up, or a
    device that had not synced): ``share`` of the device ids seen in any form, at least one;
    None for every device.

    Teams copy the tablets they must, not all of them: a folder copied off a device that did
    sync repeats what the server holds (ingest keeps the server's copy), and reading an
    encrypted one back costs two RSA private operations."""
    if share >= 1:
        return None
    seen: set[str] = set()
    for form_id, raw in forms.items():
        name = device_field(models[form_id])
        if name is not None and name in raw.root:
            seen.update(str(d) for d in raw.root[name].dropna())
    ids = sorted(seen)
    if not ids:
        return None
    n = max(1, round(share * len(ids)))
    return {ids[int(i)] for i in rng.choice(len(ids), n, replace=False)}


def on_devices(raw: RawForm, model: FormModel, devices: set[str] | None) -> RawForm:
    """The submissions of ``raw`` made on ``devices`` (None: all; a form without a device id
    field: all). Repeat rows stay whole: instance folders look them up by their parent."""
    name = device_field(model)
    if devices is None or name is None or name not in raw.root:
        return raw
    keep = raw.root[name].astype("string").isin(devices).to_numpy()
    return RawForm(raw.form_id, raw.root[keep].reset_index(drop=True), raw.repeats)


# --------------------------------------------------------------------------- back-checks


def backcheck_plan(config: CountryConfig, models: Mapping[str, FormModel]) -> Plan | None:
    """The study's back-check plan found beside the country file's folder, or None when the
    study has none or lacks its form (a test's subset of the instruments)."""
    path = config.path.parent.parent / PLAN_FILE
    if not path.exists():
        return None
    plan = load_plan(path)
    return plan if plan.form in models else None


def _backcheck_sample(done: pd.DataFrame, enumerator: str, rng: np.random.Generator
                      ) -> np.ndarray:
    """Rows of ``done`` to back-check: :data:`BACKCHECK_SHARE` of each enumerator's (at least
    :data:`BACKCHECK_LEAST`), in table order."""
    who = done[enumerator].astype("string").fillna("").to_numpy()
    rows: list[int] = []
    for name in sorted(set(who)):
        mine = np.flatnonzero(who == name)
        n = min(len(mine), max(BACKCHECK_LEAST, math.ceil(BACKCHECK_SHARE * len(mine))))
        rows += [int(i) for i in rng.choice(mine, n, replace=False)]
    return np.sort(np.array(rows, dtype=int))


def simulate_backchecks(raw: RawForm, model: FormModel, plan: Plan,
                        rng: np.random.Generator) -> tuple[RawForm, dict[str, Any]]:
    """Back-checks of the completed interviews of ``raw`` as a back-check form's submissions
    (the id columns and re-asked variables; a new instanceID, received two to five days
    later, submitted by a back-checker) and what was planted: an answer differs from the
    interview with the chance :data:`BACKCHECK_ERRORS` of its type, :data:`WORSE_ERRORS` in
    the households of one or two enumerators (two when there are eight or more), becoming
    another answer seen in that column."""
    ids, enumerator, variables = list(plan.id_columns), plan.enumerator, dict(plan.variables)
    root = raw.root
    if model.disposition_field is not None:
        root = root[root[model.disposition_field].isin(model.disposition_codes("I"))]
    done = root.drop_duplicates(ids, keep="last").reset_index(drop=True)
    people = sorted(set(done[enumerator].dropna().astype(str)))
    worse = sorted(str(e) for e in rng.choice(people, min(len(people), 1 + (len(people) >= 8)),
                                              replace=False)) if people else []
    sample = done.iloc[_backcheck_sample(done, enumerator, rng)].reset_index(drop=True)
    is_worse = sample[enumerator].astype(str).isin(worse).to_numpy()
    answers = sample[list(dict.fromkeys([*ids, *variables]))].copy()
    for variable, vtype in variables.items():
        chance = np.where(is_worse, WORSE_ERRORS[vtype], BACKCHECK_ERRORS[vtype])
        seen = list(pd.unique(done[variable].dropna()))
        column = cast(int, answers.columns.get_loc(variable))  # names are unique
        for i in np.flatnonzero(rng.random(len(answers)) < chance):
            others = [v for v in seen if v != answers.iat[int(i), column]]
            if answers.iat[int(i), column] is not None and others:
                answers.iat[int(i), column] = others[int(rng.integers(len(others)))]
    n = len(sample)
    received = pd.to_datetime(sample["submission_time"], utc=True) + pd.to_timedelta(
        rng.integers(2, 6, n), unit="D")
    meta = pd.DataFrame({
        "KEY": instance_ids(rng, n), "form_id": model.form_id, "form_version": model.version,
        "submission_time": received.dt.strftime("%Y-%m-%dT%H:%M:%S.000Z").to_numpy(),
        "submitter": [BACKCHECKERS[int(i)] for i in rng.integers(len(BACKCHECKERS), size=n)],
        "source_format": "simulation"}, columns=META)
    table = pd.concat([meta, answers], axis=1).astype(object)
    table = table.where(table.notna(), None)  # type: ignore[call-overload]
    planted = {"form": model.form_id, "households": n, "worse_enumerators": worse,
               "error_rates": {str(t): BACKCHECK_ERRORS[t] for t in sorted(BACKCHECK_ERRORS)},
               "worse_error_rates": {str(t): WORSE_ERRORS[t] for t in sorted(WORSE_ERRORS)}}
    return RawForm(model.form_id, table), planted


def write_backcheck(raw: RawForm, model: FormModel, folder: Path, formats: Sequence[str],
                    rng: Any = None) -> Path:
    """The back-checks in ``folder/backcheck/`` in the first of ``formats``: a Central CSV
    zip ``<form>.csv.zip``, Kobo JSON ``<form>.json`` or a folder of instance XML ``<form>/``
    (plain: a back-check form is a team's own)."""
    target = folder / BACKCHECK.split("/", 1)[0]
    kind = next((f for f in FORMATS if f in formats), "central")
    if kind == "central":
        return write_central_zip(raw, model, target / f"{model.form_id}.csv.zip")
    if kind == "kobo":
        return write_kobo_json(raw, model, target / f"{model.form_id}.json")[0]
    write_xml_folder(raw, model, target / model.form_id, rng=rng)
    return target / model.form_id


__all__ = ["BACKCHECK_ERRORS", "BACKCHECK_LEAST", "BACKCHECK_SHARE",
           "FORMATS", "WORSE_ERRORS", "CountryOutput", "backcheck_plan", "simulate_backchecks",
           "simulate_to", "write_backcheck", "write_design"]
