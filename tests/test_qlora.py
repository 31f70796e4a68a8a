"""QLoRA (model.quantization) on CPU with a tiny Qwen2: 2 steps on an NF4 base, resume, evaluate on the quantised
base, export --merge into the unquantised base with its checks; int8 trains; bad values are one line, exit 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from codelora.cli import main
from codelora.config import load_config
from codelora.errors import UserError
from codelora.training.sft import train

bnb = pytest.importorskip("bitsandbytes", reason="QLoRA needs bitsandbytes (pip install 'codelora[qlora]')")

OVERRIDES = [
    "model.source=tiny-random:qwen2",
    "model.quantization=nf4",
    "train.max_steps=2",
    "train.logging_steps=1",
    "train.eval_steps=2",
    "train.save_steps=1",
    "data.max_length=256",
    "eval.max_new_tokens=16",
]


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "logs" / "metrics.jsonl").read_text().splitlines() if x.strip()]


def _spy_add_lora(seen: list):
    import codelora.training.sft as tr

    shipped = tr.add_lora

    def spy(model, *a, **kw):
        seen.append(sorted({type(m).__name__ for m in model.modules() if "Linear" in type(m).__name__}))
        return shipped(model, *a, **kw)

    return tr, spy


@pytest.fixture(scope="module")
def qrun(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("qlora")
    seen: list = []
    tr, spy = _spy_add_lora(seen)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tr, "add_lora", spy)
        result = train(load_config("demo", [*OVERRIDES, f"output_dir={tmp}"]), tmp / "run")
    return tmp / "run", result, seen


def test_trains_two_steps_on_a_4bit_base(qrun):
    run_dir, result, seen = qrun
    assert seen == [["Linear", "Linear4bit"]]  # the blocks' linear layers were NF4 when LoRA went on (lm_head not)
    assert result["global_step"] == 2 and result["train_loss"] is not None and result["valid_loss"] is not None
    for folder in (
        run_dir / "checkpoints" / "checkpoint-1",
        run_dir / "checkpoints" / "checkpoint-2",
        run_dir / "final",
    ):
        meta = json.loads((folder / "meta.json").read_text())
        q = meta["base_quantization"]
        assert q["method"] == "nf4" and q["bitsandbytes"] == bnb.__version__ and "quantised" in q["note"]
        assert meta["config"]["model"]["quantization"] == "nf4"
    acfg = json.loads((run_dir / "final" / "adapter_config.json").read_text())
    assert acfg["peft_type"] == "LORA"


def test_resume_continues_the_same_qlora_run(qrun, tmp_path):
    import shutil

    run_dir, _, _ = qrun
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    cfg = load_config("demo", [*OVERRIDES, f"output_dir={tmp_path}"])
    train(cfg, copy, resume_from="1")
    want = [(r["step"], r["train_loss"], r["grad_norm"], r["valid_loss"]) for r in _rows(run_dir)]
    got = [(r["step"], r["train_loss"], r["grad_norm"], r["valid_loss"]) for r in _rows(copy)]
    assert [g[0] for g in got] == [w[0] for w in want]
    for g, w in zip(got, want, strict=True):
        assert g[1:] == pytest.approx(w[1:], abs=1e-5), (g, w)
    # a resume may not switch the quantisation: it changes what was trained
    with pytest.raises(UserError, match=r"model.quantization \('nf4' -> 'none'\)"):
        train(
            load_config("demo", [*OVERRIDES, "model.quantization=none", f"output_dir={tmp_path}"]),
            copy,
            resume_from="1",
        )


def test_evaluate_runs_the_adapter_on_the_quantised_base(qrun):
    from codelora.evaluation import evaluate as E
    from codelora.model.chat import load_with_adapter
    from codelora.run.layout import load_run_config

    run_dir, _, _ = qrun
    cfg = load_run_config(run_dir)
    model, _ = load_with_adapter(cfg.model.source, str(run_dir / "final"), cfg)
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    out = E.evaluate(run_dir, "heldout", ["final"], max_new_tokens=6, workers=2)
    summary = json.loads((run_dir / "eval" / "heldout" / "final" / "summary.json").read_text())
    assert "final" in out and summary["problems"] > 0 and 0 <= summary["pass@1"] <= 1


def test_export_merges_into_the_unquantised_base(qrun, tmp_path):
    from transformers import AutoModelForCausalLM

    from codelora.publish.export import export

    run_dir, _, _ = qrun
    meta = export(run_dir, tmp_path / "merged", checkpoint="final", merge=True, dtype="fp32", verify_tokens=8)
    assert meta["merged"] and meta["dtype"] == "fp32"
    # the merge check proper: merged vs unquantised base + adapter, within fp32's tolerance
    assert meta["max_logit_diff"] <= meta["verify"]["tolerance"]
    vs = meta["vs_evaluated"]
    assert vs["quantization"] == "nf4" and vs["greedy_tokens"] > 0 and vs["max_logit_diff"] > 0  # measured
    assert meta["base_quantization"]["method"] == "nf4"
    config = json.loads((tmp_path / "merged" / "config.json").read_text())
    assert "quantization_config" not in config  # a plain model: the quantisation was training's only
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert not any("4bit" in type(m).__name__ for m in merged.modules())
    card = (tmp_path / "merged" / "README.md").read_text()
    assert "base quantisation (QLoRA)" in card and "quantised (nf4" in card
    saved = json.loads((tmp_path / "merged" / "export_meta.json").read_text())
    assert saved["base_quantization"]["method"] == "nf4" and saved["vs_evaluated"] == vs


def test_int8_trains_one_step(tmp_path):
    cfg = load_config(
        "demo",
        [*OVERRIDES, "model.quantization=int8", "train.max_steps=1", "train.eval_steps=1", f"output_dir={tmp_path}"],
    )
    result = train(cfg, tmp_path / "run")
    assert result["global_step"] == 1 and result["train_loss"] is not None
    meta = json.loads((tmp_path / "run" / "final" / "meta.json").read_text())
    assert meta["base_quantization"]["method"] == "int8"


def _one_line_exit_2(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def test_unknown_quantization_is_one_line(tmp_path, capsys):
    err = _one_line_exit_2(
        ["train", "--config", "demo", "--set", "model.quantization=nf8", "--set", f"output_dir={tmp_path}"], capsys
    )
    assert "model.quantization='nf8'" in err and "none, nf4, int8" in err


def test_nf4_without_bitsandbytes_is_one_line(tmp_path, capsys, monkeypatch):
    import codelora.model.sources as m

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # as if it were not installed: import fails
    monkeypatch.setattr(m, "load_model", lambda *a, **k: pytest.fail("the model loaded"))
    argv = ["train", "--config", "demo", "--set", "model.source=tiny-random:qwen2", "--set", "model.quantization=nf4"]
    err = _one_line_exit_2([*argv, "--set", f"output_dir={tmp_path}"], capsys)
    assert "model.quantization=nf4 needs bitsandbytes" in err and "codelora[qlora]" in err
    assert not (tmp_path / "demo").exists()  # refused before the run folder was made
