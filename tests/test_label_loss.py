"""The LM head only at labelled positions (codelora.training.label_loss) gives the full-logit loss and LoRA gradients
(fp32 rounding), padded and packed, and a step over accumulated micro-batches (padded) or packed rows trained in
pieces (packing) is normalised per label token of the whole step, as transformers' own causal-LM loss does with
num_items_in_batch."""

from __future__ import annotations

import functools
import random

import pytest
import torch

from codelora.config import load_config
from codelora.data.format import collate, collate_packed, split_packed
from codelora.model.sources import load_model
from codelora.training.label_loss import label_loss, logits_to_keep
from codelora.training.sft import add_lora, training_arguments
from codelora.training.trainer import CodeloraTrainer

RTOL, ATOL = 1e-5, 1e-7


def _rows(vocab: int, shapes, seed: int) -> list[dict]:
    """Rows of (prompt length, completion length): labels -100 on the prompt."""
    rng = random.Random(seed)
    rows = []
    for p, c in shapes:
        ids = [rng.randrange(3, vocab) for _ in range(p + c)]
        rows.append({"input_ids": ids, "labels": [-100] * p + ids[p:], "attention_mask": [1] * (p + c)})
    return rows


@pytest.fixture(params=["tiny-random:qwen2", "tiny-random:llama"])
def lora_model(request):
    cfg = load_config("demo", [f"model.source={request.param}", "lora.dropout=0"])
    model, tok = load_model(request.param, dtype="fp32", device="cpu", attn_implementation="sdpa")
    model.config.use_cache = False
    # B of the adapters is zero at init, so A would get no gradient: start from a random B
    model = add_lora(model, cfg.lora, gradient_checkpointing=False)
    torch.manual_seed(1)
    for n, p in model.named_parameters():
        if "lora_B" in n:
            p.data.normal_(0, 0.02)
    model.train()
    return model, tok


def _lora_grads(model) -> dict[str, torch.Tensor]:
    out = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    assert out and all(g.abs().sum() > 0 for g in out.values())
    return out


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for n in a:
        torch.testing.assert_close(a[n], b[n], rtol=RTOL, atol=ATOL, msg=n)


def _full(model, batch, n_items):
    """transformers' own loss: full logits, ForCausalLMLoss (sum / num_items_in_batch)."""
    inputs = {k: v for k, v in batch.items()}
    return model(**inputs, num_items_in_batch=n_items).loss


def _kept(model, batch, n_items, mask: bool):
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    out = model(**inputs, logits_to_keep=logits_to_keep(batch["labels"], mask=mask))
    n_kept = int((batch["labels"][:, 1:] != -100).sum())
    if mask:
        assert out.logits.shape[:-1] == (n_kept,)  # exactly the labelled positions
    else:
        assert out.logits.shape[1] < batch["labels"].shape[1]
    return label_loss(out, batch["labels"], num_items_in_batch=n_items)


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("mask", [True, False], ids=["mask", "positions"])
def test_loss_and_lora_gradients_equal_the_full_logit_loss(lora_model, packed, mask):
    model, tok = lora_model
    rows = _rows(len(tok), [(11, 9), (5, 20), (17, 4)], seed=0)
    batch = collate_packed(rows) if packed else collate(rows, pad_id=tok.pad_token_id)
    if packed:
        assert batch["input_ids"].shape[0] == 1 and "position_ids" in batch
    n_items = torch.tensor(int((batch["labels"][:, 1:] != -100).sum()) + 7)  # as if other micro-batches followed

    full = _full(model, batch, n_items)
    full.backward()
    g_full = _lora_grads(model)
    kept = _kept(model, batch, n_items, mask)
    kept.backward()
    g_kept = _lora_grads(model)

    torch.testing.assert_close(kept, full, rtol=RTOL, atol=ATOL)
    _assert_same(g_kept, g_full)
    # and the mean when no step count is given (evaluation), as the model's own loss without num_items_in_batch
    with torch.no_grad():
        mean_full = model(**batch).loss
        mean_kept = _kept(model, batch, None, mask)
    torch.testing.assert_close(mean_kept, mean_full, rtol=RTOL, atol=ATOL)


