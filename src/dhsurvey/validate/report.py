"""The daily field-quality report: one self-contained HTML file per country.

Supervisors open it on a laptop in the field, often offline, and forward it by e-mail, so it
carries everything inline: CSS in a ``<style>`` block and charts as inline SVG, written as
text by :mod:`dhsurvey.validate.charts` (a plotting library spent seconds per country laying
out four simple charts). Nothing is fetched from a network. Because it is forwarded, it
prints counts, codes and enumerator IDs but never an instanceID, a free-text answer or an
identifier: the check tables pass through :func:`dhsurvey.validate.disclosure.share_checks`
first, listed rows are referred to by their ``row`` in the restricted listing, and each such
section says how many rows its listing holds and where it is. Every value shown is
HTML-escaped all the same. The same checks give the same
bytes (no timestamps unless the caller puts one in ``summary``; SVG ids named after their
chart), so reports can be diffed day to day."""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from dhsurvey.forms.model import FormModel
from dhsurvey.io import atomic_write_text
from dhsurvey.validate import charts
from dhsurvey.validate.disclosure import share_checks

MAX_ROWS = 50
#: check name → (section title, why it matters)
SECTIONS: dict[str, tuple[str, str]] = {
    "progress_country": ("Progress against country targets",
                         "Households visited and interviews completed against the study's "
                         "targets."),
    "progress_psu": ("Progress by PSU",
                     "Households with a final disposition against each PSU's sampled "
                     "households, and the team the PSU is assigned to; a PSU left short "
                     "biases its stratum."),
    "survey_dashboard": ("Survey dashboard",
                         "Submissions per day, cumulative counts, consent rate and median "
                         "interview length."),
    "enumerator_dashboard": ("Enumerator dashboard",
                             "Per enumerator: team, workload, submissions quarantined (and "
                             "the rules why), consent rate, duration, speeders and "
                             "don't-know, refusal, missing and other rates."),
    "aapor": ("AAPOR outcome rates",
              "Response, cooperation, refusal and contact rates (AAPOR Standard Definitions) "
              "for the country and each stratum."),
    "form_versions": ("Form versions per day",
                      "Submissions made with an outdated form version need the device "
                      "updated."),
    "duplicate_ids": ("Duplicate instanceIDs",
                      "The same submission received more than once (the instanceIDs are in "
                      "the restricted listing)."),
    "duplicate_units": ("Duplicate households and interviews",
                        "More than one submission for the same cluster and household; the "
                        "submissions of one household share a set number."),
    "durations": ("Interview durations",
                  "Length of completed interviews and the speeder threshold."),
    "speeders": ("Speeders",
                 "Completed interviews too short to be real: call the household back."),
    "issues_summary": ("Constraint and logic issues (summary)",
                       "Rule violations by form, rule and question."),
    "issues": ("Constraint and logic issues", "Every violation, with enumerator and day."),
    "missingness": ("Missingness",
                    "Share missing among interviews where each question is asked."),
    "outliers": ("Outliers", "Numeric answers far outside the interquartile range."),
    "other_specify": ("Other (specify) answers",
                      "Other-specify answers per question and enumerator: recode or add "
                      "choices. The texts themselves are in the restricted listing only."),
    "straightlining": ("Straight-lining in grids",
                       "Share of interviews answering every statement of a grid "
                       "identically, by enumerator."),
    "straightlining_cases": ("Straight-lined interviews", "The interviews concerned."),
    "dk_refusal": ("Don't know and refusal by enumerator",
                   "Rates of 98 and 99 answers; |z| > 3 is far from the form's rate."),
    "referrals": ("Distress-protocol referrals",
                  "Child interviews where a referral was offered: each is a follow-up owed."),
    "skipped": ("Checks skipped", "Checks that could not run, and why."),
}
#: Colour of an enumerator with quarantined interviews (duration chart bars, table rows).
QUARANTINED_COLOUR = "#d35400"
QUARANTINED_LABEL = "has quarantined interviews"
CSS = """
*,*::before,*::after{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;
max-width:1600px;padding:1rem 1.5rem;color:#1a1a1a;line-height:1.4}
h1{border-bottom:3px solid #2a5d84;padding-bottom:.3rem}
h2{margin-top:2.2rem;color:#2a5d84;border-bottom:1px solid #ccd}
p.why{color:#555;margin:.2rem 0 .6rem}
.scroll{overflow-x:auto;max-width:100%;margin:.4rem 0}
.scroll:focus{outline:2px solid #2a5d84}
table{border-collapse:collapse;font-size:.8rem}
th,td{border:1px solid #d5d8dc;padding:.15rem .4rem;text-align:left;vertical-align:top}
th{background:#eef2f6;font-weight:600}
thead th{vertical-align:bottom;white-space:normal;overflow-wrap:break-word;min-width:3.5em;
line-height:1.2}
tr:nth-child(even) td{background:#fafbfc}
th.num,td.num{text-align:right}
td.num{font-variant-numeric:tabular-nums;white-space:nowrap}
td.date{white-space:nowrap}
tr.marked td{background:#fdebd0}
tr.marked td:first-child{box-shadow:inset 4px 0 0 """ + QUARANTINED_COLOUR + """}
.mark{display:inline-block;width:.9em;height:.9em;vertical-align:middle;
background:""" + QUARANTINED_COLOUR + """}
.note{color:#8a5a00;font-size:.85rem}
nav ul{columns:3;font-size:.9rem}
figure{margin:1rem 0}
figcaption{font-weight:600;margin-bottom:.3rem}
p.restricted{border-left:4px solid #8a5a00;padding-left:.6rem;font-size:.9rem}
svg{max-width:100%;height:auto}
@media (max-width:800px){nav ul{columns:1}body{padding:.5rem}}
@page{size:A4 landscape;margin:10mm}
@media print{
*{-webkit-print-color-adjust:exact;print-color-adjust:exact}
body{max-width:none;padding:0;font-size:9pt}
h1{font-size:15pt}
h2{font-size:12pt;margin-top:1rem;break-after:avoid}
p.why,.note,p.restricted{font-size:8pt}
nav{display:none}
.scroll{overflow:visible}
table{font-size:6.5pt;max-width:100%}
th,td{padding:1px 3px}
thead{display:table-header-group}
tr,figure{break-inside:avoid}
a{color:inherit;text-decoration:none}
}
"""


