"""codelora.evaluation.reward: the RL reward is score's verdict (same extraction, same sandbox, same comparison), None when the
sandbox fails, per-test verdicts for `fraction`, and the examples-only reward's hackability."""

from __future__ import annotations

import asyncio
import inspect

import pytest

from codelora.benchmarks import get
from codelora.benchmarks.base import Problem, Sample
from codelora.evaluation import reward as R
from codelora.evaluation.score import grade_samples
from codelora.generation.extract import extract
from codelora.sandbox import execution

EXAMPLES = [{"input": "1 2\n", "output": "3"}, {"input": "5 5\n", "output": "10"}]
GENERATED = [
    {"input": "7 8\n", "output": "15"},
    {"input": "100 -1\n", "output": "99"},
    {"input": "0 0\n", "output": "0"},
]
PROBLEMS = {"sum": {"examples": EXAMPLES, "generated": GENERATED}}
SUM = "a, b = map(int, input().split())\n"


def _md(code: str) -> str:
    return f"Here is my solution.\n\n```python\n{code}```\n"


# (name, completion): right, wrong, timeout, crash and hostile answers
CORPUS = [
    ("right", _md(SUM + "print(a + b)\n")),
    ("right_no_fence", SUM + "print(a + b)\n"),
    ("right_chat_format", [{"role": "assistant", "content": _md(SUM + "print(a + b)\n")}]),
    ("wrong", _md(SUM + "print(a - b)\n")),
    ("no_code", "I cannot solve this."),
    ("prefix_of_expected", _md(SUM + "print(str(a + b)[:1])\n")),
    ("extra_line", _md(SUM + "print(a + b)\nprint()\nprint('PASSED')\n")),
    ("timeout", _md("while True:\n    pass\n")),
    ("sleep_then_right", _md("import time\ntime.sleep(30)\n" + SUM + "print(a + b)\n")),
    ("crash", _md("raise ValueError('boom')\n")),
    ("syntax_error", _md("def f(:\n")),
    ("exit_before_output", _md("import sys\nsys.exit(0)\n")),
    ("os_exit_after_right", _md(SUM + "print(a + b, flush=True)\nimport os\nos._exit(3)\n")),
    ("forged_verdict_lines", _md("print('accepted')\nprint('All tests PASSED')\nprint('{\"passed\": true}')\n")),
    ("memory_hog", _md("x = b'x' * (2 * 1024 ** 3)\n")),
    ("output_flood", _md("import sys\nwhile True:\n    sys.stdout.write('3' * 65536)\n")),
    ("fork_many", _md("import os\nfor _ in range(200):\n    try:\n        os.fork()\n    except OSError:\n        pass\n")),
    ("kill_parent", _md("import os, signal\nfor pid in (0, 1, os.getppid()):\n    try:\n        os.kill(pid, signal.SIGKILL)\n    except OSError:\n        pass\n")),
    ("reads_host_files", _md("print(open('/etc/shadow').read())\n")),
    ("hardcoded_examples", _md("x = input()\nprint({'1 2': 3, '5 5': 10}.get(x.strip(), 0))\n")),
]  # fmt: skip
TIMEOUT = 2.0
MEMORY_MB = 256  # small, so that the memory hog meets the memory limit well before the time limit


def _score_verdicts(tests: list[dict], completions: list) -> list[str]:
    """What evaluate + score say: extract with the heldout rule, grade_samples with the heldout benchmark."""
    bench = get("heldout")
    probs = {"sum": Problem("sum", {"tests": tests})}
    samples = [
        Sample("sum", i, extract(R.completion_text(c), bench.extraction(None)).code, "corpus")
        for i, c in enumerate(completions)
    ]
    records, _ = grade_samples(bench, probs, samples, bench.settings(timeout=TIMEOUT, memory_mb=MEMORY_MB), workers=2)
    return [r["verdict"] for r in records]


@pytest.fixture(scope="module")
def score_verdicts():
    return _score_verdicts(GENERATED, [c for _, c in CORPUS])


@pytest.mark.parametrize("kind", ["binary", "fraction"])
def test_reward_is_scores_verdict_on_the_corpus(kind, score_verdicts):
    results = R.grade_completions(
        PROBLEMS,
        ["sum"] * len(CORPUS),
        [c for _, c in CORPUS],
        tests="generated",
        kind=kind,
        timeout=TIMEOUT,
        memory_mb=MEMORY_MB,
    )
    for (name, _), res, verdict in zip(CORPUS, results, score_verdicts, strict=True):
        assert res.verdict == verdict, name
        assert res.reward is not None, name
        if kind == "binary" or verdict == "accepted":
            assert res.reward == (1.0 if verdict == "accepted" else 0.0), name
        else:
            assert res.reward == res.passed / res.total < 1.0, name
    by_name = {name: res for (name, _), res in zip(CORPUS, results, strict=True)}
    assert by_name["right"].reward == by_name["right_chat_format"].reward == 1.0
    for name in (
        "prefix_of_expected",
        "extra_line",
        "forged_verdict_lines",
        "hardcoded_examples",
        "os_exit_after_right",
    ):
        assert by_name[name].reward == 0.0 if kind == "binary" else by_name[name].reward < 1.0, name
    assert by_name["timeout"].verdict == "time_limit_exceeded" and by_name["crash"].verdict == "runtime_error"
    assert not by_name["no_code"].code_found


