"""The model card's Hub metadata is huggingface_hub's: ModelCardData front matter with the exported checkpoint's
pass@1 per benchmark and protocol as EvalResults (model-index), read back by huggingface_hub's own parser."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from huggingface_hub import ModelCard

from codelora.config import load_config
from codelora.publish.model_card import build_card, check_front_matter, eval_results, front_matter
from codelora.run.layout import adapter_sha256

WEIGHTS = b"adapter weights"


def _summary(path: Path, pass1: float, **extra) -> None:
    """A result of the run's checkpoint-4 as it is on disk (provenance: its weights' sha256)."""
    path.mkdir(parents=True)
    base = path.name == "base"
    ck = path.parents[2] / "checkpoints" / "checkpoint-4"
    prov = {"weights_sha256": None if base else hashlib.sha256(WEIGHTS).hexdigest()}
    if not base:  # a result's identity includes the adapter's config since the repro work (run.layout)
        prov["adapter_sha256"] = adapter_sha256(ck)
    summary = {"pass@1": pass1, "problems": 4, "samples": 4, "provenance": prov, **extra}
    (path / "summary.json").write_text(json.dumps(summary))


def _checkpoint(run: Path) -> None:
    ck = run / "checkpoints" / "checkpoint-4"
    ck.mkdir(parents=True)
    (ck / "adapter_model.safetensors").write_bytes(WEIGHTS)
    (ck / "meta.json").write_text(json.dumps({"step": 4}))


def test_pass_at_1_per_benchmark_and_protocol_in_model_index(tmp_path):
    run = tmp_path / "run"
    _checkpoint(run)
    _summary(run / "eval" / "heldout" / "checkpoint-4", 0.25)
    _summary(run / "eval" / "livecodebench" / "checkpoint-4", 0.5, protocol="livecodebench")
    _summary(run / "eval" / "livecodebench-course" / "checkpoint-4", 0.75, protocol="course")
    _summary(run / "eval" / "humaneval" / "base", 0.1)  # the base model's, not the export's: left out
    (run / "eval" / "humaneval" / "checkpoint-4").mkdir()
    (run / "eval" / "humaneval" / "checkpoint-4" / "summary.json").write_text('{"pass@1": null}')  # no number
    cfg = load_config("seed-deep")
    ck = {"name": "final", "step": 4}  # final = the last checkpoint: its results are checkpoint-4's

    got = [(r.dataset_type, r.dataset_config, r.metric_type, r.metric_value) for r in eval_results(run, cfg, ck)]
    assert got == [
        ("Naholav/CodeGen-Deep-5K", None, "pass@1", 0.25),
        ("livecodebench/code_generation_lite", "livecodebench", "pass@1", 0.5),
        ("livecodebench/code_generation_lite", "course", "pass@1", 0.75),
    ]

    text = build_card(run, cfg, ck, {"merged": False, "verify": {}})
    assert check_front_matter(front_matter(text)) == []
    card = ModelCard(text)  # huggingface_hub parses what the Hub will render
    assert card.data.base_model == "Qwen/Qwen2.5-Coder-1.5B-Instruct" and card.data.library_name == "peft"
    results = {(r.dataset_name, r.metric_value) for r in card.data.eval_results}
    assert results == {
        ("held-out test split of deep", 0.25),
        ("LiveCodeBench (livecodebench protocol)", 0.5),
        ("LiveCodeBench (course protocol)", 0.75),
    }
    assert card.data.model_name.startswith("Qwen2.5-Coder-1.5B-Instruct + codelora LoRA (final")
    assert "| livecodebench (course protocol) | checkpoint-4 (same step as final) | 0.750 |" in text


def test_unevaluated_export_has_no_model_index(tmp_path):
    text = build_card(tmp_path, load_config("seed-deep"), {"name": "final", "step": 4}, {"merged": False, "verify": {}})
    assert "model-index" not in front_matter(text) and ModelCard(text).data.eval_results is None
    assert "Not evaluated" in text
