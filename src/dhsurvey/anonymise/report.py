"""The disclosure report: each form's numbers as a dict, and the Markdown of
``disclosure_risk.md``.

Why both: the dict goes to the release gate and to ``release-report.json`` (machines
compare it across releases); the Markdown is what a data protection officer reads before
signing off. It states the tier's intruder scenario and thresholds, whether its files are
linked, and per file, among the file's own respondents on everything the intruder can join:
records with f_k < k, weighted global risk and records in groups that share a harmful
answer, before recoding, after recoding and after suppression; then per variable the
recoding applied and the share of values it changed, and the values suppressed with the
share of the variable's answers lost.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dhsurvey.anonymise.ladder import Trial
from dhsurvey.anonymise.linked import build_profile, file_measures
from dhsurvey.anonymise.measure import changed, distinct_l
from dhsurvey.anonymise.risk import household_risk
from dhsurvey.anonymise.scenario import Rules, Tier
from dhsurvey.anonymise.working import WorkingForm

STAGES = (("before_recoding", "before recoding"), ("after_recoding", "after recoding"),
          ("after_suppression", "after suppression"))


def tier_measures(forms: Mapping[str, WorkingForm], groups: Sequence[Sequence[str]],
                  rules: Rules, recoded: Mapping[str, WorkingForm] | None = None,
                  absent_known: bool = True) -> dict[str, dict[str, dict[str, Any]]]:
    """Per form and stage, :func:`~dhsurvey.anonymise.linked.file_measures` on the profile
    of its group. ``recoded``: the forms after recoding and before suppression (the search's
    last trial); without it the current tables stand for that stage."""
    out: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in forms}
    for group in groups:
        members = [forms[n] for n in group]
        initial = {f.name: f.initial_keys or f.keys for f in members}
        stages = {
            "before_recoding": build_profile(members, "before", rules.sensitive, initial,
                                             absent_known=absent_known),
            "after_recoding": build_profile([recoded[n] for n in group] if recoded
                                            else members, "table", rules.sensitive,
                                            absent_known=absent_known),
            "after_suppression": build_profile(members, "table", rules.sensitive,
                                               absent_known=absent_known),
        }
        recoded_frame = stages["after_recoding"].frame
        for stage, profile in stages.items():
            truth = recoded_frame if stage == "after_suppression" else None
            if truth is not None:
                assert list(truth.columns) == list(profile.frame.columns)
            for name, measures in file_measures(profile, k=rules.k, truth=truth).items():
                measures["keys"] = list(profile.keys)
                out[name][stage] = measures
    return out


def _share(n: int, of: int) -> float:
    return n / of if of else 0.0


def form_report(form: WorkingForm, k: int, suppress: bool,
                measures: Mapping[str, Mapping[str, Any]], rules: Rules,
                recoded: WorkingForm | None = None) -> dict[str, Any]:
    """The numbers for one form (see the module docstring)."""
    t, before = form.table, form.before
    assert before is not None
    weight = "weight" if form.weighted else None
    n = len(t)
    keys = form.keys
    after = measures["after_suppression"]
    suppressions = {key: int(form.suppressed.get(key, 0)) for key in keys}
    observed = {key: int(t[key].notna().sum()) + suppressions[key] for key in keys}
    mid = recoded.table if recoded is not None else t

    def after_recoding(c: str) -> Any:  # a key as recoded (a copy); any other as released
        return mid[c] if c in mid.columns else t[c]

    recoded_cols = [c for c in form.recodes if c in t.columns and c in before.columns]
    report: dict[str, Any] = {
        "form": form.name,
        "rows": n,
        "accepted_rows": form.accepted_rows,
        "rows_not_released": form.accepted_rows - n,
        "weighted": form.weighted,
        "k": k,
        "keys": keys,
        "initial_keys": list(form.initial_keys or keys),
        "linked_keys": after.get("keys", keys),
        "suppression": suppress,
        "violations": {s: measures[s]["violations"] for s, _ in STAGES},
        "min_fk": after["min_fk"],
        "k_anonymous": after["violations"] == 0,
        "global_risk": {s: measures[s]["risk"] for s, _ in STAGES},
        "l_violations": {col: {s: measures[s]["l_violations"].get(col, 0) for s, _ in STAGES}
                         for col in after["l_violations"]},
        "household_risk": None,
        "recodes": dict(form.recodes),
        "levels": {c: len(steps) for c, steps in form.steps.items() if steps},
        "rare_merged": dict(form.rare),
        "months": list(form.months),
        "free_text_scrubbed": list(form.scrubbed),
        "dropped": {c: r for c, (a, r) in form.reasons.items() if a == "drop"},
        "suppressions": suppressions,
        "suppression_share": {key: _share(suppressions[key], observed[key]) for key in keys},
        "changed_by_recoding": {c: _share(changed(before[c], after_recoding(c)), n)
                                for c in recoded_cols},
    }
    report["suppressed_total"] = sum(suppressions.values())
    report["changed_by_suppression"] = {key: _share(suppressions[key], n) for key in keys}
    cells = n * len(keys)
    report["changed_by_suppression_total"] = _share(report["suppressed_total"], cells)
    if "hh_id" in t.columns and keys and n and t["hh_id"].notna().all() and form.weighted:
        hr = household_risk(t, keys, weight, "hh_id")
        report["household_risk"] = {"max": float(hr.max()), "mean": float(hr.mean())}
    report["l_diversity"] = {
        c: distinct_l(t, keys, c) for c, (a, _) in form.reasons.items()
        if a == "sensitive" and c in t.columns}
    if form.weighted and "stratum" in t.columns and t["stratum"].isna().any():
        report["design_suppressed"] = int(t["stratum"].isna().sum())
    return report


def tier_report(name: str, tier: Tier, rules: Rules, groups: Sequence[Sequence[str]],
                linked: bool, trial: Trial | None, forms: Mapping[str, WorkingForm]
                ) -> dict[str, Any]:
    """The tier's part of the report: scenario, thresholds, linking, the budget's outcome."""
    over = trial.over_budget(rules.suppression_budget) if trial is not None else {}
    unsafe = {f: n for f, n in (trial.unsafe if trial is not None else {}).items() if n}
    failures = [f"{form}: `{key}` suppressed in {100 * share:.1f}% of its values > "
                f"{100 * rules.suppression_budget:g}% budget, on the keys "
                + ", ".join(f"`{c}`" for c in forms[form].keys)
                for (form, key), share in sorted(over.items())]
    failures += [f"{form}: {n} records still have f_k < {rules.k} or share a harmful answer "
                 "after every recoding step, on the keys "
                 + ", ".join(f"`{c}`" for c in forms[form].keys)
                 for form, n in sorted(unsafe.items())]
    return {
        "tier": name, "folder": tier.folder, "scenario": tier.scenario,
        "keys_declared": "every field classed quasi" if tier.keys is None else
        {f: list(v) for f, v in tier.keys.items()},
        "design": tier.design, "link": tier.link, "linked": linked,
        "knows_participation": tier.knows_participation,
        "groups": [list(g) for g in groups], "k": rules.k,
        "max_global_risk": rules.max_global_risk,
        "suppression_budget": rules.suppression_budget, "l_group": rules.l_group,
        "sensitive": {f: {c: h.describe() for c, h in cols.items()}
                      for f, cols in rules.sensitive.items()},
        "budget_failures": failures,
    }


def _g(x: float | None) -> str:
    """Risk figures as they appear in the Markdown report (4 significant digits)."""
    return "–" if x is None else f"{x:.4g}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def tier_markdown(tier: Mapping[str, Any], report: Mapping[str, Mapping[str, Any]]) -> str:
    """The report's opening: the intruder, the thresholds, the linking decision."""
    design = ("masked variance units (stratum, pseudo-PSU: each stratum's PSUs in two random "
              "halves) and weights rounded so no value is held by fewer than k records of a "
              "stratum, each stratum keeping its total; no replicate "
              "weights" if tier["design"] == "masked" else
              "strata and PSUs with fresh codes, and the replicate weights")
    keys = tier["keys_declared"]
    lines = [f"## Tier: {tier['tier']} (`{tier['folder']}/`)", "",
             f"**Intruder scenario.** {tier['scenario']}", "",
             "**Keys.** " + (keys if isinstance(keys, str) else "; ".join(
                 f"{form}: " + ", ".join(f"`{k}`" for k in cols) for form, cols in keys.items()))
             + "; the stratum of weighted files always.", "",
             f"**Thresholds.** k = {tier['k']} among each file's own respondents, on every "
             "key of the files that can be joined to it (a value not asked, or a record that "
             "does not exist, is a category of its own; only a suppressed value matches "
             f"anything); weighted global risk <= {tier['max_global_risk']:g}; no group of "
             f"{tier['l_group']} or more records whose members all share a harmful answer; "
             f"local suppression <= {_pct(tier['suppression_budget'])} of any key's values.",
             ""]
    if tier["linked"]:
        lines.append("**Linking.** The household, child and caregiver files share `hh_id`: "
                     "their keys are joined for every file's risk"
                     + ("; a household's missing interview is a category (the intruder "
                        "knows who took part)." if tier.get("knows_participation", True) else
                        "; the intruder of this scenario does not know who else in the "
                        "household was interviewed, so a missing interview matches anything."))
    else:
        lines.append("**Linking.** The files share no ID: "
                     + ("they could not be protected together within the budget, so "
                        if tier["link"] == "auto" else "")
                     + "each file is protected and released on its own.")
    lines += ["", f"**Design.** {design}.", ""]
    sens = [f"`{f}.{c}` {d}" for f, cols in tier["sensitive"].items() for c, d in cols.items()]
    if sens:
        lines += ["**Harmful answers (l-diversity).** " + "; ".join(sens) + ".", ""]
    lines += ["| File | Records | Keys | Records with f_k < k (before → after recoding → "
              "after suppression) | Smallest f_k | Global risk after | Harmful groups after |",
              "|---|---:|---:|---|---:|---:|---:|"]
    for name, rep in report.items():
        v = rep["violations"]
        lv = sum(x["after_suppression"] for x in rep.get("l_violations", {}).values())
        lines.append(f"| {name} | {rep['rows']} | {len(rep.get('linked_keys', rep['keys']))} | "
                     f"{v['before_recoding']} → {v['after_recoding']} → "
                     f"{v['after_suppression']} | {rep['min_fk']} | "
                     f"{_g(rep['global_risk']['after_suppression']['risk'])} | {lv} |")
    if tier["budget_failures"]:
        lines += ["", "**The rules cannot be met:**", ""]
        lines += [f"- {x}" for x in tier["budget_failures"]]
    return "\n".join(lines) + "\n"


