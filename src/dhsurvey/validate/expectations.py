"""Great Expectations suites generated from the form model, and Data Docs for accepted tables.

Why this exists: the pipeline's own checks (types, constraints, linkage) decide what is
accepted; this module gives data managers and auditors an independent, browsable record of
what the accepted tables were checked against, in a format they already know (GX Data Docs).
The suites are *derived* from the :class:`~dhsurvey.forms.model.FormModel` — never written by
hand — so a new form version cannot drift away from its expectations, and every expectation's
``meta`` names the field, the rule and the survey row it came from.

What a suite expects (root table, or one repeat's table):

* the table's columns are exactly the canonical ones (META + the level's fields, in any
  order): a missing column means an export from another form version, an extra one means a
  table that was not built from this form; either should stop a release;
* ``KEY`` is unique and never null (``PARENT_KEY`` never null in repeat tables);
* select_one values are in the choice list (as integers when every code is an integer, since
  typed tables hold them as ``Int64``); select_multiple/rank answers are space-separated codes
  of the list;
* integer and decimal fields stay within the *literal* bounds of their constraint
  (``. >= 0 and . <= 110``); bounds that reference other fields are the validator's job;
* required fields that no relevance can hide (none on the field or any enclosing group) are
  never null;
* free text and direct identifiers get no expectation: there is nothing generic to check.

Data Docs are shared like the quality report, so they print no value of any table: results
keep counts and shares of unexpected values but no samples (``partial_unexpected_count`` 0,
:data:`RESULT_FORMAT`) — GX would otherwise list up to 20 failing values of each expectation,
instanceIDs included when ``KEY`` is not unique. The values are in the validation's own
issue tables and the restricted listings.

``great_expectations`` is imported lazily: it costs ~3 s and turns on
``logging.captureWarnings(True)``, which the rest of the package must not inherit.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pandas as pd

from dhsurvey.forms.frames import PARENT
from dhsurvey.forms.model import FormModel, Item
from dhsurvey.ingest.canonical import META, REPEAT_META

if TYPE_CHECKING:  # pragma: no cover - typing only
    import great_expectations as gx

#: PII classes that get no expectation (nothing generic to check in names or free text).
NO_EXPECTATIONS_PII = ("free_text", "direct")
#: Field types whose constraint may carry numeric bounds.
NUMERIC_TYPES = ("integer", "decimal")
#: Result detail kept for Data Docs: counts and shares of unexpected values, no samples of
#: them (Data Docs are shared: no value of a table may appear in them).
RESULT_FORMAT: dict[str, Any] = {"result_format": "SUMMARY", "partial_unexpected_count": 0,
                                 "include_unexpected_rows": False}
_INT_CODE = re.compile(r"^-?\d+$")
_SITE = "dhsurvey"


def _gx() -> ModuleType:
    """Import great_expectations, undoing its global ``logging.captureWarnings(True)``."""
    import great_expectations

    logging.captureWarnings(False)
    return great_expectations


# -- suites -------------------------------------------------------------------------------------


def suite_name(model: FormModel, repeat: str | None = None) -> str:
    """``household`` for a root table, ``household.roster`` for a repeat's table."""
    return model.form_id if repeat is None else f"{model.form_id}.{repeat}"


def _meta(item: Item | None, rule: str, **extra: Any) -> dict[str, Any]:
    """Where an expectation came from: the field, the rule and the workbook row."""
    meta: dict[str, Any] = {"field": item.name if item else None, "rule": rule}
    if item is not None:
        meta["row"] = item.row
    meta.update(extra)
    return meta


def choice_codes(model: FormModel, item: Item) -> list[Any] | None:
    """The values a select may take in a typed table (ints when every code is an int).

    ``None`` when the list is not in the workbook (selects from a repeat or a file), so there
    is nothing to check against.
    """
    lst = model.choices_for(item)
    if lst is None:
        return None
    codes = lst.codes()
    if all(_INT_CODE.match(c) for c in codes):
        return [int(c) for c in codes]
    return [*codes, "other"] if item.or_other else codes


