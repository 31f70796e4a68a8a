"""LoRA fine-tuning of a causal LM on a prepared run folder, with metrics, plots and resumable checkpoints.

Run folder layout (run_dir):
  config.yaml, split.json, data_report.json, data/{train,valid,test}.jsonl  (prepare)
  logs/metrics.jsonl, logs/metrics.csv        one row per logging step and per eval step
  plots/loss.png, plots/lr.png                rewritten at every eval
  checkpoints/checkpoint-<step>/              every save_steps, all kept; meta.json (written last) marks
                                              a checkpoint complete; each keeps its resume state (optimizer.pt,
                                              scheduler.pt, rng_state*.pth), so any of them can be resumed
  final/                                      the final adapter + meta.json
  logs/tensorboard/                           TensorBoard events when train.report_to is tensorboard

Multi-process (`accelerate launch -m codelora train ...`): every rank trains; only rank 0 prepares data and writes
logs, checkpoint metadata and final/ (the Trainer itself saves weights on rank 0 and per-rank RNG states).
"""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from codelora.config import LoraConfig, RunConfig
from codelora.errors import UserError
from codelora.files import atomic_write_text, read_json, require_writable, sha256_file
from codelora.runs import all_checkpoints as _all_checkpoints
from codelora.runs import complete_checkpoints, finished_step, portable_config, save_run_config
from codelora.runs import git_commit as _git_commit
from codelora.runs import step_of as _step_of

__all__ = [
    "RESUME_STATE",
    "TrainingError",
    "check_packing",
    "complete_checkpoints",
    "resolve_resume_checkpoint",
    "resume_config_diff",
    "train",
]

# Keys that may differ between a run and its --resume: they change neither the data nor the updates the model has
# had up to the checkpoint. train.max_steps / train.epochs may extend (or shorten) a run; the learning-rate schedule
# is then recomputed for the new total, so the rest of the run follows the new schedule (a note says so).
# train.packing may be switched because training only packs where check_packing proved it loss-equivalent.
# Every other key of model / data / lora / train changes the trajectory and must match.
RESUME_FREE_KEYS = frozenset(
    {
        "model.device",
        "train.max_steps",
        "train.epochs",
        "train.logging_steps",
        "train.eval_steps",
        "train.save_steps",
        "train.report_to",
        "train.gradient_checkpointing",
        "train.packing",
    }
)
RESUME_CHECKED_SECTIONS = ("model", "data", "lora", "train")
# What a checkpoint needs, besides its adapter, to continue exactly: AdamW's moments and the learning-rate schedule
# (the Trainer loads the scheduler only together with the optimizer). RNG states (rng_state*.pth) are restored too
# when present. LoRA keeps these small: 8 bytes (two fp32 moments) per trainable parameter, see the README.
RESUME_STATE = ("optimizer.pt", "scheduler.pt")
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)

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


def _is_nan(x: Any) -> bool:
    return isinstance(x, float) and (math.isnan(x) or math.isinf(x))


