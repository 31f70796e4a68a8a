"""Batched generation (codelora.generation.generate.generate_batch) on tiny random models: same answers as one
prompt at a time, per-row stopping, per-sample seeds independent of batching."""

from __future__ import annotations

import json
from importlib import resources

import pytest
import torch

import codelora.generation.generate as G
from codelora.config import SYSTEM_PROMPT
from codelora.generation.generate import Sampling, generate_batch, prompt_ids
from codelora.model.sources import load_model

GREEDY = Sampling(greedy=True, max_new_tokens=12)


def _statements(k: int) -> list[str]:
    text = resources.files("codelora.data").joinpath("sample_problems.jsonl").read_text()
    seen: list[str] = []
    for line in text.splitlines():
        s = json.loads(line)["input"]
        if s not in seen:
            seen.append(s)
    # different lengths, so batches need left padding
    return [s[: 60 + 90 * i] for i, s in enumerate(seen[:k])]


@pytest.fixture(scope="module", params=["qwen2", "llama"])
def tiny(request):
    model, tok = load_model(f"tiny-random:{request.param}", dtype="fp32", device="cpu")
    # With tied embeddings a 2-layer random model just repeats its last input token ("\n" after the chat
    # prompt), so every answer would be the same; an untied random output layer makes answers depend on
    # the prompt, and its large weights make the greedy choices clear-cut (no float-noise ties).
    torch.manual_seed(1)
    lm_head = torch.nn.Linear(model.config.hidden_size, model.config.vocab_size, bias=False)
    torch.nn.init.normal_(lm_head.weight, std=0.5)
    model.lm_head = lm_head
    prompts = [prompt_ids(tok, SYSTEM_PROMPT, s) for s in _statements(5)]
    assert len({len(p) for p in prompts}) == 5
    return model, tok, prompts


def _one_by_one(model, tok, prompts, max_new_tokens):
    """The original project's way: model.generate on one unpadded prompt at a time."""
    texts = []
    for p in prompts:
        ids = torch.tensor([p])
        with torch.no_grad():
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=G.stop_token_ids(tok),
                pad_token_id=tok.pad_token_id,
            )
        texts.append(tok.decode(out[0, len(p) :], skip_special_tokens=True))
    return texts


def test_batched_greedy_equals_one_by_one(tiny):
    model, tok, prompts = tiny
    single = _one_by_one(model, tok, prompts, GREEDY.max_new_tokens)
    batched = generate_batch(model, tok, prompts, GREEDY, batch_size=3, progress=False)
    assert [g.text for g in batched] == single
    assert all(g.new_tokens == GREEDY.max_new_tokens and not g.stopped for g in batched)
    # answers are not all the same string (else the comparison would prove little)
    assert len(set(single)) > 1


def test_results_come_back_in_prompt_order_and_batches_are_saved(tiny):
    model, tok, prompts = tiny
    saved: list[list[int]] = []
    gens = generate_batch(
        model,
        tok,
        prompts,
        GREEDY,
        batch_size=2,
        on_batch=lambda done: saved.append([i for i, _ in done]),
        progress=False,
    )
    # longest prompts first, every prompt exactly once, 3 batches of at most 2
    assert [len(b) for b in saved] == [2, 2, 1]
    flat = [i for b in saved for i in b]
    assert sorted(flat) == list(range(5))
    assert [len(prompts[i]) for i in flat] == sorted((len(p) for p in prompts), reverse=True)
    alone = generate_batch(model, tok, [prompts[3]], GREEDY, batch_size=1, progress=False)
    assert gens[3].text == alone[0].text


def _new_ids(model, tok, p, max_new_tokens):
    ids = torch.tensor([p])
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=G.stop_token_ids(tok),
            pad_token_id=tok.pad_token_id,
        )
    return out[0, len(p) :].tolist()


def test_each_row_stops_at_its_own_stop_token(tiny, monkeypatch):
    model, tok, prompts = tiny
    n = GREEDY.max_new_tokens
    ids0, ids1 = _new_ids(model, tok, prompts[0], n), _new_ids(model, tok, prompts[1], n)
    # pretend the token row 0 writes at position k (k >= 2, new in row 0, never written by row 1) ends a turn
    cut = next(k for k in range(2, n) if ids0[k] not in ids0[:k] and ids0[k] not in ids1)
    stop = ids0[cut]
    monkeypatch.setattr(G, "stop_token_ids", lambda tokenizer: [stop])
    gens = generate_batch(model, tok, prompts[:2], GREEDY, batch_size=2, progress=False)
    assert gens[0].stopped and gens[0].new_tokens == cut + 1
    assert gens[0].text == tok.decode(ids0[: cut + 1], skip_special_tokens=True)
    assert not gens[1].stopped and gens[1].new_tokens == n
    assert gens[1].text == tok.decode(ids1, skip_special_tokens=True)


def test_sampling_is_seeded_per_sample_not_per_batch(tiny):
    model, tok, prompts = tiny
    hot = Sampling(greedy=False, temperature=1.0, top_p=0.9, max_new_tokens=10, seed=7)
    seeds = [7, 8, 9, 10, 11]
    a = generate_batch(model, tok, prompts, hot, seeds=seeds, batch_size=5, progress=False)
    b = generate_batch(model, tok, prompts, hot, seeds=seeds, batch_size=2, progress=False)
    assert [g.text for g in a] == [g.text for g in b]
    # prompt 2 alone with its seed gives the same sample as inside a batch
    c = generate_batch(model, tok, [prompts[2]], hot, seeds=[9], batch_size=1, progress=False)
    assert c[0].text == a[2].text
    # another seed gives another sample, and sampling differs from greedy
    d = generate_batch(model, tok, [prompts[2]], hot, seeds=[1234], batch_size=1, progress=False)
    greedy = generate_batch(model, tok, [prompts[2]], Sampling(max_new_tokens=10), batch_size=1, progress=False)
    assert d[0].text != c[0].text
    assert greedy[0].text not in (c[0].text, d[0].text)


def test_top_p_keeps_only_the_nucleus():
    sampler = G._PerRowSampler([0, 1], temperature=1.0, top_p=0.5, device="cpu")
    # row 0: one token holds 0.7 of the mass -> always it; row 1: 0.4 + 0.35 -> one of the two top tokens
    probs = torch.tensor([[0.7, 0.1, 0.1, 0.1], [0.4, 0.35, 0.15, 0.1]])
    picks = set()
    for _ in range(200):
        out = sampler(None, probs.log())
        chosen = out.argmax(-1).tolist()
        assert chosen[0] == 0
        picks.add(chosen[1])
    assert picks == {0, 1}


def test_sampling_key_ignores_unused_settings():
    assert Sampling(greedy=True, temperature=0.2, seed=1).key() == Sampling(greedy=True, temperature=0.7, seed=2).key()
    assert Sampling(greedy=False, seed=1).key() != Sampling(greedy=False, seed=2).key()
    assert Sampling(max_new_tokens=8).key() != Sampling(max_new_tokens=9).key()
