"""Training throughput: codelora's default against TRL, the tool a user would pick instead, and the original
project's recipe; same steps, model, data and machine, one invocation.

Rows (keys of `runs`; the `label` of codelora's default starts with "codelora default", TRL's name TRL):
(b) codelora: `codelora.training.sft.train` as shipped: batch 1 x A (A micro-batches of one example: no padding),
    completion-only labels, the LM head only at the labelled positions, LoRA dropout drawn as dropped positions
    (train.sparse_dropout);
(d) TRL's `SFTTrainer`: the same rows given as conversational prompt/completion pairs (TRL applies the chat template
    itself), `completion_only_loss=True`, batch 1 x A;
(e) TRL with `padding_free=True`, batch A x 1 (the A examples of a step in one row, position ids restarting per
    example; transformers turns those into a block-diagonal SDPA mask);
--levers, each lever of codelora's default off, in the same run (before/after against b): (f) the LM head at
every position; (i) train.sparse_dropout=false: PEFT's nn.Dropout for the LoRA dropout
(codelora.training.lora_dropout); (h) both off: codelora's default before issue #25; and the option not taken:
(c) train.packing=true, each step's A examples packed into one row (faster, more memory: `option_packing`);
--original: (a) every example padded to max_length 1024 with pad = eos, labels = input_ids (loss on the prompt and
    on the padding), random order, batch 1 x A (the recipe's 1 x 16, scaled down);
--qlora: (g) codelora's default with model.quantization=nf4 (bitsandbytes).
The same rows again on a model with the real Qwen2.5 head (keys q*: a random 2-layer Qwen2 of Qwen2.5-Coder-1.5B's
width, 1536, with the real Qwen2.5 tokenizer from ../shared/field/qwen25_tokenizer, vocabulary 151,936; the group
is skipped with a reason when that folder is absent; --no-qwen skips it), --qwen-steps optimizer steps each.

All runs train the same number of optimizer steps on the same prepared training rows (the bundled sample set,
prepared by codelora), with the same LoRA config, learning rate, gradient checkpointing and dtype. Each runs in
its own child process so peak memory is its own: peak RSS (ru_maxrss) on CPU, torch.cuda.max_memory_allocated
on GPU. Time runs from the first training micro-batch to the end of the last optimizer step (model loading,
data preparation, evaluation and saving excluded).

Compute limit: the parent measures the machine's best square-matmul rate (--matmul-size, in the run's dtype,
best of several) before and after the runs; each run reports model-FLOPs utilisation
MFU = 4 * N * real tokens/s / matmul rate, N = the row's base model's parameters (tied embedding counted once: the
lm_head is a matmul, the embedding lookup is not). 4N per trained token = forward 2N + backward through the
activations 2N; the frozen base weights need no weight gradients. LoRA's own FLOPs (<1%), attention's
length-dependent term and gradient checkpointing's recomputed forward are not counted (they are overhead), and
neither is the head's saving: a row that projects fewer positions onto the vocabulary gets credit for all of them.

Label tokens: each run counts its label tokens (labels != -100). TRL's labels for the same rows are compared
with codelora's, and the first optimizer step's examples are scored by the untrained model under both labelings
(token-weighted mean cross-entropy, as the Trainer averages a step), to show what the difference does to the loss.
`vs_fastest_trl` holds, per group, codelora's default against the faster TRL row (targets: >= 1.25x real tokens/s on
SmolLM2, >= 1.5x on the Qwen2.5 vocabulary, peak memory not higher). Earlier results are kept under `history`.

--repeat N (default 2): all rows run N rounds, in the same order each round; a row reports its fastest round's
rate (a busy machine only slows a run down: on this project's VM one run of a row varied by up to 15%) and the
largest peak memory of its rounds, with every round under `repetitions`.

Usage (on a shared machine: CPU priority, see the README):
  setsid bench/priority.sh .venv/bin/python bench/train_throughput.py [--levers] [--original] [--qlora]
       [--model SOURCE] [--steps N] [--qwen-steps N] [--accum A] [--no-trl] [--no-qwen]
"""

