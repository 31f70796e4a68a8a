"""`accelerate launch --multi_gpu --num_processes 2 -m codelora train --set model.device=cpu` (DDP over gloo) gives
the losses and gradient norms of one process with the same global batch, and only rank 0 writes the run folder.

(`accelerate launch --cpu --num_processes 2` starts ONE process in accelerate 1.x; `--multi_gpu` goes through
torchrun and works on a machine without GPUs.)

Tolerance: with lora.dropout=0 both runs do the same arithmetic up to the order of floating-point sums
(gradients averaged across ranks, token counts summed), so train losses agree to 1e-4 relative. With dropout the
processes draw different masks than one process would, and the curves then agree only statistically."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from codelora.config import load_config
from codelora.training.sft import complete_checkpoints, train

COMMON = [
    "model.source=tiny-random:qwen2",
    "train.max_steps=2",
    "train.logging_steps=1",
    "train.eval_steps=2",
    "train.save_steps=2",
    "train.per_device_batch_size=2",
    "data.max_length=256",
    "lora.dropout=0",
    "train.warmup_ratio=0",  # step 1 already updates the weights, so step 2's loss shows whether gradients synced
    "model.device=cpu",
]


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "logs" / "metrics.jsonl").read_text().splitlines() if x.strip()]


def _train_losses(rows: list[dict]) -> dict[int, float]:
    return {r["step"]: r["train_loss"] for r in rows if r["train_loss"] is not None}


@pytest.mark.skipif(shutil.which("accelerate", path=str(Path(sys.executable).parent)) is None, reason="no accelerate")
def test_two_cpu_processes_match_one(tmp_path):
    accelerate = str(Path(sys.executable).parent / "accelerate")
    # 2 processes x batch 2 x accumulation 1 ...
    cmd = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "-m", "codelora", "train", "--config", "demo", "--run", str(tmp_path / "ddp"),
           *[a for kv in COMMON + ["train.gradient_accumulation_steps=1", f"output_dir={tmp_path}"]
             for a in ("--set", kv)]]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # ... against 1 process x batch 2 x accumulation 2: the same 4 examples per optimizer step
    single = train(
        load_config("demo", [*COMMON, "train.gradient_accumulation_steps=2", f"output_dir={tmp_path}"]),
        tmp_path / "single",
    )

    ddp_dir = tmp_path / "ddp"
    rows_ddp, rows_one = _rows(ddp_dir), _rows(tmp_path / "single")
    loss_ddp, loss_one = _train_losses(rows_ddp), _train_losses(rows_one)
    assert sorted(loss_ddp) == sorted(loss_one) == [1, 2]
    for step in loss_one:
        assert loss_ddp[step] == pytest.approx(loss_one[step], rel=1e-4)
    # the gradient norm differs unless the ranks all-reduce their gradients (it caught a DDP wrap that never happened)
    norms = [[r["grad_norm"] for r in rows if r["train_loss"] is not None] for rows in (rows_ddp, rows_one)]
    assert norms[0] == pytest.approx(norms[1], rel=1e-4)
    # real tokens are summed over both ranks
    assert [r["tokens_seen"] for r in rows_ddp if r["train_loss"] is not None] == [
        r["tokens_seen"] for r in rows_one if r["train_loss"] is not None
    ]
    # rank 0 alone wrote the logs (one row per step and kind, not two) and the checkpoint metadata
    assert [r["step"] for r in rows_ddp] == [r["step"] for r in rows_one] == [0, 1, 2, 2]
    (ck,) = complete_checkpoints(ddp_dir)
    assert ck.name == "checkpoint-2"
    assert (ck / "rng_state_0.pth").is_file() and (ck / "rng_state_1.pth").is_file()
    assert (ddp_dir / "final" / "meta.json").is_file() and not (ddp_dir / "final.tmp").exists()
    assert single["global_step"] == 2
