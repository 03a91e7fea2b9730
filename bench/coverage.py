"""Coverage of the published 95 % confidence intervals, by repeated simulation of one country.

What is measured: the share of simulated surveys whose published interval
(``release/<ISO>/indicators.csv``, and ``licensed/<ISO>/indicators.csv`` when the release
writes one) contains the simulator's population value, per indicator overall (domain
``all``) and per domain level, with the mean estimate, bias, the spread of the estimates
against the mean published SE, the mean CI width and the number of replicates; and a pooled
coverage over all indicators. A 95 % interval should cover 93-97 % of the time at the
replicate counts this study can afford.

**Replicates** go through the path ``dhsurvey simulate`` + ``dhsurvey run`` take: replicate
``i`` is the country's fieldwork simulated from the forms with seed ``--seed + i``
(:func:`dhsurvey.fieldwork.run.simulate_to`, the configured design, no planted faults, the
ODK Central export only — the Kobo and XML copies of the same submissions would be
de-duplicated on ingest) into the landing zone of a fresh data root in a temporary folder,
then :func:`dhsurvey.study.run_country` (ingest → validate → weight → indicators →
anonymise → release in every tier), which is what ``dhsurvey run`` calls. The published
``indicators.csv`` files are read (indicator ids, domains and levels are taken from them,
never listed here) and the data root is deleted. A release whose disclosure gate fails still
has its indicators, which are what is studied here: they are used and the failure is
counted. A replicate whose ``run_country`` raises is run again, as the tests do for small
samples (``tests/workbooks.py``, ``instruments_with_budget``), on a copy of the instruments
whose ``disclosure.yaml`` allows a local suppression budget of 1.0 (and k = 1, any global
risk, no harmful answers), with ``DHSURVEY_INSTRUMENTS`` pointing at the copy; ``--budget B``
runs every replicate on such a copy with budget B.

**Population value.** The simulator has no finite population to read the value from: every
seed draws a new frame of enumeration areas, new households and rosters, and each child's
answers from probabilities that depend on age, sex and a latent lognormal vulnerability
(``dhsurvey.fieldwork.simulate``; ``ocsea_base`` and ``internet_use`` of the country file's
``simulation:`` block), clipped at 0.6, with 2 % "prefer not to say"; the other answers are
drawn by the form model within its relevance, constraints and choice lists; the universes
drop children not asked (no private space, distress) and refusals. Only a few indicators
have a closed form (a yes/no question drawn with equal weights: 0.5), and the age
distribution of eligible children comes from the roster model, so a closed form for the rest
would re-implement the simulator. The estimand is therefore the *superpopulation* value
(total of the indicator over total of its universe, among the internet-using children aged
12-17 and their main caregivers that the simulator's households hold) and it is approximated
by the simulator itself on a very large sample:

- ``--truth-chunks`` independent runs of :func:`dhsurvey.fieldwork.simulate.simulate_country`
  with seeds ``--truth-seed + k`` (disjoint from the replicates' seeds), each with
  ``--truth-multiple`` times the configured PSUs per stratum (at most the stratum's EAs) and
  no nonresponse of any kind (no vacant dwellings, non-contacts or refusals; no caregiver or
  child refusals): every household with an eligible child is interviewed, apart from the
  2 % break-offs the simulator always plants (independent of the answers);
- the indicator's own value and universe expressions from ``indicators.yaml`` (and each
  domain's expression, or its calibration margin: the selected child's sex and age group from
  the household roster, as the weights take them) are evaluated by
  :func:`dhsurvey.forms.expressions.evaluate_bool` on the simulated forms, each child and
  caregiver weighted by its household's design weight (1 / (PSU × household probability))
  times the household's eligible children, i.e. a Horvitz-Thompson ratio for the population
  of children;
- value = Σ weighted numerators / Σ weighted universes over the chunks; its Monte-Carlo SE
  (``truth_se``) from the spread between the independent chunks (linearised ratio), so a
  reader can judge it against the published SEs (it should be a small fraction of them).

The same sample raked to the country file's margins (``truth_raked``) is reported beside it:
the weights are raked to those totals, so when the margins disagree with the simulator's
population the estimator's target moves from ``truth`` towards ``truth_raked``; coverage is
counted against ``truth``. The value is computed from the instruments the replicates use and
does not depend on the estimator under study. ``--truth FILE`` reuses a ``truth.csv`` written
by an earlier run (same country and instruments).

Output (``--out DIR``): ``coverage.csv`` (one row per tier, indicator, domain and level),
``coverage.md`` (the tables and the run's facts: commit, replicates, seconds per replicate),
``replicates.csv`` (every replicate's published rows with ``covered``), ``truth.csv``.

Usage: ``.venv/bin/python bench/coverage.py [--country ISO] [--runs N] [--jobs 2]
[--seed S] [--out DIR] [--instruments DIR] [--budget B] [--truth FILE]
[--truth-chunks K] [--truth-multiple M] [--truth-seed T] [--max-minutes M]``
(default: the country with the smallest configured sample, 4 runs, 2 processes, out
``$TMPDIR/dhsurvey-coverage``). One replicate of KEN takes ~20 s of one core, the population
value ~4 min of one core (12 chunks of 8× the PSUs). ``--max-minutes``: no replicate starts
after that time; the study reports the replicates that finished (their seeds are listed).
Never part of the test suite.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
#: The pseudonym key of every replicate (release IDs only; no bearing on the indicators).
KEY = bytes(range(32))
#: First seed of the population-value chunks: far from any replicate seed.
TRUTH_SEED = 1_000_000_007
#: The suppression budget of the fallback instruments (as the tests' relaxed copy).
RELAXED_BUDGET = 1.0
#: Columns identifying a published row.
ROW = ["tier", "indicator", "domain", "level"]
#: Threads of numerical libraries per worker process (one core each).
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMEXPR_NUM_THREADS", "ARROW_NUM_THREADS")

_STUDIES: dict[str, Any] = {}


def _study(instruments: Path) -> Any:
    """The study of ``instruments``, loaded once per process."""
    from dhsurvey.study import Study

    key = str(instruments)
    if key not in _STUDIES:
        _STUDIES[key] = Study.load(instruments)
    return _STUDIES[key]


def smallest_country(study: Any) -> str:
    """The country whose configured sample has the fewest households."""
    sizes = {iso: c.psus * c.households_per_psu for iso, c in study.countries.items()}
    return min(sorted(sizes), key=lambda iso: sizes[iso])


def relaxed_instruments(source: Path, folder: Path, budget: float) -> Path:
    """A copy of ``source`` whose disclosure rules allow local suppression of ``budget`` of a
    variable, as ``tests/workbooks.py``'s ``instruments_with_budget`` makes it: a budget of
    1.0 also relaxes the thresholds (k = 1, any global risk, no answer declared harmful)."""
    import yaml

    shutil.copytree(source, folder, dirs_exist_ok=True)
    path = folder / "disclosure.yaml"
    rules = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(rules, dict) or "suppression_budget" not in rules:
        raise SystemExit(f"no suppression_budget in {path}: cannot relax it")
    rules["suppression_budget"] = budget
    if budget >= 1.0:
        rules.update(k=1, max_global_risk=1.0)
        if isinstance(rules.get("l_diversity"), dict):
            rules["l_diversity"]["sensitive"] = {}
    path.write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")
    return folder


# ------------------------------------------------------------------------------ replicates


@dataclass(frozen=True)
class ReplicateTask:
    seed: int
    iso: str
    instruments: Path
    relaxed: Path  # the fallback instruments
    scratch: Path


@dataclass
class ReplicateResult:
    seed: int
    rows: pd.DataFrame
    seconds: float
    steps: dict[str, float]
    gate: str  # passed, failed, relaxed: passed/failed on the relaxed copy
    children: int
    error: str = ""


def _run_once(task: ReplicateTask, instruments: Path, root: Path) -> tuple[Any, Any, dict]:
    """Simulate the country into ``root`` and run it; returns (store, run, step seconds)."""
    from dhsurvey.fieldwork.run import simulate_to
    from dhsurvey.store import Store
    from dhsurvey.study import run_country

    os.environ["DHSURVEY_INSTRUMENTS"] = str(instruments)
    study = _study(instruments)
    store = Store(root)
    steps: dict[str, float] = {}
    t = time.perf_counter()
    simulate_to(store.landing(), [study.config(task.iso)], study.models, seed=task.seed,
                formats=("central",))
    steps["simulate"] = time.perf_counter() - t
    last = [time.perf_counter()]

    def on_step(name: str) -> None:
        now = time.perf_counter()
        steps[name] = now - last[0]
        last[0] = now

    run = run_country(store, study, task.iso, key=KEY, on_step=on_step)
    return store, run, steps


def published(store: Any, iso: str) -> pd.DataFrame:
    """Every tier's published ``indicators.csv`` of the country, with a ``tier`` column."""
    frames = []
    for tier, folder in (("public", store.root / "release" / iso),
                         ("licensed", store.root / "licensed" / iso)):
        path = folder / "indicators.csv"
        if path.exists():
            frame = pd.read_csv(path, dtype={"indicator": str, "domain": str, "level": str},
                                keep_default_na=False, na_values=[""])
            frames.append(frame.assign(tier=tier))
    if not frames:
        raise RuntimeError(f"no indicators.csv in release/{iso} or licensed/{iso}")
    return pd.concat(frames, ignore_index=True)