def form_markdown(rep: dict[str, Any]) -> str:
    """One form's section of the report, from :func:`form_report`'s dict."""
    k = rep["k"]
    lines = [f"## {rep['form']}", ""]
    lines.append(f"Records released: {rep['rows']} of {rep['accepted_rows']} accepted "
                 f"({rep['rows_not_released']} non-respondents, without a weight or without "
                 "consent, are not released).")
    if rep["weighted"]:
        lines.append("Risk is weighted (F_k = sum of final weights; sdcMicro 5.8 "
                     "Benedetti-Franconi).")
    else:
        lines.append("Not a probability sample: no weights, risk computed with the sample as "
                     "population (1/f_k), an upper bound.")
    lines.append(f"Keys of the file (k = {k}): "
                 + (", ".join(f"`{x}`" for x in rep["keys"]) or "none"))
    linked = [x for x in rep.get("linked_keys", []) if ":" in x]
    if linked:
        lines.append("Keys joined from linked files: " + ", ".join(f"`{x}`" for x in linked))
    lines += ["", f"| Stage | Records with f_k < {k} | Global risk | Expected re-identifications "
              "| Records in groups sharing a harmful answer |", "|---|---:|---:|---:|---:|"]
    for stage, label in STAGES:
        r = rep["global_risk"][stage]
        lv = sum(x[stage] for x in rep.get("l_violations", {}).values())
        lines.append(f"| {label} | {rep['violations'][stage]} | {_g(r['risk'])} | "
                     f"{_g(r['expected_reidentifications'])} | {lv} |")
    lines.append("")
    lines.append(f"Smallest f_k after suppression: {rep['min_fk']}; k-anonymous: "
                 f"{'yes' if rep['k_anonymous'] else 'no'}.")
    if rep["household_risk"]:
        hr = rep["household_risk"]
        lines.append(f"Household risk (1 - prod(1 - r_j) over the household's records): max "
                     f"{_g(hr['max'])}, mean {_g(hr['mean'])}.")
    if rep.get("design_suppressed"):
        lines.append(f"**Design variable stratum suppressed in {rep['design_suppressed']} "
                     "records.**")
    lines += _md_recoding(rep)
    if rep["months"]:
        lines += ["", "Dates released as months (YYYY-MM): "
                  + ", ".join(f"`{c}`" for c in rep["months"]) + "."]
    if rep["free_text_scrubbed"]:
        lines += ["", "Free text released after scrubbing (names are not detected; reviewed "
                  "by hand): " + ", ".join(f"`{c}`" for c in rep["free_text_scrubbed"]) + "."]
    lines += ["", "### Local suppression", "",
              "| Key | Values suppressed | Share of the key's answers | Share of records |",
              "|---|---:|---:|---:|"]
    for key in rep["keys"]:
        lines.append(f"| `{key}` | {rep['suppressions'][key]} | "
                     f"{_pct(rep['suppression_share'][key])} | "
                     f"{_pct(rep['changed_by_suppression'][key])} |")
    lines.append(f"| total | {rep['suppressed_total']} | | "
                 f"{_pct(rep['changed_by_suppression_total'])} of key values |")
    lines += _md_diversity(rep)
    lines += ["", "### Not released", "", "| Column | Reason |", "|---|---|"]
    for col, reason in rep["dropped"].items():
        lines.append(f"| `{col}` | {reason} |")
    return "\n".join(lines) + "\n"


