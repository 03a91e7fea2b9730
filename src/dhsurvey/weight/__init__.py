"""Weighting and design-based estimation, matching R's ``survey`` package.

- :mod:`~dhsurvey.weight.calibrate`: :func:`rake`, :func:`linear_calibrate`, :func:`trim`,
  :func:`kish_deff`, :func:`normalise`.
- :mod:`~dhsurvey.weight.nonresponse`: :func:`nonresponse_adjust` (weighting classes).
- :mod:`~dhsurvey.weight.variance`: :class:`Design` (Taylor linearisation, calibration-aware
  SEs, domains, JK1/JKn replicates) returning :class:`Estimate`; :func:`variance_units`.

The expansion weights are the calibrated ones; :func:`normalise` gives mean-1 analysis weights.
"""

from dhsurvey.weight.calibrate import (
    Margins,
    TrimResult,
    kish_deff,
    linear_calibrate,
    normalise,
    rake,
    trim,
)
from dhsurvey.weight.nonresponse import AdjustResult, nonresponse_adjust
from dhsurvey.weight.variance import (
    LONELY_PSU,
    RAKING_SWEEPS,
    Design,
    Estimate,
    Replicates,
    variance_units,
)

__all__ = [
    "LONELY_PSU",
    "RAKING_SWEEPS",
    "AdjustResult",
    "Design",
    "Estimate",
    "Margins",
    "Replicates",
    "TrimResult",
    "kish_deff",
    "linear_calibrate",
    "nonresponse_adjust",
    "normalise",
    "rake",
    "trim",
    "variance_units",
]
