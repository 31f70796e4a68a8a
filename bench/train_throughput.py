"""Training throughput: the original project's recipe vs codelora's default, same steps, model, data and machine.

(a) original: every example padded to max_length 1024 with pad = eos, labels = input_ids (loss on the prompt and
    on the padding), random order, batch 1 x accumulation A (the recipe's 1 x 16, scaled down);
(b) codelora: `codelora.train.train` as shipped (dynamic padding, completion-only labels, length-grouped batches),
    with the same batch shape 1 x A;
(c) codelora with train.packing=true and batch A x 1 (the same A examples per step packed into one row),
    unless --no-packed.

All runs train the same number of optimizer steps on the same prepared training rows (the bundled sample set,
prepared by codelora), with the same LoRA config, learning rate, gradient checkpointing and dtype. Each runs in
its own child process so peak memory is its own: peak RSS (ru_maxrss) on CPU, torch.cuda.max_memory_allocated
on GPU. Time runs from the first training micro-batch to the end of the last optimizer step (model loading,
data preparation, evaluation and saving excluded).

Usage: flock /tmp/codelora-bench.lock .venv/bin/python bench/train_throughput.py [--model SOURCE] [--steps N]
       [--accum A] [--no-packed]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ORIGINAL_MAX_LENGTH = 1024


class Meter:
    """Counts real and processed tokens of every training micro-batch, and the training wall time."""

    def __init__(self):
        self.real = self.processed = self.micro_batches = 0
        self.t0 = self.t1 = None

    def batch(self, inputs) -> None:
        if self.t0 is None:
            self.t0 = time.perf_counter()
        mask = inputs.get("attention_mask")
        n = int(inputs["input_ids"].numel())
        self.processed += n
        self.real += int(mask.sum()) if mask is not None else n
        self.micro_batches += 1

    def step_end(self) -> None:
        self.t1 = time.perf_counter()


def _metered(trainer_cls, meter: Meter):
    from transformers import TrainerCallback

    class StepEnd(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            meter.step_end()

    class Metered(trainer_cls):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.add_callback(StepEnd())

        def training_step(self, model, inputs, *a, **kw):
            meter.batch(inputs)
            return super().training_step(model, inputs, *a, **kw)

    return Metered


def _config(model: str, steps: int, batch: int, accum: int, gc: bool, out: Path, packing: bool = False):
    from codelora.config import load_config

    return load_config(
        "demo",
        [
            f"model.source={model}",
            "model.dtype=auto",
            "data.dataset=sample",
            f"data.max_length={ORIGINAL_MAX_LENGTH}",
            f"train.max_steps={steps}",
            f"train.per_device_batch_size={batch}",
            f"train.gradient_accumulation_steps={accum}",
            "train.learning_rate=2e-4",
            f"train.logging_steps={steps}",
            f"train.eval_steps={steps * 1000}",  # only the step-0 eval (outside the timed window anyway)
            f"train.save_steps={steps}",
            f"train.gradient_checkpointing={str(gc).lower()}",
            f"train.packing={str(packing).lower()}",
            f"output_dir={out}",
        ],
    )


def run_original(model: str, steps: int, accum: int, gc: bool, work: Path, meter: Meter) -> dict:
    import torch
    from transformers import Trainer, TrainingArguments

    from codelora.models import load_model, pick_device
    from codelora.prepare import load_tokenized, prepare
    from codelora.train import add_lora

    cfg = _config(model, steps, 1, accum, gc, work)
    device = pick_device("auto")
    net, tok = load_model(model, dtype="auto", device=device, attn_implementation="sdpa")
    tok.pad_token = tok.eos_token  # the original project: pad = eos
    prepare(cfg, work / "data-a", tok)
    rows = []
    for ex in load_tokenized(work / "data-a", "train"):  # prompt + answer ids, as the chat template renders them
        ids = ex["input_ids"][:ORIGINAL_MAX_LENGTH]
        pad = ORIGINAL_MAX_LENGTH - len(ids)
        full = ids + [tok.pad_token_id] * pad  # padding="max_length"
        rows.append({"input_ids": full, "labels": list(full), "attention_mask": [1] * len(ids) + [0] * pad})
    net = add_lora(net, cfg.lora, gc)  # the same adapters as codelora's run: only the data handling differs
    dtype = next(net.parameters()).dtype
    args = TrainingArguments(
        output_dir=str(work / "a"),
        per_device_train_batch_size=1,
        gradient_accumulation_steps=accum,
        max_steps=steps,
        learning_rate=2e-4,
        weight_decay=0.01,
        lr_scheduler_type="cosine",
        warmup_steps=1,
        optim="adamw_torch",
        logging_steps=steps,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        seed=42,
        bf16=dtype == torch.bfloat16,
        use_cpu=device == "cpu",
        remove_unused_columns=False,
        dataloader_num_workers=0,
    )

    def collate(batch):
        return {k: torch.tensor([ex[k] for ex in batch]) for k in ("input_ids", "labels", "attention_mask")}

    trainer = _metered(Trainer, meter)(model=net, args=args, train_dataset=rows, data_collator=collate)
    out = trainer.train()
    return {"train_loss": out.training_loss, "batch": f"1 x {accum}", "examples_per_step": accum}


def run_codelora(model: str, steps: int, accum: int, gc: bool, work: Path, meter: Meter, packing: bool) -> dict:
    import codelora.train as tr

    make = tr._make_classes

    def metered_classes():
        trainer_cls, cb = make()
        return _metered(trainer_cls, meter), cb

    tr._make_classes = metered_classes
    batch, acc = (accum, 1) if packing else (1, accum)
    cfg = _config(model, steps, batch, acc, gc, work, packing=packing)
    result = tr.train(cfg, work / ("c" if packing else "b"))
    return {"train_loss": result["train_loss"], "batch": f"{batch} x {acc}", "examples_per_step": accum}


def child(args) -> None:
    import torch

    meter = Meter()
    work = Path(args.work)
    if args.child == "a":
        info = run_original(args.model, args.steps, args.accum, not args.no_gc, work, meter)
    else:
        info = run_codelora(args.model, args.steps, args.accum, not args.no_gc, work, meter, args.child == "c")
    seconds = meter.t1 - meter.t0
    res = {
        **info,
        "optimizer_steps": args.steps,
        "micro_batches": meter.micro_batches,
        "real_tokens": meter.real,
        "processed_tokens": meter.processed,
        "real_share": round(meter.real / meter.processed, 4),
        "seconds": round(seconds, 2),
        "real_tokens_per_second": round(meter.real / seconds, 2),
        "processed_tokens_per_second": round(meter.processed / seconds, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if torch.cuda.is_available():
        res["peak_cuda_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    Path(args.out).write_text(json.dumps(res))


LABELS = {
    "a": "original recipe (pad to 1024, labels = input_ids, pad = eos)",
    "b": "codelora default (dynamic padding, completion-only labels, length-grouped)",
    "c": "codelora + packing",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="embedded:smollm2-135m-instruct")
    ap.add_argument("--steps", type=int, default=4, help="optimizer steps per run (default 4)")
    ap.add_argument("--accum", type=int, default=4, help="examples per optimizer step (default 4; the recipe: 16)")
    ap.add_argument("--no-gc", action="store_true", help="without gradient checkpointing (both recipes use it)")
    ap.add_argument("--no-packed", action="store_true", help="skip run (c)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "train_throughput.json"))
    ap.add_argument("--child", choices=["a", "b", "c"], help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)

    runs = ["a", "b"] + ([] if args.no_packed else ["c"])
    results = {}
    with tempfile.TemporaryDirectory(prefix="codelora-bench-") as tmp:
        for name in runs:
            out = Path(tmp) / f"{name}.json"
            work = Path(tmp) / f"work-{name}"
            work.mkdir()
            cmd = [sys.executable, __file__, "--child", name, "--work", str(work), "--out", str(out),
                   "--model", args.model, "--steps", str(args.steps), "--accum", str(args.accum)]  # fmt: skip
            if args.no_gc:
                cmd.append("--no-gc")
            print(f"[{name}] {LABELS[name]} ...", file=sys.stderr, flush=True)
            subprocess.run(cmd, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
            results[name] = json.loads(out.read_text())
            r = results[name]
            print(
                f"[{name}] {r['real_tokens_per_second']} real tok/s, real share {r['real_share']}, "
                f"peak RSS {r['peak_rss_mb']} MB, {r['seconds']} s",
                file=sys.stderr,
            )
    mem = "peak_cuda_allocated_mb" if "peak_cuda_allocated_mb" in results["a"] else "peak_rss_mb"
    a = results["a"]
    ratios = {}
    for name in runs[1:]:
        r = results[name]
        ratios[name] = {
            "real_tokens_per_second_ratio": round(r["real_tokens_per_second"] / a["real_tokens_per_second"], 2),
            "peak_memory_ratio": round(r[mem] / a[mem], 3),
            "targets_met": {
                "throughput_at_least_2x": r["real_tokens_per_second"] >= 2 * a["real_tokens_per_second"],
                "real_share_at_least_95pct": r["real_share"] >= 0.95,
                "peak_memory_not_higher": r[mem] <= a[mem],
            },
        }
    import torch
    import transformers

    doc = {
        "model": args.model,
        "optimizer_steps": args.steps,
        "examples_per_step": args.accum,
        "gradient_checkpointing": not args.no_gc,
        "data": "sample (bundled), codelora's training split",
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "memory_metric": mem,
        "runs": {k: {"label": LABELS[k], **v} for k, v in results.items()},
        "vs_original": ratios,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    tmp_out = Path(args.out).with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp_out, args.out)
    print(f"| run | batch | real tokens/s | real-token share | {mem} | real tok/s vs original | memory vs original |")
    print("|---|---|---|---|---|---|---|")
    for k, r in results.items():
        rr = ratios.get(k, {})
        print(
            f"| {LABELS[k]} | {r['batch']} | {r['real_tokens_per_second']} | {r['real_share']:.1%} | {r[mem]} | "
            f"{rr.get('real_tokens_per_second_ratio', 1.0)}x | {rr.get('peak_memory_ratio', 1.0)} |"
        )
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