# -- values ------------------------------------------------------------------------------------


def _missing(value: object) -> bool:
    try:
        return value is None or value is pd.NA or value is pd.NaT or bool(
            isinstance(value, float) and math.isnan(value))
    except (TypeError, ValueError):
        return False


def format_value(value: object) -> str:
    """A cell as display text (not yet escaped): dates without midnight, floats to 3 places."""
    if _missing(value):
        return ""
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d") if value == value.normalize() else value.isoformat()
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        if float(value).is_integer() and abs(float(value)) < 1e15:
            return str(int(value))
        return f"{float(value):.3f}"
    return str(value)


def _esc(value: object) -> str:
    return html.escape(format_value(value), quote=True)


def _kind(values: pd.Series) -> str:
    """How a column's cells are laid out: ``num`` (right-aligned), ``date`` or text."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return ""
    if pd.api.types.is_numeric_dtype(values.dtype):
        return "num"
    return "date" if pd.api.types.is_datetime64_any_dtype(values.dtype) else ""


def _header(column: object) -> str:
    """A column name that may wrap after each underscore."""
    return html.escape(str(column)).replace("_", "_<wbr>")


def _cls(kind: str) -> str:
    return f' class="{kind}"' if kind else ""


def table_html(table: pd.DataFrame, max_rows: int = MAX_ROWS, name: str = "",
               marked: pd.Series | None = None) -> str:
    """An escaped HTML table of the first ``max_rows`` rows, with a note when cut, in a
    horizontally scrollable container (so a wide table never widens the page).

    ``marked``: rows (by position, boolean) drawn highlighted (class ``marked``)."""
    if table.empty:
        return '<p class="note">No rows.</p>'
    shown = table.head(max_rows)
    kinds = [_kind(shown[c]) for c in shown.columns]
    flags = ([bool(v) for v in marked.head(max_rows)] if marked is not None
             else [False] * len(shown))
    head = "".join(f'<th scope="col"{_cls(k)}>{_header(c)}</th>'
                   for c, k in zip(shown.columns, kinds, strict=True))
    body = []
    for row, flag in zip(shown.itertuples(index=False, name=None), flags, strict=True):
        cells = "".join(f"<td{_cls(k)}>{_esc(v)}</td>" for v, k in zip(row, kinds, strict=True))
        body.append(f'<tr class="marked">{cells}</tr>' if flag else f"<tr>{cells}</tr>")
    note = ""
    if len(table) > max_rows:
        where = f" (the full table is {html.escape(name)}.parquet)" if name else ""
        note = (f'<p class="note">Showing the first {max_rows} of {len(table):,} rows'
                f"{where}.</p>")
    label = html.escape(SECTIONS.get(name, (name or "table", ""))[0], quote=True)
    return (f'<div class="scroll" role="region" tabindex="0" aria-label="{label}">'
            f"<table><thead><tr>{head}</tr></thead>"
            f'<tbody>{"".join(body)}</tbody></table></div>{note}')


def quarantined(table: pd.DataFrame) -> pd.Series:
    """Rows of an enumerator table whose enumerator has quarantined interviews."""
    if "quarantined" not in table:
        return pd.Series(False, index=table.index)
    count = pd.to_numeric(table["quarantined"], errors="coerce")
    return count.gt(0).fillna(False).astype(bool)


# -- charts ------------------------------------------------------------------------------------


def _target(table: pd.DataFrame, form: str, column: str) -> float | None:
    """A form's value in a per-form table (a target, a threshold), None when it has none."""
    if "form" not in table or column not in table:
        return None
    hit = table.loc[table["form"] == form, column]
    return None if hit.empty or _missing(hit.iloc[0]) else float(hit.iloc[0])


