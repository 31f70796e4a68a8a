"""The run folder's one schema: what each file is, who may write it, and how every later stage reads it.

A run folder (written by `codelora prepare` / `train`; read by evaluate, compare, report, export, the model card):

    config.yaml                       the resolved config (paths in it absolute, or relative to the run folder)
    split.json, data_report.json      the by-problem split; the prepared data's fingerprint (config + source sha256)
    data/{train,valid,test}.jsonl     tokenized rows
    logs/metrics.jsonl                one row per logged step (`read_metrics`)
    checkpoints/checkpoint-<step>/    adapter + meta.json; complete only once meta.json exists (written last)
    final/                            the final adapter + meta.json
    rl/                               `codelora rl` (GRPO): checkpoints/checkpoint-<step>/, final/, logs/metrics.jsonl,
                                      problems.jsonl; its models are named rl-checkpoint-<step> and rl-final
    eval/<benchmark>/<model>/         generations.jsonl (append-only store), samples, results.jsonl, summary.json
    selection.json                    written only by a full `codelora compare` (every model, every problem)
    provisional_best.json             the best by pass@1 while training (train.execution_eval); compare confirms
                                      or replaces it in selection.json (`read_provisional_best`)
    .lock                             held while a process writes eval/ or selection.json (`run_lock`)

Provenance: every evaluation summary carries `provenance` (benchmark, protocol, base model, the sha256 of the
adapter weights it was computed from, prompts, sampling, problem set) and `result_key`, the sha256 of that record.
A reader compares the recorded weights hash with the weights on disk now: a mismatch means the result is *stale*
(the checkpoint was retrained or `final` replaced by a longer run) and it is never shown or used as current.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codelora.errors import UserError
from codelora.files import atomic_write_text, read_json, read_jsonl, sha256_file

ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
SELECTION_VERSION = 2
LOCK_NAME = ".lock"


# ------------------------------------------------------------------------------------------------ the folder itself


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


def step_of(path: Path) -> int:
    """The step in a `checkpoint-<step>` folder name; -1 for any other name."""
    try:
        return int(Path(path).name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return -1


def all_checkpoints(run_dir: str | Path) -> list[Path]:
    """Every checkpoint-<step> folder, complete or not, oldest first."""
    ck = Path(run_dir) / "checkpoints"
    if not ck.is_dir():
        return []
    return sorted((p for p in ck.glob("checkpoint-*") if p.is_dir() and step_of(p) >= 0), key=step_of)


def complete_checkpoints(run_dir: str | Path) -> list[Path]:
    """Checkpoints that have meta.json (written last), oldest first."""
    return [p for p in all_checkpoints(run_dir) if (p / "meta.json").is_file()]


def has_training(run_dir: str | Path) -> bool:
    """True once training has written anything that depends on the prepared data (a checkpoint or final/)."""
    run_dir = Path(run_dir)
    return bool(all_checkpoints(run_dir)) or (run_dir / "final").exists()


def finished_step(run_dir: str | Path) -> int | None:
    """The step of a complete final/ (training finished), else None."""
    meta_path = Path(run_dir) / "final" / "meta.json"
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
    return bool(value) and Path(value).expanduser().exists() and value not in ("deep", "diverse", "sample")


def dataset_sha256(dataset: str) -> str | None:
    """sha256 of a dataset's source bytes: a local file, a local folder (every file, by relative name) or the bundled
    sample; None for a hub dataset (its revision is the hub's business). Recorded by prepare, so an edited file
    is noticed before its old prepared rows are reused."""
    if dataset == "sample":
        from importlib import resources

        return hashlib.sha256(
            resources.files("codelora.data").joinpath("sample_problems.jsonl").read_bytes()
        ).hexdigest()
    path = Path(dataset).expanduser()
    if path.is_file():
        return sha256_file(path)
    if path.is_dir():
        h = hashlib.sha256()
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(f"{f.relative_to(path)}\0{sha256_file(f)}\n".encode())
        return h.hexdigest()
    return None


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
    update_text(Path(run_dir) / "config.yaml", text)


def load_run_config(run_dir: str | Path, overrides: list[str] | tuple[str, ...] = ()):
    """RUN/config.yaml plus overrides; a relative local dataset path is read relative to the run folder."""
    from codelora.config import load_config

    run_dir = Path(run_dir)
    cfg = load_config(run_dir / "config.yaml", list(overrides))
    ds = cfg.data.dataset
    if isinstance(ds, str) and ds not in ("deep", "diverse", "sample") and not Path(ds).expanduser().is_absolute():
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


# Training methods after SFT, each in its own folder RUN/<method>/ with the SFT layout (checkpoints/checkpoint-N/ with
# meta.json written last, final/, logs/metrics.jsonl); their models are named <method>-checkpoint-N, <method>-final.
METHODS = ("rl",)


def method_dir(run_dir: str | Path, method: str) -> Path:
    """RUN/<method>/: the folder of a training method after SFT (`codelora rl` writes RUN/rl/)."""
    return Path(run_dir) / method


@dataclass
class Model:
    """One model of a run: the base model (step 0, no adapter), a complete checkpoint, or final; or a checkpoint /
    final of a later training method (`rl-checkpoint-N`, `rl-final`: step is then that method's own step)."""

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
        """The training method: `sft` for base, checkpoints and final, else the method (e.g. `rl`)."""
        head = self.kind.split("-", 1)[0]
        return head if head in METHODS else "sft"

    def weights_sha256(self) -> str | None:
        return weights_sha256(self.path)

    def as_dict(self) -> dict:
        """The older dict view {name, kind, step, epoch, adapter} (tables, selection.json)."""
        return {"name": self.name, "kind": self.kind, "step": self.step, "epoch": self.epoch, "adapter": self.adapter}


def list_models(run_dir: str | Path) -> tuple[list[Model], dict[str, Path]]:
    """(complete models in step order, incomplete folders by name).

    base first (step 0), then `checkpoint-<step>` with meta.json, then `final` (its own entry even when it is the
    same step as the last checkpoint), then each later method's (METHODS: `rl-checkpoint-<step>`, `rl-final`). A
    folder without meta.json is still being written or was interrupted.
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
    for prefix, folder in [("", run_dir)] + [(f"{m}-", method_dir(run_dir, m)) for m in METHODS]:
        if prefix:
            for ck in all_checkpoints(folder):
                if not (ck / "meta.json").is_file():
                    incomplete[prefix + ck.name] = ck
                    continue
                meta = read_json(ck / "meta.json")
                step = int(meta.get("step", step_of(ck)))
                models.append(Model(prefix + ck.name, prefix + "checkpoint", step, meta.get("epoch"), ck, meta))
        final = folder / "final"
        if (final / "meta.json").is_file():
            meta = read_json(final / "meta.json")
            step = int(meta.get("step") or 0)
            models.append(Model(prefix + "final", prefix + "final", step, meta.get("epoch"), final, meta))
        elif final.is_dir():
            incomplete[prefix + "final"] = final
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


def model_name(which: str) -> str:
    """The model name `which` stands for: `final`, `base`, `checkpoint-<step>`, `<method>-final`,
    `<method>-checkpoint-<step>` as they are; `<step>` -> `checkpoint-<step>`, `<method>-<step>` ->
    `<method>-checkpoint-<step>` (e.g. rl-3 -> rl-checkpoint-3)."""
    which = str(which).strip()
    method, _, rest = which.partition("-")
    prefix = ""
    if method in METHODS and rest:
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
    name = model_name(which)
    choices = ", ".join(n for n in by_name if n != "base") or "none"
    if name in by_name:
        return by_name[name]
    if name in incomplete:
        raise UserError(
            f"{incomplete[name]} is incomplete (no meta.json; it was interrupted while saving); complete: {choices}"
        )
    method, _, rest = name.partition("-")
    folder, name_in = (method_dir(run_dir, method), rest) if method in METHODS else (Path(run_dir), name)
    if name_in.startswith("checkpoint-") and step_of(Path(name_in)) < 0:
        raise UserError(
            f"--checkpoint {which!r} is not best, final, a step number, checkpoint-<step>, rl-final or "
            f"rl-checkpoint-<step>; complete ones in {run_dir}: {choices}"
        )
    where = folder / ("final" if name_in == "final" else f"checkpoints/{name_in}")
    raise UserError(f"{where} does not exist; complete checkpoints in {run_dir}: {choices}")


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


# ------------------------------------------------------------------------------------------ evaluation results


def canonical_sha256(doc: Any) -> str:
    """sha256 of a JSON document with sorted keys (the identity of a record)."""
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def provenance(
    *,
    benchmark: str,
    source: str,
    revision: str | None,
    weights_sha256: str | None,
    prompts_sha256: str,
    sampling: dict,
    problems_sha256: str,
    limit: int | None,
    protocol: str | None = None,
    generator: dict | None = None,
    tests: str | None = None,
) -> dict:
    """What an evaluation result was computed from. Two results with equal provenance are interchangeable; a
    result whose weights hash differs from the weights on disk is stale. `generator`: what made the answers when
    it was not the model's own weights through transformers (the llamacpp backend: {"backend", "gguf_sha256"} of
    the quantised base); recorded only then, so the HF backend's result keys are what they always were. `tests`:
    which of a benchmark's test sets graded (heldout: generated or all); recorded only when given, so results graded
    on the statement examples keep the keys they always had."""
    doc = {
        "benchmark": benchmark,
        "protocol": protocol,
        "source": source,
        "revision": revision,
        "weights_sha256": weights_sha256,
        "prompts_sha256": prompts_sha256,
        "sampling": sampling,
        "problems_sha256": problems_sha256,
        "limit": limit,
    }
    if generator:
        doc["generator"] = generator
    if tests:
        doc["tests"] = tests
    return doc


def result_dir(run_dir: str | Path, benchmark: str, model: str, protocol: str | None = None) -> Path:
    """eval/<benchmark>[-<protocol>]/<model>/ (see `eval_folder`)."""
    return eval_dir(run_dir, benchmark, protocol) / model


RESULT_FILES = ("summary.json", "results.jsonl")  # summary.json is written last: it means the result is complete


def write_results(
    folder: str | Path, results: list[dict], summary: dict, samples: tuple[str, str] | None = None
) -> None:
    """Write one graded result into FOLDER (an eval/<benchmark>/<model>/ folder, or `score --out`): the samples file
    (name, text) when given, results.jsonl (one record per sample), then summary.json, each atomically."""
    folder = Path(folder)
    if samples is not None:
        update_text(folder / samples[0], samples[1])
    update_text(folder / "results.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results))
    write_json(folder / "summary.json", summary)


def clear_results(folder: str | Path) -> None:
    """Remove FOLDER's summary.json and results.jsonl: results of other settings must not sit beside half-made new
    generations looking finished."""
    for name in RESULT_FILES:
        (Path(folder) / name).unlink(missing_ok=True)


@dataclass
class EvalResult:
    """One model's stored evaluation on one benchmark (eval/<benchmark>/<model>/)."""

    name: str
    folder: Path
    summary: dict
    problems: dict[str, dict[int, dict]]  # task id -> sample index -> {passed, verdict, first_failure}
    code: dict[tuple[str, int], str]
    stale: str | None = None  # why the result no longer matches the model's weights; None = current

    @property
    def provenance(self) -> dict:
        return self.summary.get("provenance") or {}

    @property
    def result_key(self) -> str | None:
        return self.summary.get("result_key")

    @property
    def full(self) -> bool:
        """Graded on the benchmark's whole problem set (no --limit)."""
        return self.provenance.get("limit") is None

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "folder": str(self.folder),
            "summary": self.summary,
            "problems": self.problems,
            "code": self.code,
            "stale": self.stale,
        }