from __future__ import annotations

import argparse
import importlib.util
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
        self.real = self.processed = self.labels = self.micro_batches = 0
        self.t0 = self.t1 = None

    def batch(self, inputs) -> None:
        if self.t0 is None:
            self.t0 = time.perf_counter()
        mask = inputs.get("attention_mask")
        n = int(inputs["input_ids"].numel())
        self.processed += n
        self.real += int(mask.sum()) if mask is not None else n
        self.labels += int((inputs["labels"] != -100).sum())
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


EXTRA_SET: list[str] = []  # --set KEY=VALUE overrides for every run (e.g. bench/gpu.py --tiny's small data)


def _config(
    model: str,
    steps: int,
    batch: int,
    accum: int,
    gc: bool,
    out: Path,
    packing: bool = False,
    sparse_dropout: bool = True,
):
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
            f"train.sparse_dropout={str(sparse_dropout).lower()}",
            f"output_dir={out}",
            # every training row, no eval splits (no step-0 evaluation: outside the timed window, but minutes)
            "data.split=by_problem",
            "data.valid_fraction=0",
            "data.test_fraction=0",
            *EXTRA_SET,
        ],
    )


def _trainer_args(steps: int, batch: int, accum: int, bf16: bool, device: str) -> dict:
    """The Trainer settings the original recipe and TRL share with codelora's run (lr, schedule, optimizer, seed)."""
    return dict(
        per_device_train_batch_size=batch,
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
        bf16=bf16,
        use_cpu=device == "cpu",
        dataloader_num_workers=0,
    )


def run_original(model: str, steps: int, accum: int, gc: bool, work: Path, meter: Meter) -> dict:
    import torch
    from transformers import Trainer, TrainingArguments

    from codelora.data.prepare import load_tokenized, prepare
    from codelora.model.sources import load_model, pick_device
    from codelora.training.sft import add_lora

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
        **_trainer_args(steps, 1, accum, dtype == torch.bfloat16, device),
        remove_unused_columns=False,
    )

    def collate(batch):
        return {k: torch.tensor([ex[k] for ex in batch]) for k in ("input_ids", "labels", "attention_mask")}

    trainer = _metered(Trainer, meter)(model=net, args=args, train_dataset=rows, data_collator=collate)
    out = trainer.train()
    return {"train_loss": out.training_loss, "batch": f"1 x {accum}", "examples_per_step": accum}


def run_codelora(
    model: str,
    steps: int,
    accum: int,
    gc: bool,
    work: Path,
    meter: Meter,
    packing: bool,
    full_logits: bool = False,
    sparse_dropout: bool = True,
) -> dict:
    import codelora.training.sft as tr
    import codelora.training.trainer

    batch, acc = 1, accum  # the recipe's shape; train.packing packs each step's examples (codelora.training.sft)
    cfg = _config(model, steps, batch, acc, gc, work, packing=packing, sparse_dropout=sparse_dropout)
    # train() looks CodeloraTrainer up in codelora.training.trainer when it builds the trainer: meter that class, this run only
    shipped = codelora.training.trainer.CodeloraTrainer
    metered = _metered(shipped, meter)
    if full_logits:  # the lever's "before": the same loss (label_loss), but the head projects every position

        class FullLogits(metered):
            def __init__(self, *a, **kw):
                super().__init__(*a, **kw)
                self.logits_mode = None

        metered = FullLogits
    codelora.training.trainer.CodeloraTrainer = metered
    try:
        result = tr.train(cfg, work / ("c" if packing else "b"))
    finally:
        codelora.training.trainer.CodeloraTrainer = shipped
    return {"train_loss": result["train_loss"], "batch": f"{batch} x {acc}", "examples_per_step": accum}


