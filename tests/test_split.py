"""By-problem split: no leaks, deterministic, machine-independent; split.json and contamination check."""

from __future__ import annotations

import hashlib
import json

import pytest

from codelora.data.load import load_rows
from codelora.data.split import (
    check_not_in_train,
    load_split_json,
    problem_key,
    split_keys,
    split_rows,
    write_split_json,
)
from codelora.errors import UserError


def generated(n_problems: int = 1000, per: int = 5) -> list[dict]:
    rows = []
    for p in range(n_problems):
        for s in range(per):
            # same statement with varying case/whitespace must still be one problem
            text = f"Problem {p}:  read N and print N*{p}." if s % 2 else f"problem {p}: read n and print n*{p}.\n"
            rows.append({"input": text, "solution": f"print({p} + {s})"})
    return rows


def keys_by_split(splits):
    return {name: {r["problem_key"] for r in rows} for name, rows in splits.items()}


def assert_disjoint(splits):
    ks = keys_by_split(splits)
    assert not ks["train"] & ks["valid"] and not ks["train"] & ks["test"] and not ks["valid"] & ks["test"]


def test_problem_key_normalises_case_and_whitespace():
    assert problem_key("  Hello\n  World ") == problem_key("hello world")
    assert problem_key("  Hello\n  World ") == "2aae6c35c94fcfb415dbe95f408b9ce91ee846ed"
    assert problem_key("hello world") != problem_key("hello worlds")


def test_generated_no_problem_crosses_splits():
    rows = generated()
    splits = split_rows(rows, seed=42, valid_fraction=0.05, test_fraction=0.10).rows
    assert_disjoint(splits)
    ks = keys_by_split(splits)
    assert len(ks["train"]) + len(ks["valid"]) + len(ks["test"]) == 1000
    assert (len(ks["valid"]), len(ks["test"])) == (50, 100)
    assert sum(len(v) for v in splits.values()) == 5000
    assert all(len(v) % 5 == 0 for v in splits.values())


def test_split_is_deterministic_and_seeded():
    a = split_rows(generated(200, 2), seed=7).rows
    b = split_rows(generated(200, 2), seed=7).rows
    assert keys_by_split(a) == keys_by_split(b)
    c = split_rows(generated(200, 2), seed=8).rows
    assert keys_by_split(a) != keys_by_split(c)


def test_split_fixed_expected_hash():
    """Machine independence: a fixed input must give this exact split everywhere."""
    keys = [problem_key(f"Problem number {i}") for i in range(20)]
    parts = split_keys(keys, seed=42, valid_fraction=0.1, test_fraction=0.2)
    assert {k: len(v) for k, v in parts.items()} == {"train": 14, "valid": 2, "test": 4}
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    assert digest == "335bc1a4b355fcc3639287265856c32ba758e2f121d7a8a2f24e3afc691c0d1f"
    assert split_keys(list(reversed(keys)), seed=42, valid_fraction=0.1, test_fraction=0.2) == parts


def test_small_dataset_gets_every_split():
    parts = split_keys([problem_key(str(i)) for i in range(3)], valid_fraction=0.05, test_fraction=0.1)
    assert [len(parts[n]) for n in ("train", "valid", "test")] == [1, 1, 1]
    with pytest.raises(UserError, match="too few problems"):
        split_rows([{"input": "x", "solution": "y"}], valid_fraction=0.0, test_fraction=0.9)


def test_sample_split_column_respected_and_disjoint():
    rows, _ = load_rows("sample")
    splits = split_rows(rows, source="sample").rows
    assert_disjoint(splits)
    if any(r.get("split") for r in rows):
        for name, part in splits.items():
            assert all(r["split"] == name for r in part)


def test_split_column_conflict_refused_when_asked():
    rows = [
        {"input": "Add two numbers", "solution": "a", "split": "train", "_line": 1},
        {"input": "add  two numbers", "solution": "b", "split": "test", "_line": 2},
        {"input": "other", "solution": "c", "split": "valid", "_line": 3},
    ]
    with pytest.raises(UserError, match=r"rows.jsonl: problem 'Add two numbers.*several splits.*line 1=train"):
        split_rows(rows, source="rows.jsonl", conflicts="refuse")


def column_rows(spec: dict[str, list[str]]) -> list[dict]:
    """spec: statement -> split value of each of its rows (one row per value)."""
    rows, line = [], 0
    for text, values in spec.items():
        for i, value in enumerate(values):
            line += 1
            rows.append({"input": text, "solution": f"print({line})", "split": value, "_line": line, "n": i})
    return rows


def test_split_column_conflict_goes_to_most_held_out_split():
    spec = {f"problem {p}": ["train"] * 3 for p in range(20)}
    spec["problem v"] = ["valid"] * 3
    spec["problem t"] = ["test"] * 3
    spec["train and test"] = ["train", "test", "train"]
    spec["train and valid"] = ["valid", "train"]
    spec["all three"] = ["train", "valid", "test", "valid"]
    split = split_rows(column_rows(spec), source="rows.jsonl", valid_fraction=0)
    assert_disjoint(split.rows)
    where = {r["input"]: name for name, part in split.rows.items() for r in part}
    assert where["train and test"] == "test" and where["all three"] == "test" and where["train and valid"] == "valid"
    assert sum(r["input"] == "all three" for r in split.rows["test"]) == 4
    assert split.moved_to_valid == []
    by_key = {c["problem_key"]: c for c in split.conflicts}
    assert set(by_key) == {problem_key(t) for t in ("train and test", "train and valid", "all three")}
    assert by_key[problem_key("all three")]["column"] == {"train": 1, "valid": 2, "test": 1}
    assert by_key[problem_key("all three")]["lines"] == [72, 73, 74, 75]
    meta = split.meta()
    assert meta["conflicts"]["problems"] == 3 and meta["conflicts"]["rows"] == 9
    # the column's own counts, before the correction: a conflicting problem counts in each split it names
    assert split.column_problems == {"train": 23, "valid": 3, "test": 3}
    # file order within a split is kept
    assert [r["_line"] for r in split.rows["test"]] == sorted(r["_line"] for r in split.rows["test"])


