"""The Hugging Face Trainer as codelora trains with it: the Trainer subclass, its sampler, the run callback and the
metrics log. codelora.training.sft sets them up and runs them; this module holds what happens at each step.

- `CodeloraTrainer`: counts real tokens, draws length-grouped batches from (seed, epoch), evaluates on padded
  batches, may resume with a fresh optimizer, and turns a disk full during a checkpoint save into one line.
- `SeededLengthGroupedSampler`: transformers' LengthGroupedSampler with an order that depends on (seed, epoch) only.
- `RunCallback`: writes logs/metrics.{jsonl,csv} and the plots through `MetricsLog`, marks each checkpoint complete
  with meta.json, stops on a NaN loss, and stops at a step boundary (saving a checkpoint) on a signal.

transformers is imported at the top: codelora.training.sft imports this module only once a run starts, so that
`import codelora.training.sft` and `codelora --help` stay light.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback
from transformers.trainer_callback import ProgressCallback
from transformers.trainer_pt_utils import LengthGroupedSampler

from codelora.config import RunConfig
from codelora.data.format import split_packed
from codelora.errors import TrainingError
from codelora.files import DISK_FULL_ERRNOS, atomic_write_text, follow_umask
from codelora.run.layout import RunFolder, complete_checkpoints, git_commit, meta_file
from codelora.training.label_loss import accepts_logits_to_keep, label_loss, logits_to_keep, supports_mask

__all__ = [
    "DISK_FULL_ERRNOS",
    "METRIC_KEYS",
    "CodeloraTrainer",
    "MetricsLog",
    "RunCallback",
    "SeededLengthGroupedSampler",
    "disk_full_error",
    "resume_state",
]

# The columns of logs/metrics.{jsonl,csv}, in order. A row is a training log (train_loss set) or an eval (valid_loss
# and test_loss set); a key a row does not have is null in JSON and empty in CSV.
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
    "eval_pass@1",
    "eval_model",
    "eval_benchmark",
    "eval_generation_seconds",
    "eval_grading_seconds",
]
# A pass@1 row (train.execution_eval, codelora.training.execution_eval) sets the eval_* keys at the step of the
# checkpoint it graded; pass@k for k > 1 (eval_pass@5, ...) are added as extra columns when the sampling has n > 1.


def disk_full_error(e: OSError, what: str) -> TrainingError:
    """The one-line error for a full disk (`e.errno` in DISK_FULL_ERRNOS) while writing `what`."""
    return TrainingError(
        f"disk full ({os.strerror(e.errno)}) while writing {what}; earlier checkpoints are intact; "
        "free space and run again with --resume"
    )


def _is_pass_at_k(key: str) -> bool:
    return key.startswith("eval_pass@") and key[len("eval_pass@") :].isdigit()


def _is_nan(x: Any) -> bool:
    return isinstance(x, float) and (math.isnan(x) or math.isinf(x))


class MetricsLog:
    """The run's metrics: logs/metrics.jsonl and logs/metrics.csv (both rewritten atomically from `rows` after each
    added row) and plots/loss.png, plots/lr.png (rewritten by `plot`).

    run_dir: the run folder. keep_up_to_step: on resume, the rows of an existing metrics.jsonl up to and including
    this step are kept (the later ones belong to the trajectory being redone); None or -1 with no such rows starts
    empty. write: False on ranks other than 0, which keep the rows in memory only. keys: the columns (another
    training method's, e.g. codelora.training.grpo.RL_METRIC_KEYS; `plot` draws SFT's losses only).
    """

    def __init__(self, run_dir: Path, keep_up_to_step: int | None, write: bool = True, keys: list[str] | None = None):
        self.run_dir = run_dir
        self.write = write
        self.keys = list(keys or METRIC_KEYS)
        self.jsonl = RunFolder(run_dir).metrics_file
        self.csv = RunFolder(run_dir).metrics_csv
        self.rows: list[dict[str, Any]] = []
        if keep_up_to_step is not None and self.jsonl.is_file():
            for line in self.jsonl.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    row = json.loads(line)
                    if row["step"] <= keep_up_to_step:
                        self.rows.append(row)
        self._flush()

    def add(self, row: dict[str, Any]) -> None:
        """Append `row` (its keys and any eval_pass@k; missing ones are None) and rewrite both files."""
        extra = {k: v for k, v in row.items() if k not in self.keys and _is_pass_at_k(k)}
        self.rows.append({**{k: row.get(k) for k in self.keys}, **extra})
        self._flush()

    def columns(self) -> list[str]:
        """The log's keys (METRIC_KEYS for SFT), then the eval_pass@k columns some row has."""
        extra = sorted({k for r in self.rows for k in r if k not in self.keys and _is_pass_at_k(k)})
        return self.keys + sorted(extra, key=lambda k: int(k.rsplit("@", 1)[1]))

    def _flush(self) -> None:
        if not self.write:
            return
        atomic_write_text(self.jsonl, "".join(json.dumps(r) + "\n" for r in self.rows))
        buf = io.StringIO()
        cols = self.columns()
        w = csv.DictWriter(buf, fieldnames=cols)
        w.writeheader()
        for r in self.rows:
            w.writerow({k: "" if r.get(k) is None else r[k] for k in cols})
        atomic_write_text(self.csv, buf.getvalue())

    def plot(self) -> None:
        """Rewrite plots/loss.png (train, valid, test loss by step) and plots/lr.png."""
        if not self.write:
            return
        import matplotlib  # a required dependency (pyproject.toml)

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        plots = RunFolder(self.run_dir).plots_dir
        plots.mkdir(parents=True, exist_ok=True)

        def series(key: str) -> tuple[list, list]:
            pts = [(r["step"], r[key]) for r in self.rows if r.get(key) is not None]
            return [p[0] for p in pts], [p[1] for p in pts]

        def save(fig, name: str) -> None:
            tmp = plots / f"{name}.tmp.png"
            fig.savefig(tmp, dpi=100)
            plt.close(fig)
            os.replace(tmp, RunFolder(self.run_dir).plot(name))

        fig, ax = plt.subplots(figsize=(7, 4))
        for key, style in (("train_loss", "-"), ("valid_loss", "o-"), ("test_loss", "s--")):
            xs, ys = series(key)
            if xs:
                ax.plot(xs, ys, style, label=key.replace("_loss", ""))
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title("loss")
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        xs, ys = series("eval_pass@1")
        if xs:  # train.execution_eval: pass@1 of each graded checkpoint on its own axis
            bench = next((r["eval_benchmark"] for r in self.rows if r.get("eval_benchmark")), "")
            ax2 = ax.twinx()
            pts = sorted(zip(xs, ys, strict=True))
            ax2.plot([p[0] for p in pts], [p[1] for p in pts], "D-", color="tab:green", label=f"pass@1 {bench}")
            ax2.set_ylabel("pass@1")
            ax2.set_ylim(-0.02, max(1.0, max(ys)) + 0.02)
            h2, l2 = ax2.get_legend_handles_labels()
            handles, labels = handles + h2, labels + l2
            ax.set_title("loss and pass@1")
        ax.legend(handles, labels)
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


