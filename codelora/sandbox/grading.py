"""Grading of programs against tests, following LiveCodeBench's rules.

stdin/stdout tests: the whole output is stripped and split into lines, each line stripped;
line counts must match; lines must be equal, or else every whitespace-separated token of both
lines must parse as a Decimal and the Decimal lists must be equal (0.50 == 0.5). Comparison is
case-sensitive. An optional `tolerance` (off by default) allows |a-b| <= tolerance per number.

Call-based tests: each input line is `json.loads`ed into an argument; the method `func_name`
of class `Solution` (if defined) or the function `func_name` is called; a tuple result becomes a
list and is compared with `==` to the `json.loads`ed expected output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from codelora.sandbox.execution import ExecResult, run_program

ACCEPTED = "accepted"
WRONG_ANSWER = "wrong_answer"
TIME_LIMIT = "time_limit_exceeded"
MEMORY_LIMIT = "memory_limit_exceeded"
OUTPUT_LIMIT = "output_limit_exceeded"
RUNTIME_ERROR = "runtime_error"
COMPILE_ERROR = "compile_error"
SANDBOX_ERROR = "sandbox_error"
VERDICTS = (
    ACCEPTED,
    WRONG_ANSWER,
    TIME_LIMIT,
    MEMORY_LIMIT,
    OUTPUT_LIMIT,
    RUNTIME_ERROR,
    COMPILE_ERROR,
    SANDBOX_ERROR,
)
TRUNCATE = 300

# LiveCodeBench prepends these imports to every solution.
IMPORT_HEADER = (
    "from string import *\nfrom re import *\nfrom datetime import *\nfrom collections import *\n"
    "from heapq import *\nfrom bisect import *\nfrom copy import *\nfrom math import *\n"
    "from random import *\nfrom statistics import *\nfrom itertools import *\n"
    "from functools import *\nfrom operator import *\nfrom io import *\nfrom sys import *\n"
    "from json import *\nfrom builtins import *\nfrom typing import *\nimport string\nimport re\n"
    "import datetime\nimport collections\nimport heapq\nimport bisect\nimport copy\nimport math\n"
    "import random\nimport statistics\nimport itertools\nimport functools\nimport operator\n"
    "import io\nimport sys\nimport json\nsys.setrecursionlimit(50000)\n"
)


@dataclass
class TestOutcome:
    verdict: str
    time: float


@dataclass
class GradeResult:
    verdict: str
    tests: list[TestOutcome] = field(default_factory=list)
    failure: dict | None = None  # first failure: input/expected/got (truncated), detail

    @property
    def passed(self) -> bool:
        return self.verdict == ACCEPTED


def truncate(s: str, n: int = TRUNCATE) -> str:
    s = str(s)
    return s if len(s) <= n else s[:n] + f"...[{len(s) - n} more chars]"


def check_syntax(code: str) -> str | None:
    """Return an error message if `code` does not compile (compile only; nothing is executed)."""
    try:
        compile(code, "<solution>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, OverflowError, MemoryError, RecursionError) as e:
        return f"{type(e).__name__}: {e}"
    return None


def _decimals(line: str) -> list[Decimal] | None:
    try:
        return [Decimal(tok) for tok in line.split()]
    except (InvalidOperation, ValueError):
        return None


def outputs_match(got: str, expected: str, tolerance: float | None = None) -> bool:
    got_lines = [ln.strip() for ln in got.strip().split("\n")]
    exp_lines = [ln.strip() for ln in expected.strip().split("\n")]
    if len(got_lines) != len(exp_lines):
        return False
    for g, e in zip(got_lines, exp_lines, strict=True):
        if g == e:
            continue
        gd, ed = _decimals(g), _decimals(e)
        if gd is None or ed is None or len(gd) != len(ed):
            return False
        if tolerance is None:
            if gd != ed:
                return False
        else:
            try:
                if any(abs(a - b) > Decimal(str(tolerance)) for a, b in zip(gd, ed, strict=True)):
                    return False
            except (InvalidOperation, ValueError):  # nan/inf
                if gd != ed:
                    return False
    return True


def execution_verdict(res: ExecResult) -> str | None:
    """Verdict for a failed run, or None if the program exited 0 normally."""
    if res.sandbox_error:
        return SANDBOX_ERROR
    if res.output_limit_exceeded:
        return OUTPUT_LIMIT
    if res.timed_out:
        return TIME_LIMIT
    if res.memory_error:
        return MEMORY_LIMIT
    if res.returncode != 0:
        return RUNTIME_ERROR
    return None


def _fail(verdict: str, inp: str, expected: str, got: str, detail: str = "") -> dict:
    return {
        "verdict": verdict,
        "input": truncate(inp),
        "expected": truncate(expected),
        "got": truncate(got),
        "detail": truncate(detail, 1000),
    }


def grade_stdio_problem(
    code: str,
    tests: list[dict],
    timeout: float = 6.0,
    memory_mb: int = 1024,
    tolerance: float | None = None,
    header: str = "",
) -> GradeResult:
    """Run `code` once per test ({input, output}) and stop at the first failure."""
    syntax = check_syntax(code)
    if syntax:
        return GradeResult(COMPILE_ERROR, [], _fail(COMPILE_ERROR, "", "", "", syntax))
    program = header + code
    outcomes: list[TestOutcome] = []
    for t in tests:
        inp, expected = str(t.get("input", "")), str(t.get("output", ""))
        res = run_program(program, inp, timeout=timeout, memory_mb=memory_mb)
        verdict = execution_verdict(res)
        if verdict is None and not outputs_match(res.stdout, expected, tolerance):
            verdict = WRONG_ANSWER
        outcomes.append(TestOutcome(verdict or ACCEPTED, round(res.elapsed, 4)))
        if verdict:
            detail = res.sandbox_error or res.stderr[-1000:]
            return GradeResult(verdict, outcomes, _fail(verdict, inp, expected, res.stdout, detail))
    return GradeResult(ACCEPTED, outcomes)


# Harness for call-based tests: reads {"inputs": str, "output": str, "func_name": str} as JSON
# from stdin; the solution is in solution.py. The verdict line is prefixed by a nonce so user
# prints cannot forge it.
_CALL_HARNESS = r"""
import io, json, sys
_real_stdout = sys.stdout
_req = json.loads(sys.stdin.read())
_nonce = _req["nonce"]
def _emit(d):
    _real_stdout.write("\n" + _nonce + json.dumps(d) + "\n")
    _real_stdout.flush()
