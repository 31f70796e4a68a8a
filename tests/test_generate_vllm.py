"""vLLM LoRA serving: max_lora_rank is the smallest value vLLM accepts that covers every adapter of the evaluation,
set before the one engine (per base model and mode) is built. vLLM needs a GPU: a stand-in module records the engine
arguments; where vLLM is installed its own LoRAConfig validates the values."""

from __future__ import annotations

import sys
import types

import pytest

from codelora.config import load_config
from codelora.errors import UserError
from codelora.generation.backends.vllm import VLLM_MAX_LORA_RANKS, vllm_max_lora_rank


def test_smallest_accepted_rank_covering_every_adapter():
    assert vllm_max_lora_rank([16], VLLM_MAX_LORA_RANKS) == 16
    assert vllm_max_lora_rank([24], VLLM_MAX_LORA_RANKS) == 32  # 24 itself is refused by vLLM
    assert vllm_max_lora_rank([8, 16, 300], VLLM_MAX_LORA_RANKS) == 320
    assert vllm_max_lora_rank([4], VLLM_MAX_LORA_RANKS) == 8
    with pytest.raises(UserError, match="rank 600 is above vLLM's largest max_lora_rank"):
        vllm_max_lora_rank([600], VLLM_MAX_LORA_RANKS)


def test_installed_vllm_accepts_the_chosen_ranks():
    lora = pytest.importorskip("vllm.config.lora", reason="vLLM is not installed here (GPU machines)")
    for ranks in ([16], [24], [8, 64], [100]):
        rank = vllm_max_lora_rank(ranks)
        lora.LoRAConfig(max_lora_rank=rank, max_loras=1)  # raises if vLLM refuses it


@pytest.fixture()
def stand_in_vllm(monkeypatch):
    engines = []

    class LLM:
        def __init__(self, **kw):
            if kw.get("enable_lora") and kw.get("max_lora_rank") not in VLLM_MAX_LORA_RANKS:
                raise ValueError(f"max_lora_rank ({kw['max_lora_rank']}) must be one of {VLLM_MAX_LORA_RANKS}")
            self.kw, self.requests = kw, []
            engines.append(self)

        def generate(self, prompts, params, lora_request=None, use_tqdm=True):
            self.requests.append(lora_request)
            out = types.SimpleNamespace(text="```python\nprint(1)\n```", token_ids=[1, 2], finish_reason="stop")
            return [types.SimpleNamespace(outputs=[out]) for _ in prompts]

    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams = LLM, lambda **kw: types.SimpleNamespace(**kw)
    request = types.ModuleType("vllm.lora.request")
    request.LoRARequest = lambda name, lid, path: (name, lid, path)
    for name, mod in (("vllm", vllm), ("vllm.lora", types.ModuleType("vllm.lora")), ("vllm.lora.request", request)):
        monkeypatch.setitem(sys.modules, name, mod)
    return engines


def test_one_lora_engine_serves_base_and_every_rank_24_checkpoint(tmp_path, stand_in_vllm):
    from codelora.evaluation.evaluate import evaluate
    from codelora.model.sources import load_model
    from codelora.training.sft import train

    folder = tmp_path / "tiny"  # vLLM loads a model folder: the tiny random Qwen2, saved
    model, tok = load_model("tiny-random:qwen2", dtype="fp32")
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    cfg = load_config(
        "demo",
        [
            f"model.source={folder}",
            "lora.r=24",
            "train.max_steps=2",
            "train.logging_steps=1",
            "train.eval_steps=2",
            "train.save_steps=1",
            "data.max_length=128",
            f"output_dir={tmp_path}",
        ],
    )
    train(cfg, tmp_path / "run")
    out = evaluate(
        tmp_path / "run", "humaneval", "base,checkpoint-1,final", backend="vllm", vllm_mode="lora", limit=1, workers=1
    )
    assert set(out) == {"base", "checkpoint-1", "final"}
    (engine,) = stand_in_vllm  # the base model was evaluated first; the same engine served both adapters
    assert engine.kw["enable_lora"] and engine.kw["max_lora_rank"] == 32
    assert [r[0] if r else None for r in engine.requests] == [None, "checkpoint-1", "final"]
