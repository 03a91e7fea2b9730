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
from dhsurvey.forms.model import FormModel, language_code, load_form
from dhsurvey.io import load_yaml

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
class Region:
    """A first-level administrative division: its code in the data, its name, and how the
    name is written in interview languages whose script or spelling differs."""

    code: int
    name: str
    names: dict[str, str] = field(default_factory=dict)  # language code → name
    zone: int | None = None  # the release zone it belongs to (see CountryConfig.zones)


@dataclass(frozen=True)
class Zone:
    """A group of regions the released files name instead of the region: a region holds too
    few interviewed children to be released safely. Released as ``country × 1000 + code``."""

    code: int
    name: str
    names: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Level:
    """A school or education level as the country names it, mapped to ISCED 2011 so pooled
    data compare (9: not classifiable, e.g. religious school only)."""

    code: int
    isced: int
    labels: dict[str, str]  # language code → label


@dataclass(frozen=True)
class Helpline:
    """The free number every child and caregiver is given."""

    name: str
    number: str
    note: str = ""


#: The kinds of platform whose local examples interviewers may give.
PLATFORM_KINDS = ("social", "messaging", "games", "video")


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
    names: dict[str, str] = field(default_factory=dict)  # the country's name by language code
    admin1: str = "region"  # what the first-level divisions are called
    divisions: tuple[Region, ...] = ()
    zones: tuple[Zone, ...] = ()
    helpline: Helpline | None = None
    referral: tuple[dict[str, str], ...] = ()
    platforms: dict[str, tuple[str, ...]] = field(default_factory=dict)
    schools: tuple[Level, ...] = ()
    education: tuple[Level, ...] = ()
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

    @property
    def households(self) -> int:
        """Households the design samples (PSUs × households per PSU): the size of the
        country's fieldwork and of its run."""
        return self.psus * self.households_per_psu

    def zone_code(self, zone: int) -> int:
        """A zone's code in released files (distinct from every region code)."""
        return self.code * 1000 + zone

    @property
    def released_regions(self) -> dict[int, int]:
        """Region code → the code released files hold for it: its zone's, or (a country
        without zones) its own."""
        return {r.code: self.zone_code(r.zone) if r.zone is not None else r.code
                for r in self.divisions}

    @property
    def released_strata(self) -> dict[str, str]:
        """Stratum code → the stratum released files hold: the zone's urban or rural part
        (strata collapsed within a zone; variance estimates stay valid, slightly
        conservative)."""
        regions = self.released_regions
        return {s.code: f"{regions.get(s.region, s.region)}{s.urban_rural}"
                for s in self.strata}

    @property
    def language_codes(self) -> list[str]:
        """The interview and release languages' codes (``sw`` of ``Kiswahili (sw)``)."""
        return list(dict.fromkeys(language_code(x)
                                  for x in (*self.languages, self.release_language)))




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
                          "targets", "margins", "simulation", "max_replicates", "names",
                          "admin1", "regions", "zones", "helpline", "referral", "platforms",
                          "schools", "education"})


def _names(value: Any, path: Path, where: str) -> dict[str, str]:
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"'{where}' must map language codes to texts, got {value!r}",
                          code="config-invalid", file=path, field=where)
    return {str(k).lower(): str(v) for k, v in value.items() if v not in (None, "")}


def _zones(data: dict, path: Path) -> list[Zone]:
    out = []
    for i, z in enumerate(data.get("zones") or ()):
        where = f"zones[{i}]."
        out.append(Zone(_int(_need(z, "code", path, where), path, where + "code", 1),
                        str(_need(z, "name", path, where)),
                        _names(z.get("names"), path, where + "names")))
    if len({z.code for z in out}) != len(out):
        raise ConfigError("zone codes are not unique", code="config-invalid", file=path,
                          field="zones")
    return out