def run_replicate(task: ReplicateTask) -> ReplicateResult:
    """One simulated survey through the one path; its published indicators."""
    t0 = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix=f"coverage-{task.iso}-{task.seed}-",
                                    dir=task.scratch))
    try:
        error = ""
        try:
            store, run, steps = _run_once(task, task.instruments, scratch / "data")
            gate = "passed" if run.release.gate.passed else "failed"
        except Exception as exc:  # the tests' remedy: a relaxed suppression budget
            error = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            store, run, steps = _run_once(task, task.relaxed, scratch / "relaxed")
            gate = "relaxed " + ("passed" if run.release.gate.passed else "failed")
        rows = published(store, task.iso)
        children = int(run.validated.reconciliation.get("child", {}).get("accepted", 0))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return ReplicateResult(task.seed, rows.assign(seed=task.seed), time.perf_counter() - t0,
                           steps, gate, children, error)


# ------------------------------------------------------------------------ population value


@dataclass(frozen=True)
class TruthTask:
    seed: int
    iso: str
    instruments: Path
    multiple: int


def census_config(config: Any, multiple: int) -> Any:
    """The country file with ``multiple`` times its PSUs per stratum (at most its EAs) and
    no nonresponse of any kind."""
    sim = replace(config.simulation, vacant=0.0, non_contact=0.0, refusal=0.0,
                  child_refusal=0.0, caregiver_refusal=0.0)
    strata = tuple(replace(s, psus=min(s.eas, s.psus * multiple)) for s in config.strata)
    return replace(config, simulation=sim, strata=strata)


