"""prepare(): run-folder outputs, data report, split file and tokenized cache."""

from __future__ import annotations

import hashlib
import json

import pytest

from codelora.config import RunConfig
from codelora.data.format import IGNORE_INDEX
from codelora.data.prepare import load_tokenized, prepare, print_report
from codelora.data.split import load_split_json, problem_key
from codelora.errors import UserError
from codelora.model.chat import end_of_turn_id

try:  # share the cached tokenizer with test_format (pytest puts tests/ on sys.path in its default mode)
    from test_format import smol_tokenizer
except ImportError:  # --import-mode=importlib
    import importlib.util
    import pathlib

    _spec = importlib.util.spec_from_file_location(
        "_codelora_test_format", pathlib.Path(__file__).with_name("test_format.py")
    )
    _mod = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_mod)
    smol_tokenizer = _mod.smol_tokenizer


@pytest.fixture()
def tok():
    return smol_tokenizer()


def cfg_for(dataset: str, **data) -> RunConfig:
    cfg = RunConfig()
    cfg.data.dataset = dataset
    for k, v in data.items():
        setattr(cfg.data, k, v)
    return cfg


def test_prepare_sample(tmp_path, tok, capsys):
    run = tmp_path / "run"
    report = prepare(cfg_for("sample"), run, tok)
    for rel in ("split.json", "data_report.json", "plots/lengths.png", "data/train.jsonl", "data/valid.jsonl"):
        assert (run / rel).is_file(), rel
    assert (run / "data" / "test.jsonl").is_file()
    assert not list(run.rglob("*.tmp*"))
    assert json.loads((run / "data_report.json").read_text()) == report

    split = load_split_json(run / "split.json")
    sets = {n: set(split["splits"][n]["problems"]) for n in ("train", "valid", "test")}
    assert not sets["train"] & sets["test"] and not sets["train"] & sets["valid"] and not sets["valid"] & sets["test"]
    assert sum(s["rows"] for s in report["splits"].values()) == report["rows_valid"] - report["duplicates"]["count"]
    for name in ("train", "valid", "test"):
        s = report["splits"][name]
        assert s["problems"] == len(sets[name])
        assert set(s["prompt_tokens"]) == {"p50", "p90", "p99", "max"}

    eot = end_of_turn_id(tok)
    train = load_tokenized(run, "train")
    assert len(train) == report["splits"]["train"]["examples"] > 0
    for ex in train:
        assert len(ex["input_ids"]) == len(ex["labels"]) <= 1024
        assert ex["labels"][0] == IGNORE_INDEX and ex["labels"][-1] == eot == ex["input_ids"][-1]
        assert ex["problem_key"] in sets["train"]
        first = next(i for i, v in enumerate(ex["labels"]) if v != IGNORE_INDEX)
        assert all(v != IGNORE_INDEX for v in ex["labels"][first:])

    print_report(report)
    out = capsys.readouterr().out
    assert "train" in out and "valid" in out and "test" in out


def rows_file(tmp_path, n_problems=30, per=3, extra_lines=()):
    lines = []
    for p in range(n_problems):
        for s in range(per):
            lines.append(json.dumps({"input": f"Problem {p}: print {p}.", "solution": f"print({p} + {s})\n"}))
    lines.append(json.dumps({"input": "Problem 0: print 0.", "solution": "print(0 + 0)\n"}))  # duplicate
    lines.append(json.dumps({"input": "Long " * 10, "solution": "x = 1\n" * 400}))  # overlong
    lines.extend(extra_lines)
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_prepare_counts_duplicates_overlong_and_bad_rows(tmp_path, tok):
    path = rows_file(tmp_path, extra_lines=['{"input": "broken"', json.dumps({"input": "no target"})])
    with pytest.raises(UserError, match="rows.jsonl: 2 bad row"):
        prepare(cfg_for(path, max_length=256), tmp_path / "run0", tok)

    cfg = cfg_for(path, max_length=256, skip_bad_rows=True, valid_fraction=0.1, test_fraction=0.1)
    report = prepare(cfg, tmp_path / "run", tok)
    assert [b["line"] for b in report["bad_rows"]] == [93, 94]
    assert report["duplicates"]["count"] == 1 and report["duplicates"]["lines"] == [91]
    assert report["over_max_length"] == 1 and report["overlong"] == "drop"
    assert sum(s["dropped"] for s in report["splits"].values()) == 1
    assert sum(s["rows"] for s in report["splits"].values()) == 91
    assert report["completion_tokens"]["max"] > 256

    cfg.data.overlong = "truncate"
    report = prepare(cfg, tmp_path / "run2", tok)
    assert sum(s["truncated"] for s in report["splits"].values()) == 1
    assert sum(s["dropped"] for s in report["splits"].values()) == 0
    for name in ("train", "valid", "test"):
        assert all(len(ex["input_ids"]) <= 256 for ex in load_tokenized(tmp_path / "run2", name))


