"""LoRA dropout drawn as dropped positions (codelora.training.lora_dropout): the masks torch's dropout would draw in
distribution, the backward pass through the same positions, the same positions again in a checkpointed recompute,
and training using it exactly when train.sparse_dropout is on."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from codelora.training.lora_dropout import SparseDropout, dropped_positions, use_sparse_lora_dropout


def _within(count: int, n: int, p: float, sigmas: float = 6.0) -> bool:
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


@pytest.mark.parametrize("p", [0.05, 0.3])
@pytest.mark.parametrize("batch", [None, 1, 7])  # batch 1 / 7: the continuation loop runs thousands of times
def test_dropped_positions_are_an_iid_bernoulli_choice(p, batch):
    torch.manual_seed(0)
    n = 200_000 if batch is None else 20_000
    pos = dropped_positions(n, p, batch=batch)
    assert pos.dtype == torch.long
    assert bool((pos[1:] > pos[:-1]).all()) and int(pos[0]) >= 0 and int(pos[-1]) < n  # sorted, distinct, in range
    assert _within(len(pos), n, p)
    mask = torch.zeros(n, dtype=torch.bool)
    mask[pos] = True
    # independence of neighbours and of halves: both dropped at the rate p^2, each half at p
    pairs = int((mask[:-1] & mask[1:]).sum())
    assert _within(pairs, n - 1, p * p, sigmas=8.0)
    assert _within(int(mask[: n // 2].sum()), n // 2, p) and _within(int(mask[n // 2 :].sum()), n - n // 2, p)
    # the first position is Geometric(p) - 1: over many draws P(first = 0) = p
    draws = [dropped_positions(50, p, batch=batch) for _ in range(2000)]
    firsts = torch.tensor([d.numel() > 0 and int(d[0]) == 0 for d in draws])
    assert _within(int(firsts.sum()), 2000, p)


def test_dropped_positions_edge_sizes():
    assert dropped_positions(0, 0.1).numel() == 0
    torch.manual_seed(1)
    assert all(int(x) == 0 for _ in range(50) for x in dropped_positions(1, 0.5))


def test_sparse_dropout_output_and_gradient_use_the_same_positions():
    torch.manual_seed(0)
    p = 0.2
    d = SparseDropout(p)
    x = torch.ones(64, 96, requires_grad=True)
    y = d(x)
    dropped = y == 0
    assert _within(int(dropped.sum()), x.numel(), p)
    assert torch.allclose(y[~dropped], torch.full_like(y[~dropped], 1 / (1 - p)))
    w = torch.randn_like(y)
    (y * w).sum().backward()
    expected = torch.where(dropped, torch.zeros_like(w), w / (1 - p))
    assert torch.allclose(x.grad, expected)


def test_sparse_dropout_non_contiguous_input_and_dtype():
    torch.manual_seed(0)
    base = torch.randn(40, 30, dtype=torch.bfloat16)
    x = base.t().requires_grad_()  # non-contiguous
    y = SparseDropout(0.25)(x)
    assert y.shape == x.shape and y.dtype == torch.bfloat16
    kept = y != 0
    assert torch.allclose(y[kept].float(), (x[kept] / 0.75).float(), rtol=1e-2)
    y.float().sum().backward()
    assert torch.equal(x.grad != 0, kept)


def test_sparse_dropout_is_identity_in_eval_and_for_p_0():
    x = torch.randn(8, 16)
    d = SparseDropout(0.1)
    d.eval()
    assert d(x) is x
    assert SparseDropout(0.0)(x) is x
    assert isinstance(d, nn.Dropout) and "p=0.1" in repr(d)


def test_large_p_falls_back_to_torch_dropout(monkeypatch):
    calls = []
    shipped = nn.functional.dropout
    monkeypatch.setattr(nn.functional, "dropout", lambda *a, **k: calls.append(a) or shipped(*a, **k))
    SparseDropout(0.7)(torch.randn(10, 10))
    SparseDropout(0.05)(torch.randn(10, 10))
    assert len(calls) == 1


def _tiny_lora(gradient_checkpointing: bool, dropout: float = 0.3):
    from codelora.config import LoraConfig
    from codelora.model.sources import load_model
    from codelora.training.sft import add_lora

    model, tok = load_model("tiny-random:llama", dtype="fp32", device="cpu", attn_implementation="sdpa")
    model.config.use_cache = False
    model = add_lora(model, LoraConfig(r=4, alpha=8, dropout=dropout), gradient_checkpointing, seed=0)
    with torch.no_grad():  # lora_B starts at zero, which would leave lora_A without a gradient
        g = torch.Generator().manual_seed(1)
        for name, prm in model.named_parameters():
            if "lora_B" in name:
                prm.copy_(torch.randn(prm.shape, generator=g) * 0.1)
    return model, len(tok)


def _lora_grads(model, ids) -> dict[str, torch.Tensor]:
    model.train()
    torch.manual_seed(123)
    model(input_ids=ids, labels=ids).loss.backward()
    out = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}
    model.zero_grad()
    return out


def test_a_checkpointed_recompute_drops_the_same_positions():
    # Gradient checkpointing reruns each layer's forward in the backward pass; the LoRA gradients equal the
    # uncheckpointed ones only if the recompute draws the very positions the forward dropped.
    plain, vocab = _tiny_lora(False)
    checkpointed, _ = _tiny_lora(True)
    assert use_sparse_lora_dropout(plain) == use_sparse_lora_dropout(checkpointed) > 0
    ids = torch.randint(3, vocab, (2, 48), generator=torch.Generator().manual_seed(0))
    a, b = _lora_grads(plain, ids), _lora_grads(checkpointed, ids)
    assert a.keys() == b.keys() and len(a) > 0
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=1e-4, atol=1e-6), name
    # control: another seed gives other masks, hence other gradients (the comparison above can fail)
    torch.manual_seed(7)
    plain.train()
    plain(input_ids=ids, labels=ids).loss.backward()
    other = {n: p.grad for n, p in plain.named_parameters() if p.grad is not None}
    assert any(not torch.allclose(a[n], other[n], rtol=1e-4, atol=1e-6) for n in a)


def test_swap_keeps_the_adapter_and_skips_identity():
    model, _ = _tiny_lora(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    n = use_sparse_lora_dropout(model)
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert n == len(drops) > 0 and all(type(m) is SparseDropout and m.p == 0.3 for m in drops)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert use_sparse_lora_dropout(model) == 0  # already swapped
    no_dropout, _ = _tiny_lora(False, dropout=0.0)
    assert use_sparse_lora_dropout(no_dropout) == 0  # PEFT uses nn.Identity for lora.dropout 0


@pytest.mark.parametrize("sparse", [True, False])
def test_training_uses_it_exactly_when_train_sparse_dropout_is_on(tmp_path, monkeypatch, sparse):
    from codelora.config import load_config
    from codelora.training.sft import train

    calls = {"sparse": 0, "torch": 0}
    shipped_sparse, shipped_torch = SparseDropout.forward, nn.Dropout.forward

    def count_sparse(self, x):
        calls["sparse"] += self.training
        return shipped_sparse(self, x)

    def count_torch(self, x):
        calls["torch"] += self.training
        return shipped_torch(self, x)

    monkeypatch.setattr(SparseDropout, "forward", count_sparse)
    monkeypatch.setattr(nn.Dropout, "forward", count_torch)
    cfg = load_config(
        "demo",
        [
            "model.source=tiny-random:qwen2",
            "train.max_steps=1",
            "train.logging_steps=1",
            "train.eval_steps=1",
            "train.save_steps=1",
            "data.max_length=128",
            "data.max_problems=8",
            "lora.dropout=0.1",
            f"train.sparse_dropout={str(sparse).lower()}",
            f"output_dir={tmp_path}",
        ],
    )
    result = train(cfg, tmp_path / "run")
    assert math.isfinite(result["train_loss"])
    if sparse:
        assert calls["sparse"] > 0 and calls["torch"] == 0
    else:
        assert calls["sparse"] == 0 and calls["torch"] > 0
