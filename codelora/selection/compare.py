"""`codelora compare`: grade every checkpoint on the same problems, choose the best one and say why.

One run (`compare_run`): the base model, every complete checkpoint and `final` (or the models named) are read from
`RUN/eval/<benchmark>/<model>/` (written by `codelora evaluate`; models without results are evaluated first). The
table joins each model with the losses logged at its step (logs/metrics.jsonl). Selection: highest pass@1; ties ->
lower validation loss; ties -> earlier step (then table order, so `checkpoint-N` wins over an identical `final`).
Flags: validation loss rising over consecutive evals while train loss falls, and `final` solving significantly fewer
problems than the best (exact McNemar on the same problems, p < 0.05). Writes RUN/selection.json and
RUN/plots/compare.png, both atomically.

Several runs (`compare_runs`): each run's selected model (its selection.json for the benchmark, else selected here)
and the base model side by side; runs of different base models or problem sets are refused unless forced.

A problem counts as *solved* by a model when at least half of its samples pass (with greedy decoding, the default,
there is one sample: solved = it passes). pass@1 is the mean over problems of the share of passing samples; its 95%
interval is Wilson's (one sample per problem) or a seeded bootstrap over problems (several samples).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import codelora.run.layout as rf
from codelora import benchmarks
from codelora.commands import CompareArgs
from codelora.errors import UserError
from codelora.run import results as run_results
from codelora.run import selection as run_selection
from codelora.run.layout import losses_at, read_metrics, require_run
from codelora.run.selection import SELECTION_VERSION
from codelora.selection.stats import bootstrap_interval, mcnemar_exact, wilson_interval

ALPHA = 0.05
MAX_EXAMPLES = 5
MAX_CODE_CHARS = 4000
__all__ = [
    "SELECTION_VERSION",
    "CompareOptions",
    "compare_command",
    "compare_run",
    "compare_runs",
    "losses_at",
    "read_metrics",
]


# ----------------------------------------------------------------------------------------------------- run folders


def resolve_models(run_dir: Path, requested: list[str] | None) -> tuple[list[dict], list[str]]:
    """The models to compare (run order; every complete one by default) and notes about skipped ones, from the run
    folder's one resolver (`RunFolder.select`); named incomplete or unknown models are errors."""
    run = rf.RunFolder(run_dir)
    available, incomplete = run.models()
    if len(available) == 1:
        extra = f" ({', '.join(sorted(incomplete))} incomplete: no meta.json)" if incomplete else ""
        raise UserError(
            f"{run_dir} has no complete checkpoint and no final adapter{extra}: nothing to compare with the base model"
        )
    records, notes = run.select(requested, default="all")
    order = {m.name: i for i, m in enumerate(available)}
    return [{**m.as_dict(), "record": m} for m in sorted(records, key=lambda m: order[m.name])], notes


# ---------------------------------------------------------------------------------------------- evaluation results


def load_eval(
    run_dir: Path, benchmark: str, name: str, model: rf.Model | None = None, protocol: str | None = None
) -> dict | None:
    """One model's results: summary, per-problem sample outcomes, code of each sample, and `stale` (why they no
    longer match `model`'s weights, None when current); None if not evaluated. protocol: LiveCodeBench's grading
    protocol (None: the default), whose results live in their own folder."""
    ev = run_results.read_result(run_dir, benchmark, model if model is not None else name, protocol)
    return ev.as_dict() if ev is not None else None


def score_of(ev: dict) -> dict:
    """pass@1 (exact fraction and float), its 95% interval, and which problems count as solved."""
    per_problem = {}
    fractions = []
    single = True
    samples = 0
    for pid, by_idx in ev["problems"].items():
        outcomes = [o["passed"] for o in by_idx.values()]
        samples += len(outcomes)
        single = single and len(outcomes) == 1
        frac = Fraction(sum(outcomes), len(outcomes))
        fractions.append(frac)
        per_problem[pid] = 2 * sum(outcomes) >= len(outcomes)
    pass1 = sum(fractions, Fraction(0)) / len(fractions)
    solved = sum(per_problem.values())
    if single:
        lo, hi = wilson_interval(solved, len(per_problem))
        method = "wilson"
    else:
        lo, hi = bootstrap_interval([float(f) for f in fractions])
        method = "bootstrap"
    return {
        "pass1": pass1,
        "pass@1": float(pass1),
        "pass@1_low": lo,
        "pass@1_high": hi,
        "interval": method,
        "solved": solved,
        "problems": len(per_problem),
        "samples": samples,
        "per_problem": per_problem,
    }


# --------------------------------------------------------------------------------------------- selection and flags


def _key_valid(row: dict) -> float:
    # only a loss measured at the model's own step counts; a borrowed one (another step's weights) never decides
    v = row.get("valid_loss")
    return float("inf") if v is None else v