sys.stdin = io.StringIO("")
sys.stdout = io.StringIO()
_ns = {"__name__": "__main__"}
exec(compile(open("solution.py", encoding="utf-8").read(), "solution.py", "exec"), _ns)
_fn_name = _req["func_name"]
if "Solution" in _ns:
    _fn = getattr(_ns["Solution"](), _fn_name)
else:
    _fn = _ns[_fn_name]
_args = [json.loads(line) for line in _req["inputs"].split("\n") if line.strip()]
_expected = json.loads(_req["output"])
_got = _fn(*_args)
if isinstance(_got, tuple):
    _got = list(_got)
sys.stdout = _real_stdout
_ok = _got == _expected
try:
    _r = repr(_got)[:1000]
except Exception:
    _r = "<unrepresentable>"
_emit({"ok": bool(_ok), "got": _r})
"""


def grade_call_problem(
    code: str,
    tests: list[dict],
    func_name: str,
    timeout: float = 6.0,
    memory_mb: int = 1024,
    header: str = IMPORT_HEADER,
) -> GradeResult:
    """Call-based grading: one sandboxed process per test, stop at first failure."""
    syntax = check_syntax(code)
    if syntax:
        return GradeResult(COMPILE_ERROR, [], _fail(COMPILE_ERROR, "", "", "", syntax))
    import secrets

    outcomes: list[TestOutcome] = []
    for t in tests:
        inp, expected = str(t.get("input", "")), str(t.get("output", ""))
        nonce = "@@CODELORA-" + secrets.token_hex(8) + "@@"
        req = json.dumps({"nonce": nonce, "inputs": inp, "output": expected, "func_name": func_name})
        res = run_program(
            _CALL_HARNESS,
            req,
            timeout=timeout,
            memory_mb=memory_mb,
            extra_files={"solution.py": header + code},
        )
        verdict = execution_verdict(res)
        got = ""
        if verdict is None:
            lines = [ln for ln in res.stdout.split("\n") if ln.startswith(nonce)]
            try:
                report = json.loads(lines[-1][len(nonce) :])
                got = report["got"]
                verdict = None if report["ok"] else WRONG_ANSWER
            except (IndexError, ValueError, KeyError, TypeError):
                verdict = RUNTIME_ERROR  # e.g. the program called exit() before returning
        outcomes.append(TestOutcome(verdict or ACCEPTED, round(res.elapsed, 4)))
        if verdict:
            detail = res.sandbox_error or res.stderr[-1000:]
            return GradeResult(verdict, outcomes, _fail(verdict, inp, expected, got, detail))
    return GradeResult(ACCEPTED, outcomes)


def grade_humaneval(problem: dict, completion: str, timeout: float = 3.0, memory_mb: int = 1024) -> GradeResult:
    program = problem["prompt"] + completion + "\n" + problem["test"] + "\n" + f"check({problem['entry_point']})"
    syntax = check_syntax(program)
    if syntax:
        return GradeResult(COMPILE_ERROR, [], _fail(COMPILE_ERROR, "", "", "", syntax))
    res = run_program(program, "", timeout=timeout, memory_mb=memory_mb)
    verdict = execution_verdict(res)
    if verdict == RUNTIME_ERROR and "AssertionError" in res.stderr[-2000:]:
        verdict = WRONG_ANSWER
    outcomes = [TestOutcome(verdict or ACCEPTED, round(res.elapsed, 4))]
    if verdict:
        detail = res.sandbox_error or res.stderr[-1000:]
        return GradeResult(verdict, outcomes, _fail(verdict, "", "", res.stdout, detail))
    return GradeResult(ACCEPTED, outcomes)
