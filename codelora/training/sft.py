"""`codelora train`: LoRA fine-tuning of a causal LM on a prepared run folder, with metrics, plots and resumable
checkpoints. `train()` is the recipe, read top to bottom: check where the run starts -> join the processes -> set up
the model -> set up the data -> add LoRA -> training arguments -> run with signal handling -> save final/. What
happens at each step (the Trainer subclass, its sampler, the metrics callback) is in codelora.training.trainer.

Run folder layout (run_dir; codelora.run.layout reads it):
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

import dataclasses
import functools
import json
import math
import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codelora.config import LoraConfig, RunConfig
from codelora.errors import TrainingError, UserError
from codelora.files import atomic_write_text, follow_umask, read_json, require_writable, sha256_file
from codelora.run.layout import (
    RunFolder,
    all_checkpoints,
    complete_checkpoints,
    finished_step,
    has_meta,
    meta_file,
    portable_config,
    save_run_config,
)
from codelora.run.layout import step_of as _step_of
from codelora.training import Method, register

__all__ = [
    "RESUME_STATE",
    "Start",
    "TrainingError",
    "add_lora",
    "build_trainer",
    "check_packing",
    "check_resume_processes",
    "check_start",
    "complete_checkpoints",
    "packing_losses",
    "resolve_resume_checkpoint",
    "resume_config_diff",
    "run_result",
    "run_with_signal_handling",
    "SignalWatch",
    "save_final",
    "schedule_steps",
    "setup_data",
    "setup_model",
    "start_processes",
    "train",
    "training_arguments",
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
        "train.eval_test",
        "train.save_steps",
        "train.report_to",
        "train.gradient_checkpointing",
        "train.packing",
        "train.sparse_dropout",  # the same dropout distribution, drawn another way
        "train.execution_eval",  # pass@1 while training: measured, never changes the updates
        "train.execution_eval_limit",
        "train.early_stopping.metric",
        "train.early_stopping.patience",
        "train.early_stopping.min_delta",
    }
)
RESUME_CHECKED_SECTIONS = ("model", "data", "lora", "train")
# What a checkpoint needs, besides its adapter, to continue exactly: AdamW's moments and the learning-rate schedule
# (the Trainer loads the scheduler only together with the optimizer). RNG states (rng_state*.pth) are restored too
# when present. LoRA keeps these small: 8 bytes (two fp32 moments) per trainable parameter, see docs/training.md.
RESUME_STATE = ("optimizer.pt", "scheduler.pt")


def train(
    cfg: RunConfig,
    run_dir: Path,
    resume: bool = False,
    resume_from: str | None = None,
    reset_optimizer: bool = False,
    evaluator: Callable[..., dict] | None = None,
) -> dict[str, Any]:
    """Fine-tune cfg.model with LoRA on cfg.data into run_dir; return the run's result.

    resume: continue from the newest complete checkpoint; resume_from (`checkpoint-N` or `N`, implies resume):
    from that one, removing the checkpoints after it and final/ (they belong to the trajectory being redone).
    Either restores adapter, optimizer, schedule, RNG and data order; reset_optimizer allows a checkpoint without
    optimizer state (fresh AdamW moments, the schedule continues). evaluator: the evaluation stage's
    `codelora.evaluation.evaluate.evaluate`, needed only for train.execution_eval (pass@1 while training); training
    does not import a later stage, its caller (the CLI) hands it in.

    Returns {run_dir, global_step, interrupted, signal, train_loss, valid_loss_start, valid_loss, test_loss,
    tokens_seen, elapsed_seconds, final} (losses: mean token cross-entropy in nats, None where not logged; final:
    the final/ folder, absent when a signal stopped the run at a saved checkpoint); on --resume of a run that
    already covers its length, {run_dir, global_step, already_finished: True} and nothing changes.
    Raises UserError (one line) for a refused config, folder or checkpoint, before the model loads where it can;
    TrainingError when the loss becomes NaN or the disk fills up.
    """
    run_dir = Path(run_dir)
    if cfg.train.execution_eval != "none" and evaluator is None:
        raise UserError(
            f"train.execution_eval={cfg.train.execution_eval} needs the evaluation stage: call train(..., "
            "evaluator=codelora.evaluation.evaluate.evaluate) (the CLI does), or set train.execution_eval=none"
        )
    cfg = portable_config(cfg, run_dir)  # a relative dataset path is stored absolute: the run works from anywhere
    start = check_start(cfg, run_dir, resume=resume, resume_from=resume_from, reset_optimizer=reset_optimizer)
    if start.finished_step is not None:  # a rerun of a script must not train one more step
        return {"run_dir": str(run_dir), "global_step": start.finished_step, "already_finished": True}
    dist, device = start_processes(cfg, run_dir, start)
    model, tokenizer = setup_model(cfg, device, main_process=dist.is_main_process)
    train_ds, evals = setup_data(cfg, run_dir, tokenizer, start, dist)
    weights_dtype = next(model.parameters()).dtype  # before add_lora: QLoRA's preparation upcasts norms to fp32
    model = add_lora(model, cfg.lora, cfg.train.gradient_checkpointing, seed=cfg.train.seed)
    if cfg.train.sparse_dropout:  # the same masks in distribution, several times cheaper on CPU
        from codelora.training.lora_dropout import use_sparse_lora_dropout

        use_sparse_lora_dropout(model)
    if cfg.train.packing:  # packs only where this probe shows the attention keeps packed examples apart
        check_packing(model, train_ds, cfg.model.attn_implementation)
    args = training_arguments(
        cfg,
        run_dir,
        device,
        weights_dtype=weights_dtype,
        n_train=len(train_ds),
        world_size=dist.num_processes,
        evaluate=bool(evals),
        eval_on_start=start.checkpoint is None,  # the base model's losses at step 0, once per run
    )
    trainer, callback = build_trainer(cfg, run_dir, model, tokenizer, args, train_ds, evals, start, dist, evaluator)
    global_step, signum = run_with_signal_handling(trainer, callback, start.checkpoint)
    result = run_result(run_dir, global_step, trainer, callback, signum)
    if not callback.stop_requested:  # stopped by a signal: --resume continues from the checkpoint just saved
        result["final"] = str(save_final(trainer, callback, tokenizer, run_dir, result, dist))
    from codelora.training import execution_eval

    execution_eval.finish(trainer, result)  # pass@1 of final/ (train.execution_eval), usually nothing to generate
    return result


@dataclass(frozen=True)
class Start:
    """Where a run starts (check_start's answer): fresh, from a complete checkpoint, or already finished."""

    checkpoint: Path | None = None  # the complete checkpoint-N to continue from; None: a fresh run
    meta: dict[str, Any] = field(default_factory=dict)  # that checkpoint's meta.json (step, tokens_seen, ...)
    reset_optimizer: bool = False  # continue from it with fresh AdamW moments (it has no optimizer state)
    finished_step: int | None = None  # --resume of a run that already covers its length: the step it ended at
    loaded: tuple | None = None  # data.load_rows's (rows, report) when the data is to be prepared (checked early)

    @property
    def step(self) -> int:
        """The optimizer step training continues after (0 for a fresh run)."""
        return int(self.meta.get("step") or 0)


def check_start(
    cfg: RunConfig, run_dir: Path, *, resume: bool, resume_from: str | None, reset_optimizer: bool
) -> Start:
    """Where the run starts, from read-only checks that every rank makes alike before any rank writes anything.

    A fresh run needs a run_dir without checkpoints or final/. resume (or resume_from, which implies it) needs a
    complete checkpoint (resolve_resume_checkpoint) whose saved config matches cfg on every key that changes
    training (all but RESUME_FREE_KEYS) and prepared data that still match cfg; a finished run that already covers
    cfg's length gives Start(finished_step=N). Then run_dir must be writable and lora.target_modules must name
    modules of cfg.model (read from its config: the weights are not loaded yet).

    Raises UserError (one line) for each refusal.
    """
    resume = resume or resume_from is not None
    if not resume and (all_checkpoints(run_dir) or RunFolder(run_dir).final_dir.exists()):
        raise UserError(f"run folder {run_dir} already exists; use --resume or another --run folder")
    start = Start()
    if resume:
        if not run_dir.exists():
            from codelora.run.layout import runs_beside

            raise UserError(f"cannot resume {run_dir}: it does not exist; {runs_beside(run_dir)}")
        done_at = finished_step(run_dir)
        if resume_from is None and done_at is not None and _reached(cfg, run_dir, done_at):
            # extending a finished run takes a larger train.max_steps / train.epochs
            return Start(finished_step=done_at)
        ck = resolve_resume_checkpoint(run_dir, resume_from, reset_optimizer)
        start = Start(checkpoint=ck, meta=_check_resume_config(cfg, run_dir, ck), reset_optimizer=reset_optimizer)
        check_resume_processes(run_dir, ck, start.meta, launch_processes())
        problem = _data_problem(cfg, run_dir)
        if problem == "unverified":
            print(f"codelora: {run_dir}/data predates data fingerprints; reusing it unverified", file=sys.stderr)
        elif problem is not None:
            raise UserError(
                f"cannot resume {run_dir}: its prepared data does not match the config ({problem}); "
                "resuming on other data would not continue the same run"
            )

    from codelora.model.sources import check_quantization, check_target_modules

    check_quantization(cfg.model.quantization)  # bitsandbytes is there for model.quantization, before any load
    require_writable(run_dir, "run folder")
    check_target_modules(cfg.model.source, cfg.lora.target_modules, cfg.model.revision)  # before the weights load
    if _data_problem(cfg, run_dir) not in (None, "unverified"):
        # a bad row stops the run in a second, before the model loads and before the run folder is made
        from codelora.data.load import load_rows

        d = cfg.data
        start = dataclasses.replace(start, loaded=load_rows(d.dataset, target=d.target, skip_bad_rows=d.skip_bad_rows))
    return start


def launch_processes() -> int:
    """The number of processes of this launch, from the environment torchrun / `accelerate launch` set (WORLD_SIZE),
    before the process group is joined; 1 for a plain `codelora train`."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def checkpoint_processes(ck: Path, meta: dict[str, Any]) -> int | None:
    """How many processes trained up to checkpoint `ck`: its meta.json's resume_state, else (a checkpoint of an
    older codelora) read from the Trainer's RNG files (rng_state.pth alone, rng_state_<rank>.pth per process under
    several); None when neither says."""
    recorded = (meta.get("resume_state") or {}).get("num_processes")
    if isinstance(recorded, int) and recorded > 0:
        return recorded
    ranks = list(ck.glob("rng_state_*.pth"))
    if ranks:
        return len(ranks)
    return 1 if (ck / "rng_state.pth").is_file() else None


def check_resume_processes(run_dir: Path, ck: Path, meta: dict[str, Any], processes: int) -> None:
    """Refuse (one UserError line) to resume checkpoint `ck` under another process count than trained it.

    The Trainer resumes by skipping as many optimizer steps' worth of batches as the checkpoint's step, counted in
    the new launch's global batch (processes x per-device batch x accumulation): under twice the processes it
    skips twice the examples the run had seen, and the rest of the epoch is silently never trained (with half, it
    trains examples twice). So a resume must use the checkpoint's process count; the message says how."""
    was = checkpoint_processes(ck, meta)
    if was is None or was == processes:
        return
    rs = meta.get("resume_state") or {}
    per = rs.get("per_device_batch_size", "?")
    acc = rs.get("gradient_accumulation_steps", "?")
    how = (
        "run `codelora train --resume` without a launcher (or `accelerate launch --num_processes 1`)"
        if was == 1
        else f"run it under `accelerate launch --num_processes {was} ...` (or torchrun --nproc_per_node {was})"
    )
    raise UserError(
        f"cannot resume {run_dir} from {ck.name} with {processes} process(es): it was trained by {was} "
        f"(per-device batch {per} x accumulation {acc} per process), and resuming skips the checkpoint's steps "
        f"counted in this launch's batches, so part of the data would be skipped or repeated; {how}"
    )