def _divisions(data: dict, path: Path, strata: list[Stratum], country: int,
               zones: set[int]) -> list[Region]:
    """The ``regions`` list; every stratum's region must be one of them (a file without the
    list keeps its strata's codes, unnamed). A region's code is the country's code × 100 plus
    its number, so the regions of pooled countries never share a code."""
    raw = data.get("regions")
    if raw is None:
        return [Region(r, str(r)) for r in sorted({s.region for s in strata})]
    out: list[Region] = []
    for i, r in enumerate(raw):
        where = f"regions[{i}]."
        zone = r.get("zone")
        out.append(Region(_int(_need(r, "code", path, where), path, where + "code"),
                          str(_need(r, "name", path, where)),
                          _names(r.get("names"), path, where + "names"),
                          None if zone is None else _int(zone, path, where + "zone")))
        if zone is not None and zone not in zones:
            raise ConfigError(f"zone {zone} is not in 'zones'", code="config-invalid",
                              file=path, field=where + "zone")
        if out[-1].code // 100 != country:
            raise ConfigError(f"region code {out[-1].code} is not country {country} × 100 plus "
                              "a number", code="config-invalid", file=path, field=where + "code")
    if zones and any(r.zone is None for r in out):
        i = next(i for i, r in enumerate(out) if r.zone is None)
        raise ConfigError("a country with zones puts every region in one", code="config-invalid",
                          file=path, field=f"regions[{i}].zone")
    codes = [r.code for r in out]
    dup = sorted({c for c in codes if codes.count(c) > 1})
    if dup:
        raise ConfigError(f"region code(s) {dup} listed twice", code="config-invalid",
                          file=path, field="regions")
    for i, stratum in enumerate(strata):
        if stratum.region not in codes:
            raise ConfigError(f"stratum region {stratum.region} is not in 'regions'",
                              code="config-invalid", file=path, field=f"strata[{i}].region")
    return out


def _levels(data: dict, key: str, path: Path, languages: list[str],
            country: int) -> list[Level]:
    """``schools`` or ``education``: codes the country's code × 100 plus a number (unique in
    pooled data, like regions), ISCED 0-9, a label in every language."""
    out: list[Level] = []
    for i, raw in enumerate(data.get(key) or ()):
        where = f"{key}[{i}]."
        level = Level(_int(_need(raw, "code", path, where), path, where + "code"),
                      _int(_need(raw, "isced", path, where), path, where + "isced", 0),
                      _names(_need(raw, "label", path, where), path, where + "label"))
        if level.code // 100 != country:
            raise ConfigError(f"{where}code {level.code} is not country {country} × 100 plus a "
                              "number", code="config-invalid", file=path, field=where + "code")
        if level.isced > 9:
            raise ConfigError(f"{where}isced must be an ISCED 2011 level 0-8 (9: not "
                              f"classifiable), got {level.isced}", code="config-invalid",
                              file=path, field=where + "isced")
        missing = [lang for lang in languages if lang not in level.labels]
        if missing:
            raise ConfigError(f"{where}label has no text in {missing}", code="config-invalid",
                              file=path, field=where + "label")
        out.append(level)
    codes = [lv.code for lv in out]
    if len(set(codes)) != len(codes):
        raise ConfigError(f"{key} codes are not unique", code="config-invalid", file=path,
                          field=key)
    return out


def _helpline(data: dict, path: Path) -> Helpline | None:
    raw = data.get("helpline")
    if raw is None:
        return None
    return Helpline(str(_need(raw, "name", path, "helpline.")),
                    str(_need(raw, "number", path, "helpline.")), str(raw.get("note") or ""))


def _platforms(data: dict, path: Path) -> dict[str, tuple[str, ...]]:
    raw = data.get("platforms") or {}
    unknown = sorted(set(raw) - set(PLATFORM_KINDS), key=str)
    if unknown:
        raise ConfigError(f"unknown platform kind(s) {unknown} (kinds: "
                          f"{', '.join(PLATFORM_KINDS)})", code="config-invalid", file=path,
                          field="platforms")
    return {k: tuple(str(x) for x in (raw.get(k) or ())) for k in PLATFORM_KINDS}