def _household_lookup(country: Any, household_model: Any) -> pd.DataFrame:
    """Per household (indexed by the household ID): design weight, eligible children and
    the calibration margins of its selected child (sex, age group, urban/rural)."""
    from dhsurvey.weight.study import age_group

    design = country.sample.households
    ids = [f for f in household_model.household_id if f in design.columns]
    hh = country.forms["household"].root
    key = pd.MultiIndex.from_frame(hh[ids].apply(pd.to_numeric, errors="coerce"))
    at = pd.MultiIndex.from_frame(design[ids]).get_indexer(key)
    if (at < 0).any():
        raise RuntimeError("a simulated household is not in the sample design")
    rows = design.iloc[at].reset_index(drop=True)
    n_eligible = pd.to_numeric(hh["n_eligible"], errors="coerce").fillna(0).to_numpy()
    out = pd.DataFrame({
        "w": (1.0 / (rows["psu_prob"] * rows["hh_prob"])).to_numpy() * n_eligible,
        "sex": pd.to_numeric(hh["sel_sex"], errors="coerce").to_numpy(),
        "age_group": age_group(hh["sel_age"].reset_index(drop=True)).to_numpy(),
        "urban_rural": pd.to_numeric(rows["urban_rural"], errors="coerce").to_numpy(),
    }, index=key)
    return out


