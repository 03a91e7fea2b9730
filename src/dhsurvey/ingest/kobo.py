"""KoboToolbox v2 data JSON (``/api/v2/assets/{uid}/data.json``) → canonical tables.

Kobo returns pages ``{count, next, previous, results}``; each result is a flat object keyed by
the full XML path (``hh_id/country``), answers as strings, empty answers left out, and a repeat
as a list of objects whose keys are again full paths. Bookkeeping keys start with ``_``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dhsurvey.errors import DhsurveyError
from dhsurvey.forms.frames import PARENT
from dhsurvey.forms.model import FormModel, Item
from dhsurvey.ingest.builder import TableBuilder, canonical_time, decode_utf8
from dhsurvey.ingest.canonical import RawForm, normalise, repeat_key
from dhsurvey.ingest.limits import JSON, read_file

log = logging.getLogger(__name__)

SOURCE_FORMAT = "kobo-json"
INSTANCE_ID_KEY = "meta/instanceID"
#: Kobo validation status uid ↔ Central review state (Central's "edited" has no counterpart).
VALIDATION_TO_REVIEW = {
    "validation_status_approved": "approved",
    "validation_status_not_approved": "rejected",
    "validation_status_on_hold": "hasIssues",
}
REVIEW_TO_VALIDATION = {v: k for k, v in VALIDATION_TO_REVIEW.items()}
VALIDATION_LABELS = {
    "validation_status_approved": "Approved",
    "validation_status_not_approved": "Not approved",
    "validation_status_on_hold": "On hold",
}
#: Non-underscore keys Kobo adds that are not form fields.
KNOWN_EXTRA = {"formhub/uuid", "__version__", "meta/instanceID", "meta/instanceName",
               "meta/rootUuid", "meta/deprecatedID"}


def full_path(item: Item) -> str:
    """Kobo's key for a field, group or repeat: every enclosing name from the root."""
    return "/".join((*item.path, item.name))


def _text(value: Any) -> str | None:
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return normalise(value)


def _load_page(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise DhsurveyError("export not found", code="export-missing", file=str(path))
    data = read_file(path, JSON)  # a page over DHSURVEY_MAX_JSON_MB is refused unread
    text = decode_utf8(data, path)
    del data
    if not text.strip():
        raise DhsurveyError("file is empty", code="export-empty", file=str(path))
    try:
        page = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DhsurveyError(f"not valid JSON: {exc.msg} on line {exc.lineno}, column {exc.colno}",
                            code="export-unreadable", file=str(path), line=exc.lineno) from None
    if not isinstance(page, dict) or not isinstance(page.get("results"), list):
        raise DhsurveyError(
            "not a KoboToolbox v2 data page (expected an object with a 'results' list, as "
            "returned by /api/v2/assets/<uid>/data.json)", code="export-shape", file=str(path))
    for number, result in enumerate(page["results"], start=1):
        if not isinstance(result, dict):
            raise DhsurveyError(f"result {number} is not an object", code="export-shape",
                                file=str(path), row=number)
    if page.get("next"):
        log.info("%s: Kobo page with a 'next' page (%s); pass every page to read them all",
                 path, page["next"])
    return page["results"]


def read_kobo_json(path_or_paths: str | Path | Sequence[str | Path], model: FormModel) -> RawForm:
    """Read one or more Kobo data pages of ``model``'s form into canonical tables.

    Pages are read in the order given; a KEY seen on an earlier page makes a later copy a
    ``duplicate-key`` quarantine row. ``__version__`` is recorded as the form version as it is.
    """
    paths = ([Path(path_or_paths)] if isinstance(path_or_paths, str | Path)
             else [Path(p) for p in path_or_paths])
    if not paths:
        raise DhsurveyError("no Kobo pages given", code="export-missing", form=model.form_id)
    builder = TableBuilder(model, SOURCE_FORMAT, paths[0])
    known = {full_path(i) for i in model.fields_in(None)} | {full_path(r) for r in model.repeats
                                                             if r.repeat is None}
    unknown: set[str] = set()
    for path in paths:
        for number, result in enumerate(_load_page(path), start=1):
            unknown |= {k for k in result if not k.startswith("_") and k not in known
                        and k not in KNOWN_EXTRA}
            _read_result(model, builder, result, path, number)
    if unknown:
        log.warning("%s: ignoring %d key(s) the form does not have: %s", paths[0], len(unknown),
                    ", ".join(sorted(unknown)))
    return builder.finish()


def _read_result(model: FormModel, builder: TableBuilder, result: dict[str, Any], path: Path,
                 number: int) -> None:
    key = _text(result.get(INSTANCE_ID_KEY))
    if key is None and _text(result.get("_uuid")):
        key = f"uuid:{result['_uuid']}"
    form_id = _text(result.get("_xform_id_string"))
    if form_id is not None and form_id != model.form_id:
        builder.quarantine("wrong-form", f"a submission of form '{form_id}', not "
                           f"'{model.form_id}'", source_file=path, row=number, key=key,
                           column="_xform_id_string", value=form_id)
        return
    status = result.get("_validation_status")
    uid = status.get("uid") if isinstance(status, dict) else None
    root: dict[str, Any] = {name: _text(result.get(full_path(model[name])))
                            for name in (i.name for i in model.fields_in(None))}
    root.update(
        KEY=key,
        form_version=_text(result.get("__version__")),
        submission_time=canonical_time(_text(result.get("_submission_time"))),
        submitter=_text(result.get("_submitted_by")),
        review_state=VALIDATION_TO_REVIEW.get(uid or "", uid),
    )
    repeats: list[tuple[str, dict[str, Any]]] = []
    if key is not None:
        _read_repeats(model, result, None, key, repeats, path, number)
    builder.add_submission(root, repeats, source_file=path, row=number)


def _read_repeats(model: FormModel, obj: dict[str, Any], level: str | None, parent_key: str,
                  out: list[tuple[str, dict[str, Any]]], path: Path, number: int) -> None:
    """Rows of the repeats directly inside ``level``, found in ``obj`` (a result or an item)."""
    for rep in model.repeats:
        if rep.repeat != level:
            continue
        items = obj.get(full_path(rep))
        if items is None:
            continue
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise DhsurveyError(f"'{full_path(rep)}' is not a list of objects (a repeat)",
                                code="export-shape", file=str(path), row=number,
                                column=full_path(rep))
        for position, item in enumerate(items, start=1):
            key = repeat_key(parent_key, model, rep.name, position)
            row: dict[str, Any] = {f.name: _text(item.get(full_path(f)))
                                   for f in model.fields_in(rep.name)}
            row.update({"KEY": key, PARENT: parent_key})
            out.append((rep.name, row))
            _read_repeats(model, item, rep.name, key, out, path, number)