def multi_select_regex(codes: list[Any]) -> str:
    """A full-match regex for space-separated choice codes, e.g. ``^(?:1|2)(?: (?:1|2))*$``."""
    alternation = "|".join(re.escape(str(c)) for c in codes)
    return rf"^(?:{alternation})(?: (?:{alternation}))*$"


def _literal(node: Any) -> float | None:
    from dhsurvey.forms.expressions import Negate, Number

    if isinstance(node, Number):
        return node.value
    if isinstance(node, Negate) and isinstance(node.operand, Number):
        return -node.operand.value
    return None


_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}


def literal_bounds(constraint: str) -> dict[str, Any]:
    """``min_value``/``max_value`` (and strictness) a constraint imposes with literal numbers.

    Only comparisons of ``.`` with a number that are top-level conjuncts count: under ``or``
    or ``not`` a bound need not hold, and a bound against another field cannot be checked
    column by column. ``{}`` when there is nothing literal.
    """
    from dhsurvey.forms.expressions import BinaryOp, Current, ExpressionError, conjuncts, parse

    if not constraint.strip():
        return {}
    try:
        tree = parse(constraint)
    except ExpressionError:
        return {}
    lower: tuple[float, bool] | None = None  # (value, strict)
    upper: tuple[float, bool] | None = None
    for node in conjuncts(tree):
        if not isinstance(node, BinaryOp) or node.op not in _FLIP:
            continue
        if isinstance(node.left, Current) and (value := _literal(node.right)) is not None:
            op = node.op
        elif isinstance(node.right, Current) and (value := _literal(node.left)) is not None:
            op = _FLIP[node.op]
        else:
            continue
        strict = op in ("<", ">")
        if op in (">", ">="):
            if lower is None or (value, strict) > lower:
                lower = (value, strict)
        elif upper is None or (value, not strict) < (upper[0], not upper[1]):
            upper = (value, strict)
    return {**_bound("min", lower), **_bound("max", upper)}


def _bound(side: str, bound: tuple[float, bool] | None) -> dict[str, Any]:
    """``{side}_value`` (an int when whole) and ``strict_{side}`` when strict; ``{}`` for
    no bound."""
    if bound is None:
        return {}
    value, strict = bound
    out: dict[str, Any] = {f"{side}_value": int(value) if value.is_integer() else value}
    if strict:
        out[f"strict_{side}"] = True
    return out


def _field_expectations(gx: ModuleType, model: FormModel, item: Item) -> Iterator[Any]:
    """The expectations one field's row in the workbook implies."""
    ge = gx.expectations
    if item.pii in NO_EXPECTATIONS_PII:
        return
    if item.is_select_one:
        codes = choice_codes(model, item)
        if codes is not None:
            yield ge.ExpectColumnValuesToBeInSet(
                column=item.name, value_set=codes,
                meta=_meta(item, "choices", list_name=item.list_name))
    elif item.is_select_multiple or item.type == "rank":
        codes = choice_codes(model, item)
        if codes is not None:
            yield ge.ExpectColumnValuesToMatchRegex(
                column=item.name, regex=multi_select_regex(codes),
                meta=_meta(item, "choices", list_name=item.list_name))
    if item.type in NUMERIC_TYPES and (bounds := literal_bounds(item.constraint)):
        yield ge.ExpectColumnValuesToBeBetween(
            column=item.name, **bounds, meta=_meta(item, "constraint", source=item.constraint))
    if item.required == "yes" and not model.relevance(item):
        yield ge.ExpectColumnValuesToNotBeNull(
            column=item.name, meta=_meta(item, "required", note="no relevance on the field "
                                         "or any enclosing group"))


