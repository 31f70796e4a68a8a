"""codelora evaluate on a 2-step tiny run: files, reuse after an interruption, held-out tests from the sample
statements, LiveCodeBench filters on a fixture, HumanEval, and the one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import codelora.evaluation.evaluate as E
import codelora.generation.generate as G
from codelora.benchmarks import livecodebench as lcb
from codelora.benchmarks.base import Benchmark, Problem, ProblemSet
from codelora.cli import main
from codelora.config import load_config
from codelora.data.examples import parse_examples
from codelora.data.load import load_rows
from codelora.data.split import problem_key
from codelora.errors import UserError
from codelora.run import layout as runs
from codelora.run import results as run_results
from codelora.training.sft import train

FIXTURES = Path(__file__).parent / "fixtures"
LCB_DATED = FIXTURES / "lcb_dated.jsonl"
FAST = {"max_new_tokens": 6, "workers": 2}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evalrun")
    cfg = load_config(
        "demo",
        [
            "model.source=tiny-random:qwen2",
            "train.max_steps=2",
            "train.logging_steps=1",
            "train.eval_steps=2",
            "train.save_steps=2",
            "data.max_length=256",
            "data.dataset=sample",  # the counts below are the sample set's 9 test problems
            f"output_dir={tmp}",
        ],
    )
    run_dir = tmp / "run"
    train(cfg, run_dir)
    return run_dir


@pytest.fixture(scope="module")
def heldout(run):
    return E.evaluate(run, "heldout", ["base", "final"], **FAST)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_list_run_models(run):
    models, _ = runs.select_models(run, "all")  # the one resolver evaluate's --models reads
    assert [m.name for m in models] == ["base", "checkpoint-2", "final"]
    assert [m.step for m in models] == [0, 2, 2]
    assert models[0].adapter is None and models[2].adapter == str(run / "final")


def test_heldout_writes_contract_files(run, heldout):
    assert set(heldout) == {"base", "final"}
    split = json.loads((run / "split.json").read_text())
    n_test = split["splits"]["test"]["n_problems"]
    for name, step in (("base", 0), ("final", 2)):
        folder = run / "eval" / "heldout" / name
        s = json.loads((folder / "summary.json").read_text())
        assert s == heldout[name]
        assert (s["model"], s["step"], s["source"]) == (name, step, "tiny-random:qwen2")
        assert s["adapter"] == (None if name == "base" else "final")  # relative to the run folder
        assert s["sampling"] == {
            "n": 1,
            "temperature": 0.2,
            "top_p": 0.9,
            "max_new_tokens": 6,
            "seed": 42,
            "greedy": True,
        }
        assert s["problems"] == s["samples"] == n_test and "pass@1" in s
        gens = _lines(folder / "generations.jsonl")
        assert len(gens) == n_test and {g["sample_index"] for g in gens} == {0}
        assert all(
            set(g) >= {"task_id", "sample_index", "prompt_sha256", "sampling", "raw", "code", "code_found"}
            for g in gens
        )
        results = _lines(folder / "results.jsonl")
        assert sorted(r["task_id"] for r in results) == sorted(g["task_id"] for g in gens)
        assert s["generation"]["generated"] == n_test and s["generation"]["new_tokens"] > 0
    # same problems and prompts for every model
    assert heldout["base"]["prompts_sha256"] == heldout["final"]["prompts_sha256"]
    assert not list((run / "eval" / "heldout").rglob("*.tmp"))


def test_heldout_problems_come_from_sample_statements(run, heldout):
    """Every test-split problem of the sample set has examples its reference solution passes."""
    split = json.loads((run / "split.json").read_text())
    keys = split["splits"]["test"]["problems"]
    rows, _ = load_rows("sample")
    statements = {problem_key(r["input"]): r["input"] for r in rows}
    expected_pairs = sum(len(parse_examples(statements[k])) for k in keys)
    report = json.loads((run / "eval" / "heldout" / "problems_report.json").read_text())
    assert report["test_problems"] == len(keys) == 9
    assert report["with_usable_tests"] == 9 and report["examples_found"] == expected_pairs
    assert report["examples_kept"] == expected_pairs >= 9  # every sample solution passes its statement's examples
    problems = _lines(run / "eval" / "heldout" / "problems.jsonl")
    assert sorted(p["task_id"] for p in problems) == sorted(keys)
    for p in problems:
        assert p["tests"] and [(t["input"], t["output"]) for t in p["tests"]] == parse_examples(
            statements[p["task_id"]]
        )
        assert p["task_id"] not in split["splits"]["train"]["problems"]
    assert heldout["base"]["benchmark_info"]["with_usable_tests"] == 9


def test_examples_the_reference_fails_are_dropped():
    from codelora.data.examples import check_examples

    statement = "Double it.\n\nExamples\n\nInput\n\n2\n\nOutput\n\n4\n\nInput\n\n5\n\nOutput\n\n11\n"
    probs = check_examples(
        [
            {"task_id": "t", "prompt": statement, "references": ["print(2 * int(input()))\n"]},
            {"task_id": "u", "prompt": statement, "references": ["print(0)\n"]},
        ],
        workers=2,
    )
    assert probs[0]["tests"] == [{"input": "2\n", "output": "4"}]
    assert probs[0]["examples_found"] == 2 and probs[0]["dropped"] == [
        {"example": 2, "reference_verdict": "wrong_answer"}
    ]
    assert probs[1]["tests"] == []


@pytest.mark.parametrize(
    "statement",
    [
        # TACO / APPS (OpenCodeReasoning's sources): dashed headings, spec sections before the examples
        "Sum.\n\n-----Input-----\n\nn, then n numbers.\n\n-----Output-----\n\nThe sum.\n\n-----Examples-----\n"
        "Input\n3\n1 2 3\n\nOutput\n6\n\nInput\n1\n5\n\nOutput\n5\n\n-----Note-----\n\n1+2+3 = 6.",
        # AtCoder in TACO
        "Sum.\n\n-----Constraints-----\nsmall\n-----Sample Input-----\n3\n1 2 3\n\n-----Sample Output-----\n6\n\n"
        "We print 1+2+3.\n-----Sample Input-----\n1\n5\n\n-----Sample Output-----\n5",
        # CodeChef
        "Sum.\n\n------ Input ------ \nn\n\n----- Sample Input 1 ------ \n3\n1 2 3\n----- Sample Output 1 ------ \n6\n"
        "----- explanation 1 ------ \nobvious\n----- Sample Input 2 ------ \n1\n5\n----- Sample Output 2 ------ \n5",
        # AtCoder: an explanation after a blank line inside the output block is cut off by the reference check
        "Sum.\n\nInput\n\nN and N numbers\n\nOutput\n\nthe sum\n\nSample Input 1\n\n3\n1 2 3\n\nSample Output 1\n\n6\n\n"
        "1+2+3=6.\n\nSample Input 2\n\n1\n5\n\nSample Output 2\n\n5",
        # HackerEarth
        "Sum.\n\nInput:\nn\n\nOutput:\nsum\n\nSAMPLE INPUT\n3\n1 2 3\n\nSAMPLE OUTPUT\n6\n\nExplanation\n\nadd\n\n"
        "SAMPLE INPUT\n1\n5\n\nSAMPLE OUTPUT\n5",
    ],
)
def test_statement_layouts_give_checked_tests(statement):
    from codelora.data.examples import check_examples

    ref = "n = int(input())\nprint(sum(map(int, input().split())))\n"
    (p,) = check_examples([{"task_id": "t", "prompt": statement, "references": [ref]}], workers=2)
    assert p["tests"] == [{"input": "3\n1 2 3\n", "output": "6"}, {"input": "1\n5\n", "output": "5"}]


def test_rerun_reuses_everything_without_loading_a_model(run, heldout, monkeypatch):
    def no_load(*a, **k):
        raise AssertionError("model loaded although every generation exists")

    monkeypatch.setattr("codelora.generation.backends.hf.load_model", no_load)
    folder = run / "eval" / "heldout"
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}
    again = E.evaluate(run, "heldout", ["base", "final"], **FAST)
    for name in ("base", "final"):
        # results current for the same weights, prompts, sampling and problems: returned as stored
        assert again[name] == heldout[name]
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file() and p.name != ".lock"}
    assert after == {p: v for p, v in before.items() if p.name != ".lock"}  # not one file rewritten


def test_interrupted_evaluation_resumes(run, monkeypatch):
    real = G.generate_batch
    calls: list[int] = []

    def crash_after_first_batch(model, tok, prompts, sampling, seeds, batch_size, on_batch=None, **kw):
        calls.append(len(prompts))

        def save_then_crash(done):
            on_batch(done)
            raise KeyboardInterrupt

        return real(model, tok, prompts, sampling, seeds, batch_size, save_then_crash, **kw)

    opts = {**FAST, "max_new_tokens": 5, "batch_size": 4}
    monkeypatch.setattr(G, "generate_batch", crash_after_first_batch)
    with pytest.raises(KeyboardInterrupt):
        E.evaluate(run, "heldout", ["checkpoint-2"], **opts)
    gen_file = run / "eval" / "heldout" / "checkpoint-2" / "generations.jsonl"
    assert len(_lines(gen_file)) == 4  # the finished batch survived the crash
    assert not (run / "eval" / "heldout" / "checkpoint-2" / "summary.json").exists()

    def counting(model, tok, prompts, *a, **kw):
        calls.append(len(prompts))
        return real(model, tok, prompts, *a, **kw)

    monkeypatch.setattr(G, "generate_batch", counting)
    s = E.evaluate(run, "heldout", ["checkpoint-2"], **opts)["checkpoint-2"]
    assert calls == [9, 5]  # the second call generated only what the crash lost
    assert s["generation"]["generated"] == 5 and s["generation"]["reused"] == 4
    assert len(_lines(gen_file)) == 9
    # other decoding settings are other generations; a crash meanwhile leaves no stale summary behind
    monkeypatch.setattr(G, "generate_batch", crash_after_first_batch)
    with pytest.raises(KeyboardInterrupt):
        E.evaluate(run, "heldout", ["checkpoint-2"], **{**opts, "max_new_tokens": 4})
    assert not (gen_file.parent / "summary.json").exists() and not (gen_file.parent / "results.jsonl").exists()
    monkeypatch.setattr(G, "generate_batch", counting)
    s2 = E.evaluate(run, "heldout", ["checkpoint-2"], **{**opts, "max_new_tokens": 4})["checkpoint-2"]
    assert s2["generation"]["generated"] == 5 and calls[-1] == 5
    # the store only grows: the max_new_tokens=5 answers are still there beside the new ones
    assert s2["sampling"]["max_new_tokens"] == 4 and len(_lines(gen_file)) == 18
    n_calls = len(calls)
    s3 = E.evaluate(run, "heldout", ["checkpoint-2"], **opts)["checkpoint-2"]
    assert len(calls) == n_calls and s3["generation"]["generated"] == 0 and s3["generation"]["reused"] == 9
    assert s3["pass@1"] == s["pass@1"] and len(_lines(gen_file)) == 18


def test_identical_weights_reuse_another_models_answers(run, heldout, monkeypatch):
    # the tiny run saves checkpoint-2 at its last step, so final/ holds the very same adapter bytes
    same = (run / "checkpoints" / "checkpoint-2" / "adapter_model.safetensors").read_bytes()
    assert same == (run / "final" / "adapter_model.safetensors").read_bytes()

    def no_load(*a, **k):
        raise AssertionError("model loaded although final already answered with the same weights")

    monkeypatch.setattr("codelora.generation.backends.hf.load_model", no_load)
    s = E.evaluate(run, "heldout", ["checkpoint-2"], **FAST)["checkpoint-2"]
    assert s["generation"]["generated"] == 0 and s["generation"]["reused"] == heldout["final"]["samples"]
    mine = run_results.read_answers(run / "eval" / "heldout" / "checkpoint-2", s)
    assert mine == run_results.read_answers(run / "eval" / "heldout" / "final", heldout["final"]) and mine
    finals = _lines(run / "eval" / "heldout" / "final" / "generations.jsonl")
    # the base model has other weights: nothing of final's may count as its answers
    base_fp = _lines(run / "eval" / "heldout" / "base" / "generations.jsonl")[0]["model"]
    assert base_fp != finals[0]["model"]


def test_sampled_n_samples_are_reproducible(run, tmp_path):
    opts = {**FAST, "n": 2, "temperature": 1.0, "limit": 2}
    a = E.evaluate_model("tiny-random:qwen2", "humaneval", tmp_path / "a", **opts)
    b = E.evaluate_model("tiny-random:qwen2", "humaneval", tmp_path / "b", **{**opts, "batch_size": 1})
    ga, gb = _lines(tmp_path / "a" / "generations.jsonl"), _lines(tmp_path / "b" / "generations.jsonl")
    assert [(g["task_id"], g["sample_index"]) for g in ga] == [
        ("HumanEval/0", 0),
        ("HumanEval/0", 1),
        ("HumanEval/1", 0),
        ("HumanEval/1", 1),
    ]
    assert [g["raw"] for g in ga] == [g["raw"] for g in gb]
    assert ga[0]["raw"] != ga[1]["raw"]  # sample 0 and 1 use seeds 42 and 43
    assert a["sampling"]["greedy"] is False and a["samples"] == 4 and a["problems"] == 2 and b["samples"] == 4


def test_humaneval_without_run(tmp_path):
    s = E.evaluate_model("tiny-random:qwen2", "humaneval", tmp_path / "he", limit=3, **FAST)
    assert s["benchmark"] == "humaneval" and s["problems"] == 3 and s["model"] == "base" and s["step"] == 0
    results = _lines(tmp_path / "he" / "results.jsonl")
    assert [r["task_id"] for r in results] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]


# ---------------------------------------------------------------- LiveCodeBench


def test_lcb_filters_on_fixture():
    rows = lcb.read_raw_problems(LCB_DATED)
    ids = lambda rs: sorted(r["question_id"] for r in rs)  # noqa: E731
    assert ids(lcb.filter_problems(rows, **lcb.PRESETS["atcoder-easy"])) == ["abc366_a", "abc392_b"]
    assert ids(lcb.filter_problems(rows, platform="leetcode")) == ["3300"]
    assert ids(lcb.filter_problems(rows, platform="codeforces,leetcode", difficulty="easy")) == ["1990_a", "3300"]
    assert ids(lcb.filter_problems(rows, difficulty="medium")) == ["abc370_c"]
    assert ids(lcb.filter_problems(rows, date_from="2503")) == ["abc394_a"]
    assert ids(lcb.filter_problems(rows, date_to="2407")) == ["abc365_a"]
    assert len(lcb.filter_problems(rows)) == 7
    for bad, needle in (
        ({"date_from": "2413"}, "expected YYMM"),
        ({"platform": "topcoder"}, "unknown"),
        ({"date_from": "2502", "date_to": "2408"}, "after"),
    ):
        with pytest.raises(UserError, match=needle):
            lcb.filter_problems(rows, **bad)


def test_lcb_prompts():
    rows = {r["question_id"]: r for r in lcb.read_raw_problems(LCB_DATED)}
    call = lcb.build_prompt(rows["3300"])
    assert "def larger(self, a: int, b: int)" in call and "starter code" in call and "stdin" not in call
    stdin = lcb.build_prompt(rows["abc366_a"])
    assert "Print A+B." in stdin and "stdin" in stdin and "STDOUT" in stdin and "starter code" not in stdin


def test_lcb_preset_on_fixture(tmp_path, capsys):
    out = tmp_path / "lcb"
    s = E.evaluate_model("tiny-random:qwen2", "livecodebench", out, problems=LCB_DATED, preset="atcoder-easy", **FAST)
    assert "preset atcoder-easy" in capsys.readouterr().err and s["problems"] == 2
    assert s["benchmark_info"]["selected"] == 2 and s["benchmark_info"]["platform"] == "atcoder"
    assert sorted(r["question_id"] for r in _lines(out / "results.jsonl")) == ["abc366_a", "abc392_b"]
    assert [d["question_id"] for d in json.loads((out / "samples.json").read_text())] == ["abc366_a", "abc392_b"]
    # a right program for the selected problems passes public + private tests (grading really runs)
    codes = {"abc366_a": "a, b = map(int, input().split())\nprint(a + b)\n", "abc392_b": "print(2 * int(input()))\n"}
    (out / "good.json").write_text(json.dumps([{"question_id": q, "code_list": [c]} for q, c in codes.items()]))
    from codelora.evaluation.score import score

    assert score("livecodebench", out / "good.json", out / "good", out / "problems.jsonl")["pass@1"] == 1.0


def test_lcb_zero_selected_and_offline_errors(tmp_path):
    with pytest.raises(UserError, match="no LiveCodeBench problems match"):
        E.evaluate_model(
            "tiny-random:qwen2", "livecodebench", tmp_path, problems=LCB_DATED, platform="codeforces", difficulty="hard"
        )
    with pytest.raises(UserError, match="--problems FILE"):
        E.evaluate_model("tiny-random:qwen2", "livecodebench", tmp_path, preset="atcoder-easy")


# ---------------------------------------------------------------- errors


def _rc_err(argv, capsys) -> tuple[int, str]:
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return rc, err[-1] if err else ""


def test_cli_errors(run, tmp_path, capsys):
    rc, err = _rc_err(["evaluate", "--run", str(run), "--benchmark", "heldout", "--models", "checkpoint-9"], capsys)
    assert rc == 2 and "checkpoint-9" in err and "base, checkpoint-2, final" in err
    no_split = tmp_path / "nosplit"
    no_split.mkdir()
    shutil.copy(run / "config.yaml", no_split / "config.yaml")
    rc, err = _rc_err(["evaluate", "--run", str(no_split), "--benchmark", "heldout"], capsys)
    assert rc == 2 and "no split.json" in err
    rc, err = _rc_err(["evaluate", "--benchmark", "heldout"], capsys)
    assert rc == 2 and "--run" in err
    rc, err = _rc_err(
        ["evaluate", "--model", "tiny-random:qwen2", "--out", str(tmp_path / "x"), "--benchmark", "heldout"], capsys
    )
    assert rc == 2 and "needs --problems" in err


def test_cli_happy_path_reuses(run, heldout, capsys):
    rc = main(
        [
            "evaluate",
            "--run",
            str(run),
            "--benchmark",
            "heldout",
            "--models",
            "base,final",
            "--max-new-tokens",
            "6",
            "--workers",
            "2",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0 and "final" in out and "pass@1" in out


def test_adapter_of_another_base_is_refused(run, tmp_path):
    with pytest.raises(UserError, match="trained on tiny-random:qwen2"):
        E.evaluate_model("tiny-random:llama", "humaneval", tmp_path, adapter=str(run / "final"), limit=1, **FAST)


def test_adapter_with_wrong_shapes_is_refused(tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2Config, Qwen2ForCausalLM

    other = Qwen2ForCausalLM(
        Qwen2Config(
            vocab_size=300,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
        )
    )
    get_peft_model(other, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).save_pretrained(tmp_path / "ad")
    with pytest.raises(UserError, match="does not fit"):
        E.evaluate_model(
            "tiny-random:qwen2", "humaneval", tmp_path / "o", adapter=str(tmp_path / "ad"), limit=1, **FAST
        )


def test_training_problems_are_refused(run, tmp_path):
    bad = tmp_path / "leaky"
    bad.mkdir()
    shutil.copy(run / "config.yaml", bad / "config.yaml")
    doc = json.loads((run / "split.json").read_text())
    doc["splits"]["train"]["problems"].append(doc["splits"]["test"]["problems"][0])
    (bad / "split.json").write_text(json.dumps(doc))
    with pytest.raises(UserError, match="1 of 9 evaluation problems are in the training split"):
        E.evaluate(bad, "heldout", ["base"], **FAST)
    doc["splits"]["test"]["problems"] = []
    (bad / "split.json").write_text(json.dumps(doc))
    with pytest.raises(UserError, match="zero problems"):
        E.evaluate(bad, "heldout", ["base"], **FAST)


def test_vllm_missing_is_one_line(tmp_path):
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401

        pytest.skip("vllm is installed here")
    except ImportError:
        pass
    with pytest.raises(UserError, match=r"pip install codelora\[vllm\]"):
        E.evaluate_model("tiny-random:qwen2", "humaneval", tmp_path, backend="vllm", limit=1, **FAST)


def test_heldout_prompt_is_the_training_prompt(run):
    """The model sees exactly the token ids training put before the answer (system prompt + chat template)."""
    from codelora.data.format import encode_prompt_completion
    from codelora.generation.generate import prompt_ids
    from codelora.model.sources import load_tokenizer

    cfg = load_config(run / "config.yaml")
    tok = load_tokenizer(cfg.model.source)
    statement = load_rows("sample")[0][0]["input"]
    train_prompt, _ = encode_prompt_completion(tok, cfg.data.system_prompt, statement, "print(1)")
    assert prompt_ids(tok, cfg.data.system_prompt, statement) == train_prompt
    assert cfg.data.system_prompt in tok.decode(train_prompt)


def test_vllm_backend_plumbing_with_a_stand_in(run, tmp_path, monkeypatch):
    """vLLM is not installed here (no GPU): a stand-in module records what the backend sends it - the same
    token-id prompts as the hf backend, per-sample seeds, the end-of-turn stop id, the adapter as a LoRA."""
    import sys
    import types

    from codelora.generation.generate import prompt_ids, stop_token_ids
    from codelora.model.sources import load_tokenizer

    engines = []

    class LLM:
        def __init__(self, **kw):
            self.kw, self.calls = kw, []
            engines.append(self)

        def generate(self, prompts, params, lora_request=None, use_tqdm=True):
            self.calls.append((prompts, params, lora_request))
            out = types.SimpleNamespace(text="```python\nprint(1)\n```", token_ids=[1, 2, 3], finish_reason="stop")
            return [types.SimpleNamespace(outputs=[out]) for _ in prompts]

    class SamplingParams:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams = LLM, SamplingParams
    request = types.ModuleType("vllm.lora.request")
    request.LoRARequest = lambda name, lid, path: ("lora", name, lid, path)
    for name, mod in (("vllm", vllm), ("vllm.lora", types.ModuleType("vllm.lora")), ("vllm.lora.request", request)):
        monkeypatch.setitem(sys.modules, name, mod)

    src = "embedded:smollm2-135m-instruct"
    s = E.evaluate_model(src, "humaneval", tmp_path / "v", backend="vllm", limit=2, n=2, temperature=0.5, **FAST)
    prompts, params, lora = engines[-1].calls[0]
    tok = load_tokenizer(src)
    from codelora.benchmarks import humaneval

    first = next(iter(humaneval.load_problems().values()))
    assert prompts[0] == {
        "prompt_token_ids": prompt_ids(
            tok,
            "You are an expert Python programmer. Please read the problem carefully before writing any Python code.",
            humaneval.build_prompt(first),
        )
    }
    assert [p.seed for p in params] == [42, 43, 42, 43] and {p.temperature for p in params} == {0.5}
    assert all(p.stop_token_ids == stop_token_ids(tok) for p in params) and lora is None
    assert s["generation"]["backend"] == "vllm" and s["generation"]["code_found"] == 4

    adapter = tmp_path / "adapter"  # an adapter folder without codelora's meta.json
    adapter.mkdir()
    for f in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy(run / "final" / f, adapter / f)
    E.evaluate_model(
        src, "humaneval", tmp_path / "l", adapter=str(adapter), backend="vllm", vllm_mode="lora", limit=1, **FAST
    )
    prompts, params, lora = engines[-1].calls[0]
    assert engines[-1].kw["enable_lora"] is True and lora[3] == str(adapter)
    assert params[0].seed is None and params[0].temperature == 0.0  # greedy


# ---------------------------------------------------------------- a fourth benchmark


class ToyBenchmark(Benchmark):
    """Two stdin problems graded by exact output: all a new benchmark needs to define."""

    name = "toy"
    title = "Toy"
    bundled = True
    STATEMENTS = {"hello": ("Print hello.", "hello"), "two": ("Print 1+1.", "2")}

    def problems(self, ctx):
        probs = list(self.read_problems(None, self.settings())[0].values())
        chosen = self.first(probs, ctx.opts.limit)
        return ProblemSet(chosen, None, {"source": "tests/test_evaluate.py", "selected": len(chosen)})

    def prompt(self, problem, protocol=None):
        return problem.data["statement"] + " Answer with a Python program in a ```python block."

    def grade(self, problem, code, settings):
        from codelora.sandbox.grading import grade_stdio_problem

        tests = [{"input": "", "output": problem.data["output"]}]
        return grade_stdio_problem(code, tests, settings.timeout, settings.memory_mb, comparison="exact")

    def read_problems(self, path, settings, skip_untested=False, wanted=None):
        return {k: Problem(k, {"statement": s, "output": o}) for k, (s, o) in self.STATEMENTS.items()}, []


@pytest.fixture
def toy():
    from codelora import benchmarks

    bench = benchmarks.register(ToyBenchmark())
    yield bench
    benchmarks.unregister("toy")


def test_a_registered_benchmark_is_evaluated_scored_compared_and_offered(run, toy, tmp_path, monkeypatch, capsys):
    from codelora import benchmarks
    from codelora.cli import build_parser
    from codelora.publish.model_card import eval_results
    from codelora.selection.compare import compare_run

    def canned(model, tok, prompts, sampling, seeds, batch_size, on_batch=None, **kw):
        # the tiny model's own answers are noise: answer "hello" right and "two" wrong, found by the rendered prompt
        texts = [
            "```python\nprint('hello')\n```" if "Print hello." in tok.decode(p) else "```python\nprint(3)\n```"
            for p in prompts
        ]
        gens = [G.Generation(t, 7, True) for t in texts]
        if on_batch:
            on_batch(list(enumerate(gens)))
        return gens

    monkeypatch.setattr(G, "generate_batch", canned)
    assert "toy" in benchmarks.names()
    got = E.evaluate(run, "toy", "all", workers=2)
    assert set(got) == {"base", "checkpoint-2", "final"}
    folder = run / "eval" / "toy" / "final"
    s = json.loads((folder / "summary.json").read_text())
    assert s == got["final"] and s["benchmark"] == "toy" and s["provenance"]["benchmark"] == "toy"
    assert (s["problems"], s["samples"], s["pass@1"]) == (2, 2, 0.5)
    assert s["verdicts"]["accepted"] == 1 and s["verdicts"]["wrong_answer"] == 1
    assert s["benchmark_info"] == {"source": "tests/test_evaluate.py", "selected": 2} and s["timeout"] == 6.0
    results = {r["task_id"]: r for r in _lines(folder / "results.jsonl")}
    assert results["hello"]["passed"] and results["two"]["first_failure"]["got"].strip() == "3"
    # the samples file evaluate leaves is the benchmark's format, and `codelora score` grades it alike
    rc = main(["score", "--benchmark", "toy", "--samples", str(folder / "samples.jsonl"), "--out", str(tmp_path / "s")])
    assert rc == 0 and json.loads((tmp_path / "s" / "summary.json").read_text())["pass@1"] == 0.5
    # compare reads the toy's results; every --benchmark flag offers it; the model card lists it
    doc = compare_run(run, "toy", evaluate_missing=False, write=False)
    assert doc["benchmark"] == "toy" and [r["model"] for r in doc["table"]] == ["base", "checkpoint-2", "final"]
    assert {r["pass@1"] for r in doc["table"]} == {0.5}
    sub = next(a for a in build_parser()._actions if a.choices and "score" in a.choices)
    for command in ("evaluate", "score", "compare", "report"):
        (flag,) = [a for a in sub.choices[command]._actions if a.dest == "benchmark"]
        assert "toy" in flag.metavar, command
    card = eval_results(run, load_config(run / "config.yaml"), {"name": "final", "step": 2})
    assert [(r.dataset_name, r.metric_value) for r in card if r.dataset_type == "toy"] == [("Toy", 0.5)]
    capsys.readouterr()
    benchmarks.unregister("toy")  # gone from the registry: one clear line, as for any unknown name
    rc = main(["score", "--benchmark", "toy", "--samples", str(folder / "samples.jsonl"), "--out", str(tmp_path / "s")])
    assert rc == 2 and "--benchmark 'toy': not allowed; choose from heldout, livecodebench, humaneval" in (
        capsys.readouterr().err
    )


def test_a_new_file_in_the_benchmarks_package_is_a_benchmark(tmp_path, monkeypatch):
    """Adding a benchmark is one new module beside the others: nothing else names it."""
    import sys

    import codelora.benchmarks as B

    (tmp_path / "fourth.py").write_text(
        "from codelora.benchmarks import register\n"
        "from codelora.benchmarks.base import Benchmark, Problem, ProblemSet\n\n\n"
        "class Fourth(Benchmark):\n"
        "    name, title = 'fourth', 'Fourth'\n\n"
        "    def problems(self, ctx):\n"
        "        return ProblemSet(list(self.read_problems(None, self.settings())[0].values()))\n\n"
        "    def prompt(self, problem, protocol=None):\n"
        "        return 'Print 4.'\n\n"
        "    def grade(self, problem, code, settings):\n"
        "        from codelora.sandbox.grading import grade_stdio_problem\n\n"
        "        return grade_stdio_problem(code, [{'input': '', 'output': '4'}], settings.timeout)\n\n"
        "    def read_problems(self, path, settings, skip_untested=False, wanted=None):\n"
        "        return {'four': Problem('four')}, []\n\n\n"
        "register(Fourth())\n"
    )
    monkeypatch.setattr(B, "__path__", [*B.__path__, str(tmp_path)])
    try:
        assert B.names()[:3] == ("heldout", "livecodebench", "humaneval") and B.names()[-1] == "fourth"
        fourth = B.get("fourth")
        (problem,) = fourth.problems(None).problems
        assert fourth.grade(problem, "print(2 + 2)", fourth.settings()).passed
        assert "fourth" in build_parser_choices("score")
    finally:
        B.unregister("fourth")
        sys.modules.pop("codelora.benchmarks.fourth", None)


def build_parser_choices(command: str) -> str:
    """The --benchmark metavar of one command (its choices)."""
    from codelora.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.choices and "score" in a.choices)
    (flag,) = [a for a in sub.choices[command]._actions if a.dest == "benchmark"]
    return flag.metavar


def test_heldout_test_set_is_in_the_results_provenance_and_compare(run, heldout):
    """--tests (default all) is recorded; examples-only results keep the provenance they had before the choice
    existed (their key is the old formula over problems.jsonl); compare refuses mixing test sets and evaluates
    missing models on the existing results' set."""
    from codelora.selection.compare import check_consistent, matching_options

    s = heldout["final"]
    assert s["benchmark_info"]["tests"] == "all" and s["provenance"]["tests"] == "all"
    assert s["benchmark_info"]["generated_tests"] > 0
    try:
        ex = E.evaluate(run, "heldout", ["final"], tests="examples", **FAST)["final"]
        assert ex["benchmark_info"]["tests"] == "examples" and "tests" not in ex["provenance"]
        assert ex["result_key"] == run_results.canonical_sha256(ex["provenance"]) != s["result_key"]
        assert ex["generation"]["generated"] == 0  # the answers are reused: only the grading differs
        assert ex["provenance"]["problems_sha256"] != s["provenance"]["problems_sha256"]
        problems = sorted(r["task_id"] for r in _lines(run / "eval" / "heldout" / "problems.jsonl"))
        evals = {n: {"summary": x, "problems": problems} for n, x in (("base", heldout["base"]), ("final", ex))}
        with pytest.raises(UserError, match="tests"):
            check_consistent(evals, force=False)
        assert check_consistent(evals, force=True)[0]["differs"] == "tests"
        assert matching_options(evals["final"])["tests"] == "examples"
        old = {**ex, "benchmark_info": {k: v for k, v in ex["benchmark_info"].items() if k != "tests"}}
        assert matching_options({"summary": old, "problems": problems})["tests"] == "examples"
    finally:
        E.evaluate(run, "heldout", ["final"], **FAST)  # the module's other tests expect the default results