def _training_rows(cfg, work: Path, tok) -> tuple[list[dict], list[dict]]:
    """codelora's prepared training examples and, for each, the raw row it was made from (matched by token ids)."""
    from codelora.data.load import load_rows
    from codelora.data.prepare import load_tokenized, prepare
    from codelora.model.chat import encode_prompt_completion

    prepare(cfg, work / "data-trl", tok)
    prepared = list(load_tokenized(work / "data-trl", "train"))
    by_ids = {}
    for row in load_rows(cfg.data.dataset, target=cfg.data.target)[0]:
        p, c = encode_prompt_completion(tok, cfg.data.system_prompt, row["input"], row[cfg.data.target])
        by_ids.setdefault(tuple(p + c), row)
    return prepared, [by_ids[tuple(ex["input_ids"])] for ex in prepared]


def _step_loss(net, examples: list[dict]) -> float:
    """Token-weighted mean cross-entropy over the examples' label tokens (how the Trainer averages one step)."""
    import torch

    total, count = 0.0, 0
    with torch.no_grad():
        for ex in examples:
            ids = torch.tensor([ex["input_ids"]], device=net.device)
            labels = torch.tensor(ex["labels"][1:], device=net.device)
            logits = net(input_ids=ids).logits[0, :-1].float()
            keep = labels != -100
            total += float(torch.nn.functional.cross_entropy(logits[keep], labels[keep], reduction="sum"))
            count += int(keep.sum())
    return total / count


def run_trl(model: str, steps: int, accum: int, gc: bool, work: Path, meter: Meter, padding_free: bool) -> dict:
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from codelora.model.chat import messages
    from codelora.model.sources import load_model, pick_device
    from codelora.training.sft import add_lora

    cfg = _config(model, steps, 1, accum, gc, work)
    device = pick_device("auto")
    net, tok = load_model(model, dtype="auto", device=device, attn_implementation="sdpa")
    prepared, raw = _training_rows(cfg, work, tok)
    system = cfg.data.system_prompt
    data = Dataset.from_list(
        [
            {
                "prompt": messages(system, r["input"]),
                "completion": [{"role": "assistant", "content": r[cfg.data.target]}],
            }
            for r in raw
        ]
    )
    info: dict = {}
    net = add_lora(net, cfg.lora, gc)  # the same adapters as codelora's run
    dtype = next(net.parameters()).dtype
    batch, acc = (accum, 1) if padding_free else (1, accum)
    args = SFTConfig(
        output_dir=str(work / "trl"),
        **_trainer_args(steps, batch, acc, dtype == torch.bfloat16, device),
        gradient_checkpointing=False,  # add_lora already set it up exactly as codelora does
        completion_only_loss=True,
        padding_free=padding_free,
        # padding-free without packing refuses a max_length (it would not be enforced); every row already fits
        max_length=None if padding_free else ORIGINAL_MAX_LENGTH,
    )
    trainer = _metered(SFTTrainer, meter)(model=net, args=args, train_dataset=data, processing_class=tok)
    if not padding_free:  # once, before any training (outside the timed window)
        info["labels_vs_codelora"] = _label_difference(trainer, tok, prepared, accum)
    out = trainer.train()
    return {"train_loss": out.training_loss, "batch": f"{batch} x {acc}", "examples_per_step": accum, **info}