def start_processes(cfg: RunConfig, run_dir: Path, start: Start) -> tuple[Any, str]:
    """Join the processes and make the run folder: (accelerate.PartialState, torch device string).

    Alone this is a group of one; under `accelerate launch` or torchrun it joins the process group (gloo on CPU,
    nccl on GPUs) and gives each rank on several GPUs its own `cuda:N`. Once every rank has passed check_start,
    rank 0 removes what lies after the checkpoint being resumed (later checkpoints, a later final/) and creates
    run_dir.
    """
    from accelerate import PartialState

    from codelora.model.sources import pick_device

    device = pick_device(cfg.model.device)
    dist = PartialState(cpu=device == "cpu")
    dist.wait_for_everyone()  # every rank has passed the checks before rank 0 changes the folder
    if dist.is_main_process:
        if start.checkpoint is not None:
            _clear_after(run_dir, start.checkpoint)
        run_dir.mkdir(parents=True, exist_ok=True)
    if device.startswith("cuda") and dist.num_processes > 1:
        device = str(dist.device)
    return dist, device


def setup_model(cfg: RunConfig, device: str, main_process: bool = True) -> tuple[Any, Any]:
    """The base model (on `device`, in cfg.model.dtype, no KV cache) and its tokenizer, with a pad token.

    Raises UserError when the model cannot take the config: LoRA on a tied embedding, or data.max_length beyond
    the model's context (max_position_embeddings). The pad token is an existing token (the adapter stays LoRA-only);
    main_process prints a note when one had to be picked.
    """
    from codelora.model.chat import set_pad_token
    from codelora.model.sources import load_model

    m = cfg.model
    model, tokenizer = load_model(
        m.source,
        dtype=m.dtype,
        device=device,
        attn_implementation=m.attn_implementation,
        revision=m.revision,
        quantization=m.quantization,
    )
    _check_fits(cfg, model)
    note = set_pad_token(tokenizer)
    if note and main_process:
        print(f"codelora: {note}", file=sys.stderr)
    model.config.use_cache = False  # training: no KV cache (a cache also turns off packed-sequence masks)
    return model, tokenizer


