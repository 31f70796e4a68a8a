"""--resume under another number of processes than trained the checkpoint (issue 29.2).

The Trainer resumes by skipping the checkpoint's step count of the new launch's batches: a run stopped at step 2 of
one process and resumed under 2 processes would skip 4 examples' worth where 2 were trained, and silently leave
part of the epoch untrained. Each checkpoint records its resume_state (processes, per-device batch, accumulation,
examples seen); a resume with another process count is refused with one line saying how to resume. The 2-process
launch is real (gloo, as in tests/test_train_ddp.py); the reverse direction is checked in-process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from codelora.config import load_config
from codelora.errors import UserError
from codelora.training.sft import train

COMMON = [
    "model.source=tiny-random:qwen2",
    "train.max_steps=4",
    "train.logging_steps=1",
    "train.eval_steps=100",
    "train.save_steps=2",
    "train.per_device_batch_size=1",
    "train.gradient_accumulation_steps=1",
    "data.max_length=128",
    "model.device=cpu",
]


@pytest.fixture(scope="module")
def one_process_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume-procs")
    train(load_config("demo", [*COMMON, f"output_dir={tmp}"]), tmp / "r")
    return tmp


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_checkpoint_records_its_resume_state(one_process_run):
    meta = json.loads((one_process_run / "r" / "checkpoints" / "checkpoint-2" / "meta.json").read_text())
    assert meta["resume_state"] == {
        "num_processes": 1,
        "per_device_batch_size": 1,
        "gradient_accumulation_steps": 1,
        "global_batch_size": 1,
        "examples_seen": 2,
    }


@pytest.mark.skipif(shutil.which("accelerate", path=str(Path(sys.executable).parent)) is None, reason="no accelerate")
def test_resume_under_two_processes_is_refused(one_process_run, tmp_path):
    run = _copy(one_process_run / "r", tmp_path / "r")
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    accelerate = str(Path(sys.executable).parent / "accelerate")
    cmd = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "-m", "codelora", "train", "--config", "demo", "--run", str(run),
           "--resume-from", "2", *[a for kv in COMMON + [f"output_dir={tmp_path}"] for a in ("--set", kv)]]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0, proc.stderr[-3000:]
    lines = [x for x in proc.stderr.splitlines() if x.startswith("error: cannot resume")]
    assert lines, proc.stderr[-3000:]
    assert "with 2 process(es): it was trained by 1" in lines[0]
    assert "without a launcher" in lines[0]
    # each rank refused with one line; the only traceback is the launcher's own report that its children exited 2
    assert "codelora/training" not in proc.stderr and "UserError" not in proc.stderr
    # nothing was changed: checkpoint-4 and final/ of the one-process run are still there
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before
    assert (run / "final" / "meta.json").is_file()


def test_resume_of_a_two_process_checkpoint_in_one_process_is_refused(one_process_run, tmp_path):
    run = _copy(one_process_run / "r", tmp_path / "r")
    ck = run / "checkpoints" / "checkpoint-2"
    meta = json.loads((ck / "meta.json").read_text())
    meta["resume_state"]["num_processes"] = 2
    (ck / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match=r"trained by 2 .*accelerate launch --num_processes 2"):
        train(load_config("demo", [*COMMON, f"output_dir={tmp_path}"]), run, resume_from="2")


def test_older_checkpoint_counts_its_processes_by_rng_files(one_process_run, tmp_path):
    run = _copy(one_process_run / "r", tmp_path / "r")
    ck = run / "checkpoints" / "checkpoint-2"
    meta = json.loads((ck / "meta.json").read_text())
    del meta["resume_state"]  # written before resume_state existed
    (ck / "meta.json").write_text(json.dumps(meta))
    rng = ck / "rng_state.pth"
    shutil.copy(rng, ck / "rng_state_0.pth")
    shutil.copy(rng, ck / "rng_state_1.pth")
    rng.unlink()
    with pytest.raises(UserError, match="trained by 2"):
        train(load_config("demo", [*COMMON, f"output_dir={tmp_path}"]), run, resume_from="2")


def test_same_process_count_resumes(one_process_run, tmp_path):
    run = _copy(one_process_run / "r", tmp_path / "r")
    out = train(load_config("demo", [*COMMON, f"output_dir={tmp_path}"]), run, resume_from="2")
    assert out["global_step"] == 4
