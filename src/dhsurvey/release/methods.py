"""The methods note that travels with every release folder (``methods.md``).

Why: a researcher who finds these files without this project can only trust them if the
release says how it was made. That covers the sample design, response, every weighting step
with its margins and their source, the trimming cap, the design effect, how to estimate
variances from these files, what disclosure control did to them, and how to cite them.
Frontline workers are not a probability sample, and every note says so, the pooled ones
included. Built from the country file, the weights summary and the tier's disclosure
report, never from data values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dhsurvey.fieldwork.config import CountryConfig
from dhsurvey.io import atomic_write_text

#: What every note says of the frontline-worker file.
FRONTLINE = ("Frontline workers (`frontline_worker`) are a purposive sample, **not a "
             "probability sample**: the file is released unweighted, and its percentages "
             "describe the workers interviewed, not a population.")

METHODS_FILE = "methods.md"


def _share(part: Any, whole: Any) -> str:
    try:
        return f"{100 * float(part) / float(whole):.1f} %" if float(whole) else "–"
    except (TypeError, ValueError):
        return "–"


def _response(summary: Mapping[str, Any]) -> list[str]:
    hh = summary.get("households", {})
    ch = summary.get("children", {})
    cg = summary.get("caregivers", {})
    lines = ["## Response", "", "| Unit | Selected | Eligible | Responded | Response rate |",
             "|---|---:|---:|---:|---:|"]
    if hh:
        lines.append(f"| Households | {hh.get('selected', '–')} | {hh.get('eligible', '–')} | "
                     f"{hh.get('respondents', '–')} | "
                     f"{_share(hh.get('respondents'), hh.get('eligible'))} |")
    if ch:
        lines.append(f"| Selected children | {ch.get('selected', '–')} | {ch.get('selected', '–')}"
                     f" | {ch.get('respondents', '–')} | "
                     f"{_share(ch.get('respondents'), ch.get('selected'))} |")
    if cg:
        lines.append(f"| Caregivers | | | {cg.get('respondents', '–')} | |")
    lines += ["", "Response rate: respondents over eligible units (AAPOR RR1 by disposition is "
              "in the fieldwork report of the restricted zone)."]
    return lines


def _weighting(summary: Mapping[str, Any]) -> list[str]:
    lines = ["## Weighting", "",
             "1. Household design weight: the inverse of the recorded selection probabilities "
             "of the PSU and of the household within it.",
             "2. Household nonresponse: adjusted within strata; vacant dwellings are not "
             "eligible.",
             "3. Child weight: household weight times the number of eligible children (one "
             "child selected at random per household); child nonresponse adjusted within "
             "urban/rural x sex x age group.",
             "4. Raking of the child weights to the country's population margins:"]
    margins = summary.get("margins", {})
    for name, m in sorted(margins.items()):
        lines.append(f"   - `{name}`: target {float(m.get('target', 0)):,.0f}, achieved "
                     f"{float(m.get('achieved', 0)):,.0f}")
    lines.append(f"   Source of the margins: {summary.get('margins_source') or 'not stated'}")
    trim = summary.get("trim") or {}
    if trim:
        lines.append(f"5. Trimming at {float(trim.get('cap', 0)):,.1f} (3.5 x the median), "
                     f"{trim.get('trimmed', 0)} weights trimmed, re-raked "
                     f"({trim.get('rounds', 0)} rounds); Kish design effect of weighting "
                     f"{float(trim.get('deff_before', 0)):.3f} before, "
                     f"{float(trim.get('deff_after', 0)):.3f} after.")
    cg_trim = summary.get("trim_caregiver") or {}
    lines.append("6. Caregivers: the child's design weight times caregiver nonresponse (same "
                 "classes), raked to the child margins and trimmed the same way"
                 + (f" (cap {float(cg_trim.get('cap', 0)):,.1f}, {cg_trim.get('trimmed', 0)} "
                    f"trimmed; Kish design effect {float(cg_trim.get('deff_before', 0)):.3f} "
                    f"before, {float(cg_trim.get('deff_after', 0)):.3f} after)"
                    if cg_trim else "") + ".")
    lines.append("The margin variables `sex`, `age_group` and `urban_rural` of the child and "
                 "caregiver files hold the values each weight was raked with: the selected "
                 "child's sex and age group from the household roster (the one age used for "
                 "nonresponse classes, raking and the age domains) and the household's "
                 "urban/rural setting. `margins.csv` lists the population totals.")
    collapsed = {unit: summary.get(unit, {}).get("classes_collapsed") for unit in
                 ("households", "children", "caregivers")}
    collapsed = {u: c for u, c in collapsed.items() if c}
    if collapsed:
        lines.append("Nonresponse classes collapsed for too few respondents: "
                     + "; ".join(f"{u}: {', '.join(map(str, c))}" for u, c in collapsed.items())
                     + ".")
    return lines


ESTIMATION = (
    "`indicators.csv` is computed from these files, as R's `survey` package computes it with "
    "`svydesign.R`: the design on `stratum`, `psu` and `weight` (lonely PSUs: \"adjust\"), "
    "the weights raked again to the population totals of `margins.csv` on the margin "
    "variables (`rake()` on the design; within each country in a pooled release), estimates "
    "`svymean` of each indicator variable in its domain, standard errors by Taylor "
    "linearisation with the raking residuals (calibration-aware), and 95 % intervals by the "
    "logit method with the design's degrees of freedom (`svyciprop(method = \"logit\", "
    "df = degf(design))`: logit(p) ± t(df) · SE/(p(1 − p)), df = PSUs − strata holding the "
    "domain's records; the interval is left empty when p is 0 or 1). Each indicator is a 0/1 "
    "variable of its form's file, missing outside its universe, and each domain a variable "
    "named as in the `domain` column. Unweighted files (frontline workers): shares with the "
    "simple-random-sampling SE and the same interval with n − 1 degrees of freedom.")


def _definitions(indicators: Sequence[Any]) -> list[str]:
    lines = ["## Indicators", "", ESTIMATION, "",
             "| Indicator | File | Numerator | Universe | Prefer not to say / don't know |",
             "|---|---|---|---|---|"]
    for ind in indicators:
        d = ind.definition
        lines.append(f"| `{ind.id}`: {ind.label} | {ind.form} | {d.get('numerator', '')} | "
                     f"{d.get('universe', '')} | {d.get('refusals', '')} |")
    return lines


def methods_note(config: CountryConfig | None, summary: Mapping[str, Any] | None,
                 tier: Mapping[str, Any], variance: str | None, *, release: str,
                 countries: Sequence[str] = (), indicators: Sequence[Any] = (),
                 notes: Sequence[str] = ()) -> str:
    """The note of one release folder: a country's (``config``, ``summary`` from the weights
    step) or a pooled one (``countries``); ``tier``: the tier's disclosure report entry
    (scenario, design, k, budget); ``variance``: the codebook's variance line;
    ``indicators``: the declared indicators (their definitions); ``notes``: what this folder
    leaves out and why."""
    name = config.name if config is not None else "All countries: " + ", ".join(countries)
    lines = [f"# {name}: how these files were made", "",
             f"Release `{release}`, {tier.get('tier', 'public')} tier "
             f"(`{tier.get('folder', 'release')}/`).", ""]
    if config is not None:
        lines += ["## Sample design", "",
                  f"Strata: region x urban/rural, {len(config.strata)} strata in "
                  f"{len(config.regions)} regions; {config.psus} PSUs (enumeration areas) "
                  f"selected with probability proportional to size; {config.households_per_psu}"
                  " households listed and selected per PSU; in each household one "
                  "internet-using child aged 12-17 chosen at random, and that child's main "
                  f"caregiver. Fieldwork {config.fieldwork_start} to {config.fieldwork_end}. "
                  f"Targets: {', '.join(f'{k} {v:,}' for k, v in config.targets.items())}.", ""]
        if config.zones:
            lines += [f"Geography: a region holds too few interviewed children to be released, "
                      f"so these files name its zone instead ({len(config.zones)} zones: "
                      f"{', '.join(z.name for z in config.zones)}), and the design strata "
                      "are collapsed to zone x urban/rural (variance estimates stay valid, "
                      "slightly conservative). The region stays in the restricted data.", ""]
    if summary:
        lines += [*_response(summary), "", *_weighting(summary), ""]
    else:
        lines += ["The countries' own notes (`../<ISO>/methods.md`) give their design, "
                  "response and weighting; `country` identifies each record's country.", ""]
    lines += ["## Variance estimation", "", variance or "See `svydesign.R` and `svyset.do`.",
              ""]
    if summary and summary.get("deff_child") is not None:
        lines += [f"Kish design effect of the final weights: children "
                  f"{float(summary['deff_child']):.3f}"
                  + (f", caregivers {float(summary['deff_caregiver']):.3f}"
                     if summary.get("deff_caregiver") is not None else "") + ".", ""]
    if indicators:
        lines += [*_definitions(indicators), ""]
    if notes:
        lines += ["## Left out of these files", "", *[f"- {n}" for n in notes], ""]
    lines += ["## Disclosure control", "",
              f"Intruder scenario: {tier.get('scenario', 'not stated')}",
              "",
              f"Every record shares its keys with at least {tier.get('k', 3)} respondents of "
              "its file, on every key of the files that can be joined to it; no group of "
              f"{tier.get('l_group', 3)} or more shares a harmful answer; local suppression took "
              f"at most {100 * float(tier.get('suppression_budget', 0.05)):g} % of any key's "
              "answers. Recodes, suppressions and what was left out, per variable: "
              "`disclosure_risk.md`." + ("" if tier.get("linked") else
                                          " These files share no household ID."), ""]
    lines += ["## Frontline workers", "", FRONTLINE, ""]
    lines += ["## How to cite", "",
              f"Household survey of children's online safety, {name}, release {release}, "
              f"{tier.get('tier', 'public')}-use files. Produced with dhsurvey.", ""]
    return "\n".join(lines)


def write_methods(folder: str | Path, text: str) -> Path:
    """``methods.md`` in the release folder."""
    return atomic_write_text(Path(folder) / METHODS_FILE, text)


__all__ = ["ESTIMATION", "FRONTLINE", "METHODS_FILE", "methods_note", "write_methods"]
