"""`codelora rl`: GRPO (TRL's GRPOTrainer) on a run's training-split problems, the sandbox's verdicts as the reward.

`rl()` is the recipe, read top to bottom: the run's config with `--set rl.*` -> the model RL starts from (base:
a fresh adapter of the run's `lora:` shape; final / checkpoint-N: that SFT adapter, trainable) -> the training-split
problems that have tests of the kind `rl.tests` chooses (codelora.data.generated_tests, cached in
RUN/tests/train.jsonl) -> where the RL run starts (fresh, or a complete RL checkpoint) -> GRPOTrainer with the
sandbox reward (codelora.evaluation.reward: score's extraction, sandbox and verdict) -> RUN/rl/final/.

Folder (the run schema of a training method, codelora.run.layout.methods):
  RUN/rl/checkpoints/checkpoint-<step>/          adapter + optimizer/scheduler/RNG state; meta.json written last marks
                                                 it complete (an interrupted save never looks whole)
  RUN/rl/final/                                  written as final.tmp/ and renamed
  RUN/rl/logs/metrics.jsonl, metrics.csv         one row per step (RL_METRIC_KEYS); logs/tensorboard/ TRL's scalars
  RUN/rl/plots/reward.png                        mean reward and pass rate by step
The models are `rl-checkpoint-<step>` and `rl-final` for evaluate / compare / report / export.

Every meta.json carries `provenance`: the SFT model RL started from (name, step, weights sha256), the rl config and
the sha256 of the tests that reward. A resume must match it (all but RESUME_FREE_KEYS) or is refused, so a resumed
run continues the same trajectory: same problems in the same order, same sampling (the RNG state is restored).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from codelora.errors import UserError
from codelora.files import atomic_write_text, follow_umask, read_json_object
from codelora.run import layout as runs
from codelora.run import results as run_results
from codelora.training import Method, register

__all__ = [
    "RESUME_FREE_KEYS",
    "RL_METRIC_KEYS",
    "StepVerdicts",
    "check_backends",
    "rl",
    "training_problems",
]

METHOD = "rl"
# rl keys a --resume may change: they change neither the problems, the sampling nor the updates up to the checkpoint.
RESUME_FREE_KEYS = frozenset({"steps", "save_steps", "workers"})
# The columns of RUN/rl/logs/metrics.jsonl, one row per step. reward: mean sandbox reward of the step's completions
# (sandbox failures, which get no reward, left out); reward_total: with the extra rewards added (= reward without
# any); reward_std: TRL's std of the rewards; frac_reward_zero_std: share of groups whose completions all got the same
# reward (no gradient from them); pass_rate: share of the completions with a verdict that passed every test;
# completion_length: mean tokens; sandbox_seconds: the step's programs' run times, summed; reward_seconds: wall time
# of the step's reward call (its completions graded concurrently); completions: how many were graded; no_verdict:
# how many the sandbox could not grade (reward None); verdicts: {verdict: count}.
RL_METRIC_KEYS = [
    "step",
    "learning_rate",
    "grad_norm",
    "loss",
    "reward",
    "reward_total",
    "reward_std",
    "frac_reward_zero_std",
    "pass_rate",
    "completion_length",
    "sandbox_seconds",
    "reward_seconds",
    "completions",
    "no_verdict",
    "verdicts",
    "elapsed_seconds",
]


# --------------------------------------------------------------------------------------------------- backends


def check_backends(rl_cfg) -> None:
    """UserError (one line) when TRL is not installed, or rl.vllm=colocate without vLLM or a GPU."""
    if importlib.util.find_spec("trl") is None:
        raise UserError("codelora rl needs TRL (GRPOTrainer): pip install 'codelora[rl]' (or pip install 'trl>=1.16')")
    if rl_cfg.vllm == "colocate":
        if importlib.util.find_spec("vllm") is None:
            raise UserError("rl.vllm=colocate needs vLLM (pip install 'codelora[vllm]', GPU only); set rl.vllm=none")
        import torch

        if not torch.cuda.is_available():
            raise UserError("rl.vllm=colocate needs a CUDA GPU (vLLM); set rl.vllm=none to generate with transformers")


# --------------------------------------------------------------------------------------------------- problems


def training_problems(run_dir: Path, cfg, tests: str, workers: int | None = None) -> tuple[dict[str, dict], dict]:
    """The run's training-split problems that have `tests` tests (generated, examples or all): (problem id ->
    record as codelora.data.generated_tests writes it, what `codelora.evaluation.reward.make_reward` takes; info).

    The tests are built (or reused) in RUN/tests/train.jsonl by codelora.data.generated_tests, from the cfg.tests
    seed. info: {tests, tests_sha256 (the chosen tests of every problem, canonical JSON), problems, tests_total,
    split_problems, generator {seed, candidates_per_problem, generator_version}, file}: the provenance of every RL
    checkpoint. UserError when no training problem has such a test.
    """
    from codelora.data.generated_tests import build_tests
    from codelora.evaluation.reward import problem_tests

    path, records, report = build_tests(run_dir, cfg, "train", workers)
    chosen = {r["task_id"]: problem_tests(r, tests) for r in records}
    problems = {r["task_id"]: r for r in records if chosen[r["task_id"]]}
    if not problems:
        raise UserError(
            f"none of the {len(records)} training problems of {run_dir} has a {tests} test "
            f"({runs.relative_to_run(path, run_dir)}); RL has nothing to reward"
            + ("; rl.tests=examples or all uses the statement examples too" if tests == "generated" else "")
        )
    info = {
        "tests": tests,
        "tests_sha256": run_results.canonical_sha256({pid: chosen[pid] for pid in problems}),
        "problems": len(problems),
        "tests_total": sum(len(chosen[pid]) for pid in problems),
        "split_problems": len(records),
        "generator": {k: report.get(k) for k in ("seed", "candidates_per_problem", "generator_version")},
        "file": runs.relative_to_run(path, run_dir),
    }
    return problems, info


# ------------------------------------------------------------------------------------------------------ reward


class StepVerdicts:
    """What the sandbox reward graded since the last `take_step()`: `on_grade` is codelora.evaluation.reward's hook, called with
    each batch's RewardResults (reward None: no verdict, the sandbox failed)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self.verdicts: Counter = Counter()
        self.seconds = 0.0
        self.graded = 0
        self.passed = 0
        self.none = 0
        self.wall = 0.0

    def timed(self, reward):
        """`reward` (an async TRL reward function) as one whose wall time per call adds to `reward_seconds`."""
        verdicts = self

        class Timed:
            __name__ = reward.__name__

            async def __call__(self, *args, **kwargs):
                t0 = time.monotonic()
                try:
                    return await reward(*args, **kwargs)
                finally:
                    with verdicts.lock:
                        verdicts.wall += time.monotonic() - t0

        return Timed()

    def on_grade(self, results: list) -> None:
        with self.lock:
            for r in results:
                self.verdicts[r.verdict] += 1
                self.graded += 1
                self.passed += r.reward is not None and r.verdict == "accepted"
                self.none += r.reward is None
                self.seconds += r.seconds

    def take_step(self) -> dict[str, Any]:
        """{completions, pass_rate (accepted among those with a verdict), no_verdict, sandbox_seconds (summed over
        the completions' programs), reward_seconds (wall time of the reward calls, `timed`), verdicts} since the
        last call, then reset."""
        with self.lock:
            judged = self.graded - self.none
            out = {
                "completions": self.graded,
                "pass_rate": self.passed / judged if judged else None,
                "no_verdict": self.none,
                "sandbox_seconds": round(self.seconds, 3),
                "reward_seconds": round(self.wall, 3),
                "verdicts": dict(sorted(self.verdicts.items())),
            }
            self._reset()
        return out


