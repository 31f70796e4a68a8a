"""codelora export: merged and adapter exports of a tiny trained run, the merge check, the card, refusals."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest
import yaml

from codelora.config import SYSTEM_PROMPT, load_config
from codelora.errors import UserError
from codelora.publish.export import TOLERANCE, ExportError, export, resolve_checkpoint
from codelora.publish.model_card import REPO_PLACEHOLDER, check_front_matter, front_matter
from codelora.run import layout as runs
from codelora.run import results as run_results
from codelora.training.sft import train

OVERRIDES = [
    "model.source=tiny-random:qwen2",
    "train.max_steps=2",
    "train.logging_steps=2",
    "train.eval_steps=2",
    "train.save_steps=2",
    "data.max_length=256",
    "eval.max_new_tokens=64",
]
SELECTION = {
    "best": "checkpoint-2",
    "benchmark": "heldout",
    "reasons": ["pass@1 0.500 beats every other model", "vs base: 2 problems solved only by checkpoint-2"],
    "flags": [{"kind": "overfit", "message": "validation loss rose at step 2 while train loss fell"}],
    "table": [
        {"model": "base", "pass@1_low": 0.05, "pass@1_high": 0.45},
        {"model": "checkpoint-2", "pass@1_low": 0.2, "pass@1_high": 0.8},
    ],
}


def _summary(model: str, step: int, pass1: float) -> dict:
    return {
        "benchmark": "heldout",
        "problems": 4,
        "samples": 4,
        "pass@1": pass1,
        "model": model,
        "step": step,
        "sampling": {"n": 1, "greedy": True, "max_new_tokens": 64},
        "prompts_sha256": "abc",
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("export")
    run_dir = tmp / "run"
    train(load_config("demo", [*OVERRIDES, f"output_dir={tmp}"]), run_dir)
    (run_dir / "selection.json").write_text(json.dumps(SELECTION))
    for model, step, p in (("base", 0, 0.25), ("checkpoint-2", 2, 0.5)):
        d = run_dir / "eval" / "heldout" / model
        d.mkdir(parents=True)
        s = _summary(model, step, p)
        # results record the weights they were computed from (the card shows a mismatch as stale)
        weights = runs.weights_sha256(run_dir / "checkpoints" / model) if model != "base" else None
        s["provenance"] = run_results.provenance(
            benchmark="heldout",
            source="tiny-random:qwen2",
            revision=None,
            weights_sha256=weights,
            adapter_sha256=runs.adapter_sha256(run_dir / "checkpoints" / model) if model != "base" else None,
            prompts_sha256="abc",
            sampling={"greedy": True, "max_new_tokens": 64, "n": 1},
            problems_sha256="p",
            limit=None,
        )
        s["result_key"] = run_results.canonical_sha256(s["provenance"])
        (d / "summary.json").write_text(json.dumps(s))
    return run_dir


def _no_leftovers(out: Path) -> None:
    assert not out.exists()
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(out.name + ".")]


def _base_plus_adapter(adapter: Path):
    from codelora.config import load_config as lc
    from codelora.model.chat import load_with_adapter

    cfg = lc("demo", ["model.source=tiny-random:qwen2", "model.dtype=fp32"])
    return load_with_adapter("tiny-random:qwen2", str(adapter), cfg)


def _greedy(model, tokenizer, n: int = 8) -> list[int]:
    import torch

    chat = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "Print 42."}]
    enc = tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0)
    return out[0, enc["input_ids"].shape[1] :].tolist()


@pytest.fixture(scope="module")
def merged(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("merged") / "export"
    meta = export(run, out, checkpoint="best", merge=True, dtype="fp32", max_shard_size="5MB")
    return out, meta


def test_merged_export_loads_alone_and_matches_base_plus_adapter(run, merged):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, meta = merged
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors.index.json", "README.md", "loss.png"} <= names
    assert {"export_meta.json", "tokenizer_config.json"} <= names
    assert len([n for n in names if n.startswith("model-") and n.endswith(".safetensors")]) >= 2  # sharded
    assert not any(n.startswith("adapter_") for n in names)
    _no_leftovers(out.with_name("never-written"))
    assert not [p for p in out.parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name]

    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.chat_template and model.dtype == torch.float32
    ref_model, ref_tok = _base_plus_adapter(run / "checkpoints" / "checkpoint-2")
    assert _greedy(model, tok) == _greedy(ref_model, ref_tok)
    # the adapter really is in the weights: they differ from the base model's
    from codelora.model.sources import load_model

    base, _ = load_model("tiny-random:qwen2", dtype="fp32")
    diff = (model.model.layers[0].self_attn.q_proj.weight - base.model.layers[0].self_attn.q_proj.weight).abs().max()
    assert float(diff.detach()) > 0

    saved = json.loads((out / "export_meta.json").read_text())
    assert saved["merged"] is True and saved["dtype"] == "fp32" and saved["checkpoint"] == "checkpoint-2"
    assert saved["step"] == 2 and saved["source"] == "tiny-random:qwen2"
    assert saved["selected_by"] == "selection.json"
    assert 0 <= saved["max_logit_diff"] <= saved["verify"]["tolerance"]
    assert saved["verify"]["greedy_tokens"] > 0
    assert meta["max_logit_diff"] == saved["max_logit_diff"]


def test_merged_export_config_generation_config_and_tokenizer_agree(merged):
    """Every reader of the export sees the same pad token, stops at the end of a turn and finds the chat template
    (also in tokenizer_config.json, which older transformers and TGI read)."""
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    from codelora.model.chat import end_of_turn_id

    out, _ = merged
    tok = AutoTokenizer.from_pretrained(out)
    config = AutoConfig.from_pretrained(out)
    gen = GenerationConfig.from_pretrained(out)
    assert tok.pad_token_id is not None
    assert config.pad_token_id == gen.pad_token_id == tok.pad_token_id
    eos = gen.eos_token_id if isinstance(gen.eos_token_id, list) else [gen.eos_token_id]
    assert end_of_turn_id(tok) in eos and tok.eos_token_id in eos
    doc = json.loads((out / "tokenizer_config.json").read_text())
    assert doc.get("chat_template") == tok.chat_template


def test_merge_check_line_printed(run, tmp_path, capsys):
    out = tmp_path / "bf16"
    meta = export(run, out, checkpoint="2", merge=True, dtype="bf16")
    printed = capsys.readouterr().out
    assert "merge check: max |logit diff|" in printed
    assert f"{meta['max_logit_diff']:.3g}" in printed
    assert json.loads((out / "config.json").read_text()).get("dtype", "bfloat16") in ("bfloat16",)
    assert meta["verify"]["rtol"] == TOLERANCE["bf16"]
    assert meta["verify"]["max_logit_diff_fp32_in_memory"] <= meta["verify"]["tolerance_fp32_in_memory"]


def _perturb(model) -> None:
    import torch

    w = model.model.layers[0].mlp.down_proj.weight
    with torch.no_grad():
        w.add_(torch.randn_like(w) * 0.5)


def test_tampered_merge_caught_in_memory(run, tmp_path, monkeypatch):
    import codelora.publish.export as ex

    real = ex._merge

    def bad_merge(peft_model):
        merged = real(peft_model)
        _perturb(merged)
        return merged

    monkeypatch.setattr(ex, "_merge", bad_merge)
    out = tmp_path / "tampered"
    with pytest.raises(ExportError, match=r"merge check failed: the fp32 merge .*exceeds the fp32 tolerance"):
        export(run, out, checkpoint="final", merge=True, dtype="fp32")
    _no_leftovers(out)


def test_tampered_save_caught_on_reload(run, tmp_path, monkeypatch):
    import codelora.publish.export as ex

    real = ex._save_model

    def bad_save(model, folder, max_shard_size):
        _perturb(model)
        real(model, folder, max_shard_size)

    monkeypatch.setattr(ex, "_save_model", bad_save)
    out = tmp_path / "tampered"
    with pytest.raises(ExportError, match=r"the saved bf16 merge does not reproduce base \+ adapter"):
        export(run, out, checkpoint="final", merge=True, dtype="bf16")
    _no_leftovers(out)


def test_adapter_export_loads_with_peft(run, tmp_path):
    from peft import PeftModel
    from safetensors.torch import load_file

    from codelora.model.sources import load_model

    out = tmp_path / "adapter"
    meta = export(run, out, checkpoint="final")
    names = {p.name for p in out.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "loss.png", "export_meta.json"} <= names
    assert "tokenizer_config.json" in names
    assert json.loads((out / "tokenizer_config.json").read_text()).get("chat_template")
    assert not names & {"optimizer.pt", "trainer_state.json", "meta.json", "training_args.bin", "scheduler.pt"}
    assert meta["merged"] is False and meta["verify"]["generated_tokens"] > 0
    src = load_file(str(run / "final" / "adapter_model.safetensors"))
    got = load_file(str(out / "adapter_model.safetensors"))
    assert src.keys() == got.keys() and all((src[k] == got[k]).all() for k in src)

    base, tok = load_model("tiny-random:qwen2", dtype="fp32")
    model = PeftModel.from_pretrained(base, str(out))
    assert len(_greedy(model, tok, 4)) == 4
    card = front_matter((out / "README.md").read_text())
    assert card["library_name"] == "peft" and card["base_model_relation"] == "adapter"


def test_card_metadata_and_sections(run, merged):
    out, _ = merged
    text = (out / "README.md").read_text()
    assert text.startswith("---\n")
    fm = yaml.safe_load(text.split("---\n")[1])
    assert fm == front_matter(text)
    assert check_front_matter(fm) == []
    assert fm["base_model"] == "tiny-random:qwen2"
    assert fm["library_name"] == "transformers" and fm["pipeline_tag"] == "text-generation"
    assert {"codelora", "lora", "code"} <= set(fm["tags"])
    assert isinstance(fm["license"], str) and fm["license"]
    assert "datasets" not in fm  # the bundled sample set is not a Hub dataset
    for heading in (
        "## Training recipe",
        "## Data and split",
        "## Loss curves",
        "## Evaluation",
        "## Usage",
        "## Merge check",
        "## Limitations",
        "## How this checkpoint was chosen",
    ):
        assert heading in text, heading
    assert "![training and evaluation loss](loss.png)" in text
    assert "| heldout | base | 0.250 | 0.050–0.450 | 4 |" in text
    assert "| heldout | checkpoint-2 | 0.500 | 0.200–0.800 | 4 |" in text
    assert SELECTION["reasons"][1] in text and "validation loss rose at step 2" in text
    assert f"SYSTEM_PROMPT = {json.dumps(SYSTEM_PROMPT)}" in text  # the training system prompt, verbatim
    assert REPO_PLACEHOLDER in text and "from vllm import LLM" in text
    split = json.loads((run / "split.json").read_text())
    assert f"`{split['splits']['test']['sha256'][:16]}…`" in text
    assert "<|im_start|>system\n" + SYSTEM_PROMPT in text  # the rendered chat template
    assert "| 2 |" in text and "← exported" in text


def test_card_hub_dataset_and_unevaluated(run, tmp_path):
    from codelora.publish.model_card import build_card, card_metadata

    cfg = load_config("seed-deep")
    fm = card_metadata(cfg, {"merged": False})
    assert fm["datasets"] == ["Naholav/CodeGen-Deep-5K"]
    assert fm["base_model"] == "Qwen/Qwen2.5-Coder-1.5B-Instruct" and fm["license"] == "apache-2.0"
    emb = card_metadata(load_config("demo"), {"merged": True})
    assert emb["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and emb["library_name"] == "transformers"
    bare = tmp_path / "bare"
    bare.mkdir()
    ck = resolve_checkpoint(run, "final")
    text = build_card(bare, load_config("demo", OVERRIDES), ck, {"merged": False, "verify": {}})
    assert "Not evaluated" in text and "No comparison was run" in text
    assert check_front_matter(front_matter(text)) == []


def test_card_prompt_example_cannot_break_out_of_its_code_block(run, tmp_path):
    from markdown_it import MarkdownIt

    from codelora.publish.model_card import build_card

    # a system prompt asking for fenced code (common) puts fence lines into the rendered prompt
    fence = "`" * 3
    prompt = f"<|im_start|>system\nAnswer in\n{fence}python\ncode\n{fence}\n# INJECTED\n<|im_end|>\nPROBLEM"
    text = build_card(run, load_config("demo", OVERRIDES), resolve_checkpoint(run, "final"), {"merged": False}, prompt)
    toks = MarkdownIt("commonmark").parse(text)
    shown = [t.content for t in toks if t.type == "fence" and t.info == "text"]
    assert shown == [prompt + "\n"]
    assert not [t for t in toks if t.type == "inline" and "INJECTED" in t.content]


def test_nonempty_out_refused_then_force_replaces(run, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="exists and is not empty; pass --force"):
        export(run, out, checkpoint="final")
    assert (out / "keep.txt").read_text() == "mine"
    export(run, out, checkpoint="final", force=True)
    assert not (out / "keep.txt").exists() and (out / "adapter_model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_bad_checkpoints(run, tmp_path):
    with pytest.raises(UserError, match=r"checkpoint-7 does not exist; complete checkpoints in .*checkpoint-2, final"):
        export(run, tmp_path / "o", checkpoint="7")
    with pytest.raises(UserError, match="not best, final, a step number"):
        resolve_checkpoint(run, "latest")
    partial = run / "checkpoints" / "checkpoint-9"
    partial.mkdir()
    try:
        with pytest.raises(UserError, match="incomplete"):
            resolve_checkpoint(run, "checkpoint-9")
    finally:
        partial.rmdir()
    fake = tmp_path / "fake"
    fake.mkdir()
    with pytest.raises(UserError, match="selection.json not found: run `codelora compare"):
        resolve_checkpoint(fake, "best")
    (fake / "selection.json").write_text(json.dumps({"best": "base", "reasons": []}))
    with pytest.raises(UserError, match="selects the base model"):
        resolve_checkpoint(fake, "best")
    base_won = json.loads((run / "selection.json").read_text())
    try:
        (run / "selection.json").write_text(json.dumps({**base_won, "best": "base"}))
        with pytest.raises(UserError, match="selects the base model"):
            export(run, tmp_path / "o", checkpoint="best")
        meta = export(run, tmp_path / "o", checkpoint="best", if_base="final")
        assert meta["checkpoint"] == "final" and "picked the base model" in meta["selected_by"]
        assert "found no checkpoint better than the base model" in (tmp_path / "o" / "README.md").read_text()
        shutil.rmtree(tmp_path / "o")
    finally:
        (run / "selection.json").write_text(json.dumps(base_won))
    for inside in (run, run.parent, run / "final", run / "checkpoints" / "x"):
        with pytest.raises(UserError, match="would overwrite the run folder"):
            export(run, inside, checkpoint="final", force=True)
    assert (run / "final" / "adapter_model.safetensors").is_file()
    with pytest.raises(UserError, match="--dtype applies to a merged export"):
        export(run, tmp_path / "o", checkpoint="final", dtype="bf16")
    _no_leftovers(tmp_path / "o")


def test_base_model_mismatch(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    acfg_path = copy / "final" / "adapter_config.json"
    acfg = json.loads(acfg_path.read_text())
    acfg["base_model_name_or_path"] = "someone/other-model"
    acfg_path.write_text(json.dumps(acfg))
    with pytest.raises(UserError, match=r"trained on base model 'someone/other-model', but .*config.yaml says"):
        export(copy, tmp_path / "o", checkpoint="final")
    meta_path = copy / "checkpoints" / "checkpoint-2" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["config"]["model"]["source"] = "tiny-random:llama"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(UserError, match=r"meta.json was trained on base model 'tiny-random:llama'"):
        export(copy, tmp_path / "o", checkpoint="2", merge=True)
    _no_leftovers(tmp_path / "o")


def test_disk_full_during_merge(run, tmp_path, monkeypatch):
    import transformers.modeling_utils as mu

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(mu, "safe_save_file", full)
    out = tmp_path / "full"
    with pytest.raises(
        ExportError, match=r"^disk full while writing the export next to .*temporary folder was removed"
    ):
        export(run, out, checkpoint="final", merge=True, dtype="fp32")
    _no_leftovers(out)


def test_cli_one_line_errors(run, tmp_path, capsys):
    from codelora.cli import main

    assert main(["export", "--run", str(run), "--checkpoint", "99", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "checkpoint-99 does not exist" in err and "\n" not in err
    assert main(["export", "--run", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "no such run folder" in capsys.readouterr().err