def load_country(path: str | Path, forms: Forms | None = None) -> CountryConfig:
    """Read and validate one country's YAML; ``forms`` adds checks against the instruments
    (entry points use :func:`load_countries`, which always checks)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError("country configuration not found", code="config-missing", file=path)
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
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
    languages = tuple(str(x) for x in _need(data, "languages", path))
    release = str(data.get("release_language", "English (en)"))
    _check_languages(path, languages, release, _forms(forms))
    zones = _zones(data, path)
    codes = list(dict.fromkeys(language_code(x) for x in (*languages, release)))

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
        languages=languages,
        release_language=release,
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
        names=_names(data.get("names"), path, "names"),
        admin1=str(data.get("admin1") or "region"),
        divisions=tuple(_divisions(data, path, strata, _int(data["code"], path, "code"),
                                   {z.code for z in zones})),
        zones=tuple(zones),
        helpline=_helpline(data, path),
        referral=tuple({str(k): str(v) for k, v in r.items()}
                       for r in data.get("referral") or ()),
        platforms=_platforms(data, path),
        schools=tuple(_levels(data, "schools", path, codes, data["code"])),
        education=tuple(_levels(data, "education", path, codes, data["code"])),
    )
    if forms:
        _check_against_forms(config, _forms(forms))
    return config


def _choice_codes(model: FormModel, name: str) -> list[str] | None:
    """The codes of the choice list of field ``name`` (None: no such select field)."""
    item = model.by_name.get(name)
    lst = model.choices_for(item) if item is not None and item.is_select else None
    return lst.codes() if lst is not None else None


def _check_languages(path: Path, languages: tuple[str, ...], release: str,
                     forms: list[FormModel]) -> None:
    """Interview and release languages must be columns of every workbook (checked before the
    levels' labels, which are asked for in these languages)."""
    for model in forms:
        missing = [lang for lang in languages if lang not in model.languages]
        if missing:
            raise ConfigError(f"language(s) {missing} not in {model.path.name} "
                              f"(it has {model.languages})", code="config-invalid", file=path,
                              field="languages", form=model.form_id)
        if model.languages != ["default"] and release not in model.languages:
            raise ConfigError(f"release_language '{release}' is not a language "
                              f"of {model.path.name} (it has {model.languages})",
                              code="config-invalid", file=path, field="release_language",
                              form=model.form_id)


def _check_against_forms(config: CountryConfig, forms: list[FormModel]) -> None:
    path = config.path
    for model in forms:
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


def country_paths(instruments: str | Path) -> list[Path]:
    """The configured countries (``instruments/countries/*.yaml``), sorted by ISO code."""
    folder = Path(instruments) / "countries"
    paths = sorted(folder.glob("*.yaml"))
    if not paths:
        raise ConfigError("no country configurations", code="config-missing", file=folder)
    return paths


def load_countries(instruments: str | Path, forms: Forms | None = None,
                   only: list[str] | None = None, *,
                   attachments: bool = True) -> list[CountryConfig]:
    """Every country file of ``instruments`` (or those in ``only``), each checked against
    ``forms``: the instruments' own workbooks when not given. The one loader of country files
    every entry point uses; it refuses attached files out of step with the country files
    unless ``attachments`` is false (for the command that writes them)."""
    if forms is None:
        from dhsurvey.forms.compile import instrument_paths

        forms = [load_form(p) for p in instrument_paths(instruments)]
    configs = [load_country(p, forms) for p in country_paths(instruments)]
    stale = stale_attachments(instruments, configs, forms) if attachments else []
    if stale:
        path, what = stale[0]
        raise ConfigError(f"{path.name} is out of step with the country files ({what}); "
                          "run `dhsurvey country media` to write it again",
                          code="attachment-stale", file=path)
    if only:
        unknown = set(only) - {c.iso for c in configs}
        if unknown:
            raise ConfigError(f"no configuration for {sorted(unknown)}", code="config-missing",
                              file=Path(instruments) / "countries")
        configs = [c for c in configs if c.iso in only]
    return configs


# -- the forms' attached files, made from the country files --------------------------------
# The workbooks hold no country's names, levels or numbers: they select from these CSV files
# (select_one_from_file, filtered by ${country}) and look up the helpline and platform
# examples with instance('countries'). The country files are the one place they are written;
# `dhsurvey country media` writes the files, and every loader refuses files out of step.

#: The attached files, in the order written.
ATTACHMENTS = ("countries.csv", "regions.csv", "schools.csv", "education.csv")
#: Column of a choice list whose choices carry a language code (the study's language list).
LANGUAGE_CODE_COLUMN = "lang"

Row = dict[str, str]


def _language_names(configs: Iterable[CountryConfig]) -> dict[str, str]:
    """Language code → the workbook column name (``sw`` → ``Kiswahili (sw)``)."""
    out: dict[str, str] = {}
    for config in configs:
        for column in (*config.languages, config.release_language):
            out.setdefault(language_code(column), column)
    return out


def _study_languages(forms: list[FormModel]) -> dict[str, str]:
    """Language code → its code in the forms' language list (the list with a ``lang``
    column), so a country's interview languages can filter that list."""
    for model in forms:
        for lst in model.choice_lists.values():
            if any(LANGUAGE_CODE_COLUMN in c.extra for c in lst.choices):
                return {c.extra[LANGUAGE_CODE_COLUMN].lower(): c.name for c in lst.choices
                        if c.extra.get(LANGUAGE_CODE_COLUMN)}
    return {}


def _translated(texts: Mapping[str, str], names: Mapping[str, str], release: str,
                fallback: str) -> Row:
    """``label`` (release language) plus ``label::<language>`` for every other text."""
    row = {"label": texts.get(release) or fallback}
    for code, text in texts.items():
        if code != release and code in names:
            row[f"label::{names[code]}"] = text
    return row


def country_rows(config: CountryConfig, forms: list[FormModel],
                 names: Mapping[str, str]) -> dict[str, list[Row]]:
    """What one country contributes to each attached file."""
    release = language_code(config.release_language)
    study = _study_languages(forms)
    helpline = config.helpline or Helpline("", "")
    country = {"name": str(config.code),
               **_translated(config.names, names, release, config.name),
               "label::stata": config.name, "iso": config.iso, "admin1": config.admin1,
               "helpline": helpline.number, "helpline_name": helpline.name,
               **{f"eg_{k}": ", ".join(config.platforms.get(k, ())) for k in PLATFORM_KINDS},
               }
    if study:  # the forms' language list is at hand (not when only some forms are given)
        spoken = (language_code(x) for x in config.languages)  # interviews, not the release
        country["languages"] = " ".join(study[c] for c in spoken if c in study)
    out: dict[str, list[Row]] = {"countries.csv": [country]}
    out["regions.csv"] = [
        {"name": str(r.code), **_translated(r.names, names, release, r.name),
         "label::stata": f"{config.iso}: {r.name}", "country": str(config.code)}
        for r in config.divisions]
    for file, levels in (("schools.csv", config.schools), ("education.csv", config.education)):
        out[file] = [{"name": str(lv.code), **_translated(lv.labels, names, release, ""),
                      "label::stata": lv.labels.get(release, ""),
                      "country": str(config.code), "isced": str(lv.isced)}
                     for lv in levels]
    return out


def attachment_tables(configs: list[CountryConfig],
                      forms: Forms) -> dict[str, tuple[list[str], list[Row]]]:
    """Each attached file's columns and rows, every country in ISO order."""
    models = _forms(forms)
    names = _language_names(configs)
    tables: dict[str, tuple[list[str], list[Row]]] = {}
    for file in ATTACHMENTS:
        rows = [row for config in sorted(configs, key=lambda c: c.iso)
                for row in country_rows(config, models, names)[file]]
        columns = list(dict.fromkeys(k for row in rows for k in row))
        tables[file] = (columns, rows)
    return tables


def write_attachments(instruments: str | Path, configs: list[CountryConfig],
                      forms: Forms) -> list[Path]:
    """Write the attached files beside the workbooks; returns the paths written."""
    import csv
    import io as _io

    from dhsurvey.io import atomic_write_bytes

    written = []
    for file, (columns, rows) in attachment_tables(configs, forms).items():
        buffer = _io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        path = Path(instruments) / file
        atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))
        written.append(path)
    return written


