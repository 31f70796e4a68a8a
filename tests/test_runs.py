"""The run folder's schema (codelora/run/layout.py): nothing stale, nothing lost, every rerun safe.

Each test is one way a user re-runs or mixes the stages on the same run folder, on a 2-step `tiny-random:qwen2`
run trained from a local copy of the bundled sample dataset, given as a *relative* path.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import pytest

import codelora.evaluation.evaluate as E
import codelora.generation.generate as G
from codelora.cli import main
from codelora.config import load_config
from codelora.errors import UserError
from codelora.files import atomic_write_text, sha256_file
from codelora.run import layout as runs
from codelora.run import results as run_results
from codelora.selection import compare as cmp
from codelora.training.sft import train

FAST = {"max_new_tokens": 6, "workers": 2}
ROOT = Path(__file__).resolve().parents[1]


def _overrides(tmp: Path, *extra: str) -> list[str]:
    return [
        "model.source=tiny-random:qwen2",
        "data.dataset=problems.jsonl",  # relative to the working directory at train time
        "train.max_steps=2",
        "train.logging_steps=1",
        "train.eval_steps=2",
        "train.save_steps=2",
        "data.max_length=256",
        f"output_dir={tmp}",
        "run_name=run",
        *extra,
    ]


def _sample_rows() -> bytes:
    return resources.files("codelora.data").joinpath("sample_problems.jsonl").read_bytes()


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file's bytes and mtime (the lock file is the run's mutex, not a result)."""
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(run folder, dataset file): a finished 2-step run; base and final evaluated on heldout."""
    tmp = tmp_path_factory.mktemp("runs")
    (tmp / "problems.jsonl").write_bytes(_sample_rows())
    cwd = os.getcwd()
    os.chdir(tmp)
    try:
        cfg = load_config("demo", _overrides(tmp))
        train(cfg, tmp / "run")
    finally:
        os.chdir(cwd)
    E.evaluate(tmp / "run", "heldout", ["base", "final"], **FAST)
    return tmp / "run", tmp / "problems.jsonl"


def _copy(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns(runs.LOCK_NAME))
    return dest


# ------------------------------------------------------------------------------------------- paths and permissions


def test_relative_dataset_path_is_stored_absolute_and_the_run_evaluates_from_elsewhere(trained, tmp_path, monkeypatch):
    run, dataset = trained
    stored = load_config(run / "config.yaml").data.dataset
    assert Path(stored).is_absolute() and Path(stored) == dataset.resolve()
    monkeypatch.chdir(tmp_path)  # another folder: the dataset's relative name means nothing here
    res = E.evaluate(run, "heldout", ["base"], **FAST)
    assert res["base"]["problems"] > 0


def test_result_files_respect_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "report.html", "<p>x</p>")
        runs.write_json(tmp_path / "summary.json", {"a": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "report.html").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "summary.json").stat().st_mode & 0o777 == 0o644


def test_results_store_paths_relative_to_the_run(trained):
    run, _ = trained
    s = json.loads((run / "eval" / "heldout" / "final" / "summary.json").read_text())
    assert s["adapter"] == "final" and "run" not in s
    assert s["provenance"]["weights_sha256"] == sha256_file(run / "final" / "adapter_model.safetensors")
    assert s["result_key"] == run_results.canonical_sha256(s["provenance"])


# ---------------------------------------------------------------------------------------------------- safe reruns


def test_resume_on_a_finished_run_changes_nothing(trained, tmp_path, capsys):
    run = _copy(trained[0], tmp_path / "run")
    before = _snapshot(run)
    argv = ["train", "--config", str(run / "config.yaml"), "--set", f"output_dir={tmp_path}", "--resume"]
    assert main(argv) == 0
    assert "already finished at step 2" in capsys.readouterr().err
    assert _snapshot(run) == before
    assert [p.name for p in runs.complete_checkpoints(run)] == ["checkpoint-2"]


def test_prepare_refuses_a_run_that_has_checkpoints(trained, tmp_path, capsys):
    run = _copy(trained[0], tmp_path / "run")
    before = _snapshot(run)
    argv = ["prepare", "--config", str(run / "config.yaml"), "--set", f"output_dir={tmp_path}"]
    assert main([*argv, "--set", "data.split_seed=7"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "already has checkpoints" in err and len(err.strip().splitlines()) == 1
    assert _snapshot(run) == before


def test_edited_dataset_is_prepared_again_for_a_new_run_and_refused_on_resume(trained, tmp_path):
    run, dataset = trained
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    data = tmp_path / "problems.jsonl"
    data.write_bytes(_sample_rows())
    cfg = load_config("demo", _overrides(tmp_path, f"data.dataset={data}", "run_name=fresh"))
    from codelora.data.prepare import prepare
    from codelora.model.sources import load_tokenizer

    prepare(cfg, fresh, load_tokenizer(cfg.model.source))
    rows_before = json.loads((fresh / "data_report.json").read_text())["rows_read"]
    lines = data.read_bytes().splitlines(keepends=True)
    data.write_bytes(b"".join(lines[::2]))  # the user edits the dataset file: 104 rows -> 52
    train(cfg, fresh)
    report = json.loads((fresh / "data_report.json").read_text())
    assert rows_before == 104 and report["rows_read"] == 52
    assert report["source_sha256"] == sha256_file(data)

    # the same edit under a trained run: --resume (to train longer) refuses rather than continue on other data
    moved = _copy(run, tmp_path / "resumed")
    original = dataset.read_bytes()
    try:
        dataset.write_bytes(b"".join(original.splitlines(keepends=True)[::2]))
        cfg = runs.load_run_config(moved, ["train.max_steps=4"])
        with pytest.raises(UserError, match="changed since it was prepared"):
            train(cfg, moved, resume=True)
    finally:
        dataset.write_bytes(original)
    assert [p.name for p in runs.complete_checkpoints(moved)] == ["checkpoint-2"]


def test_results_of_replaced_weights_are_stale_never_current(trained, tmp_path):
    run = _copy(trained[0], tmp_path / "run")
    old_final = json.loads((run / "eval" / "heldout" / "final" / "summary.json").read_text())
    train(runs.load_run_config(run, ["train.max_steps=4"]), run, resume=True)  # final/ is now the step-4 adapter
    models = {m.name: m for m in runs.list_models(run)[0]}
    assert models["final"].step == 4
    ev = run_results.read_result(run, "heldout", models["final"])
    assert ev.stale and "changed since" in ev.stale
    assert run_results.read_result(run, "heldout", models["base"]).stale is None
    doc = cmp.compare_run(run, evaluate_missing=False)
    assert "final" not in [r["model"] for r in doc["table"]]
    assert any(n.startswith("left out final: stale") for n in doc["notes"])
    assert not doc["full"] and not (run / "selection.json").exists()
    # compare (evaluating what is missing) evaluates the new final instead of showing the step-2 numbers
    doc = cmp.compare_run(run, **{"evaluate_options": FAST})
    new_final = json.loads((run / "eval" / "heldout" / "final" / "summary.json").read_text())
    assert new_final["step"] == 4 and new_final["result_key"] != old_final["result_key"]
    assert new_final["provenance"]["weights_sha256"] == sha256_file(run / "final" / "adapter_model.safetensors")
    assert doc["full"] and json.loads((run / "selection.json").read_text())["table"][-1]["step"] == 4


def test_generations_are_kept_across_limit_and_settings(trained, tmp_path, monkeypatch):
    run = _copy(trained[0], tmp_path / "run")
    store = run / "eval" / "heldout" / "base" / "generations.jsonl"
    full = len(store.read_text().splitlines())
    calls: list[int] = []
    real = G.generate_batch

    def counting(model, tok, prompts, *a, **kw):
        calls.append(len(prompts))
        return real(model, tok, prompts, *a, **kw)

    monkeypatch.setattr(G, "generate_batch", counting)
    s = E.evaluate(run, "heldout", ["base"], **{**FAST, "limit": 2})["base"]
    assert s["problems"] == 2 and calls == []  # answered from the store
    assert len(store.read_text().splitlines()) == full  # nothing thrown away
    s = E.evaluate(run, "heldout", ["base"], **FAST)["base"]
    assert calls == [] and s["generation"]["generated"] == 0 and s["problems"] == full
    for tokens in (8, 16, 8):
        E.evaluate(run, "heldout", ["base"], **{**FAST, "max_new_tokens": tokens})
    assert calls == [full, full]  # 8 and 16 generated once each; 8 again reused


def test_a_second_process_waits_for_the_lock(trained, tmp_path):
    run = _copy(trained[0], tmp_path / "run")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom codelora.run.layout import run_lock\n"
            "with run_lock(sys.argv[1], 'test holder'):\n    print('locked', flush=True)\n    time.sleep(2)\n",
            str(run),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        t0 = time.monotonic()
        E.evaluate(run, "heldout", ["base"], **FAST)
        waited = time.monotonic() - t0
    finally:
        holder.wait(timeout=30)
    assert waited > 1.0  # evaluate did not write while the other process held the run


# ------------------------------------------------------------------------------------------------- interruptions


def test_interrupted_train_exits_143_after_saving(tmp_path, monkeypatch, capsys):
    import codelora.data.format as F

    (tmp_path / "problems.jsonl").write_bytes(_sample_rows())
    monkeypatch.chdir(tmp_path)
    real = F.collate
    sent = []

    def collate_then_term(*a, **k):
        if not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGTERM)  # as `kill` or a cluster scheduler would
        return real(*a, **k)

    monkeypatch.setattr(F, "collate", collate_then_term)
    argv = ["train", "--config", "demo", *[x for o in _overrides(tmp_path, "train.max_steps=6") for x in ("--set", o)]]
    assert main(argv) == 143
    assert "interrupted at step" in capsys.readouterr().err
    assert runs.complete_checkpoints(tmp_path / "run") and not (tmp_path / "run" / "final").exists()


def test_interrupted_evaluate_exits_143_and_keeps_the_finished_batch(trained, tmp_path):
    run = _copy(trained[0], tmp_path / "run")
    script = (
        "import os, signal, sys\n"
        "import codelora.generation.generate as G\n"
        "from codelora.cli import main\n"
        "real = G.generate_batch\n"
        "def term_after_first(model, tok, prompts, sampling, seeds, bs, on_batch=None, **kw):\n"
        "    def save_then_term(done):\n"
        "        on_batch(done)\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return real(model, tok, prompts, sampling, seeds, bs, save_then_term, **kw)\n"
        "G.generate_batch = term_after_first\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    argv = ["evaluate", "--run", str(run), "--benchmark", "heldout", "--models", "checkpoint-2"]
    argv += ["--max-new-tokens", "5", "--batch-size", "4", "--workers", "2"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    p = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 143, p.stderr[-2000:]
    assert p.stderr.rstrip().endswith("terminated")
    store = run / "eval" / "heldout" / "checkpoint-2" / "generations.jsonl"
    assert len(store.read_text().splitlines()) == 4  # the finished batch was saved
    assert not (store.parent / "summary.json").exists()


# ------------------------------------------------------------------------------------------------ whole workflow


def test_the_whole_workflow_twice_changes_nothing_the_second_time(tmp_path, monkeypatch, capsys):
    (tmp_path / "problems.jsonl").write_bytes(_sample_rows())
    monkeypatch.chdir(tmp_path)
    run, out = tmp_path / "run", tmp_path / "export"
    sets = [x for o in _overrides(tmp_path) for x in ("--set", o)]
    workflow = [
        ["train", "--config", "demo", *sets],
        ["evaluate", "--run", str(run), "--benchmark", "heldout", "--models", "base,final", "--max-new-tokens", "6"],
        ["compare", "--run", str(run), "--benchmark", "heldout"],
        ["report", "--run", str(run)],
        ["export", "--run", str(run), "--checkpoint", "best", "--if-base", "final", "--out", str(out), "--force"],
    ]
    for argv in workflow:
        assert main(argv) == 0, argv
    assert (run / "selection.json").is_file() and (out / "export_meta.json").is_file()
    capsys.readouterr()
    first = _snapshot(tmp_path)

    calls: list[int] = []
    monkeypatch.setattr(G, "generate_batch", lambda *a, **k: calls.append(1))  # any generation would be recorded
    workflow[0] = [*workflow[0], "--resume"]  # as scripts/reproduce.sh reruns it
    for argv in workflow:
        assert main(argv) == 0, argv
    err = capsys.readouterr().err
    assert "already finished at step 2" in err and "is up to date" in err
    assert calls == []
    assert _snapshot(tmp_path) == first  # every file byte-identical, none even rewritten