def setup_data(
    cfg: RunConfig, run_dir: Path, tokenizer: Any, start: Start, dist: Any
) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """The tokenized splits: (train rows, {"valid": rows, "test": rows (with train.eval_test)} without the empty
    ones).

    Each row is {"input_ids": [int], "labels": [int] (-100 where no loss), ...} as codelora.data.prepare writes it.
    Rank 0 prepares run_dir/data (again when it no longer matches cfg: another data config, tokenizer or dataset
    file; prepared data that predates fingerprints is reused on resume) and writes config.yaml; the other ranks
    wait, then all read the same files. Raises UserError when the training split is empty.
    """
    from codelora.data.prepare import load_tokenized, prepare

    if dist.is_main_process:
        problem = _data_problem(cfg, run_dir)
        if problem is not None and not (start.checkpoint is not None and problem == "unverified"):
            if problem not in ("missing", "unverified"):
                print(f"codelora: re-preparing {run_dir}/data: {problem}", file=sys.stderr)
            prepare(cfg, run_dir, tokenizer, loaded=start.loaded)
        save_run_config(cfg, run_dir)
    dist.wait_for_everyone()
    train_ds = load_tokenized(run_dir, "train")
    evals = {s: load_tokenized(run_dir, s) for s in ("valid", "test") if s == "valid" or cfg.train.eval_test}
    if not train_ds:
        raise UserError(f"the training split of {run_dir} is empty; see data_report.json")
    evals = {k: v for k, v in evals.items() if v}
    for ds in [train_ds, *evals.values()]:
        for ex in ds:
            ex.pop("problem_key", None)
    return train_ds, evals