def _label_difference(trainer, tok, prepared: list[dict], accum: int) -> dict:
    """TRL's tokenized rows against codelora's: extra label tokens, and the first step's loss under each labeling."""
    from collections import Counter

    trl_rows = list(trainer.train_dataset)
    extra: Counter = Counter()
    per_example = []
    as_trl = []
    for ex, t in zip(prepared, trl_rows, strict=True):
        ids = list(t["input_ids"])
        # TRL before 1.x kept a completion_mask column; later versions fold it into a labels column (-100 = masked)
        if "labels" in t:
            mask = [int(lbl != -100) for lbl in t["labels"]]
        else:
            mask = list(t["completion_mask"])
        n = len(ex["input_ids"])
        if ids[:n] != ex["input_ids"]:
            raise RuntimeError("TRL's tokens for a row do not start with codelora's; the comparison needs a prefix")
        extra[tok.decode(ids[n:])] += 1
        ours = sum(lbl != -100 for lbl in ex["labels"])
        per_example.append(sum(mask) - ours)
        as_trl.append({"input_ids": ids, "labels": [i if m else -100 for i, m in zip(ids, mask, strict=True)]})
    first = slice(0, accum)  # the first optimizer step's examples, in the prepared order
    net = trainer.model
    net.eval()
    loss_codelora = _step_loss(net, prepared[first])
    loss_trl = _step_loss(net, as_trl[first])
    net.train()
    return {
        "examples": len(prepared),
        "extra_label_tokens_per_example": sorted(set(per_example)),
        "extra_tokens": dict(extra),
        "first_step_examples": accum,
        "first_step_loss_codelora_labels": round(loss_codelora, 4),
        "first_step_loss_trl_labels": round(loss_trl, 4),
        "first_step_loss_relative_change": round(loss_trl / loss_codelora - 1, 4),
    }


