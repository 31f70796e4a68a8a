"""Every bad value of issue #17 is one `error:` line naming the key, the value and what is allowed, exit status 2,
before any model loads; values that used to be accepted silently are refused or now work (a UTF-8 BOM)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import codelora.model.sources
from codelora.cli import COMMANDS, build_parser, main
from codelora.flags import field_docs

ROOT = Path(__file__).resolve().parents[1]
LCB_PROBLEMS = ROOT / "tests" / "fixtures" / "lcb_problems.jsonl"
TINY = "--set model.source=tiny-random:qwen2"


@pytest.fixture(autouse=True)
def no_model_loads(monkeypatch):
    """Any model or tokenizer load fails the test: every refusal must come first."""

    def refuse(*a, **k):
        raise AssertionError("a model was loaded before the bad value was refused")

    monkeypatch.setattr(codelora.model.sources, "load_model", refuse)
    monkeypatch.setattr(codelora.model.sources, "load_tokenizer", refuse)


def _setup(tmp: Path) -> dict[str, str]:
    """Files the cases refer to, by placeholder."""
    (tmp / "latin1.yaml").write_bytes(b"train:\n  epochs: 1  # caf\xe9\n")
    run = tmp / "out" / "resumed"
    ck = run / "checkpoints" / "checkpoint-2"
    ck.mkdir(parents=True)
    (ck / "meta.json").write_text('{"step": 2, "config": ')  # torn write
    for name in ("optimizer.pt", "scheduler.pt", "adapter_model.safetensors"):  # the rest of a complete checkpoint
        (ck / name).write_bytes(b"x")
    (tmp / "file.txt").write_text("x")
    (tmp / "elsewhere").mkdir()
    (tmp / "no_id.jsonl").write_text(json.dumps({"tests": [{"input": "", "output": "1\n"}]}) + "\n")
    (tmp / "s.jsonl").write_text(json.dumps({"task_id": "a", "completion": "print(1)"}) + "\n")
    (tmp / "ho.jsonl").write_text(json.dumps({"task_id": "a", "tests": [{"input": "", "output": "1\n"}]}) + "\n")
    (tmp / "he.jsonl").write_text(json.dumps({"task_id": "HumanEval/0", "completion": "    return False\n"}) + "\n")
    return {"TMP": str(tmp), "OUT": str(tmp / "out"), "RUN": str(run)}


SCORE_HE = "score --benchmark humaneval --samples TMP/he.jsonl --out TMP/o"
EVAL_HE = "evaluate --model tiny-random:qwen2 --benchmark humaneval --out TMP/e"
# (case, command line, words the one error line must contain); TMP, OUT and RUN are filled in by _setup
CASES = [
    ("non-UTF-8 config", "train --config TMP/latin1.yaml", ["latin1.yaml", "not UTF-8", "0xe9"]),
    (
        "corrupt meta.json on --resume",
        f"train --resume --run RUN --config demo {TINY}",
        ["checkpoint-2/meta.json", "not valid JSON"],
    ),
    (
        "lora.target_modules=[nope]",
        f"train --set output_dir=OUT --set lora.target_modules=[nope] {TINY}",
        ["lora.target_modules=['nope']", "allowed:", "q_proj"],
    ),
    ("model.device=banana", "train --set model.device=banana", ["model.device", "'banana'", "cuda:N"]),
    ("train.epochs=1e400", "train --set train.epochs=1e400", ["train.epochs=inf", "finite number"]),
    ("train.learning_rate=.inf", "train --set train.learning_rate=.inf", ["train.learning_rate", "finite"]),
    ("score --k abc", f"{SCORE_HE} --k abc", ["--k", "'abc'", "integer"]),
    ("score --k -1", f"{SCORE_HE} --k 1,-1", ["--k 1,-1", ">= 1"]),
    ("score --workers -1", f"{SCORE_HE} --workers -1", ["--workers -1", ">= 1"]),
    ("evaluate --workers -1", f"{EVAL_HE} --workers -1", ["--workers -1", ">= 1"]),
    ("score --timeout -1", f"{SCORE_HE} --timeout -1", ["--timeout -1", "> 0 seconds"]),
    (
        "score --timeout 0 (was recorded as 0, 6 s used)",
        "score --benchmark heldout --samples TMP/s.jsonl --problems TMP/ho.jsonl --out TMP/o --timeout 0",
        ["--timeout 0", "> 0 seconds"],
    ),
    ("score --memory-mb 0", f"{SCORE_HE} --memory-mb 0", ["--memory-mb 0", ">= 16"]),
    ("evaluate --temperature nan", f"{EVAL_HE} --temperature nan", ["--temperature", "'nan'", "finite"]),
    *[
        (f"evaluate --{flag} 0 (fell back to the default)", f"{EVAL_HE} --{flag} 0", [f"--{flag} 0", ">= 1"])
        for flag in ("n", "batch-size", "max-new-tokens", "threads")
    ],
    (
        "evaluate --n 2 --temperature 0 (duplicate samples)",
        f"{EVAL_HE} --n 2 --temperature 0",
        ["--temperature 0", "identical samples"],
    ),
    (
        "export --max-shard-size abc",
        "export --run RUN --out TMP/x --merge --max-shard-size abc",
        ["--max-shard-size 'abc'", "e.g. 2GB"],
    ),
    ("export --out . from outside the run", "export --run RUN --out .", ["--out '.'", "current folder"]),
    ("export --out FILE", "export --run RUN --out TMP/file.txt", ["file.txt", "existing file"]),
    (
        "held-out problems line without task_id",
        "score --benchmark heldout --samples TMP/s.jsonl --problems TMP/no_id.jsonl --out TMP/o",
        ["no_id.jsonl:1", "task_id"],
    ),
    (
        "evaluate held-out problems without task_id",
        "evaluate --model tiny-random:qwen2 --benchmark heldout --problems TMP/no_id.jsonl --out TMP/e",
        ["no_id.jsonl:1", "task_id"],
    ),
    ("score --protocol for humaneval", f"{SCORE_HE} --protocol course", ["--protocol course", "livecodebench only"]),
    ("compare --limit 0", "compare --run RUN --limit 0", ["--limit 0", ">= 1"]),
    ("report --benchmark mbpp", "report --run RUN --benchmark mbpp", ["--benchmark 'mbpp'", "humaneval"]),
]


@pytest.mark.parametrize("case, argv, words", CASES, ids=[c[0] for c in CASES])
def test_bad_value_is_one_line_exit_2(case, argv, words, tmp_path, monkeypatch, capsys):
    argv = argv.split()
    subs = _setup(tmp_path)
    monkeypatch.chdir(tmp_path / "elsewhere")  # `--out .` names a folder outside the run
    for k, v in subs.items():
        argv = [a.replace(k, v) if k in a else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    for w in words:
        assert w in err, (w, err)


def test_utf8_bom_samples_and_dataset_are_read(tmp_path, capsys):
    """A byte-order mark used to make line 1 'malformed JSON'."""
    from codelora.data.load import load_rows

    samples = tmp_path / "s.json"
    samples.write_bytes(b"\xef\xbb\xbf" + Path(ROOT / "examples" / "lcb_samples.json").read_bytes())
    argv = ["score", "--benchmark", "livecodebench", "--problems", str(LCB_PROBLEMS), "--samples", str(samples)]
    assert main([*argv, "--out", str(tmp_path / "o"), "--workers", "2"]) == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["bad_samples"] == [] and summary["samples"] > 0

    row = {"input": "Print 1.", "solution": "print(1)"}
    data = tmp_path / "d.jsonl"
    data.write_bytes(b"\xef\xbb\xbf" + (json.dumps(row) + "\n").encode())
    rows, report = load_rows(str(data))
    assert report["bad_rows"] == [] and [{k: r[k] for k in row} for r in rows] == [row]


def test_read_only_run_folder_is_one_line(tmp_path):
    """A really read-only output folder (for root, whom permissions do not stop: a read-only bind mount made by
    bubblewrap), refused before the model loads."""
    import shutil

    ro = tmp_path / "outputs"
    ro.mkdir()
    code = (
        "import sys, codelora.model.sources as m\n"
        "m.load_model = m.load_tokenizer = lambda *a, **k: sys.exit('model loaded')\n"
        "from codelora.cli import main\n"
        f"sys.exit(main(['train', '--set', 'output_dir={ro}', '--set', 'model.source=tiny-random:qwen2']))\n"
    )
    cmd = [sys.executable, "-c", code]
    if os.geteuid() == 0:
        if not shutil.which("bwrap"):
            pytest.skip("root ignores folder permissions and bubblewrap (make sandbox-deps) is not installed")
        cmd = ["bwrap", "--dev-bind", "/", "/", "--ro-bind", str(ro), str(ro), *cmd]
    else:
        ro.chmod(0o555)
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    finally:
        ro.chmod(0o755)
    err = r.stderr.strip().splitlines()
    assert r.returncode == 2, r.stderr
    assert len(err) == 1 and err[0].startswith("error: cannot write the run folder") and str(ro) in err[0], err
    assert "not writable" in err[0]


def test_every_flag_is_documented_in_its_dataclass():
    """--help is made from the dataclasses: every flag has the field's docstring as its help."""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.choices and "score" in a.choices)
    for name, cls, _func in COMMANDS:
        p = sub.choices[name]
        docs = field_docs(cls)
        for action in p._actions:
            if action.dest in ("help",):
                continue
            assert action.help, (name, action.dest)
            f = next(f for f in cls.__dataclass_fields__.values() if f.name == action.dest)
            source = f.metadata.get("doc_from", cls)
            assert field_docs(source)[action.dest].split(" (")[0][:30] in action.help, (name, action.dest)
        assert docs, name


def test_protocol_choices_match_the_registry():
    from typing import get_args

    from codelora.benchmarks.protocol import PROTOCOLS
    from codelora.commands import ProtocolName

    assert set(get_args(ProtocolName)) == set(PROTOCOLS)


def test_help_of_every_command_exits_0(capsys):
    for name, *_ in COMMANDS:
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        assert e.value.code == 0
        assert "--" in capsys.readouterr().out


def test_one_benchmark_list_behind_every_command():
    """codelora.benchmarks' registry is the list the --benchmark flags, evaluate, compare and the card read."""
    from codelora import benchmarks

    parser = build_parser()
    sub = next(a for a in parser._actions if a.choices and "score" in a.choices)
    for name in ("evaluate", "score", "compare", "report"):
        (flag,) = [a for a in sub.choices[name]._actions if a.dest == "benchmark"]
        assert flag.metavar == "{" + ",".join(benchmarks.names()) + "}", name
    assert benchmarks.names() == ("heldout", "livecodebench", "humaneval")
