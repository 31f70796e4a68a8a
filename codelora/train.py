"""LoRA fine-tuning of a causal LM on a prepared run folder, with metrics, plots and resumable checkpoints.

Run folder layout (run_dir):
  config.yaml, split.json, data_report.json, data/{train,valid,test}.jsonl  (prepare)
  logs/metrics.jsonl, logs/metrics.csv        one row per logging step and per eval step
  plots/loss.png, plots/lr.png                rewritten at every eval
  checkpoints/checkpoint-<step>/              every save_steps, all kept; meta.json (written last) marks
                                              a checkpoint complete; optimizer.pt only in the newest
  final/                                      the final adapter + meta.json
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from codelora.config import RunConfig, save_config
from codelora.errors import UserError

__all__ = ["TrainingError", "complete_checkpoints", "train"]

METRIC_KEYS = [
    "step",
    "epoch",
    "learning_rate",
    "grad_norm",
    "train_loss",
    "valid_loss",
    "test_loss",
    "tokens_seen",
    "tokens_per_second",
    "elapsed_seconds",
]


class TrainingError(UserError):
    """Training cannot go on (e.g. the loss became NaN)."""


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _step_of(path: Path) -> int:
    try:
        return int(path.name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return -1


def _all_checkpoints(run_dir: Path) -> list[Path]:
    ck = Path(run_dir) / "checkpoints"
    if not ck.is_dir():
        return []
    return sorted((p for p in ck.glob("checkpoint-*") if p.is_dir() and _step_of(p) >= 0), key=_step_of)


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints that have meta.json (written last), oldest first."""
    return [p for p in _all_checkpoints(run_dir) if (p / "meta.json").is_file()]


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _is_nan(x: Any) -> bool:
    return isinstance(x, float) and (math.isnan(x) or math.isinf(x))


class _MetricsLog:
    """metrics.jsonl + metrics.csv (rewritten from the rows) and the loss/lr plots."""

    def __init__(self, run_dir: Path, keep_up_to_step: int | None):
        self.run_dir = run_dir
        self.jsonl = run_dir / "logs" / "metrics.jsonl"
        self.csv = run_dir / "logs" / "metrics.csv"
        self.rows: list[dict[str, Any]] = []
        if keep_up_to_step is not None and self.jsonl.is_file():
            for line in self.jsonl.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    row = json.loads(line)
                    if row["step"] <= keep_up_to_step:
                        self.rows.append(row)
        self._flush()

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append({k: row.get(k) for k in METRIC_KEYS})
        self._flush()

    def _flush(self) -> None:
        _atomic_write_text(self.jsonl, "".join(json.dumps(r) + "\n" for r in self.rows))
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=METRIC_KEYS)
        w.writeheader()
        for r in self.rows:
            w.writerow({k: "" if r.get(k) is None else r[k] for k in METRIC_KEYS})
        _atomic_write_text(self.csv, buf.getvalue())

    def plot(self) -> None:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return
        plots = self.run_dir / "plots"
        plots.mkdir(parents=True, exist_ok=True)

        def series(key: str) -> tuple[list, list]:
            pts = [(r["step"], r[key]) for r in self.rows if r.get(key) is not None]
            return [p[0] for p in pts], [p[1] for p in pts]

        def save(fig, name: str) -> None:
            tmp = plots / f"{name}.tmp.png"
            fig.savefig(tmp, dpi=100)
            plt.close(fig)
            os.replace(tmp, plots / f"{name}.png")

        fig, ax = plt.subplots(figsize=(7, 4))
        for key, style in (("train_loss", "-"), ("valid_loss", "o-"), ("test_loss", "s--")):
            xs, ys = series(key)
            if xs:
                ax.plot(xs, ys, style, label=key.replace("_loss", ""))
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title("loss")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        save(fig, "loss")

        fig, ax = plt.subplots(figsize=(7, 3))
        xs, ys = series("learning_rate")
        ax.plot(xs, ys, "-")
        ax.set_xlabel("step")
        ax.set_ylabel("learning rate")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        save(fig, "lr")


