"""The data manager's morning: what arrived since the previous run, what is wrong and by whom,
how far each team is from its targets, and whether anything jumped.

Why: the day's decisions during fieldwork (call an enumerator, revisit a PSU, retrain a team)
are made by comparing with yesterday, by team and enumerator, not from cumulative totals.
Each run records the country's counts in its own history (``clean/<ISO>/history.parquet``),
so "new since the previous run", the anomaly checks and the time series are the country's
own, never mixed with another's.

Everything here is counted from what validation wrote (the issue tables, the raw tables'
enumerator IDs, the reconciliation), so it works for a country validated whole or in batches;
the per-enumerator rates that need every typed answer (duration, don't-know/refusal,
straight-lining) come from the high-frequency check tables when validation wrote them. Shared
like the quality report: counts, rates, rule names, team and enumerator codes; no instanceID,
no answer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from dhsurvey.fieldwork.config import CountryConfig
from dhsurvey.forms.facts import study_facts
from dhsurvey.forms.model import FormModel
from dhsurvey.io import read_parquet
from dhsurvey.store import ISSUES, QUALITY, Store, issue_table, raw_table
from dhsurvey.validate import aapor
from dhsurvey.validate.monitoring import Thresholds
from dhsurvey.validate.quality import (
    ENUMERATOR,
    enumerator_teams,
    interview_day,
    progress_psu,
    stratum,
)

#: Per form and enumerator, the counts each run records (``enum_id`` NA: the whole form).
COUNTS = ("received", "quarantined", "duplicates", "flagged", "speeders")
#: Response outcomes recorded per run for the refusal check: refusals and cases.
OUTCOMES = ("refusals", "cases")
NO_TEAM = "none"
#: Runs shown in the time series.
SERIES_RUNS = 30
_SPARK = "▁▂▃▄▅▆▇█"


@dataclass(frozen=True)
class Jump:
    """One anomaly check of one form: this run's new submissions against earlier ones."""

    check: str  # "duplicates", "quarantine rate", "speeders", "refusal rate"
    form: str
    before: float  # the earlier share (a count for duplicates)
    now: float  # the share among new submissions (new duplicates)
    new: int  # new submissions (cases) compared
    threshold: float
    jumped: bool
    note: str = ""

    def text(self) -> str:
        if self.note:
            return f"{self.form} {self.check}: {self.note}"
        if self.check == "duplicates":
            return (f"{self.form}: {self.now:.0f} new duplicates in {self.new} new submissions "
                    f"(threshold {self.threshold:.0f}; {self.before:.0f} before)")
        return (f"{self.form} {self.check}: {self.now:.1%} of {self.new} new against "
                f"{self.before:.1%} before (rise allowed {self.threshold:.0%})")


