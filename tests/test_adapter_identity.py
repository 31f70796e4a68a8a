"""An adapter is identified by its weights AND the adapter_config.json fields that change its output (issue 29.3):
PEFT scales B @ A by lora_alpha / r (rsLoRA: / sqrt(r); alpha_pattern per module), so the same weights file with
another lora_alpha is another model. Answers, results (provenance, result_key), staleness, the llama.cpp
conversion cache and exports are keyed by `runs.adapter_sha256`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import codelora.evaluation.evaluate as E
from codelora.config import load_config
from codelora.run import layout as runs
from codelora.run import results as run_results
from codelora.training.sft import train

FAST = {"max_new_tokens": 4, "workers": 2, "limit": 2}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("identity")
    cfg = load_config(
        "demo",
        [
            "model.source=tiny-random:qwen2",
            "train.max_steps=1",
            "train.logging_steps=1",
            "train.eval_steps=100",
            "train.save_steps=1",
            "data.max_length=128",
            f"output_dir={tmp}",
        ],
    )
    train(cfg, tmp / "run")
    return tmp / "run"


def _set_alpha(adapter: Path, alpha) -> None:
    path = adapter / "adapter_config.json"
    doc = json.loads(path.read_text())
    doc["lora_alpha"] = alpha
    path.write_text(json.dumps(doc, indent=2))


def test_editing_lora_alpha_recomputes(run, tmp_path):
    adapter = tmp_path / "A"
    shutil.copytree(run / "final", adapter)
    out = tmp_path / "out"
    first = E.evaluate_model("tiny-random:qwen2", "humaneval", out, adapter=str(adapter), **FAST)
    assert first["generation"]["generated"] == 2
    _set_alpha(adapter, 256)
    second = E.evaluate_model("tiny-random:qwen2", "humaneval", out, adapter=str(adapter), **FAST)
    # not "results current": the answers are generated again for the new scale, and the result says which adapter
    assert second["result_key"] != first["result_key"]
    assert second["generation"]["generated"] == 2 and second["generation"]["reused"] == 0
    assert second["provenance"]["adapter_sha256"] == runs.adapter_sha256(adapter)
    assert second["provenance"]["weights_sha256"] == first["provenance"]["weights_sha256"]  # same weights file
    # the view of the answers shows the alpha-256 answers only
    assert len(run_results.read_answers(out, second)) == 2


def test_same_weights_other_alpha_does_not_reuse_answers(run, tmp_path):
    a, b = tmp_path / "eval" / "a", tmp_path / "eval" / "b"
    shutil.copytree(run / "final", tmp_path / "A")
    shutil.copytree(run / "final", tmp_path / "B")
    _set_alpha(tmp_path / "B", 128)
    assert (tmp_path / "A" / "adapter_model.safetensors").read_bytes() == (
        tmp_path / "B" / "adapter_model.safetensors"
    ).read_bytes()
    E.evaluate_model("tiny-random:qwen2", "humaneval", a, adapter=str(tmp_path / "A"), **FAST)
    got = E.evaluate_model("tiny-random:qwen2", "humaneval", b, adapter=str(tmp_path / "B"), **FAST)
    assert got["generation"]["reused"] == 0 and got["generation"]["generated"] == 2
    # a byte-identical copy with the SAME config still reuses (the sibling rule keeps working)
    shutil.copytree(tmp_path / "A", tmp_path / "C")
    same = E.evaluate_model(
        "tiny-random:qwen2", "humaneval", tmp_path / "eval" / "c", adapter=str(tmp_path / "C"), **FAST
    )
    assert same["generation"]["reused"] == 2 and same["generation"]["generated"] == 0


def test_staleness_names_the_config_and_old_results(run, tmp_path):
    shutil.copytree(run / "final", tmp_path / "final")
    model = runs.Model("final", "final", 1, None, tmp_path / "final")
    prov = {"weights_sha256": model.weights_sha256(), "adapter_sha256": model.adapter_sha256()}
    assert run_results.staleness({"provenance": prov}, model) is None
    _set_alpha(tmp_path / "final", 64)
    assert "adapter_config.json" in run_results.staleness({"provenance": prov}, model)
    # a result written before the identity held the config: stale, recomputed, never silently current
    old = {"provenance": {"weights_sha256": model.weights_sha256()}}
    assert "evaluate again" in run_results.staleness(old, model)
    # the base model's results are untouched by this (no adapter, no config)
    assert (
        run_results.staleness({"provenance": {"weights_sha256": None}}, runs.Model("base", "base", 0, 0.0, None))
        is None
    )


def test_canonical_config_ignores_what_does_not_change_the_output(run, tmp_path):
    shutil.copytree(run / "final", tmp_path / "x")
    path = tmp_path / "x" / "adapter_config.json"
    base = runs.adapter_sha256(tmp_path / "x")
    doc = json.loads(path.read_text())
    same = {
        **doc,
        "target_modules": list(reversed(doc["target_modules"])),  # PEFT writes a set in arbitrary order
        "lora_alpha": float(doc["lora_alpha"]),
        "lora_dropout": 0.3,  # off in evaluation
        "base_model_name_or_path": "/elsewhere/model",
        "inference_mode": not doc.get("inference_mode", True),
    }
    same.pop("use_rslora", None)  # absent (an older PEFT) = false
    path.write_text(json.dumps(same))
    assert runs.adapter_sha256(tmp_path / "x") == base
    for key, value in [("use_rslora", True), ("r", doc["r"] * 2), ("alpha_pattern", {"q_proj": 7}),
                       ("rank_pattern", {"q_proj": 4}), ("use_dora", True), ("modules_to_save", ["lm_head"]),
                       ("target_modules", ["q_proj"])]:  # fmt: skip
        path.write_text(json.dumps({**doc, key: value}))
        assert runs.adapter_sha256(tmp_path / "x") != base, key


def test_llamacpp_conversion_cache_is_keyed_by_the_identity(run, tmp_path, monkeypatch):
    from codelora.generation.backends import llamacpp
    from codelora.model.sources import model_config

    monkeypatch.setenv("CODELORA_CACHE", str(tmp_path / "cache"))
    made = []

    def convert(adapter, config, out):
        made.append(out)
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_bytes(b"converted")

    monkeypatch.setattr(llamacpp, "convert_adapter", convert)
    shutil.copytree(run / "final", tmp_path / "a")
    config = model_config("tiny-random:qwen2")
    first = llamacpp.cached_adapter(tmp_path / "a", config)
    assert llamacpp.cached_adapter(tmp_path / "a", config) == first and len(made) == 1
    _set_alpha(tmp_path / "a", 5)
    assert llamacpp.cached_adapter(tmp_path / "a", config) != first and len(made) == 2
