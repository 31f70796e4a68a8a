"""codelora.training.trainer's classes used directly (tiny random Qwen2 with the recipe's LoRA): the sampler's order comes
from (seed, epoch) alone, the trainer counts real tokens whatever the collator, the callback writes the metrics log,
the plots and each checkpoint's meta.json, and a stop request ends the run at a saved step."""

from __future__ import annotations

import csv
import functools
import json
import random
from pathlib import Path

import pytest
import torch
from transformers.trainer_pt_utils import LengthGroupedSampler

from codelora.config import load_config
from codelora.data.format import collate, collate_packed
from codelora.model.sources import load_model
from codelora.training.sft import add_lora, training_arguments
from codelora.training.trainer import METRIC_KEYS, CodeloraTrainer, MetricsLog, RunCallback, SeededLengthGroupedSampler

TRAIN_LENGTHS = (30, 12, 21, 7)  # distinct: any padded batch of two holds pad tokens


def _rows(vocab: int, lengths, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for n in lengths:
        ids = [rng.randrange(3, vocab) for _ in range(n)]
        rows.append({"input_ids": ids, "labels": [-100] * 3 + ids[3:]})  # a 3-token prompt without loss
    return rows


def _trainer(run_dir: Path, packing: bool) -> tuple[CodeloraTrainer, RunCallback]:
    """A trainer as build_trainer makes one: 2 steps of 2 rows (one epoch), a log every step, eval and save at 2."""
    cfg = load_config(
        "demo",
        [
            "model.source=tiny-random:qwen2",
            "train.max_steps=2",
            "train.per_device_batch_size=2",
            "train.gradient_accumulation_steps=1",
            "train.logging_steps=1",
            "train.eval_steps=2",
            "train.save_steps=2",
            f"train.packing={str(packing).lower()}",
            "train.eval_test=true",  # the trainer below evaluates a test split too (the demo preset does not)
            f"output_dir={run_dir.parent}",
        ],
    )
    model, tok = load_model("tiny-random:qwen2", dtype="fp32", device="cpu", attn_implementation="sdpa")
    model.config.use_cache = False
    model = add_lora(model, cfg.lora, gradient_checkpointing=False)
    train_rows = _rows(len(tok), TRAIN_LENGTHS, seed=0)
    args = training_arguments(cfg, run_dir, "cpu", torch.float32, len(train_rows))
    callback = RunCallback(run_dir, cfg, MetricsLog(run_dir, keep_up_to_step=None), elapsed_before=0.0)
    padded = functools.partial(collate, pad_id=tok.pad_token_id)
    trainer = CodeloraTrainer(
        model=model,
        args=args,
        train_dataset=train_rows,
        eval_dataset={"valid": _rows(len(tok), (9, 14), seed=1), "test": _rows(len(tok), (11,), seed=2)},
        data_collator=collate_packed if packing else padded,
        callbacks=[callback],
    )
    trainer.eval_collator = padded
    callback.trainer = trainer
    return trainer, callback


def _order(lengths: list[int], seed: int, epoch: int, global_seed: int) -> list[int]:
    torch.manual_seed(global_seed)  # whatever ran before leaves the global generator anywhere
    sampler = SeededLengthGroupedSampler(4, lengths=lengths, seed=seed)
    sampler.set_epoch(epoch)
    return list(sampler)


def test_sampler_order_depends_only_on_seed_and_epoch():
    lengths = [random.Random(3).randrange(5, 400) for _ in range(64)]
    first = _order(lengths, seed=42, epoch=0, global_seed=1)
    assert sorted(first) == list(range(64))  # every example once per epoch
    assert _order(lengths, seed=42, epoch=0, global_seed=999) == first
    assert _order(lengths, seed=42, epoch=1, global_seed=1) != first  # a new epoch reshuffles
    assert _order(lengths, seed=7, epoch=0, global_seed=1) != first
    sampler = SeededLengthGroupedSampler(4, lengths=lengths, seed=42)
    assert list(sampler) == list(sampler) == first  # iterating again (a resumed run) repeats the epoch
    # Control: transformers' sampler draws from the global generator, so a resumed run would see other batches.
    plain = []
    for global_seed in (1, 999):
        torch.manual_seed(global_seed)
        plain.append(list(LengthGroupedSampler(4, lengths=lengths)))
    assert plain[0] != plain[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same 2-step run with padded and with packed batches: {packing: (run_dir, trainer, callback, output,
    the lengths of each batch the eval collator made)}."""
    out = {}
    for packing in (False, True):
        run_dir = tmp_path_factory.mktemp("trainer") / "run"
        trainer, callback = _trainer(run_dir, packing)
        padded, eval_batches = trainer.eval_collator, []

        def recording(batch, padded=padded, eval_batches=eval_batches):
            eval_batches.append(tuple(sorted(len(ex["input_ids"]) for ex in batch)))
            return padded(batch)

        trainer.eval_collator = recording
        out[packing] = (run_dir, trainer, callback, trainer.train(), eval_batches)
    return out


@pytest.mark.parametrize("packing", [False, True])
def test_tokens_seen_counts_real_tokens_not_padding(runs, packing):
    _, trainer, _, output, _ = runs[packing]
    assert output.global_step == 2
    # one epoch: every training row exactly once; padded batches of two distinct lengths would count more
    assert trainer.tokens_seen == sum(TRAIN_LENGTHS)


def test_callback_writes_the_metrics_log_plots_and_checkpoint_meta(runs):
    run_dir, trainer, callback, _, _ = runs[False]
    rows = [json.loads(line) for line in (run_dir / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["train_loss"] is not None] == [1, 2]
    assert [r["step"] for r in rows if r["valid_loss"] is not None] == [0, 2]  # the base model, then step 2
    assert all(r["test_loss"] is not None for r in rows if r["valid_loss"] is not None)
    assert all(set(r) == set(METRIC_KEYS) for r in rows)
    train_rows = [r for r in rows if r["train_loss"] is not None]
    assert 0 < train_rows[0]["tokens_seen"] < train_rows[1]["tokens_seen"] == sum(TRAIN_LENGTHS)
    # the lr each step trained with: warmup_steps = ceil(0.03 x 2) = 1 from 0, then the cosine's peak
    assert [r["learning_rate"] for r in train_rows] == [0.0, pytest.approx(1e-3)]
    assert all(r["tokens_per_second"] > 0 and r["grad_norm"] > 0 for r in train_rows)
    # eval time is left out of tokens_per_second: counted once per eval, though Trainer.evaluate calls itself per split
    assert 0 < trainer.eval_seconds < callback.elapsed()
    with open(run_dir / "logs" / "metrics.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [int(r["step"]) for r in table] == [r["step"] for r in rows]
    assert (run_dir / "plots" / "loss.png").stat().st_size > 0
    meta = json.loads((run_dir / "checkpoints" / "checkpoint-2" / "meta.json").read_text())
    assert meta["step"] == 2 and meta["tokens_seen"] == sum(TRAIN_LENGTHS)
    assert meta["metrics"] == rows and meta["config"]["train"]["max_steps"] == 2
    assert meta == {**callback.meta(trainer.state), "elapsed_seconds": meta["elapsed_seconds"]}


def test_eval_batches_stay_padded_when_training_packs(runs):
    _, trainer, callback, _, eval_batches = runs[True]
    # valid (2 rows, one batch) and test (1 row) at step 0 and at step 2, all through the eval collator
    assert sorted(eval_batches) == sorted([(9, 14), (11,)] * 2)
    assert trainer.data_collator is collate_packed  # training batches packed again after each eval
    assert trainer.eval_seconds > 0
    start = {p: next(r for r in runs[p][2].metrics.rows if r["step"] == 0) for p in (False, True)}
    assert start[True]["valid_loss"] == pytest.approx(start[False]["valid_loss"], abs=1e-6)  # same base model


def test_stop_request_saves_and_stops_at_the_end_of_the_step(tmp_path):
    trainer, callback = _trainer(tmp_path / "run", packing=False)
    callback.stop_requested = True  # what the SIGTERM / SIGINT handler in codelora.training.sft sets
    assert trainer.train().global_step == 1
    meta = json.loads((tmp_path / "run" / "checkpoints" / "checkpoint-1" / "meta.json").read_text())
    assert meta["step"] == 1 and meta["tokens_seen"] == trainer.tokens_seen > 0
