import subprocess
import sys

import pytest

from codelora.cli import main
from codelora.generation.extract import extract_code


@pytest.mark.parametrize(
    "text, code, found",
    [
        ("Here:\n```python\nprint(1)\n```\nand\n```python\nprint(2)\n```", "print(2)\n", True),
        ("<think>\n```python\nprint('draft')\n```\n</think>\n```py\nx = 1\n```", "x = 1\n", True),
        ("print(input())", "print(input())\n", True),
        ("I cannot solve this.", "", False),
        ("```python\nprint(3)\n", "print(3)\n", True),  # unterminated fence at max_new_tokens
    ],
)
def test_extract_code(text, code, found):
    assert extract_code(text) == (code, found)


def test_help_lists_working_subcommands():
    out = subprocess.run([sys.executable, "-m", "codelora", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    assert "generate" in out.stdout and "download" in out.stdout


def test_generate_tiny_random_runs(capsys):
    rc = main(["generate", "--model", "tiny-random:qwen2", "--prompt", "Print 1.", "--set", "eval.max_new_tokens=8"])
    assert rc == 0
    assert "--- extracted code ---" in capsys.readouterr().out


def test_generate_embedded_prints_a_code_block(capsys):
    rc = main(
        [
            "generate",
            "--model",
            "embedded:smollm2-135m-instruct",
            "--prompt",
            "Read two integers and print their sum.",
            "--set",
            "eval.max_new_tokens=60",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    code = out.split("--- extracted code ---", 1)[1]
    assert "(no Python code block" not in code and ("print" in code or "def " in code)


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["generate", "--config", "nope", "--prompt", "x"], "unknown preset 'nope'"),
        (["generate", "--model", "Qwen/Qwen2.5-Coder-1.5B-Instruct", "--prompt", "x"], "not in the local Hugging Face"),
        (["generate", "--model", "tiny-random:qwen2"], "exactly one of --prompt"),
        (["generate", "--model", "tiny-random:qwen2", "--problem-file", "/no/such"], "problem file not found"),
        (["download", "Qwen/Qwen2.5-Coder-1.5B-Instruct"], "cannot download model"),
        (["download", "deep"], "cannot download dataset 'Naholav/CodeGen-Deep-5K'"),
    ],
)
def test_user_errors_are_one_line(argv, needle):
    out = subprocess.run(
        [sys.executable, "-m", "codelora", *argv], capture_output=True, text=True, env={**__import__("os").environ}
    )
    assert out.returncode == 2
    err_lines = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(err_lines) == 1 and needle in err_lines[0], out.stderr
    assert "Traceback" not in out.stderr


def test_prepare_cli_writes_split_report_and_histogram(tmp_path, capsys):
    rc = main(["prepare", "--config", "demo", "--run", str(tmp_path / "r1")])
    assert rc == 0
    run = tmp_path / "r1"
    for f in ("config.yaml", "split.json", "data_report.json", "plots/lengths.png", "data/train.jsonl"):
        assert (run / f).is_file(), f
    out = capsys.readouterr().out
    assert "train" in out and "test" in out and "valid" in out
    split = __import__("json").loads((run / "split.json").read_text())
    train = set(split["splits"]["train"]["problems"])
    test = set(split["splits"]["test"]["problems"])
    assert train and test and not train & test