@dataclass
class Morning:
    """One country's morning report; :meth:`markdown` is what the data manager reads."""

    iso: str
    run: str
    previous: str | None
    latest_interview: str | None
    new: dict[str, int]
    enumerators: pd.DataFrame
    flagged: pd.DataFrame
    jumps: list[Jump]
    shares: pd.DataFrame
    progress_team: pd.DataFrame
    psus_behind: pd.DataFrame
    psus: int
    rates_team: pd.DataFrame
    rates_stratum: pd.DataFrame
    series: pd.DataFrame
    thresholds: Thresholds
    #: Back-check error rates per enumerator (None: the country has no back-checks).
    backcheck: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def anomalies(self) -> list[Jump]:
        return [j for j in self.jumps if j.jumped]

    @property
    def over_share(self) -> pd.DataFrame:
        """Enumerators whose share of quarantined submissions reaches the threshold."""
        return self.shares[self.shares["over"]]

    def since(self) -> str:
        """New submissions per form since the previous run, in one line."""
        if self.previous is None:
            return "first run: every submission is new"
        return ", ".join(f"{form} +{n:,}" for form, n in self.new.items())

    def sections(self) -> dict[str, str]:
        """The report's sections as Markdown, in reading order."""
        t = self.thresholds
        return {
            "since the previous run": self._since_md(),
            "anomalies": _bullets([j.text() for j in self.anomalies])
            or "none: " + (self._compared() or "nothing to compare with yet"),
            "new submissions by team and enumerator": _md(
                self.enumerators, ["team", "enum_id", "new", *self._form_columns("new")],
                {"enum_id": "enumerator"}),
            "quarantine and flags by enumerator": _md(
                self.enumerators, ["team", "enum_id", "received", "quarantined",
                                   "quarantine reasons", "flagged", "flag reasons",
                                   "duplicates", "marked"],
                {"enum_id": "enumerator"}),
            "flagged enumerators": _md(self.flagged, ["team", "enum_id", "form", "criterion",
                                                      "value", "threshold"],
                                       {"enum_id": "enumerator"})
            if len(self.flagged) else "none (thresholds: " + "; ".join(
                f"{k}: {v}" for k, v in t.describe().items()) + ")",
            "back-checks by enumerator": _backcheck_md(self.backcheck),
            "progress against targets by team": _md(self.progress_team, list(
                self.progress_team.columns)),
            f"PSUs furthest behind (of {self.psus})": _md(self.psus_behind, list(
                self.psus_behind.columns)) if len(self.psus_behind) else
            "none: every PSU has its households visited to a final outcome",
            "response rates by team": _md(self.rates_team, list(self.rates_team.columns)),
            "response rates by stratum": _md(self.rates_stratum,
                                             list(self.rates_stratum.columns)),
            "this country's runs": _series_md(self.series),
        }

    def markdown(self) -> str:
        head = (f"**{self.iso}**, run {self.run} UTC"
                + (f", previous {self.previous}" if self.previous else ", first run")
                + (f"; latest interview {self.latest_interview}" if self.latest_interview
                   else ""))
        notes = "".join(f"\n\n_{n}_" for n in self.notes)
        body = "\n\n".join(f"#### {title}\n\n{text}" for title, text in self.sections().items())
        return f"{head}{notes}\n\n{body}\n"

    def story(self) -> list[str]:
        """What changed, as log lines for the run."""
        lines = [f"{self.iso}: {self.since()}"]
        lines += [f"{self.iso}: anomaly: {j.text()}" for j in self.anomalies]
        if self.backcheck is not None and len(self.backcheck):
            bc = self.backcheck
            compared, errors = bc["type1_compared"].sum(), bc["type1_errors"].sum()
            lines.append(f"{self.iso}: back-checks of {int(bc['backchecked'].sum())} "
                         f"households: {errors / compared if compared else 0:.1%} of "
                         f"{int(compared)} must-not-change answers differed")
        for r in _rows(self.flagged):
            lines.append(f"{self.iso}: enumerator {r.enum_id} (team {r.team}) flagged: "
                         f"{r.criterion} {r.value} ({r.threshold})")
        return lines

    def _form_columns(self, prefix: str) -> list[str]:
        return [c for c in self.enumerators.columns if c.startswith(prefix + " ")]

    def _since_md(self) -> str:
        if self.previous is None:
            return "First run: everything received so far is new. " + ", ".join(
                f"{form} {n:,}" for form, n in self.new.items())
        return "\n".join(f"- {form}: +{n:,} submissions" for form, n in self.new.items())

    def _compared(self) -> str:
        compared = [j for j in self.jumps if not j.note]
        return f"{len(compared)} comparisons within their thresholds" if compared else ""


# -------------------------------------------------------------------------- counting


def _rows(frame: pd.DataFrame) -> Iterator[Any]:
    """The rows with attribute access (typed loosely: the columns are the tables' own)."""
    return iter(frame.itertuples())


def _enumerators(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values, errors="coerce").astype("Int64")


def _teams(config: CountryConfig) -> dict[int, str]:
    return {e: str(t) for e, t in enumerator_teams(config).items()}


def _reasons(keys: pd.Series, rules: pd.Series, enum: pd.Series) -> pd.DataFrame:
    """Per enumerator the submissions with each rule, as ``rule n`` text."""
    frame = pd.DataFrame({"key": keys.to_numpy(), "rule": rules.astype(str).to_numpy(),
                          "enum_id": enum.to_numpy()}).drop_duplicates(["key", "rule"])
    counts = frame.groupby(["enum_id", "rule"], dropna=False).size().rename("n").reset_index()
    counts = counts.sort_values(["enum_id", "n", "rule"], ascending=[True, False, True])
    return counts


