"""The disclosure report: one form's numbers as a dict, and the Markdown of
``disclosure_risk.md``.

Why both: the dict goes to the release gate and to ``release-report.json`` (machines
compare it across releases); the Markdown is what a data protection officer reads before
signing off. Both show keys, k, violations before and after recoding and after
suppression, weighted global risk (sdcMicro semantics), household risk, l-diversity of
sensitive answers, suppressions and the share of values changed.
"""

from __future__ import annotations

from typing import Any

from dhsurvey.anonymise.measure import changed, distinct_l, risk_summary, violations
from dhsurvey.anonymise.risk import household_risk
from dhsurvey.anonymise.working import WorkingForm


def form_report(form: WorkingForm, k: int, suppress: bool) -> dict[str, Any]:
    """The numbers for one form (see the module docstring)."""
    t, before, mid = form.table, form.before, form.after_recode
    assert before is not None and mid is not None
    weight = "weight" if form.weighted else None
    n = len(t)
    keys = form.keys
    v_before, _ = violations(before, keys, k)
    v_recode, _ = violations(mid, keys, k)
    v_after, min_fk = violations(t, keys, k)
    report: dict[str, Any] = {
        "form": form.name,
        "rows": n,
        "accepted_rows": form.accepted_rows,
        "rows_not_released": form.accepted_rows - n,
        "weighted": form.weighted,
        "k": k,
        "keys": keys,
        "suppression": suppress,
        "violations": {"before_recoding": v_before, "after_recoding": v_recode,
                       "after_suppression": v_after},
        "min_fk": min_fk,
        "k_anonymous": v_after == 0,
        "global_risk": {"before_recoding": risk_summary(before, keys, weight),
                        "after_recoding": risk_summary(mid, keys, weight),
                        "after_suppression": risk_summary(t, keys, weight)},
        "household_risk": None,
        "recodes": dict(form.recodes),
        "rare_merged": dict(form.rare),
        "months": list(form.months),
        "free_text_scrubbed": list(form.scrubbed),
        "dropped": {c: r for c, (a, r) in form.reasons.items() if a == "drop"},
        "suppressions": {key: int(form.suppressed.get(key, 0)) for key in keys},
    }
    report["suppressed_total"] = sum(report["suppressions"].values())
    recoded = [c for c in form.recodes if c in t.columns]
    report["changed_by_recoding"] = {
        c: (changed(before[c], mid[c]) / n if n else 0.0) for c in recoded}
    report["changed_by_suppression"] = {
        key: (report["suppressions"][key] / n if n else 0.0) for key in keys}
    cells = n * len(keys)
    report["changed_by_recoding_keys_total"] = (
        sum(changed(before[c], mid[c]) for c in keys if c in recoded) / cells if cells else 0.0)
    report["changed_by_suppression_total"] = report["suppressed_total"] / cells if cells else 0.0
    if "hh_id" in t.columns and keys and n and t["hh_id"].notna().all() and form.weighted:
        hr = household_risk(t, keys, weight, "hh_id")
        report["household_risk"] = {"max": float(hr.max()), "mean": float(hr.mean())}
    report["l_diversity"] = {
        c: distinct_l(t, keys, c) for c, (a, _) in form.reasons.items()
        if a == "sensitive" and c in t.columns}
    if form.weighted and "stratum" in t.columns and t["stratum"].isna().any():
        report["design_suppressed"] = int(t["stratum"].isna().sum())
    return report


def _g(x: float | None) -> str:
    """Risk figures as they appear in the Markdown report (4 significant digits)."""
    return "–" if x is None else f"{x:.4g}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def form_markdown(rep: dict[str, Any]) -> str:
    """One form's section of the report, from :func:`form_report`'s dict."""
    k = rep["k"]
    lines = [f"## {rep['form']}", ""]
    lines.append(f"Records released: {rep['rows']} of {rep['accepted_rows']} accepted "
                 f"({rep['rows_not_released']} without a weight, i.e. non-respondents, are not "
                 "released).")
    if rep["weighted"]:
        lines.append("Risk is weighted (F_k = sum of final weights; sdcMicro 5.8 "
                     "Benedetti-Franconi).")
    else:
        lines.append("Not a probability sample: no weights, risk computed with the sample as "
                     "population (1/f_k), an upper bound.")
    lines.append(f"Keys (k = {k}): " + (", ".join(f"`{x}`" for x in rep["keys"]) or "none"))
    lines += ["", f"| Stage | Records with f_k < {k} | Global risk | Expected re-identifications |",
              "|---|---:|---:|---:|"]
    for stage, label in (("before_recoding", "before recoding"),
                         ("after_recoding", "after recoding"),
                         ("after_suppression", "after suppression")):
        r = rep["global_risk"][stage]
        lines.append(f"| {label} | {rep['violations'][stage]} | {_g(r['risk'])} | "
                     f"{_g(r['expected_reidentifications'])} |")
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
              "| Key | Values suppressed | Share of records |", "|---|---:|---:|"]
    for key in rep["keys"]:
        lines.append(f"| `{key}` | {rep['suppressions'][key]} | "
                     f"{_pct(rep['changed_by_suppression'][key])} |")
    lines.append(f"| total | {rep['suppressed_total']} | "
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
    if not rep["l_diversity"]:
        return []
    lines = ["", "### l-diversity (distinct) of sensitive variables over the keys", "",
             "| Variable | min l | Records in groups with one answer |", "|---|---:|---:|"]
    for col, ld in rep["l_diversity"].items():
        lines.append(f"| `{col}` | {ld['min_l'] if ld['min_l'] is not None else '–'} | "
                     f"{ld['records_l1']} ({_pct(ld['share_l1'])}) |")
    return lines


def linked_markdown(rep: dict[str, Any], k: int) -> str:
    """The linked household profile's section of the report."""
    lines = ["## Linked household profile", "",
             "Every household's keys from every file carrying `hh_id`, joined as an intruder "
             "holding the whole release could join them (a file without a record for the "
             f"household leaves its keys as wildcards). Rows: {rep['rows']}. Keys: "
             + ", ".join(f"`{x}`" for x in rep["keys"]), "",
             f"| Stage | Rows with f_k < {k} | Global risk | Expected re-identifications |",
             "|---|---:|---:|---:|"]
    for stage, label in (("before_recoding", "before recoding"),
                         ("after_recoding", "after recoding"),
                         ("after_form_suppression", "after per-file suppression"),
                         ("after_suppression", "after suppression")):
        r = rep["global_risk"][stage]
        lines.append(f"| {label} | {rep['violations'][stage]} | {_g(r['risk'])} | "
                     f"{_g(r['expected_reidentifications'])} |")
    lines += ["", f"Smallest f_k after suppression: {rep['min_fk']}.", ""]
    if rep["suppressions"]:
        lines += ["| Key | Values suppressed for the linked profile |", "|---|---:|"]
        lines += [f"| `{col}` | {n} |" for col, n in rep["suppressions"].items()]
    else:
        lines.append("No value suppressed for the linked profile.")
    return "\n".join(lines) + "\n"