def stale_attachments(instruments: str | Path, configs: list[CountryConfig],
                      forms: Forms) -> list[tuple[Path, str]]:
    """(file, what differs) for each attached file the forms read whose rows of a country are
    not what that country's file gives (rows of countries not in ``configs`` are not
    judged)."""
    import csv

    models = _forms(forms)
    names = _language_names(configs)
    used = {name for model in models for name in model.attachments}
    problems: list[tuple[Path, str]] = []
    for file in (f for f in ATTACHMENTS if f in used):  # those the forms read
        path = Path(instruments) / file
        if not path.is_file():
            problems.append((path, "missing"))
            continue
        with path.open(encoding="utf-8-sig", newline="") as handle:
            found = [{k: v for k, v in row.items() if k and v} for row in csv.DictReader(handle)]
        key = "name" if file == "countries.csv" else "country"
        for config in configs:
            want = [{k: v for k, v in row.items() if v}
                    for row in country_rows(config, models, names)[file]]
            have = [row for row in found if row.get(key) == str(config.code)]
            if file == "countries.csv" and want and "languages" not in want[0]:
                have = [{k: v for k, v in row.items() if k != "languages"} for row in have]
            if want != have:
                problems.append((path, f"rows of {config.iso} differ from {config.path.name}"))
    return problems


