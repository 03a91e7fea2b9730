"""Simulated fieldwork for one country, driven by the instruments' own logic.

The scenario decides the story — which households are found, who lives there, who consents,
how fast each enumerator works, what each child experienced online — and writes it as presets
for a few fields. :func:`dhsurvey.fieldwork.answers.answer_form` then answers every form in
form order, so relevance, constraints, calculations (including the household's random
selection of one eligible child, ``once(random())``) come from the workbooks. Same seed, same
configuration, same instruments → identical submissions.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from dhsurvey.fieldwork.answers import Presets, answer_form
from dhsurvey.fieldwork.canaries import canary_values
from dhsurvey.fieldwork.config import CountryConfig
from dhsurvey.fieldwork.design import Sample, select_sample, synthetic_frame
from dhsurvey.forms.frames import PARENT, FormData
from dhsurvey.forms.model import FormModel
from dhsurvey.ingest.canonical import META, RawForm, field_columns

FORMS = ("household", "child", "caregiver", "frontline_worker")
#: Base interview length in minutes, before each enumerator's own pace.
DURATION = {"household": 14.0, "child": 35.0, "caregiver": 22.0, "frontline_worker": 28.0}
#: Private experiences the scenario decides (the rest of the block is drawn from the form):
#: experience → (relative prevalence, extra risk for girls).
OCSEA = {
    "ocsea_talk": (1.6, 1.2),
    "ocsea_image_req": (1.2, 1.5),
    "ocsea_offer_img": (0.45, 0.9),
    "ocsea_offer_meet": (0.3, 1.0),
    "ocsea_threat": (0.35, 1.1),
    "ocsea_shared": (0.45, 1.3),
    "unw_comments": (2.5, 1.3),
    "unw_images": (2.0, 1.2),
    "own_img_made": (0.8, 0.9),
}
#: Children who stop the private questions, on a screen drawn at random.
STOP_SHARE = 0.03
FIRST_NAMES = ["Amani", "Baraka", "Neema", "Juma", "Zawadi", "Imani", "Tumaini", "Upendo",
               "Faraja", "Jabari", "Subira", "Rehema", "Kito", "Nuru", "Asha", "Hamisi",
               "Wanjiru", "Achieng", "Otieno", "Nakato", "Mugisha", "Akinyi", "Kamau",
               "Auma", "Mwajuma", "Salim", "Halima", "Bakari", "Pendo", "Ayubu"]


@dataclass
class SimulatedCountry:
    """One country's simulated fieldwork: the sample, every form's submissions, the faults."""

    config: CountryConfig
    sample: Sample
    forms: dict[str, RawForm]
    faults: list[dict] = field(default_factory=list)
    #: Fake identifiers planted in answered restricted fields; none may reach a release.
    canaries: list[str] = field(default_factory=list)


def _disposition_field(model: FormModel) -> str:
    if model.disposition_field is None:
        raise ValueError(f"{model.form_id} records no final disposition")
    return model.disposition_field


def completed_with_child(root: pd.DataFrame, model: FormModel) -> pd.Series:
    """Households interviewed to the end (a disposition of AAPOR category I) that selected a
    child (``sel_line``): the child and caregiver forms interview theirs."""
    disposition = root[_disposition_field(model)].astype("string")
    return (disposition.isin(model.disposition_codes("I")).fillna(False).astype(bool)
            & root["sel_line"].notna())


def gates_answered(model: FormModel, agrees: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Answers to the form's consent gates, in form order: the answer that lets the interview
    go on where ``agrees``, else another answer of the gate's list (a refusal)."""
    out: dict[str, np.ndarray] = {}
    for gate, agree in zip(model.consent_gates, agrees, strict=False):
        given = model.consent_given[gate]
        codes = model.choices_for(model[gate])
        if given is None or codes is None:
            raise ValueError(f"consent gate {gate} of {model.form_id} has no answer that goes on")
        other = next(c for c in codes.codes() if c != given)
        out[gate] = np.where(agree, np.array(given, dtype=object), np.array(other, dtype=object))
    return out


def _broken_off(model: FormModel, share: float) -> str:
    """The disposition the interviewer records: the one the form derives (``disp_auto``),
    but ``share`` of the completed interviews with a selected child break off after the
    roster (the form's partial code)."""
    complete = " or ".join(f"${{disp_auto}} = {c}" for c in model.disposition_codes("I"))
    partial = model.disposition_codes("P")[0]
    return (f"if(({complete}) and ${{n_eligible}} > 0 and random() < {share}, {partial}, "
            "${disp_auto})")


