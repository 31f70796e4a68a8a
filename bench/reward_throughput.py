"""Throughput and agreement of RL rewards: codelora's sandbox reward vs an Open-R1-style local code reward.

The completions: for every problem of the bundled sample dataset that has tests (the statement examples a reference
passes plus the hidden tests generated from them, `codelora.data.generated_tests`, built into a temporary run
folder, not timed), each distinct reference solution (right) and three wrong answers made from it: the reference
followed by an extra line (`print("PASSED")`), a program printing the first example's output literally, and the
reference behind a crash (`raise SystemExit(1)` first). Each is a markdown answer with one ```python block.

The rewards, on the same completions and the same tests (examples + generated), one run:

- **codelora** (`codelora.evaluation.reward`, the sandbox reward): extraction by codelora's rule, bubblewrap sandbox with a
  warm zygote per worker; `binary` (stops at a completion's first failing test, as `score`) and `fraction` (every
  test runs) are both timed.
- **Open-R1 style** (what Open-R1's code reward runs inside its sandbox, here on the host with no sandbox): the last
  ```python block, then per test one fresh `subprocess.run([python, "-c", code], input=..., timeout=...)`, a
  non-zero exit is a failed test, outputs compared line by line with `zip` (so a prefix of the expected output, or an
  extra line after it, passes), reward = tests passed / tests; binary = reward > 0.99 (Open-R1's binary wrapper).
  Its completions are graded `--workers` at a time (a thread pool), as codelora's are.

Reported: completions graded per second by each, the ratio codelora / Open-R1, and the agreement of the binary
verdicts (with the disagreements by kind of completion). Every run is appended to `runs` in
bench/results/reward_throughput.json (the top-level keys are the latest run).

Usage: setsid bench/priority.sh .venv/bin/python bench/reward_throughput.py [--workers N] [--timeout S] [--note TEXT]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

_LAST_PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "codelora/sandbox", "codelora/evaluation/reward.py"],
            cwd=ROOT,
            capture_output=True,
        )
        return out.stdout.strip() + ("+uncommitted changes" if dirty.stdout.strip() else "") or None
    except OSError:
        return None


def _previous_runs(path: Path) -> list[dict]:
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return list(old.get("runs", []))


def openr1_style_reward(completion: str, tests: list[dict], timeout: float) -> float:
    """Open-R1's local evaluation logic (its evaluation script, run here without a sandbox): see the module docstring.
    A TimeoutExpired ends the whole evaluation with reward 0.0, as the exception does in Open-R1's script."""
    blocks = _LAST_PYTHON_BLOCK.findall(completion)
    code = blocks[-1] if blocks else ""
    passed = 0
    try:
        for case in tests:
            proc = subprocess.run(
                [sys.executable, "-c", code], input=case["input"], text=True, capture_output=True, timeout=timeout
            )
            if proc.returncode != 0:
                continue
            out = proc.stdout.strip()
            if all(
                a.strip() == b.strip() for a, b in zip(out.split("\n"), case["output"].split("\n"), strict=False)
            ):  # zip: a prefix passes
                passed += 1
    except subprocess.TimeoutExpired:
        return 0.0
    return passed / len(tests)


def _md(code: str) -> str:
    return f"Solution:\n\n```python\n{code.rstrip()}\n```\n"