def test_split_column_valid_top_up_is_seeded_by_problem_and_from_train_only():
    spec = {f"problem {p}": ["train"] * 5 for p in range(90)}
    spec |= {f"valid {p}": ["valid"] * 5 for p in range(2)}
    spec |= {f"test {p}": ["test"] * 5 for p in range(8)}
    rows = column_rows(spec)
    a = split_rows(rows, seed=3, valid_fraction=0.1, source="rows.jsonl")
    assert_disjoint(a.rows)
    ks = keys_by_split(a.rows)
    assert len(ks["valid"]) == 10 and len(a.moved_to_valid) == 8
    assert ks["test"] == {problem_key(f"test {p}") for p in range(8)}
    train_keys = {problem_key(f"problem {p}") for p in range(90)}
    assert set(a.moved_to_valid) <= train_keys and set(a.moved_to_valid) <= ks["valid"]
    assert all(len([r for r in a.rows["valid"] if r["problem_key"] == k]) == 5 for k in a.moved_to_valid)
    assert a.meta()["moved_to_valid"] == {"problems": 8, "rows": 40, "keys": a.moved_to_valid}
    assert split_rows(column_rows(spec), seed=3, valid_fraction=0.1).moved_to_valid == a.moved_to_valid
    assert split_rows(column_rows(spec), seed=4, valid_fraction=0.1).moved_to_valid != a.moved_to_valid
    # the same ranking as the by-problem split: the train keys that rank first for this seed
    assert a.moved_to_valid == sorted(split_keys(train_keys, seed=3, valid_fraction=0, test_fraction=8 / 90)["test"])
    # valid_fraction=0 keeps the column's validation split; enough valid problems: nothing moves
    assert split_rows(column_rows(spec), valid_fraction=0).moved_to_valid == []
    assert split_rows(column_rows(spec), valid_fraction=0.02).moved_to_valid == []


def test_split_modes():
    spec = {f"problem {p}": ["train"] * 2 for p in range(30)} | {"v": ["valid"], "t": ["test"]}
    by_problem = split_rows(column_rows(spec), mode="by_problem", valid_fraction=0.1, test_fraction=0.2)
    assert by_problem.method == "by problem" and by_problem.column_problems is None
    assert (len(keys_by_split(by_problem.rows)["valid"]), len(keys_by_split(by_problem.rows)["test"])) == (3, 6)
    for mode in ("auto", "column"):
        col = split_rows(column_rows(spec), mode=mode, valid_fraction=0)
        assert col.method == "split column" and keys_by_split(col.rows)["test"] == {problem_key("t")}
    plain = [{"input": f"p{i}", "solution": "x"} for i in range(10)]
    assert split_rows(plain, mode="auto").method == "by problem"
    with pytest.raises(UserError, match="rows.jsonl: data.split=column but the dataset has no split column"):
        split_rows(plain, mode="column", source="rows.jsonl")


def test_zero_row_split_is_refused():
    rows = [
        {"input": "a", "solution": "a", "split": "train", "_line": 1},
        {"input": "b", "solution": "b", "split": "test", "_line": 2},
    ]
    with pytest.raises(UserError, match="rows.jsonl: the split column leaves zero problems in split 'valid'"):
        split_rows(rows, source="rows.jsonl")
    rows.append({"input": "c", "solution": "c", "split": "train", "_line": 3})
    rows.append({"input": "d", "solution": "d", "split": "train", "_line": 4})
    # four problems: 5% asks for one validation problem, which comes from train
    split = split_rows(rows, source="rows.jsonl", seed=0)
    assert len(split.moved_to_valid) == 1 and len(split.rows["valid"]) == 1


def test_split_json_roundtrip_and_contamination(tmp_path):
    splits = split_rows(generated(50, 2), seed=1).rows
    path = tmp_path / "split.json"
    doc = write_split_json(path, splits, meta={"seed": 1})
    assert not list(tmp_path.glob("*.tmp"))
    loaded = load_split_json(path)
    assert loaded == doc
    for name in ("train", "valid", "test"):
        s = loaded["splits"][name]
        assert s["problems"] == sorted({r["problem_key"] for r in splits[name]})
        assert s["rows"] == len(splits[name]) and len(s["sha256"]) == 64
    # content hash is stable and independent of row order
    again = write_split_json(tmp_path / "b.json", {k: list(reversed(v)) for k, v in splits.items()})
    assert again["splits"]["train"]["sha256"] == doc["splits"]["train"]["sha256"]

    test_keys = loaded["splits"]["test"]["problems"]
    assert check_not_in_train(test_keys, path) == 0
    leaked = test_keys + loaded["splits"]["train"]["problems"][:3]
    with pytest.raises(UserError, match=f"3 of {len(leaked)} evaluation problems are in the training split"):
        check_not_in_train(leaked, loaded)
    assert check_not_in_train(leaked, loaded, allow_contamination=True) == 3


def test_load_split_json_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_split_json(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(UserError, match="not a valid split file"):
        load_split_json(tmp_path / "bad.json")