def select_best(rows: list[dict]) -> tuple[str, list[str]]:
    """Highest pass@1; ties -> lower validation loss (missing = worst); ties -> earlier step; then table order.

    `final` and the checkpoint saved at the same step are one model (the same weights), and so are a later
    method's `<method>-final` and `<method>-checkpoint-N` at the same `<method>_step`: they never tie with each
    other, the checkpoint stands for both. Each row needs model, step, pass1 (exact Fraction or float), solved,
    problems and valid_loss. The first reason says why the model was chosen ("X chosen because ...").
    """
    if not rows:
        raise UserError("no evaluated models to choose from")

    def p1(r: dict):
        return r["pass1"] if "pass1" in r else Fraction(r["pass@1"]).limit_denominator(10**9)

    def step(r: dict) -> int:
        return r["step"] if r.get("step") is not None else 10**12

    def own(r: dict) -> tuple[str, Any]:
        """(name prefix, step) in the model's own method's steps: ("", 8) for final, ("rl-", 2) for rl-final."""
        name = str(r["model"])
        for key, value in r.items():
            method = key.removesuffix("_step")
            if key.endswith("_step") and value is not None and name.startswith(method + "-"):
                return method + "-", value
        return "", r.get("step")

    # a method's final and its checkpoint saved at the same step are one model: the checkpoint stands for both
    ck_steps = {own(r): r["model"] for r in rows if str(r["model"]).removeprefix(own(r)[0]).startswith("checkpoint-")}
    same = {
        r["model"]: ck_steps[own(r)]
        for r in rows
        if str(r["model"]).removeprefix(own(r)[0]) == "final" and own(r) in ck_steps
    }
    twin = {ck: final for final, ck in same.items()}

    def also_of(r: dict) -> str:
        if r["model"] not in twin:
            return ""
        prefix, at = own(r)
        where = f"{prefix[:-1]} step {at}" if prefix else f"step {at}"
        return f" ({twin[r['model']]} is the same model: the weights at {where})"

    candidates = [r for r in rows if r["model"] not in same]
    top = max(p1(r) for r in candidates)
    tied = [r for r in candidates if p1(r) == top]
    best = tied[0]
    also = also_of(best)
    score = f"{float(top):.3f}, {best['solved']}/{best['problems']} solved"
    if len(tied) == 1:
        others = sorted((r for r in rows if r is not best and r["model"] not in same), key=p1, reverse=True)
        lead = f"{best['model']} chosen because it has the highest pass@1 ({score}){also}"
        if others:
            lead += f"; next: {others[0]['model']} ({float(p1(others[0])):.3f})"
        return best["model"], [lead]
    names = ", ".join(r["model"] for r in tied[1:])
    low = min(_key_valid(r) for r in tied)
    tied2 = [r for r in tied if _key_valid(r) == low]
    if len(tied2) == 1:
        best = tied2[0]
        names = ", ".join(r["model"] for r in tied if r is not best)
        rest = sorted((r for r in tied if r is not best), key=_key_valid)
        if rest[0].get("valid_loss") is None:  # e.g. an RL model: no validation loss is logged for it
            loss = f"a validation loss ({fmt(best.get('valid_loss'))}; {rest[0]['model']} has none)"
        else:
            loss = (
                f"the lower validation loss ({fmt(best.get('valid_loss'))} < {fmt(rest[0].get('valid_loss'))} of "
                f"{rest[0]['model']})"
            )
        return best["model"], [
            f"{best['model']} chosen because it shares the highest pass@1 ({float(top):.3f}, with {names}) and has "
            f"{loss}{also_of(best)}"
        ]
    valid = "no validation loss" if low == float("inf") else f"the same validation loss ({fmt(low)})"
    first = min(step(r) for r in tied2)
    tied3 = [r for r in tied2 if step(r) == first]
    best = tied3[0]
    names = ", ".join(r["model"] for r in tied if r is not best)
    also = also_of(best)
    at = "no SFT step" if first == 10**12 else f"the step ({first})"
    if len(tied3) < len(tied2):
        return best["model"], [
            f"{best['model']} chosen because it shares the highest pass@1 ({float(top):.3f}, with {names}) and "
            f"{valid} with {', '.join(r['model'] for r in tied2 if r is not best)}, and is the earliest step "
            f"({first}){also}"
        ]
    return best["model"], [
        f"{best['model']} chosen by the last tie-break: it shares the highest pass@1 ({float(top):.3f}), {valid} and "
        f"{at} with {', '.join(r['model'] for r in tied3[1:])}, and is listed first{also}"
    ]


def fmt(x: Any, digits: int = 4) -> str:
    """A table cell: "-" for None, floats with `digits` decimals."""
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def loss_flags(metrics: list[dict], min_rises: int = 2) -> list[dict]:
    """Validation loss rising at `min_rises` or more consecutive evals while the train loss falls over that span."""
    evals: dict[int, float] = {}
    for r in metrics:
        if r.get("valid_loss") is not None:
            evals[r["step"]] = r["valid_loss"]
    steps = sorted(evals)

    def train_at(s: int):
        val = None
        for r in metrics:
            if r["step"] > s:
                break
            if r.get("train_loss") is not None:
                val = r["train_loss"]
        return val

    flags = []
    i = 1
    while i < len(steps):
        if evals[steps[i]] <= evals[steps[i - 1]]:
            i += 1
            continue
        start = i - 1
        while i < len(steps) and evals[steps[i]] > evals[steps[i - 1]]:
            i += 1
        span = steps[start:i]
        rises = len(span) - 1
        if rises < min_rises:
            continue
        trains = [(s, train_at(s)) for s in span if train_at(s) is not None]
        if len(trains) >= 2 and trains[-1][1] < trains[0][1]:
            v = " -> ".join(f"{evals[s]:.4f}" for s in span)
            flags.append(
                {
                    "kind": "validation_loss_rising",
                    "steps": span,
                    "valid_loss": [evals[s] for s in span],
                    "train_loss": [t for _, t in trains],
                    "message": (
                        f"overfitting: validation loss rose at {rises} consecutive evals (steps "
                        f"{span[0]}-{span[-1]}: {v}) while train loss fell ({trains[0][1]:.4f} -> {trains[-1][1]:.4f})"
                    ),
                }
            )
    return flags


def paired_test(a: str, sa: dict, b: str, sb: dict) -> dict:
    """Exact McNemar of two models on the problems both were graded on."""
    common = sorted(set(sa["per_problem"]) & set(sb["per_problem"]))
    a_only = sum(1 for p in common if sa["per_problem"][p] and not sb["per_problem"][p])
    b_only = sum(1 for p in common if sb["per_problem"][p] and not sa["per_problem"][p])
    both = sum(1 for p in common if sa["per_problem"][p] and sb["per_problem"][p])
    return {
        "a": a,
        "b": b,
        "problems": len(common),
        "a_only": a_only,
        "b_only": b_only,
        "both": both,
        "neither": len(common) - a_only - b_only - both,
        "p_value": mcnemar_exact(a_only, b_only),
        "test": "exact McNemar (two-sided)",
    }