def _id_of(rec: dict, path: Path, lineno: int) -> str:
    for key in ("task_id", "question_id"):
        if key in rec:
            return str(rec[key])
    raise UserError(f"{path}:{lineno}: no task_id or question_id")


def staleness(summary: dict, model: Model | None) -> str | None:
    """Why a stored summary is not a result of `model` as it is on disk now (None: it is current)."""
    prov = summary.get("provenance")
    if not isinstance(prov, dict):
        return "no provenance recorded (written by an older codelora); evaluate again"
    if model is None:
        return None
    now = model.weights_sha256()
    if prov.get("weights_sha256") != now:
        was = (prov.get("weights_sha256") or "base")[:12]
        return f"computed from other weights ({was}, now {(now or 'base')[:12]}): {model.name} changed since"
    return None


def read_summary(folder: str | Path) -> dict | None:
    path = Path(folder) / "summary.json"
    if not path.is_file():
        return None
    summary = read_json(path)
    if not isinstance(summary, dict):
        raise UserError(f"{path}: expected a JSON object")
    return summary


def read_result(
    run_dir: str | Path, benchmark: str, model: Model | str, protocol: str | None = None
) -> EvalResult | None:
    """A model's stored result (None if never evaluated); `.stale` says why it no longer matches the weights.
    protocol: LiveCodeBench's grading protocol (None: the default), which picks the folder (`eval_folder`)."""
    m = model if isinstance(model, Model) else None
    name = model.name if isinstance(model, Model) else str(model)
    folder = result_dir(run_dir, benchmark, name, protocol)
    summary = read_summary(folder)
    if summary is None:
        return None
    results_path = folder / "results.jsonl"
    if not results_path.is_file():
        raise UserError(f"{results_path}: missing (summary.json exists: the evaluation is incomplete, run it again)")
    problems: dict[str, dict[int, dict]] = {}
    for lineno, rec in enumerate(read_jsonl(results_path), 1):
        pid = _id_of(rec, results_path, lineno)
        if "passed" not in rec:
            raise UserError(f"{results_path}:{lineno}: no 'passed' field")
        idx = int(rec.get("sample_index", 0))
        problems.setdefault(pid, {})[idx] = {
            "passed": bool(rec["passed"]),
            "verdict": rec.get("verdict", "accepted" if rec["passed"] else "wrong_answer"),
            "first_failure": rec.get("first_failure"),
        }
    if not problems:
        raise UserError(f"{results_path}: no results")
    return EvalResult(name, folder, summary, problems, read_answers(folder, summary), staleness(summary, m))