def form_counts(store: Store, iso: str, form: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per enumerator of ``form``: received, quarantined, duplicates, flagged, speeders; and
    the quarantine and flag rules per enumerator (``kind``, ``enum_id``, ``rule``, ``n``).

    Submissions are matched to their enumerator through the raw table; one quarantined at
    ingest (unreadable, no raw row) counts under an unknown enumerator (NA)."""
    raw_path = store.raw(iso) / raw_table(form)
    columns = ["KEY", ENUMERATOR]
    raw = read_parquet(raw_path, columns=columns) if raw_path.exists() else pd.DataFrame(
        columns=columns)
    if ENUMERATOR not in raw:
        raw[ENUMERATOR] = pd.NA
    enum_of = pd.Series(_enumerators(raw[ENUMERATOR]).to_numpy(), index=raw["KEY"].astype(str))
    enum_of = enum_of[~enum_of.index.duplicated()]
    out = pd.DataFrame({"enum_id": enum_of.to_numpy(), "received": 1})
    reasons = []
    folder = store.form_dir(iso, form)
    for name in ISSUES:
        path = folder / issue_table(name)
        table = read_parquet(path) if path.exists() else pd.DataFrame(
            columns=["instanceID", "rule", "reason"])
        keys = table["instanceID"].astype(str)
        enum = pd.Series(enum_of.reindex(keys).to_numpy(), dtype="Int64")
        counted = pd.DataFrame({"key": keys.to_numpy(), "enum_id": enum.to_numpy()})
        if name == "quarantine":
            only = keys.isin(enum_of.index)  # ingest quarantine: received, but no raw row
            out = pd.concat([out, pd.DataFrame({"enum_id": enum[~only.to_numpy()],
                                                "received": 1})], ignore_index=True)
        column = {"quarantine": "quarantined", "flags": "flagged",
                  "duplicates": "duplicates"}[name]
        per = counted.drop_duplicates("key").groupby("enum_id", dropna=False).size()
        out = pd.concat([out, pd.DataFrame({"enum_id": per.index.astype("Int64"),
                                            column: per.to_numpy()})], ignore_index=True)
        if name == "flags":
            speed = counted[table["rule"].astype(str).eq("speeder").to_numpy()]
            per = speed.drop_duplicates("key").groupby("enum_id", dropna=False).size()
            out = pd.concat([out, pd.DataFrame({"enum_id": per.index.astype("Int64"),
                                                "speeders": per.to_numpy()})],
                            ignore_index=True)
        if name in ("quarantine", "flags") and len(table):
            reasons.append(_reasons(keys, table["rule"], enum).assign(kind=name))
    counts = out.groupby("enum_id", dropna=False)[[c for c in COUNTS if c in out]].sum(
        min_count=0)
    counts = counts.reindex(columns=list(COUNTS), fill_value=0).fillna(0).astype("int64")
    counts = counts.reset_index().assign(form=form)
    counts["enum_id"] = counts["enum_id"].astype("Int64")
    rules = pd.concat(reasons, ignore_index=True) if reasons else pd.DataFrame(
        columns=["enum_id", "rule", "n", "kind"])
    return counts, rules.assign(form=form)


def outcomes(households: pd.DataFrame, children: pd.DataFrame | None,
             models: Mapping[str, FormModel], psu_team: pd.Series
             ) -> tuple[pd.DataFrame, dict[str, pd.Series]]:
    """Household and child dispositions (AAPOR categories) of the last submission per
    household, with each household's team (its PSU's: ``psu_team`` by cluster) and stratum."""
    facts = study_facts(models)
    households = aapor.latest(households, list(facts.household_id))
    cluster = pd.to_numeric(households["cluster"], errors="coerce") \
        if "cluster" in households else pd.Series(np.nan, index=households.index)
    groups = {"team": cluster.map(psu_team).fillna(NO_TEAM).rename("team"),
              "stratum": stratum(households) if {"region", "urban_rural"} <= set(households)
              else pd.Series(pd.NA, index=households.index)}
    declared = {str(k): v for k, v in facts.aapor_mapping.items()}
    codes = pd.to_numeric(households[facts.disposition], errors="coerce") \
        if facts.disposition in households else pd.Series(np.nan, index=households.index)
    categories = codes.map(lambda c: declared.get(str(int(c))) if pd.notna(c) and
                           float(c).is_integer() else None)
    frame = pd.DataFrame({"household": categories})
    if children is not None:
        try:
            frame["child"] = aapor.child_dispositions(households, children, models=facts)
        except ValueError:  # a study whose child form has no consent gate
            pass
    return frame, groups


# ----------------------------------------------------------------------------- history


def snapshot(counts: pd.DataFrame, dispositions: pd.DataFrame, run: str) -> pd.DataFrame:
    """This run's counts in the history's long layout: ``run, form, enum_id, metric, value``
    (``enum_id`` NA for the whole form)."""
    per = counts.melt(id_vars=["form", "enum_id"], value_vars=list(COUNTS),
                      var_name="metric", value_name="value")
    total = counts.groupby("form")[list(COUNTS)].sum().reset_index().melt(
        id_vars="form", var_name="metric", value_name="value")
    total["enum_id"] = pd.NA
    parts = [per, total]
    for form in dispositions.columns:
        cat = dispositions[form]
        parts.append(pd.DataFrame({"form": form, "enum_id": pd.NA,
                                   "metric": list(OUTCOMES),
                                   "value": [int(cat.eq("R").sum()), int(cat.notna().sum())]}))
    parts = [p.astype({"enum_id": "Int64", "value": "float64"}) for p in parts if len(p)]
    out = pd.concat(parts, ignore_index=True).assign(run=run)
    return out.astype({"run": "string", "form": "string", "enum_id": "Int64",
                       "metric": "string", "value": "float64"})[
        ["run", "form", "enum_id", "metric", "value"]]


def _totals(history: pd.DataFrame, run: str) -> dict[tuple[str, str], float]:
    rows = history[(history["run"] == run) & history["enum_id"].isna()]
    return {(str(r.form), str(r.metric)): float(r.value) for r in _rows(rows)}


def jumps(before: Mapping[tuple[str, str], float], now: Mapping[tuple[str, str], float],
          thresholds: Thresholds) -> list[Jump]:
    """Each form's new duplicates, and its quarantine, speeder and refusal shares among new
    submissions against the earlier shares."""
    t = thresholds
    forms = sorted({form for form, _ in now})
    out = []

    def delta(form: str, metric: str) -> float:
        return now.get((form, metric), 0.0) - before.get((form, metric), 0.0)

    for form in forms:
        if (form, "received") in now:
            new = int(delta(form, "received"))
            dup = delta(form, "duplicates")
            out.append(Jump("duplicates", form, before.get((form, "duplicates"), 0.0), dup,
                            new, t.new_duplicates, dup >= t.new_duplicates))
            for check, metric, limit in (("quarantine rate", "quarantined", t.quarantine_rate),
                                         ("speeders", "speeders", t.speeder_rate)):
                out.append(_rate_jump(check, form, before, now, metric, "received", limit,
                                      t.min_new))
        if (form, "cases") in now:
            out.append(_rate_jump("refusal rate", form, before, now, "refusals", "cases",
                                  t.refusal_rate, t.min_new))
    return out


def _rate_jump(check: str, form: str, before: Mapping[tuple[str, str], float],
               now: Mapping[tuple[str, str], float], hit: str, base: str, limit: float,
               min_new: int) -> Jump:
    b_hit, b_base = before.get((form, hit), 0.0), before.get((form, base), 0.0)
    new_base = now.get((form, base), 0.0) - b_base
    new_hit = now.get((form, hit), 0.0) - b_hit
    earlier = b_hit / b_base if b_base else float("nan")
    if new_base < min_new:
        return Jump(check, form, earlier, float("nan"), int(new_base), limit, False,
                    note=f"{int(new_base)} new, fewer than {min_new}: not compared")
    share = max(new_hit, 0.0) / new_base
    if not b_base:
        return Jump(check, form, earlier, share, int(new_base), limit, False,
                    note="nothing earlier to compare with")
    return Jump(check, form, earlier, share, int(new_base), limit, share - earlier > limit)


# ------------------------------------------------------------------------- enumerators


def _flag(rows: list[dict], team: dict[int, str], enum: object, form: str, criterion: str,
          value: str, threshold: str) -> None:
    enum_id = None if pd.isna(enum) else int(enum)  # type: ignore[call-overload]
    rows.append({"team": team.get(enum_id, NO_TEAM) if enum_id is not None else NO_TEAM,
                 "enum_id": enum_id, "form": form, "criterion": criterion, "value": value,
                 "threshold": threshold})


def flag_enumerators(counts: pd.DataFrame, quality: Mapping[str, pd.DataFrame],
                     backcheck: pd.DataFrame | None, config: CountryConfig,
                     t: Thresholds) -> pd.DataFrame:
    """Every enumerator a criterion of ``t`` flags, with the value that flagged them and the
    threshold, one row per enumerator × form × criterion."""
    team, rows = _teams(config), list[dict[str, Any]]()
    described = t.describe()
    for r in _rows(counts):
        if pd.notna(r.enum_id) and int(r.enum_id) not in team:
            _flag(rows, team, r.enum_id, r.form, "not in a team", f"{r.received} submissions",
                  described["not in a team"])
        if r.duplicates >= t.duplicates:
            _flag(rows, team, r.enum_id, r.form, "duplicates", str(r.duplicates),
                  described["duplicates"])
        if r.received >= t.min_interviews and r.quarantined / r.received >= t.quarantine_share:
            _flag(rows, team, r.enum_id, r.form, "quarantine",
                  f"{r.quarantined / r.received:.0%} ({r.quarantined} of {r.received})",
                  described["quarantine"])
    _flag_dashboard(rows, team, quality, t)
    if backcheck is not None and len(backcheck):
        for r in _rows(backcheck):
            if r.type1_compared >= t.min_interviews and \
                    r.type1_error_rate >= t.backcheck_error_rate:
                _flag(rows, team, r.enum_id, "back-check", "back-check",
                      f"{r.type1_error_rate:.0%} of {r.type1_compared} type-1 answers "
                      f"({r.backchecked} households)", described["back-check"])
    out = pd.DataFrame(rows, columns=["team", "enum_id", "form", "criterion", "value",
                                      "threshold"])
    out["enum_id"] = out["enum_id"].astype("Int64")
    return out.sort_values(["team", "enum_id", "form", "criterion"], na_position="last") \
        .reset_index(drop=True)


def _flag_dashboard(rows: list[dict], team: dict[int, str],
                    quality: Mapping[str, pd.DataFrame], t: Thresholds) -> None:
    """Duration, speeders, don't-know/refusal and straight-lining, from the check tables."""
    described = t.describe()
    dash = quality.get("enumerator_dashboard")
    durations = quality.get("durations")
    if dash is not None and durations is not None and len(dash):
        median = durations.set_index("form")["median"]
        for r in _rows(dash[dash["completed"] >= t.min_interviews]):
            form_median = median.get(r.form, np.nan)
            if pd.notna(r.median_duration) and pd.notna(form_median) and \
                    r.median_duration < t.duration_share * form_median:
                _flag(rows, team, r.enum_id, r.form, "duration",
                      f"{r.median_duration:.1f} min against {form_median:.1f}",
                      described["duration"])
            if r.speeders / r.completed >= t.speeder_share:
                _flag(rows, team, r.enum_id, r.form, "speeders",
                      f"{r.speeders / r.completed:.0%} ({r.speeders} of {r.completed})",
                      described["speeders"])
    dk = quality.get("dk_refusal")
    if dk is not None and len(dk):
        for r in _rows(dk[dk["submissions"] >= t.min_interviews]):
            for name, z, rate in (("don't know", r.dk_z, r.dk_rate),
                                  ("refusal", r.refusal_z, r.refusal_rate)):
                if pd.notna(z) and z >= t.dk_refusal_z:
                    _flag(rows, team, r.enum_id, r.form, "don't know / refusal",
                          f"{name} {rate:.1%} (z = {z:.1f})", described["don't know / refusal"])
    lines = quality.get("straightlining")
    if lines is not None and len(lines):
        worst = lines[lines["interviews"] >= t.min_interviews].sort_values(
            "share", ascending=False).drop_duplicates(["form", "enum_id"])
        for r in _rows(worst[worst["share"] >= t.straightlining_share]):
            _flag(rows, team, r.enum_id, r.form, "straight-lining",
                  f"{r.share:.0%} of {r.interviews} ({r.grid})", described["straight-lining"])


