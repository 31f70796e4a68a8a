"""pass@1 while training (`train.execution_eval`): every saved checkpoint graded by running its code.

At each checkpoint save (and for the base model at the start of a fresh run) the checkpoint is evaluated through the
evaluation library exactly as `codelora evaluate --run RUN --models checkpoint-N --backend hf` would: the same
eval/<benchmark>/checkpoint-N/ folder, generation store, provenance and summary.json, so `codelora compare` later
finds every result current and generates nothing. The evaluation is split in two calls of
`codelora.evaluation.evaluate.evaluate`:

1. generation (`grade=False`), on the training thread between two optimizer steps, with the *live* training model
   (`LiveGenerator`: the adapter weights exactly as just saved, no second copy of the base model in memory; the base
   model is the same model with the adapter switched off). Training waits for it; the seconds are logged.
2. grading, in one background thread: the answers are all in the store, so this call only extracts and runs them in
   the sandbox (subprocesses: the CPU cores work while training continues). Its result is logged when ready, tied to
   the checkpoint and the weights it came from (the summary's provenance), as an `eval_pass@1` row of
   logs/metrics.jsonl at the checkpoint's step, a TensorBoard scalar and a point on plots/loss.png.

Early stopping (`train.early_stopping`) reads those results at each save: after `patience` evaluations in a row
without an improvement of more than `min_delta`, training stops at that save (so the decision, which can lag by one
save interval while grading runs in the background, does not depend on timing). The best model by the metric is
written to RUN/provisional_best.json; selection.json stays the full comparison's (`codelora compare` confirms or
replaces the choice, the report says which). No checkpoint is ever deleted.

Interrupts: a signal during a generation stops it after the current batch (the answers so far stay in the store);
that checkpoint and any saved while stopping stay pending and are evaluated when the run resumes (from disk, before
training continues), like any checkpoint without an `eval_pass@1` row. Grading already running is waited for.

Several processes (`accelerate launch`): not evaluated during training (a note says so); run `codelora compare`.
"""

from __future__ import annotations

import contextlib
import queue
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from codelora.commands import EvalOptions
from codelora.config import RunConfig
from codelora.errors import UserError
from codelora.files import read_json
from codelora.generation.backends import Backend
from codelora.run import layout as runs

__all__ = [
    "PROVISIONAL_BEST",
    "ExecutionEvalCallback",
    "GenerationInterrupted",
    "LiveGenerator",
    "finish",
    "read_provisional_best",
]

PROVISIONAL_BEST = runs.PROVISIONAL_BEST
read_provisional_best = runs.read_provisional_best


class GenerationInterrupted(Exception):
    """A stop was requested (SIGINT/SIGTERM) while the training model generated; the answers so far are stored."""


class LiveGenerator(Backend):
    """A generation backend (codelora.generation.backends.Backend, not registered: only training makes one) that
    generates with the model being trained, between optimizer steps.

    model: the PEFT model of the Trainer (its adapter is the checkpoint just saved; for the base model, spec.adapter
    None, the adapter is disabled while generating). tokenizer: the training tokenizer (pad token set).
    batch_size: prompts per batch. should_stop(): True once a signal asked training to stop; checked after every
    batch. Its answers are keyed like the hf backend's (fingerprint None): the same weights through transformers.
    Dropout is off while generating (eval mode); train mode and the RNG states are restored afterwards, so the
    training trajectory does not depend on whether checkpoints are evaluated.
    """

    name = "hf"

    def __init__(self, model: Any, tokenizer: Any, batch_size: int, should_stop=lambda: False):
        self.model, self.tokenizer, self.batch_size, self.should_stop = model, tokenizer, batch_size, should_stop

    @classmethod
    def create(cls, cfg, opts, adapters, source):
        raise TypeError("LiveGenerator is made by the training loop around its own model, not from options")

    def generate(self, spec, work, prompts, sampling, seeds, stops, on_batch):
        import torch

        from codelora.generation import generate as batched  # looked up here: tests replace generate_batch

        def saved(done):
            on_batch(done)
            if self.should_stop():
                raise GenerationInterrupted(f"{spec.name}: generation stopped by a signal (answers so far kept)")

        model = self.model
        was_training = model.training
        cpu_rng = torch.random.get_rng_state()
        cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        off = model.disable_adapter() if spec.adapter is None and hasattr(model, "disable_adapter") else None
        model.eval()
        try:
            with off if off is not None else contextlib.nullcontext():
                return batched.generate_batch(model, self.tokenizer, prompts, sampling, seeds, self.batch_size, saved)
        finally:
            model.train(was_training)
            torch.random.set_rng_state(cpu_rng)
            if cuda_rng is not None:
                torch.cuda.set_rng_state_all(cuda_rng)

    def close(self) -> None:
        """Nothing to free: the model belongs to the Trainer."""

    def unload(self) -> None:
        """Nothing to free: the model belongs to the Trainer."""


