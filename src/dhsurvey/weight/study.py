"""The study's weights: from recorded selection probabilities to calibrated child and
caregiver weights, with replicate weights for every weighted form.

Steps (DHS/MICS practice, with the study's choices stated):

1. **Household design weight** = 1 / (P(PSU) × P(household | PSU)), read from the sample file
   written at selection (``design/households.parquet``), never recomputed.
2. **Household nonresponse**: vacant or non-dwelling units (AAPOR category NE of the household
   form's disposition list: 6) are *not eligible* and leave the sample; every other selected
   household is eligible. Respondents are completed screeners (category I: 1 complete with an
   eligible child, 5 no eligible child). A selected household with no accepted record
   (refused, not contacted, quarantined) is a non-respondent of known eligibility. Adjustment
   within strata (region × urban/rural), collapsing small classes. Households are matched on
   the household ID the forms declare (``household_id``: cluster, hh_number).
3. **Child design weight** = adjusted household weight × number of eligible children (one child
   is drawn at random among them).
4. **Child nonresponse** among selected children, within classes urban/rural × sex × age group
   of the selected child (known from the roster for respondents and non-respondents alike).
   A respondent passed the child form's consent gates (caregiver permission and assent) and
   has a complete or partial result; a selected child found not aged 12–17 leaves the sample.
   Classes need 20 respondents (fewer, at
   least 3, in samples under 200 respondents) and a factor ≤ 3, else they are collapsed.
5. **Calibration** (raking) of the child weights to the country's margins (sex, age group,
   urban/rural: population totals of internet-using children, source in the country file),
   then trimming at 3.5 × the median weight with re-raking (cap → redistribute → re-rake), the
   Kish design effect reported before and after. Expansion weights estimate totals; normalised
   weights (mean 1) are for pooled analyses of proportions.
6. **Caregivers** (a documented choice): a caregiver represents "the main caregiver of an
   internet-using child aged 12–17". The caregiver's weight starts from the child design weight
   of the selected child, is adjusted for caregiver nonresponse (a respondent passed the
   caregiver form's consent gate) in the same classes, and is raked to the same child margins
   and trimmed as the child weights are (3.5 × the caregivers' median, cap → redistribute →
   re-rake), the Kish design effect reported before and after.
7. **Frontline workers** are not a probability sample: no weight is produced; their tables are
   released unweighted and say so.

Variance: strata = region × urban/rural, PSU = cluster; JKn replicate weights accompany the
release for users without Taylor-linearisation software, for every weighted form — one per PSU,
or per group of PSUs when the country's ``max_replicates`` (default 200) would be exceeded. The
child and caregiver replicates are re-raked to the margins per replicate; the household ones
are not (household weights are nonresponse-adjusted, not calibrated).

The child and caregiver weight tables carry the margin variables (``config.margins``: the
selected child's roster sex and age group, the household's urban/rural) with the values each
weight was calibrated with, so that users can rake the design again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dhsurvey.errors import DhsurveyError
from dhsurvey.fieldwork.config import CountryConfig
from dhsurvey.forms.facts import Models, StudyFacts, study_facts
from dhsurvey.weight.calibrate import TrimResult, kish_deff, normalise, trim
from dhsurvey.weight.nonresponse import nonresponse_adjust
from dhsurvey.weight.variance import Design, variance_units

#: Replicate weight columns: rep_001, rep_002, … (rep_1000 after rep_999).
REPLICATE = re.compile(r"^rep_(\d+)$")


def replicate_names(count: int) -> list[str]:
    """The names of ``count`` replicate weight columns, in order."""
    return [f"rep_{i:03d}" for i in range(1, count + 1)]


#: The forms weighted, in :func:`study_weights`' argument order.
WEIGHTED = ("household", "child", "caregiver")
#: The household form's answers the weights read besides the household ID and disposition:
#: eligible children, and the selected child's sex and age (the nonresponse classes).
SELECTION = ("n_eligible", "sel_sex", "sel_age")


def input_columns(models: Models | StudyFacts | None = None) -> dict[str, list[str]]:
    """The answers the weights read from each form's accepted table (nothing else is needed):
    the household ID, ``KEY``, and the household's disposition and selected child, or the
    interview's consent gates. ``models``: the study's forms (default: its instruments)."""
    facts = study_facts(models)
    household, child, caregiver = WEIGHTED
    if facts.disposition is None or not facts.household_id:
        raise DhsurveyError("the forms declare no household ID or final disposition list",
                            code="weights-forms")
    ids = [*facts.household_id, "KEY"]
    return {household: [*ids, facts.disposition, *SELECTION],
            child: [*ids, *facts.gates(child), *_result(facts, child)],
            caregiver: [*ids, *facts.gates(caregiver), *_result(facts, caregiver)]}


def _in(frame: pd.DataFrame, other: pd.DataFrame, ids: list[str]) -> np.ndarray:
    """Rows of ``frame`` whose household ID appears in ``other``."""
    if other.empty:
        return np.zeros(len(frame), dtype=bool)
    keys = pd.MultiIndex.from_frame(other[ids])
    return pd.MultiIndex.from_frame(frame[ids]).isin(keys)


def _result(facts: StudyFacts, form: str) -> list[str]:
    field = facts.result_field(form)
    return [field] if field else []


def __getattr__(name: str) -> object:
    # INPUT_COLUMNS: the study's instruments' input_columns(), for callers that pass no models.
    if name == "INPUT_COLUMNS":
        return input_columns()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def age_group(age: pd.Series) -> pd.Series:
    """1 = 12–14, 2 = 15–17 (the margins' age groups)."""
    a = pd.to_numeric(age, errors="coerce")
    return pd.Series(np.where(a <= 14, 1, 2), index=age.index).where(a.notna())


@dataclass
class StudyWeights:
    """Weights per form (KEY-indexed tables) and the numbers a weighting report quotes."""

    child: pd.DataFrame
    caregiver: pd.DataFrame
    household: pd.DataFrame
    summary: dict = field(default_factory=dict)
    #: The child replicate design, kept in factor form (``dense_replicates=False``): the same
    #: as ``designs["child"]``, kept for the callers that read it.
    replicates: Design | None = None
    #: Each weighted form's replicate design in factor form (``dense_replicates=False``).
    designs: dict[str, Design] = field(default_factory=dict)
    #: Per form: (the table's id, its length, its KEYs as an index), built once per table.
    _index: dict[str, tuple[int, int, pd.Index]] = field(default_factory=dict, init=False,
                                                         repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.replicates is None:
            self.replicates = self.designs.get("child")
        elif "child" not in self.designs:
            self.designs = {**self.designs, "child": self.replicates}

    def replicates_for(self, form: str, keys: pd.Series | pd.Index | np.ndarray
                       ) -> pd.DataFrame:
        """``rep_NNN`` columns for the records ``keys`` (KEYs, in that order) of ``form``
        ("household", "child" or "caregiver").

        With ``dense_replicates=False`` the weight tables carry no replicate columns: a
        release written in batches asks for each batch's rows here instead. Without replicate
        weights (``replicates=False``) the frame has no columns.
        """
        if form not in WEIGHTED:
            raise DhsurveyError(f"no weights for form {form!r}", code="weights-replicates",
                                form=form)
        table: pd.DataFrame = getattr(self, form)
        # Weights pickled before every form had replicates lack the per-form attributes.
        cache: dict = self.__dict__.setdefault("_index", {})
        cached = cache.get(form)
        if cached is None or cached[0] != id(table) or cached[1] != len(table):
            cached = (id(table), len(table), pd.Index(table["KEY"].tolist()))  # once per table
            cache[form] = cached
        positions = cached[2].get_indexer(pd.Index(list(keys)))
        if (positions < 0).any():
            raise DhsurveyError(f"replicate weights asked for a {form} record without a weight",
                                code="weights-replicates", form=form)
        designs = getattr(self, "designs", None) or {}
        design = designs.get(form, self.replicates if form == "child" else None)
        if design is None:
            names = [c for c in table.columns if REPLICATE.match(str(c))]
            return table[names].iloc[positions].reset_index(drop=True)
        reps = design.replicate_weights(positions).reset_index(drop=True)
        reps.columns = replicate_names(reps.shape[1])
        return reps

    def child_replicates(self, keys: pd.Series | pd.Index | np.ndarray) -> pd.DataFrame:
        """``rep_NNN`` columns for the child interviews ``keys``
        (:meth:`replicates_for` the child form)."""
        return self.replicates_for("child", keys)


def _min_class(respondents: int) -> int:
    """Respondents a nonresponse class needs: 20, fewer only for small (pilot, demo) samples."""
    return max(3, min(20, respondents // 10))


def _ids(table: pd.DataFrame, household_id: list[str]) -> pd.DataFrame:
    return table.assign(**{c: pd.to_numeric(table[c], errors="coerce").astype("Int64")
                           for c in household_id})


def _weight_table(frame: pd.DataFrame, keys: pd.Series, stages: dict[str, pd.Series],
                  final: pd.Series, margins: Iterable[str] = ()) -> pd.DataFrame:
    """KEY, stratum, cluster, the margin variables (``margins``, as nullable integers), the
    weights of each stage and the final weight with its normalised form."""
    out = pd.DataFrame({"KEY": keys.to_numpy(), "stratum": frame["stratum"].to_numpy(),
                        "cluster": frame["cluster"].to_numpy()})
    for name in margins:
        out[name] = _margin_values(frame[name], name)
    for name, values in stages.items():
        out[name] = values.to_numpy()
    out["weight"] = final.to_numpy()
    out["weight_norm"] = normalise(final).to_numpy()
    return out


def _margin_values(values: pd.Series, name: str) -> pd.api.extensions.ExtensionArray:
    """A margin variable's values as nullable integers (the codes a weight was raked with)."""
    try:
        return pd.to_numeric(values, errors="raise").astype("Int64").array
    except (TypeError, ValueError) as exc:
        raise DhsurveyError(f"margin variable {name!r} is not coded as integers",
                            code="weights-margin", field=name) from exc


def _codes(values: pd.Series, codes: tuple[str, ...]) -> pd.Series:
    """Whether each disposition is one of ``codes`` (the workbook's codes, compared as
    numbers)."""
    return pd.to_numeric(values, errors="coerce").isin([float(c) for c in codes])


def study_weights(design: pd.DataFrame, household: pd.DataFrame, child: pd.DataFrame,
                  caregiver: pd.DataFrame, config: CountryConfig, *,
                  replicates: bool = True, dense_replicates: bool = True,
                  models: Models | StudyFacts | None = None) -> StudyWeights:
    """Compute household, child and caregiver weights for one country (see module doc).

    ``design``: the sample's households with ``psu_prob``, ``hh_prob``, ``stratum`` and the
    household ID; the others are accepted (typed) root tables, of which only the columns the
    weights need (:func:`input_columns`) are read. ``replicates``: JKn replicate weights for
    every weighted form. ``dense_replicates=False`` keeps them out of the tables (a design per
    form instead, see :meth:`StudyWeights.replicates_for`): dense columns take 8 bytes × rows ×
    replicates, 1.6 GB for a million households and 200 replicates.
    ``models``: the study's forms, for the household ID, dispositions and consent gates
    (default: the study's instruments).
    """
    facts = study_facts(models)
    columns = input_columns(facts)
    form_hh, form_child, form_cg = WEIGHTED
    ids = list(facts.household_id)
    missing = [c for c in ("psu_prob", "hh_prob", "stratum", *ids) if c not in design]
    if missing:
        raise DhsurveyError(f"sample design lacks column(s) {missing}", code="weights-design",
                            country=config.iso)
    hh = _ids(design, ids)
    hh["design_weight"] = 1.0 / (hh["psu_prob"] * hh["hh_prob"])
    answers = _ids(household[columns[form_hh]], ids)
    hh = hh.merge(answers.drop_duplicates(ids), on=ids, how="left")
    del answers
    disposition = hh[facts.disposition]
    eligible = ~_codes(disposition, facts.codes("NE"))
    hh["respondent"] = _codes(disposition, facts.codes("I"))
    hh_nr = nonresponse_adjust(hh[eligible], "design_weight", "respondent", ["stratum"],
                               min_respondents=_min_class(int(hh["respondent"].sum())))
    hh["hh_weight"] = hh_nr.weights.reindex(hh.index).fillna(0.0)
    hh_resp = hh[hh["respondent"]]
    household_table = _weight_table(hh_resp, hh_resp["KEY"], {
        "design_weight": hh_resp["design_weight"]}, hh_resp["hh_weight"])
    households = {"selected": int(len(hh)), "eligible": int(eligible.sum()),
                  "respondents": int(hh["respondent"].sum()),
                  "classes_collapsed": list(hh_nr.log)}
    del hh_resp, disposition, eligible, hh_nr

    # Selected children: one per responding household with eligible children. From here on
    # only the columns the child and caregiver weights read are kept (a frame per stage of
    # millions of households would otherwise stay in memory to the end).
    classes = ["urban_rural", "sex", "age_group"]
    n_eligible = pd.to_numeric(hh["n_eligible"], errors="coerce").fillna(0)
    chosen = hh["respondent"] & (n_eligible > 0)
    sel = hh.loc[chosen, [c for c in hh.columns if c in {*ids, "stratum", *classes,
                                                         *config.margins}]].copy()
    sel["child_design_weight"] = hh.loc[chosen, "hh_weight"] * n_eligible[chosen]
    sel["sex"] = pd.to_numeric(hh.loc[chosen, "sel_sex"], errors="coerce")
    sel["age_group"] = age_group(hh.loc[chosen, "sel_age"])
    del hh, n_eligible, chosen
    ch = _ids(child[columns[form_child]], ids)
    done = ch[facts.completed(ch, form_child).to_numpy()]
    sel = sel.merge(done[[*ids, "KEY"]].rename(columns={"KEY": "child_key"})
                    .drop_duplicates(ids), on=ids, how="left")
    # A selected child found not eligible (aged outside 12-17 after all) leaves the sample,
    # as a household found not eligible does: no other child stands in for them.
    found_ineligible = ch[facts.results(ch, form_child).eq("NE").fillna(False).to_numpy()]
    sel = sel[~_in(sel, found_ineligible, ids)]
    del ch, done
    sel["child_respondent"] = sel["child_key"].notna()
    child_nr = nonresponse_adjust(sel, "child_design_weight", "child_respondent", classes,
                                  min_respondents=_min_class(int(sel["child_respondent"].sum())))
    sel["child_nr_weight"] = child_nr.weights
    resp = sel[sel["child_respondent"]].copy()
    margins = config.margins
    trimmed = trim(resp, "child_nr_weight", margins)
    resp["weight"] = trimmed.weights
    achieved = _achieved(resp, "weight", margins)
    child_table = _weight_table(resp, resp["child_key"], {
        "design_weight": resp["child_design_weight"], "nr_weight": resp["child_nr_weight"]},
        resp["weight"], margins)
    children = {"selected": int(len(sel)), "respondents": int(len(resp)),
                "classes_collapsed": list(child_nr.log)}
    deff_child = kish_deff(resp["weight"])
    trim_child = _trim_summary(trimmed)
    del resp, trimmed

    cg = _ids(caregiver[columns[form_cg]], ids)
    cg_done = cg[facts.completed(cg, form_cg).to_numpy()]
    sel_cg = sel.merge(cg_done[[*ids, "KEY"]].rename(columns={"KEY": "cg_key"})
                       .drop_duplicates(ids), on=ids, how="left")
    del sel, cg, cg_done
    sel_cg["cg_respondent"] = sel_cg["cg_key"].notna()
    cg_nr = nonresponse_adjust(sel_cg, "child_design_weight", "cg_respondent", classes,
                               min_respondents=_min_class(int(sel_cg["cg_respondent"].sum())))
    sel_cg["cg_nr_weight"] = cg_nr.weights
    cg_resp = sel_cg[sel_cg["cg_respondent"]].copy()
    del sel_cg
    cg_trimmed = trim(cg_resp, "cg_nr_weight", margins)
    caregiver_table = _weight_table(cg_resp, cg_resp["cg_key"], {
        "design_weight": cg_resp["child_design_weight"], "nr_weight": cg_resp["cg_nr_weight"]},
        cg_trimmed.weights, margins)
    caregivers = {"respondents": int(len(cg_resp)), "classes_collapsed": list(cg_nr.log)}
    trim_caregiver = _trim_summary(cg_trimmed)
    deff_caregiver = kish_deff(cg_trimmed.weights)
    del cg_resp, cg_trimmed

    # Replicates from the weight tables alone (the stages' frames are gone by now); a table
    # with replicate columns replaces the one without.
    tables = {form_hh: household_table, form_child: child_table, form_cg: caregiver_table}
    del household_table, child_table, caregiver_table
    replicate_info: dict[str, dict] = {}
    designs: dict[str, Design] = {}
    for form in WEIGHTED:
        if not replicates:
            replicate_info[form] = {"method": "none requested"}
            continue
        tables[form], replicate_info[form], rep_design = _with_replicates(
            tables[form], None if form == form_hh else margins, config.max_replicates,
            dense=dense_replicates)
        if rep_design is not None:
            designs[form] = rep_design
        del rep_design
    summary = {
        "country": config.iso,
        "households": households,
        "children": children,
        "caregivers": caregivers,
        "trim": trim_child,
        "trim_caregiver": trim_caregiver,
        "deff_child": deff_child,
        "deff_caregiver": deff_caregiver,
        "replicates": replicate_info[form_child],
        "replicates_by_form": replicate_info,
        "margins": achieved,
        "margins_source": config.margins_source,
        "frontline_workers": "not a probability sample: released unweighted",
    }
    return StudyWeights(tables[form_child], tables[form_cg], tables[form_hh], summary,
                        designs.get(form_child), designs)


def _trim_summary(trimmed: TrimResult) -> dict:
    """What the weighting report quotes of a trimming."""
    return {"cap": trimmed.cap, "trimmed": trimmed.n_trimmed, "rounds": trimmed.rounds,
            "deff_before": trimmed.deff_before, "deff_after": trimmed.deff_after}


def _achieved(frame: pd.DataFrame, weight: str, margins: dict) -> dict:
    """Target and achieved total per margin level (relative difference asserted < 1e-8)."""
    out = {}
    for column, levels in margins.items():
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values):
            values = values.map(lambda v: str(int(v)) if pd.notna(v) and float(v).is_integer()
                                else str(v))
        sums = frame.groupby(values.astype(str))[weight].sum()
        for level, target in levels.items():
            got = float(sums.get(str(level), 0.0))
            if abs(got - target) > 1e-8 * max(1.0, target):
                raise DhsurveyError(f"margin {column}={level} achieved {got} ≠ {target}",
                                    code="weights-margin", field=column)
            out[f"{column}={level}"] = {"target": target, "achieved": got}
    return out


def _with_replicates(table: pd.DataFrame, margins: dict | None, max_replicates: int, *,
                     dense: bool = True) -> tuple[pd.DataFrame, dict, Design | None]:
    """JKn replicate weights of a weight table, one per variance unit, each re-raked to
    ``margins`` (the table's margin variables) or, without margins, not re-raked (household
    weights are nonresponse-adjusted, not calibrated).

    A variance unit is a PSU, or a group of a stratum's PSUs when the strata hold more PSUs
    than ``max_replicates`` allows (:func:`~dhsurvey.weight.variance.variance_units`): the
    number of replicate columns then stays fixed however large the sample grows. A replicate
    that drops every respondent of a margin level cannot be raked (small pilot or demo
    samples); the replicates are then left un-raked and the note says so. Returns the table
    with ``variance_unit`` and ``rep_NNN`` columns, and what a user needs to compute variances:
    method, scale and the per-replicate multiplier (``rscales``). ``dense=False``: no
    ``rep_NNN`` columns; the design that generates them is returned instead (it holds only
    the weight, stratum, variance unit and margin variables).
    """
    stratum = table["stratum"].astype(str)
    cluster = table["cluster"].astype(int)
    n_strata = stratum.nunique()
    per_stratum = max(2, max_replicates // max(n_strata, 1))
    grouped = bool((cluster.groupby(stratum).nunique() > per_stratum).any())
    data = pd.DataFrame({"weight": table["weight"].to_numpy(), "stratum": stratum.to_numpy(),
                         "variance_unit": variance_units(stratum, cluster, per_stratum)})
    del stratum, cluster
    unit = (f"groups of PSUs (at most {per_stratum} per stratum)" if grouped
            else "one replicate per PSU")
    if margins is None:
        note = (f"JKn, {unit}, not re-raked: household weights are nonresponse-adjusted, "
                "not calibrated")
        design = Design.jkn(data, "weight", strata="stratum", psu="variance_unit",
                            lonely_psu="adjust")
    else:
        for name in margins:
            data[name] = table[name].array
        note = f"JKn, {unit}, each re-raked to the margins"
        try:
            # From the final (trimmed, raked) weights: re-raking them leaves the full sample
            # unchanged, so the replicates vary around the published estimate.
            design = Design.jkn(data, "weight", strata="stratum", psu="variance_unit",
                                calibrated_on=margins, lonely_psu="adjust")
        except DhsurveyError as exc:
            design = Design.jkn(data, "weight", strata="stratum", psu="variance_unit",
                                lonely_psu="adjust")
            note = f"JKn, {unit}, not re-raked ({exc.message})"
    scale, rscales = design.replicate_scales
    out = table.reset_index(drop=True).assign(variance_unit=data["variance_unit"].to_numpy())
    info = {"method": "JKn", "note": note, "count": int(design.n_replicates),
            "grouped_psus": grouped, "units_per_stratum": per_stratum, "scale": scale,
            "rscales": [float(r) for r in rscales]}
    if not dense:
        return out, info, design
    reps = design.replicate_weights()
    reps.columns = replicate_names(reps.shape[1])
    return pd.concat([out, reps.reset_index(drop=True)], axis=1), info, None
