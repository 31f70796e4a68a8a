"""`codelora compare`: selection rules, overfitting flags, paired test and refusals on hand-made run folders."""

from __future__ import annotations

import json
import math
import sys
import types
from pathlib import Path

import pytest

from codelora.cli import main
from codelora.config import load_config, save_config
from codelora.errors import UserError
from codelora.generation.generate import Sampling
from codelora.run import results as run_results
from codelora.run import selection as run_selection
from codelora.selection import compare as cmp
from codelora.selection.stats import bootstrap_interval, mcnemar_exact, wilson_interval

SAMPLING = {"n": 1, "temperature": 0.2, "top_p": 0.9, "max_new_tokens": 160, "seed": 42, "greedy": True}

DEFAULT_METRICS = [
    {"step": 0, "epoch": 0.0, "valid_loss": 1.0, "test_loss": 1.1},
    {"step": 2, "epoch": 0.25, "train_loss": 0.95, "learning_rate": 1e-3},
    {"step": 4, "epoch": 0.5, "train_loss": 0.9, "learning_rate": 9e-4},
    {"step": 4, "epoch": 0.5, "valid_loss": 0.8, "test_loss": 0.85},
    {"step": 6, "epoch": 0.75, "train_loss": 0.7, "learning_rate": 5e-4},
    {"step": 8, "epoch": 1.0, "train_loss": 0.6, "learning_rate": 1e-4},
    {"step": 8, "epoch": 1.0, "valid_loss": 0.7, "test_loss": 0.75},
]


def write_eval(run: Path, model: str, outcomes: dict, benchmark="heldout", sampling=None, prompts_sha="p1", step=0):
    """eval/<benchmark>/<model>/ as the evaluate contract writes it; outcomes: task_id -> bool or [bool per sample]."""
    d = run / "eval" / benchmark / model
    d.mkdir(parents=True, exist_ok=True)
    res, gen = [], []
    for pid, out in outcomes.items():
        for i, ok in enumerate(out if isinstance(out, list) else [out]):
            fail = (
                None
                if ok
                else {"verdict": "wrong_answer", "input": f"in-{pid}", "expected": "1", "got": "2", "detail": ""}
            )
            res.append(
                {
                    "task_id": pid,
                    "sample_index": i,
                    "passed": ok,
                    "verdict": "accepted" if ok else "wrong_answer",
                    "tests": [],
                    "first_failure": fail,
                    "elapsed": 0.01,
                }
            )
            gen.append(
                {
                    "task_id": pid,
                    "sample_index": i,
                    "prompt_sha256": "x",
                    "sampling": sampling or SAMPLING,
                    "raw": "```python\nprint(1)\n```",
                    "code": f"# {model} answer to {pid}\nprint({int(ok)})",
                    "code_found": True,
                }
            )
    (d / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in res))
    (d / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in gen))
    summary = {
        "benchmark": benchmark,
        "problems": len(outcomes),
        "samples": len(res),
        "model": model,
        "step": step,
        "source": "embedded:smollm2-135m-instruct",
        "adapter": None,
        "sampling": sampling or SAMPLING,
        "prompts_sha256": prompts_sha,
        "pass@1": sum(r["passed"] for r in res) / len(res),
    }
    # the hand-made adapters have no weights file, so every model's weights hash is None (as for base)
    summary["provenance"] = run_results.provenance(
        benchmark=benchmark,
        source=summary["source"],
        revision=None,
        weights_sha256=None,
        prompts_sha256=prompts_sha,
        sampling={**Sampling(**{k: v for k, v in summary["sampling"].items() if k != "n"}).key(), "n": 1},
        problems_sha256=run_results.canonical_sha256(sorted(outcomes)),
        limit=None,
    )
    summary["result_key"] = run_results.canonical_sha256(summary["provenance"])
    (d / "summary.json").write_text(json.dumps(summary))