def _corpus(records: list[dict]) -> tuple[dict, list[tuple[str, str, str]]]:
    """(problems for the reward, [(problem id, kind, completion)])."""
    problems, items = {}, []
    for r in records:
        if not r["generated"] or not r.get("refs"):
            continue
        problems[r["task_id"]] = r
        first_out = r["examples"][0]["output"]
        for ref in r["refs"]:
            items.append((r["task_id"], "right", _md(ref)))
            items.append((r["task_id"], "extra_line", _md(ref.rstrip() + "\nprint('PASSED')\n")))
            items.append((r["task_id"], "literal_example_output", _md(f"print({first_out!r})\n")))
            items.append((r["task_id"], "crash", _md("raise SystemExit(1)\n" + ref)))
    return problems, items


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds per test (Open-R1's exec_timeout is 5)")
    ap.add_argument("--note", default="", help="free text stored with this run")
    ap.add_argument("--no-write", action="store_true", help="print the result only")
    args = ap.parse_args()

    from codelora.config import load_config
    from codelora.data.examples import reference_solutions
    from codelora.data.generated_tests import build_tests
    from codelora.data.load import load_rows
    from codelora.data.split import problem_key, split_rows, write_split_json
    from codelora.evaluation import reward as R
    from codelora.sandbox.execution import isolation

    load_before = os.getloadavg()
    cfg = load_config("demo")
    with tempfile.TemporaryDirectory(prefix="codelora-reward-bench-") as tmp:
        run = Path(tmp)
        rows, rep = load_rows(cfg.data.dataset, target=cfg.data.target)
        split = split_rows(
            rows, seed=42, valid_fraction=0.0, test_fraction=0.0, source=rep["source"], mode="by_problem",
            conflicts="held_out",
        )  # fmt: skip
        write_split_json(run / "split.json", split.rows)
        _, records, report = build_tests(run, cfg, "train", args.workers, quiet=True)
    by_key: dict[str, list[dict]] = {}
    for row in rows:
        by_key.setdefault(problem_key(row["input"]), []).append(row)
    for r in records:
        r["refs"] = reference_solutions(by_key.get(r["task_id"], []))
    problems, items = _corpus(records)
    ids = [pid for pid, _, _ in items]
    comps = [c for _, _, c in items]
    tests_of = {pid: R.problem_tests(rec, "all") for pid, rec in problems.items()}

    timings, verdicts = {}, {}
    for kind in ("binary", "fraction"):
        reward = R.make_reward(problems, tests="all", kind=kind, workers=args.workers, timeout=args.timeout)
        try:
            reward.grade(ids[: args.workers], comps[: args.workers])  # start the workers' sandboxes (not timed)
            t0 = time.monotonic()
            res = reward.grade(ids, comps)
            timings[f"codelora_{kind}"] = time.monotonic() - t0
        finally:
            reward.close()
        verdicts[kind] = res
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        theirs = list(pool.map(lambda it: openr1_style_reward(it[2], tests_of[it[0]], args.timeout), items))
    timings["openr1_style"] = time.monotonic() - t0
    load_after = os.getloadavg()

    ours_bin = [r.reward == 1.0 for r in verdicts["binary"]]
    ours_frac = [r.reward == 1.0 for r in verdicts["fraction"]]
    assert ours_bin == ours_frac, "codelora's binary and fraction rewards disagree on which completions pass"
    theirs_bin = [x > 0.99 for x in theirs]
    disagree = Counter(kind for (_, kind, _), a, b in zip(items, ours_bin, theirs_bin, strict=True) if a != b)
    passed_by_kind = {
        k: {
            "completions": sum(1 for _, kk, _ in items if kk == k),
            "codelora_pass": sum(a for (_, kk, _), a in zip(items, ours_bin, strict=True) if kk == k),
            "openr1_style_pass": sum(b for (_, kk, _), b in zip(items, theirs_bin, strict=True) if kk == k),
        }
        for k in ("right", "extra_line", "literal_example_output", "crash")
    }
    n = len(items)
    rate = {k: round(n / v, 2) for k, v in timings.items()}
    result = {
        "bench": "reward_throughput",
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M"),
        "commit": _git_commit(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "isolation": isolation(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in load_after],
        },
        "workers": args.workers,
        "timeout": args.timeout,
        "problems": len(problems),
        "completions": n,
        "tests_per_completion_mean": round(sum(len(tests_of[p]) for p in ids) / n, 2),
        "tests_generation": {
            k: report[k]
            for k in ("gained", "generated_tests", "dropped_total", "candidates", "seed", "constant_output")
        },
        "seconds": {k: round(v, 3) for k, v in timings.items()},
        "completions_per_second": rate,
        "ratio_codelora_binary_over_openr1": round(rate["codelora_binary"] / rate["openr1_style"], 3),
        "ratio_codelora_fraction_over_openr1": round(rate["codelora_fraction"] / rate["openr1_style"], 3),
        "binary_agreement": f"{n - sum(disagree.values())}/{n}",
        "disagreements_by_kind": dict(disagree),
        "passed_by_kind": passed_by_kind,
        "note": args.note,
    }
    print(json.dumps(result, indent=2))
    if not args.no_write:
        out = ROOT / "bench" / "results" / "reward_throughput.json"
        runs = _previous_runs(out)
        runs.append(result)
        part = out.with_suffix(".json.tmp")
        part.write_text(json.dumps({**result, "runs": runs}, indent=2) + "\n")
        os.replace(part, out)
        print(f"wrote {out} ({len(runs)} runs)")


if __name__ == "__main__":
    main()
