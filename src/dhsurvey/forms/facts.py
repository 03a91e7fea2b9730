"""Study facts: what every stage needs to know about the study, read from the instruments.

The household ID, the consent gates, the final disposition codes and what they mean, and the
fields that identify an interview are declared once, in the XLSForm workbooks:

- settings ``instance_name``: the fields that identify an interview
  (:attr:`FormModel.instance_fields`);
- settings ``household_id``: the fields that identify the household an interview belongs to,
  declared by every form of a household (:attr:`FormModel.household_id`);
- settings ``consent_gates``: the permission, consent and assent questions; the answer that
  lets the interview go on is the one the form's own relevance requires
  (:attr:`FormModel.consent_gates`, :attr:`FormModel.consent_given`);
- choices column ``aapor`` on the household form's disposition list: the AAPOR category of
  each final disposition code (:attr:`FormModel.dispositions`);
- settings ``linked_to`` on a form of the household's members (child, caregiver): the household
  form it links to. Such a form may record its own interview result with the same ``aapor``
  column (not at home, refused, not eligible …): :meth:`StudyFacts.completed` and
  :meth:`StudyFacts.results` read it.

:class:`StudyFacts` puts the forms of a study together (the household ID every form shares,
the household form, the forms linked to it); :func:`gates_passed` and :func:`gates_refused`
are the one reading of consent gates in a table. Weighting, validation, quality checks and
the simulator ask here instead of keeping a list of their own.

A stage called without the study's form models reads the study's own instruments
(:func:`instruments_dir`): ``$DHSURVEY_INSTRUMENTS``, else ``./instruments``, else the
instruments of this source tree.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from functools import cache, cached_property
from pathlib import Path

import pandas as pd

from dhsurvey.errors import FormError
from dhsurvey.forms.model import AAPOR_CATEGORIES, Disposition, FormModel, load_form

#: What a stage accepts as the study: form models by form id, form models, or the facts.
Models = Mapping[str, FormModel] | Iterable[FormModel]


#: Settings column of a form whose interviews belong to a household another form records.
LINKED_TO_SETTING = "linked_to"


def is_linked(model: FormModel) -> bool:
    """Whether the form's interviews belong to a household the household form records: it
    declares a household ID and either says so (settings ``linked_to``) or records no final
    disposition of its own."""
    if not model.household_id:
        return False
    return bool(model.settings.get(LINKED_TO_SETTING)) or model.disposition_field is None


class StudyFacts:
    """The study facts of a set of forms (form id → :class:`FormModel`).

    Forms that identify households differently are an error (raised here, on creation).
    """

    def __init__(self, models: Models) -> None:
        items = models.values() if isinstance(models, Mapping) else models
        self.models: dict[str, FormModel] = {m.form_id: m for m in items}
        self.household_id  # noqa: B018 - checked once, on creation

    def __repr__(self) -> str:
        return f"StudyFacts({', '.join(self.models)})"

    def model(self, form: str) -> FormModel | None:
        return self.models.get(form)

    # -- households --------------------------------------------------------------------------
    @cached_property
    def household_id(self) -> tuple[str, ...]:
        """The fields every form of a household declares to identify it (``household_id``);
        empty when no form declares one. Forms that disagree are an error."""
        declared = {f: m.household_id for f, m in self.models.items() if m.household_id}
        ids = set(declared.values())
        if len(ids) > 1:
            first = next(iter(declared.values()))
            other = next(f for f, v in declared.items() if v != first)
            raise FormError(
                f"forms identify households differently: {declared}", code="household-id-invalid",
                file=self.models[other].path, sheet="settings", column="household_id")
        return next(iter(ids), ())

    @cached_property
    def household_form(self) -> str | None:
        """The form that records the household's final disposition (the screener)."""
        return next((f for f, m in self.models.items()
                     if m.disposition_field and not is_linked(m)), None)

    @cached_property
    def linked_forms(self) -> tuple[str, ...]:
        """Forms of a household other than the household form: their interviews must link
        to a household the household form recorded."""
        return tuple(f for f, m in self.models.items() if is_linked(m))

    # -- dispositions ------------------------------------------------------------------------
    @property
    def disposition(self) -> str | None:
        """The household form's final disposition field."""
        form = self.household_form
        return self.models[form].disposition_field if form else None

    @property
    def dispositions(self) -> dict[str, Disposition]:
        """Disposition code → label and AAPOR category (empty without a household form)."""
        form = self.household_form
        return self.models[form].dispositions if form else {}

    def codes(self, *categories: str) -> tuple[str, ...]:
        """The disposition codes of the given AAPOR categories, in list order."""
        unknown = set(categories) - set(AAPOR_CATEGORIES)
        if unknown:
            raise ValueError(f"not AAPOR categories: {sorted(unknown)}")
        form = self.household_form
        return self.models[form].disposition_codes(*categories) if form else ()

    @property
    def aapor_mapping(self) -> dict[str, str]:
        """Disposition code → AAPOR category."""
        return {code: d.aapor for code, d in self.dispositions.items()}

    # -- interviews --------------------------------------------------------------------------
    def instance_fields(self, form: str) -> tuple[str, ...]:
        model = self.models.get(form)
        return model.instance_fields if model else ()

    def result_field(self, form: str) -> str | None:
        """The question recording a linked form's own interview result (codes with an AAPOR
        category), or None."""
        model = self.models.get(form)
        return model.disposition_field if model is not None and is_linked(model) else None

    def results(self, table: pd.DataFrame, form: str) -> pd.Series:
        """The AAPOR category of each interview's recorded result (NA where none is recorded
        or the form records none)."""
        field = self.result_field(form)
        if field is None or field not in table.columns:
            return pd.Series(pd.NA, index=table.index, dtype="string")
        model = self.models[form]
        mapping = {float(c): d.aapor for c, d in model.dispositions.items()}
        codes = pd.to_numeric(table[field], errors="coerce")
        return codes.map(mapping).astype("string")

    def completed(self, table: pd.DataFrame, form: str) -> pd.Series:
        """Interviews that took place: every consent gate passed and, where the form records
        its own result, a complete or partial one (a child found not aged 12 to 17 is not an
        interview of the study)."""
        done = gates_passed(table, self.gates(form))
        if self.result_field(form) in table.columns:
            done &= self.results(table, form).isin(["I", "P"]).fillna(False).astype(bool)
        return done

    def gates(self, form: str) -> dict[str, str | None]:
        """The form's consent gates (in form order) → the answer that lets it go on."""
        model = self.models.get(form)
        return model.consent_given if model else {}

    @cached_property
    def all_gates(self) -> dict[str, str | None]:
        """Every form's consent gates → their answer (for a table whose form is not known)."""
        out: dict[str, str | None] = {}
        for model in self.models.values():
            for gate, given in model.consent_given.items():
                out.setdefault(gate, given)
        return out