def _level_text(values: pd.Series) -> pd.Series:
    """Domain levels as the published file writes them ("1", not "1.0"); missing stays."""
    def one(v: Any) -> Any:
        if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
            return None
        number = pd.to_numeric(v, errors="coerce")
        if pd.notna(number) and float(number).is_integer():
            return str(int(number))
        return str(v)

    return values.map(one)


def _domain_levels(root: pd.DataFrame, margins: pd.DataFrame, domains: Sequence[Any]
                   ) -> list[tuple[str, pd.Series]]:
    """("all", …) and each domain's levels on the form's rows: its expression, or the
    calibration margin it names."""
    from dhsurvey.forms.expressions import evaluate

    groups = [("all", pd.Series("all", index=root.index))]
    for dom in domains:
        margin = getattr(dom, "margin", None)
        if margin:
            if margin not in margins:
                continue
            values = pd.Series(margins[margin].to_numpy(), index=root.index)
        else:
            values = evaluate(dom.expression, root)
        groups.append((dom.name, _level_text(values)))
    return groups


def census_sums(task: TruthTask) -> pd.DataFrame:
    """One chunk of the large sample: weighted numerator and universe totals per indicator,
    domain and level, with design weights and with weights raked to the margins."""
    from dhsurvey.fieldwork.simulate import simulate_country
    from dhsurvey.forms.expressions import evaluate_bool
    from dhsurvey.weight.calibrate import rake

    os.environ["DHSURVEY_INSTRUMENTS"] = str(task.instruments)
    study = _study(task.instruments)
    config = study.config(task.iso)
    country = simulate_country(census_config(config, task.multiple), study.models,
                               seed=task.seed)
    lookup = _household_lookup(country, study.models["household"])
    declared, domains = study.indicators
    out = []
    for form in dict.fromkeys(i.form for i in declared):
        if form not in country.forms:
            continue
        root = country.forms[form].root.reset_index(drop=True)
        ids = list(study.models[form].household_id)
        if not ids:  # not a household sample (frontline workers): no population value
            continue
        key = pd.MultiIndex.from_frame(root[ids].apply(pd.to_numeric, errors="coerce"))
        margins = lookup.reindex(key).reset_index(drop=True)
        keep = margins["w"].notna().to_numpy() & (margins["w"].to_numpy() > 0)
        root, margins = root[keep].reset_index(drop=True), margins[keep].reset_index(drop=True)
        raked = rake(margins, "w", config.margins).to_numpy()
        w = margins["w"].to_numpy()
        groups = _domain_levels(root, margins, domains.get(form, []))
        for ind in (i for i in declared if i.form == form):
            universe = evaluate_bool(ind.universe, root).to_numpy()
            value = evaluate_bool(ind.value, root).to_numpy() & universe
            for name, levels in groups:
                for level in sorted(levels.dropna().unique(), key=str):
                    member = (levels == level).to_numpy()
                    m = member & universe
                    out.append({"indicator": ind.id, "domain": name, "level": str(level),
                                "y": float(w[member & value].sum()), "x": float(w[m].sum()),
                                "y_raked": float(raked[member & value].sum()),
                                "x_raked": float(raked[m].sum()), "n": int(m.sum())})
    return pd.DataFrame(out).assign(chunk=task.seed)


