"""The embedded cache stores a tied input/output embedding under the input embedding's name (issue 29.5): safetensors'
save_model kept `lm_head.weight` only, so llama.cpp's convert_hf_to_gguf.py on the cache wrote a GGUF without
`token_embd`. Now the pair is `model.embed_tokens.weight`, as transformers' save_pretrained and the Hub's SmolLM2
store it (not both names: a second copy of the embedding for nothing), and the folder still loads to the same model."""

from __future__ import annotations

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

from codelora.model.sources import build_tiny_random, tied_state_dict


def test_tied_pair_is_saved_as_the_input_embedding(tmp_path):
    model = build_tiny_random("llama", vocab_size=300)
    assert model.config.tie_word_embeddings
    state = tied_state_dict(model)
    assert "model.embed_tokens.weight" in state and "lm_head.weight" not in state
    assert len(state) == len(model.state_dict()) - 1
    save_file(state, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    model.config.save_pretrained(tmp_path)
    assert set(load_file(tmp_path / "model.safetensors")) == set(state)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32)
    ids = torch.tensor([[1, 5, 9, 42, 7]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reloaded(ids).logits)
    assert reloaded.lm_head.weight.data_ptr() == reloaded.model.embed_tokens.weight.data_ptr()


def test_untied_weights_keep_every_name():
    model = build_tiny_random("qwen2", vocab_size=300)
    model.config.tie_word_embeddings = False
    model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())
    state = tied_state_dict(model)
    assert "lm_head.weight" in state and "model.embed_tokens.weight" in state
