"""The run folder's one owner: `RunFolder` names every path of a run, lists its models (the one model resolver),
reads its config and holds its lock; every stage reaches the folder through it (results: codelora.run.results;
the chosen model: codelora.run.selection). A run folder (written by `codelora prepare` / `train`; read by evaluate,
compare, report, export, the model card):

    config.yaml                       the resolved config (paths in it absolute, or relative to the run folder)
    split.json, data_report.json      the by-problem split; the prepared data's fingerprint (config + source sha256)
    data/{train,valid,test}.jsonl     tokenized rows
    tests/<split>.jsonl               generated hidden tests (codelora.data.generated_tests)
    logs/metrics.jsonl, metrics.csv   one row per logged step (`read_metrics`); logs/tensorboard/ when asked for
    plots/{loss,lr,lengths,compare}.png
    checkpoints/checkpoint-<step>/    adapter + meta.json; complete only once meta.json exists (written last)
    final/                            the final adapter + meta.json
    <method>/                         a training method after SFT (e.g. rl/): the same checkpoints/, final/, logs/
    rl/                               `codelora rl` (GRPO): checkpoints/checkpoint-<step>/, final/, logs/metrics.jsonl,
                                      problems.jsonl; its models are named rl-checkpoint-<step> and rl-final
    eval/<benchmark>/<model>/         generations.jsonl (append-only store), samples, results.jsonl, summary.json
    selection.json                    written only by a full `codelora compare` (every model, every problem)
    provisional_best.json             the best by pass@1 while training (train.execution_eval); compare confirms
                                      or replaces it in selection.json (`read_provisional_best`)
    report.html, report.md            `codelora report`
    .lock                             held while a process writes eval/ or selection.json (`run_lock`)

Provenance: every evaluation summary carries `provenance` (benchmark, protocol, base model, the sha256 of the
adapter weights it was computed from and the adapter's identity (`adapter_sha256`: weights + the canonical
adapter_config.json), prompts, sampling, problem set) and `result_key`, the sha256 of that record. A reader
compares the recorded hashes with the adapter on disk now: a mismatch means the result is *stale* (the checkpoint
was retrained, `final` replaced by a longer run, or its lora_alpha edited) and it is never shown or used as current.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codelora.errors import UserError
from codelora.files import atomic_write_text, read_json, read_json_object, read_jsonl, sha256_file

ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
LOCK_NAME = ".lock"
META = "meta.json"  # beside every adapter codelora wrote: config, step, metrics; written last
SELECTION_FILE = "selection.json"


class At:
    """A path inside a `Folder` (`RunFolder`, `ResultFolder`): `config_file = At("config.yaml")` reads as
    `folder.root / "config.yaml"`. One line per file: the layout reads as a list of names, not of properties."""

    def __init__(self, *parts: str, doc: str | None = None):
        self.parts, self.__doc__ = parts, doc or "/".join(parts)

    def __get__(self, folder: Any, owner: type | None = None) -> Any:
        return self if folder is None else folder.root.joinpath(*self.parts)


class Folder(os.PathLike):
    """A folder codelora writes, as an object: `root` (a Path) and its files as `At` attributes. A path-like
    (`Path(folder)`, `open(folder / name)` work), so it goes wherever the folder's path went; equal to another of
    the same kind at the same path."""

    def __init__(self, root: str | Path | Folder):
        self.root = Path(root)

    def __fspath__(self) -> str:
        return str(self.root)

    def __str__(self) -> str:
        return str(self.root)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.root == self.root  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self.root)

    def __truediv__(self, other: str) -> Path:
        return self.root / other


class RunFolder(Folder):
    """One run folder: every path in it, and the stage-independent reads (models, config, metrics, lock).
    Paths are attributes named after what they hold; nothing is created until a stage writes."""

    # ------------------------------------------------------------------ files written by prepare and train
    config_file = At("config.yaml")
    split_file = At("split.json")
    data_report_file = At("data_report.json")
    data_dir = At("data")

    def data_file(self, split: str) -> Path:
        """data/<split>.jsonl: the tokenized rows of one split (train, valid, test)."""
        return self.data_dir / f"{split}.jsonl"

    tests_dir = At("tests", doc="tests/: generated hidden tests, one <split>.jsonl per split.")
    logs_dir = At("logs")
    metrics_file = At("logs", "metrics.jsonl")
    metrics_csv = At("logs", "metrics.csv")
    tensorboard_dir = At("logs", "tensorboard")
    plots_dir = At("plots")

    def plot(self, name: str) -> Path:
        """plots/<name>.png (loss, lr, lengths, compare)."""
        return self.plots_dir / f"{name}.png"

    checkpoints_dir = At("checkpoints")

    def checkpoint_dir(self, step_or_name: int | str) -> Path:
        """checkpoints/checkpoint-<step>/ (a step number or the folder's name)."""
        name = step_or_name if isinstance(step_or_name, str) else f"checkpoint-{step_or_name}"
        return self.checkpoints_dir / name

    final_dir = At("final")
    final_tmp = At("final.tmp", doc="final.tmp/: final/ while it is written (renamed into place when complete).")

    def method(self, name: str) -> RunFolder:
        """RUN/<method>/ of a training method after SFT (e.g. rl): the same layout (checkpoints/, final/, logs/)."""
        return RunFolder(self.root / name)

    # ------------------------------------------------------------------ files written by later stages
    eval_root = At("eval")

    def eval_dir(self, benchmark: str, protocol: str | None = None) -> Path:
        """eval/<benchmark>[-<protocol>]/ (see `eval_folder`): one benchmark's results, a folder per model."""
        return self.eval_root / eval_folder(benchmark, protocol)

    def result_dir(self, benchmark: str, model: str, protocol: str | None = None) -> ResultFolder:
        """eval/<benchmark>[-<protocol>]/<model>/."""
        return ResultFolder(self.eval_dir(benchmark, protocol) / model)

    selection_file = At(SELECTION_FILE)
    report_html = At("report.html")
    report_md = At("report.md")
    lock_file = At(LOCK_NAME)

    def card_inputs(self) -> list[Path]:
        """The run files a model card quotes (config, split, data report, metrics, selection, then every evaluation
        summary by name): what an export's `inputs_sha256` hashes, present or not."""
        fixed = [self.config_file, self.split_file, self.data_report_file, self.metrics_file, self.selection_file]
        summaries = sorted(self.eval_root.glob("*/*/summary.json"), key=lambda p: str(p.relative_to(self.root)))
        return fixed + summaries

    # ------------------------------------------------------------------ reads
    def require(self) -> RunFolder:
        """This folder if it is a run folder (has config.yaml), else one clear UserError."""
        require_run(self.root)
        return self

    def checkpoints(self, complete: bool = True) -> list[Path]:
        """checkpoint-<step> folders oldest first: the complete ones (with meta.json), or all."""
        return complete_checkpoints(self.root) if complete else all_checkpoints(self.root)

    def models(self) -> tuple[list[Model], dict[str, Path]]:
        """(complete models in order, incomplete folders by name): see `list_models`."""
        return list_models(self.root)

    def select(self, names: list[str] | str | None, default: list[str] | str = "all") -> tuple[list[Model], list[str]]:
        """The models named (`base`, `final`, `checkpoint-N`, `all`, ...; see `select_models`) and notes."""
        return select_models(self.root, names, default)

    def find(self, which: str) -> Model:
        """One complete model by name or step (see `find_model`)."""
        return find_model(self.root, which)

    def config(self, overrides: list[str] | tuple[str, ...] = ()):
        """config.yaml plus `--set` overrides (see `load_run_config`)."""
        return load_run_config(self.root, overrides)

    def metrics(self) -> list[dict]:
        """logs/metrics.jsonl rows in step order."""
        return read_metrics(self.root)

    def lock(self, what: str = "codelora"):
        """The writers' lock (a context manager, see `run_lock`)."""
        return run_lock(self.root, what)


class ResultFolder(Folder):
    """One model's evaluation folder (eval/<benchmark>/<model>/, or `evaluate --out` / `score --out`): its files."""

    summary_file = At("summary.json", doc="summary.json, written last: it means the result is complete.")
    results_file = At("results.jsonl")
    generations_file = At("generations.jsonl", doc="generations.jsonl: the append-only answer store.")
    problems_file = At(
        "problems.jsonl",
        doc="problems.jsonl: the problems a benchmark graded (held-out problems with usable tests, LiveCodeBench rows).",
    )
    problems_report_file = At("problems_report.json")


def sibling_generations(folder: str | Path) -> list[Path]:
    """The generations.jsonl of FOLDER and of every other model folder beside it (same benchmark), sorted."""
    return sorted(Path(folder).parent.glob("*/generations.jsonl"))


def read_meta(folder: str | Path) -> dict:
    """An adapter folder's meta.json as a dict ({} when it has none or it cannot be read)."""
    try:
        doc = json.loads((Path(folder) / META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def has_meta(folder: str | Path) -> bool:
    """The folder holds a complete adapter codelora wrote (meta.json is written last)."""
    return (Path(folder) / META).is_file()


def meta_file(folder: str | Path) -> Path:
    """FOLDER/meta.json."""
    return Path(folder) / META


# ------------------------------------------------------------------------------------------------ the folder itself


def require_run(run_dir: str | Path, resume: bool = False) -> Path:
    """The folder as a Path if it is a run folder (has config.yaml), else one clear UserError; a missing one names
    the runs that do exist beside it. resume: the message says `cannot resume`."""
    p = Path(run_dir)
    if not p.exists():
        head = f"cannot resume {p}: it does not exist" if resume else f"{p}: no such run folder"
        raise UserError(f"{head}; {runs_beside(p)}")
    if not p.is_dir():
        raise UserError(f"{p} is not a run folder (it is a file)")
    if not RunFolder(p).config_file.is_file():
        raise UserError(f"{p} is not a run folder (no config.yaml; run folders are written by `codelora train`)")
    return p


def runs_beside(run_dir: str | Path) -> str:
    """`runs in PARENT: a, b` (folders with a config.yaml beside run_dir) or `no runs in PARENT`, for messages."""
    parent = Path(run_dir).parent
    try:
        names = sorted(d.name for d in parent.iterdir() if (d / "config.yaml").is_file())
    except OSError:
        names = []
    return f"runs in {parent}: {', '.join(names)}" if names else f"no runs in {parent}"


def step_of(path: Path) -> int:
    """The step in a `checkpoint-<step>` folder name; -1 for any other name."""
    try:
        return int(Path(path).name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return -1


def all_checkpoints(run_dir: str | Path) -> list[Path]:
    """Every checkpoint-<step> folder, complete or not, oldest first."""
    ck = RunFolder(run_dir).checkpoints_dir
    if not ck.is_dir():
        return []
    return sorted((p for p in ck.glob("checkpoint-*") if p.is_dir() and step_of(p) >= 0), key=step_of)


def complete_checkpoints(run_dir: str | Path) -> list[Path]:
    """Checkpoints that have meta.json (written last), oldest first."""
    return [p for p in all_checkpoints(run_dir) if has_meta(p)]


def has_training(run_dir: str | Path) -> bool:
    """True once training has written anything that depends on the prepared data (a checkpoint or final/)."""
    return bool(all_checkpoints(run_dir)) or RunFolder(run_dir).final_dir.exists()


def finished_step(run_dir: str | Path) -> int | None:
    """The step of a complete final/ (training finished), else None."""
    meta_path = meta_file(RunFolder(run_dir).final_dir)
    if not meta_path.is_file():
        return None
    meta = read_json(meta_path)
    return int(meta.get("step") or 0) if isinstance(meta, dict) else None


def git_commit() -> str | None:
    """The codelora checkout's commit (recorded as provenance), or None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


# ------------------------------------------------------------------------------------------------------- config


def _local_path(value: str) -> bool:
    """A dataset/problems value that names a local file or folder (not a preset name or hub id)."""
    return bool(value) and Path(value).expanduser().exists() and value not in ("deep", "diverse", "sample", "demo")


def portable_config(cfg, run_dir: str | Path):
    """A copy of cfg whose local dataset path is absolute, so the run folder works from any directory."""
    import copy

    out = copy.deepcopy(cfg)
    ds = out.data.dataset
    if isinstance(ds, str) and _local_path(ds) and not Path(ds).expanduser().is_absolute():
        out.data.dataset = str(Path(ds).expanduser().resolve())
    return out


def save_run_config(cfg, run_dir: str | Path) -> None:
    """Write RUN/config.yaml (atomically) with stored paths made absolute (see `portable_config`)."""
    import yaml

    text = yaml.safe_dump(portable_config(cfg, run_dir).to_dict(), sort_keys=False)
    update_text(RunFolder(run_dir).config_file, text)


def load_run_config(run_dir: str | Path, overrides: list[str] | tuple[str, ...] = ()):
    """RUN/config.yaml plus overrides; a relative local dataset path is read relative to the run folder."""
    from codelora.config import load_config

    run_dir = Path(run_dir)
    cfg = load_config(RunFolder(run_dir).config_file, list(overrides))
    ds = cfg.data.dataset
    if (
        isinstance(ds, str)
        and ds not in ("deep", "diverse", "sample", "demo")
        and not Path(ds).expanduser().is_absolute()
    ):
        beside = run_dir / ds
        if beside.exists():
            cfg.data.dataset = str(beside.resolve())
    return cfg


def relative_to_run(path: str | Path | None, run_dir: str | Path | None) -> str | None:
    """A path stored in a run: relative to the run folder when inside it, else absolute."""
    if path is None:
        return None
    p = Path(path).resolve()
    if run_dir is not None:
        try:
            return str(p.relative_to(Path(run_dir).resolve()))
        except ValueError:
            pass
    return str(p)


def resolve_in_run(path: str | None, run_dir: str | Path) -> Path | None:
    """Inverse of `relative_to_run`."""
    if path is None:
        return None
    p = Path(path)
    return p if p.is_absolute() else Path(run_dir) / p


# ------------------------------------------------------------------------------------------------------- models


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def canonical_sha256(doc: Any) -> str:
    """sha256 of a JSON document with sorted keys (the identity of a record; codelora.run.results re-exports it)."""
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def weights_sha256(adapter_dir: str | Path | None) -> str | None:
    """sha256 of an adapter folder's weights file (None for the base model or a folder without weights).

    Cached per (path, size, mtime) within a process: compare and report ask for the same checkpoints repeatedly.
    """
    if adapter_dir is None:
        return None
    for name in ADAPTER_WEIGHTS:
        f = Path(adapter_dir) / name
        if f.is_file():
            st = f.stat()
            key = (str(f.resolve()), st.st_size, st.st_mtime_ns)
            if key not in _SHA_CACHE:
                _SHA_CACHE[key] = sha256_file(f)
            return _SHA_CACHE[key]
    return None


# Folders of a run that are not a training method's (see `methods`).
RUN_SUBFOLDERS = frozenset({"checkpoints", "final", "final.tmp", "data", "logs", "plots", "eval", "tests"})


def methods(run_dir: str | Path) -> list[str]:
    """The training methods after SFT found in a run, by folder name: RUN/<method>/ holding a checkpoints/ or final/
    folder in SFT's layout (codelora.training: e.g. rl/ from GRPO). Sorted by name."""
    root = Path(run_dir)
    if not root.is_dir():
        return []
    return sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir()
        and p.name not in RUN_SUBFOLDERS
        and not p.name.startswith(".")
        and ((p / "checkpoints").is_dir() or (p / "final").is_dir())
    )


def method_dir(run_dir: str | Path, method: str) -> Path:
    """RUN/<method>/: the folder of a training method after SFT (`codelora rl` writes RUN/rl/)."""
    return Path(run_dir) / method


# adapter_config.json keys that do not change what a loaded adapter computes: where it came from, training-only
# settings (dropout is off in evaluation) and PEFT's bookkeeping. Every other key (r, lora_alpha, use_rslora,
# alpha_pattern, rank_pattern, target_modules, use_dora, modules_to_save, layers_to_transform, ...) is part of
# the adapter's identity, including keys a later PEFT adds: an unknown key costs a recomputation, never a reuse.
ADAPTER_CONFIG_INERT = frozenset(
    {"base_model_name_or_path", "revision", "inference_mode", "lora_dropout", "auto_mapping", "runtime_config"}
)
# keys whose false value is PEFT's default: absent (an older PEFT) and false are the same adapter
_FALSE_IS_DEFAULT = frozenset({"use_rslora", "use_dora", "fan_in_fan_out", "lora_bias", "use_qalora"})
# keys holding module names as a list PEFT writes in set order: the order means nothing
_NAME_SETS = frozenset({"target_modules", "modules_to_save", "exclude_modules"})


def _canonical_value(v: Any) -> Any:
    if isinstance(v, float) and v.is_integer():
        return int(v)  # lora_alpha 16 and 16.0 scale alike
    if isinstance(v, dict):
        return {str(k): _canonical_value(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_canonical_value(x) for x in v]
    return v


def adapter_config_canonical(adapter_dir: str | Path | None) -> dict | None:
    """The canonical form of an adapter folder's adapter_config.json: the keys that change the adapter's output
    (all but ADAPTER_CONFIG_INERT), empty values and default-false flags left out, module-name lists sorted,
    integral floats as ints. None for the base model or a folder without adapter_config.json; UserError (one
    line) for an unreadable one."""
    if adapter_dir is None:
        return None
    doc = read_json_object(Path(adapter_dir) / "adapter_config.json", missing_ok=True)
    if doc is None:
        return None
    out = {}
    for k, v in doc.items():
        if k in ADAPTER_CONFIG_INERT or v is None or v == [] or v == {} or (k in _FALSE_IS_DEFAULT and v is False):
            continue
        if k in _NAME_SETS and isinstance(v, list):
            v = sorted(set(map(str, v)))
        out[k] = _canonical_value(v)
    return out


def adapter_sha256(adapter_dir: str | Path | None) -> str | None:
    """An adapter's identity: the sha256 of {its weights' sha256 (`weights_sha256`), the canonical form of its
    adapter_config.json (`adapter_config_canonical`)}. Two folders with the same identity compute the same output
    on the same base; editing lora_alpha (or use_rslora, alpha_pattern, ...) changes it although the weights file
    is unchanged. None for the base model or a folder without weights. This is what answers, results, caches and
    staleness are keyed by."""
    weights = weights_sha256(adapter_dir)
    if weights is None:
        return None
    return canonical_sha256({"weights_sha256": weights, "adapter_config": adapter_config_canonical(adapter_dir)})


@dataclass
class Model:
    """One model of a run: the base model (step 0, no adapter), a complete checkpoint, or final; or a checkpoint /
    final of a training method after SFT (`<method>-checkpoint-N`, `<method>-final`: its step is that method's own)."""

    name: str
    kind: str  # "base" | "checkpoint" | "final" | "<method>-checkpoint" | "<method>-final"
    step: int
    epoch: float | None
    path: Path | None  # the adapter folder; None for base
    meta: dict = field(default_factory=dict)

    @property
    def adapter(self) -> str | None:
        return str(self.path) if self.path is not None else None

    @property
    def method(self) -> str:
        """ "sft" for base, checkpoints and final; the method (e.g. "rl") of a later method's model."""
        head, _, rest = self.kind.rpartition("-")
        return head if head and rest in ("checkpoint", "final") else "sft"

    def weights_sha256(self) -> str | None:
        return weights_sha256(self.path)

    def adapter_sha256(self) -> str | None:
        """The adapter's identity, weights and config (`adapter_sha256`); None for base."""
        return adapter_sha256(self.path)

    def as_dict(self) -> dict:
        """The older dict view {name, kind, step, epoch, adapter} (tables, selection.json)."""
        return {"name": self.name, "kind": self.kind, "step": self.step, "epoch": self.epoch, "adapter": self.adapter}


def list_models(run_dir: str | Path) -> tuple[list[Model], dict[str, Path]]:
    """(complete models in step order, incomplete folders by name).

    base first (step 0), then `checkpoint-<step>` with meta.json, then `final` (its own entry even when it is the
    same step as the last checkpoint), then each later training method's (`methods`), by name:
    `<method>-checkpoint-<step>`, `<method>-final`. A folder without meta.json is still being written or was
    interrupted.
    """
    run_dir = Path(run_dir)
    models = [Model("base", "base", 0, 0.0, None)]
    incomplete: dict[str, Path] = {}
    for ck in all_checkpoints(run_dir):
        if not (ck / "meta.json").is_file():
            incomplete[ck.name] = ck
            continue
        meta = read_json(ck / "meta.json")
        models.append(Model(ck.name, "checkpoint", int(meta.get("step", step_of(ck))), meta.get("epoch"), ck, meta))
    final = run_dir / "final"
    if (final / "meta.json").is_file():
        meta = read_json(final / "meta.json")
        models.append(Model("final", "final", int(meta.get("step") or 0), meta.get("epoch"), final, meta))
    elif final.is_dir():
        incomplete["final"] = final
    for method in methods(run_dir):
        folder = run_dir / method
        for ck in all_checkpoints(folder):
            name = f"{method}-{ck.name}"
            if not (ck / "meta.json").is_file():
                incomplete[name] = ck
                continue
            meta = read_json(ck / "meta.json")
            step = int(meta.get("step", step_of(ck)))
            models.append(Model(name, f"{method}-checkpoint", step, meta.get("epoch"), ck, meta))
        mfinal = folder / "final"
        if (mfinal / "meta.json").is_file():
            meta = read_json(mfinal / "meta.json")
            models.append(
                Model(f"{method}-final", f"{method}-final", int(meta.get("step") or 0), meta.get("epoch"), mfinal, meta)
            )
        elif mfinal.is_dir():
            incomplete[f"{method}-final"] = mfinal
    return models, incomplete


def eval_folder(benchmark: str, protocol: str | None = None) -> str:
    """Name of the folder under eval/ that holds one benchmark's results: the benchmark's name, with
    `-<protocol>` added for a grading protocol other than the benchmark's default (`livecodebench-course`), so the
    course's numbers and LiveCodeBench's live side by side and never overwrite each other."""
    from codelora import benchmarks

    if protocol is None or protocol == benchmarks.get(benchmark).default_protocol:
        return benchmark
    return f"{benchmark}-{protocol}"


def eval_dir(run_dir: str | Path, benchmark: str, protocol: str | None = None) -> Path:
    """RUN/eval/<benchmark>[-<protocol>]/ (see `eval_folder`): one benchmark's results, a folder per model."""
    return Path(run_dir) / "eval" / eval_folder(benchmark, protocol)


def evaluated(run_dir: str | Path) -> list[tuple[str, str | None, Path]]:
    """(benchmark, protocol, folder) of every eval/ folder holding results, in the registry's order (benchmarks,
    then each one's default protocol first); protocol None is the benchmark's default (or it has none)."""
    from codelora import benchmarks

    found = []
    for name in benchmarks.names():
        bench = benchmarks.get(name)
        for protocol in [None, *(p for p in bench.protocols if p != bench.default_protocol)]:
            folder = eval_dir(run_dir, name, protocol)
            if folder.is_dir():
                found.append((name, protocol, folder))
    return found


def run_models(run_dir: str | Path) -> tuple[list[dict], dict[str, Path]]:
    """`list_models` as dicts {name, kind, step, epoch, adapter} (kept for callers that print or store them)."""
    models, incomplete = list_models(run_dir)
    return [m.as_dict() for m in models], incomplete


METHOD_NAME = re.compile(r"[a-z][a-z0-9_]*")  # a training method's folder name (RUN/<method>/)


def model_name(which: str) -> str:
    """The model name `which` stands for: `final`, `base`, `checkpoint-<step>`, `<method>-final`,
    `<method>-checkpoint-<step>` as they are; `<step>` -> `checkpoint-<step>`, `<method>-<step>` ->
    `<method>-checkpoint-<step>` (e.g. rl-3 -> rl-checkpoint-3)."""
    which = str(which).strip()
    method, _, rest = which.partition("-")
    prefix = ""
    if method != "checkpoint" and METHOD_NAME.fullmatch(method) and re.fullmatch(r"\d+|final|checkpoint-\d+", rest):
        prefix, which = method + "-", rest
    if which == "base":
        return which
    if which == "final" or which.startswith("checkpoint-"):
        return prefix + which
    return f"{prefix}checkpoint-{which}"


def find_model(run_dir: str | Path, which: str) -> Model:
    """`final`, `base`, `<step>`, `checkpoint-<step>`, `rl-final`, `rl-checkpoint-<step>` (see `model_name`) as a
    complete Model, else one UserError listing choices."""
    models, incomplete = list_models(run_dir)
    by_name = {m.name: m for m in models}
    which = str(which).strip()
    if which in by_name:  # any listed name as it is (base, final, checkpoint-N, <method>-checkpoint-N, <method>-final)
        return by_name[which]
    name = model_name(which)
    choices = ", ".join(n for n in by_name if n != "base") or "none"
    if name in by_name:
        return by_name[name]
    if name in incomplete:
        raise UserError(
            f"{incomplete[name]} is incomplete (no meta.json; it was interrupted while saving); complete: {choices}"
        )
    method, _, rest = name.partition("-")
    is_method = method != "checkpoint" and METHOD_NAME.fullmatch(method) is not None and bool(rest)
    folder, name_in = (method_dir(run_dir, method), rest) if is_method else (Path(run_dir), name)
    if name_in.startswith("checkpoint-") and step_of(Path(name_in)) < 0:
        raise UserError(
            f"--checkpoint {which!r} is not best, final, a step number, checkpoint-<step>, rl-final or "
            f"rl-checkpoint-<step>; complete ones in {run_dir}: {choices}"
        )
    where = folder / ("final" if name_in == "final" else f"checkpoints/{name_in}")
    raise UserError(f"{where} does not exist; complete checkpoints in {run_dir}: {choices}")


def select_models(
    run_dir: str | Path, names: list[str] | str | None, default: list[str] | str = "all"
) -> tuple[list[Model], list[str]]:
    """The run's models named by `--models` (the one resolver evaluate and compare use): (models, notes).

    names: a list or comma string of model names (`base`, `final`, `checkpoint-<step>`, a later method's
    `<method>-checkpoint-<step>` / `<method>-final`) or `all` (every complete model, in run order, with a note for
    each incomplete folder); None (or an empty list) takes `default`. Named models come in the order given, each once. A named model
    that is incomplete (no meta.json) or not in the run, or `all` mixed with names, is one UserError."""
    models, incomplete = list_models(run_dir)
    by_name = {m.name: m for m in models}
    if names is None or (not isinstance(names, str) and not names):
        names = default
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if "all" in names:
        if [n for n in names if n != "all"]:
            raise UserError("--models: 'all' cannot be combined with model names")
        notes = [
            f"skipped {path}: incomplete (no meta.json; still being written or interrupted)"
            for path in incomplete.values()
        ]
        return models, notes
    chosen: list[Model] = []
    for name in names:
        if name in incomplete:
            raise UserError(f"{incomplete[name]} is incomplete (no meta.json; still being written or interrupted)")
        if name not in by_name:
            raise UserError(f"--models: no model {name!r} in {run_dir} (available: {', '.join(by_name)}, or all)")
        if by_name[name] not in chosen:
            chosen.append(by_name[name])
    if not chosen:
        raise UserError(f"--models: no models given; available: {', '.join(by_name)} (or all)")
    return chosen, []


# ------------------------------------------------------------------------------------------------------ metrics


def read_metrics(run_dir: str | Path) -> list[dict]:
    """logs/metrics.jsonl rows in step order ([] while nothing is logged yet); a bad line is one UserError."""
    path = Path(run_dir) / "logs" / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = read_jsonl(path)
    for i, r in enumerate(rows, 1):
        if not isinstance(r.get("step"), int):
            raise UserError(f"{path}:{i}: missing or non-integer 'step'")
    return sorted(rows, key=lambda r: r["step"])


def losses_at(metrics: list[dict], step: int | None) -> dict:
    """Losses for a model at `step`.

    train_loss: the last logged at or before the step. valid_loss/test_loss: the eval row *at* the step. When there
    is none, the last eval before it is shown as `borrowed_valid_loss` with its `loss_step`, never as `valid_loss`,
    so a number measured on other weights cannot decide anything.
    """
    out: dict[str, Any] = {"train_loss": None, "valid_loss": None, "test_loss": None, "loss_step": None}
    if step is None:
        return out
    last_eval = None
    for r in metrics:
        if r["step"] > step:
            break
        if r.get("train_loss") is not None:
            out["train_loss"] = r["train_loss"]
        if r.get("valid_loss") is not None or r.get("test_loss") is not None:
            last_eval = r
    if last_eval is not None:
        out["loss_step"] = last_eval["step"]
        if last_eval["step"] == step:
            out["valid_loss"] = last_eval.get("valid_loss")
            out["test_loss"] = last_eval.get("test_loss")
        else:
            out["borrowed_valid_loss"] = last_eval.get("valid_loss")
            out["borrowed_test_loss"] = last_eval.get("test_loss")
    return out


# --------------------------------------------------------------------------------------------- atomic writers


def update_text(path: str | Path, text: str) -> bool:
    """Write `text` atomically unless the file already holds exactly these bytes; True when it was written.

    Rerunning a finished stage then leaves its files byte-identical and untouched (mtimes included).
    """
    path = Path(path)
    try:
        if path.read_bytes() == text.encode("utf-8"):
            return False
    except OSError:
        pass
    atomic_write_text(path, text)
    return True


def write_json(path: str | Path, doc: Any, indent: int | None = 2) -> bool:
    """`update_text` of a JSON document (one trailing newline)."""
    return update_text(path, json.dumps(doc, indent=indent, default=str, ensure_ascii=False) + "\n")


_LOCAL = threading.local()


@contextlib.contextmanager
def run_lock(folder: str | Path, what: str = "codelora") -> Iterator[None]:
    """Serialise writers of one run folder: an exclusive flock on FOLDER/.lock.

    A second process waits (saying so on one line) until the first is done, so two evaluations of the same model
    never both generate and overwrite each other. Re-entrant within one process (compare calls evaluate).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = (folder / LOCK_NAME).resolve()
    held = getattr(_LOCAL, "held", None)
    if held is None:
        held = _LOCAL.held = {}
    if str(path) in held:
        held[str(path)] += 1
        try:
            yield
        finally:
            held[str(path)] -= 1
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                other = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
            except OSError:
                other = ""
            print(f"{what}: waiting for another process writing {folder} ({other or 'unknown'})", file=sys.stderr)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}: {what}\n".encode(), 0)
        held[str(path)] = 1
        try:
            yield
        finally:
            del held[str(path)]
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def result_dir(run_dir: str | Path, benchmark: str, model: str, protocol: str | None = None) -> Path:
    """eval/<benchmark>[-<protocol>]/<model>/ (see `eval_folder`)."""
    return eval_dir(run_dir, benchmark, protocol) / model


# --------------------------------------------------------------------------------------------------- selection


PROVISIONAL_BEST = "provisional_best.json"


def read_provisional_best(run_dir: str | Path) -> dict | None:
    """RUN/provisional_best.json (None if absent or unreadable), written by codelora.training.execution_eval:
    {benchmark, metric, best, step, value, evaluations: [{model, step, value, result_key}], early_stopping,
    stopped_early, stopped_at_step, note}."""
    path = Path(run_dir) / PROVISIONAL_BEST
    try:
        doc = read_json(path) if path.is_file() else None
    except UserError:
        return None
    return doc if isinstance(doc, dict) else None


def selection_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / "selection.json"