def schedule_steps(cfg: RunConfig, n_train: int, world_size: int = 1) -> tuple[int, int, int]:
    """(optimizer steps per epoch, total steps, warmup steps) for n_train training rows on world_size processes.

    Per epoch: ceil(ceil(n_train / (per_device_batch_size x world_size)) / gradient_accumulation_steps), at least 1
    (the Trainer's count). Total: train.max_steps when > 0, else ceil(train.epochs x per epoch). Warmup:
    ceil(train.warmup_ratio x total).
    """
    t = cfg.train
    per_epoch = max(
        1, math.ceil(math.ceil(n_train / (t.per_device_batch_size * world_size)) / t.gradient_accumulation_steps)
    )
    total = t.max_steps if t.max_steps > 0 else math.ceil(t.epochs * per_epoch)
    return per_epoch, total, math.ceil(t.warmup_ratio * total)


def training_arguments(
    cfg: RunConfig,
    run_dir: Path,
    device: str,
    weights_dtype: Any,
    n_train: int,
    world_size: int = 1,
    evaluate: bool = True,
    eval_on_start: bool = True,
) -> Any:
    """cfg.train as transformers.TrainingArguments: the one place codelora's keys map onto the Trainer's.

    device: the torch device string ("cpu" trains on CPU; on "cuda..." bf16 / fp16 mixed precision follows
    weights_dtype, the base weights' torch dtype); n_train, world_size: training rows and processes, for the
    warmup steps (schedule_steps); evaluate: valid/test splits exist, so eval every train.eval_steps, and at step 0
    too when eval_on_start (a fresh run: the base model's losses). Checkpoints go to run_dir/checkpoints every
    train.save_steps, all kept. Reporting integrations are off (TensorBoard is added as a callback by
    build_trainer).
    """
    import torch
    from transformers import TrainingArguments

    t = cfg.train
    cuda = device.startswith("cuda")
    # packing: the Trainer's batch is the whole optimizer step (per_device_batch_size x accumulation examples, the
    # same examples and order), packed into one row that CodeloraTrainer trains in pieces of at most
    # per_device_batch_size x data.max_length tokens; the loss is normalised per label token of the step either way
    step_batch = t.per_device_batch_size * t.gradient_accumulation_steps
    return TrainingArguments(
        output_dir=str(RunFolder(run_dir).checkpoints_dir),
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        per_device_train_batch_size=step_batch if t.packing else t.per_device_batch_size,
        per_device_eval_batch_size=t.per_device_batch_size,
        gradient_accumulation_steps=1 if t.packing else t.gradient_accumulation_steps,
        learning_rate=t.learning_rate,
        weight_decay=t.weight_decay,
        optim=t.optim,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=schedule_steps(cfg, n_train, world_size)[2],
        logging_strategy="steps",
        logging_steps=t.logging_steps,
        eval_strategy="steps" if evaluate else "no",
        eval_steps=t.eval_steps,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=None,
        seed=t.seed,
        data_seed=t.seed,
        bf16=cuda and weights_dtype == torch.bfloat16,
        fp16=cuda and weights_dtype == torch.float16,
        use_cpu=device == "cpu",
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        report_to=[],
        prediction_loss_only=True,
        # Step-0 eval (the base model) inside train(): a trainer.evaluate() before train() marks the model as
        # prepared by accelerate, which then never wraps it in DDP, and the ranks silently stop syncing gradients.
        eval_on_start=eval_on_start and evaluate,
        logging_nan_inf_filter=False,  # a NaN loss must reach the log (and stop the run), not be smoothed over
        remove_unused_columns=False,
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,  # LoRA: frozen base weights are not "unused"; searching costs a pass
    )


