"""``dhsurvey country new``: a new country's file, every key there and explained.

A survey manager adding a country starts from a file that already loads: two placeholder
regions with their urban and rural strata, one team, the ISCED ladder of school and education
levels in English (to be renamed as the country names them), and margins that agree. Each key
carries the comment that says what it means and where its values come from, so the file is its
own documentation; :func:`dhsurvey.fieldwork.config.load_country` checks what is filled in.
"""

from __future__ import annotations

from pathlib import Path

from dhsurvey.errors import ConfigError
from dhsurvey.fieldwork.config import load_country
from dhsurvey.forms.model import language_code
from dhsurvey.io import atomic_write_bytes

#: ISCED 2011 levels a school system is mapped to (a child's current level).
_SCHOOLS = ((1, "Primary school"), (2, "Lower secondary school"), (3, "Upper secondary school"),
            (4, "Vocational or technical college"), (9, "Religious school only"))
#: Highest level an adult reached.
_EDUCATION = ((0, "No formal schooling"), (1, "Primary"), (2, "Lower secondary"),
              (3, "Upper secondary"), (4, "Post-secondary vocational"), (6, "University"))


def _label(text: str, codes: list[str]) -> str:
    return "{" + ", ".join(f"{c}: {text}" for c in codes) + "}"


def _levels(code: int, levels: tuple[tuple[int, str], ...], codes: list[str]) -> str:
    return "\n".join(f"  - {{code: {code * 100 + k}, isced: {isced}, label: "
                     f"{_label(text, codes)}}}" for k, (isced, text) in enumerate(levels, 1))


def scaffold(iso: str, name: str, code: int, languages: list[str],
             release_language: str = "English (en)") -> str:
    """The text of a new country file (YAML with a comment on every key)."""
    codes = list(dict.fromkeys(language_code(x) for x in (*languages, release_language)))
    r1, r2 = code * 100 + 1, code * 100 + 2
    langs = ", ".join(languages)
    return f"""\
# {name}: study configuration edited by the survey manager.
# Scaffolded by `dhsurvey country new {iso}`: every value below is a placeholder to replace.
# Sources: cite here the census or projection each frame size and margin comes from.
iso: {iso}  # ISO 3166 alpha-3, the file's name
name: {name}
code: {code}  # ISO 3166 numeric: the value of `country` in the data
names: {{}}  # the country's name in interview languages that write it differently, by code
languages: [{langs}]  # interview languages, named as the workbook columns
release_language: {release_language}  # labels of the released files
admin1: region  # what the first-level administrative divisions are called
fieldwork:
  start: 2026-01-05
  end: 2026-03-27
  utc_offset: "+00:00"  # of the capital: submission times are shown in it
households_per_psu: 20  # households selected in each PSU (enumeration area)
max_replicates: 200  # replicate weight columns at most; PSUs are grouped beyond that
frontline_workers: 50  # frontline welfare workers surveyed
targets:  # what fieldwork aims for (the morning report's denominators)
  households: 160  # = the PSUs below × households_per_psu
  children: 1000
  caregivers: 1000
  frontline_workers: 50
regions:  # first-level divisions; code = country code × 100 + number
  - {{code: {r1}, name: First region}}
  - {{code: {r2}, name: Second region}}
strata:  # region x urban/rural (1 urban, 2 rural); eas = enumeration areas in the frame
  - {{region: {r1}, urban_rural: 1, eas: 1000, psus: 2, mean_households: 150}}
  - {{region: {r1}, urban_rural: 2, eas: 1000, psus: 2, mean_households: 120}}
  - {{region: {r2}, urban_rural: 1, eas: 1000, psus: 2, mean_households: 150}}
  - {{region: {r2}, urban_rural: 2, eas: 1000, psus: 2, mean_households: 120}}
teams:  # every region covered by one team; enumerator codes unique in the country
  - {{id: 1, enumerators: [101, 102, 103, 104], regions: [{r1}, {r2}]}}
helpline:  # the free number every child and caregiver is given
  name: Child Helpline  # the service's own name
  number: "116"
  note: to confirm with the national partner before fieldwork
referral:  # services field teams refer children and caregivers to
  - {{name: Child protection services, contact: to be filled in, serves: both}}
platforms:  # examples interviewers may give: the apps children use most here
  social: [Facebook, TikTok]
  messaging: [WhatsApp]
  games: [Free Fire]
  video: [YouTube]
schools:  # the child's current school level as the country names it, mapped to ISCED 2011
{_levels(code, _SCHOOLS, codes)}
education:  # the caregiver's highest level reached, mapped to ISCED 2011
{_levels(code, _EDUCATION, codes)}
margins:
  source: >-
    Placeholder totals: replace with the national statistics office's projection of
    internet-using children aged 12-17 and cite it here.
  totals:  # population totals the child weights are calibrated to (all three add up alike)
    sex: {{1: 500000, 2: 500000}}  # 1 male, 2 female
    age_group: {{1: 520000, 2: 480000}}  # 1 = 12-14, 2 = 15-17
    urban_rural: {{1: 400000, 2: 600000}}
simulation:  # used only by `dhsurvey simulate`
  vacant: 0.04
  non_contact: 0.05
  refusal: 0.06
  internet_use: 0.6
  child_refusal: 0.04
  caregiver_refusal: 0.03
  ocsea_base: 0.035
"""


def new_country(instruments: str | Path, iso: str, name: str, code: int,
                languages: list[str], release_language: str = "English (en)") -> Path:
    """Write ``countries/<ISO>.yaml`` from :func:`scaffold` (never over an existing file) and
    check that it loads."""
    iso = iso.upper()
    path = Path(instruments) / "countries" / f"{iso}.yaml"
    if path.exists():
        raise ConfigError("a country file already exists", code="config-exists", file=path)
    if len(iso) != 3 or not iso.isalpha():
        raise ConfigError(f"'{iso}' is not an ISO 3166 alpha-3 code", code="config-invalid",
                          file=path, field="iso")
    atomic_write_bytes(path, scaffold(iso, name, code, languages,
                                      release_language).encode("utf-8"))
    try:
        load_country(path)
    except ConfigError:
        path.unlink()
        raise
    return path
