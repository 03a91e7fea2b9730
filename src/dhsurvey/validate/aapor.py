"""AAPOR Standard Definitions outcome rates from final dispositions.

Response, cooperation, refusal and contact rates are what funders and reviewers compare across
surveys, so they follow the AAPOR formulas exactly (Standard Definitions, in-person household
surveys). Each final case falls in one category; the household form declares which, in the
``aapor`` column of its disposition choice list (:attr:`FormModel.dispositions
<dhsurvey.forms.model.FormModel.dispositions>`). The study's instruments say:

====  ==========================================  ========================================
code  AAPOR category                              household form ``disposition`` codes
====  ==========================================  ========================================
I     complete interview                          1 complete, 5 no eligible child
P     partial interview                           2 partial
R     refusal and break-off                       3 refusal
NC    non-contact                                 4 non-contact
O     other (eligible, not interviewed)           7 other
UH    unknown if household / occupied             none by default (see ``mapping``)
UO    unknown, other                              none by default
NE    not eligible                                6 vacant / not a dwelling
====  ==========================================  ========================================

The household interview is a screener: "no eligible child" (5) means the household was found,
agreed and answered the roster, so it is a completed interview (I) at the household level; its
ineligibility concerns the child interview, not the household. A study that records unknown
eligibility (e.g. a dwelling never reached) gives that code the category UH in the workbook
(or passes a ``mapping``).
Missing or unmapped codes are counted in ``unmapped`` and enter no rate.

With T = (I+P) + (R+NC+O), U = UH+UO:

- RR1 = I / (T + U);            RR2 = (I+P) / (T + U)
- RR3 = I / (T + e·U);          RR4 = (I+P) / (T + e·U)
- RR5 = I / T;                  RR6 = (I+P) / T
- COOP1 = I / ((I+P)+R+O);      COOP2 = (I+P) / ((I+P)+R+O)
- COOP3 = I / ((I+P)+R);        COOP4 = (I+P) / ((I+P)+R)
- REF1 = R / (T + U);           REF2 = R / (T + e·U);       REF3 = R / T
- CON1 = ((I+P)+R+O) / (T + U); CON2 = ((I+P)+R+O) / (T + e·U); CON3 = ((I+P)+R+O) / T

``e`` (the share of unknown-eligibility cases assumed eligible) defaults to the share eligible
among cases of known eligibility, T / (T + NE), estimated once over all cases and applied to
every group: strata hold few NE cases, and a per-stratum estimate would make their RR3 noisy
and not comparable. A rate whose denominator is 0 is NaN.

Child interview (:func:`child_rates`), among the eligible children selected in households:
where the child form records the interview's result, its ``aapor`` column decides (the
study's: 1 completed I, 2 partly completed P, 3 caregiver refused and 4 child refused R,
5 not at home NC, 6 unable to take part and 96 other O, 7 found not aged 12–17 NE). Without
a recorded result: I = permission and assent given and the interview not stopped; P = stopped
under the distress protocol (answers before the stop are kept); R = caregiver permission or
child assent refused; O = permission/assent not recorded. Either way NC = selected child with
no child interview (never reached). Permission and assent are the child form's consent gates
(:attr:`FormModel.consent_gates <dhsurvey.forms.model.FormModel.consent_gates>`); households
and children are matched on the household ID the forms declare.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from dhsurvey.forms.facts import Models, StudyFacts, gates_passed, gates_refused, study_facts
from dhsurvey.forms.model import AAPOR_CATEGORIES

CATEGORIES = AAPOR_CATEGORIES
#: The child interview: the form whose consent gates and answers :func:`child_dispositions`
#: reads.
CHILD_FORM = "child"
RATES = ("RR1", "RR2", "RR3", "RR4", "RR5", "RR6", "COOP1", "COOP2", "COOP3", "COOP4",
         "REF1", "REF2", "REF3", "CON1", "CON2", "CON3")
ALL = "all"


def _div(num: float, den: float) -> float:
    return float(num) / float(den) if den else float("nan")


def default_e(counts: Mapping[str, float]) -> float:
    """Share eligible among cases of known eligibility: (I+P+R+NC+O) / (that + NE)."""
    eligible = sum(counts[c] for c in ("I", "P", "R", "NC", "O"))
    return _div(eligible, eligible + counts["NE"])


def _rates(c: Mapping[str, float], e: float) -> dict[str, float]:
    i, p, r, nc, o = c["I"], c["P"], c["R"], c["NC"], c["O"]
    u = c["UH"] + c["UO"]
    t = (i + p) + (r + nc + o)
    eu = e * u if u else 0.0  # no unknowns: RR3 = RR5 whatever e is (even NaN)
    contacted = (i + p) + r + o
    return {
        "RR1": _div(i, t + u), "RR2": _div(i + p, t + u),
        "RR3": _div(i, t + eu), "RR4": _div(i + p, t + eu),
        "RR5": _div(i, t), "RR6": _div(i + p, t),
        "COOP1": _div(i, contacted), "COOP2": _div(i + p, contacted),
        "COOP3": _div(i, (i + p) + r), "COOP4": _div(i + p, (i + p) + r),
        "REF1": _div(r, t + u), "REF2": _div(r, t + eu), "REF3": _div(r, t),
        "CON1": _div(contacted, t + u), "CON2": _div(contacted, t + eu),
        "CON3": _div(contacted, t),
    }


def _counts(categories: pd.Series) -> dict[str, int]:
    counts = categories.value_counts(dropna=True)
    out = {c: int(counts.get(c, 0)) for c in CATEGORIES}
    out["unmapped"] = int(categories.isna().sum())
    return out


def rates_from_categories(categories: pd.Series, *, by: pd.Series | None = None,
                          e: float | None = None, by_name: str | None = None) -> pd.DataFrame:
    """Rates from AAPOR categories (I, P, R, NC, O, UH, UO, NE; NA = unmapped).

    One row for all cases (group ``"all"``) then one per group of ``by`` in sorted order.
    """
    # The stubs reject other=None, which pandas accepts.
    categories = categories.astype("object").where(  # type: ignore[call-overload]
        categories.isin(CATEGORIES), None)
    overall = _counts(categories)
    e_used = default_e(overall) if e is None else float(e)
    name = by_name or (str(by.name) if by is not None and by.name is not None else "group")
    rows = [{name: ALL, "n": len(categories), **overall, "e": e_used,
             **_rates(overall, e_used)}]
    if by is not None:
        keys = by.reindex(categories.index)
        for value in sorted(keys.dropna().unique(), key=str):
            counts = _counts(categories[(keys == value).to_numpy()])
            rows.append({name: str(value), "n": sum(counts.values()), **counts, "e": e_used,
                         **_rates(counts, e_used)})
    out = pd.DataFrame(rows)
    out[name] = out[name].astype("string")
    for col in ("n", *CATEGORIES, "unmapped"):
        out[col] = out[col].astype("int64")
    return out


def rates(dispositions: pd.Series, *, by: pd.Series | None = None, e: float | None = None,
          mapping: Mapping[int | str, str] | None = None,
          models: Models | StudyFacts | None = None) -> pd.DataFrame:
    """AAPOR RR1–RR6, COOP1–4, REF1–3, CON1–3 with their counts, overall and per group.

    ``dispositions`` holds one final code per case (the household form's disposition);
    ``mapping`` sends codes to AAPOR categories (default: the categories the household form
    of ``models`` declares, else of the study's instruments). ``by`` (aligned on the same
    index, e.g. the stratum) adds a row per group. ``e`` defaults to :func:`default_e` over all
    cases; the value used is in column ``e``.
    """
    declared = study_facts(models).aapor_mapping if mapping is None else mapping
    lookup = {str(k): v for k, v in declared.items()}
    codes = pd.to_numeric(dispositions, errors="coerce")
    text = codes.map(lambda x: None if pd.isna(x) else str(int(x)) if float(x).is_integer()
                     else str(x))
    categories = text.map(lambda c: lookup.get(c) if c is not None else None)
    return rates_from_categories(categories, by=by, e=e)


def latest(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The last submission per unit (by ``submission_time``, then table order).

    A revisit or a resubmission replaces an earlier record, so the last one holds the final
    disposition; duplicates are listed by the quality checks, not counted twice here.
    """
    if not set(keys) <= set(table.columns):
        return table
    # Only the columns the order reads are sorted (the rows are then taken whole).
    read = list(dict.fromkeys([*keys, *(["submission_time"] if "submission_time" in table
                                        else [])]))
    order = table[read].reset_index(drop=False)
    if "submission_time" in order.columns:
        order = order.sort_values("submission_time", kind="stable", na_position="first")
    order = order.drop_duplicates(keys, keep="last").sort_values("index", kind="stable")
    return table.loc[order["index"].to_numpy()]


def _is(series: pd.Series, code: int) -> pd.Series:
    return pd.to_numeric(series, errors="coerce").eq(code).fillna(False).astype(bool)


def child_dispositions(households: pd.DataFrame, children: pd.DataFrame, *,
                       models: Models | StudyFacts | None = None) -> pd.Series:
    """AAPOR category of the child interview for each household that selected a child.

    Indexed like ``households`` (only the rows with a selected child). Households and child
    interviews are matched on the household ID; the last submission of each counts.
    ``models``: the study's forms (default: its instruments).
    """
    facts = study_facts(models)
    keys = list(facts.household_id)
    hh = latest(households, keys)
    if "sel_line" in hh.columns:
        selected = pd.to_numeric(hh["sel_line"], errors="coerce").notna()
    else:
        consent = facts.gates(facts.household_form or "")
        selected = gates_passed(hh, consent) & (pd.to_numeric(hh["n_eligible"],
                                                               errors="coerce") > 0)
    hh = hh[selected.to_numpy()]
    ch = latest(children, keys)
    ch_keys = pd.MultiIndex.from_frame(ch[keys].apply(pd.to_numeric, errors="coerce"))
    hh_keys = pd.MultiIndex.from_frame(hh[keys].apply(pd.to_numeric, errors="coerce"))
    pos = ch_keys.get_indexer(hh_keys)
    found = pos >= 0
    take = ch.iloc[np.where(found, pos, 0)] if len(ch) else ch.reindex(range(len(hh)))
    gates = facts.gates(CHILD_FORM)
    missing = [g for g in gates if g not in take.columns]
    if missing or not gates:
        raise ValueError(f"child interviews lack the consent gate column(s) {missing}"
                         if gates else "the child form declares no consent gates")
    refused = gates_refused(take, gates).to_numpy()
    given = gates_passed(take, gates).to_numpy()
    stopped = (_is(take["stop_int"], 1).to_numpy() if "stop_int" in take.columns
               else np.zeros(len(take), dtype=bool))
    # The interview's own result, where the form records one (not at home, not eligible …);
    # else what the consent gates and the distress stop tell.
    result = facts.results(take, CHILD_FORM).to_numpy(dtype=object)
    recorded = found & pd.notna(result)
    category = np.select(
        [~found, recorded, refused, given & stopped, given],
        ["NC", result, "R", "P", "I"], default="O")
    return pd.Series(category, index=hh.index, dtype="object", name="child_disposition")


def child_rates(households: pd.DataFrame, children: pd.DataFrame, *,
                by: pd.Series | None = None, e: float | None = None,
                models: Models | StudyFacts | None = None) -> pd.DataFrame:
    """AAPOR rates of the child interview among selected eligible children.

    ``households`` and ``children`` are root tables (typed or canonical); ``by`` is aligned
    on ``households``' index (e.g. the stratum). Categories: see the module docstring.
    """
    categories = child_dispositions(households, children, models=models)
    group = by.reindex(categories.index) if by is not None else None
    return rates_from_categories(categories, by=group, e=e,
                                 by_name=str(by.name) if by is not None and by.name else None)
