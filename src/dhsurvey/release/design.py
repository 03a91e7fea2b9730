"""What a user needs beside the replicate weights: their multipliers and ready-made set-ups.

The set-ups read the Stata files (where 98 and 99 are missing values, not numbers) and build
the design of every weighted file of the folder; ``svydesign.R`` rakes the weights again to
``margins.csv``, the design the published indicators use.

Replicate weights alone do not give a variance: JKn multiplies each replicate's squared
deviation by (n_h − 1)/n_h of its stratum, which a user cannot recover from a release whose
stratum and cluster codes are scrambled. So the release carries ``replicates.csv`` (one row per
replicate column: its multiplier) and the two set-ups reviewers use, ``svydesign.R`` (R
``survey``) and ``svyset.do`` (Stata), with the numbers filled in. Taylor linearisation needs
only ``stratum``, ``psu`` and ``weight``, which are in every weighted table.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from dhsurvey.errors import DhsurveyError
from dhsurvey.io import atomic_write_text, neutralise_formulas
from dhsurvey.weight.study import replicate_names

#: The weighted files a folder may hold, in the order the set-ups treat them.
WEIGHTED_FILES = ("household", "child", "caregiver")


def by_file(infos: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The replicate description of each weighted file (the weights summary's
    ``replicates_by_form``: file → method, scale, rscales), files without one left out."""
    return {f: i for f, i in infos.items() if isinstance(i, Mapping)}


def replicate_table(info: Mapping[str, Any], file: str | None = None) -> pd.DataFrame:
    """``replicate`` (column name) and ``rscale`` per replicate of one description (with a
    leading ``file`` column when ``file`` is given)."""
    rscales = info.get("rscales")
    if not rscales or info.get("method") != "JKn":
        raise DhsurveyError("the weights summary lists no JKn replicates",
                            code="release-design", field="replicates")
    if int(info.get("count", len(rscales))) != len(rscales):
        raise DhsurveyError(f"{info['count']} replicates but {len(rscales)} multipliers",
                            code="release-design", field="replicates")
    table = pd.DataFrame({"replicate": replicate_names(len(rscales)),
                          "rscale": [float(r) for r in rscales]})
    if file is not None:
        table.insert(0, "file", file)
    return table


def replicates_table(infos: Mapping[str, Any]) -> pd.DataFrame:
    """``file``, ``replicate``, ``rscale``: every weighted file's replicate multipliers (the
    files' replicates differ when a stratum holds a different number of their PSUs)."""
    return pd.concat([replicate_table(info, f) for f, info in by_file(infos).items()],
                     ignore_index=True)


_R_COMMON = """library(survey)
options(survey.lonely.psu = "adjust")
files <- intersect(c("household", "child", "caregiver"),
                   sub("[.]dta$", "", list.files(pattern = "[.]dta$")))
margins <- read.csv("margins.csv", colClasses = c(country = "character", level = "character"))
pooled <- length(unique(margins$country)) > 1

# The .dta files mark "don't know" (98) and "prefer not to say" (99) as Stata missing values
# (.d, .r): read_dta gives NA for them, so means are of real answers only. Each margin
# variable gets its raking cell (<margin>_cell: the level, or country:level when pooled).
read_file <- function(name) {
  data <- as.data.frame(haven::zap_labels(haven::read_dta(paste0(name, ".dta"))))
  if (all(unique(margins$margin) %in% names(data))) for (m in unique(margins$margin)) {
    value <- as.character(data[[m]])
    data[[paste0(m, "_cell")]] <- if (pooled) paste(data$country, value, sep = ":") else value
  }
  data
}

# The weights raked again to the population totals of margins.csv (within each country in a
# pooled release): the design the published indicators use, with calibration-aware standard
# errors. The files that carry every margin variable (child, caregiver) are raked; household
# weights are not calibrated.
calibrated <- function(design) {
  used <- unique(margins$margin)
  if (!all(used %in% names(design$variables))) return(design)
  population <- lapply(used, function(m) {
    rows <- margins[margins$margin == m, ]
    out <- data.frame(if (pooled) paste(rows$country, rows$level, sep = ":") else rows$level,
                      rows$total)
    names(out) <- c(paste0(m, "_cell"), "Freq")
    out
  })
  rake(design, lapply(used, function(m) as.formula(paste0("~", m, "_cell"))), population,
       control = list(maxit = 100, epsilon = 1e-12))  # below 1: a share of the total
}
"""