def final_flag(test: dict, alpha: float = ALPHA) -> dict | None:
    """Flag when the final model (test['b']) solves significantly fewer problems than the best (test['a'])."""
    if test["a_only"] > test["b_only"] and test["p_value"] < alpha:
        return {
            "kind": "final_worse_than_best",
            **{k: test[k] for k in ("a", "b", "a_only", "b_only", "p_value")},
            "message": (
                f"overfitting: {test['b']} solves significantly fewer problems than {test['a']} "
                f"({test['a_only']} only by {test['a']}, {test['b_only']} only by {test['b']}, of {test['problems']} "
                f"common problems; exact McNemar p = {test['p_value']:.4g} < {alpha})"
            ),
        }
    return None


# Wider than this (the 95% interval of a pass@1 of 0.5) and a comparison's problem set is called too small.
SMALL_SET_WIDTH = 0.35


def size_flag(problems: int, alpha: float = ALPHA) -> dict | None:
    """A warning when `problems` (graded per model) are too few to separate checkpoints: fewer than the number an
    exact McNemar test needs to reach p < alpha even when one model solves every problem the other misses, or so
    few that the 95% Wilson interval of a pass@1 of 0.5 is wider than SMALL_SET_WIDTH (below ~31 problems)."""
    need = next(k for k in range(1, 64) if mcnemar_exact(k, 0) < alpha)
    lo, hi = wilson_interval(problems // 2, problems)
    if problems >= need and hi - lo <= SMALL_SET_WIDTH:
        return None
    if problems < need:
        why = (
            f"no two models can be told apart: an exact McNemar test needs at least {need} problems solved by one "
            f"model and not the other for p < {alpha}"
        )
    else:
        why = (
            f"a pass@1 of {problems // 2}/{problems} has the 95% interval [{lo:.2f}, {hi:.2f}], and two models differ "
            f"significantly only when one solves at least {need} problems the other does not"
        )
    return {
        "kind": "few_problems",
        "problems": problems,
        "message": (
            f"only {problems} problems: {why}; read the ranking as a hint (a larger test split, data.test_fraction, "
            "or another benchmark separates checkpoints better)"
        ),
    }


# --------------------------------------------------------------------------------------------------- consistency


def _signature(ev: dict) -> dict:
    s = ev["summary"]
    return {
        "benchmark": s.get("benchmark"),
        "protocol": (s.get("provenance") or {}).get("protocol"),
        "generator": (s.get("provenance") or {}).get("generator"),
        "tests": tests_of(s),
        "prompts_sha256": s.get("prompts_sha256"),
        "sampling": s.get("sampling"),
        "problems": sorted(ev["problems"]),
    }


def tests_of(summary: dict) -> str | None:
    """Which test set graded a result (heldout's --tests); heldout results made before the choice existed were
    graded on the statement examples."""
    tests = (summary.get("benchmark_info") or {}).get("tests")
    if (
        tests is None
        and summary.get("benchmark") == "heldout"
        and (summary.get("benchmark_info") or {}).get("test_problems")
    ):
        return "examples"
    return tests


def check_consistent(evals: dict[str, dict], force: bool) -> list[dict]:
    """Refuse models graded on different problems, prompts or sampling unless forced; forced -> flags."""
    names = list(evals)
    ref_name = names[0]
    ref = _signature(evals[ref_name])
    flags = []
    for name in names[1:]:
        sig = _signature(evals[name])
        for key, label in (
            ("benchmark", "benchmark"),
            ("protocol", "protocol"),
            ("generator", "generation backends (llama.cpp's quantised base or transformers)"),
            ("problems", "problem set"),
            ("tests", "tests (heldout --tests)"),
            ("prompts_sha256", "prompts"),
            ("sampling", "sampling settings"),
        ):
            if sig[key] == ref[key]:
                continue
            detail = "" if key == "problems" else f": {ref[key]!r} vs {sig[key]!r}"
            msg = f"{ref_name} and {name} were evaluated with different {label}{detail}"
            if not force:
                raise UserError(f"{msg}; re-evaluate them alike, or pass --force to compare anyway (marked)")
            flags.append({"kind": "forced", "models": [ref_name, name], "differs": key, "message": f"forced: {msg}"})
    return flags


# ------------------------------------------------------------------------------------------------ per-problem view


def problem_labels(run_dir: Path | None, benchmark: str, evals: dict[str, dict]) -> dict[str, str]:
    """{task id: how people call the problem} for every problem of `evals`: the evaluations' own `problem_labels`
    (title or the dataset's id, see benchmarks.base.problem_label), else for the held-out benchmark the titles in
    the run's eval/heldout/problems.jsonl (results written before labels were recorded), else the id itself."""
    from codelora.benchmarks.base import problem_label

    labels: dict[str, str] = {}
    for ev in evals.values():
        labels.update((ev.get("summary") or {}).get("problem_labels") or {})
    ids = {p for ev in evals.values() for p in ev["problems"]}
    missing = ids - set(labels)
    if missing and run_dir is not None and benchmark == "heldout":
        path = rf.ResultFolder(rf.eval_dir(run_dir, "heldout")).problems_file
        try:
            for line in path.read_text(encoding="utf-8").splitlines():
                rec = json.loads(line) if line.strip() else None
                if isinstance(rec, dict) and str(rec.get("task_id")) in missing:
                    labels[str(rec["task_id"])] = problem_label(rec, str(rec["task_id"]))
        except (OSError, ValueError):
            pass  # no titles: the ids stand
    return {p: labels.get(p, p) for p in sorted(ids)}


def label_of(doc: dict, pid: str) -> str:
    """The label a selection document records for problem `pid` (the id when it has none)."""
    return (doc.get("labels") or {}).get(pid, pid)


def build_matrix(scores: dict[str, dict]) -> dict:
    """Problems x models solved matrix from `score_of` results: {problems (sorted ids), models, solved {model: [bool | None
    per problem]}, disagreements (problems the models do not all solve or all fail)}."""
    problems = sorted({p for s in scores.values() for p in s["per_problem"]})
    solved = {m: [s["per_problem"].get(p) for p in problems] for m, s in scores.items()}
    disagree = [p for i, p in enumerate(problems) if len({v[i] for v in solved.values() if v[i] is not None}) > 1]
    return {"problems": problems, "models": list(scores), "solved": solved, "disagreements": disagree}


def build_examples(
    evals: dict[str, dict], matrix: dict, chosen: list[str] | None, best: str, final: str | None
) -> list[dict]:
    """Each model's first-sample answer to chosen problems (default: where models disagree, best-vs-final first)."""
    if chosen:
        known = set(matrix["problems"])
        for p in chosen:
            if p not in known:
                raise UserError(
                    f"--problems: no problem {p!r} in the results (known: {', '.join(matrix['problems'][:8])}...)"
                )
        picks = list(chosen)
    else:
        dis = matrix["disagreements"]
        col = {m: dict(zip(matrix["problems"], v, strict=True)) for m, v in matrix["solved"].items()}
        if final and final in col and best in col:
            first = [p for p in dis if col[best][p] != col[final][p]]
        else:
            first = []
        picks = (first + [p for p in dis if p not in first])[:MAX_EXAMPLES] or matrix["problems"][:2]
    out = []
    for pid in picks:
        answers = []
        for name, ev in evals.items():
            by_idx = ev["problems"].get(pid)
            if not by_idx:
                answers.append({"model": name, "verdict": None, "passed": None, "code": None, "first_failure": None})
                continue
            idx = min(by_idx)
            code = ev["code"].get((pid, idx))
            if code is not None and len(code) > MAX_CODE_CHARS:
                code = code[:MAX_CODE_CHARS] + f"\n# ... ({len(code) - MAX_CODE_CHARS} more characters)"
            o = by_idx[idx]
            answers.append(
                {
                    "model": name,
                    "sample_index": idx,
                    "verdict": o["verdict"],
                    "passed": o["passed"],
                    "code": code,
                    "first_failure": o["first_failure"],
                }
            )
        out.append({"problem": pid, "answers": answers})
    return out


# ------------------------------------------------------------------------------------------------------- one run


def matching_options(existing: dict | None) -> dict:
    """evaluate() options that reproduce an existing evaluation's sampling and problem count, so new results pair
    with it (greedy keeps the run's configured temperature: passing 0 would change the recorded settings)."""
    if not existing:
        return {}
    s = existing["summary"].get("sampling") or {}
    opts: dict[str, Any] = {k: s[k] for k in ("n", "top_p", "max_new_tokens", "seed") if s.get(k) is not None}
    if s.get("greedy") is False and s.get("temperature") is not None:
        opts["temperature"] = s["temperature"]
    prov = existing["summary"].get("provenance")
    # the same problem set: a full evaluation stays full (no --limit), a limited one keeps its limit
    opts["limit"] = prov.get("limit") if isinstance(prov, dict) else len(existing["problems"])
    if tests_of(existing["summary"]):  # graded on the same test set (heldout: examples, generated or all)
        opts["tests"] = tests_of(existing["summary"])
    generator = prov.get("generator") if isinstance(prov, dict) else None
    if generator:  # answered by llama.cpp: the models evaluated now are too, on the same GGUF
        opts["backend"] = generator.get("backend")
        opts["gguf"] = (existing["summary"].get("generation") or {}).get("gguf")
    return opts


def _evaluate_missing(run_dir: Path, benchmark: str, names: list[str], options: dict) -> None:
    from codelora.evaluation.evaluate import evaluate  # imported here: compare --no-evaluate never needs it

    print(f"evaluating {', '.join(names)} on {benchmark} (not evaluated yet)", file=sys.stderr)
    evaluate(run_dir, benchmark, models=names, **options)


@dataclass(frozen=True)
class CompareOptions:
    """How `compare_run` and `compare_runs` compare.

    force: compare results of different base models, problems, prompts, sampling or protocols (marked). problems:
    the problem ids shown side by side (default: where models disagree). evaluate_missing: evaluate models without
    current results first (False: use stored results only). evaluate_options: `evaluate` options for those
    (EvalOptions fields). write: write selection.json and the plot. protocol: the grading protocol whose results
    are compared (benchmarks with protocols; None: the default); models evaluated now are evaluated under it.
    """

    force: bool = False
    problems: list[str] | None = None
    evaluate_missing: bool = True
    evaluate_options: dict | None = None
    write: bool = True
    protocol: str | None = None


def compare_run(
    run_dir: str | Path,
    benchmark: str = "heldout",
    models: list[str] | None = None,
    opts: CompareOptions | None = None,
    **options: Any,
) -> dict:
    """Compare a run's models on one benchmark; return (and by default write) the selection document.

    models: names (base, checkpoint-<step>, final, all; default all). opts: `CompareOptions`; `options` are its
    fields overriding opts. The protocol is recorded in the selection document. Raises UserError for a folder
    that is not a run, unknown models, missing or stale results, or results not comparable without force."""
    o = replace(opts or CompareOptions(), **options)
    force, problems, write = o.force, o.problems, o.write
    run_dir = require_run(run_dir)
    protocol = _protocol_name(benchmark, o.protocol)
    where = f"{run_dir}/eval/{rf.eval_folder(benchmark, protocol)}/"
    entries, notes = resolve_models(run_dir, models)
    with rf.run_lock(run_dir, f"compare {benchmark}"):

        def load() -> tuple[dict, list[str]]:
            evals = {m["name"]: load_eval(run_dir, benchmark, m["name"], m["record"], protocol) for m in entries}
            # a stale result (computed from weights that have since changed) counts as not evaluated
            return evals, [n for n, ev in evals.items() if ev is None or ev["stale"]]

        evals, missing = load()
        if missing and o.evaluate_missing:
            existing = next((ev for ev in evals.values() if ev is not None and not ev["stale"]), None)
            eval_options = {**matching_options(existing), **(o.evaluate_options or {})}
            if protocol is not None:
                eval_options["protocol"] = protocol
            _evaluate_missing(run_dir, benchmark, missing, eval_options)
            evals, missing = load()
        if missing:
            if not o.evaluate_missing and len(missing) < len(evals):
                for n in missing:
                    why = f"stale ({evals[n]['stale']})" if evals[n] else "not evaluated yet"
                    notes.append(f"left out {n}: {why} on {benchmark}")
                entries = [m for m in entries if m["name"] not in missing]
                evals = {n: ev for n, ev in evals.items() if n not in missing}
            else:
                stale = [n for n in missing if evals[n]]
                if stale:
                    raise UserError(
                        f"the {benchmark} results of {', '.join(stale)} in {where} are stale "
                        f"({evals[stale[0]]['stale']}); evaluate them again"
                    )
                raise UserError(f"no {benchmark} results for {', '.join(missing)} in {where}")
        full = (
            (not models or models == ["all"])
            and not problems
            and not notes_left_out(notes)
            and all(ev["summary"].get("provenance", {}).get("limit") is None for ev in evals.values())
        )
        doc = _finish(run_dir, benchmark, entries, evals, notes, force, problems)
        doc["protocol"] = protocol
        doc["full"] = full
        if write and full:
            plot = rf.RunFolder(run_dir).plot("compare")
            if run_selection.write_selection(run_dir, doc) or not plot.is_file():
                plot_run(plot, doc["table"], read_metrics(run_dir), doc["best"], benchmark)
        elif write:
            doc["notes"].append(
                "a view (restricted by --models, --problems, --limit or left-out models): `export --checkpoint best` "
                "reads only a full comparison"
            )
    return doc


def _protocol_name(benchmark: str, protocol: str | None) -> str | None:
    """The benchmark's grading protocol's name (its default when None), None for a benchmark without protocols;
    UserError for an unknown benchmark, a protocol given to a benchmark without protocols, or an unknown name."""
    proto = benchmarks.get(benchmark).protocol(protocol)
    return proto.name if proto is not None else None


def notes_left_out(notes: list[str]) -> bool:
    """True when models were left out of the comparison (skipped incomplete folders do not count)."""
    return any(n.startswith("left out ") for n in notes)


def _verdict(reasons, flags, notes, rows, tests, matrix, examples) -> dict:
    """The part of a selection document both `compare --run` and `--runs` write: why, what was flagged, the table,
    the paired tests, the solved matrix and the side-by-side examples (in this key order)."""
    return {
        "reasons": reasons,
        "flags": flags,
        "notes": notes,
        "table": rows,
        "paired_tests": tests,
        "matrix": matrix,
        "examples": examples,
    }


SCORE_KEYS = ("pass@1", "pass@1_low", "pass@1_high", "interval", "solved", "problems", "samples")


def _table_row(name: str, step: int, epoch, metrics: list[dict], score: dict, note: str = "", **extra) -> dict:
    """One row of a selection table: the model (and `extra`, e.g. its run), step, epoch, the losses logged at that
    step, pass@1 with its interval and counts (from `score_of`), and a note."""
    return {
        "model": name,
        **extra,
        "step": step,
        "epoch": epoch,
        **losses_at(metrics, step),
        **{k: score[k] for k in SCORE_KEYS},
        "note": note,
    }


def _finish(run_dir, benchmark, entries, evals, notes, force, problems) -> dict:
    flags = check_consistent(evals, force)
    forced = {n for f in flags for n in f["models"]}
    metrics = read_metrics(run_dir)
    scores = {n: score_of(ev) for n, ev in evals.items()}
    steps = {m["name"]: m["step"] for m in entries}
    rows = []
    for m in entries:
        s = scores[m["name"]]
        if m["record"].method != "sft":
            # a later method's model (rl-checkpoint-N, rl-final): its step counts that method's steps, which the SFT
            # losses and the step tie-break know nothing of (step None: after every SFT model)
            start = (m["record"].meta.get("provenance") or {}).get("start") or {}
            note = f"{m['record'].method} step {m['step']} from {start.get('model', '?')}"
            row = _table_row(m["name"], None, None, metrics, s, note)
            row[f"{m['record'].method}_step"] = m["step"]
        else:
            row = _table_row(m["name"], m["step"], m["epoch"], metrics, s)
        if m["name"] == "base":
            row["train_loss"] = None  # nothing trained yet at step 0
        if m["kind"] == "final":
            dup = [n for n, st in steps.items() if n.startswith("checkpoint-") and st == m["step"]]
            if dup:
                row["note"] = f"same step as {dup[0]}"
        if m["name"] in forced:
            row["note"] = (row["note"] + "; " if row["note"] else "") + "forced"
            row["forced"] = True
        rows.append(row)
    best, reasons = select_best([{**r, "pass1": scores[r["model"]]["pass1"]} for r in rows])
    tests = []
    if best != "base" and "base" in scores:
        t = paired_test(best, scores[best], "base", scores["base"])
        tests.append(t)
        reasons.append(
            f"vs base: {t['a_only']} problems solved only by {best}, {t['b_only']} only by base "
            f"(exact McNemar p = {t['p_value']:.4g})"
        )
    elif best == "base":
        reasons.append("no fine-tuned model beats the base model on this benchmark")
    flags += loss_flags(metrics)
    small = size_flag(min(sc["problems"] for sc in scores.values()))
    final = "final" if "final" in scores else None
    if final and best != final and steps.get(final) != steps.get(best):  # the same step: the same weights
        t = paired_test(best, scores[best], final, scores[final])
        tests.append(t)
        flag = final_flag(t)
        if flag:
            flags.append(flag)
        else:
            reasons.append(
                f"final vs {best}: {t['b_only']} solved only by final, {t['a_only']} only by {best} "
                f"(p = {t['p_value']:.4g}: not a significant drop)"
            )
    matrix = build_matrix(scores)
    best_entry = next((m for m in entries if m["name"] == best), None)
    doc = {
        "version": SELECTION_VERSION,
        "benchmark": benchmark,
        "protocol": _signature(evals[best]).get("protocol"),
        "best": best,
        "best_step": steps.get(best),
        "best_adapter": rf.relative_to_run(best_entry["adapter"], run_dir) if best_entry else None,
        "best_weights_sha256": best_entry["record"].weights_sha256() if best_entry else None,
        "best_adapter_sha256": best_entry["record"].adapter_sha256() if best_entry else None,
        "result_keys": {n: ev["summary"].get("result_key") for n, ev in evals.items()},
        **_verdict(reasons, flags, notes, rows, tests, matrix, build_examples(evals, matrix, problems, best, final)),
        "evaluation": {k: v for k, v in _signature(next(iter(evals.values()))).items() if k != "problems"},
        "warnings": [small] if small else [],  # not a verdict on a model: about how far the problem set can tell
        "labels": problem_labels(run_dir, benchmark, evals),  # task id -> title or the dataset's own id
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return doc


# ------------------------------------------------------------------------------------------------------ many runs


def compare_runs(
    run_dirs: list[str | Path],
    benchmark: str = "heldout",
    out: str | Path | None = None,
    opts: CompareOptions | None = None,
    **options: Any,
) -> dict:
    """The selected model of each run and the base model in one table, plot and selection.json under `out`
    (default: <parent of the first run>/compare-<run names>); opts/options as for `compare_run`.

    Protocols: each run's selection.json says which protocol chose its model. With `protocol` given, a run
    selected under another one is selected again under it; without, runs selected under different protocols are
    refused (their numbers are not comparable) unless `force`, which marks every row."""
    o = replace(opts or CompareOptions(), **options)
    force, problems, write = o.force, o.problems, o.write
    if len(run_dirs) < 2:
        raise UserError("--runs needs at least two run folders")
    wanted_protocol = _protocol_name(benchmark, o.protocol) if o.protocol is not None else None
    runs = [require_run(r) for r in run_dirs]
    labels = [r.name for r in runs]
    if len(set(labels)) != len(labels):
        labels = [str(r) for r in runs]
    cfgs = [rf.load_run_config(r) for r in runs]
    flags: list[dict] = []
    bases = {(c.model.source, c.model.revision) for c in cfgs}
    if len(bases) > 1:
        desc = ", ".join(f"{lab} uses {c.model.source}" for lab, c in zip(labels, cfgs, strict=True))
        if not force:
            raise UserError(f"runs have different base models ({desc}); pass --force to compare anyway (marked)")
        flags.append(
            {
                "kind": "forced",
                "models": [],
                "differs": "base_model",
                "message": f"forced: different base models ({desc})",
            }
        )
    selections = []
    for r in runs:
        try:
            sel = run_selection.read_selection(r)
        except UserError:  # stale (its best model was retrained since): choose again
            sel = None
        other_protocol = wanted_protocol is not None and sel is not None and sel.get("protocol") != wanted_protocol
        if not sel or sel.get("benchmark") != benchmark or "best" not in sel or other_protocol:
            sel = compare_run(r, benchmark, opts=replace(o, problems=None, protocol=wanted_protocol))
        selections.append(sel)
    # selection.json files written before protocols were recorded hold none: LiveCodeBench's default
    protocols = [_protocol_name(benchmark, sel.get("protocol")) for sel in selections]
    if len(set(protocols)) > 1:
        desc = ", ".join(f"{lab} under {p}" for lab, p in zip(labels, protocols, strict=True))
        msg = f"the runs' models were selected under different {benchmark} protocols ({desc})"
        if not force:
            raise UserError(f"{msg}; pass --protocol to compare them under one, or --force to compare anyway (marked)")
        flags.append({"kind": "forced", "models": [], "differs": "protocol", "message": f"forced: {msg}"})
    entries, evals, notes = [], {}, []
    shared_base = len(bases) == 1
    for i, (r, lab, sel) in enumerate(zip(runs, labels, selections, strict=True)):
        want = ["base", sel["best"]] if (i == 0 or not shared_base) else [sel["best"]]
        if sel["best"] == "base":
            want = ["base"] if (i == 0 or not shared_base) else []
            notes.append(f"{lab}: its selected model is the base model")
        folder = f"{r}/eval/{rf.eval_folder(benchmark, protocols[i])}"
        for name in want:
            ev = load_eval(r, benchmark, name, rf.find_model(r, name), protocols[i])
            if ev is not None and ev["stale"]:
                raise UserError(f"{folder}/{name}: stale ({ev['stale']}); run codelora compare --run {r}")
            if ev is None:
                raise UserError(f"no {benchmark} results for {name} in {folder}/ (run codelora compare --run {r})")
            row_name = "base" if (name == "base" and shared_base) else f"{lab}:{name}"
            step = next((row["step"] for row in sel["table"] if row["model"] == name), 0)
            epoch = next((row["epoch"] for row in sel["table"] if row["model"] == name), 0.0)
            entries.append({"name": row_name, "run": lab, "run_dir": r, "model": name, "step": step, "epoch": epoch})
            evals[row_name] = ev
    flags += check_consistent(evals, force)
    forced = {n for f in flags for n in f["models"]}
    if any(f["differs"] in ("base_model", "protocol") for f in flags if f["kind"] == "forced"):
        forced |= set(evals)
    scores = {n: score_of(ev) for n, ev in evals.items()}
    rows = []
    for e in entries:
        s = scores[e["name"]]
        note = "forced" if e["name"] in forced else ""
        row = _table_row(e["name"], e["step"], e["epoch"], read_metrics(e["run_dir"]), s, note, run=e["run"])
        if e["model"] == "base":
            row["train_loss"] = None
        if e["name"] in forced:
            row["forced"] = True
        rows.append(row)
    best, reasons = select_best([{**r, "pass1": scores[r["model"]]["pass1"]} for r in rows])
    tests = [paired_test(best, scores[best], n, scores[n]) for n in scores if n != best]
    for t in tests:
        reasons.append(
            f"vs {t['b']}: {t['a_only']} problems solved only by {best}, {t['b_only']} only by {t['b']} "
            f"(exact McNemar p = {t['p_value']:.4g})"
        )
    matrix = build_matrix(scores)
    out_dir = Path(out) if out else runs[0].parent / ("compare-" + "-".join(r.name for r in runs))
    doc = {
        "version": SELECTION_VERSION,
        "runs": [str(r) for r in runs],
        "benchmark": benchmark,
        "protocol": protocols[0] if len(set(protocols)) == 1 else protocols,
        "best": best,
        **_verdict(reasons, flags, notes, rows, tests, matrix, build_examples(evals, matrix, problems, best, None)),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "out": str(out_dir),
    }
    plot = rf.RunFolder(out_dir).plot("compare")
    if write and (run_selection.write_selection(out_dir, doc) or not plot.is_file()):
        plot_runs(plot, runs, labels, selections, best, benchmark)
    return doc


# ---------------------------------------------------------------------------------------------------------- plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    plt = _pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("." + path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def _pass_series(rows: list[dict], ax, label: str, marker: str = "o-") -> None:
    pts = sorted(
        (r for r in rows if r["step"] is not None and not r["model"].endswith("final")), key=lambda r: r["step"]
    )
    if pts:
        xs = [r["step"] for r in pts]
        ys = [r["pass@1"] for r in pts]
        err = [
            [y - r["pass@1_low"] for y, r in zip(ys, pts, strict=True)],
            [r["pass@1_high"] - y for y, r in zip(ys, pts, strict=True)],
        ]
        ax.errorbar(xs, ys, yerr=err, fmt=marker, capsize=3, label=label)
    for r in rows:
        if r["model"].endswith("final") and r["step"] is not None:
            ax.plot([r["step"]], [r["pass@1"]], "D", markerfacecolor="none", markersize=9, label=f"{label} final")


def plot_run(path: Path, rows: list[dict], metrics: list[dict], best: str, benchmark: str) -> None:
    """pass@1 (with 95% intervals) and losses against step; the chosen model marked."""
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True)
    _pass_series(rows, ax1, "pass@1")
    b = next(r for r in rows if r["model"] == best)
    if b["step"] is not None:
        ax1.plot([b["step"]], [b["pass@1"]], "*", color="red", markersize=16, label=f"selected: {best}")
    ax1.set_ylabel(f"pass@1 ({benchmark})")
    ax1.set_ylim(-0.02, 1.02)
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    for key, style in (("train_loss", "-"), ("valid_loss", "o-"), ("test_loss", "s--")):
        pts = [(r["step"], r[key]) for r in metrics if r.get(key) is not None]
        if pts:
            ax2.plot([p[0] for p in pts], [p[1] for p in pts], style, label=key.replace("_loss", ""))
    if b["step"] is not None:
        ax2.axvline(b["step"], color="red", linestyle=":", label="selected")
    ax2.set_xlabel("step")
    ax2.set_ylabel("loss")
    ax2.grid(alpha=0.3)
    if ax2.get_legend_handles_labels()[0]:
        ax2.legend(fontsize=8)
    fig.suptitle("checkpoint comparison")
    fig.tight_layout()
    _save(fig, path)


def plot_runs(
    path: Path, runs: list[Path], labels: list[str], selections: list[dict], best: str, benchmark: str
) -> None:
    """Each run's pass@1 and validation/train loss against step; each run's selected model starred."""
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True)
    for r, lab, sel in zip(runs, labels, selections, strict=True):
        _pass_series(sel["table"], ax1, lab)
        chosen = next((row for row in sel["table"] if row["model"] == sel["best"]), None)
        if chosen and chosen["step"] is not None:
            star = "*" if f"{lab}:{sel['best']}" != best else "P"
            ax1.plot([chosen["step"]], [chosen["pass@1"]], star, markersize=15, label=f"{lab}: {sel['best']}")
        metrics = read_metrics(r)
        for key, style in (("train_loss", "-"), ("valid_loss", "o-")):
            pts = [(m["step"], m[key]) for m in metrics if m.get(key) is not None]
            if pts:
                ax2.plot([p[0] for p in pts], [p[1] for p in pts], style, label=f"{lab} {key.replace('_loss', '')}")
    ax1.set_ylabel(f"pass@1 ({benchmark})")
    ax1.set_ylim(-0.02, 1.02)
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=7)
    ax2.set_xlabel("step")
    ax2.set_ylabel("loss")
    ax2.grid(alpha=0.3)
    if ax2.get_legend_handles_labels()[0]:
        ax2.legend(fontsize=7)
    fig.suptitle(f"runs compared (best: {best})")
    fig.tight_layout()
    _save(fig, path)