def quarantine_shares(counts: pd.DataFrame, t: Thresholds) -> pd.DataFrame:
    """Per enumerator over every form: submissions, quarantined and the share; ``over`` where
    the share reaches the threshold (with at least ``min_interviews`` submissions)."""
    per = counts.groupby("enum_id", dropna=False)[["received", "quarantined"]].sum() \
        .reset_index()
    per["share"] = per["quarantined"] / per["received"].where(per["received"] > 0)
    per["over"] = (per["received"] >= t.min_interviews) & (per["share"] >= t.quarantine_share)
    return per.sort_values("share", ascending=False).reset_index(drop=True)


# ------------------------------------------------------------------------------ tables


def _enumerator_table(counts: pd.DataFrame, rules: pd.DataFrame, previous: pd.DataFrame,
                      flagged: pd.DataFrame, config: CountryConfig) -> pd.DataFrame:
    """One row per enumerator: team, new submissions per form and in all, received,
    quarantined and flagged with their rules, duplicates, and what marks them."""
    team = _teams(config)
    earlier = previous.set_index(["form", "enum_id"])["value"] if len(previous) else None
    counts = counts.copy()
    counts["before"] = [float(earlier.get((f, e), 0.0)) if earlier is not None else 0.0
                        for f, e in zip(counts["form"], counts["enum_id"], strict=True)]
    counts["new"] = (counts["received"] - counts["before"]).clip(lower=0).astype("int64")
    new = counts.pivot_table(index="enum_id", columns="form", values="new", aggfunc="sum",
                             fill_value=0, dropna=False)
    new = new.reindex(columns=list(dict.fromkeys(counts["form"])), fill_value=0)
    new.columns = [f"new {c}" for c in new.columns]
    sums = counts.groupby("enum_id", dropna=False)[["new", *COUNTS]].sum()
    out = sums.join(new).reset_index()

    def text(kind: str) -> pd.Series:
        part = rules[rules["kind"] == kind]
        joined: dict[Any, str] = {}
        for r in _rows(part):
            key = None if pd.isna(r.enum_id) else int(r.enum_id)
            joined[key] = (joined[key] + ", " if key in joined else "") + \
                f"{r.form} {r.rule} {r.n}"
        return out["enum_id"].map(lambda e: joined.get(None if pd.isna(e) else int(e), ""))

    out["quarantine reasons"] = text("quarantine")
    out["flag reasons"] = text("flags")
    marks = flagged.groupby("enum_id", dropna=False)["criterion"].agg(
        lambda c: ", ".join(sorted(set(c)))) if len(flagged) else pd.Series(dtype="string")
    out["marked"] = out["enum_id"].map(marks).fillna("")
    out["team"] = out["enum_id"].map(lambda e: NO_TEAM if pd.isna(e) else
                                     team.get(int(e), NO_TEAM))
    out["enum_id"] = out["enum_id"].astype("Int64")
    return out.sort_values(["team", "enum_id"], na_position="last").reset_index(drop=True)