def build_trainer(
    cfg: RunConfig,
    run_dir: Path,
    model: Any,
    tokenizer: Any,
    args: Any,
    train_ds: list[dict[str, Any]],
    evals: dict[str, list[dict[str, Any]]],
    start: Start,
    dist: Any,
    evaluator: Callable[..., dict] | None = None,
) -> tuple[Any, Any]:
    """(codelora.training.trainer.CodeloraTrainer, its RunCallback) for this run, with what a resume restores.

    Training batches are packed (train.packing) or right-padded with tokenizer's pad token; eval batches are
    always padded. The metrics log keeps the rows up to the resumed step; tokens_seen, elapsed seconds and the
    schedule step continue from the checkpoint's meta.json. Only rank 0 writes the logs.
    """
    from codelora.data.format import collate, collate_packed
    from codelora.training.trainer import CodeloraTrainer, MetricsLog, RunCallback

    resumed = start.checkpoint is not None
    metrics = MetricsLog(run_dir, keep_up_to_step=start.step if resumed else -1, write=dist.is_main_process)
    callback = RunCallback(run_dir, cfg, metrics, elapsed_before=float(start.meta.get("elapsed_seconds") or 0.0))
    callback.eval_keys = tuple(f"{split}_loss" for split in evals)
    callbacks = [callback]
    if cfg.train.report_to == "tensorboard":
        # our own instance, pointed at the run folder (TrainingArguments.logging_dir is gone in transformers 5);
        # it writes on rank 0 only
        from transformers.integrations import TensorBoardCallback

        tb = TensorBoardCallback()
        tb.logging_dir = str(RunFolder(run_dir).tensorboard_dir)
        callbacks.append(tb)
    if cfg.train.execution_eval != "none" and dist.is_main_process:  # after RunCallback: meta.json is written
        from codelora.training import execution_eval

        tensorboard = callbacks[1] if len(callbacks) > 1 else None
        assert evaluator is not None  # train() refused the config without one
        ex = execution_eval.ExecutionEvalCallback(
            run_dir, cfg, metrics, callback, tokenizer, evaluator, start.step, tensorboard
        )
        callbacks.insert(1, ex)
    padded = functools.partial(collate, pad_id=tokenizer.pad_token_id)
    trainer = CodeloraTrainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=evals or None,
        data_collator=collate_packed if cfg.train.packing else padded,
        callbacks=callbacks,
    )
    # one progress bar for training, metrics as formatted lines (codelora.training.trainer.RunCallback), no eval bars
    from transformers.trainer_callback import ProgressCallback

    from codelora.training.trainer import QuietProgress

    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(QuietProgress())
    trainer.eval_collator = padded
    if cfg.train.packing:
        trainer.pack_max_tokens = cfg.train.per_device_batch_size * cfg.data.max_length
    trainer.tokens_seen = int(start.meta.get("tokens_seen") or 0)
    trainer.reset_optimizer = start.reset_optimizer and resumed
    trainer.resume_step = start.step
    callback.trainer = trainer
    return trainer, callback