def make_run(
    root: Path,
    name: str = "run",
    checkpoints=(4, 8),
    final_step: int | None = 8,
    metrics: list[dict] | None = None,
    results: dict | None = None,
    source: str | None = None,
    incomplete=(),
    **eval_kw,
) -> Path:
    """A hand-made run folder: config.yaml, logs/metrics.jsonl, checkpoints with meta.json, final, eval results."""
    run = root / name
    (run / "logs").mkdir(parents=True)
    cfg = load_config("demo")
    cfg.run_name = name
    if source:
        cfg.model.source = source
    save_config(cfg, run / "config.yaml")
    rows = DEFAULT_METRICS if metrics is None else metrics
    (run / "logs" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for s in checkpoints:
        ck = run / "checkpoints" / f"checkpoint-{s}"
        ck.mkdir(parents=True)
        (ck / "adapter_config.json").write_text("{}")
        (ck / "meta.json").write_text(json.dumps({"step": s, "epoch": s / 8}))
    for s in incomplete:
        ck = run / "checkpoints" / f"checkpoint-{s}"
        ck.mkdir(parents=True)
        (ck / "adapter_config.json").write_text("{}")
    if final_step is not None:
        (run / "final").mkdir()
        (run / "final" / "meta.json").write_text(
            json.dumps({"step": final_step, "epoch": final_step / 8, "result": {}})
        )
    steps = {"base": 0, "final": final_step, **{f"checkpoint-{s}": s for s in checkpoints}}
    for model, outcomes in (results or {}).items():
        write_eval(run, model, outcomes, step=steps.get(model, 0), **eval_kw)
    return run


def solved(n_total: int, n_solved: int, start: int = 0) -> dict:
    """Problems p00..p(n-1): the first `n_solved` from index `start` (cyclic) are solved."""
    ids = [f"p{i:02d}" for i in range(n_total)]
    chosen = {ids[(start + k) % n_total] for k in range(n_solved)}
    return {p: p in chosen for p in ids}


# ---------------------------------------------------------------------------------------------------------- stats


def test_wilson_interval_known_values():
    z = 1.959963984540054
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(z * z / (10 + z * z))  # closed form at 0 successes
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    lo, hi = wilson_interval(13, 41)
    assert lo < 13 / 41 < hi and hi - lo < 0.3
    assert wilson_interval(7, 7)[1] == 1.0


def test_mcnemar_exact_values():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)
    assert mcnemar_exact(5, 1) == pytest.approx(2 * 7 / 64)
    assert mcnemar_exact(3, 3) == 1.0
    assert mcnemar_exact(0, 5) == pytest.approx(0.0625)  # 5 discordant problems can never reach p < 0.05


def test_bootstrap_interval_is_seeded_and_brackets_the_mean():
    vals = [0.0, 0.5, 1.0, 1.0, 0.0, 0.25, 0.75, 1.0]
    a, b = bootstrap_interval(vals), bootstrap_interval(vals)
    assert a == b
    assert a[0] < sum(vals) / len(vals) < a[1]
    assert bootstrap_interval([0.5] * 6) == (0.5, 0.5)


# ------------------------------------------------------------------------------------------------ selection rules