def _metric_of(summary: dict, metric: str) -> float:
    return float(summary.get(metric) or 0.0)


class ExecutionEvalCallback(TrainerCallback):
    """Runs `train.execution_eval` at each checkpoint save (see the module docstring).

    run_dir, cfg: the run; metrics: the run's codelora.training.trainer.MetricsLog (rows are added on the training
    thread only); run_callback: the RunCallback (its stop_requested and trainer); tokenizer: the training tokenizer;
    start_step: the step training continues after (0: a fresh run); tensorboard: the TensorBoardCallback or None.
    """

    def __init__(
        self,
        run_dir: Path,
        cfg: RunConfig,
        metrics: Any,
        run_callback: Any,
        tokenizer: Any,
        evaluator: Callable[..., dict],
        start_step: int = 0,
        tensorboard: Any = None,
    ):
        t = cfg.train
        # codelora.evaluation.evaluate.evaluate, handed in by the caller (the CLI): training is an earlier stage
        # than evaluation and does not import it (tests/test_layout.py)
        self.evaluator = evaluator
        self.run_dir, self.cfg, self.metrics, self.run_cb = Path(run_dir), cfg, metrics, run_callback
        self.tokenizer, self.start_step, self.tensorboard = tokenizer, start_step, tensorboard
        self.benchmark = t.execution_eval
        self.enabled = t.execution_eval != "none"
        # the run's eval config decides sampling; backend hf: the same keys as the live model's answers
        self.opts = EvalOptions(limit=t.execution_eval_limit, backend="hf")
        self.es = t.early_stopping
        self.pool: ThreadPoolExecutor | None = None
        self.futures: list[tuple[str, int, float | None, float, Future]] = []
        self.ready: queue.Queue = queue.Queue()
        self.evaluations: list[dict] = [
            {"model": r["eval_model"], "step": r["step"], "value": r.get("eval_" + self.es.metric)}
            for r in metrics.rows
            if r.get("eval_benchmark") == self.benchmark and r.get("eval_model")
        ]
        self.stopped_early: int | None = None
        self.generated: dict[str, int] = {}  # answers generated for a model (the rest were in the store)

    # ------------------------------------------------------------------------------------------- the two phases

    def _disable(self, why: str) -> None:
        self.enabled = False
        print(f"codelora: train.execution_eval={self.benchmark}: {why}; pass@1 is not measured during this run "
              "(codelora compare measures it after)", file=sys.stderr)  # fmt: skip

    def _generate(self, name: str, step: int, generator: Any) -> float | None:
        """Phase 1 on the training thread; the seconds it took, None when it did not finish (pending)."""
        t0 = time.monotonic()
        try:
            got = self.evaluator(
                self.run_dir, self.benchmark, models=[name], opts=self.opts, generator=generator, grade=False
            )[name]
        except GenerationInterrupted as e:
            print(f"codelora: {e}; it is evaluated when the run resumes (--resume)", file=sys.stderr)
            return None
        except UserError as e:
            self._disable(str(e))
            return None
        seconds = time.monotonic() - t0
        self.generated[name] = (got.get("generation") or {}).get("generated", 0)
        if self.run_cb.trainer is not None:  # generation is not training time (tokens_per_second leaves it out)
            self.run_cb.trainer.eval_seconds += seconds
        return seconds

    def _grade(self, name: str) -> dict:
        """Phase 2 (background thread): every answer is stored, so this extracts and runs them only."""
        t0 = time.monotonic()
        summary = self.evaluator(self.run_dir, self.benchmark, models=[name], opts=self.opts)[name]
        return {"summary": summary, "seconds": time.monotonic() - t0}

    def _start(self, name: str, step: int, epoch: float | None, generator: Any) -> None:
        gen_seconds = self._generate(name, step, generator)
        if gen_seconds is None or not self.enabled:
            return
        if self.pool is None:
            self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="codelora-grading")
        self.futures.append((name, step, epoch, gen_seconds, self.pool.submit(self._grade, name)))

    def _collect(self, wait: bool = False) -> None:
        """Log the results that are ready (all of them, waiting, when `wait`), in submission order."""
        while self.futures and (wait or self.futures[0][4].done()):
            name, step, epoch, gen_seconds, fut = self.futures.pop(0)
            try:
                got = fut.result()
            except Exception as e:  # noqa: BLE001 - a failed grading must not kill the training run
                print(f"codelora: {name}: grading for train.execution_eval failed ({type(e).__name__}: {e}); it "
                      "stays pending (evaluated on --resume, or by codelora compare)", file=sys.stderr)  # fmt: skip
                continue
            self._log(name, step, epoch, got["summary"], gen_seconds, got["seconds"])

    def _log(
        self, name: str, step: int, epoch: float | None, summary: dict, gen_seconds: float, grade_seconds: float
    ) -> None:
        ks = {k: v for k, v in summary.items() if k.startswith("pass@") and k[5:].isdigit()}
        row = {
            "step": step,
            "epoch": epoch,
            "eval_model": name,
            "eval_benchmark": self.benchmark,
            **{f"eval_{k}": v for k, v in ks.items()},
            "eval_generation_seconds": round(gen_seconds, 3),
            "eval_grading_seconds": round(grade_seconds, 3),
            "elapsed_seconds": self.run_cb.elapsed(),
        }
        self.metrics.add(row)
        self.metrics.plot()
        writer = getattr(self.tensorboard, "tb_writer", None)
        if writer is not None:
            for k, v in ks.items():
                writer.add_scalar(f"eval/{k}", v, step)
            writer.flush()
        value = _metric_of(summary, self.es.metric)
        self.evaluations.append({"model": name, "step": step, "value": value, "result_key": summary.get("result_key")})
        print(
            f"codelora: {name} (step {step}) {self.benchmark} pass@1 {summary.get('pass@1', 0.0):.3f} on "
            f"{summary.get('problems')} problems | generation {gen_seconds:.1f} s ({self.generated.get(name, 0)} of "
            f"{summary.get('samples')} answers; training paused), grading {grade_seconds:.1f} s in the background",
            file=sys.stderr,
        )

    # ------------------------------------------------------------------------------------------ early stopping

    def best(self) -> dict | None:
        """The evaluation with the highest metric (the earliest among equals), None before any."""
        best = None
        for ev in sorted(self.evaluations, key=lambda e: e["step"]):
            if ev["value"] is not None and (best is None or ev["value"] > best["value"]):
                best = ev
        return best

    def _should_stop(self) -> bool:
        """`patience` evaluations in a row (in step order) without beating the best before them by > min_delta."""
        if self.es.patience <= 0:
            return False
        best, since = None, 0
        for ev in sorted(self.evaluations, key=lambda e: e["step"]):
            if ev["value"] is None:
                continue
            if best is None or ev["value"] > best + self.es.min_delta:
                best, since = ev["value"], 0
            else:
                since += 1
        return since >= self.es.patience

    def write_best(self) -> None:
        best = self.best()
        if best is None:
            return
        doc = {
            "benchmark": self.benchmark,
            "metric": self.es.metric,
            "best": best["model"],
            "step": best["step"],
            "value": best["value"],
            "evaluations": sorted(self.evaluations, key=lambda e: e["step"]),
            "early_stopping": {"patience": self.es.patience, "min_delta": self.es.min_delta},
            "stopped_early": self.stopped_early is not None,
            "stopped_at_step": self.stopped_early,
            "note": "provisional: chosen during training by train.execution_eval; selection.json (codelora compare) "
            "confirms or replaces it",
        }
        runs.write_json(self.run_dir / PROVISIONAL_BEST, doc)

    # ------------------------------------------------------------------------------------------ Trainer events

    def on_train_begin(self, args, state, control, model=None, **kw):
        if not self.enabled:
            return
        if args.world_size > 1:
            self._disable("several processes train; each checkpoint is evaluated after training instead")
            return
        done = {e["model"] for e in self.evaluations}
        models, _ = runs.list_models(self.run_dir)
        for m in models:
            if m.kind == "final" or m.step > self.start_step or m.name in done or not self.enabled:
                continue
            if m.kind == "base":  # the live model with its adapter off is exactly the base model
                self._start("base", 0, 0.0, self._live(model))
            else:  # pending from before an interrupt: generated from the saved checkpoint (it may be another one)
                print(f"codelora: {m.name}: evaluating on {self.benchmark} (pending from before the resume)",
                      file=sys.stderr)  # fmt: skip
                self._start(m.name, m.step, m.epoch, None)

    def _live(self, model) -> LiveGenerator:
        return LiveGenerator(
            model, self.tokenizer, self.cfg.eval.batch_size, should_stop=lambda: bool(self.run_cb.stop_requested)
        )

    def on_step_end(self, args, state, control, **kw):
        if self.futures:
            self._collect()

    def on_save(self, args, state, control, model=None, **kw):
        if not self.enabled or not state.is_world_process_zero:
            return
        name = f"checkpoint-{state.global_step}"
        if not runs.meta_file(Path(args.output_dir) / name).is_file():
            return
        if self.es.patience > 0:  # decide on every result before this save, whatever the timing of the grading
            self._collect(wait=True)
            stop = self._should_stop()
        else:
            stop = False
        if self.run_cb.stop_requested:
            print(f"codelora: {name} is evaluated when the run resumes (stopping now)", file=sys.stderr)
            return
        self._start(name, state.global_step, state.epoch, self._live(model))
        if stop and not control.should_training_stop:
            self.stopped_early = state.global_step
            b = self.best()
            print(
                f"codelora: early stopping at step {state.global_step}: {self.es.metric} has not improved by more "
                f"than {self.es.min_delta} for {self.es.patience} evaluations (best so far {b['model']}, "
                f"{b['value']:.3f}); no checkpoint is deleted",
                file=sys.stderr,
            )
            control.should_training_stop = True

    def on_train_end(self, args, state, control, **kw):
        self._collect(wait=True)
        if self.pool is not None:
            self.pool.shutdown(wait=True)
            self.pool = None
        if self.enabled:
            self.write_best()

    def evaluate_final(self, model: Any) -> None:
        """final/ (after train() saved it): usually the last checkpoint's weights, so nothing is generated."""
        final_meta = runs.meta_file(runs.RunFolder(self.run_dir).final_dir)
        if not self.enabled or not final_meta.is_file():
            return
        meta = read_json(final_meta)
        step = int(meta.get("step") or 0)
        gen_seconds = self._generate("final", step, self._live(model))
        if gen_seconds is None:
            return
        got = self._grade("final")
        s = got["summary"]
        if not any(e["step"] == step for e in self.evaluations):  # a step of its own: a point on the curve
            self._log("final", step, meta.get("epoch"), s, gen_seconds, got["seconds"])
            self.write_best()
        else:
            print(f"codelora: final (step {step}) {self.benchmark} pass@1 {s.get('pass@1', 0.0):.3f} "
                  f"(grading {got['seconds']:.1f} s)", file=sys.stderr)  # fmt: skip

    def result(self) -> dict:
        """What train() returns about it: {benchmark, pass@1 by model, best, stopped_early}."""
        best = self.best()
        return {
            "benchmark": self.benchmark,
            self.es.metric: {e["model"]: e["value"] for e in sorted(self.evaluations, key=lambda e: e["step"])},
            "provisional_best": best["model"] if best else None,
            "stopped_early": self.stopped_early,
        }


def finish(trainer: Any, result: dict) -> None:
    """After train() saved final/: evaluate it (usually nothing to generate), add `execution_eval` to result."""
    cb = next((c for c in trainer.callback_handler.callbacks if isinstance(c, ExecutionEvalCallback)), None)
    if cb is None or (not cb.enabled and not cb.evaluations):
        return
    if "final" in result:
        cb.evaluate_final(trainer.model)
    result["execution_eval"] = cb.result()
