"""Chat formatting and tokenization with the tokenizer's own chat template; loss only on the answer.

prompt = template(system + user, add_generation_prompt=True); full = template(system + user + assistant).
The prompt must be a prefix of full; the completion is the rest, cut right after the end-of-turn token
(so a trailing newline the template adds is not trained on). Labels are -100 on the prompt.
"""

from __future__ import annotations

from typing import Any

from codelora.errors import UserError

__all__ = [
    "IGNORE_INDEX",
    "build_messages",
    "collate",
    "collate_packed",
    "encode_prompt_completion",
    "end_of_turn_id",
    "ensure_pad_token",
    "fit_example",
    "tokenize_example",
]

IGNORE_INDEX = -100
END_OF_TURN = "<|im_end|>"


def build_messages(system_prompt: str | None, problem: str, answer: str | None = None) -> list[dict[str, str]]:
    msgs = []
    if system_prompt:
        msgs.append({"role": "system", "content": system_prompt})
    msgs.append({"role": "user", "content": problem})
    if answer is not None:
        msgs.append({"role": "assistant", "content": answer})
    return msgs


def _token_id(tokenizer: Any, token: str) -> int | None:
    """Id of `token` if it is in the vocabulary, else None (get_vocab() is slow on large vocabularies)."""
    tid = tokenizer.convert_tokens_to_ids(token)
    if tid is None or isinstance(tid, list) or tokenizer.convert_ids_to_tokens(tid) != token:
        return None
    return int(tid)


def end_of_turn_id(tokenizer: Any) -> int:
    """Id of `<|im_end|>` when the vocabulary has it, else the eos token."""
    tid = _token_id(tokenizer, END_OF_TURN)
    if tid is None:
        tid = tokenizer.eos_token_id
    if tid is None:
        raise UserError("the tokenizer has neither <|im_end|> nor an eos token; cannot mark the end of an answer")
    return tid


def _ids(out: Any) -> list[int]:
    """apply_chat_template(tokenize=True) returns a list, or (transformers 5) a BatchEncoding/dict."""
    if hasattr(out, "keys") and "input_ids" in out:
        out = out["input_ids"]
    if hasattr(out, "tolist"):
        out = out.tolist()
    out = list(out)
    if out and isinstance(out[0], (list, tuple)):
        if len(out) != 1:
            raise ValueError("expected one conversation")
        out = list(out[0])
    return [int(i) for i in out]


def _template(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> list[int]:
    if not getattr(tokenizer, "chat_template", None):
        raise UserError("the tokenizer has no chat template; use an instruct/chat model")
    return _ids(tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation_prompt))


def encode_prompt_completion(
    tokenizer: Any, system_prompt: str | None, problem: str, completion: str
) -> tuple[list[int], list[int]]:
    """Return (prompt ids, completion ids ending with the end-of-turn token)."""
    prompt = _template(tokenizer, build_messages(system_prompt, problem), True)
    full = _template(tokenizer, build_messages(system_prompt, problem, completion), False)
    if full[: len(prompt)] != prompt:
        raise UserError(
            "the chat template does not render the prompt as a prefix of the full conversation; "
            "cannot mask the prompt reliably with this tokenizer"
        )
    comp = full[len(prompt) :]
    eot = end_of_turn_id(tokenizer)
    if eot in comp:
        last = len(comp) - 1 - comp[::-1].index(eot)
        comp = comp[: last + 1]
    else:
        comp = comp + [eot]
    return prompt, comp


def fit_example(
    prompt: list[int], completion: list[int], max_length: int, overlong: str = "drop"
) -> dict[str, list[int]] | None:
    """Build input_ids/labels/attention_mask; None when overlong and dropped (or the prompt alone is too long)."""
    if len(prompt) + len(completion) > max_length:
        if overlong != "truncate" or len(prompt) >= max_length:
            return None
        completion = completion[: max_length - len(prompt)]
    ids = prompt + completion
    return {
        "input_ids": ids,
        "labels": [IGNORE_INDEX] * len(prompt) + list(completion),
        "attention_mask": [1] * len(ids),
    }


def tokenize_example(
    tokenizer: Any,
    system_prompt: str | None,
    problem: str,
    completion: str,
    max_length: int,
    overlong: str = "drop",
) -> dict[str, list[int]] | None:
    """dict(input_ids, labels, attention_mask), labels -100 on the prompt; None if overlong and dropped."""
    prompt, comp = encode_prompt_completion(tokenizer, system_prompt, problem, completion)
    return fit_example(prompt, comp, max_length, overlong)


def ensure_pad_token(tokenizer: Any) -> str | None:
    """Give the tokenizer a pad token distinct from eos/end-of-turn. Returns a note of what changed, or None.

    When a new `<|pad|>` token is added the model's embeddings must be resized (len(tokenizer)).
    """
    pad = tokenizer.pad_token_id
    special = {tokenizer.eos_token_id, _token_id(tokenizer, END_OF_TURN)} - {None}
    if pad is not None and pad not in special:
        return None
    old = tokenizer.pad_token
    if _token_id(tokenizer, "<|endoftext|>") is not None and _token_id(tokenizer, "<|endoftext|>") not in special:
        tokenizer.pad_token = "<|endoftext|>"
        return f"pad token set to <|endoftext|> (was {old})"
    tokenizer.add_special_tokens({"pad_token": "<|pad|>"})
    return f"added a new <|pad|> token (was {old}); resize the model embeddings to {len(tokenizer)}"


def collate(batch: list[dict[str, list[int]]], pad_id: int) -> dict[str, Any]:
    """Right-pad to the longest example: input_ids with pad_id, labels with -100, attention_mask 0."""
    import torch

    if not batch:
        raise ValueError("empty batch")
    width = max(len(ex["input_ids"]) for ex in batch)
    ids, labels, mask = [], [], []
    for ex in batch:
        n = len(ex["input_ids"])
        pad = width - n
        ids.append(list(ex["input_ids"]) + [pad_id] * pad)
        labels.append(list(ex["labels"]) + [IGNORE_INDEX] * pad)
        mask.append(list(ex.get("attention_mask") or [1] * n) + [0] * pad)
    return {
        "input_ids": torch.tensor(ids, dtype=torch.long),
        "labels": torch.tensor(labels, dtype=torch.long),
        "attention_mask": torch.tensor(mask, dtype=torch.long),
    }


def collate_packed(batch: list[dict[str, list[int]]]) -> dict[str, Any]:
    """Pack the micro-batch into one row with no padding: input_ids and labels concatenated, position_ids
    restarting at 0 per example, and no attention_mask.

    Without a 2D mask, transformers derives the example boundaries from position_ids (a block-diagonal causal
    mask for SDPA/eager, varlen kernels for flash-attention), so examples do not attend to each other; whether
    that holds for a given attention implementation is checked at the start of training (codelora.train).
    The first label of every example is -100, so no example's last token learns to predict the next one's start.
    transformers' DataCollatorWithFlattening does exactly this.
    """
    from transformers import DataCollatorWithFlattening

    if not batch:
        raise ValueError("empty batch")
    feats = [{"input_ids": list(ex["input_ids"]), "labels": list(ex["labels"])} for ex in batch]
    out = DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE_INDEX)(feats, return_tensors="pt")
    return {k: out[k] for k in ("input_ids", "labels", "position_ids")}
