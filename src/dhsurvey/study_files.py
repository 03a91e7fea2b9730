"""A study's country files and indicator file checked against its forms, for ``dhsurvey lint``.

What :func:`~dhsurvey.fieldwork.config.load_country` and
:func:`~dhsurvey.release.indicators.load_indicators` reject becomes a lint finding located by
file, YAML line and key path (instead of an exception that stops at the first file), plus what
those loaders accept silently: country keys they ignore, simulation rates outside 0–1, codes an
indicator or domain compares that the field's list lacks, domain labels for no code, domains on
a margin no country calibrates to. The forms stage may not import configuration or release, so
this lives with the other orchestration modules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dhsurvey.errors import DhsurveyError
from dhsurvey.io import load_yaml


def lint_targets(paths: list[Path]) -> tuple[list[str | Path], list[tuple[str, Path, Path]]]:
    """Workbooks (and folders of them) to lint, and the study files to check against the forms
    of their instrument folder: (kind, file, instrument folder). A folder brings its
    ``countries/*.yaml`` and ``indicators.yaml``; a YAML file is a country file inside a
    ``countries`` folder, else an indicator file."""
    workbooks: list[str | Path] = []
    studies: list[tuple[str, Path, Path]] = []
    for p in paths:
        if p.suffix.lower() in (".yaml", ".yml"):
            if p.parent.name == "countries":
                studies.append(("country", p, p.parent.parent))
            else:
                studies.append(("indicators", p, p.parent))
            continue
        workbooks.append(p)
        if p.is_dir():
            studies += [("country", c, p) for c in sorted((p / "countries").glob("*.yaml"))]
            if (p / "indicators.yaml").exists():
                studies.append(("indicators", p / "indicators.yaml", p))
    return workbooks, studies


def fielded_languages(workbooks: list[str | Path]) -> set[str] | None:
    """The codes of the languages the countries beside ``workbooks`` interview and release in
    (their ``countries/*.yaml``), or None when no country file is at hand: a translation the
    study does not field need not be complete."""
    import yaml

    from dhsurvey.forms.model import language_code

    codes: set[str] = set()
    found = False
    for target in workbooks:
        folder = Path(target) if Path(target).is_dir() else Path(target).parent
        for path in sorted((folder / "countries").glob("*.yaml")):
            try:
                data = load_yaml(path.read_text(encoding="utf-8")) or {}
            except (OSError, yaml.YAMLError):
                continue  # reported by the country file's own check
            if not isinstance(data, dict):
                continue
            found = True
            columns = [*(data.get("languages") or ()), data.get("release_language") or ""]
            codes |= {language_code(str(c)) for c in columns if c}
    return codes if found else None


def lint_study_files(studies: list[tuple[str, Path, Path]]) -> list:
    """Country and indicator files checked against the forms of their instrument folder."""
    from dhsurvey.forms.lint import file_finding

    findings: list = []
    models: dict[Path, dict | None] = {}
    countries: dict[Path, list] = {}
    for kind, path, folder in studies:
        if not path.exists():
            findings.append(file_finding(path, None, f"{kind.replace('indicators', 'indicator')}"
                                         "-invalid", "file not found"))
            continue
        if folder not in models:
            models[folder] = _loadable_models(folder)
        if kind == "country":
            found, config = _lint_country(path, models[folder] or {})
            findings += found
            if config is not None:
                countries.setdefault(folder, []).append(config)
    findings += _stale_attachments(countries, models)
    for kind, path, folder in studies:
        forms = models.get(folder)
        if kind != "indicators" or not path.exists():
            continue
        if forms is None:
            findings.append(file_finding(path, None, "indicator-invalid",
                                         f"not checked: the workbooks of {folder} do not all "
                                         "load (see their findings), or there are none"))
        else:
            findings += _lint_indicators(path, forms, countries.get(folder))
    return findings


def _stale_attachments(countries: dict[Path, list], models: dict[Path, dict | None]) -> list:
    """The attached CSV files of each instrument folder against its country files."""
    from dhsurvey.fieldwork.config import stale_attachments
    from dhsurvey.forms.lint import file_finding

    findings = []
    for folder, configs in countries.items():
        forms = models.get(folder)
        if forms is None:
            continue
        for path, what in stale_attachments(folder, configs, list(forms.values())):
            findings.append(file_finding(path, None, "attachment-stale",
                                         f"{what}: run `dhsurvey country media`"))
    return findings


def _loadable_models(folder: Path) -> dict | None:
    """The workbooks of ``folder`` by form id; None when one does not load (lint reports it,
    and checks against an incomplete set of forms would report what is not wrong)."""
    from dhsurvey.errors import FormError
    from dhsurvey.forms.compile import instrument_paths
    from dhsurvey.forms.model import load_form

    out = {}
    try:
        for p in instrument_paths(folder):
            model = load_form(p, check_expressions=False)
            out[model.form_id] = model
    except FormError:
        return None
    return out


def _yaml_lines(path: Path) -> dict[str, int]:
    """Key path (``strata[2].psus``) → its line in a YAML file, to point at the cell."""
    import yaml

    lines: dict[str, int] = {}

    def walk(node: Any, key: str) -> None:
        if key:
            lines.setdefault(key, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                lines.setdefault(f"{key}.{k.value}".lstrip("."), k.start_mark.line + 1)
                walk(v, f"{key}.{k.value}".lstrip("."))
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, f"{key}[{i}]")

    try:
        root = yaml.compose(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, OSError, UnicodeDecodeError):
        return {}
    if root is not None:
        walk(root, "")
    return lines


def _config_finding(path: Path, rule: str, exc: DhsurveyError, lines: dict[str, int]) -> Any:
    from dhsurvey.forms.lint import file_finding

    key = exc.context.get("field")
    row = exc.context.get("row") or (lines.get(str(key)) if key else None)
    return file_finding(path, key, rule, f"[{exc.code}] {exc.message}", row=row)


def _lint_country(path: Path, models: dict) -> tuple[list, Any]:
    """One country file as lint findings: what :func:`load_country` rejects, plus keys it
    does not read and simulation rates outside 0–1."""
    from dhsurvey.fieldwork.config import COUNTRY_KEYS, load_country
    from dhsurvey.forms.lint import file_finding

    lines = _yaml_lines(path)
    try:
        config = load_country(path, list(models.values()))
    except DhsurveyError as exc:
        return [_config_finding(path, "country-invalid", exc, lines)], None
    except (AttributeError, TypeError, ValueError) as exc:
        return [file_finding(path, None, "country-invalid", f"not a country file: {exc}")], None
    findings = []
    data = load_yaml(path.read_text(encoding="utf-8"))
    for key in sorted(set(data) - COUNTRY_KEYS, key=str):
        findings.append(file_finding(path, str(key), "country-key-unknown",
                                     f"'{key}' is not a country setting (the loader ignores "
                                     "it)", row=lines.get(str(key))))
    for name, rate in vars(config.simulation).items():
        if not 0 <= rate <= 1:
            key = f"simulation.{name}"
            findings.append(file_finding(path, key, "country-rate-invalid",
                                         f"simulation rate {name} = {rate} is not between 0 "
                                         "and 1", row=lines.get(key)))
    return findings, config


def _lint_indicators(path: Path, models: dict, countries: list | None) -> list:
    """The indicator file as lint findings: what :func:`load_indicators` rejects, codes its
    expressions compare that the fields' lists lack, domain labels for levels the list does
    not have, and domains on margins no country file calibrates to."""
    import yaml

    from dhsurvey.forms.lint import expression_code_problems, file_finding
    from dhsurvey.release.indicators import load_indicators

    lines = _yaml_lines(path)
    try:
        indicators, domains = load_indicators(path, models)
    except DhsurveyError as exc:
        return [_config_finding(path, "indicator-invalid", exc, lines)]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        return [file_finding(path, None, "indicator-invalid", f"not valid YAML: {exc}",
                             row=mark.line + 1 if mark else None)]
    except (AttributeError, TypeError, ValueError) as exc:
        return [file_finding(path, None, "indicator-invalid", f"not an indicator file: {exc}")]
    findings = []
    for i, ind in enumerate(indicators):
        for part in ("value", "universe"):
            key = f"indicators[{i}].{part}"
            for problem in expression_code_problems(models[ind.form], getattr(ind, part)):
                findings.append(file_finding(path, key, "indicator-code-not-in-list",
                                             f"{ind.id}: {problem}", row=lines.get(key)))
    margins = {m for c in countries or () for m in c.margins}
    for form, specs in domains.items():
        for dom in specs:
            findings += _lint_domain(path, models[form], form, dom, margins, countries, lines)
    return findings


def _lint_domain(path: Path, model: Any, form: str, dom: Any, margins: set[str],
                 countries: list | None, lines: dict[str, int]) -> list:
    from dhsurvey.forms.lint import expression_code_problems, file_finding

    where = f"domains.{form}.{dom.name}"
    findings = []
    if dom.margin is not None and countries and dom.margin not in margins:
        findings.append(file_finding(path, f"{where}.margin", "domain-margin-unknown",
                                     f"margin '{dom.margin}' is not calibrated to in any "
                                     "country file", row=lines.get(f"{where}.margin")))
    for problem in expression_code_problems(model, dom.expression) if dom.expression else ():
        findings.append(file_finding(path, f"{where}.expression", "indicator-code-not-in-list",
                                     problem, row=lines.get(f"{where}.expression")))
    source = dom.margin or (dom.expression.strip()[2:-1] if dom.expression.strip() ==
                            f"${{{dom.expression.strip()[2:-1]}}}" else None)
    item = model.by_name.get(source) if source else None
    lst = model.choices_for(item) if item is not None else None
    if lst is not None:
        unknown = [level for level in dom.labels if level not in lst.codes()]
        if unknown:
            findings.append(file_finding(path, f"{where}.labels", "domain-label-unknown",
                                         f"label(s) for {unknown}, not codes of '{source}' "
                                         f"(list '{lst.name}': {', '.join(lst.codes())})",
                                         row=lines.get(f"{where}.labels")))
    return findings