# ---------------------------------------------------------------------------------------------------------- print


TABLE_HEAD = ["model", "step", "epoch", "train loss", "valid loss", "test loss", "pass@1 [95% CI]", "solved", "note"]


def table_cells(row: dict) -> list[str]:
    """One table row as strings (shared by the console table and the report)."""
    epoch = row.get("epoch")
    return [
        row["model"],
        fmt(row.get("step")),
        "-" if epoch is None else f"{epoch:.2f}",
        fmt(row.get("train_loss")),
        _loss_cell(row, "valid"),
        _loss_cell(row, "test"),
        f"{row['pass@1']:.3f} [{row['pass@1_low']:.3f}, {row['pass@1_high']:.3f}]",
        f"{row['solved']}/{row['problems']}",
        row.get("note") or "",
    ]


def _loss_cell(row: dict, which: str) -> str:
    """A loss at the model's own step, or one borrowed from an earlier eval, marked with its step."""
    own = row.get(f"{which}_loss")
    if own is not None or row.get(f"borrowed_{which}_loss") is None:
        return fmt(own)
    return f"{fmt(row[f'borrowed_{which}_loss'])} (step {row.get('loss_step')})"


def generator_label(evaluation: dict | None) -> str:
    """ "; answers by llama.cpp on GGUF <sha>" for a selection whose answers came from the llamacpp backend, else
    "" (transformers on the model's own weights)."""
    generator = (evaluation or {}).get("generator")
    if not generator:
        return ""
    return f"; answers by {generator.get('backend')} on the quantised GGUF {str(generator.get('gguf_sha256'))[:12]}"