def read_answers(folder: str | Path, summary: dict | None = None) -> dict[tuple[str, int], str]:
    """(task id, sample index) -> code of the generations this summary was graded on.

    The generation store keeps answers of every setting ever evaluated; only records with the summary's weights
    and sampling count, the last one of a key winning. Unreadable lines are skipped (this is a view for people).
    """
    from codelora.generation.generate import Sampling

    gen_path = Path(folder) / "generations.jsonl"
    code: dict[tuple[str, int], str] = {}
    if not gen_path.is_file():
        return code
    prov = (summary or {}).get("provenance") or {}
    want_sampling = {k: v for k, v in prov["sampling"].items() if k != "n"} if prov.get("sampling") else None
    for line in gen_path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
            key = (str(rec["task_id"]), int(rec.get("sample_index", 0)))
            if (
                "weights_sha256" in prov
                and "model" in rec
                and rec["model"].get("adapter_sha256") != prov["weights_sha256"]
            ):
                continue
            # answers of another generator (llama.cpp's quantised base vs transformers) are not this summary's
            if "model" in rec and rec["model"].get("gguf_sha256") != (prov.get("generator") or {}).get("gguf_sha256"):
                continue
            if (
                want_sampling is not None
                and "sampling" in rec
                and Sampling(**_without_n(rec["sampling"])).key() != want_sampling
            ):
                continue
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        code[key] = rec.get("code") or rec.get("raw") or ""
    return code


