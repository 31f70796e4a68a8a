"""One options dataclass per command: `codelora <cmd> --help` is made from its fields and their docstrings
(codelora/flags.py: each flag documented once), and `__post_init__` refuses impossible values with one line naming
the flag, the value and what is allowed - before any model, dataset or sandbox is touched. Options cross from the
CLI into the stages as these typed objects (EvalOptions into evaluate, ScoreArgs into score, ...). The run config
itself (RunConfig, presets, `--set`) is codelora/config.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal

from codelora import benchmarks
from codelora.config import EvalConfig, backend_names
from codelora.errors import UserError
from codelora.flags import need

# One dataclass per command: `codelora <cmd> --help` is made from these fields and their docstrings
# (codelora/flags.py), and `__post_init__` refuses impossible values with one line naming the flag, the value and
# what is allowed - before any model, dataset or sandbox is touched.


@dataclass(kw_only=True)
class ConfigArgs:
    """Flags of every command that reads a run configuration."""

    config: str | None = None
    """Preset name or YAML file (default: demo; `train --resume`: the run's own config.yaml)."""
    overrides: list[str] = field(
        default_factory=list, metadata={"flag": "--set", "append": True, "metavar": "SECTION.KEY=VALUE"}
    )
    """Override one config field (e.g. eval.max_new_tokens=256); repeatable."""


@dataclass(kw_only=True)
class DownloadArgs:
    """Pre-fetch a hub model or dataset into the local cache."""

    name: str = field(metadata={"positional": True})
    """Hub id, or deep / diverse."""
    repo_type: Literal["model", "dataset"] | None = None
    """Default: dataset for deep/diverse, else model."""
    revision: str | None = None
    """Hub revision (branch, tag or commit)."""


@dataclass(kw_only=True)
class RunArgs(ConfigArgs):
    """Flags of the commands that make a run folder (prepare, train)."""

    run: str | None = None
    """Run folder, as every command names it (default: <output_dir>/<run_name> of the config, e.g. outputs/demo)."""


@dataclass(kw_only=True)
class PrepareArgs(RunArgs):
    """Load, validate, split (by problem) and tokenize a dataset into a run folder."""

    check: str | None = field(default=None, metadata={"metavar": "FILE"})
    """Only validate the dataset FILE (or folder) against the row schema and summarise it; no run folder is made."""


@dataclass(kw_only=True)
class TrainArgs(RunArgs):
    """LoRA-train a run: logs, plots, every checkpoint kept, resumable."""

    resume: bool = False
    """Continue from the newest complete checkpoint."""
    resume_from: str | None = field(default=None, metadata={"metavar": "CHECKPOINT"})
    """Continue from this complete checkpoint (checkpoint-N or N); later checkpoints and final/ are redone."""
    reset_optimizer: bool = False
    """Resume a checkpoint that has no optimizer state: its weights, a fresh optimizer, the schedule continues."""


@dataclass(kw_only=True)
class RLArgs:
    """Train a run's adapter further by GRPO with the sandbox's verdicts as the reward (RUN/rl/)."""

    run: str
    """Run folder (outputs/<run>)."""
    start: str = field(default="final", metadata={"flag": "--from", "metavar": "MODEL"})
    """The run's model RL starts from: base (a fresh adapter), final or checkpoint-N (default: final)."""
    resume: bool = False
    """Continue the run's RL from its newest complete RL checkpoint."""
    resume_from: str | None = field(default=None, metadata={"metavar": "CHECKPOINT"})
    """Continue from this complete RL checkpoint (checkpoint-N, rl-checkpoint-N or N); later ones are redone."""
    overrides: list[str] = field(
        default_factory=list, metadata={"flag": "--set", "append": True, "metavar": "rl.KEY=VALUE"}
    )
    """Override one field of the `rl:` section (e.g. rl.steps=5); repeatable."""

    def __post_init__(self) -> None:
        for item in self.overrides:
            if not item.strip().startswith("rl."):
                raise UserError(
                    f"--set {item!r}: `codelora rl` takes only rl.KEY=VALUE (the model, data and LoRA shape are the "
                    "run's own)"
                )


@dataclass(kw_only=True)
class GenerateArgs(ConfigArgs):
    """Answer one problem with a model (streams the answer, prints the code)."""

    model: str | None = None
    """Model source (default: the config's model.source)."""
    adapter: str | None = None
    """LoRA adapter folder to apply."""
    prompt: str | None = None
    """Problem text."""
    problem_file: str | None = None
    """File holding the problem text."""


# A --benchmark flag: its choices are the registry's (codelora.benchmarks.names), read when the parser is built.
BENCHMARK_FLAG = {"choices": benchmarks.names}
# A --backend flag: the generation backends' registry (codelora.generation.backends.names), likewise.
BACKEND_FLAG = {"choices": lambda: backend_names()}
ProtocolName = Literal["livecodebench", "course"]  # codelora.benchmarks.protocol.PROTOCOLS (a test keeps them equal)


def _check_workers(workers: int | None) -> None:
    need(workers is None or workers >= 1, "--workers", workers, "must be an integer >= 1 (parallel programs)")


@dataclass(kw_only=True)
class EvalOptions:
    """How `evaluate` samples, selects problems and grades; a sampling value left unset is the run config's
    `eval.*` (see EvalConfig)."""

    n: int = 1
    """Samples per problem (n > 1 samples, for pass@k)."""
    temperature: float | None = None
    """0 = greedy (the default for n=1); > 0 samples (default: eval.temperature when n > 1)."""
    top_p: float | None = field(default=None, metadata={"doc_from": EvalConfig})
    max_new_tokens: int | None = field(default=None, metadata={"doc_from": EvalConfig})
    seed: int | None = field(default=None, metadata={"doc_from": EvalConfig})
    batch_size: int | None = field(default=None, metadata={"doc_from": EvalConfig})
    backend: str | None = field(default=None, metadata={"doc_from": EvalConfig, **BACKEND_FLAG})
    gguf: str | None = field(default=None, metadata={"doc_from": EvalConfig})
    threads: int | None = field(default=None, metadata={"doc_from": EvalConfig})
    vllm_mode: Literal["merge", "lora"] | None = field(default=None, metadata={"doc_from": EvalConfig})
    limit: int | None = None
    """Only the first K problems (after filters)."""
    preset: Literal["atcoder-easy"] | None = None
    """livecodebench: atcoder, easy, contests 2408..2502."""
    platform: str | None = None
    """livecodebench: atcoder, codeforces, leetcode (comma list)."""
    difficulty: str | None = None
    """livecodebench: easy, medium, hard (comma list)."""
    date_from: str | None = None
    """livecodebench: first contest month, YYMM."""
    date_to: str | None = None
    """livecodebench: last contest month, YYMM (inclusive)."""
    problems: str | None = None
    """livecodebench: local code_generation_lite JSONL; humaneval: problems file; heldout without --run: {task_id, prompt, tests} JSONL."""
    release: str | None = None
    """livecodebench hub release (default release_v5)."""
    workers: int | None = None
    """Parallel programs when grading (default: number of cores)."""
    allow_contamination: bool = False
    """Evaluate even if problems are in the training split (results then overstate the model)."""
    protocol: ProtocolName | None = None
    """livecodebench: how models are asked and graded (default livecodebench; course = the course's grader: raw statement, greedy, 8192 new tokens, first python block, public tests, exact output; see docs/protocols.md)."""
    skip_untested: bool = False
    """Leave out problems without tests (livecodebench, heldout --problems), listed in summary.json (default: refuse them)."""
    tests: Literal["examples", "generated", "all"] | None = None
    """heldout with --run: grade on the statement examples, the generated hidden tests, or all of them (default all; see docs/evaluation.md)."""
    overrides: list[str] = field(
        default_factory=list, metadata={"flag": "--set", "append": True, "metavar": "SECTION.KEY=VALUE"}
    )
    """Override one field of the run's (or --config's) config, e.g. eval.max_new_tokens=256; repeatable."""

    def __post_init__(self) -> None:

        need(self.n >= 1, "--n", self.n, "must be an integer >= 1 (samples per problem)")
        t = self.temperature
        need(t is None or (math.isfinite(t) and t >= 0), "--temperature", t, "must be a finite number >= 0")
        need(
            not (self.n > 1 and t == 0),
            "--temperature",
            t,
            f"with --n {self.n} greedy decoding gives {self.n} identical samples; use --temperature > 0 or --n 1",
        )
        p = self.top_p
        need(p is None or (math.isfinite(p) and 0 < p <= 1), "--top-p", p, "must be in (0, 1]")
        for key in ("max_new_tokens", "batch_size", "limit", "threads"):
            v = getattr(self, key)
            need(v is None or v >= 1, "--" + key.replace("_", "-"), v, "must be an integer >= 1")
        _check_workers(self.workers)


@dataclass(kw_only=True)
class EvaluateArgs(EvalOptions):
    """Generate with models of a run (--run) or any model (--model/--adapter/--out), grade the code, pass@k."""

    run: str | None = None
    """Run folder (outputs/<run>); its config.yaml gives system prompt, model and sampling."""
    benchmark: str = field(metadata=BENCHMARK_FLAG)
    """Benchmark to generate for and grade."""
    models: str | None = None
    """With --run: comma list of base, final, checkpoint-N, rl-final, rl-checkpoint-N, or all (default: base,final)."""
    model: str | None = None
    """Without --run: model source to evaluate."""
    adapter: str | None = None
    """Without --run: LoRA adapter folder to apply."""
    out: str | None = None
    """Without --run: folder for generations, results and summary."""
    config: str | None = None
    """Without --run: preset or YAML for system prompt and sampling (default: demo)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.run is None) == (self.model is None and self.out is None):
            raise UserError("give either --run RUN, or --model SOURCE [--adapter PATH] --out DIR")
        if self.run is not None and (self.model or self.adapter or self.out):
            raise UserError("--model/--adapter/--out are for evaluating without a run; with --run use --models")
        if self.run is None and self.models:
            raise UserError("--models needs --run; without a run give --model SOURCE [--adapter PATH]")
        if self.run is None and not self.out:
            raise UserError("without --run, give --out DIR for the results")

    def options(self) -> EvalOptions:
        """The EvalOptions part (what evaluate() takes besides run/benchmark/models)."""
        return EvalOptions(**{f.name: getattr(self, f.name) for f in fields(EvalOptions)})


@dataclass(kw_only=True)
class ScoreArgs:
    """Grade already-generated programs in the sandbox (no model loaded).

    Also the checks of `codelora.evaluation.score.score`'s keyword arguments.
    """

    benchmark: str = field(metadata=BENCHMARK_FLAG)
    """Benchmark whose samples format and grader apply."""
    samples: str
    """Samples file in the benchmark's own format."""
    problems: str | None = None
    """Problems file (LiveCodeBench JSONL, heldout {task_id, tests} JSONL; default for humaneval: the bundled 164)."""
    out: str
    """Folder for results.jsonl and summary.json."""
    protocol: ProtocolName | None = None
    """livecodebench only: grading rules (default livecodebench; course = the course's grader, see docs/protocols.md)."""
    timeout: float | None = None
    """Seconds per test (default: the protocol's for livecodebench, 3 humaneval, 6 heldout)."""
    memory_mb: int | None = None
    """Memory limit in MiB (default 1024; course 512): the whole sandbox (resident + tmpfs) under a cgroup, else
    the address space of each process."""
    output_limit_mb: float = 64.0
    """Stdout read per program in MiB; more is output_limit_exceeded."""
    skip_untested: bool = False
    """Leave out problems without tests (default: refuse the input)."""
    allow_partial: bool = False
    """Without --problems, grade a samples file that leaves some of the benchmark's bundled problems out (HumanEval) over the problems it has, recording the missing ones (default: refuse it)."""
    workers: int | None = None
    """Parallel programs (default: number of cores)."""
    k: list[int] = field(default_factory=lambda: [1], metadata={"metavar": "K[,K...]"})
    """Comma-separated k for pass@k (default: 1)."""
    tolerance: float | None = None
    """heldout only: absolute float tolerance (default: exact, as LiveCodeBench)."""

    def __post_init__(self) -> None:

        def finite(x: float | None) -> bool:
            return x is None or math.isfinite(x)

        bench = benchmarks.get(self.benchmark)  # UserError naming the choices
        need(
            self.timeout is None or (finite(self.timeout) and self.timeout > 0),
            "--timeout",
            self.timeout,
            "must be > 0 seconds",
        )
        need(
            self.memory_mb is None or self.memory_mb >= 16,
            "--memory-mb",
            self.memory_mb,
            "must be an integer >= 16 (MiB)",
        )
        need(
            finite(self.output_limit_mb) and self.output_limit_mb > 0,
            "--output-limit-mb",
            self.output_limit_mb,
            "must be > 0 (MiB)",
        )
        _check_workers(self.workers)
        need(
            bool(self.k) and all(k >= 1 for k in self.k),
            "--k",
            ",".join(map(str, self.k)),
            "every k must be an integer >= 1",
        )
        need(
            self.tolerance is None or (finite(self.tolerance) and self.tolerance >= 0),
            "--tolerance",
            self.tolerance,
            "must be a finite number >= 0",
        )
        bench.protocol(self.protocol)  # UserError for a protocol this benchmark does not have


@dataclass(kw_only=True)
class CompareArgs:
    """Grade checkpoints on the same problems, choose the best, flag overfitting (--run), or runs side by side (--runs)."""

    run: str | None = field(default=None, metadata={"group": "target"})
    """Run folder: compare its base model, checkpoints and final."""
    runs: list[str] | None = field(default=None, metadata={"group": "target", "nargs": "+", "metavar": "RUN"})
    """Several run folders: their selected models side by side."""
    benchmark: str = field(default="heldout", metadata=BENCHMARK_FLAG)
    """Benchmark of the comparison."""
    models: list[str] | None = field(default=None, metadata={"nargs": "+", "metavar": "NAME"})
    """base, checkpoint-<step>, final, rl-checkpoint-<step>, rl-final, or all; spaces or commas (default: all)."""
    force: bool = False
    """Compare despite different base/problems/sampling (marked)."""
    out: str | None = None
    """--runs only: output folder (default: <parent>/compare-<run names>)."""
    problems: list[str] | None = field(default=None, metadata={"nargs": "+", "metavar": "ID"})
    """Problems to show side by side (default: disagreements)."""
    no_evaluate: bool = False
    """Use existing results only; never run evaluate."""
    limit: int | None = None
    """Models evaluated now: first N problems (default: as already evaluated)."""
    protocol: ProtocolName | None = None
    """livecodebench: compare the results graded under this protocol (default livecodebench; course = the course's grader, see docs/protocols.md); --runs refuses runs selected under different protocols unless --force."""

    def __post_init__(self) -> None:
        benchmarks.get(self.benchmark).protocol(self.protocol)  # UserError: unknown benchmark, protocol it lacks
        if self.run is not None and self.runs:
            raise UserError("give either --run or --runs, not both")
        if self.run is None and not self.runs:
            raise UserError("give --run RUN or --runs RUN1 RUN2 ...")
        if self.runs is not None and self.models:
            raise UserError("--models applies to --run; with --runs each run's selected model is used")
        if self.run is not None and self.out:
            raise UserError("--out applies to --runs; --run writes into the run folder")
        need(self.limit is None or self.limit >= 1, "--limit", self.limit, "must be an integer >= 1")


@dataclass(kw_only=True)
class ReportArgs:
    """Write RUN/report.html (self-contained) and RUN/report.md."""

    run: str
    """Run folder."""
    benchmark: str | None = field(default=None, metadata=BENCHMARK_FLAG)
    """Benchmark of the comparison sections (default: the one in selection.json)."""


SHARD_SIZE_UNITS = ("GIB", "MIB", "KIB", "GB", "MB", "KB")


@dataclass(kw_only=True)
class ExportArgs:
    """Export a checkpoint as a LoRA adapter or a merged, verified model + model card."""

    run: str
    """Run folder (outputs/<run>)."""
    checkpoint: str = "best"
    """best (the run's selection.json), final, a step number, checkpoint-<step>, rl-final or rl-checkpoint-<step> (default: best)."""
    merge: bool = False
    """Merge the adapter into the base weights (checked on logits)."""
    dtype: Literal["bf16", "fp16", "fp32"] | None = None
    """Merged weights' dtype (default: the run's model.dtype; auto -> bf16)."""
    out: str
    """Export folder (written as OUT.tmp-xxxx, then renamed)."""
    force: bool = False
    """Replace a non-empty --out folder."""
    max_shard_size: str = "2GB"
    """Largest safetensors shard of a merged model: an integer (bytes) or one followed by KB, MB, GB, KiB, MiB, GiB (default 2GB)."""
    if_base: Literal["error", "final"] = "error"
    """When --checkpoint best finds the base model selected: stop (default) or export final."""

    def __post_init__(self) -> None:
        size = self.max_shard_size.strip().upper()
        digits = next((size[: -len(u)] for u in SHARD_SIZE_UNITS if size.endswith(u)), size)
        need(
            digits.isdigit() and int(digits) > 0,
            "--max-shard-size",
            repr(self.max_shard_size),
            "expected a positive integer (bytes) or one followed by KB, MB, GB, KiB, MiB or GiB, e.g. 2GB",
        )
        out = Path(self.out).expanduser()
        here = Path.cwd().resolve()
        need(
            out.name not in ("", ".", "..") and not here.is_relative_to(out.resolve()),
            "--out",
            repr(self.out),
            "must name the export folder itself, not the current folder or one above it",
        )
        need(not out.is_file(), "--out", repr(self.out), "is an existing file; give a folder path")


@dataclass(kw_only=True)
class PushArgs:
    """Upload an export folder to the Hugging Face Hub (token: HF_TOKEN or login)."""

    export: str
    """Folder written by `codelora export`."""
    repo: str
    """Hub model repo, USER/NAME (created if needed)."""
    private: bool = False
    """Create the repo private."""
    dry_run: bool = False
    """List files and sizes, check the card; no network."""