def test_highest_pass_at_1_wins_and_table_has_losses_and_interval(tmp_path):
    run = make_run(
        tmp_path,
        results={
            "base": solved(10, 2),
            "checkpoint-4": solved(10, 6),
            "checkpoint-8": solved(10, 4),
            "final": solved(10, 4),
        },
    )
    doc = cmp.compare_run(run)
    assert doc["best"] == "checkpoint-4" and doc["best_step"] == 4
    assert "highest pass@1" in doc["reasons"][0] and "6/10" in doc["reasons"][0]
    rows = {r["model"]: r for r in doc["table"]}
    assert [r["model"] for r in doc["table"]] == ["base", "checkpoint-4", "checkpoint-8", "final"]
    # losses at the model's step: eval row at that step, train loss the last logged at or before it
    assert rows["checkpoint-4"]["train_loss"] == 0.9 and rows["checkpoint-4"]["valid_loss"] == 0.8
    assert rows["checkpoint-4"]["test_loss"] == 0.85 and rows["checkpoint-4"]["epoch"] == 0.5
    assert rows["checkpoint-8"]["train_loss"] == 0.6 and rows["checkpoint-8"]["valid_loss"] == 0.7
    assert rows["base"]["train_loss"] is None and rows["base"]["valid_loss"] == 1.0
    lo, hi = wilson_interval(6, 10)
    assert rows["checkpoint-4"]["pass@1"] == 0.6 and rows["checkpoint-4"]["interval"] == "wilson"
    assert (rows["checkpoint-4"]["pass@1_low"], rows["checkpoint-4"]["pass@1_high"]) == (lo, hi)
    assert rows["checkpoint-4"]["solved"] == 6 and rows["checkpoint-4"]["problems"] == 10
    assert rows["final"]["note"] == "same step as checkpoint-8"
    on_disk = json.loads((run / "selection.json").read_text())
    assert on_disk["best"] == "checkpoint-4" and on_disk["benchmark"] == "heldout"
    assert set(on_disk) >= {"best", "reasons", "table", "flags", "benchmark", "matrix"}
    png = (run / "plots" / "compare.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert not [p for p in run.rglob("*.tmp*")]


def test_tie_broken_by_lower_validation_loss(tmp_path):
    # checkpoint-4 and checkpoint-8 both solve 5/10; valid loss 0.8 at step 4, 0.7 at step 8 -> checkpoint-8
    run = make_run(
        tmp_path,
        final_step=None,
        results={"base": solved(10, 1), "checkpoint-4": solved(10, 5), "checkpoint-8": solved(10, 5, 3)},
    )
    doc = cmp.compare_run(run)
    assert doc["best"] == "checkpoint-8"
    assert any("lower validation loss" in r and "0.7000 < 0.8000" in r for r in doc["reasons"])


def test_tie_on_pass_and_loss_broken_by_earlier_step(tmp_path):
    metrics = [
        r if r.get("valid_loss") is None or r["step"] == 0 else {**r, "valid_loss": 0.75} for r in DEFAULT_METRICS
    ]
    run = make_run(
        tmp_path,
        final_step=None,
        metrics=metrics,
        results={"base": solved(10, 1), "checkpoint-4": solved(10, 5), "checkpoint-8": solved(10, 5, 2)},
    )
    doc = cmp.compare_run(run)
    assert doc["best"] == "checkpoint-4"
    assert any("earliest step (4)" in r for r in doc["reasons"])


def test_final_identical_to_last_checkpoint_loses_the_tie_to_the_checkpoint(tmp_path):
    res = solved(10, 7)
    run = make_run(
        tmp_path, results={"base": solved(10, 1), "checkpoint-4": solved(10, 3), "checkpoint-8": res, "final": res}
    )
    doc = cmp.compare_run(run)
    assert doc["best"] == "checkpoint-8"
    assert not [f for f in doc["flags"] if f["kind"] == "final_worse_than_best"]


def test_select_best_missing_validation_loss_counts_as_worst():
    rows = [
        {"model": "a", "step": 2, "pass@1": 0.5, "solved": 1, "problems": 2, "valid_loss": None},
        {"model": "b", "step": 4, "pass@1": 0.5, "solved": 1, "problems": 2, "valid_loss": 0.9},
    ]
    best, reasons = cmp.select_best(rows)
    assert best == "b"
    # the reason names the missing loss as missing, not as a number compared with "-"
    assert "< -" not in reasons[0] and "0.9000; a has none" in reasons[0], reasons[0]


def test_multi_sample_pass_at_1_and_bootstrap_interval(tmp_path):
    base = {f"p{i}": [False, False, False, False] for i in range(6)}
    ck = {
        "p0": [True, True, True, True],
        "p1": [True, False, True, False],
        "p2": [True, False, False, False],
        "p3": [False] * 4,
        "p4": [True, True, True, False],
        "p5": [False] * 4,
    }
    sampling = {**SAMPLING, "n": 4, "greedy": False}
    run = make_run(
        tmp_path, checkpoints=(4,), final_step=None, results={"base": base, "checkpoint-4": ck}, sampling=sampling
    )
    row = next(r for r in cmp.compare_run(run)["table"] if r["model"] == "checkpoint-4")
    assert row["pass@1"] == pytest.approx((1 + 0.5 + 0.25 + 0 + 0.75 + 0) / 6)
    assert row["interval"] == "bootstrap" and row["samples"] == 24
    assert row["solved"] == 3  # at least half the samples pass: p0, p1, p4
    assert row["pass@1_low"] < row["pass@1"] < row["pass@1_high"]


# ----------------------------------------------------------------------------------------------------------- flags


def _metrics_with_evals(evals: list[tuple[int, float, float]]) -> list[dict]:
    """(step, train_loss, valid_loss) -> metric rows (train row then eval row at each step)."""
    rows = []
    for step, tr, va in evals:
        if step:
            rows.append({"step": step, "train_loss": tr})
        rows.append({"step": step, "valid_loss": va, "test_loss": va + 0.05})
    return rows


def test_overfitting_flag_when_validation_rises_twice_while_train_falls():
    rows = _metrics_with_evals([(0, 0, 1.0), (4, 0.9, 0.8), (8, 0.7, 0.85), (12, 0.5, 0.9), (16, 0.4, 0.95)])
    flags = cmp.loss_flags(rows)
    assert len(flags) == 1 and flags[0]["kind"] == "validation_loss_rising"
    assert flags[0]["steps"] == [4, 8, 12, 16] and flags[0]["train_loss"] == [0.9, 0.7, 0.5, 0.4]
    assert "3 consecutive evals" in flags[0]["message"]


def test_no_overfitting_flag_for_a_single_rise_or_when_train_rises_too():
    one_rise = _metrics_with_evals([(0, 0, 1.0), (4, 0.9, 0.8), (8, 0.7, 0.85), (12, 0.5, 0.7)])
    assert cmp.loss_flags(one_rise) == []
    both_rise = _metrics_with_evals([(0, 0, 1.0), (4, 0.5, 0.8), (8, 0.7, 0.85), (12, 0.9, 0.9)])
    assert cmp.loss_flags(both_rise) == []
    falling = _metrics_with_evals([(0, 0, 1.0), (4, 0.9, 0.8), (8, 0.7, 0.7)])
    assert cmp.loss_flags(falling) == []


def test_loss_flag_reaches_selection_json(tmp_path):
    metrics = _metrics_with_evals([(0, 0, 1.0), (4, 0.9, 0.8), (8, 0.7, 0.85), (12, 0.5, 0.9)])
    run = make_run(
        tmp_path,
        checkpoints=(4, 8, 12),
        final_step=12,
        metrics=metrics,
        results={
            "base": solved(8, 1),
            "checkpoint-4": solved(8, 4),
            "checkpoint-8": solved(8, 4),
            "checkpoint-12": solved(8, 4),
            "final": solved(8, 4),
        },
    )
    doc = cmp.compare_run(run)
    assert [f["kind"] for f in doc["flags"]] == ["validation_loss_rising"]
    assert doc["best"] == "checkpoint-4"  # same pass@1, lowest validation loss


def test_final_significantly_worse_than_best_is_flagged(tmp_path):
    # best solves 8 of 10, final 1 (a subset): 7 discordant, all against final -> p = 2/128 < 0.05
    run = make_run(
        tmp_path,
        results={
            "base": solved(10, 1),
            "checkpoint-4": solved(10, 8),
            "checkpoint-8": solved(10, 1),
            "final": solved(10, 1),
        },
    )
    doc = cmp.compare_run(run)
    flag = next(f for f in doc["flags"] if f["kind"] == "final_worse_than_best")
    assert flag["a"] == "checkpoint-4" and flag["b"] == "final"
    assert (flag["a_only"], flag["b_only"]) == (7, 0) and flag["p_value"] == pytest.approx(2 / 128)
    test = next(t for t in doc["paired_tests"] if t["b"] == "final")
    assert test["both"] == 1 and test["neither"] == 2


def test_final_slightly_worse_is_not_flagged(tmp_path):
    # 6 vs 4 solved, 2 discordant: p = 0.5, not significant
    run = make_run(
        tmp_path,
        results={
            "base": solved(10, 1),
            "checkpoint-4": solved(10, 6),
            "checkpoint-8": solved(10, 4),
            "final": solved(10, 4),
        },
    )
    doc = cmp.compare_run(run)
    assert not [f for f in doc["flags"] if f["kind"] == "final_worse_than_best"]
    assert any("not a significant drop" in r for r in doc["reasons"])


def test_paired_test_counts_only_common_problems():
    a = {"per_problem": {"x": True, "y": True, "z": False}}
    b = {"per_problem": {"x": False, "y": True, "w": True}}
    t = cmp.paired_test("a", a, "b", b)
    assert (t["problems"], t["a_only"], t["b_only"], t["both"]) == (2, 1, 0, 1)


# -------------------------------------------------------------------------------------------- per-problem view


def test_matrix_and_side_by_side_examples(tmp_path):
    run = make_run(
        tmp_path,
        results={
            "base": solved(6, 1),
            "checkpoint-4": solved(6, 4),
            "checkpoint-8": solved(6, 3),
            "final": solved(6, 2),
        },
    )
    doc = cmp.compare_run(run)
    m = doc["matrix"]
    assert m["problems"] == [f"p{i:02d}" for i in range(6)]
    assert m["solved"]["checkpoint-4"] == [True, True, True, True, False, False]
    assert m["disagreements"] == ["p01", "p02", "p03"]
    # best (checkpoint-4) vs final disagreements come first
    assert [e["problem"] for e in doc["examples"]] == ["p02", "p03", "p01"]
    ex = doc["examples"][0]
    by = {a["model"]: a for a in ex["answers"]}
    assert by["checkpoint-4"]["passed"] is True and by["checkpoint-4"]["code"].startswith(
        "# checkpoint-4 answer to p02"
    )
    assert by["final"]["verdict"] == "wrong_answer" and by["final"]["first_failure"]["input"] == "in-p02"


def test_chosen_problems_and_unknown_problem(tmp_path):
    run = make_run(
        tmp_path,
        results={
            "base": solved(4, 1),
            "checkpoint-4": solved(4, 2),
            "checkpoint-8": solved(4, 2),
            "final": solved(4, 2),
        },
    )
    doc = cmp.compare_run(run, problems=["p03"])
    assert [e["problem"] for e in doc["examples"]] == ["p03"]
    with pytest.raises(UserError, match="no problem 'nope'"):
        cmp.compare_run(run, problems=["nope"])


# ------------------------------------------------------------------------------------------------- bad input


def test_run_with_no_checkpoints_is_refused(tmp_path):
    run = make_run(tmp_path, checkpoints=(), final_step=None, results={"base": solved(4, 1)})
    with pytest.raises(UserError, match="no complete checkpoint and no final adapter"):
        cmp.compare_run(run)


def test_incomplete_checkpoint_skipped_with_note_or_refused_when_named(tmp_path):
    run = make_run(
        tmp_path,
        checkpoints=(4,),
        final_step=None,
        incomplete=(8,),
        results={"base": solved(4, 1), "checkpoint-4": solved(4, 2)},
    )
    doc = cmp.compare_run(run)
    assert [r["model"] for r in doc["table"]] == ["base", "checkpoint-4"]
    assert any("checkpoint-8" in n and "incomplete" in n for n in doc["notes"])
    with pytest.raises(UserError, match=r"checkpoint-8 is incomplete \(no meta.json"):
        cmp.compare_run(run, models=["base", "checkpoint-8"])
    with pytest.raises(UserError, match="no model 'checkpoint-99'.*available: base, checkpoint-4"):
        cmp.compare_run(run, models=["checkpoint-99"])


def test_not_a_run_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="is not a run folder"):
        cmp.compare_run(tmp_path / "empty")
    with pytest.raises(UserError, match="no such run folder"):
        cmp.compare_run(tmp_path / "missing")


