"""train.seed fixes the LoRA initialisation: two runs of one config on the embedded SmolLM2-135M start from the same
lora_A and log the same losses (issue 29.1). On the tiny-random models this cannot fail: building them seeds torch's
generator, which hid that nothing seeded it before the adapter was created (the Trainer seeds only later).

Cost: two runs of 2 optimizer steps and one of 1 step, one example of at most 160 tokens per step, no eval."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from codelora.config import load_config
from codelora.training.sft import train

OVERRIDES = [
    "model.source=embedded:smollm2-135m-instruct",
    "train.max_steps=2",
    "train.logging_steps=1",
    "train.save_steps=1",
    "train.eval_steps=100",
    "train.per_device_batch_size=1",
    "train.gradient_accumulation_steps=1",
    "train.warmup_ratio=0",
    "data.max_length=160",
    "data.max_problems=2",
    "data.split=by_problem",  # every problem in train: no held-out split, so no step-0 eval to pay for
    "data.valid_fraction=0",
    "data.test_fraction=0",
    "lora.target_modules=[q_proj,v_proj]",
    "model.device=cpu",
]


def _train_losses(run_dir: Path) -> dict[int, float]:
    rows = [json.loads(x) for x in (run_dir / "logs" / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return {r["step"]: r["train_loss"] for r in rows if r["train_loss"] is not None}


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("seed")
    torch.manual_seed(1)  # whatever ran before in this process must not matter: the runs start in other states
    a = train(load_config("demo", [*OVERRIDES, f"output_dir={tmp}"]), tmp / "a")
    torch.rand(1000)
    b = train(load_config("demo", [*OVERRIDES, f"output_dir={tmp}"]), tmp / "b")
    return tmp / "a", tmp / "b", a, b


def test_same_seed_same_initial_adapter(two_runs):
    a, b, *_ = two_runs
    # after one step lora_A is its initial draw times AdamW's decay (lora_B = 0 gives lora_A no gradient at step 1)
    wa = load_file(a / "checkpoints" / "checkpoint-1" / "adapter_model.safetensors")
    wb = load_file(b / "checkpoints" / "checkpoint-1" / "adapter_model.safetensors")
    lora_a = [k for k in wa if "lora_A" in k]
    assert lora_a and wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), f"{k} differs between two runs of one config"


def test_same_seed_same_losses(two_runs):
    a, b, *_ = two_runs
    la, lb = _train_losses(a), _train_losses(b)
    assert sorted(la) == [1, 2]
    # step 1's loss is the base model's (lora_B = 0); step 2's depends on lora_A through step 1's update of lora_B
    assert la == lb


def test_another_seed_another_initial_adapter(tmp_path, two_runs):
    a, *_ = two_runs
    train(load_config("demo", [*OVERRIDES, "train.seed=43", "train.max_steps=1", f"output_dir={tmp_path}"]),
          tmp_path / "c")  # fmt: skip
    wa = load_file(a / "checkpoints" / "checkpoint-1" / "adapter_model.safetensors")
    wc = load_file(tmp_path / "c" / "checkpoints" / "checkpoint-1" / "adapter_model.safetensors")
    k = next(k for k in wa if "lora_A" in k)
    assert not torch.equal(wa[k], wc[k])