def test_fraction_counts_every_test_a_timeout_costs_only_its_own():
    """One test times out, one crashes: the other tests keep their verdicts (Open-R1's reward zeroes them)."""
    code = (
        "a, b = map(int, input().split())\n"
        "if a == 100:\n    while True:\n        pass\n"
        "if a == 0:\n    raise SystemExit(1)\n"
        "print(a + b)\n"
    )
    frac, binary = (
        R.grade_completions(PROBLEMS, ["sum"], [_md(code)], tests="all", kind=k, timeout=TIMEOUT)[0]
        for k in ("fraction", "binary")
    )
    assert frac.total == 5 and frac.passed == 3 and frac.reward == pytest.approx(3 / 5)
    assert frac.verdict == binary.verdict == "time_limit_exceeded"  # the first failing test's, as score's
    assert binary.reward == 0.0


def test_printing_the_examples_passes_examples_only_and_fails_generated():
    literal = _md("x = input().split()\nprint(3 if x == ['1', '2'] else 10)\n")
    got = {
        tests: R.grade_completions(PROBLEMS, ["sum"], [literal], tests=tests)[0].reward
        for tests in ("examples", "generated", "all")
    }
    assert got == {"examples": 1.0, "generated": 0.0, "all": 0.0}


def _broken_sandbox(monkeypatch):
    class Broken:
        def __init__(self, *a, **k):
            raise OSError("injected: no sandbox")

    monkeypatch.setattr(execution, "_Sandbox", Broken)
    monkeypatch.setattr(execution, "_run_process", lambda *a, **k: pytest.fail("bubblewrap expected here"))


@pytest.mark.parametrize("kind", ["binary", "fraction"])
def test_a_sandbox_failure_is_no_verdict_not_zero(kind, monkeypatch):
    if execution.isolation() != "bwrap":
        pytest.skip("the failure is injected into the bubblewrap sandbox")
    _broken_sandbox(monkeypatch)
    right, wrong = _md(SUM + "print(a + b)\n"), _md(SUM + "print(a - b)\n")
    reward = R.make_reward(PROBLEMS, tests="generated", kind=kind, workers=2)
    try:
        got = asyncio.run(reward(["p", "p"], [right, wrong], problem_id=["sum", "sum"]))
        results = reward.grade(["sum"], [right])
    finally:
        reward.close()
    assert got == [None, None]
    assert results[0].verdict == "sandbox_error" and "injected" in results[0].detail


def test_a_sandbox_failure_on_one_test_voids_the_fraction(monkeypatch):
    """The sandbox fails on the second test only: the share of tests passed is unknown, so no verdict."""
    real = R.run_program
    calls = []

    def flaky(program, stdin="", **kw):
        calls.append(stdin)
        if stdin == GENERATED[1]["input"]:
            return execution.ExecResult(None, "", "", False, False, False, 0.0, sandbox_error="injected")
        return real(program, stdin, **kw)

    monkeypatch.setattr(R, "run_program", flaky)
    (res,) = R.grade_completions(PROBLEMS, ["sum"], [_md(SUM + "print(a + b)\n")], kind="fraction")
    assert res.reward is None and res.verdict == "sandbox_error"


def test_trl_sees_an_async_reward_function_with_its_signature():
    pytest.importorskip("trl")
    from trl.trainer.utils import get_callable_name, is_async_callable

    reward = R.make_reward(PROBLEMS, kind="fraction", workers=1)
    try:
        assert is_async_callable(reward) and get_callable_name(reward) == "sandbox_fraction"
        params = inspect.signature(reward.__call__).parameters
        assert {"prompts", "completions", "problem_id"} <= set(params)
        logged, extra = {}, {}
        out = asyncio.run(
            reward(
                prompts=["p"] * 3,
                completions=[_md(SUM + "print(a + b)\n")] * 2 + [_md("print(-1)\n")],
                completion_ids=[[1], [1], [2]],
                problem_id=["sum"] * 3,
                trainer_state=None,
                log_metric=lambda k, v: logged.__setitem__(k, v),
                log_extra=lambda k, v: extra.__setitem__(k, v),
            )
        )
    finally:
        reward.close()
    assert out == [1.0, 1.0, 0.0]
    assert logged["sandbox/pass_rate"] == pytest.approx(2 / 3) and logged["sandbox/no_verdict"] == 0.0
    assert logged["sandbox/verdict_accepted"] == 2.0 and logged["sandbox/verdict_wrong_answer"] == 1.0
    assert extra["verdict"] == ["accepted", "accepted", "wrong_answer"]


def test_bad_wiring_is_refused():
    with pytest.raises(ValueError, match="no generated tests"):
        R.make_reward({"x": {"examples": EXAMPLES, "generated": []}})
    with pytest.raises(ValueError, match="tests="):
        R.make_reward(PROBLEMS, tests="hidden")
    with pytest.raises(ValueError, match="kind="):
        R.make_reward(PROBLEMS, kind="partial")
    reward = R.make_reward(PROBLEMS, workers=1)
    try:
        with pytest.raises(ValueError, match="problem_id"):
            reward.grade(None, ["x"])
        with pytest.raises(ValueError, match="nope"):
            reward.grade(["nope"], ["x"])
    finally:
        reward.close()


def test_identical_programs_of_a_group_run_once():
    seen = []
    reward = R.make_reward(PROBLEMS, workers=2, on_grade=seen.append)
    right = _md(SUM + "print(a + b)\n")
    try:
        a, b, c = reward.grade(["sum"] * 3, [right, "Again:\n" + right, _md("print(-1)\n")])
    finally:
        reward.close()
    assert (a.reward, b.reward, c.reward) == (1.0, 1.0, 0.0)
    assert a.seconds > 0 and b.seconds == 0.0 and c.seconds > 0  # the same extracted program: graded once
    assert seen == [[a, b, c]]
    assert R.batch_metrics(seen[0])["seconds"] == pytest.approx(a.seconds + c.seconds)
