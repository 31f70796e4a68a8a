"""The two LiveCodeBench protocols on real programs: 287 graded course programs (7 models x 41 problems).

Reads ../shared/field/ (beside the checkout; never copied into the repo) and skips when it is absent.
`--protocol livecodebench` must give LiveCodeBench's own grader's verdict for every program and
`--protocol course` the verdict the course published, for every program.
"""

import json
from pathlib import Path

import pytest

from codelora.benchmarks.protocol import COURSE, LIVECODEBENCH, PROTOCOLS, get_protocol
from codelora.evaluation.score import score

FIELD = Path(__file__).resolve().parents[1].parent / "shared" / "field"
PROGRAMS = FIELD / "course_programs"
PROBLEMS = FIELD / "lcb41" / "lcb41_atcoder_easy_public.jsonl"

needs_field = pytest.mark.skipif(
    not (PROGRAMS / "verdicts.json").is_file() or not PROBLEMS.is_file(),
    reason=f"field data not found at {FIELD} (it lives beside the checkout; absent in a user's clone)",
)


def test_registry():
    assert set(PROTOCOLS) == {"livecodebench", "course"}
    assert get_protocol(None) is LIVECODEBENCH and get_protocol("course") is COURSE
    assert (COURSE.tests, COURSE.comparison, COURSE.timeout, COURSE.memory_mb) == ("public", "exact", 10.0, 512)
    assert (COURSE.prompt, COURSE.extraction, COURSE.max_new_tokens, COURSE.greedy) == (
        "raw",
        "first_python",
        8192,
        True,
    )
    assert (LIVECODEBENCH.tests, LIVECODEBENCH.comparison, LIVECODEBENCH.timeout) == ("public+private", "decimal", 6.0)
    from codelora.errors import UserError

    with pytest.raises(UserError, match="unknown protocol 'lcb'; choose from livecodebench, course"):
        get_protocol("lcb")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Both protocols' verdicts per `model/question_id`, from one `score` run per protocol over all 287."""
    tmp = tmp_path_factory.mktemp("field")
    entries, keys = [], []
    for f in sorted((PROGRAMS / "generations").glob("*.json")):
        model = f.name.split("_2408-2502")[0]
        for e in json.loads(f.read_text()):
            entries.append(e)
            keys.append(f"{model}/{e['question_id']}")
    # one sample per (model, problem): give each model's program its own sample index of the problem
    by_q: dict[str, list[str]] = {}
    order = []
    for key, e in zip(keys, entries, strict=True):
        by_q.setdefault(e["question_id"], []).append(e["code_list"][0])
        order.append((e["question_id"], len(by_q[e["question_id"]]) - 1, key))
    samples = tmp / "samples.json"
    samples.write_text(json.dumps([{"question_id": q, "code_list": c} for q, c in by_q.items()]))
    out = {}
    for name in PROTOCOLS:
        summary = score("livecodebench", samples, tmp / name, problems=PROBLEMS, protocol=name, workers=2)
        assert summary["protocol"] == name and summary["samples"] == 287
        rows = [json.loads(x) for x in (tmp / name / "results.jsonl").read_text().splitlines()]
        passed = {(r["question_id"], r["sample_index"]): r["passed"] for r in rows}
        out[name] = {key: passed[(q, i)] for q, i, key in order}
        out[name + "_summary"] = summary
    return out


@needs_field
def test_livecodebench_protocol_gives_the_official_graders_verdicts(graded):
    want = json.loads((PROGRAMS / "verdicts.json").read_text())["official_lcb_grader"]
    assert len(want) == 287
    diff = {k: (graded["livecodebench"][k], v) for k, v in want.items() if graded["livecodebench"][k] != v}
    assert diff == {}
    assert graded["livecodebench_summary"]["timeout"] == 6.0


@needs_field
def test_course_protocol_gives_the_published_course_verdicts(graded):
    want = json.loads((PROGRAMS / "verdicts.json").read_text())["published_course_verdicts"]
    assert len(want) == 287
    diff = {k: (graded["course"][k], v) for k, v in want.items() if graded["course"][k] != v}
    assert diff == {}
    s = graded["course_summary"]
    assert (s["timeout"], s["memory_mb"], s["protocol_rules"]["comparison"]) == (10.0, 512, "exact")


@needs_field
def test_the_protocols_disagree_only_on_abc367_b(graded):
    differ = sorted(k for k in graded["course"] if graded["course"][k] != graded["livecodebench"][k])
    assert differ and {k.split("/")[1] for k in differ} == {"abc367_b"}


@needs_field
def test_course_extraction_and_prompt_reproduce_the_course_logs():
    """The course's logs hold each raw answer, the code its grader ran and the statement it sent."""
    from codelora.benchmarks.livecodebench import build_prompt, read_raw_problems
    from codelora.generation.extract import extract

    statements = {r["question_id"]: r for r in read_raw_problems(PROBLEMS)}
    same = total = 0
    for f in sorted((PROGRAMS / "detailed").glob("*.jsonl")):
        for line in f.read_text().splitlines():
            rec = json.loads(line)
            total += 1
            got = extract(rec["model_output_raw"], COURSE.extraction)
            same += got.found and got.code.strip() == rec["extracted_code"].strip()
            assert build_prompt(statements[rec["question_id"]], COURSE.prompt) == rec["problem_prompt"]
    assert (same, total) == (287, 287)
