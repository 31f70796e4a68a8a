from pathlib import Path

import pytest
import yaml

from codelora.config import SYSTEM_PROMPT, load_config, preset_names, save_config
from codelora.errors import UserError


@pytest.mark.parametrize("name", ["seed-deep", "seed-diverse"])
def test_seed_presets_reproduce_the_original_recipe(name):
    c = load_config(name)
    assert c.model.source == "Qwen/Qwen2.5-Coder-1.5B-Instruct"
    assert c.model.dtype == "bf16"
    assert c.model.attn_implementation == "sdpa"
    assert c.train.gradient_checkpointing is True
    assert (c.lora.r, c.lora.alpha, c.lora.dropout, c.lora.bias) == (16, 32, 0.05, "none")
    assert c.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert c.train.epochs == 3
    assert c.train.per_device_batch_size == 1
    assert c.train.gradient_accumulation_steps == 16
    assert c.train.learning_rate == 2e-4
    assert c.train.weight_decay == 0.01
    assert c.train.optim == "adamw_torch"
    assert c.train.lr_scheduler == "cosine"
    assert c.train.warmup_ratio == 0.03
    assert (c.train.logging_steps, c.train.eval_steps, c.train.save_steps) == (20, 100, 100)
    assert c.data.max_length == 1024
    assert c.train.seed == 42
    assert c.data.system_prompt == SYSTEM_PROMPT
    assert SYSTEM_PROMPT == (
        "You are an expert Python programmer. Please read the problem carefully before writing any Python code."
    )
    assert (c.eval.temperature, c.eval.top_p, c.eval.max_new_tokens, c.eval.seed) == (0.2, 0.9, 1024, 42)
    assert c.eval.greedy is True
    assert c.data.dataset == {"seed-deep": "deep", "seed-diverse": "diverse"}[name]


def test_every_preset_loads_and_demo_is_cpu_sized():
    assert {"demo", "seed-deep", "seed-diverse"} <= set(preset_names())
    for name in preset_names():
        load_config(name)
    demo = load_config("demo")
    assert demo.model.source == "embedded:smollm2-135m-instruct"
    assert demo.model.dtype == "fp32"
    assert demo.train.max_steps > 0 and demo.data.max_length <= 512


def test_overrides_and_roundtrip(tmp_path: Path):
    c = load_config("seed-deep", ["train.learning_rate=1e-4", "lora.r=8", "data.dataset=diverse"])
    assert (c.train.learning_rate, c.lora.r, c.data.dataset) == (1e-4, 8, "diverse")
    save_config(c, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again.to_dict() == c.to_dict()


@pytest.mark.parametrize(
    "overrides, needle",
    [
        (["train.learning_rate=-1"], "train.learning_rate"),
        (["lora.r=0"], "lora.r"),
        (["lora.alpha=null"], "lora.alpha"),
        (["lora.rank=4"], "unknown key 'lora.rank'"),
        (["train.optim=adam"], "choices: adamw_torch"),
        (["train.eval_steps=30"], "multiple of train.logging_steps"),
        (["train.epochs=three"], "must be a number"),
        (["model.dtype=int4"], "choices: auto, bf16"),
        (["lora"], "expected section.key=value"),
    ],
)
def test_bad_values_name_the_key(overrides, needle):
    with pytest.raises(UserError, match=needle.replace(".", r"\.").replace("(", r"\(")):
        load_config("seed-deep", overrides)


def test_unknown_preset_and_missing_file(tmp_path):
    with pytest.raises(UserError, match="unknown preset 'nope'; presets: demo"):
        load_config("nope")
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lr: [1,\n")
    with pytest.raises(UserError, match="bad.yaml:.*not valid YAML"):
        load_config(bad)
    bad.write_text(yaml.safe_dump({"train": {"learning_rate": 0.1}, "extra": 1}))
    with pytest.raises(UserError, match="unknown key 'extra'"):
        load_config(bad)
