"""`evaluate --protocol course|livecodebench`: what the model is asked, how it decodes, which program is graded and
on which tests, where the results go and what they record. Generation is a stand-in (canned answers), so the
test checks the plumbing around the model, quickly; the grading is real (the sandbox runs the programs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import codelora.evaluation.evaluate as E
import codelora.generation.generate as G
from codelora.config import load_config, save_config
from codelora.data.split import write_split_json
from codelora.errors import UserError
from codelora.generation.generate import Generation
from codelora.model.sources import load_tokenizer
from codelora.run.layout import eval_folder

TRAILING = "You are given a real number X to the third decimal place. Print X without trailing zeros."
SUM = "Read two integers A and B and print A+B."
NO_CODE = "Print the answer to life."


def problem(qid: str, statement: str, public: list[tuple[str, str]], private: list[tuple[str, str]]) -> dict:
    def tests(pairs):
        return json.dumps([{"input": i, "output": o, "testtype": "stdin"} for i, o in pairs])

    return {
        "question_id": qid,
        "question_title": qid,
        "question_content": statement,
        "platform": "atcoder",
        "contest_date": "2024-08-17T00:00:00",
        "difficulty": "easy",
        "starter_code": "",
        "public_test_cases": tests(public),
        "private_test_cases": tests(private),
        "metadata": "{}",
    }


ANSWERS = {
    # prints the input back: 12.340 for 12.34 passes LiveCodeBench's Decimal rule, fails the course's exact one
    TRAILING: "Here it is:\n```python\nprint(input())\n```\n",
    # the course grades the first python block; LiveCodeBench's protocol takes the later "revision", which only
    # reproduces the sample (passes the public test, fails the private one)
    SUM: (
        "```python\na, b = map(int, input().split())\nprint(a + b)\n```\nShorter:\n"
        "```python\na, b = map(int, input().split())\nprint(3)\n```\n"
    ),
    # no python block (a fence of something else): the course counts the problem failed, nothing is run
    NO_CODE: "The answer is:\n```text\n42\n```\n",
}


@pytest.fixture()
def problems(tmp_path) -> Path:
    rows = [
        problem("abc367_b", TRAILING, [("12.340\n", "12.34\n")], [("1.000\n", "1\n")]),
        problem("abc999_a", SUM, [("1 2\n", "3\n")], [("5 7\n", "12\n")]),
        problem("abc999_b", NO_CODE, [("\n", "42\n")], []),
    ]
    path = tmp_path / "lcb.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture()
def stand_in(monkeypatch):
    """Replace model loading and generation; record the prompts and decoding settings each call received."""
    seen: list[dict] = []

    def generate_batch(model, tok, prompts, sampling, seeds, batch_size, on_batch=None, **kw):
        texts = [tok.decode(p) for p in prompts]
        seen.append({"texts": texts, "sampling": sampling})
        gens = []
        for text in texts:
            statement = next(s for s in ANSWERS if s in text)
            gens.append(Generation(ANSWERS[statement], 10, True))
        if on_batch:
            on_batch(list(enumerate(gens)))
        return gens

    monkeypatch.setattr(G, "generate_batch", generate_batch)
    monkeypatch.setattr(
        "codelora.generation.backends.hf.load_model", lambda spec, cfg: (None, load_tokenizer(spec.source))
    )
    return seen


def verdicts(folder: Path) -> dict[str, bool]:
    return {r["question_id"]: r["passed"] for r in map(json.loads, (folder / "results.jsonl").read_text().splitlines())}


def test_course_and_livecodebench_protocols_differ_where_the_course_differs(tmp_path, problems, stand_in):
    common = {"problems": problems, "workers": 2, "config": "demo"}
    course = E.evaluate_model("tiny-random:qwen2", "livecodebench", tmp_path / "course", protocol="course", **common)
    lcb = E.evaluate_model("tiny-random:qwen2", "livecodebench", tmp_path / "lcb", **common)

    course_call, lcb_call = stand_in
    # the course sends the raw statement (with the run's system prompt); LiveCodeBench wraps it in its format text
    system = load_config("demo").data.system_prompt
    for text, statement in zip(course_call["texts"], (TRAILING, SUM, NO_CODE), strict=True):
        assert f"{system}<|im_end|>\n<|im_start|>user\n{statement}<|im_end|>\n<|im_start|>assistant\n" in text
        assert "### Question" not in text and "### Format" not in text
    assert all("### Question:\n" in t and "### Format:" in t for t in lcb_call["texts"])
    # greedy, 8192 new tokens, whatever the config says (the demo config: 160)
    assert course_call["sampling"].greedy and course_call["sampling"].max_new_tokens == 8192
    assert course["sampling"]["max_new_tokens"] == 8192 and course["sampling"]["greedy"] is True
    assert lcb["sampling"]["max_new_tokens"] == load_config("demo").eval.max_new_tokens

    # abc367_b: exact comparison fails 12.340; the first python block is graded on public tests only
    assert verdicts(tmp_path / "course") == {"abc367_b": False, "abc999_a": True, "abc999_b": False}
    assert verdicts(tmp_path / "lcb") == {"abc367_b": True, "abc999_a": False, "abc999_b": False}
    assert course["protocol"] == "course" and lcb["protocol"] == "livecodebench"
    assert course["protocol_rules"]["tests"] == "public" and course["protocol_rules"]["comparison"] == "exact"
    assert (course["timeout"], course["memory_mb"]) == (10.0, 512)
    gens = [json.loads(x) for x in (tmp_path / "course" / "generations.jsonl").read_text().splitlines()]
    code = {g["task_id"]: (g["code"], g["code_found"]) for g in gens}
    assert code["abc999_a"][0].startswith("a, b = map(int") and code["abc999_b"] == ("", False)


def test_course_protocol_refuses_decoding_options_it_fixes(tmp_path, problems, stand_in):
    for bad, needle in (
        ({"temperature": 0.2}, "--temperature 0.2"),
        ({"n": 5}, "--n 5"),
        ({"max_new_tokens": 64}, "--max-new-tokens 64"),
    ):
        with pytest.raises(UserError, match=f"--protocol course decodes greedily.*drop {needle}"):
            E.evaluate_model(
                "tiny-random:qwen2", "livecodebench", tmp_path, problems=problems, protocol="course", **bad
            )
    # its own values are fine
    E.evaluate_model(
        "tiny-random:qwen2", "livecodebench", tmp_path / "ok", problems=problems, protocol="course", max_new_tokens=8192
    )
    with pytest.raises(UserError, match="--protocol applies to livecodebench only, not to humaneval"):
        E.evaluate_model("tiny-random:qwen2", "humaneval", tmp_path, protocol="course")
    assert not stand_in[1:]  # only the accepted call generated


def test_protocols_of_a_run_live_side_by_side(tmp_path, problems, stand_in):
    run = tmp_path / "run"
    run.mkdir()
    save_config(load_config("demo", ["model.source=tiny-random:qwen2"]), run / "config.yaml")
    rows = [{"input": f"problem {i}", "problem_key": f"k{i}", "solution": "x"} for i in range(3)]
    write_split_json(run / "split.json", {"train": rows[:1], "valid": rows[1:2], "test": rows[2:]})
    E.evaluate(run, "livecodebench", ["base"], problems=problems, protocol="course", workers=2)
    E.evaluate(run, "livecodebench", ["base"], problems=problems, workers=2)
    assert eval_folder("livecodebench", "course") == "livecodebench-course"
    assert eval_folder("livecodebench", "livecodebench") == eval_folder("livecodebench") == "livecodebench"
    assert eval_folder("heldout") == "heldout"
    course = json.loads((run / "eval" / "livecodebench-course" / "base" / "summary.json").read_text())
    lcb = json.loads((run / "eval" / "livecodebench" / "base" / "summary.json").read_text())
    assert (course["protocol"], lcb["protocol"]) == ("course", "livecodebench")
    assert verdicts(run / "eval" / "livecodebench-course" / "base")["abc367_b"] is False
    assert verdicts(run / "eval" / "livecodebench" / "base")["abc367_b"] is True