def protocol_label(protocol: str | list | None) -> str:
    """ " (course protocol)" for a table title; "" for benchmarks without protocols."""
    if not protocol:
        return ""
    if isinstance(protocol, list):
        return f" (protocols: {', '.join(str(p) for p in protocol)})"
    return f" ({protocol} protocol)"


def print_selection(doc: dict, path_note: str, show_examples: bool = False) -> None:
    """Print a selection document (table, best model and reasons, flags; with show_examples the side-by-side
    answers) to the terminal with rich, then `path_note` (where it was written)."""
    from rich.console import Console
    from rich.table import Table

    from codelora.safetext import terminal_safe

    # A pipe or log file gets a wide table instead of rich's 80-column default, so cells do not wrap.
    console = Console(width=None if sys.stdout.isatty() else 160)
    what = "runs" if "runs" in doc else "checkpoints"
    title = f"{doc['benchmark']}{protocol_label(doc.get('protocol'))}: {what} compared"
    table = Table(title=title + generator_label(doc.get("evaluation")))
    for h in TABLE_HEAD:
        table.add_column(h, justify="left" if h in ("model", "note") else "right")
    for row in doc["table"]:
        style = "bold green" if row["model"] == doc["best"] else None
        table.add_row(*table_cells(row), style=style)
    console.print(table)
    m = doc["matrix"]
    if m["problems"] and len(m["problems"]) <= 80:
        order = ", ".join(f"{i}: {label_of(doc, p)}" for i, p in enumerate(m["problems"][:12], 1))
        more = f", ... ({len(m['problems'])} in all)" if len(m["problems"]) > 12 else ""
        console.print(
            terminal_safe(f"per problem (# solved, . not solved), in this order: {order}{more}"), markup=False
        )
        mt = Table(show_header=True)
        mt.add_column("model")
        mt.add_column("problems 1.." + str(len(m["problems"])))
        for name, vals in m["solved"].items():
            mt.add_row(name, "".join("#" if v else ("." if v is not None else " ") for v in vals))
        console.print(mt)
    if m["disagreements"]:
        names = [label_of(doc, p) for p in m["disagreements"][:10]]
        shown = ", ".join(names) + (" ..." if len(m["disagreements"]) > 10 else "")
        console.print(terminal_safe(f"models disagree on {len(m['disagreements'])} problems: {shown}"), markup=False)
    if show_examples:
        for ex in doc["examples"]:
            side = Table(title=terminal_safe(f"problem {label_of(doc, ex['problem'])}"), show_lines=True)
            for a in ex["answers"]:
                side.add_column(f"{a['model']}: {a['verdict'] or 'not graded'}", overflow="fold")
            cells = []
            for a in ex["answers"]:
                f = a.get("first_failure") or {}
                fail = "".join(f"\n{k}: {f[k]}" for k in ("input", "expected", "got", "detail") if f.get(k))
                cells.append((a.get("code") or "(no code)") + (f"\n--- first failing test ---{fail}" if fail else ""))
            side.add_row(*(terminal_safe(c) for c in cells))  # program output may hold escape sequences
            console.print(side, markup=False)
    console.print(f"[bold]selected: {doc['best']}[/bold]")
    for r in doc["reasons"]:
        console.print(f"  - {r}")
    for w in doc.get("warnings") or []:
        console.print(f"[yellow]warning: {w['message']}[/yellow]", highlight=False)
    for f in doc["flags"]:
        console.print(f"[yellow]flag: {f['message']}[/yellow]")
    for n in doc.get("notes", []):
        console.print(f"note: {n}")
    console.print(path_note)


def compare_command(args: CompareArgs) -> dict:
    """What `codelora compare` does: compare, write, print; returns the selection document.

    args: `codelora.commands.CompareArgs` (its fields are the flags, checked when it is built). Raises UserError
    for missing runs or results, or results that are not comparable without --force.
    """
    opts = CompareOptions(
        force=args.force,
        problems=args.problems,
        evaluate_missing=not args.no_evaluate,
        evaluate_options={"limit": args.limit} if args.limit is not None else None,
        protocol=args.protocol,
    )
    if args.runs:
        doc = compare_runs(args.runs, args.benchmark, args.out, opts)
        out = rf.RunFolder(doc["out"])
        where = f"wrote {out.selection_file} and {out.plot('compare')}"
    else:
        doc = compare_run(args.run, args.benchmark, args.models, opts)
        if doc["full"]:
            run = rf.RunFolder(args.run)
            where = f"selection: {run.selection_file} and {run.plot('compare')}"
        else:
            where = (
                "view only: nothing written (selection.json is written by a comparison of all models on all problems)"
            )
    print_selection(doc, where, show_examples=bool(args.problems))
    return doc