def test_models_evaluated_differently_refused_unless_forced(tmp_path):
    run = make_run(
        tmp_path, checkpoints=(4,), final_step=None, results={"base": solved(4, 1), "checkpoint-4": solved(4, 3)}
    )
    write_eval(run, "checkpoint-4", solved(4, 3), sampling={**SAMPLING, "temperature": 0.8}, step=4)
    with pytest.raises(UserError, match="different sampling settings.*--force"):
        cmp.compare_run(run)
    doc = cmp.compare_run(run, force=True)
    assert any(f["kind"] == "forced" and f["differs"] == "sampling" for f in doc["flags"])
    assert next(r for r in doc["table"] if r["model"] == "checkpoint-4")["forced"] is True


def test_missing_results_call_evaluate_lazily(tmp_path, monkeypatch):
    run = make_run(tmp_path, checkpoints=(4,), final_step=None, results={"base": solved(4, 1)})
    calls = []

    def fake_evaluate(run_dir, benchmark, models=None, **options):
        calls.append((Path(run_dir), benchmark, list(models), options))
        for m in models:
            write_eval(Path(run_dir), m, solved(4, 3), step=4)
        return {}

    monkeypatch.setitem(sys.modules, "codelora.evaluation.evaluate", types.SimpleNamespace(evaluate=fake_evaluate))
    doc = cmp.compare_run(run)
    # the new evaluation is asked to match the existing one: same sampling, same number of problems
    same = {"n": 1, "top_p": 0.9, "max_new_tokens": 160, "seed": 42, "limit": None}
    assert calls == [(run, "heldout", ["checkpoint-4"], same)]
    assert doc["best"] == "checkpoint-4"