def child(args) -> None:
    import torch

    meter = Meter()
    work = Path(args.work)
    kind = ROWS[args.child][1]
    gc = not args.no_gc
    if kind == "original":
        info = run_original(args.model, args.steps, args.accum, gc, work, meter)
    elif kind in ("trl", "trl-padding-free"):
        info = run_trl(args.model, args.steps, args.accum, gc, work, meter, kind == "trl-padding-free")
    else:
        if kind == "qlora":
            EXTRA_SET.append("model.quantization=nf4")
        packing = kind == "packed"
        full_logits = kind in ("full-logits", "before")
        sparse = kind not in ("peft-dropout", "before")
        info = run_codelora(
            args.model, args.steps, args.accum, gc, work, meter, packing, full_logits=full_logits, sparse_dropout=sparse
        )
    seconds = meter.t1 - meter.t0
    res = {
        **info,
        "optimizer_steps": args.steps,
        "micro_batches": meter.micro_batches,
        "real_tokens": meter.real,
        "label_tokens": meter.labels,
        "processed_tokens": meter.processed,
        "real_share": round(meter.real / meter.processed, 4),
        "seconds": round(seconds, 2),
        "real_tokens_per_second": round(meter.real / seconds, 2),
        "processed_tokens_per_second": round(meter.processed / seconds, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if torch.cuda.is_available():
        res["peak_cuda_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        res["peak_cuda_reserved_mb"] = round(torch.cuda.max_memory_reserved() / 2**20, 1)
    Path(args.out).write_text(json.dumps(res))


LABELS = {
    "a": "original recipe (pad to 1024, labels = input_ids, pad = eos)",
    "b": "codelora default (micro-batches of one example, completion-only labels, LM head at labelled positions only, "
    "sparse LoRA dropout)",
    "c": "option: codelora default with train.packing=true (each step's examples packed into one row)",
    "d": "TRL SFTTrainer (prompt/completion, completion_only_loss)",
    "e": "TRL SFTTrainer + padding_free",
    "f": "lever: codelora default with the LM head at every position",
    "g": "codelora + QLoRA (model.quantization=nf4, bitsandbytes)",
    "h": "before #25: train.packing=false, the LM head at every position, PEFT's dropout (the previous default)",
    "i": "lever: codelora default with PEFT's nn.Dropout (train.sparse_dropout=false)",
}
QWEN_SUFFIX = " [Qwen2.5 vocabulary, 2 layers]"
# row key -> (group, kind). Group "smollm2": --model (SmolLM2-135M by default); group "qwen25-vocab": a 2-layer
# model of Qwen2.5-Coder-1.5B's width with the real Qwen2.5 tokenizer (vocabulary 151,936: the real head).
# Kinds: codelora (the default), full-logits / peft-dropout / before (levers off), packed (an option on), trl, qlora.
ROWS = {
    "a": ("smollm2", "original"),
    "b": ("smollm2", "codelora"),
    "c": ("smollm2", "packed"),
    "f": ("smollm2", "full-logits"),
    "i": ("smollm2", "peft-dropout"),
    "h": ("smollm2", "before"),
    "d": ("smollm2", "trl"),
    "e": ("smollm2", "trl-padding-free"),
    "g": ("smollm2", "qlora"),
    "qb": ("qwen25-vocab", "codelora"),
    "qc": ("qwen25-vocab", "packed"),
    "qf": ("qwen25-vocab", "full-logits"),
    "qi": ("qwen25-vocab", "peft-dropout"),
    "qh": ("qwen25-vocab", "before"),
    "qd": ("qwen25-vocab", "trl"),
    "qe": ("qwen25-vocab", "trl-padding-free"),
}
for _k in [k for k in ROWS if k.startswith("q")]:
    LABELS[_k] = LABELS[_k[1:]] + QWEN_SUFFIX
QWEN_FOLDER = ROOT.parent / "shared" / "field" / "qwen25_tokenizer"
QWEN_LAYERS = 2


def build_qwen_vocab_model(folder: str | Path, layers: int = QWEN_LAYERS) -> dict:
    """Save a randomly initialised Qwen2 of Qwen2.5-Coder-1.5B's width (hidden 1536, its MLP, heads, tied 151,936 x
    1536 head) with `layers` blocks, and the real Qwen2.5 tokenizer, into `folder` (fp32). Speed does not depend on
    the weights' values."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    values = json.loads((QWEN_FOLDER / "config.json").read_text())
    values.update(num_hidden_layers=layers, max_window_layers=layers)
    config = AutoConfig.for_model(**values)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(QWEN_FOLDER).save_pretrained(folder)
    return {"layers": layers, "hidden_size": config.hidden_size, "vocab_size": config.vocab_size}


def matmul_rate(dtype_name: str, size: int, repeats: int = 5) -> float:
    """Best rate (FLOP/s) of a size x size matmul on this machine's default device, 2 * size^3 FLOPs each."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(repeats + 1):  # the first is a warm-up
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        (a @ b).sum().item()
        best = min(best, time.perf_counter() - t)
    return 2 * size**3 / best


def base_params(source: str) -> int:
    """Parameters of the base model (tied embedding counted once), counted on the meta device (no weights read)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from codelora.model.sources import model_path

    config = AutoConfig.from_pretrained(model_path(source))
    with torch.device("meta"):
        net = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in net.parameters())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="embedded:smollm2-135m-instruct")
    ap.add_argument("--steps", type=int, default=4, help="optimizer steps per SmolLM2 run (default 4)")
    ap.add_argument("--qwen-steps", type=int, default=2, help="optimizer steps per Qwen2.5-vocabulary run (default 2)")
    ap.add_argument("--accum", type=int, default=4, help="examples per optimizer step (default 4; the recipe: 16)")
    ap.add_argument("--no-gc", action="store_true", help="without gradient checkpointing (both recipes use it)")
    ap.add_argument(
        "--levers",
        action="store_true",
        help="add the lever rows: head everywhere (f), PEFT's dropout (i), both (h); and packing on (c)",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=2,
        help="rounds of all rows (default 2); each row reports its fastest round and its largest peak memory",
    )
    ap.add_argument("--no-trl", action="store_true", help="skip the TRL rows (d, e, qd, qe)")
    ap.add_argument("--original", action="store_true", help="add row (a), the original recipe (slow: ~3 minutes)")
    ap.add_argument("--no-qwen", action="store_true", help="skip the Qwen2.5-vocabulary rows")
    ap.add_argument("--qlora", action="store_true", help="add row (g): codelora with model.quantization=nf4")
    ap.add_argument("--matmul-size", type=int, default=2048)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override for every run")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "train_throughput.json"))
    ap.add_argument("--child", choices=sorted(ROWS), help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()
    EXTRA_SET[:] = args.set
    if args.child:
        return child(args)
    if not args.no_trl and importlib.util.find_spec("trl") is None:
        sys.exit("error: the TRL rows need trl (pip install -e '.[dev]'); or pass --no-trl")
    results = run_all(args)
    write_results(args, results)


def selected_rows(args) -> list[str]:
    """The row keys this invocation runs, in order: SmolLM2 group, then the Qwen2.5-vocabulary group."""
    only = getattr(args, "only", None)  # bench/gpu.py names its rows
    if only:
        return [k for k in ROWS if k in only]
    picked = []
    for key, (group, kind) in ROWS.items():
        if group == "qwen25-vocab" and getattr(args, "no_qwen", False):
            continue
        if kind == "original" and not getattr(args, "original", not getattr(args, "no_original", True)):
            continue
        if kind in ("packed", "full-logits", "peft-dropout", "before") and not getattr(args, "levers", False):
            continue
        if kind == "qlora" and not getattr(args, "qlora", False):
            continue
        if kind.startswith("trl") and args.no_trl:
            continue
        picked.append(key)
    return picked


def best_of(runs: list[dict]) -> dict:
    """One row from its repetitions (--repeat): the fastest one's numbers (a busy machine only slows a run down), with
    the largest peak memory of all of them (the conservative one), and every repetition's rate and memory."""
    best = dict(max(runs, key=lambda r: r["real_tokens_per_second"]))
    if len(runs) > 1:
        for key in ("peak_rss_mb", "peak_cuda_allocated_mb", "peak_cuda_reserved_mb"):
            if key in best:
                best[key] = max(r[key] for r in runs)
        best["repetitions"] = [
            {"real_tokens_per_second": r["real_tokens_per_second"], "peak_rss_mb": r["peak_rss_mb"]} for r in runs
        ]
    return best


def run_all(args) -> dict:
    """Run every selected row in its own process; returns {key: row} plus "_groups": {group: {model, ...}} and
    "_skipped": {group: reason}."""
    results: dict = {}
    groups = {"smollm2": {"model": args.model, "optimizer_steps": args.steps}}
    skipped = {}
    keys = selected_rows(args)
    with tempfile.TemporaryDirectory(prefix="codelora-bench-") as tmp:
        if any(ROWS[k][0] == "qwen25-vocab" for k in keys):
            if not (QWEN_FOLDER / "config.json").is_file():
                skipped["qwen25-vocab"] = (
                    f"{QWEN_FOLDER} not found (the Qwen2.5 tokenizer and config beside the checkout)"
                )
                keys = [k for k in keys if ROWS[k][0] != "qwen25-vocab"]
            else:
                folder = Path(tmp) / "qwen25-vocab"
                # in a process of its own: a child inherits its parent's peak RSS as the floor of its own ru_maxrss
                code = (
                    "import sys, json, train_throughput as t; print(json.dumps(t.build_qwen_vocab_model(sys.argv[1])))"
                )
                built = subprocess.run(
                    [sys.executable, "-c", code, str(folder)], check=True, capture_output=True, text=True,
                    cwd=Path(__file__).parent, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                )  # fmt: skip
                info = json.loads(built.stdout.strip().splitlines()[-1])
                groups["qwen25-vocab"] = {"model": str(folder), "optimizer_steps": args.qwen_steps, **info}
        repeat = max(1, int(getattr(args, "repeat", 1)))
        runs: dict[str, list[dict]] = {}
        for round_ in range(repeat):  # whole rounds, so a slow spell of a shared machine hits every row alike
            for name in keys:
                group = groups[ROWS[name][0]]
                out = Path(tmp) / f"{name}-{round_}.json"
                work = Path(tmp) / f"work-{name}-{round_}"
                work.mkdir()
                cmd = [sys.executable, __file__, "--child", name, "--work", str(work), "--out", str(out),
                       "--model", group["model"], "--steps", str(group["optimizer_steps"]), "--accum", str(args.accum)]  # fmt: skip
                if args.no_gc:
                    cmd.append("--no-gc")
                for kv in getattr(args, "set", []):
                    cmd += ["--set", kv]
                print(f"[{name}] {LABELS[name]} ...", file=sys.stderr, flush=True)
                subprocess.run(cmd, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
                r = json.loads(out.read_text())
                runs.setdefault(name, []).append(r)
                print(
                    f"[{name}] {r['real_tokens_per_second']} real tok/s, real share {r['real_share']}, "
                    f"peak RSS {r['peak_rss_mb']} MB, {r['seconds']} s",
                    file=sys.stderr,
                )
        for name, rs in runs.items():
            results[name] = best_of(rs)
        # parameters counted (on the meta device: no weights) while the temporary Qwen folder still exists
        for g in groups.values():
            g["base_model_parameters"] = base_params(g["model"])
    for name, g in groups.items():
        if name != "smollm2":
            g["model"] = f"random Qwen2 ({g['layers']} layers, hidden {g['hidden_size']}, vocabulary {g['vocab_size']})"
    results["_groups"] = groups
    results["_skipped"] = skipped
    return results


def _group_summary(group: str, runs: dict, mem: str, target: float) -> dict:
    """The done-when comparison of one group: codelora's default against the fastest TRL configuration."""
    keys = [k for k in runs if ROWS[k][0] == group]
    default = next((k for k in keys if ROWS[k][1] == "codelora"), None)
    trl = [k for k in keys if ROWS[k][1].startswith("trl")]
    if default is None or not trl:
        return {}
    fastest = max(trl, key=lambda k: runs[k]["real_tokens_per_second"])
    b, t = runs[default], runs[fastest]
    out = {
        "codelora_default": default,
        "fastest_trl": fastest,
        "real_tokens_per_second_vs_fastest_trl": round(b["real_tokens_per_second"] / t["real_tokens_per_second"], 3),
        "peak_memory_vs_fastest_trl": round(b[mem] / t[mem], 3),
        "peak_memory_vs_lowest_trl": round(b[mem] / min(runs[k][mem] for k in trl), 3),
        "target_speed_ratio": target,
    }
    out["targets_met"] = {
        f"speed_at_least_{target}x_fastest_trl": out["real_tokens_per_second_vs_fastest_trl"] >= target,
        "peak_memory_not_higher_than_fastest_trl": b[mem] <= t[mem],
    }
    packed = next((k for k in keys if ROWS[k][1] == "packed"), None)
    if packed is not None:  # the option codelora leaves off: its speed and memory against the default
        out["option_packing"] = {
            "row": packed,
            "speed_vs_default": round(runs[packed]["real_tokens_per_second"] / b["real_tokens_per_second"], 3),
            "peak_memory_vs_default": round(runs[packed][mem] / b[mem], 3),
            "peak_memory_vs_fastest_trl": round(runs[packed][mem] / t[mem], 3),
        }
    levers = (("full-logits", "head_at_labels_only"), ("peft-dropout", "sparse_dropout"))
    for kind, lever in (*levers, ("before", "both")):
        off = next((k for k in keys if ROWS[k][1] == kind), None)
        if off is not None:  # before (the lever off) / after (codelora's default), in this run
            out[f"lever_{lever}"] = {
                "before": off,
                "after": default,
                "speed_ratio": round(b["real_tokens_per_second"] / runs[off]["real_tokens_per_second"], 3),
                "peak_memory_ratio": round(b[mem] / runs[off][mem], 3),
                "train_loss_before": runs[off]["train_loss"],
                "train_loss_after": b["train_loss"],
            }
    return out


def summarize(args, results: dict) -> dict:
    """The results document: runs, ratios to the original recipe, to codelora and to the fastest TRL per group,
    the compute-limit line."""
    import datetime

    import torch
    import transformers

    results = dict(results)
    groups = results.pop("_groups", {"smollm2": {"model": args.model, "optimizer_steps": args.steps}})
    skipped = results.pop("_skipped", {})
    for g in groups.values():
        if "base_model_parameters" not in g:
            g["base_model_parameters"] = base_params(g["model"])
    dtype_name = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    # the machine is shared: take the best of two measurements (before the report, after all runs)
    rate = max(matmul_rate(dtype_name, args.matmul_size), matmul_rate(dtype_name, args.matmul_size))
    mem = "peak_cuda_allocated_mb" if "peak_cuda_allocated_mb" in next(iter(results.values())) else "peak_rss_mb"
    for name, r in results.items():
        group = ROWS[name][0]
        n_params = groups[group]["base_model_parameters"]
        ref = results.get("b" if group == "smollm2" else "qb") or r
        r["group"] = group
        r["mfu"] = round(4 * n_params * r["real_tokens_per_second"] / rate, 4)
        r["real_tokens_per_second_vs_codelora"] = round(r["real_tokens_per_second"] / ref["real_tokens_per_second"], 2)
        r["peak_memory_vs_codelora"] = round(r[mem] / ref[mem], 3)
    a = results.get("a")
    ratios = {}
    for name in results if a else []:
        if name == "a" or ROWS[name][0] != "smollm2":
            continue
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
    vs_trl = {
        g: s
        for g, target in (("smollm2", 1.25), ("qwen25-vocab", 1.5))
        if (s := _group_summary(g, results, mem, target))
    }
    doc = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join([f"bench/{Path(sys.argv[0]).name}", *sys.argv[1:]]),
        "model": args.model,
        "optimizer_steps": args.steps,
        "examples_per_step": args.accum,
        "gradient_checkpointing": not args.no_gc,
        "data": "sample (bundled), codelora's training split",
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "device_name": torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu",
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": _version("trl"),
        "memory_metric": mem,
        "groups": groups,
        "skipped": skipped,
        "compute_limit": {
            "matmul": f"{args.matmul_size}x{args.matmul_size} {dtype_name}, best of 5, best of two measurements",
            "matmul_flops_per_second": round(rate),
            "base_model_parameters": groups["smollm2"]["base_model_parameters"],
            "flops_per_real_token": 4 * groups["smollm2"]["base_model_parameters"],
            "formula": "MFU = 4 * N * real tokens/s / matmul rate (forward 2N + activation gradients 2N; "
            "frozen weights: no weight gradients; LoRA, attention and recomputation not counted; N of the row's "
            "group model, see groups)",
        },
        "runs": {k: {"label": LABELS[k], **v} for k, v in results.items()},
        "vs_original": ratios,
        "vs_fastest_trl": vs_trl,
    }
    return doc


def write_results(args, results: dict) -> None:
    doc = summarize(args, results)
    mem, limit = doc["memory_metric"], doc["compute_limit"]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    history = []
    if out.is_file():  # earlier runs are kept, oldest first, each as it was written
        try:
            old = json.loads(out.read_text())
            history = old.pop("history", []) + [old]
        except ValueError:
            history = []
    doc["history"] = history
    tmp_out = out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp_out, out)
    print(
        f"matmul {limit['matmul_flops_per_second'] / 1e9:.1f} GFLOP/s ({limit['matmul']}); load average "
        f"{', '.join(f'{x:.1f}' for x in doc['load_average'])}"
    )
    print(
        f"| run | batch | real tokens/s | vs codelora | real-token share | label tokens | {mem} | vs codelora | MFU |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in doc["runs"].values():
        print(
            f"| {r['label']} | {r['batch']} | {r['real_tokens_per_second']} | {r['real_tokens_per_second_vs_codelora']}x | "
            f"{r['real_share']:.1%} | {r['label_tokens']} | {r[mem]} | {r['peak_memory_vs_codelora']} | {r['mfu']:.1%} |"
        )
    for g, s in doc["vs_fastest_trl"].items():
        print(f"{g}: codelora default vs fastest TRL ({s['fastest_trl']}): {json.dumps(s)}")
    for k in ("d", "qd"):
        if k in doc["runs"]:
            print(f"labels, TRL vs codelora ({k}):", json.dumps(doc["runs"][k]["labels_vs_codelora"]))
    for g, why in doc["skipped"].items():
        print(f"skipped {g}: {why}")
    print(f"wrote {args.out}", file=sys.stderr)


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