def test_prepare_max_problems_limits_train_by_key_order(tmp_path, tok):
    path = rows_file(tmp_path, n_problems=20, per=2)
    report = prepare(cfg_for(path, max_problems=5), tmp_path / "run", tok)
    split = load_split_json(tmp_path / "run" / "split.json")
    train = split["splits"]["train"]["problems"]
    assert len(train) == 5 and report["splits"]["train"]["problems"] == 5
    assert report["max_problems"]["problems_before"] > 5
    all_train = sorted(
        {problem_key(f"Problem {p}: print {p}.") for p in range(20)}
        | {problem_key("Long " * 10)}
        - set(split["splits"]["valid"]["problems"])
        - set(split["splits"]["test"]["problems"])
    )
    assert train == all_train[:5]


def real_shaped_file(tmp_path) -> tuple[str, dict[str, list[str]]]:
    """A file shaped like CodeGen-Deep/Diverse-5K: 32-hex ids, 5 solutions per problem, a `split` column with a
    3-problem validation split, and (as Diverse's counts allow) problems whose rows disagree."""
    statement = "{name}\n\n-----Input-----\nN\n\n-----Output-----\nPrint N times {p}.\n\n-----Sample Input-----\n2\n"
    plan: dict[str, list[str]] = {}
    for p in range(80):
        name = f"Problem {p}: multiply"
        plan[statement.format(name=name, p=p)] = ["valid"] * 5 if p < 3 else ["test"] * 5 if p < 11 else ["train"] * 5
    plan[statement.format(name="Conflict A", p=101)] = ["train"] * 4 + ["test"]
    plan[statement.format(name="Conflict B", p=102)] = ["train", "test", "train", "train", "valid"]
    plan[statement.format(name="Conflict C", p=103)] = ["train", "train", "valid", "train", "train"]
    lines = []
    for i, (text, values) in enumerate(plan.items()):
        for s, value in enumerate(values):
            row = {
                "id": hashlib.md5(f"{i}-{s}".encode()).hexdigest(),
                "input": text,
                "output": f"<think>\nmultiply</think>\n```python\nprint(int(input()) * {i + s})\n```",
                "solution": f"print(int(input()) * {i} + {s})\n",
                "split": value,
                "difficulty": "EASY",
            }
            lines.append(json.dumps(row))
    path = tmp_path / "codegen_shaped.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return str(path), plan


def test_prepare_real_shaped_split_column_tops_up_valid_and_resolves_conflicts(tmp_path, tok, capsys):
    path, plan = real_shaped_file(tmp_path)
    run = tmp_path / "run"
    report = prepare(cfg_for(path, valid_fraction=0.1), run, tok)
    split = load_split_json(run / "split.json")
    sets = {n: set(split["splits"][n]["problems"]) for n in ("train", "valid", "test")}
    # leak-free: no problem in two splits, in split.json and in the tokenized files
    assert not sets["train"] & sets["valid"] and not sets["train"] & sets["test"] and not sets["valid"] & sets["test"]
    for name in ("train", "valid", "test"):
        assert {ex["problem_key"] for ex in load_tokenized(run, name)} == sets[name]
    assert sum(len(s) for s in sets.values()) == 83
    # the validation split reaches the requested 10% of 83 problems: 8 (3 + 1 conflict + 4 moved)
    assert len(sets["valid"]) == round(83 * 0.1) == 8
    moved = report["split"]["moved_to_valid"]
    assert moved["problems"] == 4 and moved["rows"] == 20
    assert moved["keys"] == split["moved_to_valid"]["keys"]
    column_train = {problem_key(t) for t, v in plan.items() if set(v) == {"train"}}
    assert set(moved["keys"]) <= column_train and set(moved["keys"]) <= sets["valid"]
    # conflicting problems: all rows in the most held-out split, counted and listed
    conflicts = report["split"]["conflicts"]
    assert conflicts["problems"] == 3 and conflicts["rows"] == 15
    to = {c["statement"].split()[1]: c["to"] for c in conflicts["list"]}
    assert to == {"A": "test", "B": "test", "C": "valid"}
    for text, values in plan.items():
        key = problem_key(text)
        want = next(n for n in ("test", "valid", "train") if n in values)
        if key not in set(moved["keys"]):
            assert key in sets[want]
    assert report["splits"]["test"]["rows"] == 8 * 5 + 10 and report["splits"]["valid"]["rows"] == 40
    assert report["split"]["column_problems"] == {"train": 72, "valid": 5, "test": 10}
    print_report(report)
    out = capsys.readouterr().out
    assert "validation topped up: 4 problems (20 rows) moved from train to valid" in out
    assert "split conflicts: 3 problems (15 rows)" in out and "2 to test" in out and "1 to valid" in out

    # data.split_conflicts=refuse keeps the error; data.split=by_problem ignores the column
    with pytest.raises(UserError, match="codegen_shaped.jsonl: problem 'Conflict A.*several splits"):
        prepare(cfg_for(path, split_conflicts="refuse"), tmp_path / "run2", tok)
    report = prepare(cfg_for(path, split="by_problem", valid_fraction=0.1, test_fraction=0.1), tmp_path / "run3", tok)
    assert report["split"]["method"] == "by problem" and report["split"]["moved_to_valid"]["problems"] == 0
    assert [report["splits"][n]["problems"] for n in ("train", "valid", "test")] == [67, 8, 8]