def _progress_panel(form: str, d: pd.DataFrame, target: float | None) -> charts.Panel:
    column = "cumulative" if form == "household" else "cumulative_completed"
    d = d.assign(_day=pd.to_datetime(d["date"], errors="coerce"))
    d = d[d["_day"].notna() & d[column].notna()].sort_values("_day")
    first = d["_day"].min() if len(d) else pd.Timestamp(0)
    days = ((d["_day"] - first).dt.total_seconds() / 86400.0).to_numpy(dtype=float)
    values = d[column].astype(float).to_numpy()
    labels = [t.strftime("%Y-%m-%d") for t in d["_day"]]
    span = float(days.max() - days.min()) if len(days) else 0.0
    pad = max(span * 0.03, 0.5)
    what = "households visited" if form == "household" else "completed interviews"
    rules = ([charts.Rule(target, "#c0392b", f"target {int(target):,}")]
             if target is not None else [])
    return charts.Panel(
        title=f"{form}: {what}",
        xlim=(-pad, span + pad),
        ticks=[charts.Tick(float(x), label) for x, label in zip(days, labels, strict=True)],
        lines=[charts.Line(days, values, "#2a5d84",
                           tips=[f"{label}: {v:,.0f}" for label, v in
                                 zip(labels, values, strict=True)])],
        rules=rules, rotation=30, spacing=44.0)


def chart_progress(checks: Mapping[str, pd.DataFrame]) -> str | None:
    """Cumulative submissions (households) or completed interviews per day vs the target."""
    dash = checks.get("survey_dashboard")
    if dash is None or dash.empty:
        return None
    targets = checks.get("progress_country", pd.DataFrame())
    forms = list(dict.fromkeys(dash["form"]))
    panels = [_progress_panel(form, dash[dash["form"] == form], _target(targets, form,
                                                                         "target"))
              for form in forms]
    return charts.chart_svg(panels, name="progress",
                            label="Cumulative households visited and interviews completed "
                                  "per day, against the targets")


