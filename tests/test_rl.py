"""codelora rl: GRPO (TRL) on a tiny run with the sandbox reward (generated hidden tests); weights move, an interrupted run resumes to the same
state as an uninterrupted one, RL models go through evaluate / compare / export by name, bad values are one line.

A random tiny model never writes a passing program, so every group's sandbox reward is 0 and GRPO has no gradient
from it; the runs here add a reward on the completion's text length (even/odd characters, varied across a group)
through `extra_rewards`, which TRL sums with the sandbox's. The sandbox still grades every completion (its verdicts
are asserted below); the length reward gives the update something to follow.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")

from codelora.config import load_config  # noqa: E402
from codelora.errors import UserError  # noqa: E402
from codelora.run import layout as runs  # noqa: E402
from codelora.run import results as run_results  # noqa: E402
from codelora.training.grpo import rl, training_problems  # noqa: E402
from codelora.training.sft import train  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
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
RL = [  # rl.tests: the default, generated hidden tests
    "rl.steps=3",
    "rl.save_steps=2",
    "rl.num_generations=2",
    "rl.prompts_per_step=2",
    "rl.max_new_tokens=8",
    "rl.learning_rate=0.01",
    "rl.workers=2",
]


def length_parity(prompts, completions, **kw):
    return [float(len(c) % 2) for c in completions]


def _sigint_at(step: int):
    """An extra reward that sends this process SIGINT while step `step` is being graded: the run's signal handler
    finishes that step, saves checkpoint-<step> and stops, as Ctrl-C does."""

    def reward(prompts, completions, trainer_state=None, **kw):
        if trainer_state is not None and trainer_state.global_step == step - 1:
            os.kill(os.getpid(), signal.SIGINT)
        return [0.0] * len(completions)

    return reward


def _adapter(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


@pytest.fixture(scope="module")
def sft(tmp_path_factory) -> Path:
    """A tiny SFT run with final/ (step 1), copied per test that writes RL into it."""
    tmp = tmp_path_factory.mktemp("rl-sft")
    run_dir = tmp / "run"
    cfg = load_config("demo", [*SFT, f"output_dir={tmp}"])
    train(cfg, run_dir)
    training_problems(run_dir, cfg, "generated")  # RUN/tests/train.jsonl, built once and copied with the run
    return run_dir


def _copy(run: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("rl"))
    return dest


@pytest.fixture(scope="module")
def uninterrupted(sft, tmp_path_factory) -> tuple[Path, dict]:
    run = _copy(sft, tmp_path_factory.mktemp("rl-a") / "run")
    result = rl(run, "final", RL, extra_rewards=[length_parity])
    return run, result


def test_rl_writes_the_run_schema_and_the_sandbox_verdicts(uninterrupted):
    run, result = uninterrupted
    folder = run / "rl"
    assert result["global_step"] == 3 and not result["interrupted"]
    assert [p.name for p in runs.complete_checkpoints(folder)] == ["checkpoint-2", "checkpoint-3"]  # and the last
    meta = json.loads((folder / "final" / "meta.json").read_text())
    prov = meta["provenance"]
    assert prov["start"] == {
        "model": "final",
        "step": 1,
        "weights_sha256": runs.weights_sha256(run / "final"),
        "adapter_sha256": runs.adapter_sha256(run / "final"),  # weights + canonical adapter_config.json
    }
    records = [json.loads(line) for line in (run / "tests" / "train.jsonl").read_text().splitlines()]
    chosen = {r["task_id"]: r["generated"] for r in records if r["generated"]}
    assert prov["file"] == "tests/train.jsonl" and prov["tests"] == "generated" and prov["problems"] == len(chosen)
    assert prov["tests_sha256"] == run_results.canonical_sha256(
        {pid: [{"input": t["input"], "output": t["output"]} for t in tests] for pid, tests in chosen.items()}
    )
    assert prov["rl"]["steps"] == 3 and prov["rl"]["tests"] == "generated"
    rows = [json.loads(line) for line in (folder / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert r["completions"] == 4  # 2 problems x 2 generations, every one graded by the sandbox
        assert sum(r["verdicts"].values()) == 4 and r["no_verdict"] == 0
        assert r["pass_rate"] == 0.0 and r["reward"] == 0.0  # random tokens pass nothing
        assert 0 <= r["frac_reward_zero_std"] <= 1 and r["completion_length"] > 0 and r["sandbox_seconds"] > 0
    assert list((folder / "logs" / "tensorboard").iterdir())
    assert (folder / "plots" / "reward.png").is_file()


def test_lora_weights_change_after_two_rl_steps(uninterrupted):
    run, _ = uninterrupted
    start, after = _adapter(run / "final"), _adapter(run / "rl" / "checkpoints" / "checkpoint-2")
    assert start.keys() == after.keys()
    moved = [k for k in start if not bool((start[k] == after[k]).all())]
    assert moved, "no LoRA weight changed in 2 GRPO steps"


def test_interrupted_rl_resumes_to_the_same_state(sft, uninterrupted, tmp_path):
    import torch

    run = _copy(sft, tmp_path / "run")
    first = rl(run, "final", RL, extra_rewards=[length_parity, _sigint_at(2)])
    assert first["interrupted"] and first["global_step"] == 2 and "final" not in first
    assert not (run / "rl" / "final").exists()
    second = rl(run, "final", RL, resume=True, extra_rewards=[length_parity, _sigint_at(-5)])
    assert second["global_step"] == 3 and not second["interrupted"]
    a, b = _adapter(uninterrupted[0] / "rl" / "final"), _adapter(run / "rl" / "final")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    rows_a = [json.loads(x) for x in (uninterrupted[0] / "rl" / "logs" / "metrics.jsonl").read_text().splitlines()]
    rows_b = [json.loads(x) for x in (run / "rl" / "logs" / "metrics.jsonl").read_text().splitlines()]
    same = ("step", "reward", "reward_total", "verdicts", "completion_length", "loss")
    assert [{k: r[k] for k in same} for r in rows_a] == [{k: r[k] for k in same} for r in rows_b]
    # a finished RL run is not trained again; one with other settings is refused
    again = rl(run, "final", RL, resume=True)
    assert again["already_finished"] and again["global_step"] == 3
    with pytest.raises(UserError, match=r"rl\.learning_rate"):
        rl(run, "final", [*RL, "rl.steps=5", "rl.learning_rate=0.5"], resume=True)
    with pytest.raises(UserError, match="already holds an RL run"):
        rl(run, "final", RL)


def test_rl_checkpoints_record_their_resume_state_and_refuse_another_process_count(
    uninterrupted, tmp_path, monkeypatch
):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(uninterrupted[0], run)
    meta = json.loads((run / "rl" / "checkpoints" / "checkpoint-2" / "meta.json").read_text())
    rs = meta["resume_state"]
    assert (
        rs["num_processes"] == 1
        and rs["global_batch_size"] == rs["per_device_batch_size"] * rs["gradient_accumulation_steps"]
    )
    assert rs["examples_seen"] == 2 * rs["global_batch_size"]
    before = sorted(p.name for p in (run / "rl" / "checkpoints").iterdir())
    monkeypatch.setenv("WORLD_SIZE", "2")  # as `accelerate launch --num_processes 2` sets it, before joining
    with pytest.raises(
        UserError, match=r"cannot resume .* from checkpoint-2 with 2 process\(es\): it was trained by 1"
    ):
        rl(run, "final", RL, resume_from="rl-checkpoint-2")
    assert sorted(p.name for p in (run / "rl" / "checkpoints").iterdir()) == before  # nothing removed
    assert (run / "rl" / "final" / "meta.json").is_file()


def test_rl_models_are_listed_and_found_by_name(uninterrupted):
    run, _ = uninterrupted
    models, incomplete = runs.list_models(run)
    names = [m.name for m in models]
    assert names == ["base", "checkpoint-1", "final", "rl-checkpoint-2", "rl-checkpoint-3", "rl-final"]
    assert not incomplete
    assert runs.find_model(run, "rl-2").path == run / "rl" / "checkpoints" / "checkpoint-2"
    assert runs.find_model(run, "rl-final").method == "rl" and runs.find_model(run, "final").method == "sft"
    with pytest.raises(UserError, match="rl/checkpoints/checkpoint-7 does not exist"):
        runs.find_model(run, "rl-checkpoint-7")


def test_rl_checkpoints_go_through_evaluate_compare_export(uninterrupted, tmp_path):
    from codelora.evaluation.evaluate import evaluate
    from codelora.publish.export import export
    from codelora.selection.compare import compare_run

    run, _ = uninterrupted
    evaluate(run, "heldout", "base,final,rl-checkpoint-2,rl-final")
    for name in ("rl-checkpoint-2", "rl-final"):
        summary = json.loads((run / "eval" / "heldout" / name / "summary.json").read_text())
        assert summary["provenance"]["weights_sha256"] == runs.weights_sha256(runs.find_model(run, name).path)
        # the adapter's identity (weights + canonical adapter_config.json), as for SFT models (issue 29.3)
        assert summary["provenance"]["adapter_sha256"] == runs.adapter_sha256(runs.find_model(run, name).path)
    doc = compare_run(run, "heldout", models=["base", "final", "rl-checkpoint-2", "rl-final"])
    table = {r["model"]: r for r in doc["table"]}
    assert set(table) == {"base", "final", "rl-checkpoint-2", "rl-final"}
    assert table["rl-final"]["rl_step"] == 3 and table["rl-final"]["step"] is None
    assert table["rl-final"]["valid_loss"] is None and "rl step 3 from final" in table["rl-final"]["note"]
    assert len({r["problems"] for r in doc["table"]}) == 1  # base, SFT and RL on the same problems
    out = tmp_path / "export"
    meta = export(run, out, checkpoint="rl-final")
    assert meta["checkpoint"] == "rl-final" and meta["weights_sha256"] == runs.weights_sha256(run / "rl" / "final")
    card = (out / "README.md").read_text()
    assert "`rl-final` (RL (GRPO) step 3 after final (SFT step 1))" in card
    assert "Fine-tuned for 1 optimizer steps" in card and "Then trained by GRPO (`codelora rl`) for 3 steps" in card
    exported = _adapter(out)
    for k, v in _adapter(run / "rl" / "final").items():
        assert (exported[k] == v).all()


def test_rl_checkpoints_and_their_export_follow_the_umask(uninterrupted, sft, tmp_path):
    """Issue 30 for RL: its checkpoints and final/ (written under the test process's umask) and an adapter export
    of rl-checkpoint-2 under umask 027 give every file and folder the umask's mode (safetensors writes 0600)."""
    import stat

    from codelora.files import current_umask
    from codelora.publish.export import export

    def wrong(folder: Path, mask: int) -> dict[str, str]:
        out = {}
        for p in [folder, *folder.rglob("*")]:
            want = (0o777 if p.is_dir() else 0o666) & ~mask
            if stat.S_IMODE(p.lstat().st_mode) != want:
                out[str(p.relative_to(folder))] = f"{stat.S_IMODE(p.lstat().st_mode):o}, want {want:o}"
        return out

    run, _ = uninterrupted
    mask = current_umask()
    for part in ("checkpoints/checkpoint-2", "final"):
        assert (run / "rl" / part / "adapter_model.safetensors").is_file()
        assert wrong(run / "rl" / part, mask) == {}, part
    start = json.loads((run / "rl" / "final" / "meta.json").read_text())["provenance"]["start"]
    assert start["adapter_sha256"] == runs.adapter_sha256(sft / "final")
    old = os.umask(0o027)
    try:
        export(run, tmp_path / "export", checkpoint="rl-checkpoint-2")
    finally:
        os.umask(old)
    assert (tmp_path / "export" / "adapter_model.safetensors").is_file()
    assert wrong(tmp_path / "export", 0o027) == {}


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "codelora", *args], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "rl.steps=0"], "rl.steps must be an integer > 0, got 0"),
        (["--set", "rl.loss_type=ppo"], "rl.loss_type='ppo' is not valid; choices: dapo, dr_grpo, grpo"),
        (["--set", "rl.num_generations=1"], "rl.num_generations must be >= 2"),
        (["--set", "rl.reward=partial"], "rl.reward='partial' is not valid; choices: binary, fraction"),
        (["--set", "rl.beta=-0.1"], "rl.beta must be >= 0"),
        (["--set", "rl.nope=1"], "unknown key 'rl.nope'"),
        (["--set", "train.max_steps=3"], "`codelora rl` takes only rl.KEY=VALUE"),
        (["--from", "rl-final"], "RL starts from an SFT model"),
        (["--from", "checkpoint-9"], "checkpoints/checkpoint-9 does not exist"),
    ],
)
def test_bad_rl_values_are_one_line_errors(uninterrupted, args, message):
    run, _ = uninterrupted
    out = _cli("rl", "--run", str(run), *args)
    assert out.returncode == 2, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], out.stderr[-2000:]


def test_vllm_colocate_without_vllm_is_one_line(sft):
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    with pytest.raises(UserError, match=r"rl\.vllm=colocate needs vLLM"):
        rl(sft, "final", ["rl.vllm=colocate"])


def test_rl_is_a_registered_training_method():
    from codelora import training

    assert training.names()[0] == "sft" and "rl" in training.names()
    assert training.get("rl").train is rl
    with pytest.raises(UserError, match="unknown training method 'ppo'"):
        training.get("ppo")
