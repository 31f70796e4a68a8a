"""What a run folder holds, read one way by every later stage (evaluate, compare, report, export).

A run folder is what `codelora train` writes: config.yaml, split.json, logs/, checkpoints/checkpoint-<step>/ and
final/. A checkpoint or final folder counts only once its meta.json exists (train writes it last).
"""

from __future__ import annotations

from pathlib import Path

from codelora.errors import UserError
from codelora.files import read_json


def require_run(run_dir: str | Path) -> Path:
    """The folder as a Path if it is a run folder (has config.yaml), else one clear UserError."""
    p = Path(run_dir)
    if not p.exists():
        raise UserError(f"{p}: no such run folder")
    if not p.is_dir():
        raise UserError(f"{p} is not a run folder (it is a file)")
    if not (p / "config.yaml").is_file():
        raise UserError(f"{p} is not a run folder (no config.yaml; run folders are written by `codelora train`)")
    return p


def run_models(run_dir: str | Path) -> tuple[list[dict], dict[str, Path]]:
    """(complete models in step order: {name, kind, step, epoch, adapter}, incomplete folders by name).

    base first (step 0), then `checkpoint-<step>` with meta.json, then `final` (its own entry even when it is the
    same step as the last checkpoint). A folder without meta.json is still being written or was interrupted.
    """
    from codelora.train import _all_checkpoints, _step_of

    run_dir = Path(run_dir)
    models = [{"name": "base", "kind": "base", "step": 0, "epoch": 0.0, "adapter": None}]
    incomplete: dict[str, Path] = {}
    for ck in _all_checkpoints(run_dir):
        if not (ck / "meta.json").is_file():
            incomplete[ck.name] = ck
            continue
        meta = read_json(ck / "meta.json")
        models.append(
            {
                "name": ck.name,
                "kind": "checkpoint",
                "step": int(meta.get("step", _step_of(ck))),
                "epoch": meta.get("epoch"),
                "adapter": str(ck),
            }
        )
    final = run_dir / "final"
    if (final / "meta.json").is_file():
        meta = read_json(final / "meta.json")
        models.append(
            {
                "name": "final",
                "kind": "final",
                "step": meta.get("step"),
                "epoch": meta.get("epoch"),
                "adapter": str(final),
            }
        )
    elif final.is_dir():
        incomplete["final"] = final
    return models, incomplete


def eval_folder(benchmark: str, protocol: str | None = None) -> str:
    """Name of the folder under eval/ that holds one benchmark's results: the benchmark's name, with
    `-<protocol>` added for a LiveCodeBench protocol other than the default (`livecodebench-course`), so the
    course's numbers and LiveCodeBench's live side by side and never overwrite each other."""
    from codelora.protocol import DEFAULT_PROTOCOL

    if benchmark != "livecodebench" or protocol in (None, DEFAULT_PROTOCOL):
        return benchmark
    return f"{benchmark}-{protocol}"