class _MetricsLog:
    """metrics.jsonl + metrics.csv (rewritten from the rows) and the loss/lr plots."""

    def __init__(self, run_dir: Path, keep_up_to_step: int | None, write: bool = True):
        self.run_dir = run_dir
        self.write = write  # False on ranks other than 0: rows kept in memory only
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
        if not self.write:
            return
        atomic_write_text(self.jsonl, "".join(json.dumps(r) + "\n" for r in self.rows))
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=METRIC_KEYS)
        w.writeheader()
        for r in self.rows:
            w.writerow({k: "" if r.get(k) is None else r[k] for k in METRIC_KEYS})
        atomic_write_text(self.csv, buf.getvalue())

    def plot(self) -> None:
        if not self.write:
            return
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
        tokens_seen = 0  # real (non-pad) tokens over all processes
        eval_seconds = 0.0  # time spent evaluating, left out of tokens_per_second
        eval_collator = None  # eval batches stay padded: packing changes how the Trainer weights batch losses
        reset_optimizer = False  # resume with a fresh optimizer (the checkpoint has no optimizer.pt)
        resume_step = 0

        def _load_optimizer_and_scheduler(self, checkpoint):
            if checkpoint is None or not self.reset_optimizer:
                return super()._load_optimizer_and_scheduler(checkpoint)
            import warnings

            import torch

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
            start = time.time()
            train_collator = self.data_collator
            if self.eval_collator is not None:
                self.data_collator = self.eval_collator
            try:
                return super().evaluate(*a, **kw)
            finally:
                self.data_collator = train_collator
                self.eval_seconds += time.time() - start

        def training_step(self, model, inputs, num_items_in_batch=None):
            import torch

            mask = inputs.get("attention_mask")
            n = int(mask.sum().item()) if mask is not None else int(inputs["input_ids"].numel())  # packed: no pad
            if self.args.world_size > 1:
                n = int(self.accelerator.reduce(torch.tensor(n, device=self.accelerator.device), "sum").item())
            self.tokens_seen += n
            return super().training_step(model, inputs, num_items_in_batch)

        def _save_checkpoint(self, model, trial, *a, **kw):
            ck = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
            try:
                return super()._save_checkpoint(model, trial, *a, **kw)
            except OSError as e:
                if e.errno not in _DISK_FULL:
                    raise
                # meta.json was not written, so the folder already reads as incomplete; remove it all the same
                shutil.rmtree(ck, ignore_errors=True)
                done = complete_checkpoints(Path(self.args.output_dir).parent)
                newest = f"newest complete checkpoint {done[-1].name} is intact" if done else "no earlier checkpoint"
                raise TrainingError(
                    f"disk full ({os.strerror(e.errno)}) while saving {ck.name} to {ck.parent}; "
                    f"removed the partial folder, {newest}; free space and run again with --resume"
                ) from None

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
            self.last_eval_seconds = 0.0
            self.pending: dict[int, dict[str, Any]] = {}
            self.stop_requested = False
            self.commit = _git_commit()

        def elapsed(self) -> float:
            return round(self.elapsed_before + time.time() - self.start, 3)

        def on_train_begin(self, args, state, control, **kw):
            self.start = self.last_time = time.time()
            self.last_tokens = self.trainer.tokens_seen
            self.last_eval_seconds = self.trainer.eval_seconds

        def on_step_end(self, args, state, control, **kw):
            stop = self.stop_requested
            if args.world_size > 1:  # a signal reaches the ranks at different steps: stop all at the same one
                import torch

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
            # every rank has written its part (rng_state_<rank>.pth) before rank 0 marks the checkpoint complete
            self.trainer.accelerator.wait_for_everyone()
            if not state.is_world_process_zero:
                return
            ck = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if not ck.is_dir():
                return
            atomic_write_text(ck / "meta.json", json.dumps(self.meta(state), indent=1) + "\n")

    return CodeloraTrainer, RunCallback


def _reached(cfg: RunConfig, run_dir: Path, done_at: int) -> bool:
    """Whether a run that finished at step `done_at` already covers cfg's length (max_steps, else epochs)."""
    if cfg.train.max_steps > 0:
        return cfg.train.max_steps <= done_at
    meta = json.loads((run_dir / "final" / "meta.json").read_text(encoding="utf-8"))
    return float(meta.get("epoch") or 0.0) >= cfg.train.epochs - 1e-6


def _data_ready(run_dir: Path) -> bool:
    return (run_dir / "data_report.json").is_file() and all(
        (run_dir / "data" / f"{s}.jsonl").is_file() for s in ("train", "valid", "test")
    )