def suite_for(model: FormModel, repeat: str | None = None) -> gx.ExpectationSuite:
    """The expectation suite for a typed accepted table of ``model`` (root or one repeat).

    Generated, never edited: rerunning on the same workbook gives the same suite, and the
    suite's meta records the form version it was derived from.
    """
    gx = _gx()
    ge = gx.expectations
    fields = model.fields_in(repeat)
    meta_columns = META if repeat is None else REPEAT_META
    expectations: list[Any] = [
        ge.ExpectTableColumnsToMatchSet(
            column_set=[*meta_columns, *(f.name for f in fields)], exact_match=True,
            meta=_meta(None, "canonical columns", note="META + the form's fields at this "
                       "level, from the form model")),
        ge.ExpectColumnValuesToNotBeNull(column="KEY", meta=_meta(None, "KEY", field="KEY")),
        ge.ExpectColumnValuesToBeUnique(column="KEY", meta=_meta(None, "KEY", field="KEY")),
    ]
    if repeat is not None:
        expectations.append(ge.ExpectColumnValuesToNotBeNull(
            column=PARENT, meta=_meta(None, "PARENT_KEY", field=PARENT)))
    for item in fields:
        expectations.extend(_field_expectations(gx, model, item))
    return gx.ExpectationSuite(
        name=suite_name(model, repeat),
        expectations=expectations,
        meta={"form_id": model.form_id, "form_version": model.version,
              "repeat": repeat, "generated_from": model.path.name},
    )


# -- running ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FormResult:
    """One form's validation outcome."""

    form_id: str
    suite: str
    success: bool
    evaluated: int
    successful: int
    #: ``expectation_type:column`` (``expectation_type`` for table-level) of each failure.
    failed: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class GEResult:
    """All forms' outcomes and where the Data Docs site was written."""

    success: bool
    forms: dict[str, FormResult]
    index: Path


def _label(config: Any) -> str:
    column = config.kwargs.get("column")
    return f"{config.type}:{column}" if column else config.type


def _site_config(docs_dir: Path) -> dict[str, Any]:
    return {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                          "base_directory": str(docs_dir)},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    }


def validate_accepted(
    tables: Mapping[str, pd.DataFrame],
    models: Mapping[str, FormModel],
    docs_dir: Path,
    *,
    name: str,
) -> GEResult:
    """Run each form's generated suite on its typed accepted root table; write Data Docs.

    ``tables`` maps form_id → typed root table (see :func:`dhsurvey.validate.types.to_typed`).
    Every GX store is in memory (an ephemeral context) and the only filesystem store is the
    Data Docs site rooted at ``docs_dir``, so nothing is written anywhere else and nothing is
    fetched over the network. ``name`` labels the run in Data Docs.
    """
    missing = sorted(set(tables) - set(models))
    if missing:
        raise KeyError(f"no form model for table(s): {', '.join(missing)}")
    docs_dir = Path(docs_dir).resolve()
    docs_dir.mkdir(parents=True, exist_ok=True)
    gx = _gx()
    try:
        from great_expectations.core.run_identifier import RunIdentifier
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

        config = DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
            data_docs_sites={_SITE: _site_config(docs_dir)},
            analytics_enabled=False,
            progress_bars=ProgressBarsConfig(globally=False),  # no tqdm noise in pipeline logs
        )
        context = gx.get_context(project_config=config, mode="ephemeral")
        source = context.data_sources.add_pandas(name=f"{name}-accepted")
        run_id = RunIdentifier(run_name=name, run_time=dt.datetime.now(dt.UTC))
        forms: dict[str, FormResult] = {}
        for form_id, table in tables.items():
            suite = context.suites.add(suite_for(models[form_id]))
            batch = source.add_dataframe_asset(name=form_id).add_batch_definition_whole_dataframe(
                name=f"{form_id}-whole")
            # One ValidationDefinition per form run directly (not one Checkpoint over all forms)
            # because a Checkpoint passes the same batch_parameters, i.e. the same DataFrame, to
            # every definition; each form has its own table.
            definition = context.validation_definitions.add(
                gx.ValidationDefinition(name=f"{name}-{form_id}", data=batch, suite=suite))
            outcome = definition.run(batch_parameters={"dataframe": table}, run_id=run_id,
                                     result_format=dict(RESULT_FORMAT))
            failed = [_label(r.expectation_config) for r in outcome.results if not r.success]
            stats = outcome.statistics
            forms[form_id] = FormResult(
                form_id=form_id, suite=suite.name, success=bool(outcome.success),
                evaluated=int(stats["evaluated_expectations"]),
                successful=int(stats["successful_expectations"]), failed=failed)
        context.build_data_docs(site_names=[_SITE])
    finally:
        logging.captureWarnings(False)
    return GEResult(success=all(f.success for f in forms.values()), forms=forms,
                    index=docs_dir / "index.html")