def _make_classes():
    """Trainer subclass and callbacks (defined lazily: transformers is heavy to import)."""
    from transformers import Trainer, TrainerCallback
    from transformers.trainer_pt_utils import LengthGroupedSampler

    class SeededLengthGroupedSampler(LengthGroupedSampler):
        """Length-grouped order drawn from (seed, epoch) alone, so a resumed run sees the same batches."""

        def __init__(self, *a, seed: int = 0, **kw):
            super().__init__(*a, **kw)
            self.seed = seed
            self.epoch = 0

        def set_epoch(self, epoch: int) -> None:
            self.epoch = int(epoch)

        def __iter__(self):
            import torch

            self.generator = torch.Generator().manual_seed(self.seed + self.epoch)
            return super().__iter__()

    class CodeloraTrainer(Trainer):
        tokens_seen = 0

        def _get_train_sampler(self, train_dataset=None):
            if self.args.train_sampling_strategy != "group_by_length":
                return super()._get_train_sampler(train_dataset)
            ds = train_dataset if train_dataset is not None else self.train_dataset
            return SeededLengthGroupedSampler(
                self.args.train_batch_size * self.args.gradient_accumulation_steps,
                lengths=[len(ex["input_ids"]) for ex in ds],
                seed=self.args.data_seed if self.args.data_seed is not None else self.args.seed,
            )

        def training_step(self, model, inputs, num_items_in_batch=None):
            mask = inputs.get("attention_mask")
            if mask is not None:
                self.tokens_seen += int(mask.sum().item())
            return super().training_step(model, inputs, num_items_in_batch)

    class RunCallback(TrainerCallback):
        def __init__(self, run_dir: Path, cfg: RunConfig, metrics: _MetricsLog, elapsed_before: float):
            self.run_dir = run_dir
            self.cfg = cfg
            self.metrics = metrics
            self.trainer: CodeloraTrainer | None = None
            self.start = time.time()
            self.elapsed_before = elapsed_before
            self.last_time = self.start
            self.last_tokens = 0
            self.pending: dict[int, dict[str, Any]] = {}
            self.stop_requested = False
            self.commit = _git_commit()

        def elapsed(self) -> float:
            return round(self.elapsed_before + time.time() - self.start, 3)

        def on_train_begin(self, args, state, control, **kw):
            self.start = self.last_time = time.time()
            self.last_tokens = self.trainer.tokens_seen

        def on_step_end(self, args, state, control, **kw):
            if self.stop_requested:
                control.should_save = True
                control.should_training_stop = True

        def on_log(self, args, state, control, logs=None, **kw):
            logs = logs or {}
            step = state.global_step
            tokens = self.trainer.tokens_seen
            if "loss" in logs:
                loss = logs["loss"]
                if _is_nan(float(loss)):
                    raise TrainingError(
                        f"training loss became {loss} at step {step}; lower train.learning_rate or check the data "
                        "(nothing was saved for this step)"
                    )
                now = time.time()
                dt = now - self.last_time
                tps = (tokens - self.last_tokens) / dt if dt > 0 else None
                self.last_time, self.last_tokens = now, tokens
                self.metrics.add(
                    {
                        "step": step,
                        "epoch": logs.get("epoch", state.epoch),
                        "learning_rate": logs.get("learning_rate"),
                        "grad_norm": logs.get("grad_norm"),
                        "train_loss": loss,
                        "tokens_seen": tokens,
                        "tokens_per_second": round(tps, 2) if tps is not None else None,
                        "elapsed_seconds": self.elapsed(),
                    }
                )
            for split in ("valid", "test"):
                key = f"eval_{split}_loss"
                if key in logs:
                    self.pending.setdefault(step, {})[f"{split}_loss"] = logs[key]
            got = self.pending.get(step, {})
            if "valid_loss" in got and "test_loss" in got:
                del self.pending[step]
                same = [r["learning_rate"] for r in self.metrics.rows if r["step"] == step and r["learning_rate"]]
                lr = same[-1] if same else None  # the lr the step was trained with, as in its train row
                self.metrics.add(
                    {
                        "step": step,
                        "epoch": state.epoch or 0.0,
                        "learning_rate": lr,
                        "valid_loss": got["valid_loss"],
                        "test_loss": got["test_loss"],
                        "tokens_seen": tokens,
                        "elapsed_seconds": self.elapsed(),
                    }
                )
                self.metrics.plot()

        def meta(self, state) -> dict[str, Any]:
            return {
                "step": state.global_step,
                "epoch": state.epoch,
                "tokens_seen": self.trainer.tokens_seen,
                "elapsed_seconds": self.elapsed(),
                "metrics": self.metrics.rows,
                "config": self.cfg.to_dict(),
                "git_commit": self.commit,
            }

        def on_save(self, args, state, control, **kw):
            ck = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if not ck.is_dir():
                return
            _atomic_write_text(ck / "meta.json", json.dumps(self.meta(state), indent=1) + "\n")
            for old in _all_checkpoints(self.run_dir):  # optimizer state only in the newest
                if old != ck and (old / "optimizer.pt").exists():
                    (old / "optimizer.pt").unlink()

    return CodeloraTrainer, RunCallback