_R_USE = """
# An indicator as published (indicators.csv): estimate and SE from svymean, the logit
# interval with the domain design's degrees of freedom from svyciprop, e.g. girls:
#   d <- subset(designs$child, sex == 2 & !is.na(ind_ocsea_talk))
#   svymean(~ind_ocsea_talk, d); svyciprop(~ind_ocsea_talk, d, method = "logit")
"""


def _r_script(scale: float | None, note: str = "") -> str:
    """``svydesign.R``: Taylor designs of every weighted file, and replicate designs with
    ``scale`` (None: a tier of masked variance units, no replicates)."""
    head = ("# Survey designs of this folder's weighted files (household, child, caregiver), "
            "for R's survey\n# package with haven.\n")
    taylor = """
# Taylor linearisation on strata and PSUs, weights raked to the margins.
designs <- lapply(setNames(files, files), function(name) {
  calibrated(svydesign(ids = ~psu, strata = ~stratum, weights = ~weight,
                       data = read_file(name), nest = TRUE))
})
"""
    if scale is None:
        return (head + "# Masked variance units: `stratum` and `psu` (a pseudo-PSU: each "
                "stratum's PSUs in two random\n# halves); weights rounded so no value is held "
                "by fewer than k records (disclosure_risk.md).\n" + _R_COMMON + taylor
                + _R_USE)
    return (head + f"# Replicates: {note}.\n" + _R_COMMON + taylor + f"""
# Replicate weights (rep_001, rep_002, ...; already re-raked to the margins where the file's
# weights are raked): the JKn variance with each file's multipliers from replicates.csv.
multipliers <- read.csv("replicates.csv")
replicate_designs <- lapply(setNames(files, files), function(name) {{
  svrepdesign(data = read_file(name), repweights = "^rep_[0-9]+$", weights = ~weight,
              type = "JKn", scale = {scale!r},
              rscales = multipliers$rscale[multipliers$file == name],
              combined.weights = TRUE, mse = FALSE)
}})
""" + _R_USE)


def _stata_do(table: pd.DataFrame | None, note: str) -> str:
    taylor = "svyset psu [pweight=weight], strata(stratum) singleunit(centered)"
    if table is None:
        body = "".join(f"use {f}.dta, clear\n{taylor}\n" for f in WEIGHTED_FILES)
        return ("* Survey designs of the public-use files, for Stata's svy commands.\n"
                "* Masked variance units: stratum and psu (a pseudo-PSU: each stratum's PSUs in "
                "two random\n* halves); weights rounded so no value is held by fewer than k "
                "records (disclosure_risk.md).\n* Stata does not rake the design again: its "
                "standard errors ignore the calibration\n* (indicators.csv and svydesign.R "
                "include it).\n" + body)
    body = ""
    for file, rows in table.groupby("file", sort=False):
        # One multiplier per line, named: readable, and no run of decimals that looks like a
        # coordinate pair to the release scan.
        multipliers = "".join(f"\n        {float(r)!r} /// {name}" for name, r in
                              zip(rows["replicate"], rows["rscale"], strict=True))
        first, last = rows["replicate"].iloc[0], rows["replicate"].iloc[-1]
        body += (f"use {file}.dta, clear\nsvyset [pweight=weight], vce(jackknife) ///\n"
                 f"    jkrweight({first}-{last}, multiplier( ///{multipliers}\n    ))\n")
    return f"""* Survey designs of the weighted files, for Stata's svy commands.
* Replicates: {note}.
* Taylor linearisation instead (ignores the calibration):
*   {taylor}
* Replicate weights, one multiplier per replicate (replicates.csv):
{body}"""