def run_with_signal_handling(trainer: Any, callback: Any, checkpoint: Path | None) -> tuple[int, int | None]:
    """Train (from `checkpoint` when resuming); return (last optimizer step, the signal that stopped it or None).

    SIGTERM / SIGINT (Ctrl-C) are acknowledged at once on stderr ("stopping after step N ...") and finish the
    current step, save a checkpoint and stop cleanly; a second one stops at once (StopNow, exit status 130/143),
    leaving every complete checkpoint as it was (see SignalWatch). Installed only from the main thread, where
    Python allows it, and restored afterwards. A full disk raises TrainingError (one line; the earlier
    checkpoints are intact).
    """
    from codelora.files import DISK_FULL_ERRNOS
    from codelora.training.trainer import disk_full_error

    watch = SignalWatch(trainer, callback)
    watch.install()
    try:
        out = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    except OSError as e:
        if e.errno not in DISK_FULL_ERRNOS:
            raise
        raise disk_full_error(e, f"{e.filename or 'the logs'} at step {trainer.state.global_step}") from None
    finally:
        watch.uninstall()
    return out.global_step, watch.first


class SignalWatch:
    """SIGINT / SIGTERM during training: the first asks the run to stop after the current step, the second stops
    the process now.

    Python runs a signal handler only between bytecodes of the main thread, and a CPU training step spends most
    of its time in one backward call: a handler alone answered a Ctrl-C 40-70 s late. So the handler is empty and
    the signal number reaches a watcher thread through `signal.set_wakeup_fd`, written by the C-level handler the
    moment the signal arrives; torch releases the GIL while it computes, so the thread prints the acknowledgement
    at once and sets callback.stop_requested (RunCallback saves and stops at the end of the step). On the second
    signal it names the last complete checkpoint and ends the process with os._exit(128 + signal): nothing is
    half-written that could look whole, because every file a run keeps is written atomically and a checkpoint
    counts as complete only once its meta.json is (a folder being saved stays incomplete, and `--resume`
    removes it).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, trainer: Any, callback: Any):
        self.trainer = trainer
        self.callback = callback
        self.first: int | None = None  # the signal that stopped the run
        self.count = 0  # signals the watcher has seen
        self._old_handlers: dict[int, Any] = {}
        self._old_fd: int | None = None
        self._pipe: tuple[int, int] | None = None
        self._thread: threading.Thread | None = None

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        r, w = os.pipe()
        os.set_blocking(w, False)
        self._pipe = (r, w)
        for sig in self.SIGNALS:
            self._old_handlers[sig] = signal.signal(sig, self._handler)
        self._old_fd = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        self._thread = threading.Thread(target=self._watch, name="codelora-signals", daemon=True)
        self._thread.start()

    def uninstall(self) -> None:
        if self._pipe is None:
            return
        signal.set_wakeup_fd(self._old_fd if self._old_fd is not None else -1)
        for sig, h in self._old_handlers.items():
            signal.signal(sig, h)
        r, w = self._pipe
        self._pipe = None
        os.close(w)  # the watcher's read returns b"" and it ends
        if self._thread is not None:
            self._thread.join(timeout=5)
        os.close(r)

    def _handler(self, signum, frame) -> None:
        """The Python-level handler (main thread, between bytecodes): the stop request only, so Python's default
        KeyboardInterrupt does not unwind the Trainer mid-step; the watcher counts, prints and stops now."""
        self.callback.stop_requested = True
        if self.first is None:
            self.first = signum

    def _watch(self) -> None:
        r = self._pipe[0]
        while True:
            try:
                data = os.read(r, 64)
            except OSError:
                return
            if not data:
                return
            for signum in data:
                if signum in self.SIGNALS:
                    self.on_signal(signum)

    def on_signal(self, signum: int) -> None:
        """One SIGINT/SIGTERM: acknowledge and stop after the step (first), or stop now (second)."""
        self.count += 1
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        again = "Ctrl-C again" if signum == signal.SIGINT else f"{name} again"
        main = self.trainer.is_world_process_zero() if hasattr(self.trainer, "is_world_process_zero") else True
        if self.count == 1:
            self.callback.stop_requested = True
            if self.first is None:
                self.first = signum
            step = self.trainer.state.global_step + 1
            if main:
                _above_bar(
                    f"codelora: {name}: stopping after step {step} (it finishes, then checkpoint-{step} is saved); "
                    f"{again} to stop now"
                )
            return
        done = complete_checkpoints(self.callback.run_dir)
        if main:
            kept = f"the last complete checkpoint is {done[-1].name}" if done else "no checkpoint was complete yet"
            _above_bar(f"codelora: {name} again: stopping now; {kept}; continue with --resume")
        sys.stdout.flush()
        os._exit(128 + signum)


def _above_bar(text: str) -> None:
    """A line on stderr above the training progress bar (tqdm.write clears the bar, writes, redraws it), flushed."""
    from tqdm import tqdm

    tqdm.write(text, file=sys.stderr)
    sys.stderr.flush()


def run_result(run_dir: Path, global_step: int, trainer: Any, callback: Any, signum: int | None) -> dict[str, Any]:
    """The run's result from its metrics rows (see train() for the keys; `final` is added by train())."""
    rows = callback.metrics.rows
    train_rows = [r for r in rows if r.get("train_loss") is not None]
    eval_rows = [r for r in rows if r.get("valid_loss") is not None]
    return {
        "run_dir": str(run_dir),
        "global_step": global_step,
        "interrupted": callback.stop_requested,
        "signal": signum,
        "train_loss": train_rows[-1]["train_loss"] if train_rows else None,
        "valid_loss_start": eval_rows[0]["valid_loss"] if eval_rows and eval_rows[0]["step"] == 0 else None,
        "valid_loss": eval_rows[-1]["valid_loss"] if eval_rows else None,
        "test_loss": eval_rows[-1]["test_loss"] if eval_rows else None,
        "tokens_seen": trainer.tokens_seen,
        "elapsed_seconds": callback.elapsed(),
    }


