"""Disclosure control for releases: risk measures, local suppression, pseudonyms, GPS, text.

Every public file derived from the survey passes through this package first. presidio and
spaCy are imported only when :func:`scrub` first runs (they take seconds to import). The semantics
follow sdcMicro 5.8 (see ``shared/REFERENCE.md``), so numbers can be compared with what a
statistical office computes in R.
"""

from __future__ import annotations

from dhsurvey.anonymise.gps import displace
from dhsurvey.anonymise.pseudonym import load_key, pseudonym, release_ids
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
from dhsurvey.anonymise.suppress import SuppressionResult, local_suppression
from dhsurvey.anonymise.text import scrub

__all__ = [
    "GlobalRisk",
    "SuppressionResult",
    "displace",
    "frequencies",
    "global_risk",
    "household_risk",
    "individual_risk",
    "k_anonymity_violations",
    "l_diversity",
    "load_key",
    "local_suppression",
    "pseudonym",
    "release_ids",
    "scrub",
    "suda2",
]