def variance_text(infos: Mapping[str, Any]) -> str:
    """The codebook's line on variance estimation."""
    files = by_file(infos)
    counts = ", ".join(f"{f} rep_001–rep_{len(replicate_table(i)):03d}"
                       for f, i in files.items())
    note = next(iter(files.values())).get("note", "JKn") if files else "JKn"
    return ("Taylor linearisation: strata `stratum`, PSUs `psu`, weight `weight` (raked again "
            "to margins.csv by svydesign.R, as the published indicators are). Replicate "
            f"weights ({counts}): {note}; variance = scale × Σ rscale_r (θ_r − mean θ)², "
            "each file's multipliers in replicates.csv; set-ups for R (svydesign.R) and Stata "
            "(svyset.do) beside this codebook.")


def masked_text() -> str:
    """The codebook's line on variance estimation in a tier of masked variance units."""
    return ("Taylor linearisation on masked variance units: strata `stratum`, pseudo-PSUs "
            "`psu` (each stratum's PSUs in two random halves), weight `weight` (rounded to "
            "two significant digits, no value held by fewer than k records); no replicate "
            "weights in this tier; set-ups for R (svydesign.R) and Stata (svyset.do) beside "
            "this codebook.")


def write_masked(folder: str | Path) -> list[Path]:
    """Write ``svydesign.R`` and ``svyset.do`` for masked variance units."""
    folder = Path(folder)
    return [atomic_write_text(folder / "svydesign.R", _r_script(None)),
            atomic_write_text(folder / "svyset.do", _stata_do(None, ""))]


def margins_table(margins: Mapping[Any, Mapping[str, Mapping[str, float]]]) -> pd.DataFrame:
    """``country``, ``margin``, ``level``, ``total``: the population totals each country's
    weights are raked to (from its country file), for users who rake the design again."""
    return pd.DataFrame([{"country": str(code), "margin": m, "level": str(level),
                          "total": float(total)}
                         for code, margins in margins.items()
                         for m, levels in margins.items() for level, total in levels.items()],
                        columns=["country", "margin", "level", "total"])


def write_margins(folder: str | Path, margins: Mapping[Any, Mapping[str, Mapping[str, float]]]
                  ) -> Path:
    """Write ``margins.csv`` (:func:`margins_table`) into a release folder."""
    return atomic_write_text(Path(folder) / "margins.csv",
                             margins_table(margins).to_csv(index=False, float_format="%.0f"))


def write_design(folder: str | Path, infos: Mapping[str, Any]) -> list[Path]:
    """Write ``replicates.csv``, ``svydesign.R`` and ``svyset.do`` into the release folder;
    ``infos``: the replicate description of every weighted file (:func:`by_file`)."""
    folder = Path(folder)
    table = replicates_table(infos)
    files = by_file(infos)
    notes = list(dict.fromkeys(f"{f}: {i.get('note', 'JKn')}" for f, i in files.items()))
    scales = {float(i.get("scale", 1.0)) for i in files.values()}
    if len(scales) > 1:
        raise DhsurveyError(f"the files' replicate scales differ ({sorted(scales)})",
                            code="release-design", field="replicates")
    note = "; ".join(notes)
    return [
        atomic_write_text(folder / "replicates.csv",
                          neutralise_formulas(table).to_csv(index=False)),
        atomic_write_text(folder / "svydesign.R", _r_script(scales.pop(), note)),
        atomic_write_text(folder / "svyset.do", _stata_do(table, note)),
    ]


__all__ = ["WEIGHTED_FILES", "by_file", "margins_table", "masked_text", "replicate_table",
           "replicates_table", "variance_text", "write_design", "write_margins", "write_masked"]
