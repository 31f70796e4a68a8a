"""`codelora score`: grade generated samples in the sandbox and summarise pass@k.

`grade_samples` grades samples held in memory (what `evaluate` does after generating); `score` is the command: it
reads a samples file in the benchmark's format (codelora.benchmarks), grades it the same way and writes
results.jsonl and summary.json (through codelora.run.layout).
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from codelora.errors import UserError
from codelora.files import require_writable
from codelora.safetext import terminal_safe
from codelora.sandbox.execution import isolation, isolation_description, isolation_report
from codelora.sandbox.grading import BAD_SAMPLE, OUTPUT_CAP, SANDBOX_ERROR, VERDICTS, GradeResult, failed

if TYPE_CHECKING:
    from codelora.benchmarks.base import Benchmark, GradeSettings, Problem, Sample


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimator of Chen et al. 2021: 1 - C(n-c, k) / C(n, k)."""
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def grade_samples(
    bench: Benchmark,
    problems: dict[str, Problem],
    samples: list[Sample],
    settings: GradeSettings,
    *,
    workers: int | None = None,
    k: tuple[int, ...] = (1,),
    skipped: list[str] = (),
    source: str = "samples",
) -> tuple[list[dict], dict]:
    """Grade every sample in the sandbox; return (results.jsonl records, summary) without writing anything.

    samples: in order; each is graded against problems[sample.id]. An entry with id None or an unknown id is
    reported in `bad_samples` and skipped; one with code None (not a program: null, a number) is a failed sample of
    its problem (verdict bad_sample), so a generator cannot drop the problems it fails from pass@1 by writing null
    for them. Ids in `skipped` (problems left out for having no tests) are dropped silently. k: the k of pass@k (1
    is always reported). source: where the samples come from, for messages. Raises UserError when no sample is a
    program.
    """
    start = time.monotonic()
    items: list[tuple[str, int, str | None]] = []
    bad: list[dict] = []
    left_out = set(skipped)
    for smp in samples:
        if smp.id is None:
            bad.append({"where": smp.where, "error": smp.error})
        elif smp.id in left_out:
            continue
        elif smp.id not in problems:
            bad.append({"where": smp.where, "error": f"unknown {bench.id_key} {smp.id}"})
        else:
            if smp.code is None:
                bad.append({"where": smp.where, "error": smp.error, "problem": smp.id, "sample_index": smp.index})
            items.append((smp.id, smp.index, smp.code))
    placed = {(pid, idx) for pid, idx, code in items if code is None}
    for b in bad:
        b["counted_as_failed"] = (b.get("problem"), b.get("sample_index")) in placed
        what = f"counted as a failed sample ({BAD_SAMPLE})" if b["counted_as_failed"] else "skipped"
        print(terminal_safe(f"warning: sample at {b['where']} {what}: {b['error']}"), file=sys.stderr)
    why_bad = {(b["problem"], b["sample_index"]): b["error"] for b in bad if b["counted_as_failed"]}
    if skipped:
        print(
            terminal_safe(f"warning: skipped {len(skipped)} problem(s) without tests: {', '.join(list(skipped)[:10])}"),
            file=sys.stderr,
        )
    if all(code is None for _, _, code in items):
        raise UserError(
            f"{source}: no valid samples to score" + (f" (first: {bad[0]['where']}: {bad[0]['error']})" if bad else "")
        )
    workers = workers or os.cpu_count() or 1

    def run(item) -> tuple[GradeResult, float]:
        pid, idx, code = item
        t0 = time.monotonic()
        try:
            res = failed(BAD_SAMPLE, why_bad[pid, idx]) if code is None else bench.grade(problems[pid], code, settings)
        except Exception as e:  # noqa: BLE001 - a scorer bug must not lose other samples
            res = failed(SANDBOX_ERROR, f"{type(e).__name__}: {e}")
        return res, time.monotonic() - t0

    from tqdm import tqdm

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(
            tqdm(pool.map(run, items), total=len(items), desc=f"score {bench.name}", file=sys.stderr, unit="sample")
        )

    records = []
    per_problem: dict[str, list[bool]] = defaultdict(list)
    verdicts: Counter = Counter({v: 0 for v in VERDICTS})
    for (pid, idx, _), (res, elapsed) in zip(items, results, strict=True):
        per_problem[pid].append(res.passed)
        verdicts[res.verdict] += 1
        records.append(
            {
                bench.id_key: pid,
                "sample_index": idx,
                "passed": res.passed,
                "verdict": res.verdict,
                "tests": [{"verdict": t.verdict, "time": t.time} for t in res.tests],
                "first_failure": res.failure,
                "elapsed": round(elapsed, 4),
            }
        )

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
        by_diff[problems[pid].difficulty].append(pass_at_k(len(v), sum(v), 1))
    summary = {
        "benchmark": bench.name,
        "problems": len(per_problem),
        "samples": len(items),
        **pass_k,
        "verdicts": dict(verdicts),
        "pass@1_by_difficulty": {d: sum(v) / len(v) for d, v in sorted(by_diff.items())},
        "isolation": isolation(),
        "isolation_description": isolation_description(),
        "isolation_report": isolation_report(),
        **bench.describe(settings),
        "output_limit_mb": settings.output_limit / 2**20,
        "workers": workers,
        "wall_time": round(time.monotonic() - start, 3),
        "bad_samples": bad,
        "skipped_untested": list(skipped),
    }
    return records, summary


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
    allow_partial: bool = False,
) -> dict:
    """Grade a samples file (the benchmark's own format); write out/results.jsonl and out/summary.json; return the
    summary.

    The keyword arguments are `codelora.commands.ScoreArgs`' fields, documented there, and checked by it (UserError
    naming the flag) before anything is read: timeout (seconds per test) and memory_mb (MiB) default to the
    benchmark's (LiveCodeBench: the protocol's); k: the k of pass@k (1 is always reported). Without `problems`, a
    benchmark with a bundled problem set (HumanEval) is graded over all of it: a samples file that leaves problems
    out is refused unless allow_partial (then the missing ids are recorded as `missing_problems`). Raises UserError
    for unreadable samples or problems and when no sample is valid.
    """
    from codelora import benchmarks
    from codelora.commands import ScoreArgs
    from codelora.run import results as run_results

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
        allow_partial=allow_partial,
    )
    samples, out = Path(samples), Path(out)
    require_writable(out, "--out folder")
    bench = benchmarks.get(benchmark)
    settings = bench.settings(timeout, memory_mb, tolerance, bench.protocol(protocol), int(output_limit_mb * 2**20))
    entries = bench.read_samples(samples)
    wanted = {e.id for e in entries if e.id is not None}
    probs, skipped = bench.read_problems(problems, settings, skip_untested, wanted)
    missing = [pid for pid in probs if pid not in wanted] if problems is None and bench.bundled else []
    if missing and not allow_partial:
        raise UserError(
            f"{samples}: {len(missing)} of the {len(probs)} {bench.title} problems have no sample (first: "
            f"{', '.join(missing[:3])}); give --problems FILE with the problems meant, or --allow-partial to grade "
            "only those present"
        )
    if missing:
        print(
            f"warning: {samples}: {len(missing)} of the {len(probs)} {bench.title} problems have no sample; "
            "pass@1 is over the problems present (--allow-partial)",
            file=sys.stderr,
        )
    results, summary = grade_samples(
        bench, probs, entries, settings, workers=workers, k=k, skipped=skipped, source=str(samples)
    )
    if missing:
        summary["missing_problems"] = missing
    out.mkdir(parents=True, exist_ok=True)
    run_results.write_results(out, results, summary)
    return summary