def study_facts(models: Models | StudyFacts | None = None) -> StudyFacts:
    """The facts of ``models``; without models, of the study's instruments."""
    if isinstance(models, StudyFacts):
        return models
    if models is None:
        return _instrument_facts(instruments_dir().resolve())
    return StudyFacts(models)


def instruments_dir() -> Path:
    """The study's instruments: ``$DHSURVEY_INSTRUMENTS``, else ``./instruments``, else the
    ``instruments`` folder of this source tree."""
    if os.environ.get("DHSURVEY_INSTRUMENTS"):
        return Path(os.environ["DHSURVEY_INSTRUMENTS"])
    here = Path("instruments")
    if here.is_dir():
        return here
    source = Path(__file__).resolve().parents[3] / "instruments"
    return source if source.is_dir() else here


@cache
def _instrument_facts(folder: Path) -> StudyFacts:
    from dhsurvey.forms.compile import instrument_paths

    if not folder.is_dir():
        raise FormError("the study's instruments were not found: pass the form models, or set "
                        "DHSURVEY_INSTRUMENTS", code="file-missing", file=folder)
    return StudyFacts([load_form(p) for p in instrument_paths(folder)])


# -- consent gates in a table --------------------------------------------------------------------


def _answered(values: pd.Series) -> pd.Series:
    present = values.notna()
    if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
        present &= values.astype("string").str.strip().fillna("") != ""
    return present.astype(bool)


def _is_code(values: pd.Series, code: str | None) -> pd.Series:
    """Whether each answer is ``code`` (numbers compared as numbers: 1, "1" and 1.0 alike)."""
    if code is None:
        return pd.Series(False, index=values.index)
    try:
        number = float(code)
    except ValueError:
        return (values.astype("string").str.strip() == code).fillna(False).astype(bool)
    return pd.to_numeric(values, errors="coerce").eq(number).fillna(False).astype(bool)


def _present(table: pd.DataFrame, gates: Mapping[str, str | None]) -> list[str]:
    return [g for g in gates if g in table.columns]


def gates_asked(table: pd.DataFrame, gates: Mapping[str, str | None]) -> pd.Series:
    """Rows where the first consent gate (of those in ``table``) was answered."""
    present = _present(table, gates)
    if not present:
        return pd.Series(False, index=table.index)
    return _answered(table[present[0]])


def gates_passed(table: pd.DataFrame, gates: Mapping[str, str | None]) -> pd.Series:
    """Rows where every consent gate in ``table`` has the answer that lets the interview go
    on (True for every row when ``table`` holds none of them)."""
    done = pd.Series(True, index=table.index)
    for gate in _present(table, gates):
        done &= _is_code(table[gate], gates[gate])
    return done


def gates_refused(table: pd.DataFrame, gates: Mapping[str, str | None]) -> pd.Series:
    """Rows where some consent gate was answered with anything but the answer that lets the
    interview go on (refused permission, consent or assent)."""
    refused = pd.Series(False, index=table.index)
    for gate in _present(table, gates):
        refused |= _answered(table[gate]) & ~_is_code(table[gate], gates[gate])
    return refused
