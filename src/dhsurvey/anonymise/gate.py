"""The release decision: a release passes only if its report and its scan are both clean.

Why a gate and not a warning: disclosure control is the last step before files leave the
restricted zone, and a number in a report nobody reads protects nobody. The gate turns the
report (k-anonymity per file and on the linked profile, weighted global risk, the design
variable never blanked) and the scan's findings into a yes or no with reasons.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


class HasReport(Protocol):
    """Anything carrying a release's report (an
    :class:`~dhsurvey.anonymise.release.AnonymisedRelease`)."""

    report: dict[str, dict[str, Any]]
    tier: dict[str, Any]


@dataclass(frozen=True)
class GateResult:
    """Release decision: ``passed`` only when ``reasons`` is empty; ``notes`` inform."""

    passed: bool
    reasons: list[str]
    notes: list[str] = field(default_factory=list)


def gate(report: Mapping[str, Mapping[str, Any]] | HasReport,
         findings: Sequence[Mapping[str, Any]], *, k: int = 3,
         max_global_risk: float = 0.01, tier: Mapping[str, Any] | None = None) -> GateResult:
    """Block the release if any record has f_k < k after suppression (among its file's
    respondents, on every key that can be joined to it), if a record sits in a group whose
    members all share a harmful answer (l-diversity), if local suppression took more than the
    budget of a key or the rules could not be met (``tier``, the tier's report), if a
    weighted form's global risk exceeds ``max_global_risk``, if a design variable was
    suppressed, or if the scan found anything.

    Unweighted forms (frontline workers, not a probability sample) have risk 1/f_k with the
    sample taken as the population: with f_k >= k that is at most 1/k and says nothing a
    threshold for weighted risk could judge, so they are gated on k only and a note says so.
    """
    if not isinstance(report, Mapping):
        tier = report.tier if tier is None else tier
        report = report.report
    reasons: list[str] = list((tier or {}).get("budget_failures", []))
    notes: list[str] = []
    for name, rep in report.items():
        min_fk = rep.get("min_fk")
        if min_fk is not None and min_fk < k:
            bad = rep["violations"]["after_suppression"] if rep.get("k", k) == k else None
            extra = f" ({bad} records)" if bad else ""
            reasons.append(f"{name}: a key combination has f_k = {min_fk} < k = {k} after "
                           f"suppression{extra}")
        for col, stages in rep.get("l_violations", {}).items():
            if stages.get("after_suppression"):
                reasons.append(f"{name}: {stages['after_suppression']} records in groups whose "
                               f"members all share a harmful answer of {col}")
        if rep.get("design_suppressed"):
            reasons.append(f"{name}: stratum suppressed in {rep['design_suppressed']} records")
        risk = rep["global_risk"]["after_suppression"]["risk"]
        if rep.get("weighted", True):
            if risk > max_global_risk:
                reasons.append(f"{name}: global risk {risk:.4g} > {max_global_risk:g}")
        else:
            notes.append(f"{name}: unweighted; risk {risk:.4g} is 1/f_k with the sample as "
                         "population, gated on k only")
    by_file: dict[tuple[str, str], int] = {}
    for f in findings:
        by_file[(str(f.get("file")), str(f.get("kind")))] = \
            by_file.get((str(f.get("file")), str(f.get("kind"))), 0) + int(f.get("count", 1))
    for (file, kind), n in sorted(by_file.items()):
        reasons.append(f"scan: {n} {kind} finding(s) in {Path(file).name}")
    return GateResult(not reasons, reasons, notes)