def seeded_rng(seed: int, *parts: str) -> np.random.Generator:
    digest = hashlib.sha256("/".join([str(seed), *parts]).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def instance_ids(rng: np.random.Generator, n: int) -> list[str]:
    """Reproducible ``uuid:…`` instanceIDs (version 4 layout, random bits from ``rng``)."""
    return [f"uuid:{uuid.UUID(bytes=rng.bytes(16), version=4)}" for _ in range(n)]


def scaled_config(config: CountryConfig, households: int | None) -> tuple[CountryConfig, int]:
    """Fewer PSUs (at least 2 per stratum, for variance estimation) for a smaller run."""
    if households is None:
        return config, config.households_per_psu
    from dataclasses import replace

    per_psu = max(4, min(config.households_per_psu, households // (2 * len(config.strata))))
    total_psus = max(2 * len(config.strata), round(households / per_psu))
    strata = tuple(replace(s, psus=max(2, min(s.eas, round(s.psus * total_psus / config.psus))))
                   for s in config.strata)
    return replace(config, strata=strata), per_psu


def simulate_country(config: CountryConfig, models: dict[str, FormModel], *, seed: int = 0,
                     households: int | None = None) -> SimulatedCountry:
    """Select the sample and simulate every form's submissions for one country."""
    config, per_psu = scaled_config(config, households)
    rng = seeded_rng(seed, config.iso, "design")
    sample = select_sample(config, synthetic_frame(config, rng), rng, per_psu)
    pace = _enumerator_pace(config, seeded_rng(seed, config.iso, "pace"))
    hh = _household(config, models["household"], sample, pace, seeded_rng(seed, config.iso, "hh"))
    selected = _selected_children(hh, models["household"])
    forms = {"household": hh}
    forms["child"] = _child(config, models["child"], selected, pace,
                            seeded_rng(seed, config.iso, "child"))
    forms["caregiver"] = _caregiver(config, models["caregiver"], selected, pace,
                                    seeded_rng(seed, config.iso, "caregiver"))
    forms["frontline_worker"] = _frontline(config, models["frontline_worker"], pace,
                                           seeded_rng(seed, config.iso, "fw"))
    raws = {k: _raw(v, models[k]) for k, v in forms.items()}
    canaries = plant_canaries(raws, models, seeded_rng(seed, config.iso, "canaries"))
    return SimulatedCountry(config, sample, raws, canaries=canaries)


def plant_canaries(raws: dict[str, RawForm], models: dict[str, FormModel],
                   rng: np.random.Generator, per_field: int = 2) -> list[str]:
    """Overwrite a few *answered* direct-identifier and free-text answers with canaries.

    Names, phone numbers, e-mails and GPS strings shaped like real ones but tagged "Canary":
    the release gate scans every release file for them. Only answered cells are used, so the
    submissions stay valid (a canary is within every text constraint).
    """
    tables = [(models[f], raw.root) for f, raw in raws.items()]
    tables += [(models[f], t) for f, raw in raws.items() for t in raw.repeats.values()]
    pool = canary_values(400, rng)
    by_kind = {"gps": [c for c in pool if c.count(" ") == 3 and c[0] in "-0123456789"],
               "name": [c for c in pool if "Canary-" in c]}
    by_kind["text"] = [c for c in pool if c not in by_kind["gps"] and c not in by_kind["name"]]
    planted: list[str] = []
    touched: dict[str, set[str]] = {}
    for model, table in tables:
        for column in table.columns:
            if column not in model or model[column].pii not in ("direct", "free_text") or \
                    model[column].type not in ("text", "geopoint"):
                continue
            kind = "gps" if model[column].type == "geopoint" else (
                "name" if model[column].pii == "direct" else "text")
            answered = np.flatnonzero(table[column].notna().to_numpy())
            for row in rng.choice(answered, min(per_field, len(answered)), replace=False):
                value = by_kind[kind].pop()
                at = table.columns.get_loc(column)
                if not isinstance(at, int):
                    raise ValueError(f"column {column} of {model.form_id} is not unique")
                table.iloc[int(row), at] = value
                planted.append(value)
                touched.setdefault(model.form_id, set()).add(column)
    for form_id, columns in touched.items():
        _recalculate(raws[form_id], models[form_id], columns)
    return planted


def _recalculate(raw: RawForm, model: FormModel, columns: set[str]) -> None:
    """Recompute the root calculations that copy a changed answer (e.g. the selected name)."""
    from dhsurvey.fieldwork.answers import format_values
    from dhsurvey.forms.expressions import references

    data = raw.to_form_data(model)
    for item in model.fields_in(None):
        if item.type == "calculate" and set(references(item.calculation)) & columns:
            values = format_values(data.evaluate(item, item.calculation))
            keep = raw.root[item.name].notna().to_numpy()
            raw.root.loc[keep, item.name] = values.to_numpy()[keep]


# -- scenario pieces --------------------------------------------------------------------------


def _enumerator_pace(config: CountryConfig, rng: np.random.Generator) -> dict[int, float]:
    """Each enumerator's speed factor: some are quick, a few are slow."""
    return {e: float(np.clip(rng.lognormal(0, 0.22), 0.6, 1.8)) for e in config.enumerators}


def _team_enumerators(config: CountryConfig) -> dict[int, tuple[int, ...]]:
    return {t.id: t.enumerators for t in config.teams}


def _visit_days(config: CountryConfig, clusters: pd.Series, rng: np.random.Generator
                ) -> dict[int, dt.date]:
    """A first-visit day per cluster, spread over the fieldwork window (leaving 3 days)."""
    days = max(1, (config.fieldwork_end - config.fieldwork_start).days - 3)
    offsets = np.sort(rng.integers(0, days, len(clusters)))
    return {int(c): config.fieldwork_start + dt.timedelta(days=int(o))
            for c, o in zip(clusters, offsets, strict=True)}


def _stamp(day: dt.date, minutes: np.ndarray | float, offset: str) -> str:
    t = dt.datetime.combine(day, dt.time(0)) + dt.timedelta(minutes=float(minutes))
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}{offset}"


def _timing(config: CountryConfig, days: list[dt.date], enumerators: list[int],
            pace: dict[int, float], base: float, rng: np.random.Generator
            ) -> tuple[list[str], list[str], list[str]]:
    """start, end (local with offset) and submission time (UTC) for each interview."""
    starts, ends, submitted = [], [], []
    sign = -1 if config.utc_offset.startswith("-") else 1
    hours, minutes = (int(x) for x in config.utc_offset[1:].split(":"))
    offset = dt.timedelta(hours=hours, minutes=minutes) * sign
    begin = rng.uniform(8 * 60, 17 * 60, len(days))
    length = [base * pace[e] * float(rng.lognormal(0, 0.15)) for e in enumerators]
    delay = rng.uniform(20, 36 * 60, len(days))
    for day, b, n, d in zip(days, begin, length, delay, strict=True):
        starts.append(_stamp(day, b, config.utc_offset))
        ends.append(_stamp(day, b + n, config.utc_offset))
        local = dt.datetime.combine(day, dt.time(0)) + dt.timedelta(minutes=float(b + n + d))
        utc = local - offset
        # Whole seconds: KoboToolbox keeps no more, so every route can carry the same time.
        submitted.append(utc.strftime("%Y-%m-%dT%H:%M:%S.000Z"))
    return starts, ends, submitted


def _roster(rng: np.random.Generator, internet_use: float) -> list[dict[str, Any]]:
    """A plausible household: a head, often a spouse, children and sometimes others."""
    members: list[dict[str, Any]] = []
    head_sex = 1 if rng.random() < 0.7 else 2
    head_age = int(rng.integers(24, 70))
    members.append({"sex": head_sex, "age": head_age, "relation": 1})
    if rng.random() < 0.7:
        members.append({"sex": 3 - head_sex, "age": int(np.clip(head_age + rng.integers(-8, 4),
                                                                18, 90)), "relation": 2})
    youngest_parent = min(m["age"] for m in members)
    for _ in range(int(rng.poisson(2.6))):
        age = int(rng.integers(0, max(1, min(23, youngest_parent - 15))))
        members.append({"sex": int(rng.integers(1, 3)), "age": age, "relation": 3})
    if rng.random() < 0.25:
        members.append({"sex": int(rng.integers(1, 3)), "age": int(rng.integers(5, 80)),
                        "relation": 8})
    for m in members:
        m["first_name"] = str(rng.choice(FIRST_NAMES))
        if 12 <= m["age"] <= 17:
            m["internet_use"] = 1 if rng.random() < internet_use else 0
    return members


def _household(config: CountryConfig, model: FormModel, sample: Sample,
               pace: dict[int, float], rng: np.random.Generator) -> FormData:
    hh = sample.households.reset_index(drop=True)
    n = len(hh)
    keys = pd.Index(instance_ids(rng, n))
    sim = config.simulation
    fate = rng.choice(["vacant", "non_contact", "refusal", "consent_refusal", "complete"], n,
                      p=[sim.vacant, sim.non_contact, sim.refusal * 0.6, sim.refusal * 0.4,
                         1 - sim.vacant - sim.non_contact - sim.refusal])
    teams = _team_enumerators(config)
    enum = [int(rng.choice(teams[t])) for t in hh["team"]]
    first_day = _visit_days(config, sample.psus["cluster"], rng)
    visits: dict[str, list] = {f"v{i}_{k}": [] for i in (1, 2, 3) for k in ("outcome", "date")}
    last_day = []
    for f in fate:
        outcomes = {"vacant": [4], "non_contact": [2, 2, 2], "refusal": [3],
                    "consent_refusal": [1]}.get(f) or [[1], [2, 1], [6, 2, 1]][
                        int(rng.choice(3, p=[0.7, 0.2, 0.1]))]
        if f == "refusal" and rng.random() < 0.3:
            outcomes = [6, 3]
        for i in (1, 2, 3):
            visits[f"v{i}_outcome"].append(str(outcomes[i - 1]) if i <= len(outcomes) else None)
        last_day.append(len(outcomes) - 1)
    day0 = [first_day[int(c)] for c in hh["cluster"]]
    for i in (1, 2, 3):
        visits[f"v{i}_date"] = [(d + dt.timedelta(days=i - 1)).isoformat() for d in day0]
    interview_day = [d + dt.timedelta(days=k) for d, k in zip(day0, last_day, strict=True)]
    base = DURATION["household"]
    start, end, submitted = _timing(config, interview_day, enum, pace, base, rng)

    rosters = [_roster(rng, sim.internet_use) if f == "complete" else [] for f in fate]
    roster_rows = [{PARENT: k, "_position": i + 1, **m}
                   for k, members in zip(keys, rosters, strict=True)
                   for i, m in enumerate(members)]
    roster = pd.DataFrame(roster_rows).astype(object) if roster_rows else pd.DataFrame()
    caregiver_line = [str(2 if len(r) > 1 and r[1]["relation"] == 2 and r[0]["sex"] == 1
                          else 1) for r in rosters]
    root = {
        "start": start, "end": end, "today": [d.isoformat() for d in interview_day],
        "deviceid": [f"collect:{config.iso.lower()}{e}" for e in enum],
        "country": [str(config.code)] * n, "region": hh["region"].astype(str).tolist(),
        "cluster": hh["cluster"].astype(str).tolist(),
        "hh_number": hh["hh_number"].astype(str).tolist(),
        "urban_rural": hh["urban_rural"].astype(str).tolist(), "enum_id": [str(e) for e in enum],
        "gps": _gps(hh, rng),
        **visits,
        **gates_answered(model, [np.array([f != "consent_refusal" for f in fate])]),
        "hh_size": [str(len(r)) if r else None for r in rosters],
        "resp_line": ["1"] * n,
        "caregiver_line": caregiver_line,
    }
    presets = Presets({k: pd.Series(v, index=keys, dtype=object) for k, v in root.items()},
                      {"roster": roster} if len(roster) else {},
                      # The interviewer records the derived outcome; a few interviews break
                      # off after the roster (partial).
                      {_disposition_field(model): _broken_off(model, 0.02)})
    data = answer_form(model, keys, presets, rng, today=max(interview_day))
    data.root["_submitted"] = submitted
    return data


def _gps(hh: pd.DataFrame, rng: np.random.Generator) -> list[str]:
    """A point near each cluster's (synthetic) centre; direct identifier, restricted zone only."""
    centre = {c: (-1.5 + rng.uniform(-2, 2), 36.5 + rng.uniform(-2, 2))
              for c in hh["cluster"].unique()}
    out = []
    for c in hh["cluster"]:
        lat, lon = centre[c]
        out.append(f"{lat + rng.normal(0, 0.005):.6f} {lon + rng.normal(0, 0.005):.6f} "
                   f"{rng.uniform(1000, 2000):.1f} {rng.uniform(3, 15):.1f}")
    return out


def _selected_children(hh: FormData, model: FormModel) -> pd.DataFrame:
    """Households that completed the interview with an eligible child, and who was selected."""
    root = hh.root
    done = root[completed_with_child(root, model).to_numpy()]
    return pd.DataFrame({
        "hh_key": done.index, "country": done["country"], "region": done["region"],
        **{f: done[f] for f in model.household_id},
        "enum_id": done["enum_id"], "child_line": done["sel_line"],
        "child_age": done["sel_age"], "child_sex": done["sel_sex"],
        "caregiver_line": done["caregiver_line"], "lang": done["child_lang"],
        "day": done["today"], "urban_rural": done["urban_rural"],
    }).reset_index(drop=True)


def _child(config: CountryConfig, model: FormModel, sel: pd.DataFrame, pace: dict[int, float],
           rng: np.random.Generator) -> FormData:
    n = len(sel)
    keys = pd.Index(instance_ids(rng, n))
    sim = config.simulation
    days = [dt.date.fromisoformat(d) for d in sel["day"]]
    enum = [int(e) for e in sel["enum_id"]]
    start, end, submitted = _timing(config, days, enum, pace, DURATION["child"], rng)
    age = sel["child_age"].astype(int).to_numpy()
    girl = sel["child_sex"].astype(str).to_numpy() == "2"
    # The caregiver's permission, then the child's assent (the form's gates, in order).
    agrees = [rng.random(n) > sim.caregiver_refusal, rng.random(n) > sim.child_refusal]
    root: dict[str, object] = {
        "start": start, "end": end, "deviceid": [f"collect:{config.iso.lower()}{e}"
                                                 for e in enum],
        "country": sel["country"], "region": sel["region"],
        **{f: sel[f] for f in model.household_id}, "enum_id": sel["enum_id"],
        "child_line": sel["child_line"], "child_age": sel["child_age"],
        "child_sex": sel["child_sex"], "int_lang": sel["lang"],
        "ch_avail": _availability(rng, n),
        **gates_answered(model, agrees),
        "age_confirm": np.where(rng.random(n) < 0.97, "1", "0"),
        # A child who corrects the roster is usually a year off: 11 or 18 ends the interview.
        "age_self": [str(a) for a in age + rng.choice([-1, 1], n)],
        "privacy": np.where(rng.random(n) < 0.97, "1", "0"),
        "distress_1": rng.choice(["1", "2", "3"], n, p=[0.96, 0.035, 0.005]),
        "distress_2": rng.choice(["1", "2", "3"], n, p=[0.965, 0.03, 0.005]),
    }
    # A latent vulnerability shared by the experiences, so they co-occur as in real data.
    latent = rng.lognormal(0, 0.6, n)
    for name, (relative, girls) in OCSEA.items():
        p = sim.ocsea_base * relative * (1 + 0.15 * (age - 12)) * np.where(girl, girls, 1.0)
        p = np.clip(p * latent / np.exp(0.18), 0, 0.6)
        answer = np.where(rng.random(n) < p, "1", "0")
        answer = np.where(rng.random(n) < 0.02, "99", answer)
        root[name] = answer
    # About a third tell nobody about the most recent experience (the rest: drawn answers).
    for told in (i.name for i in model.items if i.list_name == "told"):
        told_someone = np.full(n, None, dtype=object)
        told_someone[rng.random(n) < 0.35] = "1"
        root[told] = told_someone
    root.update(_private_choices(model, n, rng))
    presets = Presets({k: pd.Series(np.asarray(v, dtype=object), index=keys)
                       for k, v in root.items()})
    presets.derived["ch_result"] = "${ch_auto}"  # the result the form derives
    data = answer_form(model, keys, presets, rng, today=max(days, default=config.fieldwork_end))
    # The form's many columns came one by one: one block for the two bookkeeping columns.
    data.root = data.root.assign(_submitted=submitted, _household=sel["hh_key"].to_numpy())
    return data


def _availability(rng: np.random.Generator, n: int) -> np.ndarray:
    """Whether the respondent was found and able to take part: mostly yes (1), a few not at
    home after three visits (2) or unable to take part (3)."""
    return rng.choice(np.array(["1", "2", "3"], dtype=object), n, p=[0.985, 0.01, 0.005])


def _private_choices(model: FormModel, n: int, rng: np.random.Generator
                     ) -> dict[str, np.ndarray]:
    """The child's choices in the private block the scenario decides: a few stop on a screen
    (the form's 'go on' questions, in order), about one in ten asks the support team to get
    in touch."""
    screens = [i.name for i in model.items if i.list_name == "sc_go"]
    out: dict[str, np.ndarray] = {}
    if screens:
        stop_at = np.where(rng.random(n) < STOP_SHARE, rng.integers(0, len(screens), n), -1)
        for k, name in enumerate(screens):
            out[name] = np.where(stop_at == k, "2", "1").astype(object)
    if "ref_accept" in model.by_name:
        out["ref_accept"] = rng.choice(np.array(["1", "0", "98", "99"], dtype=object), n,
                                       p=[0.1, 0.8, 0.08, 0.02])
    return out


def _caregiver(config: CountryConfig, model: FormModel, sel: pd.DataFrame,
               pace: dict[int, float], rng: np.random.Generator) -> FormData:
    n = len(sel)
    keys = pd.Index(instance_ids(rng, n))
    days = [dt.date.fromisoformat(d) for d in sel["day"]]
    enum = [int(e) for e in sel["enum_id"]]
    start, end, submitted = _timing(config, days, enum, pace, DURATION["caregiver"], rng)
    root = {
        "start": start, "end": end, "deviceid": [f"collect:{config.iso.lower()}{e}"
                                                 for e in enum],
        "country": sel["country"], "region": sel["region"],
        **{f: sel[f] for f in model.household_id}, "enum_id": sel["enum_id"],
        "cg_line": sel["caregiver_line"], "child_line": sel["child_line"],
        "cg_avail": _availability(rng, n),
        **gates_answered(model, [rng.random(n) > config.simulation.caregiver_refusal]),
        "cg_age": [str(int(a)) for a in rng.integers(24, 65, n)],
    }
    presets = Presets({k: pd.Series(np.asarray(v, dtype=object), index=keys)
                       for k, v in root.items()})
    presets.derived["cg_result"] = "${cg_auto}"  # the result the form derives
    data = answer_form(model, keys, presets, rng, today=max(days, default=config.fieldwork_end))
    data.root["_submitted"] = submitted
    return data


def _frontline(config: CountryConfig, model: FormModel, pace: dict[int, float],
               rng: np.random.Generator) -> FormData:
    n = config.frontline_workers
    keys = pd.Index(instance_ids(rng, n))
    enum = [int(rng.choice(config.enumerators)) for _ in range(n)]
    window = (config.fieldwork_end - config.fieldwork_start).days
    days = [config.fieldwork_start + dt.timedelta(days=int(d))
            for d in np.sort(rng.integers(0, window + 1, n))]
    start, end, submitted = _timing(config, days, enum, pace, DURATION["frontline_worker"], rng)
    root = {
        "start": start, "end": end, "deviceid": [f"collect:{config.iso.lower()}{e}"
                                                 for e in enum],
        "country": [str(config.code)] * n,
        "region": [str(r) for r in rng.choice(config.regions, n)],
        "enum_id": [str(e) for e in enum], "worker_no": [str(i) for i in range(1, n + 1)],
        **gates_answered(model, [rng.random(n) < 0.96]),
    }
    presets = Presets({k: pd.Series(np.asarray(v, dtype=object), index=keys)
                       for k, v in root.items()})
    data = answer_form(model, keys, presets, rng, today=max(days, default=config.fieldwork_end))
    data.root["_submitted"] = submitted
    return data


def _raw(data: FormData, model: FormModel) -> RawForm:
    """The simulated answers as canonical tables (what a server would hold)."""
    root = data.root
    fields = field_columns(model)
    meta = pd.DataFrame({
        "KEY": root.index.astype(str),
        "form_id": model.form_id,
        "form_version": model.version,
        "submission_time": root["_submitted"].to_numpy(),
        "submitter": root["enum_id"].to_numpy() if "enum_id" in root else None,
        "review_state": None,
        "source_format": "simulation",
        "source_file": None,
    }, columns=META)
    table = pd.concat([meta, root[fields].reset_index(drop=True)], axis=1).astype(object)
    # pandas-stubs reject other=None, which pandas accepts (missing values become None)
    table = table.where(table.notna(), None)  # type: ignore[call-overload]
    repeats = {}
    for name, frame in data.repeats.items():
        cols = field_columns(model, name)
        rep = pd.DataFrame({"KEY": frame.index.astype(str).to_numpy(),
                            PARENT: frame[PARENT].astype(str).to_numpy()})
        rep = pd.concat([rep, frame[cols].reset_index(drop=True)], axis=1).astype(object)
        repeats[name] = rep.where(rep.notna(), None)  # type: ignore[call-overload]
    return RawForm(model.form_id, table, repeats)
