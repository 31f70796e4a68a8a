"""RUN/selection.json: which model a full comparison chose, and whether that choice still describes the run."""

from __future__ import annotations

import json
from pathlib import Path

from codelora.errors import UserError
from codelora.files import read_json, read_json_object
from codelora.run.layout import find_model, list_models, result_dir, selection_path, update_text
from codelora.run.results import read_summary, staleness

SELECTION_VERSION = 2


def read_selection(run_dir: str | Path, check: bool = True) -> dict | None:
    """RUN/selection.json (None if absent). With `check`, a selection whose chosen model's weights changed since
    (e.g. a resumed run replaced final/) is one UserError: it no longer says which model is best."""
    path = selection_path(run_dir)
    sel = read_json_object(path, missing_ok=True)
    if sel is None:
        return None
    if check and sel.get("best") not in (None, "base") and sel.get("best_weights_sha256"):
        try:
            model = find_model(run_dir, sel["best"])
        except UserError:
            raise UserError(
                f"{path}: the selected model {sel['best']} no longer exists; run `codelora compare` again"
            ) from None
        if model.weights_sha256() != sel["best_weights_sha256"]:
            raise UserError(
                f"{path} is stale: {sel['best']} was retrained since it was selected; run `codelora compare` again"
            )
        if sel.get("best_adapter_sha256") and model.adapter_sha256() != sel["best_adapter_sha256"]:
            raise UserError(
                f"{path} is stale: {sel['best']}'s adapter_config.json changed since it was selected; "
                "run `codelora compare` again"
            )
    return sel


def selection_staleness(run_dir: str | Path, sel: dict) -> str | None:
    """Why a stored selection no longer describes the run (None: it does): a model it compared was retrained, or
    its results were replaced by another evaluation since."""
    keys = sel.get("result_keys")
    if not isinstance(keys, dict):
        return None  # written before results carried provenance: nothing to check it against
    models = {m.name: m for m in list_models(run_dir)[0]}
    for name, key in keys.items():
        if name not in models:
            return f"{name} no longer exists"
        summary = read_summary(result_dir(run_dir, sel.get("benchmark", ""), name, sel.get("protocol")))
        if summary is None or summary.get("result_key") != key:
            return f"the results of {name} changed since the comparison"
        why = staleness(summary, models[name])
        if why:
            return f"{name}: {why}"
    return None


def write_selection(run_dir: str | Path, doc: dict) -> bool:
    """Write RUN/selection.json atomically; unchanged apart from `created` -> not rewritten. True when written."""
    path = selection_path(run_dir)
    if path.is_file():
        try:
            old = read_json(path)
        except UserError:
            old = None
        if isinstance(old, dict) and {**old, "created": None} == json.loads(
            json.dumps({**doc, "created": None}, default=str)
        ):
            return False
    return update_text(path, json.dumps(doc, indent=1, default=str) + "\n")
