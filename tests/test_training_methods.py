"""A training method is one module of codelora.training: a toy method added as one file (a plug-in folder on the
package's path, as a user's would be) is registered beside SFT, and the checkpoints it writes in SFT's layout under
RUN/<method>/ are models that the run's one resolver lists and that evaluate and compare accept by name, with
nothing else changed. The toy method scales the start adapter's weights (different weights per checkpoint, so each
is a distinct model with its own answers' provenance)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from codelora import training
from codelora.config import load_config
from codelora.run import layout as runs
from codelora.training.sft import train as sft_train

SFT = [
    "model.source=tiny-random:qwen2",
    "train.max_steps=1",
    "train.logging_steps=1",
    "train.eval_steps=1",
    "train.save_steps=1",
    "data.max_length=256",
    "eval.max_new_tokens=8",
    "eval.batch_size=8",
]

TOY = '''
"""A toy training method: scale the start model's LoRA weights, one checkpoint per step."""
import json
import shutil

from safetensors.torch import load_file, save_file

from codelora.run.layout import RunFolder, find_model
from codelora.training import Method, register


def train(run_dir, start="final", steps=2):
    run = RunFolder(run_dir)
    mine = run.method("toy")
    src = find_model(run_dir, start)
    weights = load_file(str(src.path / "adapter_model.safetensors"))
    for step in range(1, steps + 1):
        ck = mine.checkpoint_dir(step)
        ck.mkdir(parents=True)
        shutil.copy(src.path / "adapter_config.json", ck / "adapter_config.json")
        save_file({k: v * (1.0 + step) for k, v in weights.items()}, str(ck / "adapter_model.safetensors"))
        meta = {"step": step, "provenance": {"method": "toy", "start": {"model": start}}}
        (ck / "meta.json").write_text(json.dumps(meta))  # written last: the checkpoint is complete
    shutil.copytree(ck, mine.final_dir)
    return {"run_dir": str(run_dir), "global_step": steps}


register(Method("toy", "scale the start adapter (a test)", train))
'''


@pytest.fixture
def toy(tmp_path, monkeypatch):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "toy.py").write_text(TOY, encoding="utf-8")
    monkeypatch.setattr(training, "__path__", [*training.__path__, str(folder)])
    yield "toy"
    training.unregister("toy")
    training.registry.imported.discard("toy")
    sys.modules.pop("codelora.training.toy", None)


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("methods-sft")
    run_dir = tmp / "run"
    sft_train(load_config("demo", [*SFT, f"output_dir={tmp}"]), run_dir)
    return run_dir


def test_sft_and_rl_are_registered_first():
    names = training.names()
    assert names[0] == "sft" and training.get("sft").train is sft_train
    if "rl" in names:  # trl installed
        from codelora.training.grpo import rl

        assert training.get("rl").train is rl


def test_an_unknown_method_is_one_line():
    from codelora.errors import UserError

    with pytest.raises(UserError, match=r"^unknown training method 'nope'; choose from sft"):
        training.get("nope")


def test_a_training_method_is_one_new_module(toy, sft_run, tmp_path):
    import shutil

    from codelora.evaluation.evaluate import evaluate
    from codelora.selection.compare import compare_run

    assert "toy" in training.names()  # found on the package's path, registered by its own import
    run = tmp_path / "run"
    shutil.copytree(sft_run, run)
    result = training.get("toy").train(run, "final")
    assert result["global_step"] == 2

    models, incomplete = runs.list_models(run)
    names = [m.name for m in models]
    assert names[-3:] == ["toy-checkpoint-1", "toy-checkpoint-2", "toy-final"] and not incomplete
    assert runs.find_model(run, "toy-2").name == "toy-checkpoint-2"  # the shorthand any method gets
    assert {m.method for m in models if m.name.startswith("toy-")} == {"toy"}

    chosen = "final,toy-checkpoint-1,toy-final"
    got = evaluate(run, "heldout", chosen)
    assert set(got) == set(chosen.split(","))
    for name in chosen.split(","):
        summary = json.loads((run / "eval" / "heldout" / name / "summary.json").read_text())
        assert summary["provenance"]["weights_sha256"] == runs.weights_sha256(runs.find_model(run, name).path)
    shas = {json.loads((run / "eval" / "heldout" / n / "summary.json").read_text())["provenance"]["weights_sha256"]
            for n in chosen.split(",")}  # fmt: skip
    assert len(shas) == 3  # three distinct models, three sets of answers

    doc = compare_run(run, "heldout", models=chosen.split(","))
    table = {r["model"]: r for r in doc["table"]}
    assert set(table) == set(chosen.split(","))
    assert table["toy-final"]["step"] is None and "toy step 2 from final" in table["toy-final"]["note"]
    assert len({r["problems"] for r in doc["table"]}) == 1