def test_matching_options_for_sampled_evaluations():
    ev = {"summary": {"sampling": {**SAMPLING, "n": 5, "greedy": False, "temperature": 0.2}}, "problems": {"a": {}}}
    assert cmp.matching_options(ev) == {
        "n": 5,
        "top_p": 0.9,
        "max_new_tokens": 160,
        "seed": 42,
        "temperature": 0.2,
        "limit": 1,
    }
    assert cmp.matching_options(None) == {}


def test_no_evaluate_leaves_unevaluated_models_out(tmp_path):
    run = make_run(tmp_path, results={"base": solved(4, 1), "checkpoint-4": solved(4, 2)})
    doc = cmp.compare_run(run, evaluate_missing=False)
    assert [r["model"] for r in doc["table"]] == ["base", "checkpoint-4"]
    assert "left out checkpoint-8: not evaluated yet on heldout" in doc["notes"]
    assert "left out final: not evaluated yet on heldout" in doc["notes"]


def test_bad_results_line_names_file_and_line(tmp_path):
    run = make_run(
        tmp_path, checkpoints=(4,), final_step=None, results={"base": solved(3, 1), "checkpoint-4": solved(3, 2)}
    )
    path = run / "eval" / "heldout" / "checkpoint-4" / "results.jsonl"
    path.write_text(path.read_text() + "{not json\n")
    with pytest.raises(UserError, match=r"results.jsonl:4: not valid JSON"):
        cmp.compare_run(run)