def _md_recoding(rep: dict[str, Any]) -> list[str]:
    if not rep["recodes"]:
        return []
    lines = ["", "### Global recoding", "", "| Variable | Recode | Values changed |",
             "|---|---|---:|"]
    for col, text in rep["recodes"].items():
        share = rep["changed_by_recoding"].get(col)
        lines.append(f"| `{col}` | {text} | {_pct(share) if share is not None else '–'} |")
    return lines


def _md_diversity(rep: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    if rep.get("l_violations"):
        lines += ["", "### Harmful answers (l-diversity on the linked keys)", "",
                  "| Variable | Before recoding | After recoding | After suppression |",
                  "|---|---:|---:|---:|"]
        for col, v in rep["l_violations"].items():
            lines.append(f"| `{col}` | {v['before_recoding']} | {v['after_recoding']} | "
                         f"{v['after_suppression']} |")
        lines.append("")
        lines.append("Records whose whole group of matching respondents shares the harmful "
                     "answer (an intruder who places them learns it).")
    if rep["l_diversity"]:
        lines += ["", "### l-diversity (distinct) of sensitive variables over the file's keys",
                  "", "| Variable | min l | Records in groups with one answer |",
                  "|---|---:|---:|"]
        for col, ld in rep["l_diversity"].items():
            lines.append(f"| `{col}` | {ld['min_l'] if ld['min_l'] is not None else '–'} | "
                         f"{ld['records_l1']} ({_pct(ld['share_l1'])}) |")
    return lines


__all__ = ["STAGES", "form_markdown", "form_report", "tier_markdown", "tier_measures",
           "tier_report"]
