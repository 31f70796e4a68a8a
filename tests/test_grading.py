"""Grading rules (LiveCodeBench output comparison, call-based, verdicts) and problem decoding."""

import base64
import os
import pickle
import zlib
from pathlib import Path

import pytest

from codelora.benchmarks import livecodebench as lcb
from codelora.errors import UserError
from codelora.sandbox.grading import (
    check_syntax,
    grade_call_problem,
    grade_humaneval,
    grade_stdio_problem,
    outputs_match,
)

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize(
    "got,expected,ok",
    [
        ("3\n", "3", True),
        ("  3  \n\n", "3\n", True),  # whole output stripped
        ("1 2\n 3 \n", "1 2\n3", True),  # each line stripped
        ("1\n2\n", "1\n2\n3\n", False),  # line count must match
        ("0.50", "0.5", True),  # Decimal equality
        ("0.333333", "0.3333333333", False),  # no tolerance by default
        ("1e3", "1000", True),
        ("1  2", "1 2", True),  # tokens compared as Decimal lists
        ("1 2 3", "1 2", False),
        ("Yes", "YES", False),  # case-sensitive
        ("yes", "yes", True),
        ("a 1", "a 1.0", False),  # a non-numeric token: exact comparison only
        ("", "", True),
    ],
)
def test_outputs_match(got, expected, ok):
    assert outputs_match(got, expected) is ok


def test_tolerance_flag():
    assert not outputs_match("0.333333", "0.3333333333")
    assert outputs_match("0.333333", "0.3333333333", tolerance=1e-6)
    assert not outputs_match("0.33", "0.3333333333", tolerance=1e-6)


def test_check_syntax_does_not_execute(tmp_path):
    marker = tmp_path / "x"
    assert check_syntax(f"open({str(marker)!r}, 'w')") is None
    assert not marker.exists()
    assert "SyntaxError" in check_syntax("def f(:\n  pass")


TESTS = [{"input": "1 2\n", "output": "3\n"}, {"input": "5 5\n", "output": "10\n"}]


def test_stdio_accepted():
    r = grade_stdio_problem("a,b=map(int,input().split())\nprint(a+b)", TESTS, timeout=5)
    assert r.verdict == "accepted" and len(r.tests) == 2


def test_stdio_wrong_answer_stops_at_first_failure():
    r = grade_stdio_problem("print(3)", [*TESTS, {"input": "0 0", "output": "0"}], timeout=5)
    assert r.verdict == "wrong_answer"
    assert [t.verdict for t in r.tests] == ["accepted", "wrong_answer"]
    assert r.failure["expected"] == "10\n" and r.failure["got"].strip() == "3"


def test_stdio_compile_error():
    r = grade_stdio_problem("print(", TESTS)
    assert r.verdict == "compile_error" and r.tests == []


def test_stdio_runtime_error_and_eof():
    r = grade_stdio_problem("input()\ninput()\nprint(1)", [{"input": "1\n", "output": "1"}], timeout=5)
    assert r.verdict == "runtime_error"
    assert "EOFError" in r.failure["detail"]


def test_stdio_timeout():
    r = grade_stdio_problem("while True: pass", TESTS, timeout=1)
    assert r.verdict == "time_limit_exceeded" and len(r.tests) == 1


def test_call_based_solution_class_and_tuple():
    code = "class Solution:\n    def pair(self, a, b):\n        return (b, a)\n"
    tests = [{"input": "1\n2", "output": "[2, 1]"}, {"input": '[1]\n"x"', "output": '["x", [1]]'}]
    r = grade_call_problem(code, tests, "pair", timeout=5)
    assert r.verdict == "accepted", r.failure


def test_call_based_plain_function_and_wrong_answer():
    code = "def pair(a, b):\n    print('noise')\n    return [a, b]\n"
    r = grade_call_problem(code, [{"input": "1\n2", "output": "[2, 1]"}], "pair", timeout=5)
    assert r.verdict == "wrong_answer" and r.failure["got"] == "[1, 2]"


def test_call_based_cannot_forge_verdict():
    code = 'import sys\ndef f(a):\n    sys.__stdout__.write(\'{"ok": true, "got": "1"}\\n\')\n    return 0\n'
    r = grade_call_problem(code, [{"input": "1", "output": "1"}], "f", timeout=5)
    assert r.verdict == "wrong_answer"


def test_call_based_exit_is_runtime_error():
    r = grade_call_problem("def f(a):\n    raise SystemExit(0)\n", [{"input": "1", "output": "1"}], "f", timeout=5)
    assert r.verdict == "runtime_error"


def test_call_based_exception():
    r = grade_call_problem("def f(a):\n    return 1/0\n", [{"input": "1", "output": "1"}], "f", timeout=5)
    assert r.verdict == "runtime_error" and "ZeroDivisionError" in r.failure["detail"]


def test_humaneval_verdicts():
    problem = {"prompt": "def f(x):\n", "test": "def check(c):\n    assert c(2) == 4\n", "entry_point": "f"}
    assert grade_humaneval(problem, "    return x * 2\n").verdict == "accepted"
    assert grade_humaneval(problem, "    return x\n").verdict == "wrong_answer"
    assert grade_humaneval(problem, "    return x +\n").verdict == "compile_error"
    assert grade_humaneval(problem, "    while True: pass\n", timeout=1).verdict == "time_limit_exceeded"


def test_lcb_decode_fixture():
    probs, skipped = lcb.load_problems(FIXTURES / "lcb_problems.jsonl", skip_untested=True)
    assert len(probs["stdin_sum"].tests) == 3 and not probs["stdin_sum"].call_based
    assert probs["call_twosum"].call_based and probs["call_twosum"].func_name == "pair"
    assert skipped == ["bad_private", "evil_pickle"] and "bad_private" not in probs
    with pytest.raises(UserError, match="question_id bad_private: cannot decode tests"):
        lcb.load_problems(FIXTURES / "lcb_problems.jsonl")
    public, _ = lcb.load_problems(FIXTURES / "lcb_problems.jsonl", {"stdin_sum"}, tests="public")
    assert len(public["stdin_sum"].tests) == 1  # the course's protocol: public tests only


def test_lcb_evil_pickle_refused():
    marker = Path("/tmp/codelora_evil_pickle_marker")
    if marker.exists():
        marker.unlink()
    with pytest.raises(UserError, match="evil_pickle: cannot decode tests.*refused global"):
        lcb.load_problems(FIXTURES / "lcb_problems.jsonl", {"evil_pickle"})
    assert not marker.exists()


def test_safe_unpickle_refuses_reduce_on_builtins():
    blob = base64.b64encode(zlib.compress(pickle.dumps(os.getcwd))).decode()
    with pytest.raises(pickle.UnpicklingError):
        lcb.decode_private_tests(blob)


def test_lcb_grade_fixture_problems():
    probs, _ = lcb.load_problems(FIXTURES / "lcb_problems.jsonl", {"stdin_sum", "call_twosum"})
    ok = "a, b = map(int, input().split())\nprint(a + b)\n"
    assert lcb.grade(probs["stdin_sum"], ok, timeout=5).verdict == "accepted"
    assert lcb.grade(probs["stdin_sum"], "print(3)", timeout=5).verdict == "wrong_answer"
    code = "class Solution:\n    def pair(self, a: int, b: int) -> List[int]:\n        return [b, a]\n"
    assert lcb.grade(probs["call_twosum"], code, timeout=5).verdict == "accepted"  # typing header