def save_final(trainer: Any, callback: Any, tokenizer: Any, run_dir: Path, result: dict[str, Any], dist: Any) -> Path:
    """Write run_dir/final/ (adapter, tokenizer, meta.json holding `result`) and return its path.

    Written into final.tmp/ and renamed, so a final/ is always whole. Every rank calls it (under FSDP / ZeRO-3
    gathering the adapter is collective); rank 0 writes. A full disk removes final.tmp/ and raises TrainingError.
    """
    from codelora.files import DISK_FULL_ERRNOS
    from codelora.training.trainer import disk_full_error

    main = dist.is_main_process
    final, tmp = RunFolder(run_dir).final_dir, RunFolder(run_dir).final_tmp
    if main and tmp.exists():
        shutil.rmtree(tmp)
    dist.wait_for_everyone()
    try:
        trainer.save_model(str(tmp))
        if main:
            tokenizer.save_pretrained(str(tmp))
            meta = callback.meta(trainer.state)
            meta["result"] = result
            atomic_write_text(meta_file(tmp), json.dumps(meta, indent=1) + "\n")
    except OSError as e:
        if e.errno not in DISK_FULL_ERRNOS:
            raise
        shutil.rmtree(tmp, ignore_errors=True)
        raise disk_full_error(e, f"{final} (the checkpoints are complete)") from None
    if main:
        follow_umask(tmp)  # safetensors writes the adapter 0600: final/ follows the umask like every run file
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    dist.wait_for_everyone()
    return final