def _duration_panel(form: str, d: pd.DataFrame, threshold: float | None) -> charts.Panel:
    d = d.sort_values("enum_id")
    held = quarantined(d).to_numpy()
    minutes = charts.finite(d["median_duration"].astype(float).fillna(0).to_numpy())
    xlim, ticks = charts.categories([format_value(v) for v in d["enum_id"]], held)
    rules = ([charts.Rule(threshold, "#c0392b", "speeder threshold")]
             if threshold is not None else [])
    legend = bool(rules) or bool(held.any())
    return charts.Panel(
        title=f"{form}: median minutes", xlim=xlim, ticks=ticks,
        bars=[charts.Bars(minutes, "#5b8db8", show=~held),
              charts.Bars(minutes, QUARANTINED_COLOUR, QUARANTINED_LABEL, show=held,
                          hatch=True, edge="#6e2c00")],
        rules=rules, headroom=1.3 if legend else 1.0, strong_colour=QUARANTINED_COLOUR)


def chart_durations(checks: Mapping[str, pd.DataFrame]) -> str | None:
    """Median completed-interview length per enumerator, with each form's speeder threshold;
    enumerators with quarantined interviews in a colour, hatch and label of their own."""
    enum = checks.get("enumerator_dashboard")
    if enum is None or enum.empty:
        return None
    thresholds = checks.get("durations", pd.DataFrame())
    forms = list(dict.fromkeys(enum["form"]))
    panels = [_duration_panel(form, enum[enum["form"] == form],
                              _target(thresholds, form, "speeder_threshold"))
              for form in forms]
    return charts.chart_svg(panels, name="durations",
                            label="Median interview duration by enumerator, with the speeder "
                                  "threshold")


def chart_dk_refusal(checks: Mapping[str, pd.DataFrame]) -> str | None:
    """Don't-know and refusal rates per enumerator over all forms."""
    dk = checks.get("dk_refusal")
    if dk is None or dk.empty or (dk["dk_base"].sum() + dk["refusal_base"].sum()) == 0:
        return None
    per = dk.groupby("enum_id")[["dk", "dk_base", "refused", "refusal_base"]].sum()
    rates = pd.DataFrame({"don't know (98)": per["dk"] / per["dk_base"].where(
        per["dk_base"] > 0), "refused (99)": per["refused"] / per["refusal_base"].where(
        per["refusal_base"] > 0)}).astype(float).fillna(0)
    xlim, ticks = charts.categories([format_value(v) for v in rates.index])
    bars = [charts.Bars(rates[label].to_numpy() * 100, colour, label, offset=(i - 0.5) * 0.4,
                        width=0.4)
            for i, (label, colour) in enumerate((("don't know (98)", "#7f8c8d"),
                                                 ("refused (99)", "#c0392b")))]
    panel = charts.Panel(title="", xlim=xlim, ticks=ticks, bars=bars,
                         ylabel="% of answers offering the code", legend_at="right")
    return charts.chart_svg([panel], name="dk",
                            label="Don't know and refusal rates by enumerator")


def chart_response(checks: Mapping[str, pd.DataFrame]) -> str | None:
    """RR1, RR3 and COOP1 per stratum, one panel per interview level."""
    rr = checks.get("aapor")
    if rr is None or rr.empty:
        return None
    levels = list(dict.fromkeys(rr["interview"])) if "interview" in rr else [None]
    panels = []
    for level in levels:
        d = rr if level is None else rr[rr["interview"] == level]
        d = d[d["level"] == "stratum"] if "level" in d else d
        xlim, ticks = charts.categories([format_value(v) for v in d["stratum"]])
        bars = [charts.Bars(d[rate].astype(float).fillna(0).to_numpy() * 100, colour, rate,
                            offset=(i - 1) * 0.27, width=0.27)
                for i, (rate, colour) in enumerate((("RR1", "#2a5d84"), ("RR3", "#5b8db8"),
                                                    ("COOP1", "#9bbcd8")))]
        panels.append(charts.Panel(
            title=f"{level or 'household'} interview: rates by stratum (%)", xlim=xlim,
            ticks=ticks, bars=bars, ytop=120.0, legend_at="center"))
    return charts.chart_svg(panels, name="response",
                            label="Response rates RR1 and RR3 and cooperation rate COOP1 by "
                                  "stratum (%)")