# ------------------------------------------------------------------------------------------- generation store


def _without_n(sampling: dict) -> dict:
    return {k: v for k, v in sampling.items() if k != "n"}


def generation_key(model_fp: dict, task_id: str, index: int, sampling_key: dict, prompt_sha: str) -> str:
    """The store's key: (weights, task, sample index, sampling that decides the output, rendered prompt)."""
    return json.dumps([model_fp, task_id, index, sampling_key, prompt_sha], sort_keys=True)


def read_generations(path: str | Path) -> dict[str, dict]:
    """key -> record of a generations.jsonl store; a torn last line (crash mid-write) or a foreign line is skipped."""
    from codelora.generation.generate import Sampling

    path = Path(path)
    found: dict[str, dict] = {}
    if not path.is_file():
        return found
    bad = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            skey = Sampling(**rec["sampling"]).key()
            key = generation_key(
                rec["model"], str(rec["task_id"]), int(rec["sample_index"]), skey, rec["prompt_sha256"]
            )
            if not isinstance(rec["raw"], str):
                raise TypeError("raw")
        except (ValueError, KeyError, TypeError):
            bad += 1
            continue
        found[key] = rec
    if bad:
        print(f"warning: {path}: skipped {bad} unreadable line(s) (regenerated if needed)", file=sys.stderr)
    return found


class GenerationStore:
    """Append-only generations.jsonl: each batch is appended, flushed and fsynced as it finishes.

    Nothing is ever removed or rewritten, so answers of other settings, other --limit values and interrupted runs
    stay for the next evaluation that asks for them. Writers hold `run_lock`.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.f = None

    def append(self, recs: list[dict]) -> None:
        if not recs:
            return
        if self.f is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            torn = False
            if self.path.is_file() and self.path.stat().st_size:
                with open(self.path, "rb") as r:
                    r.seek(-1, os.SEEK_END)
                    torn = r.read(1) != b"\n"
            self.f = open(self.path, "a", encoding="utf-8")
            if torn:  # a crash mid-line: start a fresh line so the torn one stays a single skipped line
                self.f.write("\n")
        self.f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs))
        self.f.flush()
        os.fsync(self.f.fileno())

    def close(self) -> None:
        if self.f is not None:
            self.f.close()
            self.f = None


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


def read_selection(run_dir: str | Path, check: bool = True) -> dict | None:
    """RUN/selection.json (None if absent). With `check`, a selection whose chosen model's weights changed since
    (e.g. a resumed run replaced final/) is one UserError: it no longer says which model is best."""
    path = selection_path(run_dir)
    if not path.is_file():
        return None
    sel = read_json(path)
    if not isinstance(sel, dict):
        raise UserError(f"{path}: expected a JSON object")
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
