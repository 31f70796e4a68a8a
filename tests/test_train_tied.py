"""Tied embeddings (tiny-random Qwen2 ties embed_tokens and lm_head, as SmolLM2 and Qwen2.5-Coder-1.5B do):
training refuses an adapter on them before anything runs, and the model `evaluate` generates with is base + adapter,
never a merge that changed the shared weight."""

from __future__ import annotations

import pytest

from codelora.config import load_config
from codelora.errors import UserError

SOURCE = "tiny-random:qwen2"


def test_train_refuses_lm_head_on_a_tied_model_before_anything(tmp_path):
    from codelora.training.sft import train

    cfg = load_config(
        "demo",
        [
            f"model.source={SOURCE}",
            "lora.target_modules=[q_proj, v_proj, lm_head]",
            "train.max_steps=1",
            f"output_dir={tmp_path}",
        ],
    )
    with pytest.raises(UserError) as err:
        train(cfg, tmp_path / "run")
    msg = str(err.value)
    assert "\n" not in msg and "lm_head" in msg and "tie_word_embeddings" in msg and "lora.target_modules" in msg
    assert not (tmp_path / "run" / "data_report.json").exists()  # refused before the data was prepared
    assert not (tmp_path / "run" / "checkpoints").exists()


def _adapter(tmp_path, targets: list[str]) -> str:
    """A saved PEFT adapter on the tiny model with non-zero B matrices (a trained adapter, not the identity)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from codelora.model.sources import load_model

    base, _ = load_model(SOURCE, dtype="fp32", device="cpu")
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=targets))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    folder = tmp_path / "adapter"
    model.save_pretrained(str(folder))
    return str(folder)


def _logits(model, ids):
    import torch

    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits.float()


@pytest.mark.parametrize("targets", [["q_proj", "lm_head"], ["q_proj", "v_proj"]], ids=["tied", "untied"])
def test_the_model_evaluate_generates_with_is_base_plus_adapter(tmp_path, targets, capsys):
    from codelora.generation.backends import ModelSpec
    from codelora.generation.backends.hf import load_model
    from codelora.model.chat import load_with_adapter, prompt_ids

    adapter = _adapter(tmp_path, targets)
    cfg = load_config("demo", [f"model.source={SOURCE}", "model.dtype=fp32", "model.device=cpu"])
    reference, tok = load_with_adapter(SOURCE, adapter, cfg)  # base + adapter, unmerged
    ids = prompt_ids(tok, cfg.data.system_prompt, "Print the sum of two integers.")
    want = _logits(reference, ids)

    model, _ = load_model(ModelSpec("checkpoint-1", SOURCE, adapter, 1), cfg)
    got = _logits(model, ids)
    assert float((got - want).abs().max()) <= 1e-4 * max(1.0, float(want.abs().max()))
    merged = not hasattr(model, "peft_config")
    if "lm_head" in targets:
        assert not merged and "served unmerged" in capsys.readouterr().err
    else:
        assert merged  # the fast path stays: a checked merge