class SeededLengthGroupedSampler(LengthGroupedSampler):
    """Length-grouped order drawn from (seed, epoch) alone, so a resumed run sees the same batches.

    transformers' sampler draws from a generator whose state depends on what ran before; this one re-seeds it with
    `seed + epoch` on every `iter()`. Arguments as LengthGroupedSampler's (batch_size: examples per group, lengths:
    one token count per example) plus `seed`; yields indices 0..len(lengths)-1, each once per epoch.
    """

    def __init__(self, *a, seed: int = 0, **kw):
        super().__init__(*a, **kw)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by the Trainer (through accelerate) at the start of each epoch."""
        self.epoch = int(epoch)

    def __iter__(self):
        self.generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return super().__iter__()


class CodeloraTrainer(Trainer):
    """transformers.Trainer with what a codelora run needs on top. Set after construction:

    tokens_seen: real (non-pad) tokens trained on so far, summed over all processes (restored on resume).
    eval_seconds: seconds spent in evaluate(), which tokens_per_second leaves out.
    eval_collator: the collator for eval batches (padded) when training packs rows: packing changes how the Trainer
      weights batch losses, so eval losses stay comparable only on padded batches.
    pack_max_tokens: with train.packing a batch is a whole optimizer step packed into one row (see
      codelora.training.sft.training_arguments); it is trained as rows of at most this many tokens, split between examples.
    reset_optimizer / resume_step: resume from a checkpoint without optimizer.pt with fresh AdamW moments, the
      learning-rate schedule continuing at resume_step (from scheduler.pt when present).
    The loss (train and eval) is codelora.training.label_loss's: the LM head runs only at the positions whose next
    token is labelled (`logits_to_keep`), normalised per label token of the optimizer step (num_items_in_batch);
    `logits_mode` says how ("mask", "positions", or None: full logits, for a model without `logits_to_keep`).
    Passing another compute_loss_func turns this off.
    A full disk while saving a checkpoint removes the partial folder and raises TrainingError (one line).
    """

    tokens_seen = 0
    pack_max_tokens: int | None = None
    eval_seconds = 0.0
    eval_collator = None
    reset_optimizer = False
    resume_step = 0
    _evaluating = False

    def __init__(self, *a, **kw):
        kw.setdefault("compute_loss_func", label_loss)
        super().__init__(*a, **kw)
        self.logits_mode = None
        if self.compute_loss_func is label_loss and accepts_logits_to_keep(self.model):
            self.logits_mode = "mask" if supports_mask() else "positions"

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.logits_mode is not None and "labels" in inputs:
            keep = logits_to_keep(inputs["labels"], mask=self.logits_mode == "mask")
            inputs = {**inputs, "logits_to_keep": keep}
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)

    def _load_optimizer_and_scheduler(self, checkpoint):
        if checkpoint is None or not self.reset_optimizer:
            return super()._load_optimizer_and_scheduler(checkpoint)
        # fresh AdamW moments, but the schedule continues where the checkpoint left it
        sched = Path(checkpoint) / "scheduler.pt"
        if sched.is_file():
            self.lr_scheduler.load_state_dict(torch.load(sched, map_location="cpu", weights_only=True))
            return
        with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": intended here
            warnings.simplefilter("ignore")
            for _ in range(self.resume_step):
                self.lr_scheduler.step()

    def _get_train_sampler(self, train_dataset=None):
        if self.args.train_sampling_strategy != "group_by_length":
            return super()._get_train_sampler(train_dataset)
        ds = train_dataset if train_dataset is not None else self.train_dataset
        # Groups sized by the global batch (x world size): every process draws the same order and accelerate
        # deals whole micro-batches round-robin, so N processes see the batches one process would.
        return SeededLengthGroupedSampler(
            self.args.train_batch_size * self.args.gradient_accumulation_steps * self.args.world_size,
            lengths=[len(ex["input_ids"]) for ex in ds],
            seed=self.args.data_seed if self.args.data_seed is not None else self.args.seed,
        )

    def evaluate(self, *a, **kw):
        if self._evaluating:  # Trainer.evaluate calls itself once per eval split: time only the outer call
            return super().evaluate(*a, **kw)
        self._evaluating = True
        start = time.time()
        train_collator = self.data_collator
        if self.eval_collator is not None:
            self.data_collator = self.eval_collator
        try:
            return super().evaluate(*a, **kw)
        finally:
            self.data_collator = train_collator
            self.eval_seconds += time.time() - start
            self._evaluating = False

    def training_step(self, model, inputs, num_items_in_batch=None):
        mask = inputs.get("attention_mask")
        n = int(mask.sum().item()) if mask is not None else int(inputs["input_ids"].numel())  # packed: no pad
        if self.args.world_size > 1:
            n = int(self.accelerator.reduce(torch.tensor(n, device=self.accelerator.device), "sum").item())
        self.tokens_seen += n
        if self.pack_max_tokens is None or "position_ids" not in inputs:
            return super().training_step(model, inputs, num_items_in_batch)
        # a packed step: rows of at most pack_max_tokens, each loss over the whole step's label tokens, so the sum
        # of their gradients is the step's gradient (gradients synchronised after the last row only)
        rows = split_packed(inputs, self.pack_max_tokens)
        total = None
        for i, row in enumerate(rows):
            last = i == len(rows) - 1
            with contextlib.nullcontext() if last else self.accelerator.no_sync(model):
                loss = super().training_step(model, row, num_items_in_batch)
            total = loss if total is None else total + loss
        return total

    def _save_checkpoint(self, model, trial, *a, **kw):
        ck = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
        try:
            return super()._save_checkpoint(model, trial, *a, **kw)
        except OSError as e:
            if e.errno not in DISK_FULL_ERRNOS:
                raise
            # meta.json was not written, so the folder already reads as incomplete; remove it all the same
            shutil.rmtree(ck, ignore_errors=True)
            done = complete_checkpoints(Path(self.args.output_dir).parent)
            newest = f"newest complete checkpoint {done[-1].name} is intact" if done else "no earlier checkpoint"
            raise TrainingError(
                f"disk full ({os.strerror(e.errno)}) while saving {ck.name} to {ck.parent}; "
                f"removed the partial folder, {newest}; free space and run again with --resume"
            ) from None


def resume_state(args, step: int) -> dict[str, int]:
    """How the data was dealt up to optimizer step `step`, recorded in each checkpoint's meta.json: num_processes,
    per_device_batch_size, gradient_accumulation_steps, global_batch_size (examples per optimizer step: the
    product) and examples_seen (step x global batch; an epoch's last batch may be short). The Trainer resumes by skipping `step` optimizer steps' worth
    of batches of the *current* launch, so a launch with another process count would skip another number of
    examples; codelora.train refuses that resume (check_start)."""
    n, per, acc = int(args.world_size), int(args.per_device_train_batch_size), int(args.gradient_accumulation_steps)
    return {
        "num_processes": n,
        "per_device_batch_size": per,
        "gradient_accumulation_steps": acc,
        "global_batch_size": n * per * acc,
        "examples_seen": step * n * per * acc,
    }


class QuietProgress(ProgressCallback):
    """The Trainer's training progress bar alone: no nested bar per eval pass, and no `{'loss': '1.234', ...}` dict
    per log (RunCallback prints one formatted line per logging step instead, above the bar)."""

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        return None

    def on_log(self, args, state, control, logs=None, **kwargs):
        return None


def metrics_line(row: dict[str, Any], max_steps: int | None = None) -> str:
    """One metrics row as the terminal shows it: `step 4/8  loss 1.234  lr 2.00e-04  grad norm 0.53  312 tok/s`,
    or for an eval row `step 4/8  valid loss 0.8123` (and the test loss when logged); numbers as numbers."""
    step = f"step {row['step']}" + (f"/{max_steps}" if max_steps and max_steps > 0 else "")
    parts = [step]
    if row.get("train_loss") is not None:
        parts.append(f"loss {row['train_loss']:.4f}")
        if row.get("learning_rate") is not None:
            parts.append(f"lr {row['learning_rate']:.2e}")
        if row.get("grad_norm") is not None:
            parts.append(f"grad norm {row['grad_norm']:.3g}")
        if row.get("tokens_per_second") is not None:
            parts.append(f"{row['tokens_per_second']:.0f} tok/s")
    else:
        for key in ("valid_loss", "test_loss"):
            if row.get(key) is not None:
                parts.append(f"{key.replace('_loss', '')} loss {row[key]:.4f}")
    if row.get("elapsed_seconds") is not None:
        parts.append(f"{row['elapsed_seconds']:.0f} s")
    return "  ".join(parts)


def _print_line(text: str) -> None:
    """A line above the progress bar (tqdm.write keeps the bar whole), on stderr with the bar."""
    from tqdm import tqdm

    tqdm.write(text, file=sys.stderr)


class RunCallback(TrainerCallback):
    """Turns the Trainer's events into the run folder's records.

    on_log: a train row per logging step (loss, lr, grad norm, tokens_seen, tokens_per_second over training time
      only, elapsed_seconds) and an eval row once the losses of every eval split (eval_keys) of a step are in,
      then the plots;
      a NaN or infinite training loss raises TrainingError naming the step (nothing is saved for it).
    on_save: checkpoints/checkpoint-N/meta.json, written last, marks the checkpoint complete (see `meta`).
    on_step_end: after `stop_requested` is set (by a signal handler), saves and stops at the end of the step;
      under several processes all stop at the same step.

    run_dir: the run folder; cfg: the run's config (recorded in meta.json); metrics: where rows go;
    elapsed_before: seconds the run had trained before a resume. `trainer` must be set before training starts.
    """

    def __init__(self, run_dir: Path, cfg: RunConfig, metrics: MetricsLog, elapsed_before: float):
        self.run_dir = run_dir
        self.cfg = cfg
        self.metrics = metrics
        self.trainer: CodeloraTrainer | None = None
        self.start = time.time()
        self.elapsed_before = elapsed_before
        self.last_time = self.start
        self.last_tokens = 0
        self.last_eval_seconds = 0.0
        self.pending: dict[int, dict[str, Any]] = {}
        self.stop_requested = False
        self.commit = git_commit()
        # the losses one eval logs ({split}_loss of each eval split: valid, and test with train.eval_test)
        self.eval_keys: tuple[str, ...] = ("valid_loss", "test_loss") if cfg.train.eval_test else ("valid_loss",)

    def elapsed(self) -> float:
        """Seconds trained, this process's time plus elapsed_before, rounded to ms."""
        return round(self.elapsed_before + time.time() - self.start, 3)

    def on_train_begin(self, args, state, control, **kw):
        self.start = self.last_time = time.time()
        self.last_tokens = self.trainer.tokens_seen
        self.last_eval_seconds = self.trainer.eval_seconds

    def on_step_end(self, args, state, control, **kw):
        stop = self.stop_requested
        if args.world_size > 1:  # a signal reaches the ranks at different steps: stop all at the same one
            acc = self.trainer.accelerator
            stop = bool(acc.reduce(torch.tensor(int(stop), device=acc.device), "sum").item())
            self.stop_requested = stop
        if stop:
            control.should_save = True
            control.should_training_stop = True

    def on_log(self, args, state, control, logs=None, **kw):
        logs = logs or {}
        step = state.global_step
        tokens = self.trainer.tokens_seen
        if "loss" in logs:
            loss = logs["loss"]
            if _is_nan(float(loss)):  # the logged loss is averaged over ranks: every rank stops here
                raise TrainingError(
                    f"training loss became {loss} at step {step}; lower train.learning_rate or check the data "
                    "(nothing was saved for this step)"
                )
            now = time.time()
            dt = now - self.last_time - (self.trainer.eval_seconds - self.last_eval_seconds)  # training time only
            tps = (tokens - self.last_tokens) / dt if dt > 0 else None
            self.last_time, self.last_tokens, self.last_eval_seconds = now, tokens, self.trainer.eval_seconds
            self._add(
                state,
                {
                    "step": step,
                    "epoch": logs.get("epoch", state.epoch),
                    "learning_rate": logs.get("learning_rate"),
                    "grad_norm": logs.get("grad_norm"),
                    "train_loss": loss,
                    "tokens_seen": tokens,
                    "tokens_per_second": round(tps, 2) if tps is not None else None,
                    "elapsed_seconds": self.elapsed(),
                },
            )
        for split in ("valid", "test"):
            key = f"eval_{split}_loss"
            if key in logs:
                self.pending.setdefault(step, {})[f"{split}_loss"] = logs[key]
        got = self.pending.get(step, {})
        if got and all(k in got for k in self.eval_keys):
            del self.pending[step]
            same = [r["learning_rate"] for r in self.metrics.rows if r["step"] == step and r["learning_rate"]]
            lr = same[-1] if same else None  # the lr the step was trained with, as in its train row
            self._add(
                state,
                {
                    "step": step,
                    "epoch": state.epoch or 0.0,
                    "learning_rate": lr,
                    "valid_loss": got.get("valid_loss"),
                    "test_loss": got.get("test_loss"),
                    "tokens_seen": tokens,
                    "elapsed_seconds": self.elapsed(),
                },
            )
            self.metrics.plot()

    def _add(self, state, row: dict[str, Any]) -> None:
        """Record a metrics row and print it as one line (rank 0)."""
        self.metrics.add(row)
        if state.is_world_process_zero:
            _print_line(metrics_line(self.metrics.rows[-1], state.max_steps))

    def meta(self, state) -> dict[str, Any]:
        """The meta.json of a checkpoint or final/ at `state`: step, epoch, tokens_seen, elapsed_seconds, the metric
        rows so far, the config, the codelora commit and `resume_state` (see `resume_state`); for a QLoRA run
        (model.quantization) `base_quantization` says the base was quantised during training (see
        codelora.model.sources.base_quantization_note)."""
        from codelora.model.sources import base_quantization_note

        meta = {
            "step": state.global_step,
            "epoch": state.epoch,
            "tokens_seen": self.trainer.tokens_seen,
            "elapsed_seconds": self.elapsed(),
            "metrics": self.metrics.rows,
            "config": self.cfg.to_dict(),
            "git_commit": self.commit,
            "resume_state": resume_state(self.trainer.args, state.global_step),
        }
        note = base_quantization_note(self.cfg.model.quantization)
        if note is not None:
            meta["base_quantization"] = note
        return meta

    def on_save(self, args, state, control, **kw):
        # every rank has written its part (rng_state_<rank>.pth) before rank 0 marks the checkpoint complete
        self.trainer.accelerator.wait_for_everyone()
        if not state.is_world_process_zero:
            return
        ck = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if not ck.is_dir():
            return
        follow_umask(ck)  # safetensors wrote the adapter 0600; the checkpoint's files follow the umask like the rest
        atomic_write_text(meta_file(ck), json.dumps(self.meta(state), indent=1) + "\n")
