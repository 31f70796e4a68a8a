"""Training failures that must cost one clear line and nothing else: a full disk mid-checkpoint, a --resume
with another config or other data, a max_length the model cannot take."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from codelora.config import RunConfig, load_config
from codelora.errors import UserError
from codelora.training.sft import complete_checkpoints, resume_config_diff, train

BASE = [
    "model.source=tiny-random:qwen2",
    "train.max_steps=4",
    "train.logging_steps=2",
    "train.eval_steps=4",
    "train.save_steps=2",
    "data.max_length=256",
]


def _cfg(tmp: Path, *extra: str):
    return load_config("demo", [*BASE, *extra, f"output_dir={tmp}"])


@pytest.fixture(scope="module")
def disk_full_run(tmp_path_factory):
    """A run whose second checkpoint (step 4) hits ENOSPC halfway: adapter written, optimizer not."""
    import transformers

    tmp = tmp_path_factory.mktemp("enospc")
    run_dir = tmp / "run"
    original = transformers.Trainer._save_optimizer_and_scheduler

    def fill_disk(self, output_dir):
        if self.state.global_step == 4:
            Path(output_dir, "optimizer.pt").write_bytes(b"half an optimizer")
            raise OSError(errno.ENOSPC, "No space left on device", str(Path(output_dir, "optimizer.pt")))
        return original(self, output_dir)

    mp = pytest.MonkeyPatch()
    mp.setattr(transformers.Trainer, "_save_optimizer_and_scheduler", fill_disk)
    try:
        with pytest.raises(UserError) as err:
            train(_cfg(tmp), run_dir)
    finally:
        mp.undo()
    return tmp, run_dir, str(err.value)


def test_disk_full_one_line_no_half_checkpoint(disk_full_run):
    _, run_dir, message = disk_full_run
    assert "\n" not in message
    assert "disk full" in message and "checkpoint-4" in message and "checkpoint-2 is intact" in message
    assert not (run_dir / "checkpoints" / "checkpoint-4").exists()
    assert [p.name for p in complete_checkpoints(run_dir)] == ["checkpoint-2"]
    ck2 = run_dir / "checkpoints" / "checkpoint-2"
    assert (ck2 / "optimizer.pt").stat().st_size > 1000  # the resumable state was not deleted
    assert (ck2 / "adapter_model.safetensors").is_file()
    assert not (run_dir / "final").exists()


def test_resume_refuses_changed_training_keys(disk_full_run):
    tmp, run_dir, _ = disk_full_run
    with pytest.raises(UserError) as err:
        train(_cfg(tmp, "lora.r=8", "train.learning_rate=5e-4"), run_dir, resume=True)
    msg = str(err.value)
    assert "\n" not in msg and "lora.r (16 -> 8)" in msg and "train.learning_rate" in msg
    assert "train.max_steps" not in msg


def test_resume_refuses_changed_prepared_data(disk_full_run):
    tmp, run_dir, _ = disk_full_run
    path = run_dir / "data" / "train.jsonl"
    original = path.read_bytes()
    path.write_bytes(original + original.splitlines(keepends=True)[0])
    try:
        with pytest.raises(UserError, match=r"data/train.jsonl changed"):
            train(_cfg(tmp), run_dir, resume=True)
    finally:
        path.write_bytes(original)


def test_resume_after_disk_full_finishes_with_a_longer_max_steps(disk_full_run):
    tmp, run_dir, _ = disk_full_run
    result = train(_cfg(tmp, "train.max_steps=6"), run_dir, resume=True)  # max_steps may change on resume
    assert result["global_step"] == 6
    assert [p.name for p in complete_checkpoints(run_dir)] == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    assert (run_dir / "final" / "meta.json").is_file()
    rows = [json.loads(x) for x in (run_dir / "logs" / "metrics.jsonl").read_text().splitlines() if x.strip()]
    assert [r["step"] for r in rows if r["train_loss"] is not None] == [2, 4, 6]


def test_resume_config_diff_rules():
    saved = RunConfig().to_dict()
    cfg = RunConfig()
    cfg.train.max_steps, cfg.train.eval_steps, cfg.eval.temperature, cfg.model.device = 99, 200, 0.7, "cpu"
    assert resume_config_diff(saved, cfg) == []  # free keys and the eval section
    cfg.data.max_length, cfg.model.dtype, cfg.train.seed = 512, "fp32", 1
    assert resume_config_diff(saved, cfg) == ["model.dtype", "data.max_length", "train.seed"]
    del saved["train"]["seed"]  # a key an older config lacks counts as its default
    cfg.train.seed = RunConfig().train.seed
    assert resume_config_diff(saved, cfg) == ["model.dtype", "data.max_length"]


def test_stale_prepared_data_is_rebuilt_for_a_new_run(tmp_path):
    from codelora.data.prepare import prepare
    from codelora.model.chat import set_pad_token
    from codelora.model.sources import load_tokenizer

    run_dir = tmp_path / "run"
    tok = load_tokenizer("tiny-random:qwen2")
    set_pad_token(tok)
    prepare(_cfg(tmp_path, "data.max_length=64"), run_dir, tok)  # `codelora prepare` with other settings
    assert json.loads((run_dir / "data_report.json").read_text())["max_length"] == 64
    train(_cfg(tmp_path, "train.max_steps=1", "train.save_steps=1", "train.eval_steps=2"), run_dir)
    assert json.loads((run_dir / "data_report.json").read_text())["max_length"] == 256


def test_max_length_beyond_the_model_context_refused_before_anything(tmp_path):
    with pytest.raises(UserError) as err:
        train(_cfg(tmp_path, "data.max_length=4096"), tmp_path / "run")
    msg = str(err.value)
    assert "\n" not in msg and "data.max_length=4096" in msg and "max_position_embeddings=2048" in msg
    assert not (tmp_path / "run" / "data").exists()


def test_resume_state_is_found_in_the_forms_the_trainer_resumes_from(tmp_path):
    """optimizer.pt, or FSDP's optimizer_0/ or DeepSpeed's global_step<N>/ folder; none of them: refused."""
    from codelora.training.sft import resolve_resume_checkpoint

    ck = tmp_path / "checkpoints" / "checkpoint-2"
    ck.mkdir(parents=True)
    (ck / "meta.json").write_text("{}")
    (ck / "scheduler.pt").write_bytes(b"")
    with pytest.raises(UserError, match="has no optimizer.pt .*--reset-optimizer"):
        resolve_resume_checkpoint(tmp_path, "2")
    assert resolve_resume_checkpoint(tmp_path, "2", reset_optimizer=True) == ck
    for folder in ("optimizer_0", "global_step2"):
        (ck / folder).mkdir()
        assert resolve_resume_checkpoint(tmp_path, None) == ck
        (ck / folder).rmdir()