def _data_problem(cfg: RunConfig, run_dir: Path) -> str | None:
    """Why the prepared data in run_dir cannot be reused for cfg (None: it can). 'unverified' when it predates
    the fingerprint in data_report.json."""
    from codelora.prepare import data_fingerprint
    from codelora.runs import dataset_sha256

    if not _data_ready(run_dir):
        return "missing"
    try:
        report = json.loads((run_dir / "data_report.json").read_text(encoding="utf-8"))
    except ValueError:
        return "data_report.json is unreadable"
    if "config_sha256" not in report:
        return "unverified"
    if report["config_sha256"] != data_fingerprint(cfg):
        return "it was prepared with a different data config or model tokenizer"
    if report.get("source_sha256") and report["source_sha256"] != dataset_sha256(cfg.data.dataset):
        return f"the dataset {cfg.data.dataset} changed since it was prepared (its sha256 differs)"
    for split, digest in (report.get("files_sha256") or {}).items():
        path = run_dir / "data" / f"{split}.jsonl"
        if not path.is_file() or sha256_file(path) != digest:
            return f"data/{split}.jsonl changed after it was prepared"
    return None


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def resume_config_diff(saved: dict[str, Any], cfg: RunConfig) -> list[str]:
    """Keys of model/data/lora/train (minus RESUME_FREE_KEYS) whose value in cfg differs from the saved config.

    A key the saved config lacks (written by an older codelora) counts as its default."""
    defaults = _flatten(RunConfig().to_dict())
    old = {**defaults, **_flatten(saved)}
    new = _flatten(cfg.to_dict())
    return [
        k
        for k in new
        if k.split(".", 1)[0] in RESUME_CHECKED_SECTIONS and k not in RESUME_FREE_KEYS and old.get(k) != new[k]
    ]


def _check_resume_config(cfg: RunConfig, run_dir: Path, resume_from: Path) -> dict[str, Any]:
    """Refuse a --resume whose config would change the trajectory; return the checkpoint's meta."""
    meta = read_json(resume_from / "meta.json")  # a corrupt meta.json is one line naming it, not a traceback
    if not isinstance(meta, dict):
        raise UserError(f"{resume_from / 'meta.json'}: expected a JSON object; the checkpoint cannot be resumed")
    saved = meta.get("config")
    if saved is None and (run_dir / "config.yaml").is_file():
        import yaml

        saved = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    if saved is None:
        return meta
    diff = resume_config_diff(saved, cfg)
    if diff:
        old = {**_flatten(RunConfig().to_dict()), **_flatten(saved)}
        new = _flatten(cfg.to_dict())
        shown = ", ".join(f"{k} ({old.get(k)!r} -> {new[k]!r})" for k in diff)
        raise UserError(
            f"cannot resume {run_dir}: the config differs from {resume_from.name}'s on keys that change training: "
            f"{shown}; use the run's own config.yaml or start a new run (--run-name)"
        )
    flat_saved, flat_new = _flatten(saved), _flatten(cfg.to_dict())
    changed = [k for k in ("train.max_steps", "train.epochs") if k in flat_saved and flat_saved[k] != flat_new[k]]
    if changed:
        print(
            f"codelora: resuming with changed {', '.join(changed)}: the learning-rate schedule is recomputed for the "
            "new length",
            file=sys.stderr,
        )
    return meta


def _check_fits(cfg: RunConfig, model: Any) -> None:
    """Refuse a config the model cannot take before any data is prepared or step trained."""
    from codelora.chat import tied_embedding_modules

    tied = tied_embedding_modules(model)
    wanted = [t for t in cfg.lora.target_modules if t.rsplit(".", 1)[-1] in tied]
    if wanted:
        raise UserError(
            f"lora.target_modules: {', '.join(wanted)} is one of {cfg.model.source}'s tied embeddings "
            f"({' = '.join(tied)}, tie_word_embeddings=true): an adapter there changes both the input and the "
            "output embedding, and merging it cannot reproduce base + adapter; remove it from lora.target_modules "
            f"(e.g. {','.join(m for m in cfg.lora.target_modules if m not in wanted) or 'q_proj,v_proj'})"
        )
    ctx = getattr(model.config, "max_position_embeddings", None)
    if isinstance(ctx, int) and cfg.data.max_length > ctx:
        raise UserError(
            f"data.max_length={cfg.data.max_length} is longer than the context of {cfg.model.source} "
            f"(max_position_embeddings={ctx}); set data.max_length to at most {ctx}"
        )