CHARTS: list[tuple[str, Callable[[Mapping[str, pd.DataFrame]], str | None]]] = [
    ("Submissions per day, cumulative, against target", chart_progress),
    ("Median interview duration by enumerator, with the speeder threshold", chart_durations),
    ("Don't know and refusal rates by enumerator", chart_dk_refusal),
    ("Response rates by stratum", chart_response),
]


# -- summary -----------------------------------------------------------------------------------


def _count(checks: Mapping[str, pd.DataFrame], name: str, column: str | None = None) -> int:
    table = checks.get(name)
    if table is None:
        return 0
    if name == "other_specify" and "answers" in table:  # shared: counts per question
        return int(table["answers"].sum())
    if name == "duplicate_units" and column == "unit" and "unit" not in table:
        column = "set"  # shared: the households are numbered sets
    return int(table[column].nunique()) if column else len(table)


def headline(checks: Mapping[str, pd.DataFrame]) -> dict[str, str]:
    """Key figures read from the checks (whole or shared), for the top of the report."""
    out: dict[str, str] = {}
    dash = checks.get("survey_dashboard")
    if dash is not None and len(dash):
        totals = dash.groupby("form", sort=False)[["submissions", "completed"]].sum()
        for form, row in totals.iterrows():
            out[f"{form}: submissions (completed)"] = (f"{int(row['submissions']):,} "
                                                       f"({int(row['completed']):,})")
    rr = checks.get("aapor")
    if rr is not None and len(rr):
        overall = rr[rr["level"] == "country"] if "level" in rr else rr.head(1)
        for _, row in overall.iterrows():
            label = row.get("interview", "household")
            out[f"{label}: RR1 / RR3 / COOP1"] = " / ".join(
                format_value(row[r]) for r in ("RR1", "RR3", "COOP1"))
    out["duplicate instanceIDs"] = str(_count(checks, "duplicate_ids"))
    out["duplicated households/interviews"] = str(_count(checks, "duplicate_units", "unit"))
    out["speeders"] = str(_count(checks, "speeders"))
    if "issues" in checks:
        out["constraint/logic issues"] = str(_count(checks, "issues"))
    out["outlier values"] = str(_count(checks, "outliers"))
    out["other-specify answers to review"] = str(_count(checks, "other_specify"))
    out["straight-lined grids"] = str(_count(checks, "straightlining_cases"))
    ref = checks.get("referrals")
    if ref is not None and len(ref):
        overall = ref[ref["dimension"] == "all"]
        if len(overall):
            out["referrals offered"] = (f"{int(overall['referrals'].iloc[0]):,} of "
                                        f"{int(overall['interviews'].iloc[0]):,} child "
                                        "interviews")
    return out


def _kv_table(items: Mapping[str, object]) -> str:
    rows = "".join(f'<tr><th scope="row">{html.escape(str(k))}</th><td>{_esc(v)}</td></tr>'
                   for k, v in items.items())
    return f'<div class="scroll"><table><tbody>{rows}</tbody></table></div>'


def _marked_note(table: pd.DataFrame, marked: pd.Series) -> str:
    """Which enumerators the highlighted rows are (all of them, shown or cut)."""
    rows = table[marked.to_numpy(dtype=bool)]
    ids = [f"{html.escape(str(form))} "
           f"{', '.join(_esc(e) or '(no ID)' for e in group['enum_id'])}"
           for form, group in rows.groupby("form", sort=False)]
    return ('<p class="note"><span class="mark"></span> Highlighted: enumerators with '
            f"quarantined interviews ({'; '.join(ids)}): how many in "
            "<code>quarantined</code>, why in <code>quarantine_reasons</code>.</p>")


def _anchor(name: str) -> str:
    return "sec-" + "".join(c if c.isalnum() else "-" for c in name)


