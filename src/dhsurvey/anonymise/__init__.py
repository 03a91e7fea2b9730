"""Disclosure control for releases: risk measures, local suppression, pseudonyms, GPS, text.

Every public file derived from the survey passes through this package first. presidio and
spaCy are imported only when :func:`scrub` first runs (they take seconds to import). The semantics
follow sdcMicro 5.8 (see ``shared/REFERENCE.md``), so numbers can be compared with what a
statistical office computes in R.

The generic engine (:mod:`.risk`, :mod:`.suppress`, :mod:`.pseudonym`, :mod:`.gps`,
:mod:`.text`) knows k-anonymity; the study's release is built on it one method per module:
:mod:`.scenario` (the intruder scenarios and rules of ``disclosure.yaml``), :mod:`.classify`
(what each column becomes), :mod:`.ids` (fresh release IDs), :mod:`.recode` (fixed global
recodes), :mod:`.linked` (what the intruder can join, and the risk among each file's
respondents), :mod:`.ladder` (recoding steps chosen by the suppression budget),
:mod:`.suppression` (local suppression), :mod:`.masked` (masked variance units, rounded
weights), :mod:`.measure` and :mod:`.report` (the disclosure report), :mod:`.release` (the
steps in order), :mod:`.restricted`, :mod:`.scan` and :mod:`.identifiers` (the values that
must never appear, and reading the written files back) and :mod:`.gate` (the decision).
"""

from __future__ import annotations

from dhsurvey.anonymise.classify import classify, classify_with_reasons
from dhsurvey.anonymise.gate import GateResult, gate
from dhsurvey.anonymise.gps import displace
from dhsurvey.anonymise.pseudonym import load_key, pseudonym, release_ids
from dhsurvey.anonymise.release import (
    AnonymisedRelease,
    ReleasePlan,
    anonymise_country,
    anonymise_form,
    plan_columns,
)
from dhsurvey.anonymise.risk import (
    GlobalRisk,
    frequencies,
    global_risk,
    household_risk,
    individual_risk,
    k_anonymity_violations,
    l_diversity,
    suda2,
)
from dhsurvey.anonymise.scan import release_files, scan_release
from dhsurvey.anonymise.suppress import SuppressionResult, local_suppression
from dhsurvey.anonymise.text import scrub

__all__ = [
    "AnonymisedRelease",
    "GateResult",
    "GlobalRisk",
    "ReleasePlan",
    "SuppressionResult",
    "anonymise_country",
    "anonymise_form",
    "classify",
    "classify_with_reasons",
    "displace",
    "frequencies",
    "gate",
    "global_risk",
    "household_risk",
    "individual_risk",
    "k_anonymity_violations",
    "l_diversity",
    "load_key",
    "local_suppression",
    "plan_columns",
    "pseudonym",
    "release_files",
    "release_ids",
    "scan_release",
    "scrub",
    "suda2",
]
