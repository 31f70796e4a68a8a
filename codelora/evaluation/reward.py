"""The sandbox reward for reinforcement learning: the judge that grades evaluations, as a TRL reward function.

Each completion goes through what `codelora score` does to a held-out answer: the program is taken out by the same
extraction rule (`codelora.generation.extract`, rule "program"), and run in the same sandbox (`codelora.sandbox`: zygote
workers, one thread and one warm sandbox per worker, every completion of a batch at once) against the problem's
tests, its output compared whole (`outputs_match`: equal line counts, so a prefix of the expected output never
passes). The reward is:

- `binary` (default): 1.0 when every test passes (score's `accepted`), else 0.0. The verdict is exactly score's:
  the same `grade_stdio_problem` call, stopping at the first failing test.
- `fraction`: the share of tests passed. Every test runs on its own, so a test that times out or crashes costs
  that test only, never the verdicts of the others; 1.0 exactly when score says accepted.
- `None` when there is no verdict: the sandbox (not the program) failed, or the grader broke. TRL reads None as
  "no reward" (NaN, left out of the group's statistics) instead of scoring an infrastructure fault as a wrong answer.

Which tests (`tests`): `generated` (default; the hidden tests of `codelora.data.generated_tests`, never shown to the
model), `examples` (the statement's worked examples that a reference solution passes: they are *in the prompt*, so a
policy rewarded on them can learn to print them; choose it only knowingly), or `all` (both). A problem that has no
test of the chosen kind is refused when the reward is made, never silently rewarded.

A completion that forges a verdict, floods its output, forks, sleeps or tries to escape gets the verdict `score`
would give it (the sandbox's and grader's defences, tested in tests/test_judge.py and tests/test_reward.py); the
reward process is not the program's process, so nothing the program prints is read as a verdict.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from codelora.sandbox.execution import COMPILE_SANDBOX_ERROR, run_program
from codelora.sandbox.grading import (
    ACCEPTED,
    COMPILE_ERROR,
    OUTPUT_CAP,
    SANDBOX_ERROR,
    WRONG_ANSWER,
    check_syntax,
    execution_verdict,
    grade_stdio_problem,
    outputs_match,
)

__all__ = [
    "KINDS",
    "TESTS",
    "RewardResult",
    "SandboxReward",
    "batch_metrics",
    "completion_text",
    "grade_completions",
    "make_reward",
    "problem_tests",
]

TESTS = ("generated", "examples", "all")
KINDS = ("binary", "fraction")
TIMEOUT = 6.0  # seconds per test: the held-out benchmark's (codelora.data.examples.REFERENCE_TIMEOUT)
MEMORY_MB = 1024  # MiB per program: the held-out benchmark's
_SANDBOX_COMPILE = COMPILE_SANDBOX_ERROR  # compile_in_sandbox's text when the sandbox, not the code, failed


@dataclass(frozen=True)
class RewardResult:
    """One completion's grade.

    reward: 1.0/0.0 (binary), passed/total (fraction), None (no verdict: sandbox or grader failure). verdict: score's
    verdict (codelora.sandbox.grading.VERDICTS: accepted, or the first failing test's), `sandbox_error` when reward is
    None. passed / total: tests passed (binary: up to the first failure) / tests of the problem. seconds: wall time
    of this completion's sandbox runs (0 for a program identical to an earlier one of the batch: it ran once).
    code_found: whether the extraction found a program (an answer without one is still run, as score runs it:
    usually a wrong answer). detail: the first failure's detail, truncated.
    """

    reward: float | None
    verdict: str
    passed: int
    total: int
    seconds: float
    code_found: bool
    detail: str = ""


def completion_text(completion: Any) -> str:
    """The answer text of one TRL completion: a string (standard format), or a list of chat messages
    (conversational format: the assistant messages' contents, joined by newlines). TypeError for anything else."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if isinstance(completion, list) and all(isinstance(m, dict) for m in completion):
        parts = []
        for m in completion:
            if m.get("role", "assistant") != "assistant":
                continue
            content = m.get("content")
            if isinstance(content, list):  # content blocks: [{"type": "text", "text": ...}]
                content = "".join(b.get("text", "") for b in content if isinstance(b, dict))
            parts.append(content if isinstance(content, str) else "")
        return "\n".join(parts)
    raise TypeError(f"a completion is a string or a list of chat messages, not {type(completion).__name__}")


def problem_tests(problem: Mapping[str, Any], tests: str) -> list[dict]:
    """The tests of one problem record ({examples, generated}, as codelora.data.generated_tests writes) that
    `tests` chooses: generated, examples, or all (examples first). Each test is {input, output}."""
    if tests not in TESTS:
        raise ValueError(f"tests={tests!r}: choose from {', '.join(TESTS)}")
    examples = list(problem.get("examples") or [])
    generated = list(problem.get("generated") or [])
    chosen = {"examples": examples, "generated": generated, "all": examples + generated}[tests]
    return [{"input": t["input"], "output": t["output"]} for t in chosen]


class SandboxReward:
    """A TRL reward function (async: TRL >= 1.x runs it on its event loop, concurrently with other async rewards):
    `await reward(prompts, completions, problem_id=[...], **columns) -> list[float | None]`, one value per
    completion. `grade(problem_ids, completions)` is the same grading, synchronous, returning RewardResults.

    problems: problem id -> record with `examples` and/or `generated` test lists ({input, output}), e.g.
    `codelora.data.generated_tests.load_problems(...)`. tests / kind: see the module docstring. workers: programs run
    at once (default: the number of cores); the worker threads, each with its own warm sandbox, live as long as the
    reward (`close()` ends them). timeout: seconds per test; memory_mb: MiB per program; output_limit: bytes of
    stdout read. on_grade: called with the list of RewardResults of each batch (metrics). ValueError for an unknown
    tests/kind, or when a problem has no test of the chosen kind.

    With TRL, the batch's verdict counts, pass rate, sandbox seconds and the share without verdict are also logged
    through TRL's `log_metric` (names `sandbox/...`), and each completion's verdict through `log_extra`.
    """

    def __init__(
        self,
        problems: Mapping[str, Mapping[str, Any]],
        *,
        tests: str = "generated",
        kind: str = "binary",
        workers: int | None = None,
        timeout: float = TIMEOUT,
        memory_mb: int = MEMORY_MB,
        output_limit: int = OUTPUT_CAP,
        on_grade: Callable[[list[RewardResult]], None] | None = None,
    ) -> None:
        if tests not in TESTS:
            raise ValueError(f"tests={tests!r}: choose from {', '.join(TESTS)}")
        if kind not in KINDS:
            raise ValueError(f"kind={kind!r}: choose from {', '.join(KINDS)}")
        if not timeout or timeout <= 0 or memory_mb <= 0:
            raise ValueError(f"timeout ({timeout}) and memory_mb ({memory_mb}) must be > 0")
        self.tests, self.kind = tests, kind
        self.timeout, self.memory_mb, self.output_limit = float(timeout), int(memory_mb), int(output_limit)
        self.workers = int(workers or os.cpu_count() or 1)
        self.on_grade = on_grade
        self.problems: dict[str, list[dict]] = {}
        untested = []
        for pid, rec in problems.items():
            chosen = problem_tests(rec, tests)
            if chosen:
                self.problems[str(pid)] = chosen
            else:
                untested.append(str(pid))
        if untested:
            raise ValueError(
                f"{len(untested)} problem(s) have no {tests} tests (first: {', '.join(untested[:3])}); "
                "leave them out of the training set (a problem without tests rewards any program)"
            )
        self.__name__ = f"sandbox_{kind}"  # TRL's name for the reward in its logs (rewards/<name>/mean)
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    # --------------------------------------------------------------------------------------------------- TRL API

    async def __call__(self, prompts: list, completions: list, problem_id: list | None = None, **columns) -> list:
        results = await asyncio.to_thread(self.grade, problem_id, completions)
        self._log(results, columns)
        return [r.reward for r in results]

    def grade(self, problem_ids: Iterable | None, completions: Iterable) -> list[RewardResult]:
        """RewardResults of `completions` (strings or chat-message lists), the i-th graded against problem_ids[i]'s
        tests, all at once on the worker threads. ValueError when problem_ids is missing (the dataset needs a
        `problem_id` column), of another length, or names a problem this reward has no tests for."""
        completions = list(completions)
        if problem_ids is None:
            raise ValueError("the reward needs the dataset's `problem_id` column (one problem id per prompt)")
        problem_ids = [str(p) for p in problem_ids]
        if len(problem_ids) != len(completions):
            raise ValueError(f"{len(completions)} completions but {len(problem_ids)} problem ids")
        unknown = sorted({p for p in problem_ids if p not in self.problems})
        if unknown:
            raise ValueError(f"no {self.tests} tests for problem id(s) {', '.join(unknown[:3])} (not in the reward)")
        from codelora.generation.extract import extract

        jobs: dict[tuple[str, str], Any] = {}  # identical programs of one problem (a GRPO group) are run once
        found = []
        for pid, comp in zip(problem_ids, completions, strict=True):
            got = extract(completion_text(comp), "program")
            found.append((pid, got.code, got.found))
            jobs.setdefault((pid, got.code), None)
        pool = self._executor()
        futures = {key: pool.submit(self._grade_one, *key) for key in jobs}
        out, counted = [], set()
        for pid, code, was_found in found:
            res = futures[(pid, code)].result()
            seconds = 0.0 if (pid, code) in counted else res.seconds  # a program run once is timed once
            counted.add((pid, code))
            out.append(RewardResult(res.reward, res.verdict, res.passed, res.total, seconds, was_found, res.detail))
        if self.on_grade is not None:
            self.on_grade(out)
        return out

    def close(self) -> None:
        """End the worker threads (and so their sandboxes)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def __del__(self) -> None:  # best effort; close() is the way
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False)

    # ---------------------------------------------------------------------------------------------------- inside

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="codelora-reward")
            return self._pool

    def _grade_one(self, pid: str, code: str) -> RewardResult:
        tests = self.problems[pid]
        t0 = time.monotonic()
        try:
            if self.kind == "binary":
                res = self._binary(code, tests)
            else:
                res = self._fraction(code, tests)
        except Exception as e:  # noqa: BLE001 - a grader bug is no verdict, not a wrong answer
            res = _no_verdict(f"{type(e).__name__}: {e}")
        return RewardResult(res[0], res[1], res[2], len(tests), round(time.monotonic() - t0, 4), True, res[3])

    def _binary(self, code: str, tests: list[dict]) -> tuple:
        """score's own grading call (`Heldout.grade`): the verdict of the first failing test, or accepted."""
        g = grade_stdio_problem(code, tests, self.timeout, self.memory_mb, None, output_limit=self.output_limit)
        detail = str((g.failure or {}).get("detail", ""))
        if g.verdict == SANDBOX_ERROR or (g.verdict == COMPILE_ERROR and detail.startswith(_SANDBOX_COMPILE)):
            return _no_verdict(detail)
        passed = sum(1 for t in g.tests if t.verdict == ACCEPTED)
        return (1.0 if g.passed else 0.0), g.verdict, passed, detail

    def _fraction(self, code: str, tests: list[dict]) -> tuple:
        """Every test on its own: the share accepted. Same rules as grade_stdio_problem test by test (compile once,
        then run, limit verdicts from the sandbox, whole-output comparison); the verdict is the first failing
        test's, as score's."""
        syntax = check_syntax(code, self.timeout, self.memory_mb)
        if syntax:
            if syntax.startswith(_SANDBOX_COMPILE):
                return _no_verdict(syntax)
            return 0.0, COMPILE_ERROR, 0, syntax
        passed, first, detail = 0, None, ""
        for t in tests:
            res = run_program(
                code, t["input"], timeout=self.timeout, memory_mb=self.memory_mb, output_limit=self.output_limit
            )
            verdict = execution_verdict(res)
            if verdict == SANDBOX_ERROR:
                return _no_verdict(res.sandbox_error or "")
            if verdict is None and not outputs_match(res.stdout, t["output"]):
                verdict = WRONG_ANSWER
            if verdict is None:
                passed += 1
            elif first is None:
                first, detail = verdict, (res.stderr[-300:] if verdict != WRONG_ANSWER else "")
        return passed / len(tests), first or ACCEPTED, passed, detail

    def _log(self, results: list[RewardResult], columns: dict) -> None:
        log_metric, log_extra = columns.get("log_metric"), columns.get("log_extra")
        if callable(log_metric) and results:
            for name, value in batch_metrics(results).items():
                log_metric(f"sandbox/{name}", value)
        if callable(log_extra):
            log_extra("verdict", [r.verdict for r in results])


def _no_verdict(detail: str) -> tuple:
    return None, SANDBOX_ERROR, 0, detail[:300]


def batch_metrics(results: list[RewardResult]) -> dict[str, float]:
    """Per batch: pass_rate (share accepted among completions with a verdict), no_verdict (share None),
    seconds (sandbox wall seconds, summed), code_found (share), and verdict_<v> counts."""
    graded = [r for r in results if r.reward is not None]
    out = {
        "pass_rate": sum(r.verdict == ACCEPTED for r in graded) / len(graded) if graded else 0.0,
        "no_verdict": (len(results) - len(graded)) / len(results) if results else 0.0,
        "seconds": round(sum(r.seconds for r in results), 4),
        "code_found": sum(r.code_found for r in results) / len(results) if results else 0.0,
    }
    for v, n in Counter(r.verdict for r in results).items():
        out[f"verdict_{v}"] = float(n)
    return out


def make_reward(
    problems: Mapping[str, Mapping[str, Any]],
    tests: str = "generated",
    kind: str = "binary",
    workers: int | None = None,
    **options: Any,
) -> SandboxReward:
    """The TRL reward function: `SandboxReward(problems, tests=, kind=, workers=, **options)` (options: timeout,
    memory_mb, output_limit, on_grade; see SandboxReward). Pass it as `GRPOTrainer(reward_funcs=[reward], ...)`; the
    training dataset needs a `problem_id` column naming the problem of each prompt."""
    return SandboxReward(problems, tests=tests, kind=kind, workers=workers, **options)


def grade_completions(
    problems: Mapping[str, Mapping[str, Any]],
    problem_ids: Iterable,
    completions: Iterable,
    tests: str = "generated",
    kind: str = "binary",
    workers: int | None = None,
    **options: Any,
) -> list[RewardResult]:
    """Grade completions without TRL: RewardResults, the i-th against problem_ids[i] (see SandboxReward.grade)."""
    reward = SandboxReward(problems, tests=tests, kind=kind, workers=workers, **options)
    try:
        return reward.grade(problem_ids, completions)
    finally:
        reward.close()