def _packing_tolerance(dtype: Any) -> float:
    import torch

    # Absolute, on a per-example mean loss. Measured: kept apart, packed and alone agree to ~1e-6 in fp32 and ~1e-2
    # in bf16 (SmolLM2-135M); examples that see each other move the loss by ~1.4 on SmolLM2-135M and still by
    # ~8e-3 on the near-uniform attention of a tiny random Llama, which the fp32 tolerance catches.
    return 1e-3 if dtype == torch.float32 else 5e-2


def packing_losses(model: Any, examples: list[dict[str, list[int]]]) -> tuple[list[float], list[float]]:
    """Per-example mean loss of `examples`, each run alone vs all packed into one row by collate_packed."""
    import torch

    from codelora.data.format import collate_packed

    device = next(model.parameters()).device

    def per_token(logits, labels):  # loss of token t+1 given the prefix up to t, -100 ignored
        lp = torch.log_softmax(logits[0, :-1].float(), dim=-1)
        tgt = labels[0, 1:]
        keep = tgt != -100
        return -lp[keep].gather(-1, tgt[keep].unsqueeze(-1)).squeeze(-1), keep

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            alone = []
            for ex in examples:
                ids = torch.tensor([ex["input_ids"]], device=device)
                labels = torch.tensor([ex["labels"]], device=device)
                nll, _ = per_token(model(input_ids=ids).logits, labels)
                alone.append(float(nll.mean()))
            packed = {k: v.to(device) for k, v in collate_packed(examples).items()}
            logits = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"]).logits
            labels = packed["labels"]
            lp = torch.log_softmax(logits[0, :-1].float(), dim=-1)
            tgt = labels[0, 1:]
            together, start = [], 0
            for ex in examples:  # example i occupies [start, start + n); its predictions sit at [start, start+n-1)
                n = len(ex["input_ids"])
                t = tgt[start : start + n - 1]
                keep = t != -100
                nll = -lp[start : start + n - 1][keep].gather(-1, t[keep].unsqueeze(-1)).squeeze(-1)
                together.append(float(nll.mean()))
                start += n
    finally:
        model.train(was_training)
    return alone, together


def check_packing(model: Any, train_rows: list[dict[str, Any]], attn_implementation: str, n: int = 3) -> float:
    """Start-of-training probe: pack a few training examples into one row and compare each example's loss with
    the loss it gets alone. Equal (within the dtype's tolerance) <=> the attention kernel keeps packed examples
    apart with position_ids; otherwise raise UserError naming the attention implementation.

    A probe on the real model, rather than a support table, because whether the boundary holds depends on the
    transformers and torch versions (block-diagonal masks from position_ids need torch >= 2.6 and no 2D mask) and
    on the attention kernel; it costs two forward passes of ~200 tokens. Returns the largest difference seen.
    """
    import torch

    rows = [r for r in train_rows if any(lab != -100 for lab in r["labels"][1:64])][:n] or train_rows[:n]
    # examples of different lengths, labels on every token (the probe tests attention, not prompt masking)
    examples = []
    for i, r in enumerate(rows):
        ids = list(r["input_ids"][: 64 - 8 * i])
        examples.append({"input_ids": ids, "labels": [-100] + ids[1:]})
    if len(examples) < 2:
        return 0.0
    alone, together = packing_losses(model, examples)
    diff = max(abs(a - b) for a, b in zip(alone, together, strict=True))
    tol = _packing_tolerance(next(model.parameters()).dtype)
    if not diff <= tol or not torch.isfinite(torch.tensor(together)).all():
        raise UserError(
            f"train.packing: attention implementation '{attn_implementation}' does not keep packed examples apart "
            f"here (per-example loss differs by {diff:.2g} packed vs unpacked, tolerance {tol:.2g}); "
            "set train.packing=false or use model.attn_implementation=sdpa with torch>=2.6 / flash_attention_2"
        )
    return diff


def _disk_full(e: OSError, what: str) -> TrainingError:
    return TrainingError(
        f"disk full ({os.strerror(e.errno)}) while writing {what}; earlier checkpoints are intact; "
        "free space and run again with --resume"
    )