# --------------------------------------------------------------------------------------------------- metrics


class RLMetrics:
    """RUN/rl/logs/metrics.{jsonl,csv} (codelora.training.trainer.MetricsLog with RL_METRIC_KEYS) and RUN/rl/plots/reward.png."""

    def __init__(self, folder: Path, keep_up_to_step: int):
        from codelora.training.trainer import MetricsLog

        self.folder = folder
        self.log = MetricsLog(folder, keep_up_to_step, keys=RL_METRIC_KEYS)

    @property
    def rows(self) -> list[dict]:
        return self.log.rows

    def add(self, row: dict) -> None:
        self.log.add(row)

    def plot(self) -> None:
        """Mean reward and pass rate by step (nothing without rows)."""
        if not self.rows:
            return
        import matplotlib  # a required dependency (pyproject.toml)

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        plots = runs.RunFolder(self.folder).plots_dir
        plots.mkdir(parents=True, exist_ok=True)
        fig, ax = plt.subplots(figsize=(7, 3.5))
        for key, style in (("reward", "o-"), ("pass_rate", "s--"), ("frac_reward_zero_std", ":")):
            pts = [(r["step"], r[key]) for r in self.rows if r.get(key) is not None]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=key)
        ax.set_xlabel("RL step")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title("GRPO: reward by step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        tmp = plots / "reward.tmp.png"
        fig.savefig(tmp, dpi=100)
        plt.close(fig)
        os.replace(tmp, plots / "reward.png")


def _callback_class():
    from transformers import TrainerCallback

    class RLCallback(TrainerCallback):
        """Per step: a metrics row from TRL's logs and the judge's counts; meta.json last into each checkpoint;
        stops at a step boundary (saving a checkpoint) once `stop_requested` is set by a signal handler."""

        def __init__(
            self,
            folder: Path,
            metrics: RLMetrics,
            verdicts: StepVerdicts,
            reward_name: str,
            meta: dict,
            elapsed_before: float,
        ):
            self.folder = folder
            self.metrics = metrics
            self.verdicts = verdicts
            self.reward_name = reward_name
            self.base_meta = meta
            self.start = time.time()
            self.elapsed_before = elapsed_before
            self.stop_requested = False

        def elapsed(self) -> float:
            return round(self.elapsed_before + time.time() - self.start, 3)

        def on_train_begin(self, args, state, control, **kw):
            self.start = time.time()

        def on_step_end(self, args, state, control, **kw):
            if self.stop_requested:
                control.should_save = True
                control.should_training_stop = True

        def on_log(self, args, state, control, logs=None, **kw):
            logs = logs or {}
            if "reward" not in logs:  # the end-of-training summary row
                return
            self.metrics.add(
                {
                    "step": state.global_step,
                    "learning_rate": logs.get("learning_rate"),
                    "grad_norm": logs.get("grad_norm"),
                    "loss": logs.get("loss"),
                    "reward": logs.get(f"rewards/{self.reward_name}/mean", logs.get("reward")),
                    "reward_total": logs.get("reward"),
                    "reward_std": logs.get("reward_std"),
                    "frac_reward_zero_std": logs.get("frac_reward_zero_std"),
                    "completion_length": logs.get("completions/mean_length"),
                    **self.verdicts.take_step(),
                    "elapsed_seconds": self.elapsed(),
                }
            )
            self.metrics.plot()

        def on_init_end(self, args, state, control, **kw):
            self.args = args  # the Trainer's arguments: how its prompts are dealt (resume_state)

        def meta(self, state) -> dict[str, Any]:
            """meta.json of an RL checkpoint or final/: step, elapsed seconds, provenance, config, metric rows and
            `resume_state` (how many processes dealt how many prompts per step: a resume under another process
            count is refused, as for SFT)."""
            from codelora.training.trainer import resume_state

            args = getattr(self, "args", None)
            return {
                **self.base_meta,
                "step": state.global_step,
                "epoch": None,
                "elapsed_seconds": self.elapsed(),
                "metrics": self.metrics.rows,
                **({"resume_state": resume_state(args, state.global_step)} if args is not None else {}),
            }

        def on_save(self, args, state, control, **kw):
            ck = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if state.is_world_process_zero and ck.is_dir():
                follow_umask(ck)  # safetensors wrote the adapter 0600: the checkpoint's files follow the umask
                atomic_write_text(runs.meta_file(ck), json.dumps(self.meta(state), indent=1) + "\n")

    return RLCallback


# ------------------------------------------------------------------------------------------------------ the run


def rl(
    run_dir: str | Path,
    start: str = "final",
    overrides: list[str] | tuple[str, ...] = (),
    resume: bool = False,
    resume_from: str | None = None,
    extra_rewards: list[Callable[..., list[float | None]]] = (),
) -> dict[str, Any]:
    """GRPO-train the run's adapter into RUN/rl/; return the result.

    start: the run's model RL starts from (base, final, checkpoint-N). overrides: `rl.KEY=VALUE` on top of the
    run's config. resume: continue from the newest complete RL checkpoint; resume_from (checkpoint-N,
    rl-checkpoint-N or N, implies resume): from that one, removing later RL checkpoints and final/.
    extra_rewards: further reward functions TRL adds to the sandbox reward (TRL's signature:
    `fn(prompts, completions, problem_id, **kw) -> [float | None]`), e.g. a format reward; the metrics' reward,
    verdicts, pass rate and sandbox seconds stay the sandbox's.

    Returns {run_dir, rl_dir, start, global_step, interrupted, signal, reward_first, reward_last, pass_rate_last,
    elapsed_seconds, final}; for a resume of a finished RL run that already covers rl.steps
    {run_dir, rl_dir, global_step, already_finished: True}. Raises UserError (one line) for a refused value,
    start model or resume; TrainingError for a full disk.
    """
    from codelora.training.sft import check_resume_processes, launch_processes, resolve_resume_checkpoint

    run_dir = runs.require_run(run_dir)
    cfg = runs.load_run_config(run_dir, list(overrides))
    check_backends(cfg.rl)
    folder = runs.method_dir(run_dir, METHOD)
    start_model = _start_model(run_dir, start)
    problems, info = training_problems(run_dir, cfg, cfg.rl.tests, cfg.rl.workers or None)
    provenance = {
        "method": METHOD,
        "start": {
            "model": start_model.name,
            "step": start_model.step,
            "weights_sha256": start_model.weights_sha256(),
            "adapter_sha256": start_model.adapter_sha256(),  # weights + canonical adapter_config.json
        },
        **info,
        "rl": dataclasses.asdict(cfg.rl),
    }
    resume = resume or resume_from is not None
    ck, ck_meta = None, {}
    if not resume:
        if runs.all_checkpoints(folder) or (runs.RunFolder(folder).final_dir).exists():
            raise UserError(
                f"{folder} already holds an RL run; continue it with --resume, or remove {folder}/checkpoints and "
                f"{folder}/final to start over"
            )
    else:
        done = _finished_step(folder)
        if resume_from is None and done is not None and done >= cfg.rl.steps:
            _check_same(_read_meta(runs.RunFolder(folder).final_dir), provenance, runs.RunFolder(folder).final_dir)
            return {"run_dir": str(run_dir), "rl_dir": str(folder), "global_step": done, "already_finished": True}
        which = None if resume_from is None else str(resume_from).removeprefix(f"{METHOD}-")
        ck = resolve_resume_checkpoint(folder, which)
        ck_meta = _read_meta(ck)
        _check_same(ck_meta, provenance, ck)
        check_resume_processes(folder, ck, ck_meta, launch_processes())

    from accelerate import PartialState

    from codelora.model.sources import pick_device

    device = pick_device(cfg.model.device)
    dist = PartialState(cpu=device == "cpu")
    if ck is not None:
        _clear_after(folder, ck)
    folder.mkdir(parents=True, exist_ok=True)
    model, tokenizer = _policy(cfg, device, start_model)
    dataset = _dataset(problems, tokenizer, cfg.data.system_prompt)
    from codelora.evaluation.reward import make_reward

    verdicts = StepVerdicts()
    reward = make_reward(
        problems, tests=cfg.rl.tests, kind=cfg.rl.reward, workers=cfg.rl.workers or None, on_grade=verdicts.on_grade
    )
    metrics = RLMetrics(folder, keep_up_to_step=int(ck_meta.get("step") or 0) if ck is not None else -1)
    meta = {
        "provenance": provenance,
        "config": cfg.to_dict(),
        "git_commit": runs.git_commit(),
    }
    callback = _callback_class()(
        folder, metrics, verdicts, reward.__name__, meta, float(ck_meta.get("elapsed_seconds") or 0.0)
    )
    rewards = [verdicts.timed(reward), *extra_rewards]
    trainer = _trainer(cfg, folder, model, tokenizer, dataset, rewards, callback, device)
    from codelora.training.sft import run_with_signal_handling, save_final

    try:
        global_step, signum = run_with_signal_handling(trainer, callback, ck)
    finally:
        reward.close()
    rows = metrics.rows
    result = {
        "run_dir": str(run_dir),
        "rl_dir": str(folder),
        "start": start_model.name,
        "global_step": global_step,
        "interrupted": callback.stop_requested,
        "signal": signum,
        "reward_first": rows[0]["reward"] if rows else None,
        "reward_last": rows[-1]["reward"] if rows else None,
        "pass_rate_last": rows[-1]["pass_rate"] if rows else None,
        "elapsed_seconds": callback.elapsed(),
    }
    if not callback.stop_requested:
        result["final"] = str(save_final(trainer, callback, tokenizer, folder, result, dist))
    return result


def _start_model(run_dir: Path, start: str) -> runs.Model:
    """The SFT model RL starts from (base, final, checkpoint-N); an RL model as a start is refused."""
    model = runs.find_model(run_dir, start)
    if model.method != "sft":
        raise UserError(
            f"--from {start}: RL starts from an SFT model (base, final or checkpoint-N); to continue an RL run "
            "use --resume"
        )
    return model


def _read_meta(folder: Path) -> dict:
    meta = read_json_object(runs.meta_file(folder))
    return meta


def _finished_step(folder: Path) -> int | None:
    if not runs.meta_file(runs.RunFolder(folder).final_dir).is_file():
        return None
    return int(_read_meta(runs.RunFolder(folder).final_dir).get("step") or 0)


def _check_same(meta: dict, provenance: dict, where: Path) -> None:
    """Refuse a resume whose start model, tests or rl config (but RESUME_FREE_KEYS) differ from the checkpoint's."""
    old = meta.get("provenance") or {}
    diffs = []
    for key in ("start", "tests", "tests_sha256"):
        if old.get(key) != provenance[key]:
            diffs.append(f"{key} ({old.get(key)!r} -> {provenance[key]!r})")
    old_rl, new_rl = old.get("rl") or {}, provenance["rl"]
    diffs += [
        f"rl.{k} ({old_rl.get(k)!r} -> {v!r})"
        for k, v in new_rl.items()
        if k not in RESUME_FREE_KEYS and old_rl.get(k) != v
    ]
    if diffs:
        raise UserError(
            f"cannot resume from {where}: it was trained with other settings: {'; '.join(diffs)}; resume with the "
            "same --from and rl values, or start over"
        )


def _clear_after(folder: Path, ck: Path) -> None:
    """Remove the RL checkpoints after `ck` (complete or not) and a final/ of a later step: they are redone."""
    later = [p for p in runs.all_checkpoints(folder) if runs.step_of(p) > runs.step_of(ck)]
    final = runs.RunFolder(folder).final_dir
    if final.exists():
        later.append(final)
    for tmp in (runs.RunFolder(folder).final_tmp,):
        if tmp.exists():
            later.append(tmp)
    done = [p.name for p in later if runs.meta_file(p).is_file()]
    if done:
        print(f"codelora rl: resuming from {ck.name}: removing {', '.join(done)} (redone from there)", file=sys.stderr)
    for p in later:
        shutil.rmtree(p)


def _policy(cfg, device: str, start_model: runs.Model):
    """(peft model with a trainable adapter, tokenizer): the start model's adapter, or a fresh one of cfg.lora."""
    from codelora.model.chat import set_pad_token
    from codelora.model.sources import load_model
    from codelora.training.sft import add_lora

    m = cfg.model
    model, tokenizer = load_model(
        m.source, dtype=m.dtype, device=device, attn_implementation=m.attn_implementation, revision=m.revision
    )
    set_pad_token(tokenizer)
    if start_model.path is None:
        model = add_lora(model, cfg.lora, False, seed=cfg.rl.seed)  # the fresh adapter's initialisation
    else:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(start_model.path), is_trainable=True)
    return model, tokenizer


