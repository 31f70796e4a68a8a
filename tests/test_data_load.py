"""load_rows: sources, validation and bad-row reporting."""

from __future__ import annotations

import json

import pytest

from codelora.data.load import load_rows
from codelora.errors import UserError


def good(i: int, **extra) -> dict:
    row = {"id": f"r{i}", "input": f"Problem {i}: print {i}.", "solution": f"print({i})\n", "output": "ok"}
    row.update(extra)
    return row


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_sample_loads():
    rows, report = load_rows("sample")
    assert report["rows"] == len(rows) > 0
    assert report["bad_rows"] == []
    assert all(r["input"].strip() and r["solution"].strip() for r in rows)
    assert {r.get("split") for r in rows} <= {"train", "valid", "test", None}


def test_jsonl_json_list_and_json_lines(tmp_path):
    rows = [good(i) for i in range(3)]
    got, rep = load_rows(write_jsonl(tmp_path / "a.jsonl", rows))
    assert [r["id"] for r in got] == ["r0", "r1", "r2"] and rep["kind"] == "jsonl"
    (tmp_path / "b.json").write_text(json.dumps(rows))
    got, rep = load_rows(str(tmp_path / "b.json"))
    assert len(got) == 3 and rep["kind"] == "json"
    got, _ = load_rows(write_jsonl(tmp_path / "c.json", rows))
    assert len(got) == 3


def test_parquet_and_save_to_disk(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list([good(i) for i in range(4)])
    ds.to_parquet(str(tmp_path / "d.parquet"))
    got, rep = load_rows(str(tmp_path / "d.parquet"))
    assert len(got) == 4 and rep["kind"] == "parquet"
    datasets.DatasetDict({"train": ds, "validation": ds.select([0])}).save_to_disk(str(tmp_path / "disk"))
    got, rep = load_rows(str(tmp_path / "disk"))
    assert len(got) == 5
    assert [r["split"] for r in got].count("valid") == 1


def test_split_alias_and_target_output(tmp_path):
    got, _ = load_rows(write_jsonl(tmp_path / "a.jsonl", [good(0, split="validation"), good(1, split="Train")]))
    assert [r["split"] for r in got] == ["valid", "train"]
    got, rep = load_rows(write_jsonl(tmp_path / "b.jsonl", [good(0, solution="")]), target="output")
    assert len(got) == 1 and rep["target"] == "output"


BAD_CASES = {
    "missing field": ({"input": "x"}, "missing field 'solution'"),
    "non-string": ({"input": "x", "solution": 3}, "must be a string"),
    "empty value": ({"input": "  ", "solution": "print(1)"}, "'input' is empty"),
    "unknown split": ({"input": "x", "solution": "y", "split": "dev"}, "unknown split"),
    "not an object": ([1, 2], "expected a JSON object"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_row_names_file_and_line(tmp_path, case):
    bad, reason = BAD_CASES[case]
    path = write_jsonl(tmp_path / "rows.jsonl", [good(0), good(1), bad, good(3)])
    with pytest.raises(UserError) as e:
        load_rows(path)
    msg = str(e.value)
    assert path in msg and "line 3" in msg and reason in msg and "1 bad row" in msg
    assert "\n" not in msg
    rows, report = load_rows(path, skip_bad_rows=True)
    assert len(rows) == 3
    assert [b["line"] for b in report["bad_rows"]] == [3] and reason in report["bad_rows"][0]["reason"]


def test_malformed_json_and_non_utf8_lines(tmp_path):
    path = tmp_path / "rows.jsonl"
    lines = [json.dumps(good(0)).encode(), b'{"input": "x", ', json.dumps(good(2)).encode(), b'{"input": "\xff\xfe"}']
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(UserError) as e:
        load_rows(str(path))
    msg = str(e.value)
    assert str(path) in msg and "2 bad row(s)" in msg
    assert "line 2: malformed JSON" in msg and "line 4: not valid UTF-8" in msg
    rows, report = load_rows(str(path), skip_bad_rows=True)
    assert len(rows) == 2 and [b["line"] for b in report["bad_rows"]] == [2, 4]
    assert report["rows_read"] == 4


def test_many_bad_rows_shows_first_few_and_count(tmp_path):
    path = write_jsonl(tmp_path / "rows.jsonl", [{"input": "x"}] * 9 + [good(0)])
    with pytest.raises(UserError, match=r"9 bad row\(s\).*line 1:.*line 5:.*and 4 more"):
        load_rows(path)


def test_empty_file_and_all_bad(tmp_path):
    for name, data in (("e.jsonl", b""), ("w.jsonl", b"\n  \n"), ("e.json", b"")):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(UserError, match="empty"):
            load_rows(str(tmp_path / name))
    (tmp_path / "l.json").write_text("[]")
    with pytest.raises(UserError, match="empty"):
        load_rows(str(tmp_path / "l.json"))
    path = write_jsonl(tmp_path / "bad.jsonl", [{"input": "x"}])
    with pytest.raises(UserError, match="no usable rows"):
        load_rows(path, skip_bad_rows=True)


def test_unknown_source_and_unsupported_type(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_rows(str(tmp_path / "missing.jsonl"))
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(UserError, match="unsupported file type"):
        load_rows(str(tmp_path / "x.csv"))


def test_hub_failure_is_one_line_user_error(monkeypatch):
    datasets = pytest.importorskip("datasets")

    def boom(*a, **k):
        raise ConnectionError("Couldn't reach the hub\nsecond line")

    monkeypatch.setattr(datasets, "load_dataset", boom)
    with pytest.raises(UserError) as e:
        load_rows("deep")
    msg = str(e.value)
    assert "Naholav/CodeGen-Deep-5K" in msg and "local file" in msg and "\n" not in msg
