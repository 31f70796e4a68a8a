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
    splits = split_rows(rows, seed=42, valid_fraction=0.05, test_fraction=0.10)
    assert_disjoint(splits)
    ks = keys_by_split(splits)
    assert len(ks["train"]) + len(ks["valid"]) + len(ks["test"]) == 1000
    assert (len(ks["valid"]), len(ks["test"])) == (50, 100)
    assert sum(len(v) for v in splits.values()) == 5000
    assert all(len(v) % 5 == 0 for v in splits.values())


def test_split_is_deterministic_and_seeded():
    a = split_rows(generated(200, 2), seed=7)
    b = split_rows(generated(200, 2), seed=7)
    assert keys_by_split(a) == keys_by_split(b)
    c = split_rows(generated(200, 2), seed=8)
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
    splits = split_rows(rows, source="sample")
    assert_disjoint(splits)
    if any(r.get("split") for r in rows):
        for name, part in splits.items():
            assert all(r["split"] == name for r in part)


def test_split_column_leak_is_refused():
    rows = [
        {"input": "Add two numbers", "solution": "a", "split": "train", "_line": 1},
        {"input": "add  two numbers", "solution": "b", "split": "test", "_line": 2},
        {"input": "other", "solution": "c", "split": "valid", "_line": 3},
    ]
    with pytest.raises(UserError, match=r"rows.jsonl: problem 'Add two numbers.*several splits.*line 1=train"):
        split_rows(rows, source="rows.jsonl")


def test_zero_row_split_is_refused():
    rows = [
        {"input": "a", "solution": "a", "split": "train", "_line": 1},
        {"input": "b", "solution": "b", "split": "test", "_line": 2},
    ]
    with pytest.raises(UserError, match="rows.jsonl: the split column has zero rows for split 'valid'"):
        split_rows(rows, source="rows.jsonl")


def test_split_json_roundtrip_and_contamination(tmp_path):
    splits = split_rows(generated(50, 2), seed=1)
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
