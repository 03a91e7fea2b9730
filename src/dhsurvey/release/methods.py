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
    lines.append("6. Caregivers: the child's design weight times caregiver nonresponse, raked "
                 "to the child margins.")
    collapsed = {unit: summary.get(unit, {}).get("classes_collapsed") for unit in
                 ("households", "children", "caregivers")}
    collapsed = {u: c for u, c in collapsed.items() if c}
    if collapsed:
        lines.append("Nonresponse classes collapsed for too few respondents: "
                     + "; ".join(f"{u}: {', '.join(map(str, c))}" for u, c in collapsed.items())
                     + ".")
    return lines


def methods_note(config: CountryConfig | None, summary: Mapping[str, Any] | None,
                 tier: Mapping[str, Any], variance: str | None, *, release: str,
                 countries: Sequence[str] = ()) -> str:
    """The note of one release folder: a country's (``config``, ``summary`` from the weights
    step) or a pooled one (``countries``); ``tier``: the tier's disclosure report entry
    (scenario, design, k, budget); ``variance``: the codebook's variance line."""
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
    if summary:
        lines += [*_response(summary), "", *_weighting(summary), ""]
    else:
        lines += ["The countries' own notes (`../<ISO>/methods.md`) give their design, "
                  "response and weighting; `country` identifies each record's country.", ""]
    lines += ["## Variance estimation", "", variance or "See `svydesign.R` and `svyset.do`.",
              ""]
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


__all__ = ["FRONTLINE", "METHODS_FILE", "methods_note", "write_methods"]