# -- the back-check plan ----------------------------------------------------------------------

#: The back-check plan's file in the instruments folder.
PLAN_FILE = "backcheck.yaml"

#: What a difference in a back-checked variable of each type means, and who acts on it.
TYPES = {1: "must not change: enumerator follow-up",
         2: "hard to administer: retraining",
         3: "stability: data quality"}


@dataclass(frozen=True)
class Plan:
    """What a back-check re-asks and how differences are read (``instruments/backcheck.yaml``).

    Configuration like the country files: the simulator draws back-checks by it and validation
    compares them by it, so both read it here."""

    form: str
    id_columns: list[str]
    variables: dict[str, int]
    tolerances: dict[str, float]
    enumerator: str = "enum_id"


def load_plan(path: str | Path) -> Plan:
    """Read and check a back-check plan; errors name the file and the key."""
    path = Path(path)
    if not path.exists():
        raise ConfigError("back-check plan not found", code="config-missing", file=path)
    data = load_yaml(path.read_text(encoding="utf-8")) or {}
    for key in ("form", "id_columns", "variables"):
        if not data.get(key):
            raise ConfigError(f"missing '{key}'", code="config-missing", file=path, field=key)
    bad = {v: t for v, t in data["variables"].items() if t not in TYPES}
    if bad:
        raise ConfigError(f"variable types must be 1, 2 or 3: {bad}", code="config-invalid",
                          file=path, field="variables")
    return Plan(str(data["form"]), [str(c) for c in data["id_columns"]],
                {str(k): int(v) for k, v in data["variables"].items()},
                {k: float(v) for k, v in (data.get("tolerances") or {}).items()},
                str(data.get("enumerator", "enum_id")))