def summary_lines(summary: dict, out: Path | str) -> list[str]:
    """A short human summary of a score `summary` for the terminal (the whole of it is out/summary.json):
    pass@k over how many problems and samples, the verdicts that occurred, the isolation in one phrase, the files."""
    n, samples = summary.get("problems"), summary.get("samples")
    ks = sorted((k for k in summary if k.startswith("pass@") and k[5:].isdigit()), key=lambda k: int(k[5:]))
    scores = ", ".join(f"{k} {summary[k]:.3f}" for k in ks) or "no pass@k"
    head = f"{summary.get('benchmark')}: {scores} over {n} problems ({samples} samples)"
    verdicts = {v: c for v, c in (summary.get("verdicts") or {}).items() if c}
    lines = [
        head,
        "verdicts: " + (", ".join(f"{v} {c}" for v, c in sorted(verdicts.items(), key=lambda x: -x[1])) or "none"),
    ]
    iso = summary.get("isolation_report") or {}
    sandbox = "bubblewrap" if iso.get("sandbox") == "bwrap" else "process isolation only"
    extras = [
        x
        for x, on in (
            ("seccomp", iso.get("seccomp")),
            (f"cgroup {iso.get('cgroup')}", iso.get("cgroup") not in (None, "none")),
        )
        if on
    ]
    lines.append(
        f"sandbox: {sandbox}" + (f" ({', '.join(extras)})" if extras else "") + f"; {summary.get('wall_time')} s"
    )
    if summary.get("bad_samples"):
        lines.append(f"bad samples: {len(summary['bad_samples'])} (listed in summary.json)")
    if summary.get("missing_problems"):
        lines.append(f"problems without a sample: {len(summary['missing_problems'])} (--allow-partial)")
    from codelora.run.layout import ResultFolder

    folder = ResultFolder(out)
    lines.append(f"wrote {folder.summary_file} (everything above and more) and {folder.results_file}")
    return lines
