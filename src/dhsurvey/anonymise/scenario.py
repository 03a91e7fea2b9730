"""The disclosure rules of a study: intruder scenarios per release tier, thresholds, recodes.

Why configuration (``instruments/disclosure.yaml``) and not code: which intruder a file must
withstand, how much local suppression analysts accept and how far a variable may be coarsened
are decisions an ethics board and a data protection officer sign off, and the release report
quotes them. The public tier (``data/release``) assumes the intruder who knows the child's
household; the licensed tier (``data/licensed``) a declared, narrower one (docs/disclosure.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dhsurvey.errors import DhsurveyError
from dhsurvey.forms.model import FormModel
from dhsurvey.io import load_yaml

#: Name of the rules file beside the workbooks.
RULES_FILE = "disclosure.yaml"
LINKS = ("auto", True, False)
DESIGNS = ("masked", "replicates")


@dataclass(frozen=True)
class Harmful:
    """The answers of a sensitive variable an intruder must not learn (l-diversity; the
    records holding one: :func:`~dhsurvey.anonymise.linked.harmful_flags`)."""

    values: tuple[Any, ...] = ()
    at_least: float | None = None

    def describe(self) -> str:
        if self.at_least is not None:
            return f">= {self.at_least:g}"
        return "in {" + ", ".join(map(str, self.values)) + "}"


@dataclass(frozen=True)
class Step:
    """One recoding step: ``bands`` (lower bounds), ``top`` (top-code), ``merge`` (codes
    merged into one) or ``drop`` (the variable is left out of the tier)."""

    kind: str
    value: Any = None

    def describe(self) -> str:
        if self.kind == "bands":
            lows = list(self.value)
            parts = [f"{a}-{b - 1}" for a, b in zip(lows, lows[1:], strict=False)]
            return "bands " + ", ".join([*parts, f"{lows[-1]}+"]) + " (coded by lower bound)"
        if self.kind == "top":
            return f"top-coded at {self.value} (= {self.value} or more)"
        if self.kind == "merge":
            return "codes " + ", ".join(map(str, self.value)) + " merged"
        return "left out of this tier"


@dataclass(frozen=True)
class Tier:
    """A release tier: where it goes, the intruder it withstands, its keys and design."""

    name: str
    folder: str
    scenario: str
    keys: Mapping[str, tuple[str, ...]] | None  # per form; None: every field classed quasi

    def is_key(self, form: str, column: str) -> bool:
        """Whether the intruder of this tier knows ``column`` of ``form``'s records (the
        stratum of weighted files always counts: it is released in every record)."""
        return column == "stratum" or self.keys is None or column in self.keys.get(form, ())
    link: Any  # "auto", True or False
    design: str
    #: Whether the intruder knows who in the household took part (then a missing linked
    #: record is a category; otherwise a wildcard).
    knows_participation: bool = True


@dataclass(frozen=True)
class Rules:
    """Everything ``disclosure.yaml`` declares (see the file's comments)."""

    k: int = 3
    max_global_risk: float = 0.01
    suppression_budget: float = 0.05
    l_group: int = 3
    sensitive: Mapping[str, Mapping[str, Harmful]] = field(default_factory=dict)
    tiers: Mapping[str, Tier] = field(default_factory=dict)
    recoding: Mapping[str, Mapping[str, tuple[Step, ...]]] = field(default_factory=dict)
    #: Significant digits public-tier weights are rounded to.
    weight_digits: int = 2
    source: str = ""

    def ladder(self, form: str, column: str) -> tuple[Step, ...]:
        return tuple(self.recoding.get(form, {}).get(column, ()))


#: The tier of a release made without declared rules: every quasi-identifier a key, the
#: files linked, the design as weighted.
UNDECLARED = Tier("public", "release", "not declared: every field classed quasi is a key and "
                  "the files share hh_id", None, True, "replicates")


def _error(path: Path, message: str, entry: str = "") -> DhsurveyError:
    return DhsurveyError(message, code="disclosure-rules", file=path,
                         field=entry or None)


def _step(path: Path, where: str, raw: Any) -> Step:
    if raw == "drop":
        return Step("drop")
    if not isinstance(raw, Mapping) or len(raw) != 1:
        raise _error(path, f"a recoding step is 'drop' or one of bands/top/merge, not {raw!r}",
                     where)
    ((kind, value),) = raw.items()
    if kind == "bands" and isinstance(value, list) and value and \
            all(isinstance(v, int | float) for v in value) and value == sorted(value):
        return Step("bands", tuple(value))
    if kind == "top" and isinstance(value, int | float):
        return Step("top", value)
    if kind == "merge" and isinstance(value, list) and len(value) >= 2:
        return Step("merge", tuple(value))
    raise _error(path, f"bad recoding step {raw!r} (bands: rising lower bounds; top: a "
                 "number; merge: two or more codes)", where)


def _harmful(path: Path, where: str, raw: Any) -> Harmful:
    if isinstance(raw, Mapping) and "at_least" in raw:
        return Harmful(at_least=float(raw["at_least"]))
    if isinstance(raw, Mapping) and isinstance(raw.get("values"), list) and raw["values"]:
        return Harmful(values=tuple(raw["values"]))
    raise _error(path, "a sensitive variable names its harmful answers as {values: [...]} "
                 "or {at_least: N}", where)


def _tier(path: Path, name: str, raw: Any) -> Tier:
    if not isinstance(raw, Mapping):
        raise _error(path, f"tier '{name}' must be a mapping", f"tiers.{name}")
    keys = raw.get("keys", "quasi")
    if keys != "quasi" and not (isinstance(keys, Mapping) and all(
            isinstance(v, list) and all(isinstance(k, str) for k in v) for v in keys.values())):
        raise _error(path, "keys is 'quasi' or, per form, a list of field names",
                     f"tiers.{name}.keys")
    link = raw.get("link", "auto")
    design = raw.get("design", "masked")
    if link not in LINKS:
        raise _error(path, "link is auto, true or false", f"tiers.{name}.link")
    if design not in DESIGNS:
        raise _error(path, f"design is one of {', '.join(DESIGNS)}", f"tiers.{name}.design")
    scenario = str(raw.get("scenario", "")).strip()
    if not scenario:
        raise _error(path, "every tier states its intruder scenario", f"tiers.{name}.scenario")
    knows = raw.get("knows_participation", True)
    if not isinstance(knows, bool):
        raise _error(path, "knows_participation is true or false",
                     f"tiers.{name}.knows_participation")
    return Tier(name, str(raw.get("folder", name)), scenario,
                None if keys == "quasi" else {f: tuple(v) for f, v in keys.items()}, link,
                design, knows)


def _thresholds(path: Path, data: Mapping[str, Any]) -> tuple[int, float, float, int]:
    """k, max_global_risk, suppression_budget and l_diversity.group, checked."""
    try:
        k = int(data.get("k", 3))
        risk = float(data.get("max_global_risk", 0.01))
        budget = float(data.get("suppression_budget", 0.05))
        group = int((data.get("l_diversity") or {}).get("group", 3))
    except (TypeError, ValueError, AttributeError):
        raise _error(path, "k, max_global_risk, suppression_budget and l_diversity.group "
                     "are numbers") from None
    if k < 1 or not 0 <= budget <= 1 or risk <= 0 or group < 2:
        raise _error(path, "k >= 1, 0 <= suppression_budget <= 1, max_global_risk > 0, "
                     "l_diversity.group >= 2")
    return k, risk, budget, group


def _digits(path: Path, data: Mapping[str, Any]) -> int:
    try:
        digits = int(data.get("weight_digits", 2))
    except (TypeError, ValueError):
        raise _error(path, "weight_digits is a whole number", "weight_digits") from None
    if digits < 1:
        raise _error(path, "weight_digits is at least 1", "weight_digits")
    return digits


def load_rules(path: str | Path, models: Mapping[str, FormModel] | None = None) -> Rules:
    """Read and check ``disclosure.yaml``; names of forms and fields are checked against
    ``models`` (a rule about a field no form has would silently protect nothing)."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise _error(path, "the disclosure rules file is missing")
    try:
        data = load_yaml(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise _error(path, f"not valid YAML: {exc}") from None
    if not isinstance(data, Mapping):
        raise _error(path, "the file must hold a mapping")
    k, risk, budget, group = _thresholds(path, data)
    ldiv = data.get("l_diversity") or {}
    sensitive = {form: {col: _harmful(path, f"l_diversity.sensitive.{form}.{col}", raw)
                        for col, raw in (cols or {}).items()}
                 for form, cols in (ldiv.get("sensitive") or {}).items()}
    tiers = {name: _tier(path, name, raw) for name, raw in (data.get("tiers") or {}).items()}
    if "public" not in tiers:
        raise _error(path, "a public tier is required", "tiers")
    recoding = {form: {col: tuple(_step(path, f"recoding.{form}.{col}", s) for s in steps)
                       for col, steps in (cols or {}).items()}
                for form, cols in (data.get("recoding") or {}).items()}
    digits = _digits(path, data)
    if models is not None:
        for where, table in (("l_diversity.sensitive", sensitive), ("recoding", recoding)):
            for form, cols in table.items():
                if form not in models:
                    raise _error(path, f"no form '{form}'", f"{where}.{form}")
                for col in cols:
                    if col not in models[form]:
                        raise _error(path, f"form '{form}' has no field '{col}'",
                                     f"{where}.{form}.{col}")
    return Rules(k, risk, budget, group, sensitive, tiers, recoding, digits, str(path))


__all__ = ["DESIGNS", "RULES_FILE", "UNDECLARED", "Harmful", "Rules", "Step", "Tier",
           "load_rules"]
