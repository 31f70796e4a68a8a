"""Training examples: prompt + completion ids with the loss only on the completion, and their collation.

The prompt, the completion boundary and the end-of-turn token come from codelora.model.chat (the one module that owns
the chat); here they become input_ids / labels (-100 on the prompt) / attention_mask and batches.
"""

from __future__ import annotations

from typing import Any

from codelora.model.chat import encode_prompt_completion

__all__ = [
    "IGNORE_INDEX",
    "collate",
    "collate_packed",
    "fit_example",
    "split_packed",
    "tokenize_example",
]

IGNORE_INDEX = -100


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
    system_prompt: str,
    problem: str,
    completion: str,
    max_length: int,
    overlong: str = "drop",
) -> dict[str, list[int]] | None:
    """dict(input_ids, labels, attention_mask), labels -100 on the prompt; None if overlong and dropped."""
    prompt, comp = encode_prompt_completion(tokenizer, system_prompt, problem, completion)
    return fit_example(prompt, comp, max_length, overlong)


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
    that holds for a given attention implementation is checked at the start of training (codelora.training.sft).
    The first label of every example is -100, so no example's last token learns to predict the next one's start.
    transformers' DataCollatorWithFlattening does exactly this.
    """
    from transformers import DataCollatorWithFlattening

    if not batch:
        raise ValueError("empty batch")
    feats = [{"input_ids": list(ex["input_ids"]), "labels": list(ex["labels"])} for ex in batch]
    out = DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE_INDEX)(feats, return_tensors="pt")
    return {k: out[k] for k in ("input_ids", "labels", "position_ids")}


def split_packed(row: dict[str, Any], max_tokens: int) -> list[dict[str, Any]]:
    """Split a packed row (collate_packed's output, one row) at example boundaries (position_ids == 0) into
    consecutive rows of at most `max_tokens` tokens each (an example longer than that stays whole, alone).
    Returns [row] when it already fits. Every piece keeps input_ids, labels and position_ids; no label moves."""
    import torch

    n = row["input_ids"].shape[1]
    if n <= max_tokens:
        return [row]
    starts = torch.nonzero(row["position_ids"][0] == 0).squeeze(-1).tolist() + [n]
    pieces, begin = [], 0
    for end, nxt in zip(starts[1:], starts[2:] + [None], strict=True):
        # close the piece at `end` when the next example would not fit
        if nxt is None or nxt - begin > max_tokens:
            pieces.append({k: v[:, begin:end] for k, v in row.items()})
            begin = end
    return pieces