def _progress(psu: pd.DataFrame, config: CountryConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Progress per team against its PSUs' targets, and the PSUs furthest behind."""
    if not len(psu):
        return pd.DataFrame(), pd.DataFrame()
    per = psu.groupby("team").agg(PSUs=("cluster", "size"), started=("done", lambda d:
                                                                     int((d > 0).sum())),
                                  target=("target", "sum"), done=("done", "sum"),
                                  interviewed=("interviewed", "sum"),
                                  children=("children_interviewed", "sum")).reset_index()
    child_target = config.targets.get("children")
    if child_target:
        share = per["target"] / per["target"].sum()
        per["children target"] = (share * child_target).round().astype("int64")
    per["households done"] = (per["done"] / per["target"]).map(lambda v: f"{v:.0%}")
    open_psus = psu[psu["done"] < psu["target"]]
    behind = open_psus.sort_values(["share_done", "interviewed", "cluster"]).head(10)
    behind = behind[["team", "cluster", "stratum", "target", "done", "interviewed",
                     "children_interviewed"]].rename(columns={"children_interviewed":
                                                              "children"})
    return per, behind


def _columns(path: object) -> list[str]:
    from dhsurvey.io import parquet_file

    with parquet_file(path) as source:  # type: ignore[arg-type]
        return list(source.schema_arrow.names)


def _rates(frame: pd.DataFrame, groups: Mapping[str, pd.Series], by: str) -> pd.DataFrame:
    """RR1, REF1 and cases per group for households and selected children."""
    if not len(frame):
        return pd.DataFrame()
    key = groups[by]
    parts = []
    for form in frame.columns:
        rates = aapor.rates_from_categories(frame[form].dropna(), by=key, by_name=by)
        parts.append(rates[[by, "n", "RR1", "REF1"]].rename(columns={
            "n": f"{form} cases", "RR1": f"{form} RR1", "REF1": f"{form} REF1"})
            .set_index(by))
    out = pd.concat(parts, axis=1).reset_index()
    for column in out.columns:
        if column.endswith(("RR1", "REF1")):
            out[column] = out[column].map(lambda v: "" if pd.isna(v) else f"{v:.1%}")
    return out


# --------------------------------------------------------------------------- report


def morning_report(store: Store, iso: str, models: Mapping[str, FormModel],
                   config: CountryConfig, thresholds: Thresholds, *,
                   backcheck: pd.DataFrame | None = None, now: dt.datetime | None = None,
                   record: bool = True) -> Morning:
    """The morning report of a validated country; with ``record`` this run's counts join the
    country's history, so the next report counts from here."""
    run = (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%d %H:%M:%S")
    forms = [f for f in models if (store.raw(iso) / raw_table(f)).exists()]
    parts = [form_counts(store, iso, f) for f in forms]
    counts = pd.concat([p[0] for p in parts], ignore_index=True) if parts else pd.DataFrame(
        columns=["enum_id", *COUNTS, "form"])
    rules = pd.concat([p[1] for p in parts], ignore_index=True) if parts else pd.DataFrame(
        columns=["enum_id", "rule", "n", "kind", "form"])
    design = store.design(iso) if store.design_path(iso).exists() else None
    households, children = (_raw(store, iso, f) for f in (study_facts(models).household_form,
                                                            aapor.CHILD_FORM))
    psu = progress_psu(households, config=config, design=design, children=children,
                       models=models) if households is not None else pd.DataFrame()
    if len(psu):
        psu["team"] = psu["team"].map(lambda t: NO_TEAM if pd.isna(t) else str(int(t)))
    dispositions, groups = outcomes(households, children, models, psu.set_index("cluster")[
        "team"]) if households is not None else (pd.DataFrame(), {})
    current = snapshot(counts, dispositions, run)
    history = store.read_history(iso)
    previous = str(history["run"].iloc[-1]) if len(history) else None
    before = _totals(history, previous) if previous else {}
    last = history[(history["run"] == previous) & history["enum_id"].notna()
                   & (history["metric"] == "received")] if previous else history.iloc[:0]
    quality = _quality_tables(store, iso)
    notes = [] if quality else ["Duration, don't-know/refusal and straight-lining by "
                                "enumerator need the high-frequency check tables, which a "
                                "country validated in batches does not have."]
    flagged = flag_enumerators(counts, quality, backcheck, config, thresholds)
    now_totals = _totals(current, run)
    new = {f: int(now_totals.get((f, "received"), 0) - before.get((f, "received"), 0))
           for f in forms}
    progress_team, behind = _progress(psu, config)
    combined = pd.concat([history, current], ignore_index=True)
    if record:
        store.write_history(iso, combined)
    return Morning(
        iso=iso, run=run, previous=previous, latest_interview=_latest_interview(
            store, iso, forms, config),
        new=new, enumerators=_enumerator_table(counts, rules, last, flagged, config),
        flagged=flagged, jumps=jumps(before, now_totals, thresholds) if previous else [],
        shares=quarantine_shares(counts, thresholds), progress_team=progress_team,
        psus_behind=behind, psus=len(psu), rates_team=_rates(dispositions, groups, "team"),
        rates_stratum=_rates(dispositions, groups, "stratum"),
        series=series(combined, list(models)), thresholds=thresholds, backcheck=backcheck,
        notes=notes)


def _raw(store: Store, iso: str, form: str | None) -> pd.DataFrame | None:
    path = store.raw(iso) / raw_table(form or "")
    return read_parquet(path) if form and path.exists() else None


def _quality_tables(store: Store, iso: str) -> dict[str, pd.DataFrame]:
    folder = store.quality(iso) / QUALITY
    names = ("enumerator_dashboard", "durations", "dk_refusal", "straightlining")
    return {n: read_parquet(folder / f"{n}.parquet") for n in names
            if (folder / f"{n}.parquet").exists()}


def _latest_interview(store: Store, iso: str, forms: list[str],
                      config: CountryConfig) -> str | None:
    days = []
    for form in forms:
        path = store.raw(iso) / raw_table(form)
        if "start" in _columns(path):
            day = interview_day(read_parquet(path, columns=["start"]), config).max()
            if pd.notna(day):
                days.append(str(day)[:10])
    return max(days) if days else None


def series(history: pd.DataFrame, forms: list[str] | None = None) -> pd.DataFrame:
    """The country's totals per run, oldest first: submissions per form, then quarantined,
    duplicates and speeders over every form, and the refusal rates."""
    totals = history[history["enum_id"].isna()]
    if not len(totals):
        return pd.DataFrame()
    wide = totals.pivot_table(index="run", columns=["form", "metric"], values="value",
                              aggfunc="last")
    present = list(dict.fromkeys(str(c[0]) for c in wide.columns))
    forms = [f for f in forms or [] if f in present] + [f for f in present
                                                         if f not in (forms or [])]
    out = pd.DataFrame(index=wide.index)
    for form in forms:
        if (form, "received") in wide:
            out[f"{form} received"] = wide[(form, "received")]
    for metric in ("quarantined", "duplicates", "speeders"):
        out[metric] = wide.loc[:, [c for c in wide.columns if c[1] == metric]].sum(axis=1)
    for form in forms:
        if (form, "cases") in wide:
            out[f"{form} refusal rate"] = wide[(form, "refusals")] / wide[(form, "cases")] \
                .where(wide[(form, "cases")] > 0)
    return out.sort_index().tail(SERIES_RUNS).reset_index()


# ---------------------------------------------------------------------------- Markdown


def _cell(value: object) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:,.0f}" if value.is_integer() else f"{value:,.3g}"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}" if abs(int(value)) >= 10_000 else str(int(value))
    return str(value).replace("|", "\\|")


def _md(frame: pd.DataFrame, columns: list[str], names: Mapping[str, str] | None = None) -> str:
    """A Markdown table of ``columns`` (renamed by ``names``)."""
    if not len(frame):
        return "none"
    names = names or {}
    columns = [c for c in columns if c in frame.columns]
    head = "| " + " | ".join(names.get(c, c) for c in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(_cell(v) for v in row) + " |"
            for row in frame[columns].itertuples(index=False)]
    return "\n".join([head, rule, *body])


def _backcheck_md(table: pd.DataFrame | None) -> str:
    if table is None:
        return "none: no back-check export in landing/<ISO>/backcheck/"
    shown = table[table["backchecked"] > 0].copy()
    for column in ("type1_error_rate", "error_rate"):
        shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v:.0%}")
    return _md(shown.sort_values(["team", "enum_id"], na_position="last"),
               ["team", "enum_id", "backchecked", "type1_compared", "type1_error_rate",
                "compared", "error_rate"],
               {"enum_id": "enumerator", "backchecked": "households back-checked",
                "type1_compared": "must-not-change answers",
                "type1_error_rate": "differed", "compared": "all answers",
                "error_rate": "all differed"})