def _data_ready(run_dir: Path) -> bool:
    return (run_dir / "data_report.json").is_file() and all(
        (run_dir / "data" / f"{s}.jsonl").is_file() for s in ("train", "valid", "test")
    )


def train(cfg: RunConfig, run_dir: Path, resume: bool = False) -> dict[str, Any]:
    """Fine-tune cfg.model with LoRA on cfg.data into run_dir; return the final metrics."""
    run_dir = Path(run_dir)
    ckpts = _all_checkpoints(run_dir)
    if not resume and (ckpts or (run_dir / "final").exists()):
        raise UserError(f"run folder {run_dir} already exists; use --resume or another --run-name")
    resume_from: Path | None = None
    if resume:
        complete = complete_checkpoints(run_dir)
        if not complete:
            raise UserError(f"cannot resume {run_dir}: it has no complete checkpoint (checkpoint-*/meta.json)")
        resume_from = complete[-1]
        for p in _all_checkpoints(run_dir):  # incomplete or newer-than-resume: Trainer would trip on them
            if _step_of(p) > _step_of(resume_from):
                shutil.rmtree(p)
    run_dir.mkdir(parents=True, exist_ok=True)

    import torch
    from peft import LoraConfig as PeftLoraConfig
    from peft import TaskType, get_peft_model
    from transformers import TrainingArguments

    from codelora.data.format import collate, ensure_pad_token
    from codelora.models import load_model, pick_device
    from codelora.prepare import load_tokenized, prepare

    m, t = cfg.model, cfg.train
    device = pick_device(m.device)
    model, tokenizer = load_model(
        m.source, dtype=m.dtype, device=device, attn_implementation=m.attn_implementation, revision=m.revision
    )
    if ensure_pad_token(tokenizer) and len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    if not _data_ready(run_dir):
        prepare(cfg, run_dir, tokenizer)
    save_config(cfg, run_dir / "config.yaml")
    train_ds = load_tokenized(run_dir, "train")
    evals = {s: load_tokenized(run_dir, s) for s in ("valid", "test")}
    if not train_ds:
        raise UserError(f"the training split of {run_dir} is empty; see data_report.json")
    evals = {k: v for k, v in evals.items() if v}
    for ds in [train_ds, *evals.values()]:
        for ex in ds:
            ex.pop("problem_key", None)

    if t.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    lo = cfg.lora
    model = get_peft_model(
        model,
        PeftLoraConfig(
            task_type=TaskType.CAUSAL_LM,
            r=lo.r,
            lora_alpha=lo.alpha,
            lora_dropout=lo.dropout,
            bias=lo.bias,
            target_modules=list(lo.target_modules),
        ),
    )

    steps_per_epoch = max(
        1, math.ceil(math.ceil(len(train_ds) / t.per_device_batch_size) / t.gradient_accumulation_steps)
    )
    total_steps = t.max_steps if t.max_steps > 0 else math.ceil(t.epochs * steps_per_epoch)
    warmup_steps = math.ceil(t.warmup_ratio * total_steps)
    bf16 = device.startswith("cuda") and next(model.parameters()).dtype == torch.bfloat16
    fp16 = device.startswith("cuda") and next(model.parameters()).dtype == torch.float16
    args = TrainingArguments(
        output_dir=str(run_dir / "checkpoints"),
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        per_device_train_batch_size=t.per_device_batch_size,
        per_device_eval_batch_size=t.per_device_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=t.learning_rate,
        weight_decay=t.weight_decay,
        optim=t.optim,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=warmup_steps,
        logging_strategy="steps",
        logging_steps=t.logging_steps,
        eval_strategy="steps" if evals else "no",
        eval_steps=t.eval_steps,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=None,
        seed=t.seed,
        data_seed=t.seed,
        bf16=bf16,
        fp16=fp16,
        use_cpu=device == "cpu",
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        report_to=[] if t.report_to == "none" else [t.report_to],
        prediction_loss_only=True,
        logging_nan_inf_filter=False,  # a NaN loss must reach the log (and stop the run), not be smoothed over
        remove_unused_columns=False,
        dataloader_num_workers=0,
    )

    keep_up_to = None
    elapsed_before = 0.0
    tokens_before = 0
    if resume_from is not None:
        meta = json.loads((resume_from / "meta.json").read_text())
        keep_up_to = meta["step"]
        elapsed_before = float(meta.get("elapsed_seconds") or 0.0)
        tokens_before = int(meta.get("tokens_seen") or 0)
    metrics = _MetricsLog(run_dir, keep_up_to_step=keep_up_to if resume_from is not None else -1)

    CodeloraTrainer, RunCallback = _make_classes()
    cb = RunCallback(run_dir, cfg, metrics, elapsed_before)
    pad_id = tokenizer.pad_token_id
    trainer = CodeloraTrainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=evals or None,
        data_collator=lambda batch: collate(batch, pad_id),
        callbacks=[cb],
    )
    trainer.tokens_seen = tokens_before
    cb.trainer = trainer

    # SIGTERM / Ctrl-C: finish the current step, save a checkpoint, stop cleanly.
    old_handlers = {}

    def _on_signal(signum, frame):
        cb.stop_requested = True

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            old_handlers[sig] = signal.signal(sig, _on_signal)
    try:
        if resume_from is None and evals:
            trainer.evaluate()  # step 0: the base model (LoRA B is zero)
        out = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    finally:
        for sig, h in old_handlers.items():
            signal.signal(sig, h)

    rows = metrics.rows
    train_rows = [r for r in rows if r.get("train_loss") is not None]
    eval_rows = [r for r in rows if r.get("valid_loss") is not None]
    result: dict[str, Any] = {
        "run_dir": str(run_dir),
        "global_step": out.global_step,
        "interrupted": cb.stop_requested,
        "train_loss": train_rows[-1]["train_loss"] if train_rows else None,
        "valid_loss_start": eval_rows[0]["valid_loss"] if eval_rows and eval_rows[0]["step"] == 0 else None,
        "valid_loss": eval_rows[-1]["valid_loss"] if eval_rows else None,
        "test_loss": eval_rows[-1]["test_loss"] if eval_rows else None,
        "tokens_seen": trainer.tokens_seen,
        "elapsed_seconds": cb.elapsed(),
    }
    if cb.stop_requested:
        return result

    final, tmp = run_dir / "final", run_dir / "final.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    trainer.model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    meta = cb.meta(trainer.state)
    meta["result"] = result
    _atomic_write_text(tmp / "meta.json", json.dumps(meta, indent=1) + "\n")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    result["final"] = str(final)
    return result