def _reached(cfg: RunConfig, run_dir: Path, done_at: int) -> bool:
    """Whether a run that finished at step `done_at` already covers cfg's length (max_steps, else epochs)."""
    if cfg.train.max_steps > 0:
        return cfg.train.max_steps <= done_at
    meta = json.loads(meta_file(RunFolder(run_dir).final_dir).read_text(encoding="utf-8"))
    return float(meta.get("epoch") or 0.0) >= cfg.train.epochs - 1e-6


def _data_ready(run_dir: Path) -> bool:
    run = RunFolder(run_dir)
    return run.data_report_file.is_file() and all(run.data_file(s).is_file() for s in ("train", "valid", "test"))


def _data_problem(cfg: RunConfig, run_dir: Path) -> str | None:
    """Why the prepared data in run_dir cannot be reused for cfg (None: it can). 'unverified' when it predates
    the fingerprint in data_report.json."""
    from codelora.data.load import dataset_sha256
    from codelora.data.prepare import data_fingerprint

    if not _data_ready(run_dir):
        return "missing"
    try:
        report = json.loads(RunFolder(run_dir).data_report_file.read_text(encoding="utf-8"))
    except ValueError:
        return "data_report.json is unreadable"
    if "config_sha256" not in report:
        return "unverified"
    if report["config_sha256"] != data_fingerprint(cfg):
        return "it was prepared with a different data config or model tokenizer"
    if report.get("source_sha256") and report["source_sha256"] != dataset_sha256(cfg.data.dataset):
        return f"the dataset {cfg.data.dataset} changed since it was prepared (its sha256 differs)"
    for split, digest in (report.get("files_sha256") or {}).items():
        path = RunFolder(run_dir).data_file(split)
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
    meta = read_json(meta_file(resume_from))  # a corrupt meta.json is one line naming it, not a traceback
    if not isinstance(meta, dict):
        raise UserError(f"{meta_file(resume_from)}: expected a JSON object; the checkpoint cannot be resumed")
    saved = meta.get("config")
    if saved is None and RunFolder(run_dir).config_file.is_file():
        import yaml

        saved = yaml.safe_load(RunFolder(run_dir).config_file.read_text(encoding="utf-8"))
    if saved is None:
        return meta
    diff = resume_config_diff(saved, cfg)
    if diff:
        old = {**_flatten(RunConfig().to_dict()), **_flatten(saved)}
        new = _flatten(cfg.to_dict())
        shown = ", ".join(f"{k} ({old.get(k)!r} -> {new[k]!r})" for k in diff)
        raise UserError(
            f"cannot resume {run_dir}: the config differs from {resume_from.name}'s on keys that change training: "
            f"{shown}; use the run's own config.yaml or start a new run (another --run folder)"
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
    from codelora.model.chat import tied_embedding_modules

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


def add_lora(model, lora: LoraConfig, gradient_checkpointing: bool, seed: int | None = None):
    """The recipe's LoRA adapters on `model`; with gradient checkpointing non-reentrant and with input grads,
    which LoRA needs because the frozen embeddings otherwise give the checkpointed blocks no grad to carry.
    A bitsandbytes-quantised model (model.quantization) first goes through peft's prepare_model_for_kbit_training
    (QLoRA: frozen base, norms in fp32, input grads, the same gradient checkpointing).

    seed (train.seed): every generator (python, numpy, torch) is seeded just before the adapter is created, so
    lora_A's random initialisation is the seed's (the Trainer seeds only later, when it is constructed; without this
    two runs of one config started from different lora_A draws). None leaves the generators as they are.
    """
    from peft import LoraConfig as PeftLoraConfig
    from peft import TaskType, get_peft_model

    from codelora.model.sources import is_quantized

    if seed is not None:
        from transformers import set_seed

        set_seed(seed)

    if is_quantized(model):
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    elif gradient_checkpointing:
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
    newer = [p for p in all_checkpoints(run_dir) if _step_of(p) > _step_of(ck)]
    final = RunFolder(run_dir).final_dir
    if final.exists():
        try:
            final_step = int(json.loads(meta_file(final).read_text(encoding="utf-8"))["step"])
        except (OSError, ValueError, KeyError, TypeError):
            final_step = None  # unreadable: not a finished final, redo it
        if final_step is None or final_step > _step_of(ck):
            newer.append(final)
    redone = [p.name for p in newer if has_meta(p)]
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
        ck = RunFolder(run_dir).checkpoint_dir(name)
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


register(Method("sft", "supervised fine-tuning (LoRA, completion-only loss)", train))