def _dataset(problems: dict[str, dict], tokenizer, system_prompt: str):
    """A datasets.Dataset of {prompt: the rendered chat prompt (as evaluate renders it), problem_id}."""
    from datasets import Dataset

    from codelora.model.chat import render_prompt

    return Dataset.from_list(
        [
            {"prompt": render_prompt(tokenizer, system_prompt, p["prompt"]), "problem_id": pid}
            for pid, p in problems.items()
        ]
    )


def _trainer(cfg, folder: Path, model, tokenizer, dataset, rewards: list, callback, device: str):
    """TRL's GRPOTrainer for cfg.rl: one micro-batch per problem (num_generations completions), prompts_per_step
    micro-batches per optimizer step, generated together once per step; checkpoints every rl.save_steps, all kept."""
    from trl import GRPOConfig, GRPOTrainer

    from codelora.model.chat import stop_token_ids

    r = cfg.rl
    cuda = device.startswith("cuda")
    import torch

    dtype = next(model.parameters()).dtype
    args = GRPOConfig(
        output_dir=str(runs.RunFolder(folder).checkpoints_dir),
        max_steps=r.steps,
        per_device_train_batch_size=r.num_generations,
        gradient_accumulation_steps=r.prompts_per_step,
        num_generations=r.num_generations,
        max_completion_length=r.max_new_tokens,
        temperature=r.temperature,
        learning_rate=r.learning_rate,
        lr_scheduler_type="constant",
        warmup_steps=0,
        loss_type=r.loss_type,
        scale_rewards="none" if r.loss_type == "dr_grpo" else "group",
        beta=r.beta,
        seed=r.seed,
        data_seed=r.seed,
        logging_steps=1,
        save_strategy="steps",
        save_steps=r.save_steps,
        save_total_limit=None,
        report_to=[],
        use_cpu=device == "cpu",
        bf16=cuda and dtype == torch.bfloat16,
        fp16=cuda and dtype == torch.float16,
        gradient_checkpointing=cfg.train.gradient_checkpointing,
        use_vllm=r.vllm == "colocate",
        vllm_mode="colocate",
        generation_kwargs={"eos_token_id": stop_token_ids(tokenizer)},
        dataloader_num_workers=0,
        disable_tqdm=False,
    )
    from transformers.integrations import TensorBoardCallback

    tb = TensorBoardCallback()
    tb.logging_dir = str(runs.RunFolder(folder).tensorboard_dir)
    return GRPOTrainer(
        model=model,
        reward_funcs=rewards,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[callback, tb],
    )


register(Method("rl", "GRPO with the sandbox's verdicts as the reward (`codelora rl`)", rl))
