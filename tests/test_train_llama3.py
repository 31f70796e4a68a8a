"""No vocabulary surgery: a model whose tokenizer is Llama-3-style (no pad token, no `<|endoftext|>`, `<|eot_id|>`
ends a turn, reserved special tokens) trains, evaluates and exports with a LoRA-only adapter.

The model folder is built here: a byte-level BPE tokenizer trained on the sample problems with Llama 3's special
tokens and chat template, and a tiny random Llama with untied embeddings of that vocabulary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codelora.config import load_config

LLAMA3_SPECIALS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|reserved_special_token_2|>",
    "<|eot_id|>",
]
# Llama 3 Instruct's chat template (system turn first, bos written by the template).
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    " + message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def llama3_folder(tmp_path_factory) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast

    from codelora.data.load import load_rows

    rows, _ = load_rows("sample")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator([r["input"] + r["solution"] for r in rows], trainer)
    bpe.add_special_tokens(LLAMA3_SPECIALS)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>")
    tok.chat_template = LLAMA3_TEMPLATE
    assert tok.pad_token is None
    folder = tmp_path_factory.mktemp("llama3") / "model"
    tok.save_pretrained(str(folder))
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(str(folder))
    return folder


def test_llama3_style_tokenizer_trains_evaluates_and_exports_a_lora_only_adapter(llama3_folder, tmp_path):
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from codelora.evaluation.evaluate import evaluate
    from codelora.publish.export import export
    from codelora.training.sft import train

    vocab = len(AutoTokenizer.from_pretrained(str(llama3_folder)))
    cfg = load_config(
        "demo",
        [
            f"model.source={llama3_folder}",
            "model.dtype=fp32",
            "train.max_steps=2",
            "train.logging_steps=2",
            "train.eval_steps=2",
            "train.save_steps=2",
            "data.max_length=256",
            f"output_dir={tmp_path}",
        ],
    )
    run_dir = tmp_path / "run"
    train(cfg, run_dir)

    final = run_dir / "final"
    with safe_open(str(final / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and all("lora_" in k for k in keys), [k for k in keys if "lora_" not in k]
    assert not json.loads((final / "adapter_config.json").read_text()).get("modules_to_save")
    saved = AutoTokenizer.from_pretrained(str(final))
    assert len(saved) == vocab  # nothing added
    assert saved.pad_token.startswith("<|reserved_special_token_")  # an existing special token, not eot/eos

    # evaluate loads the adapter onto the unmodified base (it failed with "size mismatch for embed_tokens")
    results = evaluate(run_dir, "humaneval", ["final"], limit=1, max_new_tokens=4, workers=1)
    assert results["final"]["generation"]["generated"] == 1

    out = tmp_path / "merged"
    export(run_dir, out, checkpoint="final", merge=True, dtype="fp32", verify_tokens=4)
    model = AutoModelForCausalLM.from_pretrained(str(out))
    tok = AutoTokenizer.from_pretrained(str(out))
    assert model.get_input_embeddings().weight.shape[0] == vocab
    eot = tok.convert_tokens_to_ids("<|eot_id|>")
    assert model.config.pad_token_id == tok.pad_token_id == model.generation_config.pad_token_id
    eos = model.generation_config.eos_token_id
    assert eot in (eos if isinstance(eos, list) else [eos])
