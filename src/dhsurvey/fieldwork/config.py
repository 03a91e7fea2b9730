"""Per-country study configuration: what a survey manager edits, validated on load.

``instruments/countries/<ISO>.yaml`` holds the languages fieldwork uses, the strata (region ×
urban/rural) with their synthetic frame size and PSU allocation, households per PSU, the
fieldwork window, teams and enumerators, targets, and calibration margins with their source.
Everything is checked against the instruments (country and region codes, urban/rural codes,
margin levels, interview and release languages) so a typo fails at load with the file and key
named, not halfway through a pipeline run. :func:`load_countries` is the loader every entry
point uses: it always checks against the forms (the instruments' own when none are given).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dhsurvey.errors import ConfigError
from dhsurvey.forms.model import FormModel, load_form

URBAN, RURAL = 1, 2


@dataclass(frozen=True)
class Stratum:
    """One explicit stratum of the sample design."""

    region: int
    urban_rural: int  # 1 urban, 2 rural (choice codes of the instruments)
    eas: int  # enumeration areas in the (synthetic) frame
    psus: int  # PSUs to select
    mean_households: float = 150.0  # mean EA size in the synthetic frame

    @property
    def code(self) -> str:
        return f"{self.region}{self.urban_rural}"


@dataclass(frozen=True)
class Team:
    id: int
    enumerators: tuple[int, ...]
    regions: tuple[int, ...] = ()


@dataclass(frozen=True)
class Simulation:
    """Rates the simulator uses; never used by validation or weighting."""

    vacant: float = 0.04
    non_contact: float = 0.05
    refusal: float = 0.06
    internet_use: float = 0.75  # share of 12-17 year olds online in the last 3 months
    child_refusal: float = 0.04
    caregiver_refusal: float = 0.03
    ocsea_base: float = 0.07  # typical past-year prevalence of one experience


@dataclass(frozen=True)
class CountryConfig:
    path: Path
    iso: str
    name: str
    code: int  # ISO 3166 numeric, as in the instruments' country list
    languages: tuple[str, ...]
    release_language: str
    fieldwork_start: dt.date
    fieldwork_end: dt.date
    utc_offset: str
    households_per_psu: int
    strata: tuple[Stratum, ...]
    teams: tuple[Team, ...]
    frontline_workers: int
    targets: dict[str, int]
    margins: dict[str, dict[str, float]]
    margins_source: str
    simulation: Simulation = field(default_factory=Simulation)
    #: Cap on released replicate weights: PSUs are grouped into variance units when a
    #: stratum has more PSUs than its share of the cap (see weight.study). A stratum keeps at
    #: least two units, so with more than cap/2 strata the count is 2 per stratum instead.
    max_replicates: int = 200

    @property
    def enumerators(self) -> list[int]:
        return [e for t in self.teams for e in t.enumerators]

    @property
    def regions(self) -> list[int]:
        return sorted({s.region for s in self.strata})

    @property
    def psus(self) -> int:
        return sum(s.psus for s in self.strata)


def _need(data: dict, key: str, path: Path, where: str = "") -> Any:
    if key not in data or data[key] in (None, ""):
        raise ConfigError(f"missing '{where}{key}'", code="config-missing", file=path,
                          field=f"{where}{key}")
    return data[key]


def _int(value: Any, path: Path, name: str, low: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"'{name}' must be a whole number, got {value!r}",
                          code="config-invalid", file=path, field=name)
    if low is not None and value < low:
        raise ConfigError(f"'{name}' must be at least {low}, got {value}",
                          code="config-invalid", file=path, field=name)
    return value


def _date(value: Any, path: Path, name: str) -> dt.date:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(f"'{name}' must be a date (YYYY-MM-DD), got {value!r}",
                          code="config-invalid", file=path, field=name) from None


Forms = Mapping[str, FormModel] | Iterable[FormModel]


def _forms(forms: Forms | None) -> list[FormModel]:
    if forms is None:
        return []
    return list(forms.values() if isinstance(forms, Mapping) else forms)


def _strata(data: dict, path: Path) -> list[Stratum]:
    strata = []
    seen: set[tuple[int, int]] = set()
    for i, s in enumerate(_need(data, "strata", path)):
        where = f"strata[{i}]."
        stratum = Stratum(
            region=_int(_need(s, "region", path, where), path, where + "region"),
            urban_rural=_int(_need(s, "urban_rural", path, where), path, where + "urban_rural"),
            eas=_int(_need(s, "eas", path, where), path, where + "eas", 1),
            psus=_int(_need(s, "psus", path, where), path, where + "psus", 1),
            mean_households=float(s.get("mean_households", 150.0)),
        )
        if stratum.urban_rural not in (URBAN, RURAL):
            raise ConfigError(f"{where}urban_rural must be 1 (urban) or 2 (rural)",
                              code="config-invalid", file=path, field=where + "urban_rural")
        if stratum.psus > stratum.eas:
            raise ConfigError(f"{where}psus ({stratum.psus}) exceeds the frame's EAs "
                              f"({stratum.eas})", code="config-invalid", file=path,
                              field=where + "psus")
        key = (stratum.region, stratum.urban_rural)
        if key in seen:
            raise ConfigError(f"stratum {key} is listed twice", code="config-invalid",
                              file=path, field=where + "region")
        seen.add(key)
        strata.append(stratum)
    return strata


def _teams(data: dict, path: Path, strata: list[Stratum]) -> list[Team]:
    teams = []
    enumerators: set[int] = set()
    for i, t in enumerate(_need(data, "teams", path)):
        where = f"teams[{i}]."
        ids = tuple(_int(e, path, where + "enumerators") for e in _need(t, "enumerators",
                                                                            path, where))
        dup = enumerators & set(ids)
        if dup:
            raise ConfigError(f"enumerator(s) {sorted(dup)} in more than one team",
                              code="config-invalid", file=path, field=where + "enumerators")
        enumerators |= set(ids)
        team = Team(_int(_need(t, "id", path, where), path, where + "id"), ids,
                    tuple(_int(r, path, where + "regions") for r in t.get("regions", ()) or ()))
        strange = sorted(set(team.regions) - {s.region for s in strata})
        if strange:
            raise ConfigError(f"team {team.id} works in region(s) {strange}, which no stratum "
                              "has", code="config-invalid", file=path, field=where + "regions")
        teams.append(team)
    return teams


#: The top-level keys of a country file :func:`load_country` reads (lint reports any other:
#: the loader would ignore it silently).
COUNTRY_KEYS = frozenset({"iso", "name", "code", "languages", "release_language", "fieldwork",
                          "households_per_psu", "strata", "teams", "frontline_workers",
                          "targets", "margins", "simulation", "max_replicates"})


def load_country(path: str | Path, forms: Forms | None = None) -> CountryConfig:
    """Read and validate one country's YAML; ``forms`` adds checks against the instruments
    (entry points use :func:`load_countries`, which always checks)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError("country configuration not found", code="config-missing", file=path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(f"not valid YAML: {getattr(exc, 'problem', exc)}",
                          code="config-invalid", file=path,
                          row=mark.line + 1 if mark else None) from None
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping at the top level", code="config-invalid",
                          file=path)

    iso = str(_need(data, "iso", path))
    if iso != path.stem or len(iso) != 3 or not iso.isupper():
        raise ConfigError(f"iso '{iso}' must be the 3-letter code the file is named after "
                          f"('{path.stem}')", code="config-invalid", file=path, field="iso")
    fw = _need(data, "fieldwork", path)
    start = _date(_need(fw, "start", path, "fieldwork."), path, "fieldwork.start")
    end = _date(_need(fw, "end", path, "fieldwork."), path, "fieldwork.end")
    if end < start:
        raise ConfigError("fieldwork.end is before fieldwork.start", code="config-invalid",
                          file=path, field="fieldwork.end")

    strata = _strata(data, path)
    teams = _teams(data, path, strata)

    margins_block = _need(data, "margins", path)
    margins = {str(var): {str(k): float(v) for k, v in levels.items()}
               for var, levels in _need(margins_block, "totals", path, "margins.").items()}
    totals = {var: sum(levels.values()) for var, levels in margins.items()}
    if len({round(t) for t in totals.values()}) > 1:
        raise ConfigError(f"calibration margins do not add to the same total: {totals}",
                          code="config-invalid", file=path, field="margins.totals")

    sim = data.get("simulation", {}) or {}
    unknown = set(sim) - set(Simulation.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"unknown simulation setting(s) {sorted(unknown)}",
                          code="config-invalid", file=path, field="simulation")
    config = CountryConfig(
        path=path,
        iso=iso,
        name=str(_need(data, "name", path)),
        code=_int(_need(data, "code", path), path, "code"),
        languages=tuple(_need(data, "languages", path)),
        release_language=str(data.get("release_language", "English (en)")),
        fieldwork_start=start,
        fieldwork_end=end,
        utc_offset=str(fw.get("utc_offset", "+00:00")),
        households_per_psu=_int(_need(data, "households_per_psu", path),
                                path, "households_per_psu", 1),
        strata=tuple(strata),
        teams=tuple(teams),
        frontline_workers=_int(data.get("frontline_workers", 50), path, "frontline_workers", 0),
        targets={str(k): int(v) for k, v in (data.get("targets") or {}).items()},
        margins=margins,
        margins_source=str(_need(margins_block, "source", path, "margins.")),
        simulation=Simulation(**sim),
        max_replicates=_int(data.get("max_replicates", 200), path, "max_replicates", 2),
    )
    if forms:
        _check_against_forms(config, _forms(forms))
    return config


