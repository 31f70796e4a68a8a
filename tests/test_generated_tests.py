"""codelora.data.generated_tests: hidden tests from mutated example inputs, kept only where every reference solution
finishes and all agree; seeded and reproducible; cached per problem in the run folder."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from codelora.config import load_config
from codelora.data import generated_tests as G
from codelora.data.load import load_rows
from codelora.data.split import split_rows, write_split_json
from codelora.evaluation import reward as R
from codelora.sandbox.execution import run_program
from codelora.sandbox.grading import grade_stdio_problem, outputs_match

SUM_STATEMENT = (
    "Sum.\n\nGiven n integers, print their sum.\n\nExamples\n\nInput\n\n3\n1 2 3\n\nOutput\n\n6\n\n"
    "Input\n\n2\n10 -4\n\nOutput\n\n6\n"
)
SUM_REF = "n = int(input())\nprint(sum(map(int, input().split())))\n"
SUM_REF_2 = "import sys\nd = sys.stdin.read().split()\nprint(sum(int(x) for x in d[1:1 + int(d[0])]))\n"


def _problem(task_id="sum", refs=(SUM_REF, SUM_REF_2), statement=SUM_STATEMENT):
    from codelora.data.examples import check_examples

    (p,) = check_examples([{"task_id": task_id, "prompt": statement, "references": list(refs)}], workers=2)
    return p


def test_candidates_are_reproducible_from_the_seed():
    inputs = ["3\n1 2 3\n", "2\n10 -4\n"]
    a, _ = G.candidate_inputs("t", inputs, 8, seed=0)
    b, _ = G.candidate_inputs("t", inputs, 8, seed=0)
    c, _ = G.candidate_inputs("t", inputs, 8, seed=1)
    assert a == b and len(a) == 8
    assert [x["input"] for x in a] != [x["input"] for x in c]
    assert all(x["input"] not in inputs for x in a) and len({x["input"] for x in a}) == 8
    assert all(x["made"]["seed"] == 0 and x["made"]["ops"] for x in a)
    # the problem's own generator: other problems (or their order) do not change its candidates
    assert G.candidate_inputs("t", inputs, 8, seed=0)[0] == a


def test_mutations_keep_the_shape_of_the_input():
    rng = random.Random(3)
    for _ in range(200):
        text, ops = G.mutate("3\n1 2 3\n", rng, {}, set())
        lines = text.split("\n")
        assert ops and lines[0] == "3" and len(lines[1].split()) == 3 and text.endswith("\n")
        grid, ops = G.mutate("2 3\n#.#\n..#\n", rng, {"other": "#."}, set())
        rows = grid.split("\n")
        assert rows[0] == "2 3" and [len(r) for r in rows[1:3]] == [3, 3] and set("".join(rows[1:3])) <= {"#", "."}
        words, _ = G.mutate("4\npush 1\npush 7\npop\npop\n", rng, {"lower": "hopsu"}, {"push", "pop"})
        cmds = [ln.split()[0] for ln in words.split("\n")[1:] if ln]
        assert sorted(cmds) == ["pop", "pop", "push", "push"]  # repeated words are commands: never rewritten
    assert G.mutate("hello\n", random.Random(0), {"lower": "ehlo"}, set())[0] != "hello\n"
    assert G.mutate("\n", random.Random(0), {}, set()) == ("\n", [])


def test_every_kept_test_is_agreed_by_all_references():
    # the second reference is wrong whenever the sum exceeds 7, yet passes both examples (sums 6 and 6)
    wrong_above_7 = "n = int(input())\ns = sum(map(int, input().split()))\nprint(s if s <= 7 else s + 1)\n"
    crashes_on_negatives = "n = int(input())\na = list(map(int, input().split()))\nassert min(a) >= -4\nprint(sum(a))\n"
    p = _problem(refs=(SUM_REF, wrong_above_7, crashes_on_negatives))
    G.generate_tests([p], seed=0, candidates=30, workers=2)
    assert p["correct_references"] == 3 and p["wrong_references"] == 0
    assert p["generated"], "some mutated inputs have sums <= 7 and no value below -4"
    assert p["dropped"].get("references_disagree", 0) > 0 and p["dropped"].get("reference_runtime_error", 0) > 0
    for t in p["generated"]:
        outs = [run_program(ref, t["input"]).stdout for ref in (SUM_REF, wrong_above_7, crashes_on_negatives)]
        assert all(outputs_match(o, t["output"]) for o in outs), t
        assert t["references"] == 3 and t["input"] not in {e["input"] for e in p["tests"]}
    assert p["candidates"] == len(p["generated"]) + sum(v for k, v in p["dropped"].items() if k != "duplicate")


def test_a_reference_failing_the_examples_is_left_out():
    p = _problem(refs=(SUM_REF, "print(6)\n"))  # passes both examples (both print 6)... so it is kept
    G.generate_tests([p], seed=0, candidates=10, workers=2)
    assert p["correct_references"] == 2 and p["dropped"].get("references_disagree", 0) > 0
    q = _problem(refs=(SUM_REF, "print(7)\n"))  # fails the examples: wrong, not a voter
    G.generate_tests([q], seed=0, candidates=10, workers=2)
    assert q["correct_references"] == 1 and q["wrong_references"] == 1 and len(q["generated"]) == 10


def test_printing_the_example_outputs_passes_examples_only_and_fails_generated():
    p = _problem()
    G.generate_tests([p], seed=0, candidates=10, workers=2)
    literal = "n = int(input())\nprint(6)\n"  # both example outputs are 6
    assert grade_stdio_problem(literal, p["tests"]).passed
    assert not grade_stdio_problem(literal, p["generated"]).passed
    record = {"examples": p["tests"], "generated": p["generated"]}
    rewards = {
        tests: R.grade_completions({"sum": record}, ["sum"], [f"```python\n{literal}```"], tests=tests)[0].reward
        for tests in ("examples", "generated")
    }
    assert rewards == {"examples": 1.0, "generated": 0.0}
    assert grade_stdio_problem(SUM_REF_2, p["generated"]).passed  # a real solution passes them


@pytest.fixture
def sample_run(tmp_path):
    rows, rep = load_rows("sample", target="solution")
    split = split_rows(
        rows, seed=42, valid_fraction=0.05, test_fraction=0.1, source=rep["source"], mode="auto", conflicts="held_out"
    )
    write_split_json(tmp_path / "split.json", split.rows)
    return tmp_path


def test_build_tests_caches_per_problem_and_rebuilds_what_changed(sample_run, capsys, monkeypatch):
    cfg = load_config("demo")
    path, recs, report = G.build_tests(sample_run, cfg, "test", workers=2)
    line = capsys.readouterr().err
    assert path == sample_run / "tests" / "test.jsonl" and path.is_file()
    assert f"{report['gained']} of {report['problems']} problems gained {report['generated_tests']}" in line
    assert report["problems"] == 9 and report["gained"] >= 8 and report["built"] == 9
    assert report["generated_tests"] == sum(len(r["generated"]) for r in recs)
    stored = json.loads((sample_run / "tests" / "test_report.json").read_text())
    assert stored == report
    for r in recs:
        for t in r["generated"]:
            assert t["made"]["seed"] == 0 and t["references"] == r["correct_references"] >= 1
    before = path.read_bytes()

    def no_sandbox(*a, **k):
        raise AssertionError("a cached record was rebuilt")

    with monkeypatch.context() as m:
        m.setattr(G, "generate_tests", no_sandbox)
        again = G.build_tests(sample_run, cfg, "test", workers=2)
    assert again[2]["built"] == 0 and again[2]["reused"] == 9 and path.read_bytes() == before

    cfg.tests.seed = 1
    _, recs1, rep1 = G.build_tests(sample_run, cfg, "test", workers=2)
    assert rep1["built"] == 9 and rep1["seed"] == 1
    assert [t["input"] for r in recs1 for t in r["generated"]] != [t["input"] for r in recs for t in r["generated"]]
    cfg.tests.seed = 0
    _, recs0, _ = G.build_tests(sample_run, cfg, "test", workers=2)
    assert [r["generated"] for r in recs0] == [r["generated"] for r in recs]  # reproducible from the seed

    problems = G.load_problems(sample_run, cfg, "test", tests="generated", workers=2)
    assert set(problems) == {r["task_id"] for r in recs if r["generated"]}


def _heldout_set(run, tests, tmp_folder):
    from codelora.benchmarks import get
    from codelora.benchmarks.base import EvalContext
    from codelora.commands import EvalOptions

    ctx = EvalContext(EvalOptions(tests=tests, workers=2), tmp_folder, run, load_config("demo"))
    return get("heldout").problems(ctx)


def test_heldout_grades_on_examples_generated_or_all(sample_run, capsys):
    from codelora.benchmarks import get
    from codelora.benchmarks.heldout import load_heldout

    folder = sample_run / "eval" / "heldout"
    sets = {t: _heldout_set(sample_run, t, folder) for t in (None, "examples", "generated", "all")}
    err = capsys.readouterr().err
    assert "problems gained" in err and "candidate inputs dropped" in err  # the split's report line is printed
    default, ex, gen, both = sets[None], sets["examples"], sets["generated"], sets["all"]
    assert default.info["tests"] == "all" and default.tests == "all" and default.file == folder / "problems-all.jsonl"
    assert ex.info["tests"] == "examples" and ex.tests is None and ex.file == folder / "problems.jsonl"
    assert gen.file == folder / "problems-generated.jsonl" and both.info["generated_tests"] > 0
    by_id = {t: {p.id: p.data["tests"] for p in s.problems} for t, s in sets.items()}
    for pid, tests in by_id["all"].items():
        assert tests == by_id["examples"][pid] + by_id["generated"].get(pid, [])
    # the files are {task_id, tests} problem files that `codelora score --problems` reads
    assert {k: v["tests"] for k, v in load_heldout(gen.file)[0].items()} == by_id["generated"]
    # a program printing each problem's example outputs literally: passes examples, fails the generated tests
    bench = get("heldout")
    settings = bench.settings()
    for p in ex.problems:
        table = {t["input"]: t["output"] for t in p.data["tests"]}
        literal = f"import sys\nprint({table!r}[sys.stdin.read()])\n"
        assert bench.grade(p, literal, settings).passed
        if p.id in by_id["generated"]:
            gen_p = next(q for q in gen.problems if q.id == p.id)
            assert not bench.grade(gen_p, literal, settings).passed


def test_tests_option_is_refused_where_it_means_nothing(sample_run, tmp_path):
    from codelora.benchmarks import get
    from codelora.benchmarks.base import EvalContext
    from codelora.commands import EvalOptions
    from codelora.errors import UserError
    from codelora.evaluation.evaluate import evaluate_model

    ctx = EvalContext(
        EvalOptions(tests="generated", problems=str(tmp_path / "p.jsonl")), tmp_path, None, load_config("demo")
    )
    with pytest.raises(UserError, match="--tests applies with --run"):
        get("heldout").problems(ctx)
    with pytest.raises(UserError, match="--tests applies to heldout only"):
        evaluate_model("tiny-random:qwen2", "humaneval", tmp_path / "out", tests="all")


DEEP8 = Path(__file__).resolve().parents[1].parent / "shared" / "field" / "deep_rows" / "deep8.jsonl"


@pytest.mark.skipif(not DEEP8.is_file(), reason="needs ../shared/field/deep_rows/deep8.jsonl (real Deep-5K rows)")
def test_real_deep_rows_gain_tests_their_reference_reproduces():
    """8 real CodeGen-Deep-5K statements (one reference each; one reference fails its own examples)."""
    from codelora.data.examples import check_examples

    rows = [json.loads(line) for line in DEEP8.read_text().splitlines() if line.strip()]
    probs = [{"task_id": r["id"], "prompt": r["input"], "references": [r["solution"]]} for r in rows]
    check_examples(probs, workers=2)
    G.generate_tests(probs, seed=0, candidates=5, workers=2)
    gained = [p for p in probs if p["generated"]]
    assert len(gained) == sum(1 for p in probs if p["tests"]) >= 6
    for p in gained:
        examples = {t["input"] for t in p["tests"]}
        for t in p["generated"][:2]:
            assert t["input"] not in examples
            assert outputs_match(run_program(p["references"][0], t["input"]).stdout, t["output"])
