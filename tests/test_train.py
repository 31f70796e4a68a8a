"""train(): metrics cadence, checkpoints, final adapter, resume, refusals (tiny random Qwen2, sample data)."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from codelora.config import load_config
from codelora.errors import UserError
from codelora.training.sft import complete_checkpoints, resolve_resume_checkpoint, train

OVERRIDES = [
    "model.source=tiny-random:qwen2",
    "train.max_steps=6",
    "train.logging_steps=2",
    "train.eval_steps=4",
    "train.save_steps=2",
    "data.max_length=256",
    "train.report_to=tensorboard",
    "train.eval_test=true",
]


def _cfg(tmp: Path):
    return load_config("demo", [*OVERRIDES, f"output_dir={tmp}"])


def _rows(run_dir: Path) -> list[dict]:
    text = (run_dir / "logs" / "metrics.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def run_a(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    run_dir = tmp / "run"
    result = train(_cfg(tmp), run_dir)
    return run_dir, result


def test_metrics_cadence_and_files(run_a):
    run_dir, result = run_a
    rows = _rows(run_dir)
    assert [r["step"] for r in rows if r["train_loss"] is not None] == [2, 4, 6]
    assert [r["step"] for r in rows if r["valid_loss"] is not None] == [0, 4, 6]
    assert all(r["test_loss"] is not None for r in rows if r["valid_loss"] is not None)
    assert all(r["tokens_seen"] > 0 for r in rows if r["step"] > 0)
    seen = [r["tokens_seen"] for r in rows]
    assert seen == sorted(seen)
    header = (run_dir / "logs" / "metrics.csv").read_text().splitlines()[0]
    assert header.split(",")[:3] == ["step", "epoch", "learning_rate"]
    assert (run_dir / "plots" / "loss.png").stat().st_size > 0
    assert (run_dir / "plots" / "lr.png").stat().st_size > 0
    assert (run_dir / "config.yaml").is_file() and (run_dir / "data_report.json").is_file()
    assert result["global_step"] == 6
    assert result["valid_loss_start"] == rows[0]["valid_loss"]
    assert result["train_loss"] == rows[-2]["train_loss"]


def test_tensorboard_events_hold_the_train_loss(run_a):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, _ = run_a
    tb = run_dir / "logs" / "tensorboard"
    assert list(tb.rglob("events.out.tfevents.*")), f"no events file under {tb}"
    acc = EventAccumulator(str(tb))
    acc.Reload()
    if not acc.Tags()["scalars"]:  # events written one folder down (older transformers)
        acc = EventAccumulator(str(next(tb.rglob("events.out.tfevents.*")).parent))
        acc.Reload()
    loss = {e.step: e.value for e in acc.Scalars("train/loss")}
    expected = {r["step"]: r["train_loss"] for r in _rows(run_dir) if r["train_loss"] is not None}
    assert loss.keys() == expected.keys()
    for step, value in expected.items():
        assert loss[step] == pytest.approx(value, rel=1e-5)
    assert "eval/valid_loss" in acc.Tags()["scalars"]


def test_checkpoints_and_final(run_a):
    run_dir, _ = run_a
    ck = run_dir / "checkpoints"
    names = sorted(p.name for p in ck.iterdir())
    assert names == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    for n in names:
        assert (ck / n / "adapter_model.safetensors").is_file()
        meta = json.loads((ck / n / "meta.json").read_text())
        assert meta["step"] == int(n.split("-")[1])
        assert meta["config"]["model"]["source"] == "tiny-random:qwen2"
    # every checkpoint keeps its resume state (optimizer, schedule, RNG), so any of them can be resumed
    for f in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
        assert [n for n in names if (ck / n / f).is_file()] == names, f
    final = run_dir / "final"
    assert (final / "adapter_model.safetensors").is_file() and (final / "meta.json").is_file()
    assert not (run_dir / "final.tmp").exists()


def test_lora_weights_changed(run_a):
    from safetensors.torch import load_file

    run_dir, _ = run_a
    weights = load_file(str(run_dir / "final" / "adapter_model.safetensors"))
    lora_b = [v for k, v in weights.items() if "lora_B" in k]
    assert lora_b, "no LoRA B weights saved"
    assert any(v.abs().sum() > 0 for v in lora_b)  # B starts at zero


def test_existing_run_folder_refused(run_a, tmp_path):
    run_dir, _ = run_a
    with pytest.raises(UserError, match="already exists"):
        train(_cfg(tmp_path), run_dir)


def test_resume_without_checkpoint_refused(tmp_path):
    (tmp_path / "run" / "checkpoints" / "checkpoint-2").mkdir(parents=True)  # incomplete: no meta.json
    assert complete_checkpoints(tmp_path / "run") == []
    with pytest.raises(UserError, match="no complete checkpoint"):
        train(_cfg(tmp_path), tmp_path / "run", resume=True)


def test_sigterm_then_resume_matches_uninterrupted_run(run_a, tmp_path, monkeypatch):
    from codelora.training.trainer import MetricsLog

    run_dir, _ = run_a
    loss6_a = [r for r in _rows(run_dir) if r["step"] == 6 and r["train_loss"] is not None][0]["train_loss"]
    original_add = MetricsLog.add

    def add_then_sigterm(self, row):  # SIGTERM right after the step-2 train log
        original_add(self, row)
        if row["step"] == 2 and row.get("train_loss") is not None:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(MetricsLog, "add", add_then_sigterm)
    run_b = tmp_path / "run"
    result = train(_cfg(tmp_path), run_b)
    monkeypatch.setattr(MetricsLog, "add", original_add)
    assert result["interrupted"] and result["global_step"] == 3
    assert not (run_b / "final").exists()
    assert [p.name for p in complete_checkpoints(run_b)] == ["checkpoint-2", "checkpoint-3"]
    junk = run_b / "checkpoints" / "checkpoint-5"  # a crash mid-save: no meta.json
    junk.mkdir()
    (junk / "adapter_model.safetensors").write_bytes(b"partial")

    result = train(_cfg(tmp_path), run_b, resume=True)
    rows_b = _rows(run_b)
    assert [r["step"] for r in rows_b if r["train_loss"] is not None] == [2, 4, 6]
    assert [r["step"] for r in rows_b if r["valid_loss"] is not None] == [0, 4, 6]
    loss6_b = [r for r in rows_b if r["step"] == 6 and r["train_loss"] is not None][0]["train_loss"]
    assert loss6_b == pytest.approx(loss6_a, abs=1e-4)
    assert result["global_step"] == 6 and not result["interrupted"]
    assert (run_b / "final" / "meta.json").is_file()
    assert not (run_b / "checkpoints" / "checkpoint-5").exists()


def test_nan_loss_stops_with_the_step(tmp_path):
    from codelora.training.sft import TrainingError

    cfg = load_config(
        "demo",
        [*OVERRIDES, "train.optim=sgd", "train.learning_rate=1e30", "train.warmup_ratio=0", f"output_dir={tmp_path}"],
    )
    with pytest.raises(TrainingError, match="at step 2"):
        train(cfg, tmp_path / "run")
    assert complete_checkpoints(tmp_path / "run") == []
    assert not (tmp_path / "run" / "final").exists()


def _trajectory(run_dir: Path, after: int) -> list[tuple]:
    """(step, learning rate, train loss, grad norm, valid loss) of every row after step `after`."""
    return [
        (r["step"], r["learning_rate"], r["train_loss"], r["grad_norm"], r["valid_loss"])
        for r in _rows(run_dir)
        if r["step"] > after
    ]


def _assert_same_trajectory(a: list[tuple], b: list[tuple]) -> None:
    assert [r[:2] for r in b] == [r[:2] for r in a]  # same steps, same learning rates
    for ra, rb in zip(a, b, strict=True):
        assert rb[2:] == pytest.approx(ra[2:], abs=1e-5), (ra, rb)


def test_resume_from_an_earlier_checkpoint_matches_the_uninterrupted_run(run_a, tmp_path):
    """Delete the newest checkpoints (and final), resume: optimizer, schedule and RNG continue from checkpoint-2."""
    run_dir, _ = run_a
    run_b = tmp_path / "run"
    shutil.copytree(run_dir, run_b)
    for name in ("checkpoints/checkpoint-6", "checkpoints/checkpoint-4", "final"):
        shutil.rmtree(run_b / name)
    result = train(_cfg(tmp_path), run_b, resume=True)
    assert result["global_step"] == 6 and (run_b / "final" / "meta.json").is_file()
    _assert_same_trajectory(_trajectory(run_dir, 2), _trajectory(run_b, 2))


def test_resume_from_a_named_checkpoint_redoes_the_later_ones(run_a, tmp_path, capsys):
    run_dir, _ = run_a
    run_b = tmp_path / "run"
    shutil.copytree(run_dir, run_b)
    with pytest.raises(
        UserError, match="checkpoint-3 does not exist; complete checkpoints: checkpoint-2, checkpoint-4"
    ):
        resolve_resume_checkpoint(run_b, "3")
    train(_cfg(tmp_path), run_b, resume_from="checkpoint-4")
    assert "removing checkpoint-6, final (redone from there)" in capsys.readouterr().err
    _assert_same_trajectory(_trajectory(run_dir, 4), _trajectory(run_b, 4))
    assert [p.name for p in complete_checkpoints(run_b)] == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]


def test_checkpoint_without_optimizer_state_refused_unless_reset(run_a, tmp_path):
    """A checkpoint from older codelora (optimizer state only in the newest): one line offering --reset-optimizer;
    with it, the weights and the schedule continue and AdamW starts afresh."""
    run_dir, _ = run_a
    run_b = tmp_path / "run"
    shutil.copytree(run_dir, run_b)
    (run_b / "checkpoints" / "checkpoint-2" / "optimizer.pt").unlink()
    with pytest.raises(UserError, match=r"checkpoint-2: it has no optimizer\.pt .*--reset-optimizer") as err:
        train(_cfg(tmp_path), run_b, resume_from="2")
    assert "\n" not in str(err.value)
    assert (run_b / "checkpoints" / "checkpoint-6").is_dir()  # refused before anything was removed
    train(_cfg(tmp_path), run_b, resume_from="2", reset_optimizer=True)
    a, b = _trajectory(run_dir, 2), _trajectory(run_b, 2)
    assert [r[:2] for r in b] == [r[:2] for r in a]  # the schedule continued, not restarted
    assert b[0][3] != pytest.approx(a[0][3], abs=1e-5)  # fresh moments: other updates, other gradients


def test_optimizer_state_is_two_fp32_moments_per_trainable_parameter(run_a):
    """The per-checkpoint resume state docs/training.md sizes for the seed recipe (8 bytes per LoRA parameter)."""
    from safetensors import safe_open

    run_dir, _ = run_a
    ck = run_dir / "checkpoints" / "checkpoint-2"
    with safe_open(str(ck / "adapter_model.safetensors"), "pt") as f:
        n = sum(f.get_slice(k).get_shape()[0] * f.get_slice(k).get_shape()[1] for k in f.keys())
    size = (ck / "optimizer.pt").stat().st_size
    assert 8 * n <= size <= 8 * n + 64_000, (n, size)