#: Where a listing is, as the report names it: (rows, path) by check.
Listings = Mapping[str, tuple[int, str | None]]
SHARING = ("This report is for sharing: it shows counts, codes and enumerator IDs. "
           "InstanceIDs, free-text answers and identifiers are withheld; a listed row is "
           "referred to by its <code>row</code> in the check's restricted listing, which "
           "stays with the data manager (owner-only, in the clean zone) and is never "
           "forwarded.")


def _listing_note(name: str, rows: int, where: str | None) -> str:
    what = ("other-specify answers (their texts)" if name == "other_specify"
            else "listed rows (instanceIDs and withheld values)")
    place = (f" are in the restricted listing <code>{html.escape(where)}</code>" if where
             else " are withheld from this report")
    return f'<p class="restricted">{rows:,} {what}{place}.</p>'


def render(checks: Mapping[str, pd.DataFrame], *, title: str,
           summary: Mapping[str, object] | None = None, max_rows: int = MAX_ROWS,
           models: Mapping[str, FormModel] | None = None,
           listings: Listings | None = None) -> str:
    """The report as an HTML string (see :func:`write_report`)."""
    shared = share_checks(checks, models)
    checks = shared.tables
    notes: dict[str, tuple[int, str | None]] = {
        name: (len(table), None) for name, table in shared.listings.items()}
    notes.update(listings or {})
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>", f'<p class="restricted">{SHARING}</p>',
             '<section id="summary"><h2>Summary</h2>']
    if summary:
        parts.append(_kv_table(summary))
    glance = headline(checks)
    if notes:
        glance["rows in restricted listings"] = f"{sum(n for n, _ in notes.values()):,}"
    parts.append("<h3>At a glance</h3>" + _kv_table(glance) + "</section>")
    names = [n for n in checks if n != "skipped"] + (["skipped"] if "skipped" in checks
                                                     else [])
    toc = "".join(f'<li><a href="#{_anchor(n)}">'
                  f"{html.escape(SECTIONS.get(n, (n, ''))[0])}</a></li>" for n in names)
    parts.append(f'<nav><h2>Contents</h2><ul><li><a href="#charts">Charts</a></li>{toc}'
                 "</ul></nav>")
    parts.append('<section id="charts"><h2>Charts</h2>')
    for caption, draw in CHARTS:
        svg = draw(checks)
        if svg:
            parts.append(f"<figure><figcaption>{html.escape(caption)}</figcaption>{svg}"
                         "</figure>")
    parts.append("</section>")
    for name in names:
        section_title, why = SECTIONS.get(name, (name, ""))
        table = checks[name]
        parts.append(f'<section id="{_anchor(name)}"><h2>{html.escape(section_title)} '
                     f"<small>({len(table):,} rows)</small></h2>")
        if why:
            parts.append(f'<p class="why">{html.escape(why)}</p>')
        if name in notes:
            parts.append(_listing_note(name, *notes[name]))
        marked = quarantined(table) if name == "enumerator_dashboard" else None
        if marked is not None and marked.any():
            parts.append(_marked_note(table, marked))
        parts.append(table_html(table, max_rows, name, marked) + "</section>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_report(checks: Mapping[str, pd.DataFrame], path: str | Path, *, title: str,
                 summary: Mapping[str, object] | None = None,
                 max_rows: int = MAX_ROWS, models: Mapping[str, FormModel] | None = None,
                 listings: Listings | None = None) -> Path:
    """Write ONE self-contained HTML report: summary, charts, then every check's table.

    ``checks`` whole (:func:`~dhsurvey.validate.quality.run_checks`) or already shared
    (:func:`~dhsurvey.validate.disclosure.share_checks`): either way only the shared tables
    are printed. ``models`` decide which coded values may be shown (without them none of a
    listing's values is); ``listings`` name the restricted listing of each listed check
    (rows, path), which the report states. Tables longer than ``max_rows`` are cut with a
    note (the Parquet files hold them whole). ``summary`` values (e.g. country, data
    cut-off, a run timestamp) are shown at the top.
    """
    return atomic_write_text(path, render(checks, title=title, summary=summary,
                                          max_rows=max_rows, models=models,
                                          listings=listings))