def _trainer(model, tok, rows, run_dir, packing: bool, accum: int, **kw) -> CodeloraTrainer:
    cfg = load_config(
        "demo",
        [
            "model.source=tiny-random:qwen2",
            "train.max_steps=1",
            "train.per_device_batch_size=1",
            f"train.gradient_accumulation_steps={accum}",
            "train.logging_steps=1",
            "train.group_by_length=false",
            f"train.packing={str(packing).lower()}",
        ],
    )
    args = training_arguments(cfg, run_dir, "cpu", torch.float32, len(rows), evaluate=False)
    args.save_strategy = "no"
    padded = functools.partial(collate, pad_id=tok.pad_token_id)
    trainer = CodeloraTrainer(
        model=model, args=args, train_dataset=rows, data_collator=collate_packed if packing else padded, **kw
    )
    if packing:  # the step's examples come as one packed row; train it in pieces of one example each
        trainer.pack_max_tokens = max(len(r["input_ids"]) for r in rows)
    return trainer


class _GradsBeforeStep:
    """Trainer callback: the LoRA gradients the optimizer is about to apply."""

    def __init__(self):
        from transformers import TrainerCallback

        outer = self
        self.grads = None

        class CB(TrainerCallback):
            def on_pre_optimizer_step(self, args, state, control, model=None, **kw):
                outer.grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

        self.callback = CB()


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
def test_accumulated_step_is_normalised_per_label_token(lora_model, packed, tmp_path):
    model, tok = lora_model
    # two micro-batches with very different label counts: the token mean and the mean of means differ
    rows = _rows(len(tok), [(6, 30), (20, 3)], seed=2)
    state = {k: v.clone() for k, v in model.state_dict().items()}

    def one_step(**kw):
        model.load_state_dict(state)
        rec = _GradsBeforeStep()
        trainer = _trainer(model, tok, rows, tmp_path, packed, accum=2, callbacks=[rec.callback], **kw)
        trainer.args.max_grad_norm = 0.0  # the raw gradient, not clipped
        out = trainer.train()
        return trainer, out.training_loss, rec.grads

    trainer, loss, grads = one_step()
    assert trainer.logits_mode == "mask"
    if packed:  # packing: one batch per step (no accumulation in the Trainer), trained as two rows
        assert (trainer.args.gradient_accumulation_steps, trainer.args.per_device_train_batch_size) == (1, 2)
        assert len(split_packed(collate_packed(rows), trainer.pack_max_tokens)) == 2
    else:
        assert (trainer.args.gradient_accumulation_steps, trainer.args.per_device_train_batch_size) == (2, 1)
    # the reference by hand: every label token of the step weighted alike
    model.load_state_dict(state)
    model.zero_grad(set_to_none=True)
    batches = [collate_packed([r]) if packed else collate([r], pad_id=tok.pad_token_id) for r in rows]
    counts = [int((b["labels"][:, 1:] != -100).sum()) for b in batches]
    nlls = []
    for b in batches:
        logits = model(**{k: v for k, v in b.items() if k != "labels"}).logits[0, :-1]
        nlls.append(torch.nn.functional.cross_entropy(logits, b["labels"][0, 1:], ignore_index=-100, reduction="sum"))
    token_mean = sum(nlls) / sum(counts)
    token_mean.backward(retain_graph=True)
    ref = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert loss == pytest.approx(token_mean.item(), rel=1e-5)
    _assert_same(grads, ref)
    # control: the mean of the micro-batches' means (each micro-batch weighted alike) gives other gradients here,
    # so the check above tells the two normalisations apart
    model.zero_grad(set_to_none=True)
    (sum(n / c for n, c in zip(nlls, counts, strict=True)) / 2).backward()
    other = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert max(float((other[n] - ref[n]).norm() / ref[n].norm()) for n in ref) > 0.1

    # the Trainer's own full-logit loss (transformers' ForCausalLMLoss with num_items_in_batch) agrees
    _, loss_full, grads_full = one_step(compute_loss_func=None)
    assert loss_full == pytest.approx(loss, rel=1e-5)
    _assert_same(grads, grads_full)