def test_selection_json_write_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "selection.json"
    target.write_text('{"best": "old"}')
    real_fdopen = cmp.os.fdopen

    class Broken:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

        def write(self, text):
            self.f.write(text[: len(text) // 2])
            raise OSError("disk full")

    monkeypatch.setattr(cmp.os, "fdopen", lambda fd, *a, **k: Broken(real_fdopen(fd, *a, **k)))
    with pytest.raises(OSError, match="disk full"):
        run_selection.write_selection(tmp_path, {"best": "new", "pad": "x" * 1000})
    assert json.loads(target.read_text()) == {"best": "old"}
    assert list(tmp_path.iterdir()) == [target]


# ------------------------------------------------------------------------------------------------------ many runs


def test_runs_side_by_side(tmp_path):
    a = make_run(
        tmp_path,
        "deep",
        results={
            "base": solved(10, 2),
            "checkpoint-4": solved(10, 5),
            "checkpoint-8": solved(10, 4),
            "final": solved(10, 4),
        },
    )
    b = make_run(
        tmp_path,
        "diverse",
        results={
            "base": solved(10, 2),
            "checkpoint-4": solved(10, 3),
            "checkpoint-8": solved(10, 7),
            "final": solved(10, 7),
        },
    )
    out = tmp_path / "both"
    doc = cmp.compare_runs([a, b], out=out)
    assert [r["model"] for r in doc["table"]] == ["base", "deep:checkpoint-4", "diverse:checkpoint-8"]
    assert doc["best"] == "diverse:checkpoint-8"
    assert {r["run"] for r in doc["table"]} == {"deep", "diverse"}
    assert (out / "selection.json").is_file() and (out / "plots" / "compare.png").stat().st_size > 5000
    assert json.loads((a / "selection.json").read_text())["best"] == "checkpoint-4"
    assert not any(r.get("forced") for r in doc["table"])


def test_runs_with_different_base_models_refused_unless_forced(tmp_path):
    res = {"base": solved(4, 1), "checkpoint-4": solved(4, 2), "checkpoint-8": solved(4, 2), "final": solved(4, 2)}
    a = make_run(tmp_path, "a", results=res)
    b = make_run(tmp_path, "b", results=res, source="tiny-random:qwen2")
    with pytest.raises(UserError, match="different base models.*--force"):
        cmp.compare_runs([a, b], out=tmp_path / "o")
    assert not (tmp_path / "o").exists()
    doc = cmp.compare_runs([a, b], force=True, out=tmp_path / "o")
    # all three trained models tie on pass@1; checkpoint-8 has the lower validation loss
    assert [r["model"] for r in doc["table"]] == ["a:base", "a:checkpoint-8", "b:base", "b:checkpoint-8"]
    assert all(r["forced"] for r in doc["table"]) and doc["flags"][0]["kind"] == "forced"


def test_runs_on_different_problems_refused_unless_forced(tmp_path):
    a = make_run(
        tmp_path,
        "a",
        results={
            "base": solved(4, 1),
            "checkpoint-4": solved(4, 2),
            "checkpoint-8": solved(4, 2),
            "final": solved(4, 2),
        },
    )
    b = make_run(
        tmp_path,
        "b",
        prompts_sha="p2",
        results={
            "base": solved(4, 1),
            "checkpoint-4": solved(4, 2),
            "checkpoint-8": solved(4, 3),
            "final": solved(4, 3),
        },
    )
    with pytest.raises(UserError, match="different prompts"):
        cmp.compare_runs([a, b], out=tmp_path / "o")
    doc = cmp.compare_runs([a, b], force=True, out=tmp_path / "o")
    assert any(f["differs"] == "prompts_sha256" for f in doc["flags"])


# ------------------------------------------------------------------------------------------------------------- CLI


def test_cli_compare_prints_table_and_errors_cleanly(tmp_path, capsys):
    run = make_run(
        tmp_path,
        results={
            "base": solved(5, 1),
            "checkpoint-4": solved(5, 3),
            "checkpoint-8": solved(5, 2),
            "final": solved(5, 2),
        },
    )
    assert main(["compare", "--run", str(run)]) == 0
    out = capsys.readouterr().out
    assert "checkpoint-4" in out and "selected: checkpoint-4" in out and "0.600 [" in out
    assert math.isclose(json.loads((run / "selection.json").read_text())["table"][1]["pass@1"], 0.6)
    assert main(["compare", "--run", str(run), "--problems", "p03"]) == 0
    out = capsys.readouterr().out
    assert "problem p03" in out and "# checkpoint-8 answer to p03" in out and "first failing test" in out
    assert main(["compare", "--run", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no such run folder" in err and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------------- views and borrowed losses


def test_a_restricted_view_writes_nothing_export_reads(tmp_path, capsys):
    run = make_run(
        tmp_path,
        results={
            "base": solved(5, 1),
            "checkpoint-4": solved(5, 3),
            "checkpoint-8": solved(5, 4),
            "final": solved(5, 2),
        },
    )
    assert main(["compare", "--run", str(run)]) == 0
    before = (run / "selection.json").read_bytes(), (run / "selection.json").stat().st_mtime_ns
    assert json.loads(before[0])["best"] == "checkpoint-8"
    for view in (["--problems", "p03", "--models", "base,final"], ["--models", "base", "final"], ["--problems", "p01"]):
        assert main(["compare", "--run", str(run), *view]) == 0
        assert "view only: nothing written" in capsys.readouterr().out
        assert ((run / "selection.json").read_bytes(), (run / "selection.json").stat().st_mtime_ns) == before
    # the same full comparison again says the same: the file is left as it is
    assert main(["compare", "--run", str(run)]) == 0
    assert ((run / "selection.json").read_bytes(), (run / "selection.json").stat().st_mtime_ns) == before


def test_a_borrowed_validation_loss_is_marked_and_never_breaks_a_tie(tmp_path):
    # evals at steps 0, 2 and 4; checkpoint-6 has no eval of its own: the step-4 loss is not its loss
    metrics = [
        {"step": 0, "epoch": 0.0, "valid_loss": 1.0},
        {"step": 2, "epoch": 0.25, "train_loss": 0.9},
        {"step": 2, "epoch": 0.25, "valid_loss": 0.9},
        {"step": 4, "epoch": 0.5, "valid_loss": 0.5},
        {"step": 6, "epoch": 0.75, "train_loss": 0.6},
    ]
    run = make_run(
        tmp_path,
        checkpoints=(2, 6),
        final_step=None,
        metrics=metrics,
        results={"base": solved(4, 1), "checkpoint-2": solved(4, 3), "checkpoint-6": solved(4, 3)},
    )
    doc = cmp.compare_run(run)
    row = {r["model"]: r for r in doc["table"]}
    assert row["checkpoint-6"]["valid_loss"] is None and row["checkpoint-6"]["borrowed_valid_loss"] == 0.5
    assert row["checkpoint-6"]["loss_step"] == 4 and cmp.table_cells(row["checkpoint-6"])[4] == "0.5000 (step 4)"
    assert row["checkpoint-2"]["valid_loss"] == 0.9
    # tied on pass@1: the borrowed 0.5 must not beat checkpoint-2's own 0.9
    assert doc["best"] == "checkpoint-2"
