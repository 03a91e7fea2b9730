"""What the morning report calls unusual: thresholds a data manager sets in
``instruments/monitoring.yaml``.

Why a file: what counts as a jump or a struggling enumerator depends on the study and changes
during fieldwork (looser in the first days, tighter later); the survey manager edits it as they
edit the country files, and every country's morning report and anomaly checks read it. A
missing file means the defaults below; a wrong value is an error naming the file and the key.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from dhsurvey.errors import ConfigError
from dhsurvey.io import load_yaml

#: The file beside the instruments.
MONITORING_FILE = "monitoring.yaml"


@dataclass(frozen=True)
class Thresholds:
    """Anomaly thresholds (this run's new submissions against the ones before) and the
    criteria that flag an enumerator."""

    # -- anomalies: this run's new submissions against everything received before
    #: Rates are compared only when at least this many submissions of the form are new.
    min_new: int = 20
    #: New duplicates of one form in one run.
    new_duplicates: int = 20
    #: Rise of a form's quarantine share among new submissions over the earlier share.
    quarantine_rate: float = 0.05
    #: Rise of the speeder share (interviews far shorter than the questionnaire allows).
    speeder_rate: float = 0.05
    #: Rise of the refusal rate (households, and selected children, refusing).
    refusal_rate: float = 0.05
    # -- enumerators: flagged when they have at least ``min_interviews`` in a form and
    #: Interviews of one form an enumerator needs before a rate of theirs is judged.
    min_interviews: int = 10
    #: … their median interview is shorter than this share of the form's median
    duration_share: float = 0.6
    #: … this share of their completed interviews are speeders
    speeder_share: float = 0.15
    #: … their don't-know or refusal rate is this many standard errors above the form's
    dk_refusal_z: float = 3.0
    #: … this share of their interviews straight-lined a grid
    straightlining_share: float = 0.2
    #: … this many of their submissions were duplicates
    duplicates: int = 3
    #: … this share of back-checked answers that must not change differed (type 1)
    backcheck_error_rate: float = 0.10
    # -- the quarantine-share check
    #: An enumerator with this share of their submissions quarantined fails the check …
    quarantine_share: float = 0.25
    #: … which stops the country's run before weighting when true (else it warns).
    block_on_quarantine_share: bool = False

    def describe(self) -> dict[str, str]:
        """Each criterion in words, as the report shows it beside what it flagged."""
        return {
            "duration": f"median interview below {self.duration_share:.0%} of the form's",
            "speeders": f"{self.speeder_share:.0%} or more of completed interviews speeders",
            "don't know / refusal": f"rate {self.dk_refusal_z:g} or more standard errors "
                                    "above the form's",
            "straight-lining": f"{self.straightlining_share:.0%} or more of interviews "
                               "straight-lined a grid",
            "duplicates": f"{self.duplicates} or more duplicate submissions",
            "back-check": f"type-1 back-check error rate {self.backcheck_error_rate:.0%} or "
                          "more",
            "quarantine": f"{self.quarantine_share:.0%} or more of submissions quarantined",
            "not in a team": "enumerator ID in no team of the country file",
        }


#: The file's sections and the fields each holds (the YAML is grouped for the reader).
_SECTIONS = {
    "anomalies": ("min_new", "new_duplicates", "quarantine_rate", "speeder_rate",
                  "refusal_rate"),
    "enumerators": ("min_interviews", "duration_share", "speeder_share", "dk_refusal_z",
                    "straightlining_share", "duplicates", "backcheck_error_rate"),
    "quarantine_share": ("quarantine_share", "block_on_quarantine_share"),
}
#: Keys of ``quarantine_share:`` in the file → field.
_SHARE_KEYS = {"threshold": "quarantine_share", "blocking": "block_on_quarantine_share"}


def _value(raw: Any, default: Any, path: Path, key: str) -> Any:
    if isinstance(default, bool):
        if not isinstance(raw, bool):
            raise ConfigError(f"'{key}' must be true or false, not {raw!r}",
                              code="config-invalid", file=path, field=key)
        return raw
    if isinstance(raw, bool) or not isinstance(raw, int | float) or raw < 0:
        raise ConfigError(f"'{key}' must be a number of at least 0, not {raw!r}",
                          code="config-invalid", file=path, field=key)
    if isinstance(default, int):
        if float(raw) != int(raw):
            raise ConfigError(f"'{key}' must be a whole number, not {raw!r}",
                              code="config-invalid", file=path, field=key)
        return int(raw)
    if key.endswith(("rate", "share", "threshold")) and raw > 1:
        raise ConfigError(f"'{key}' is a share between 0 and 1, not {raw!r}",
                          code="config-invalid", file=path, field=key)
    return float(raw)


def load_thresholds(instruments: str | Path) -> Thresholds:
    """``instruments/monitoring.yaml`` over the defaults (the defaults when it is absent)."""
    import yaml

    path = Path(instruments) / MONITORING_FILE
    if not path.exists():
        return Thresholds()
    try:
        data = load_yaml(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML ({exc})", code="config-invalid", file=path) from None
    if not isinstance(data, dict):
        raise ConfigError("must hold the sections anomalies, enumerators, quarantine_share",
                          code="config-invalid", file=path)
    unknown = sorted(set(data) - set(_SECTIONS))
    if unknown:
        raise ConfigError(f"unknown section(s) {unknown}; known: {sorted(_SECTIONS)}",
                          code="config-invalid", file=path, field=unknown[0])
    defaults = {f.name: f.default for f in fields(Thresholds)}
    values: dict[str, Any] = {}
    for section, allowed in _SECTIONS.items():
        given = data.get(section) or {}
        if not isinstance(given, dict):
            raise ConfigError(f"'{section}' must be a mapping", code="config-invalid",
                              file=path, field=section)
        for key, raw in given.items():
            name = _SHARE_KEYS.get(key, key) if section == "quarantine_share" else key
            if name not in allowed:
                known = sorted(_SHARE_KEYS) if section == "quarantine_share" else sorted(allowed)
                raise ConfigError(f"unknown key '{key}' in {section}; known: {known}",
                                  code="config-invalid", file=path, field=f"{section}.{key}")
            values[name] = _value(raw, defaults[name], path, f"{section}.{key}")
    return Thresholds(**values)