def _choice_codes(model: FormModel, name: str) -> list[str] | None:
    """The codes of the choice list of field ``name`` (None: no such select field)."""
    item = model.by_name.get(name)
    lst = model.choices_for(item) if item is not None and item.is_select else None
    return lst.codes() if lst is not None else None


def _check_against_forms(config: CountryConfig, forms: list[FormModel]) -> None:
    path = config.path
    for model in forms:
        missing = [lang for lang in config.languages if lang not in model.languages]
        if missing:
            raise ConfigError(f"language(s) {missing} not in {model.path.name} "
                              f"(it has {model.languages})", code="config-invalid", file=path,
                              field="languages", form=model.form_id)
        if model.languages != ["default"] and config.release_language not in model.languages:
            raise ConfigError(f"release_language '{config.release_language}' is not a language "
                              f"of {model.path.name} (it has {model.languages})",
                              code="config-invalid", file=path, field="release_language",
                              form=model.form_id)
        urban_rural = _choice_codes(model, "urban_rural")
        for i, stratum in enumerate(config.strata):
            if urban_rural is not None and str(stratum.urban_rural) not in urban_rural:
                raise ConfigError(f"urban_rural {stratum.urban_rural} is not a code of "
                                  f"{model.path.name}'s urban_rural list ({urban_rural})",
                                  code="config-invalid", file=path,
                                  field=f"strata[{i}].urban_rural", form=model.form_id)
        for variable, levels in config.margins.items():
            codes = _choice_codes(model, variable)
            unknown = [level for level in levels if codes is not None and level not in codes]
            if unknown:
                raise ConfigError(f"margin {variable} has level(s) {unknown} that are not codes "
                                  f"of {model.path.name}'s '{variable}' list ({codes})",
                                  code="config-invalid", file=path,
                                  field=f"margins.totals.{variable}", form=model.form_id)
        regions = model.choice_lists.get("region")
        countries = model.choice_lists.get("country")
        if countries is not None and str(config.code) not in countries.codes():
            raise ConfigError(f"country code {config.code} is not in {model.path.name}'s "
                              "country list", code="config-invalid", file=path, field="code",
                              form=model.form_id)
        if regions is not None:
            known = {c.name: c.extra.get("country") for c in regions.choices}
            for region in config.regions:
                if known.get(str(region)) != str(config.code):
                    raise ConfigError(
                        f"region {region} is not a region of country {config.code} in "
                        f"{model.path.name}", code="config-invalid", file=path,
                        field="strata", form=model.form_id)


def country_paths(instruments: str | Path) -> list[Path]:
    """The configured countries (``instruments/countries/*.yaml``), sorted by ISO code."""
    folder = Path(instruments) / "countries"
    paths = sorted(folder.glob("*.yaml"))
    if not paths:
        raise ConfigError("no country configurations", code="config-missing", file=folder)
    return paths


def load_countries(instruments: str | Path, forms: Forms | None = None,
                   only: list[str] | None = None) -> list[CountryConfig]:
    """Every country file of ``instruments`` (or those in ``only``), each checked against
    ``forms``: the instruments' own workbooks when not given. The one loader of country files
    every entry point uses."""
    if forms is None:
        from dhsurvey.forms.compile import instrument_paths

        forms = [load_form(p) for p in instrument_paths(instruments)]
    configs = [load_country(p, forms) for p in country_paths(instruments)]
    if only:
        unknown = set(only) - {c.iso for c in configs}
        if unknown:
            raise ConfigError(f"no configuration for {sorted(unknown)}", code="config-missing",
                              file=Path(instruments) / "countries")
        configs = [c for c in configs if c.iso in only]
    return configs