def add_lora(model, lora: LoraConfig, gradient_checkpointing: bool):
    """The recipe's LoRA adapters on `model`; with gradient checkpointing non-reentrant and with input grads,
    which LoRA needs because the frozen embeddings otherwise give the checkpointed blocks no grad to carry."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import TaskType, get_peft_model

    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    return get_peft_model(
        model,
        PeftLoraConfig(
            task_type=TaskType.CAUSAL_LM,
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            bias=lora.bias,
            target_modules=list(lora.target_modules),
        ),
    )


def _clear_after(run_dir: Path, ck: Path) -> None:
    """Remove what lies after checkpoint `ck`: incomplete or newer checkpoints (the Trainer would trip on them) and
    a final/ of a later step; the resumed run redoes them. The complete ones removed are named on stderr."""
    newer = [p for p in _all_checkpoints(run_dir) if _step_of(p) > _step_of(ck)]
    final = run_dir / "final"
    if final.exists():
        try:
            final_step = int(json.loads((final / "meta.json").read_text(encoding="utf-8"))["step"])
        except (OSError, ValueError, KeyError, TypeError):
            final_step = None  # unreadable: not a finished final, redo it
        if final_step is None or final_step > _step_of(ck):
            newer.append(final)
    redone = [p.name for p in newer if (p / "meta.json").is_file()]
    if redone:
        print(f"codelora: resuming from {ck.name}: removing {', '.join(redone)} (redone from there)", file=sys.stderr)
    for p in newer:
        shutil.rmtree(p)


def _has_state(ck: Path, name: str) -> bool:
    """`name` is in checkpoint `ck`; the optimizer state also as FSDP's `optimizer*/` or DeepSpeed's `global_step*/`
    folder (the forms the Trainer itself resumes from)."""
    if (ck / name).is_file():
        return True
    if name != "optimizer.pt":
        return False
    return (ck / "optimizer.bin").is_file() or any(
        p.is_dir() and ("optimizer" in p.name or p.name.startswith("global_step")) for p in ck.iterdir()
    )


def resolve_resume_checkpoint(run_dir: Path, which: str | None, reset_optimizer: bool = False) -> Path:
    """The complete checkpoint to resume from: `which` (`checkpoint-N` or `N`), or the newest when None.

    UserError (one line) when it does not exist, is incomplete, or lacks its optimizer/scheduler state (then only
    `reset_optimizer` lets it continue, from its weights with a fresh optimizer)."""
    run_dir = Path(run_dir)
    complete = complete_checkpoints(run_dir)
    names = ", ".join(p.name for p in complete) or "none"
    if which is None:
        if not complete:
            raise UserError(f"cannot resume {run_dir}: it has no complete checkpoint (checkpoint-*/meta.json)")
        ck = complete[-1]
    else:
        name = which if str(which).startswith("checkpoint-") else f"checkpoint-{which}"
        ck = run_dir / "checkpoints" / name
        if _step_of(ck) < 0 or ck not in complete:
            state = "is incomplete (no meta.json)" if (ck / "adapter_config.json").is_file() else "does not exist"
            raise UserError(f"--resume-from {which}: {ck} {state}; complete checkpoints: {names}")
    missing = [f for f in RESUME_STATE if not _has_state(ck, f)]
    if missing and not reset_optimizer:
        raise UserError(
            f"cannot resume from {ck}: it has no {' / '.join(missing)} (older codelora kept the optimizer state only "
            "in the newest checkpoint), so AdamW's moments would restart from zero; pass --reset-optimizer to "
            "continue from its weights with a fresh optimizer (the learning-rate schedule continues)"
        )
    return ck


def train(
    cfg: RunConfig,
    run_dir: Path,
    resume: bool = False,
    resume_from: str | None = None,
    reset_optimizer: bool = False,
) -> dict[str, Any]:
    """Fine-tune cfg.model with LoRA on cfg.data into run_dir; return the final metrics.

    resume: continue from the newest complete checkpoint; resume_from (`checkpoint-N` or `N`, implies resume):
    from that one, removing the checkpoints after it and final/ (they belong to the trajectory being redone).
    Either restores adapter, optimizer, schedule, RNG and data order; reset_optimizer allows a checkpoint without
    optimizer state (fresh AdamW moments, the schedule continues)."""
    run_dir = Path(run_dir)
    resume = resume or resume_from is not None
    cfg = portable_config(cfg, run_dir)  # a relative dataset path is stored absolute: the run works from anywhere
    # Read-only checks first, on every rank alike, before any rank writes anything.
    ckpts = _all_checkpoints(run_dir)
    if not resume and (ckpts or (run_dir / "final").exists()):
        raise UserError(f"run folder {run_dir} already exists; use --resume or another --run-name")
    resume_ck: Path | None = None
    resume_meta: dict[str, Any] = {}
    if resume:
        done_at = finished_step(run_dir)
        if resume_from is None and done_at is not None and _reached(cfg, run_dir, done_at):
            # --resume on a finished run changes nothing (a rerun of a script must not train one more step);
            # extending it takes a larger train.max_steps / train.epochs
            return {"run_dir": str(run_dir), "global_step": done_at, "already_finished": True}
        resume_ck = resolve_resume_checkpoint(run_dir, resume_from, reset_optimizer)
        resume_meta = _check_resume_config(cfg, run_dir, resume_ck)
        problem = _data_problem(cfg, run_dir)
        if problem == "unverified":
            print(f"codelora: {run_dir}/data predates data fingerprints; reusing it unverified", file=sys.stderr)
        elif problem is not None:
            raise UserError(
                f"cannot resume {run_dir}: its prepared data does not match the config ({problem}); "
                "resuming on other data would not continue the same run"
            )

    from codelora.models import check_target_modules

    require_writable(run_dir, "run folder")
    check_target_modules(cfg.model.source, cfg.lora.target_modules, cfg.model.revision)  # before the weights load

    import torch
    from accelerate import PartialState
    from transformers import TrainingArguments

    from codelora.chat import set_pad_token
    from codelora.data.format import collate, collate_packed
    from codelora.models import load_model, pick_device
    from codelora.prepare import load_tokenized, prepare

    m, t = cfg.model, cfg.train
    device = pick_device(m.device)
    # Under `accelerate launch` this joins the process group (gloo on CPU, nccl on GPUs); alone it is a no-op.
    dist = PartialState(cpu=device == "cpu")
    main = dist.is_main_process
    dist.wait_for_everyone()  # every rank has passed the checks above before rank 0 changes the folder
    if main:
        if resume_ck is not None:
            _clear_after(run_dir, resume_ck)
        run_dir.mkdir(parents=True, exist_ok=True)

    if device.startswith("cuda") and dist.num_processes > 1:
        device = str(dist.device)
    model, tokenizer = load_model(
        m.source, dtype=m.dtype, device=device, attn_implementation=m.attn_implementation, revision=m.revision
    )
    _check_fits(cfg, model)
    note = set_pad_token(tokenizer)  # never adds tokens: the adapter stays LoRA-only
    if note and main:
        print(f"codelora: {note}", file=sys.stderr)
    model.config.use_cache = False  # training: no KV cache (a cache also turns off packed-sequence masks)

    if main:
        problem = _data_problem(cfg, run_dir)
        if problem is not None and not (resume_ck is not None and problem == "unverified"):
            if problem not in ("missing", "unverified"):
                print(f"codelora: re-preparing {run_dir}/data: {problem}", file=sys.stderr)
            prepare(cfg, run_dir, tokenizer)
        save_run_config(cfg, run_dir)
    dist.wait_for_everyone()
    train_ds = load_tokenized(run_dir, "train")
    evals = {s: load_tokenized(run_dir, s) for s in ("valid", "test")}
    if not train_ds:
        raise UserError(f"the training split of {run_dir} is empty; see data_report.json")
    evals = {k: v for k, v in evals.items() if v}
    for ds in [train_ds, *evals.values()]:
        for ex in ds:
            ex.pop("problem_key", None)

    model = add_lora(model, cfg.lora, t.gradient_checkpointing)
    if t.packing:
        check_packing(model, train_ds, m.attn_implementation)

    world = dist.num_processes
    steps_per_epoch = max(
        1, math.ceil(math.ceil(len(train_ds) / (t.per_device_batch_size * world)) / t.gradient_accumulation_steps)
    )
    total_steps = t.max_steps if t.max_steps > 0 else math.ceil(t.epochs * steps_per_epoch)
    warmup_steps = math.ceil(t.warmup_ratio * total_steps)
    bf16 = device.startswith("cuda") and next(model.parameters()).dtype == torch.bfloat16
    fp16 = device.startswith("cuda") and next(model.parameters()).dtype == torch.float16
    extra_callbacks = []
    if t.report_to == "tensorboard":
        # our own instance, pointed at the run folder (TrainingArguments.logging_dir is gone in transformers 5);
        # it writes on rank 0 only
        from transformers.integrations import TensorBoardCallback

        tb = TensorBoardCallback()
        tb.logging_dir = str(run_dir / "logs" / "tensorboard")
        extra_callbacks.append(tb)
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
        report_to=[],  # TensorBoard, when asked for, is added below as a callback
        prediction_loss_only=True,
        # Step-0 eval (the base model) inside train(): a trainer.evaluate() before train() marks the model as
        # prepared by accelerate, which then never wraps it in DDP, and the ranks silently stop syncing gradients.
        eval_on_start=resume_ck is None and bool(evals),
        logging_nan_inf_filter=False,  # a NaN loss must reach the log (and stop the run), not be smoothed over
        remove_unused_columns=False,
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,  # LoRA: frozen base weights are not "unused"; searching costs a pass
    )

    keep_up_to = None
    elapsed_before = 0.0
    tokens_before = 0
    if resume_ck is not None:
        keep_up_to = resume_meta["step"]
        elapsed_before = float(resume_meta.get("elapsed_seconds") or 0.0)
        tokens_before = int(resume_meta.get("tokens_seen") or 0)
    metrics = _MetricsLog(run_dir, keep_up_to_step=keep_up_to if resume_ck is not None else -1, write=main)

    CodeloraTrainer, RunCallback = _make_classes()
    cb = RunCallback(run_dir, cfg, metrics, elapsed_before)
    pad_id = tokenizer.pad_token_id

    def padded(batch):
        return collate(batch, pad_id)

    trainer = CodeloraTrainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=evals or None,
        data_collator=collate_packed if t.packing else padded,
        callbacks=[cb, *extra_callbacks],
    )
    trainer.eval_collator = padded
    trainer.tokens_seen = tokens_before
    trainer.reset_optimizer = reset_optimizer and resume_ck is not None
    trainer.resume_step = int(resume_meta.get("step") or 0)
    cb.trainer = trainer

    # SIGTERM / Ctrl-C: finish the current step, save a checkpoint, stop cleanly.
    old_handlers = {}

    received: list[int] = []

    def _on_signal(signum, frame):
        received.append(signum)
        cb.stop_requested = True

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            old_handlers[sig] = signal.signal(sig, _on_signal)
    try:
        out = trainer.train(resume_from_checkpoint=str(resume_ck) if resume_ck else None)
    except OSError as e:
        if e.errno not in _DISK_FULL:
            raise
        raise _disk_full(e, f"{e.filename or 'the logs'} at step {trainer.state.global_step}") from None
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
        "signal": received[0] if received else None,
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
    if main and tmp.exists():
        shutil.rmtree(tmp)
    dist.wait_for_everyone()
    try:
        # every rank calls save_model: under FSDP / ZeRO-3 gathering the adapter is collective; rank 0 writes
        trainer.save_model(str(tmp))
        if main:
            tokenizer.save_pretrained(str(tmp))
            meta = cb.meta(trainer.state)
            meta["result"] = result
            atomic_write_text(tmp / "meta.json", json.dumps(meta, indent=1) + "\n")
    except OSError as e:
        if e.errno not in _DISK_FULL:
            raise
        shutil.rmtree(tmp, ignore_errors=True)
        raise _disk_full(e, f"{final} (the checkpoints are complete)") from None
    if main:
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    dist.wait_for_everyone()
    result["final"] = str(final)
    return result
