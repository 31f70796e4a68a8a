"""The embedded model's converted tokenizer encodes exactly like llama.cpp on the GGUF it was converted from."""

import json

import pytest

from codelora.config import SYSTEM_PROMPT
from codelora.data.load import load_rows
from codelora.errors import UserError
from codelora.model import sources as models
from codelora.model.chat import messages

NAME = "smollm2-135m-instruct"

HAND_MADE = [
    "1",
    "12345678901234567890",
    "3.14159 2.71828e-10 -0.0001 1e9 10**9+7",
    "\n\n1\n\n22\n\n\n333",
    "a1b22c333 x_1 = y2z",
    "2024-08-01T12:30:59Z",
    "    ",
    "\t\t\n  \n\n\n   x",
    "trailing spaces   \n",
    "  leading and   inner    runs  ",
    "\r\n\r\nwindows\r\nlines\r\n",
    "def solve(n: int) -> int:\n    if n <= 1:\n        return 1\n    return n * solve(n - 1)\n\n\nprint(solve(10))\n",
    "for i in range(1, 10**5 + 1):\n\tarr[i] += arr[i-1]  # prefix sums\n",
    "```python\nimport sys\ninput = sys.stdin.readline\n```",
    "It's they're we've I'm you'll he'd",
    "naïve café — “quotes” ½ ① ٣ 七 🙂",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\n2+2=?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n",
    "<|endoftext|>text after <|im_end|>",
]


@pytest.fixture(scope="module")
def tokenizer():
    return models.load_tokenizer(models.DEFAULT_EMBEDDED)


def _corpus(tokenizer) -> list[str]:
    """Hand-made strings plus every sample-set row rendered with the chat template: prompts (as generation sees
    them) and full conversations (as training sees them)."""
    rows, _ = load_rows("sample")
    texts = list(HAND_MADE)
    for r in rows:
        texts.append(
            tokenizer.apply_chat_template(
                messages(SYSTEM_PROMPT, r["input"]), tokenize=False, add_generation_prompt=True
            )
        )
        texts.append(tokenizer.apply_chat_template(messages(SYSTEM_PROMPT, r["input"], r["output"]), tokenize=False))
        texts.append(r["solution"])
    return texts


def _mismatches(tok, texts, reference):
    ours = [tok.encode(t, add_special_tokens=False) for t in texts]
    return [(t, a, b) for t, a, b in zip(texts, ours, reference, strict=True) if a != b]


@pytest.fixture(scope="module")
def corpus(tokenizer):
    texts = _corpus(tokenizer)
    return texts, models.llama_cpp_token_ids(models.embedded_gguf(NAME), texts)


def test_converted_tokenizer_equals_llama_cpp(tokenizer, corpus):
    texts, reference = corpus
    assert len(texts) > 60
    bad = _mismatches(tokenizer, texts, reference)
    assert not bad, f"{len(bad)}/{len(texts)} strings tokenized differently, first: {bad[0]}"
    # and the ids decode back to the text (no normalisation hides a difference)
    for text in HAND_MADE:
        assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text


def test_without_the_pre_tokenizer_fix_the_ids_differ(tokenizer, corpus):
    """transformers' own GGUF conversion (the cache before format 2) fails the comparison above."""
    from transformers import AutoTokenizer

    gguf = models.embedded_gguf(NAME)
    assert models.gguf_pre_tokenizer_name(gguf) == "smollm"
    stock = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    texts, reference = corpus
    bad = _mismatches(stock, texts, reference)
    assert len(bad) >= 10, len(bad)
    # a blank line before a digit: llama.cpp splits the digit off first, so "\n\n" is one token
    assert stock.encode("\n\n1", add_special_tokens=False) == [198, 198, 33]
    assert tokenizer.encode("\n\n1", add_special_tokens=False) == [1116, 33]


def test_cache_manifest_records_the_pre_tokenizer_and_format(tokenizer):
    folder = models.ensure_embedded(NAME)
    manifest = json.loads((folder / "codelora-manifest.json").read_text())
    assert manifest["format"] == models.EMBEDDED_FORMAT
    assert manifest["pre_tokenizer"] == "smollm"
    saved = json.loads((folder / "tokenizer.json").read_text())["pre_tokenizer"]
    assert [p["type"] for p in saved["pretokenizers"]] == ["Digits", "ByteLevel"]


def test_unknown_pre_tokenizer_is_refused():
    with pytest.raises(UserError, match="pre-tokenizer 'qwen2'"):
        models.hf_pre_tokenizer("qwen2")
