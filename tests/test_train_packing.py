"""Packing: per-example loss packed vs alone on tiny Qwen2/Llama, the start-of-training probe, and packed training."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from codelora.config import load_config
from codelora.errors import UserError
from codelora.training.sft import check_packing, packing_losses, train


def _examples(vocab: int, lengths=(40, 23, 57)) -> list[dict]:
    rng = random.Random(0)
    out = []
    for n in lengths:
        ids = [rng.randrange(3, vocab) for _ in range(n)]
        out.append({"input_ids": ids, "labels": [-100] + ids[1:]})
    return out


@pytest.fixture(scope="module", params=["tiny-random:qwen2", "tiny-random:llama"])
def tiny(request):
    from codelora.model.sources import load_model

    model, tok = load_model(request.param, dtype="fp32", device="cpu", attn_implementation="sdpa")
    model.config.use_cache = False  # as in training
    return model, len(tok)


def test_packed_loss_equals_alone_and_naive_concatenation_differs(tiny):
    import torch

    model, vocab = tiny
    ex = _examples(vocab)
    alone, together = packing_losses(model, ex)
    assert together == pytest.approx(alone, abs=1e-4)
    # Control: the same row without position_ids (plain causal attention across examples) must differ,
    # or the comparison above could not detect leakage on this model.
    row = torch.tensor([sum((e["input_ids"] for e in ex), [])])
    with torch.no_grad():
        lp = torch.log_softmax(model(input_ids=row).logits[0, :-1], -1)
    start, naive = 0, []
    for e in ex:
        n = len(e["input_ids"])
        tgt = row[0, start + 1 : start + n]
        naive.append(float(-lp[start : start + n - 1].gather(-1, tgt.unsqueeze(-1)).mean()))
        start += n
    assert naive[0] == pytest.approx(alone[0], abs=1e-4)  # the first example sees nothing before it
    assert max(abs(a - b) for a, b in zip(alone[1:], naive[1:], strict=True)) > 1e-3


def test_probe_passes_for_sdpa_and_eager(tiny):
    model, vocab = tiny
    rows = _examples(vocab, (60, 50, 45))
    assert check_packing(model, rows, "sdpa") < 1e-3
    model.config._attn_implementation = "eager"
    try:
        assert check_packing(model, rows, "eager") < 1e-3
    finally:
        model.config._attn_implementation = "sdpa"


def test_probe_refuses_when_the_kernel_lets_examples_mix(tiny, monkeypatch):
    # What older torch/transformers do: no block-diagonal mask from position_ids, so packed examples see each other.
    import transformers.masking_utils as mu

    model, vocab = tiny
    monkeypatch.setattr(mu, "find_packed_sequence_indices", lambda position_ids: None)
    with pytest.raises(UserError, match="attention implementation 'sdpa' does not keep packed examples apart"):
        check_packing(model, _examples(vocab, (60, 50, 45)), "sdpa")


def _run(tmp: Path, name: str, packing: bool) -> tuple[list[dict], dict]:
    cfg = load_config(
        "demo",
        [
            "model.source=tiny-random:qwen2",
            "train.max_steps=3",
            "train.logging_steps=1",
            "train.eval_steps=3",
            "train.save_steps=3",
            "data.max_length=256",
            "lora.dropout=0",  # dropout masks depend on the tensor shape, which packing changes
            f"train.packing={str(packing).lower()}",
            f"output_dir={tmp}",
        ],
    )
    result = train(cfg, tmp / name)
    rows = [json.loads(x) for x in (tmp / name / "logs" / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return rows, result


def test_training_with_packing_matches_padded_training(tmp_path):
    rows_p, res_p = _run(tmp_path, "packed", True)
    rows_u, res_u = _run(tmp_path, "padded", False)
    loss_p = [r["train_loss"] for r in rows_p if r["train_loss"] is not None]
    loss_u = [r["train_loss"] for r in rows_u if r["train_loss"] is not None]
    assert len(loss_p) == len(loss_u) == 3
    assert loss_p == pytest.approx(loss_u, rel=1e-3)
    assert res_p["valid_loss"] == pytest.approx(res_u["valid_loss"], rel=1e-3)
    # packed rows have no padding; padded batches count only their real tokens: the same number
    assert res_p["tokens_seen"] == res_u["tokens_seen"] > 0


def test_packing_refused_at_training_start(tmp_path, monkeypatch):
    import transformers.masking_utils as mu

    monkeypatch.setattr(mu, "find_packed_sequence_indices", lambda position_ids: None)
    with pytest.raises(UserError, match="'sdpa'"):
        _run(tmp_path, "refused", True)
    assert not (tmp_path / "refused" / "checkpoints").exists()
