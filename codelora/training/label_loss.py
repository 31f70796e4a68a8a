"""The training loss computed only where there are labels: the LM head runs on the hidden states of the positions
whose next token is labelled, not on every position.

A causal LM's loss at position t scores token t + 1, so only positions t with `labels[t + 1] != -100` contribute.
Completion-only training labels the answer alone (about 35-40% of the tokens of the course data), yet the model's
forward projects every position onto the vocabulary: for Qwen2.5's head (1536 x 151,936) that is ~15% of the
model's FLOPs and a [tokens x vocabulary] fp32 tensor, its log-softmax and its gradient held for the backward pass.
Keeping only the labelled positions (transformers' `logits_to_keep`, which slices the hidden states before
`lm_head`) gives the same loss and the same gradients: the dropped logits have no loss term, hence zero gradient.

Normalisation, as transformers >= 4.46 does for its own causal-LM loss: the sum of the token cross-entropies of a
micro-batch divided by `num_items_in_batch`, the label tokens of the whole optimizer step (all accumulated
micro-batches, summed over processes; the Trainer counts them over `labels[..., 1:]` and, with several processes,
multiplies the loss back by their number). So a step's loss is the mean over its label tokens, not the mean of its
micro-batches' means. Without `num_items_in_batch` (evaluation) the loss is the batch's mean over its label tokens.

Sources: transformers `slice_logits_to_keep` (a boolean [batch, length] mask keeps those positions, flattened; a 1D
tensor keeps those positions of every row), `ForCausalLMLoss`, `Trainer.compute_loss_func`.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

__all__ = ["IGNORE_INDEX", "accepts_logits_to_keep", "label_loss", "logits_to_keep", "supports_mask"]

IGNORE_INDEX = -100


def supports_mask() -> bool:
    """Whether this transformers' `logits_to_keep` takes a boolean [batch, length] mask (5.x: slice_logits_to_keep);
    older versions take a 1D tensor of positions kept in every row."""
    try:
        from transformers.modeling_utils import slice_logits_to_keep  # noqa: F401
    except ImportError:
        return False
    return True


def accepts_logits_to_keep(model: Any) -> bool:
    """Whether `model` (a PeftModel or a transformers causal LM) forwards a `logits_to_keep` argument to its head."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        return "logits_to_keep" in inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return False


def logits_to_keep(labels: torch.Tensor, mask: bool = True) -> torch.Tensor:
    """What to pass as `logits_to_keep` for `labels` [batch, length]: the positions t whose next label
    `labels[:, t + 1]` is not -100.

    mask=True: a bool tensor [batch, length] (the model then returns logits [n_kept, vocabulary], rows in row-major
    order); mask=False: the sorted 1D positions kept in any row (logits [batch, n_positions, vocabulary]).
    """
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    if mask:
        return keep
    return keep.any(dim=0).nonzero().squeeze(-1)


def label_loss(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
    """Token cross-entropy of a causal LM, from logits that may cover the labelled positions only.

    outputs: the model's output; `.logits` is [n_kept, V] (a boolean `logits_to_keep` mask from `logits_to_keep`),
    [batch, K, V] with K < length (a 1D positions tensor) or [batch, length, V] (all positions: the model took no
    `logits_to_keep`). labels: [batch, length], -100 where there is no loss. num_items_in_batch: label tokens of
    the whole optimizer step (the Trainer's count), or None for the batch's own mean.
    Returns the summed cross-entropy (nats, computed in fp32) divided by num_items_in_batch, or by the batch's label
    tokens (at least 1). Usable as `Trainer(compute_loss_func=label_loss)`.
    """
    logits = outputs["logits"] if isinstance(outputs, dict) else outputs.logits
    shifted = labels[:, 1:]
    if logits.dim() == 2:  # a boolean mask kept exactly the labelled positions, row-major
        targets = shifted[labels[:, 1:] != IGNORE_INDEX]
    elif logits.shape[1] == labels.shape[1]:  # full logits: position t predicts labels[t + 1]
        logits, targets = logits[:, :-1], shifted
    else:  # 1D positions kept in every row (some unlabelled in some rows: ignored below)
        cols = logits_to_keep(labels, mask=False)
        targets = shifted[:, cols]
    logits = logits.reshape(-1, logits.shape[-1]).float()
    targets = targets.reshape(-1).to(logits.device)
    total = torch.nn.functional.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum")
    if num_items_in_batch is None:
        return total / (targets != IGNORE_INDEX).sum().clamp(min=1)
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch
