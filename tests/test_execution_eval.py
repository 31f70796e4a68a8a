"""pass@1 while training (train.execution_eval): tiny random Qwen2, the bundled sample data, held-out problems."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from codelora.config import load_config
from codelora.errors import UserError
from codelora.evaluation.evaluate import evaluate
from codelora.training.sft import train as sft_train


def train(cfg, run_dir, **kw):
    """codelora.training.sft.train as the CLI calls it: with the evaluation stage handed in."""
    return sft_train(cfg, run_dir, evaluator=evaluate, **kw)


FAST = [
    "model.source=tiny-random:qwen2",
    "data.max_length=256",
    "train.logging_steps=2",
    "train.eval_steps=100",
    "train.execution_eval=heldout",
    "train.execution_eval_limit=2",
    "eval.max_new_tokens=8",
    "eval.batch_size=1",
]


def _cfg(tmp: Path, *extra: str):
    return load_config("demo", [*FAST, *extra, f"output_dir={tmp}"])


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "logs" / "metrics.jsonl").read_text().splitlines() if x.strip()]


def _graded(run_dir: Path) -> dict[str, dict]:
    return {r["eval_model"]: r for r in _rows(run_dir) if r.get("eval_pass@1") is not None}


def _summary(run_dir: Path, name: str) -> dict:
    return json.loads((run_dir / "eval" / "heldout" / name / "summary.json").read_text())


@pytest.fixture(scope="module")
def run4(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("exeval")
    result = train(_cfg(tmp, "train.max_steps=4", "train.save_steps=2", "train.report_to=tensorboard"), tmp / "run")
    return tmp / "run", result


def test_every_checkpoint_has_pass_at_1_in_metrics_and_summary(run4):
    run_dir, result = run4
    graded = _graded(run_dir)
    assert sorted(graded) == ["base", "checkpoint-2", "checkpoint-4"]
    for name in ("checkpoint-2", "checkpoint-4"):
        row, s = graded[name], _summary(run_dir, name)
        assert row["step"] == int(name.split("-")[1]) == s["step"]
        assert row["eval_pass@1"] == s["pass@1"]
        assert row["eval_benchmark"] == "heldout"
        assert row["eval_generation_seconds"] > 0 and row["eval_grading_seconds"] > 0
        # the result is tied to the checkpoint's weights on disk
        from codelora.run.layout import weights_sha256

        assert s["provenance"]["weights_sha256"] == weights_sha256(run_dir / "checkpoints" / name)
        assert s["provenance"]["limit"] == 2 and s["problems"] == 2
    assert _summary(run_dir, "base")["provenance"]["weights_sha256"] is None
    assert result["execution_eval"]["pass@1"]["checkpoint-4"] == graded["checkpoint-4"]["eval_pass@1"]
    assert (run_dir / "eval" / "heldout" / "final" / "summary.json").is_file()
    header = (run_dir / "logs" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "eval_pass@1" in header and "eval_model" in header
    prov = json.loads((run_dir / "provisional_best.json").read_text())
    assert prov["best"] in graded and prov["benchmark"] == "heldout"
    assert prov["value"] == max(r["eval_pass@1"] for r in graded.values())


def test_separate_evaluate_gives_the_same_result(run4, tmp_path):
    """The same checkpoints evaluated from disk in a copy of the run without its results: same result key, same
    answers, same pass@1 (the live training model generated exactly what the saved adapter generates)."""
    from codelora.evaluation.evaluate import evaluate

    run_dir, _ = run4
    copy = tmp_path / "copy"
    # everything but the checkpoints' results (eval/heldout/checkpoint-N/) and final
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("checkpoint-*", "final"))
    for name in ("checkpoint-2", "checkpoint-4"):
        shutil.copytree(run_dir / "checkpoints" / name, copy / "checkpoints" / name)
    assert not (copy / "eval" / "heldout" / "checkpoint-2").exists()
    fresh = evaluate(copy, "heldout", models=["checkpoint-2", "checkpoint-4"], limit=2, backend="hf")
    for name in ("checkpoint-2", "checkpoint-4"):
        live, disk = _summary(run_dir, name), fresh[name]
        assert disk["generation"]["generated"] == 2  # really generated again, from the saved adapter
        assert disk["result_key"] == live["result_key"]
        assert disk["pass@1"] == live["pass@1"]

        def answers(folder: Path) -> dict:
            return {
                (r["task_id"], r["sample_index"]): r["raw"]
                for r in map(json.loads, (folder / "generations.jsonl").read_text().splitlines())
            }

        assert answers(copy / "eval" / "heldout" / name) == answers(run_dir / "eval" / "heldout" / name)


def test_later_compare_and_evaluate_generate_nothing(run4, monkeypatch, capsys):
    import codelora.generation.generate
    from codelora.evaluation.evaluate import evaluate
    from codelora.selection.compare import compare_run

    run_dir, _ = run4

    def no_generation(*a, **kw):
        raise AssertionError("generated again")

    monkeypatch.setattr(codelora.generation.generate, "generate_batch", no_generation)
    before = {p: p.stat().st_mtime_ns for p in (run_dir / "eval" / "heldout").rglob("summary.json")}
    doc = compare_run(run_dir, "heldout")
    assert {r["model"] for r in doc["table"]} == {"base", "checkpoint-2", "checkpoint-4", "final"}
    evaluate(run_dir, "heldout", models=["checkpoint-2"], limit=2)  # as `codelora evaluate --models checkpoint-2`
    assert "results current" in capsys.readouterr().err
    assert before == {p: p.stat().st_mtime_ns for p in (run_dir / "eval" / "heldout").rglob("summary.json")}


def test_tensorboard_plot_and_report_show_pass_at_1(run4):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from codelora.publish.report import build_report

    run_dir, _ = run4
    acc = EventAccumulator(str(next((run_dir / "logs" / "tensorboard").rglob("events.out.tfevents.*")).parent))
    acc.Reload()
    assert [e.step for e in acc.Scalars("eval/pass@1")] == [0, 2, 4]
    assert (run_dir / "plots" / "loss.png").stat().st_size > 0
    _, md = build_report(run_dir)
    assert "pass@1 while training (train.execution_eval: heldout)" in md
    assert "| 2 | checkpoint-2 |" in md and "| 4 | checkpoint-4 |" in md
    assert "provisional best" in md


def _scripted(monkeypatch, values: dict[str, float]):
    """grade_samples with a scripted pass@1 per model (the real grading runs; its pass@1 is replaced)."""
    import codelora.evaluation.score

    real = codelora.evaluation.score.grade_samples

    def fake(*a, **kw):
        results, summary = real(*a, **kw)
        summary["pass@1"] = values[Path(kw["source"]).parent.name]
        return results, summary

    monkeypatch.setattr(codelora.evaluation.score, "grade_samples", fake)


def test_early_stopping_on_a_scripted_metric(tmp_path, monkeypatch):
    # base .2, ck1 .4 (best), ck2 .405 (not better by more than min_delta .01): patience 1 runs out with ck2's
    # result, read at the next save (ck3), where training stops; every checkpoint is kept
    values = {"base": 0.2, "checkpoint-1": 0.4, "checkpoint-2": 0.405, "checkpoint-3": 0.1, "final": 0.1}
    values.update({f"checkpoint-{i}": 0.0 for i in range(4, 7)})
    _scripted(monkeypatch, values)
    cfg = _cfg(
        tmp_path,
        "train.max_steps=6",
        "train.save_steps=1",
        "train.logging_steps=1",
        "train.execution_eval_limit=1",
        "train.early_stopping.patience=1",
        "train.early_stopping.min_delta=0.01",
    )
    result = train(cfg, tmp_path / "run")
    run_dir = tmp_path / "run"
    assert result["global_step"] == 3 and result["execution_eval"]["stopped_early"] == 3
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [f"checkpoint-{i}" for i in range(1, 4)]
    graded = _graded(run_dir)
    assert {n: r["eval_pass@1"] for n, r in graded.items()} == {
        "base": 0.2,
        "checkpoint-1": 0.4,
        "checkpoint-2": 0.405,
        "checkpoint-3": 0.1,
    }
    prov = json.loads((run_dir / "provisional_best.json").read_text())
    assert (prov["best"], prov["stopped_early"], prov["stopped_at_step"]) == ("checkpoint-2", True, 3)
    assert json.loads((run_dir / "final" / "meta.json").read_text())["step"] == 3
    assert not (run_dir / "selection.json").exists()


def test_should_stop_counts_evaluations_without_improvement():
    from types import SimpleNamespace

    from codelora.training.execution_eval import ExecutionEvalCallback

    cb = ExecutionEvalCallback.__new__(ExecutionEvalCallback)
    cb.es = SimpleNamespace(patience=2, min_delta=0.05, metric="pass@1")
    seq = [0.1, 0.3, 0.32, 0.34, 0.2]  # 0.32 and 0.34 are within min_delta of 0.3: no improvement
    stops = []
    cb.evaluations = []
    for i, v in enumerate(seq):
        cb.evaluations.append({"model": f"checkpoint-{i}", "step": i, "value": v})
        stops.append(cb._should_stop())
    assert stops == [False, False, False, True, True]
    assert cb.best()["model"] == "checkpoint-3"  # the highest value, even below min_delta
    cb.es = SimpleNamespace(patience=0, min_delta=0.0, metric="pass@1")
    assert not cb._should_stop()


def test_resume_after_an_interrupt_during_a_pending_evaluation_finishes_it(tmp_path, monkeypatch):
    import codelora.generation.generate

    real = codelora.generation.generate.generate_batch
    calls = []

    def sigterm_during_checkpoint_2(model, tok, prompts, sampling, seeds, batch_size, on_batch, **kw):
        calls.append(len(prompts))

        def saved(done):
            if len(calls) == 2:  # the signal arrives as the first answer of checkpoint-2 is stored
                os.kill(os.getpid(), signal.SIGTERM)
            on_batch(done)

        return real(model, tok, prompts, sampling, seeds, batch_size, saved, **kw)

    monkeypatch.setattr(codelora.generation.generate, "generate_batch", sigterm_during_checkpoint_2)
    cfg = _cfg(tmp_path, "train.max_steps=4", "train.save_steps=2")
    run_dir = tmp_path / "run"
    result = train(cfg, run_dir)
    assert result["interrupted"] and result["global_step"] == 3
    assert sorted(_graded(run_dir)) == ["base"]
    ck2 = run_dir / "eval" / "heldout" / "checkpoint-2"
    assert not (ck2 / "summary.json").exists()
    kept = (ck2 / "generations.jsonl").read_text().splitlines()
    assert len(kept) == 1  # what was generated before the signal is stored

    monkeypatch.setattr(codelora.generation.generate, "generate_batch", real)
    result = train(cfg, run_dir, resume=True)
    assert result["global_step"] == 4 and not result["interrupted"]
    graded = _graded(run_dir)
    assert sorted(graded) == ["base", "checkpoint-2", "checkpoint-3", "checkpoint-4"]
    s2 = _summary(run_dir, "checkpoint-2")
    now = (ck2 / "generations.jsonl").read_text().splitlines()
    assert len(now) == 2 and now[0] == kept[0]  # the stored answer was kept, the missing one generated
    assert graded["checkpoint-2"]["eval_pass@1"] == s2["pass@1"]
    assert len([r for r in _rows(run_dir) if r.get("eval_model") == "base"]) == 1  # kept, not redone


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.execution_eval=mbpp", "train.execution_eval is 'mbpp'; allowed: none or a benchmark (heldout"),
        ("train.execution_eval_limit=0", "train.execution_eval_limit must be > 0"),
        ("train.early_stopping.patience=-1", "train.early_stopping.patience must be >= 0"),
        ("train.early_stopping.metric=loss", "train.early_stopping.metric='loss' is not valid; choices: pass@1"),
    ],
)
def test_bad_values_are_one_line(override, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_config("demo", [override])


def test_early_stopping_needs_an_execution_eval():
    with pytest.raises(UserError, match="train.early_stopping.patience is 2, which needs train.execution_eval"):
        load_config("demo", ["train.early_stopping.patience=2", "train.execution_eval=none"])


def test_execution_eval_without_the_evaluation_stage_is_one_line(tmp_path):
    """Training does not import evaluation (tests/test_layout.py): a library caller that asks for pass@1 while
    training without handing in the evaluator gets one UserError before anything loads, not a crash mid-run."""
    cfg = _cfg(tmp_path, "train.max_steps=2", "train.save_steps=2")
    with pytest.raises(UserError, match="train.execution_eval=heldout needs the evaluation stage"):
        sft_train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()