def _bullets(lines: list[str]) -> str:
    return "\n".join(f"- {line}" for line in lines)


def sparkline(values: pd.Series) -> str:
    """The values as a row of block characters (lowest ▁, highest █)."""
    v = pd.to_numeric(values, errors="coerce").dropna()
    if not len(v):
        return ""
    low, high = float(v.min()), float(v.max())
    if high == low:
        return _SPARK[0] * len(v)
    return "".join(_SPARK[int((x - low) / (high - low) * (len(_SPARK) - 1))] for x in v)


def _series_md(frame: pd.DataFrame) -> str:
    """The time series: a sparkline per measure over the runs, then the last runs' values."""
    if not len(frame):
        return "none"
    measures = [c for c in frame.columns if c != "run"]

    def value(measure: str, v: Any) -> Any:
        if measure.endswith("rate"):
            return "" if pd.isna(v) else f"{v:.1%}"
        return v

    trend = _md(pd.DataFrame({"measure": measures,
                              "trend": [sparkline(frame[m]) for m in measures],
                              "first": [value(m, frame[m].iloc[0]) for m in measures],
                              "latest": [value(m, frame[m].iloc[-1]) for m in measures]}),
                ["measure", "trend", "first", "latest"])
    shown = frame.tail(7).copy()
    for column in measures:
        shown[column] = pd.Series([value(column, v) for v in shown[column]],
                                  index=shown.index, dtype="object")
    return (f"Runs of this country only ({len(frame)} shown, oldest first):\n\n{trend}\n\n"
            + _md(shown, ["run", *measures]))


__all__ = ["Jump", "Morning", "flag_enumerators", "form_counts", "jumps", "morning_report",
           "quarantine_shares", "series", "snapshot", "sparkline"]