def _ratio(y: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    """ΣY/ΣX over independent chunks and its linearised SE from their spread."""
    total = x.sum()
    if total <= 0:
        return float("nan"), float("nan")
    r = y.sum() / total
    k = len(x)
    if k < 2:
        return float(r), float("nan")
    d = y - r * x
    return float(r), float(math.sqrt(k / (k - 1) * ((d - d.mean()) ** 2).sum()) / total)


def population_values(chunks: pd.DataFrame) -> pd.DataFrame:
    """The population value per indicator, domain and level from the chunks' totals."""
    rows = []
    for (ind, dom, level), g in chunks.groupby(["indicator", "domain", "level"], sort=False):
        truth, se = _ratio(g["y"].to_numpy(), g["x"].to_numpy())
        raked, raked_se = _ratio(g["y_raked"].to_numpy(), g["x_raked"].to_numpy())
        rows.append({"indicator": ind, "domain": dom, "level": level, "truth": truth,
                     "truth_se": se, "truth_raked": raked, "truth_raked_se": raked_se,
                     "truth_n": int(g["n"].sum()), "truth_chunks": len(g)})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------- summary


def score(rows: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Every published row with its population value and whether its interval covers it."""
    merged = rows.merge(truth[["indicator", "domain", "level", "truth", "truth_se",
                               "truth_raked"]], on=["indicator", "domain", "level"],
                        how="left")
    low = pd.to_numeric(merged["ci_low"], errors="coerce")
    high = pd.to_numeric(merged["ci_high"], errors="coerce")
    merged["no_ci"] = low.isna() | high.isna()
    merged["miss_low"] = ~merged["no_ci"] & (merged["truth"] < low)
    merged["miss_high"] = ~merged["no_ci"] & (merged["truth"] > high)
    # An interval not published (undefined at an estimate of 0 or 1) covers nothing; a row
    # without a population value is not scored (NaN).
    covered = ~merged["no_ci"] & ~merged["miss_low"] & ~merged["miss_high"]
    merged["covered"] = covered.astype(float).where(merged["truth"].notna())
    merged["width"] = high - low
    return merged


def _summary_row(g: pd.DataFrame) -> dict[str, Any]:
    scored = g[g["truth"].notna()]
    runs = len(scored)
    cov = float(scored["covered"].astype(float).mean()) if runs else float("nan")
    est = pd.to_numeric(g["estimate"], errors="coerce")
    truth = float(g["truth"].iloc[0])
    sd = float(est.std(ddof=1)) if len(est) > 1 else float("nan")
    mean_se = float(pd.to_numeric(g["se"], errors="coerce").mean())
    return {
        "truth": truth, "truth_se": float(g["truth_se"].iloc[0]),
        "truth_raked": float(g["truth_raked"].iloc[0]), "runs": runs, "coverage": cov,
        "coverage_se": math.sqrt(cov * (1 - cov) / runs) if runs else float("nan"),
        "miss_low": int(g["miss_low"].sum()), "miss_high": int(g["miss_high"].sum()),
        "no_ci": int(g["no_ci"].sum()), "mean_estimate": float(est.mean()),
        "bias": float(est.mean()) - truth,
        "rel_bias": (float(est.mean()) - truth) / truth if truth else float("nan"),
        "sd_estimate": sd, "mean_se": mean_se,
        "se_ratio": mean_se / sd if sd and sd > 0 else float("nan"),
        "mean_width": float(g["width"].mean()),
        "mean_n": float(pd.to_numeric(g["n"], errors="coerce").mean()),
    }


def summarise(scored: pd.DataFrame) -> pd.DataFrame:
    """Coverage, bias, SE against the spread, width, per tier, indicator, domain, level."""
    rows = []
    for key, g in scored.groupby(ROW, sort=False):
        rows.append(dict(zip(ROW, key, strict=True)) | _summary_row(g))
    return pd.DataFrame(rows)


def pooled(scored: pd.DataFrame, overall_only: bool) -> dict[str, tuple[float, float, int]]:
    """Per tier: the share of covered intervals over indicators (domain ``all`` only, or
    every row), its SE from the spread of the replicates' shares (rows of one replicate are
    not independent), and the number of intervals."""
    out = {}
    data = scored[scored["truth"].notna()]
    if overall_only:
        data = data[data["domain"] == "all"]
    for tier, g in data.groupby("tier", sort=False):
        per_run = g.groupby("seed")["covered"].mean().astype(float)
        se = float(per_run.std(ddof=1) / math.sqrt(len(per_run))) if len(per_run) > 1 \
            else float("nan")
        out[str(tier)] = (float(g["covered"].astype(float).mean()), se, len(g))
    return out


# ------------------------------------------------------------------------------ reporting


def _pct(x: float) -> str:
    return "–" if x != x else f"{100 * x:.1f}"


def _num(x: float, digits: int = 4) -> str:
    return "–" if x != x else f"{x:.{digits}f}"


def markdown_table(summary: pd.DataFrame, with_domain: bool) -> list[str]:
    head = (["tier", "indicator"] + (["domain", "level"] if with_domain else [])
            + ["runs", "coverage %", "± SE", "miss low/high/no CI", "population value",
               "MC SE", "raked value", "mean est.", "bias", "SD est.", "mean SE",
               "SE/SD", "mean CI width", "mean n"])
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join("---" if i < (4 if with_domain else 2) else "---:"
                            for i in range(len(head))) + "|"]
    for r in summary.to_dict("records"):
        cells = [r["tier"], f"`{r['indicator']}`"]
        if with_domain:
            cells += [r["domain"], r["level"]]
        cells += [str(r["runs"]), _pct(r["coverage"]), _pct(r["coverage_se"]),
                  f"{r['miss_low']}/{r['miss_high']}/{r['no_ci']}", _num(r["truth"]),
                  _num(r["truth_se"]), _num(r["truth_raked"]), _num(r["mean_estimate"]),
                  _num(r["bias"]), _num(r["sd_estimate"]), _num(r["mean_se"]),
                  _num(r["se_ratio"], 2), _num(r["mean_width"]), f"{r['mean_n']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def library_commit() -> str:
    """The commit of the ``dhsurvey`` imported here (and whether its tree differs from it)."""
    import dhsurvey

    where = Path(dhsurvey.__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--",
                                "src", "instruments"], capture_output=True, text=True,
                               check=True).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        # An exported tree (git archive) may name its commit in a COMMIT file.
        named = where / "COMMIT"
        if named.exists():
            return f"{named.read_text().strip()} (exported tree at {where})"
        return f"unknown (library at {where} is not a git checkout)"
    return head + (" + uncommitted changes in src/ or instruments/" if dirty else "")


@dataclass
class Facts:
    iso: str
    runs: int
    jobs: int
    seeds: str
    instruments: Path
    commit: str
    wall: float
    truth_note: str
    results: list[ReplicateResult] = field(default_factory=list)


def report(facts: Facts, summary: pd.DataFrame, scored: pd.DataFrame) -> str:
    res = facts.results
    secs = np.array([r.seconds for r in res]) if res else np.array([float("nan")])
    steps = pd.DataFrame([r.steps for r in res]).mean() if res else pd.Series(dtype=float)
    gates = pd.Series([r.gate for r in res]).value_counts().to_dict() if res else {}
    lines = [
        f"# Coverage of the published 95 % intervals: {facts.iso}", "",
        f"- library: `{facts.commit}`; instruments `{facts.instruments}`",
        f"- {facts.runs} replicates (seeds {facts.seeds}) on {facts.jobs} processes: "
        f"{facts.wall:.0f} s wall, {facts.wall / max(1, len(res)):.1f} s wall per replicate; "
        f"one replicate {secs.mean():.1f} s (min {secs.min():.1f}, max {secs.max():.1f}) "
        "in its process, of which "
        + ", ".join(f"{k} {v:.1f}" for k, v in steps.items()),
        f"- accepted children per replicate: {np.mean([r.children for r in res]):.0f}"
        if res else "- no replicates",
        f"- disclosure gate: {gates}",
        f"- population value: {facts.truth_note}", "",
    ]
    for overall, title in ((True, "overall (domain all)"), (False, "every row")):
        for tier, (cov, se, n) in pooled(scored, overall).items():
            lines.append(f"- pooled coverage, {tier}, {title}: **{_pct(cov)} %** "
                         f"(± {_pct(se)} SE over replicates; {n} intervals)")
    lines += ["", "## Overall", ""]
    lines += markdown_table(summary[summary["domain"] == "all"], with_domain=False)
    domains = summary[summary["domain"] != "all"]
    if len(domains):
        lines += ["", "## By domain", ""]
        lines += markdown_table(domains, with_domain=True)
    lines += ["", "Coverage: share of replicates whose published [ci_low, ci_high] holds the "
              "population value; ± SE binomial. miss low: the interval lies above the value; "
              "miss high: below it; no CI: not published (counted as not covering). "
              "SE/SD: mean published SE over the SD of the estimates across replicates.", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------- main


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--country", help="ISO code (default: the smallest configured sample)")
    p.add_argument("--runs", type=int, default=4, help="replicates (default 4)")
    p.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of replicate 0 (default 0)")
    p.add_argument("--out", type=Path,
                   default=Path(tempfile.gettempdir()) / "dhsurvey-coverage",
                   help="folder for coverage.csv, coverage.md, replicates.csv, truth.csv")
    p.add_argument("--instruments", type=Path, default=ROOT / "instruments")
    p.add_argument("--budget", type=float, default=None,
                   help="run every replicate with this suppression budget (a relaxed copy)")
    p.add_argument("--truth", type=Path, default=None, help="reuse this truth.csv")
    p.add_argument("--truth-chunks", type=int, default=12)
    p.add_argument("--truth-multiple", type=int, default=8,
                   help="PSUs per stratum of each chunk, as a multiple of the design's")
    p.add_argument("--truth-seed", type=int, default=TRUTH_SEED)
    p.add_argument("--max-minutes", type=float, default=None,
                   help="start no replicate after this many minutes (the rest are dropped)")
    p.add_argument("--tmp", type=Path, default=Path(tempfile.gettempdir()),
                   help="where the per-replicate data roots go (deleted after reading)")
    return p.parse_args(argv)


def _seed_ranges(seeds: list[int]) -> str:
    """1, 2, 3, 7 → "1–3, 7"."""
    parts: list[str] = []
    for seed in seeds:
        if parts and seed == int(parts[-1].split("–")[-1]) + 1:
            parts[-1] = parts[-1].split("–")[0] + f"–{seed}"
        else:
            parts.append(str(seed))
    return ", ".join(parts)


def _collect(task: Any, future: Future[Any], results: list[ReplicateResult],
             chunks: list[pd.DataFrame], failures: list[str], total: int, t0: float) -> None:
    try:
        value = future.result()
    except Exception as exc:
        failures.append(f"{task}: {type(exc).__name__}: {exc}")
        print(f"  FAILED {task}: {exc}", flush=True)
        return
    if isinstance(value, ReplicateResult):
        results.append(value)
        _progress(value, len(results), total, t0)
    else:
        chunks.append(value)
        print(f"  population chunk seed {task.seed} done "
              f"[{time.perf_counter() - t0:.0f} s]", flush=True)


def _submit_all(pool: ProcessPoolExecutor, tasks: Iterable[Any], fn: Any
                ) -> dict[Future[Any], Any]:
    return {pool.submit(fn, t): t for t in tasks}


def _progress(res: ReplicateResult, done: int, total: int, t0: float) -> None:
    note = f" (first try: {res.error})" if res.error else ""
    print(f"  replicate seed {res.seed}: {res.seconds:.1f} s, gate {res.gate}, "
          f"{res.children} children [{done}/{total}, {time.perf_counter() - t0:.0f} s]"
          f"{note}", flush=True)


def run(args: argparse.Namespace) -> int:
    for var in THREAD_VARS:
        os.environ.setdefault(var, "1")
    instruments = args.instruments.resolve()
    study = _study(instruments)
    iso = (args.country or smallest_country(study)).upper()
    study.config(iso)
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="coverage-", dir=args.tmp))
    relaxed = relaxed_instruments(instruments, work / "instruments-relaxed", RELAXED_BUDGET)
    if args.budget is not None:
        instruments = relaxed_instruments(instruments, work / "instruments-budget",
                                          args.budget)
    commit = library_commit()
    print(f"{iso}: {args.runs} replicates on {args.jobs} processes; library {commit}",
          flush=True)
    tasks = [ReplicateTask(args.seed + i, iso, instruments, relaxed, work)
             for i in range(args.runs)]
    truth_tasks = [] if args.truth else [
        TruthTask(args.truth_seed + k, iso, instruments, args.truth_multiple)
        for k in range(args.truth_chunks)]
    t0 = time.perf_counter()
    results: list[ReplicateResult] = []
    chunks: list[pd.DataFrame] = []
    failures: list[str] = []
    try:
        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
            futures = _submit_all(pool, truth_tasks, census_sums)
            queue = iter(tasks)
            while True:
                # A few replicates queued at a time: none starts after the time limit.
                late = bool(args.max_minutes) and time.perf_counter() - t0 > \
                    60 * args.max_minutes
                queued = sum(isinstance(t, ReplicateTask) for t in futures.values())
                for task in [] if late else islice(queue, max(0, 2 * args.jobs - queued)):
                    futures[pool.submit(run_replicate, task)] = task
                if not futures:
                    break
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                for future in done:
                    _collect(futures.pop(future), future, results, chunks, failures,
                             len(tasks), t0)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    wall = time.perf_counter() - t0
    if not results:
        print("no replicate finished", file=sys.stderr)
        return 1
    if args.truth:
        truth = pd.read_csv(args.truth, dtype={"indicator": str, "domain": str, "level": str})
        note = f"read from {args.truth}"
    elif not chunks:
        print("no population chunk finished", file=sys.stderr)
        return 1
    else:
        truth = population_values(pd.concat(chunks, ignore_index=True))
        note = (f"simulator, {len(chunks)} independent chunks (seeds {args.truth_seed}…) of "
                f"{args.truth_multiple}× the design's PSUs, no nonresponse, design weights; "
                f"{int(truth.loc[truth['domain'] == 'all', 'truth_n'].max())} "
                "records in the largest universe; MC SE from the spread between chunks")
    truth.to_csv(args.out / "truth.csv", index=False)
    rows = pd.concat([r.rows for r in results], ignore_index=True)
    scored = score(rows, truth)
    summary = summarise(scored)
    scored.to_csv(args.out / "replicates.csv", index=False)
    summary.to_csv(args.out / "coverage.csv", index=False)
    seeds = sorted(r.seed for r in results)
    facts = Facts(iso, len(results), args.jobs, _seed_ranges(seeds),
                  args.instruments, commit, wall, note, results)
    text = report(facts, summary, scored)
    if failures:
        text += "\nFailed tasks:\n\n" + "\n".join(f"- {f}" for f in failures) + "\n"
    (args.out / "coverage.md").write_text(text, encoding="utf-8")
    print(text)
    return 0 if not failures else 1


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(argv))


__all__ = ["census_sums", "main", "population_values", "run_replicate", "score",
           "summarise"]


if __name__ == "__main__":
    sys.exit(main())
