"""Evaluation results in a run folder (or any `--out` folder): provenance, result files, staleness, the append-only
generation store.

eval/<benchmark>[-<protocol>]/<model>/ holds generations.jsonl (every answer ever generated there, keyed by weights,
problem, sample index, sampling and prompt), the samples file, results.jsonl and summary.json (written last: it means
the result is complete). Every summary carries `provenance` and `result_key` (its sha256); a summary whose weights
hash differs from the model's weights on disk now is *stale* and is never used as current.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from codelora.errors import UserError
from codelora.files import read_json_object, read_jsonl

# canonical_sha256 lives in layout (adapter_sha256 needs it and layout is below results); results.canonical_sha256
# is the name the stages use
from codelora.run.layout import Model, canonical_sha256, result_dir, update_text, write_json  # noqa: F401


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
    adapter_sha256: str | None = None,
) -> dict:
    """What an evaluation result was computed from. Two results with equal provenance are interchangeable; a
    result whose weights hash differs from the weights on disk is stale. `generator`: what made the answers when
    it was not the model's own weights through transformers (the llamacpp backend: {"backend", "gguf_sha256"} of
    the quantised base); recorded only then, so the HF backend's result keys are what they always were. `tests`:
    which of a benchmark's test sets graded (heldout: generated or all); recorded only when given, so results graded
    on the statement examples keep the keys they always had. `adapter_sha256`: the adapter's identity (weights +
    canonical adapter_config.json, `layout.adapter_sha256`), recorded when there is an adapter (the base model's
    result keys are unchanged); a result recorded without it predates adapter configs being part of a result's
    identity and is stale."""
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
    if adapter_sha256 is not None:
        doc["adapter_sha256"] = adapter_sha256
    if generator:
        doc["generator"] = generator
    if tests:
        doc["tests"] = tests
    return doc


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
    if now is None:
        return None
    if "adapter_sha256" not in prov:
        return "recorded before adapter_config.json was part of a result's identity; evaluate again"
    if prov["adapter_sha256"] != model.adapter_sha256():
        return f"computed with another adapter_config.json (lora_alpha, r, ...): {model.name} changed since"
    return None


def read_summary(folder: str | Path) -> dict | None:
    return read_json_object(Path(folder) / "summary.json", missing_ok=True)


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
    from codelora.generation.sampling import Sampling

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
            # the answers' adapter identity: weights + config, or the weights alone in a summary that predates that
            want_adapter = prov.get("adapter_sha256", prov.get("weights_sha256"))
            if "weights_sha256" in prov and "model" in rec and rec["model"].get("adapter_sha256") != want_adapter:
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


def _without_n(sampling: dict) -> dict:
    return {k: v for k, v in sampling.items() if k != "n"}


def generation_key(model_fp: dict, task_id: str, index: int, sampling_key: dict, prompt_sha: str) -> str:
    """The store's key: (weights, task, sample index, sampling that decides the output, rendered prompt)."""
    return json.dumps([model_fp, task_id, index, sampling_key, prompt_sha], sort_keys=True)


def read_generations(path: str | Path) -> dict[str, dict]:
    """key -> record of a generations.jsonl store; a torn last line (crash mid-write) or a foreign line is skipped."""
    from codelora.generation.sampling import Sampling

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
