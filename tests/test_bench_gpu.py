"""bench/gpu.py (the real-size GPU benchmark) runs end to end on CPU with --tiny."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIELD = ROOT.parent / "shared" / "field"


@pytest.mark.skipif(
    not (FIELD / "qwen25_tokenizer" / "config.json").is_file(), reason="needs ../shared/field (Qwen2.5 config)"
)
def test_gpu_bench_tiny_runs_end_to_end_on_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu.py"), "--tiny", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=1500,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["tiny"] and doc["model"]["architecture"] == "Qwen2ForCausalLM"
    assert doc["model"]["num_hidden_layers"] == 2
    runs = doc["training"]["runs"]
    assert set(runs) == {"a", "b", "c", "g"}  # g: QLoRA (nf4), on CPU here
    assert runs["g"]["label"].startswith("codelora + QLoRA")
    for r in runs.values():
        assert r["optimizer_steps"] == 1 and r["real_tokens_per_second"] > 0 and 0 < r["mfu"]
    assert runs["a"]["processed_tokens"] == 2 * 1024  # the original recipe pads both examples to 1024
    assert runs["b"]["real_share"] > runs["a"]["real_share"]
    assert runs["a"]["label_tokens"] > runs["b"]["label_tokens"]  # loss on everything vs on the answer
    assert doc["original_recipe_fits_8gib"] is None and doc["qlora_fits_8gib"] is None  # no GPU memory on CPU
    gen = doc["generation"]
    assert gen["prompts"] == 2 and 2 <= gen["new_tokens"] <= 16 and gen["tokens_per_second"] > 0
    ck = doc["checkpoint_generation"]  # train.execution_eval: live model in-process vs a separate process
    assert ck["in_process_seconds"] > 0 and ck["separate_process_seconds"] > ck["separate_process_generate_seconds"]
    assert "| codelora default" in proc.stdout
    rl = doc["rl"]  # codelora rl: 1 GRPO step of 2 problems x 2 completions, every one graded by the sandbox
    assert rl["steps"] == 1 and rl["completions_graded"] == 4 and sum(rl["verdicts"].values()) == 4
    assert rl["steps_per_second"] > 0 and rl["reward_completions_per_second"] > 0
    assert "| RL (GRPO" in proc.stdout
