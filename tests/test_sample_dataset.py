import json
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from codelora.data.examples import parse_examples

DATA = Path(__file__).resolve().parents[1] / "codelora" / "data" / "sample_problems.jsonl"
VERY_EASY = DATA.with_name("sample_very_easy.jsonl")  # `data.dataset: demo` = both files
FIELDS = {
    "id",
    "problem_id",
    "input",
    "output",
    "solution",
    "split",
    "difficulty",
    "source",
    "license",
    "dataset",
}
FENCE_RE = re.compile(r"```python\n(.*?)```", re.DOTALL)
PYTHON = shutil.which("python3") or sys.executable


def _rows(paths=(DATA, VERY_EASY)):
    rows = []
    for path in paths:
        with path.open(encoding="utf-8") as f:
            rows += [json.loads(line) for line in f if line.strip()]
    return rows


ROWS = _rows()


def _norm(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def _by_problem():
    groups = defaultdict(list)
    for r in ROWS:
        groups[r["problem_id"]].append(r)
    return groups


def test_file_is_small():
    assert DATA.stat().st_size + VERY_EASY.stat().st_size < 300_000


def test_schema():
    ids = set()
    for r in ROWS:
        assert set(r) == FIELDS, r.get("id")
        assert all(isinstance(r[k], str) and r[k] for k in FIELDS)
        assert r["id"] not in ids
        ids.add(r["id"])
        assert r["id"].startswith(r["problem_id"] + "-")
        assert r["split"] in {"train", "test", "valid"}
        assert r["difficulty"] in {"VERY_EASY", "EASY", "MEDIUM"}
        assert r["source"] == "codelora-sample"
        assert r["dataset"] == "codelora-sample"
        assert r["license"] == "MIT"
        assert r["output"].startswith("<think>\n")
        assert "</think>" in r["output"]
        assert FENCE_RE.search(r["output"]), r["id"]
        for section in ("Input", "Output"):
            assert re.search(rf"^{section}$", r["input"], re.MULTILINE), r["id"]


def test_problem_counts_and_splits():
    groups = _by_problem()
    assert len(groups) >= 60
    multi = [pid for pid, rows in groups.items() if len({_norm(r["solution"]) for r in rows}) >= 2]
    assert len(multi) >= 15
    splits = set()
    for pid, rows in groups.items():
        assert len({r["split"] for r in rows}) == 1, pid
        assert len({r["input"] for r in rows}) == 1, pid
        assert 1 <= len(rows) <= 3, pid
        splits.add(rows[0]["split"])
    assert splits == {"train", "test", "valid"}


def test_every_problem_has_examples():
    for pid, rows in _by_problem().items():
        ex = parse_examples(rows[0]["input"])
        assert 1 <= len(ex) <= 3, pid


def _run(code: str, stdin: str) -> str:
    proc = subprocess.run(
        [PYTHON, "-I", "-c", code],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _check_row(row):
    failures = []
    examples = parse_examples(row["input"])
    if not examples:
        return [f"{row['id']}: no examples parsed"]
    fenced = FENCE_RE.search(row["output"]).group(1)
    codes = {"solution": row["solution"]}
    if fenced.strip() != row["solution"].strip():
        codes["output-fence"] = fenced
    for label, code in codes.items():
        for k, (stdin, expected) in enumerate(examples):
            try:
                got = _run(code, stdin)
            except (AssertionError, subprocess.TimeoutExpired) as exc:
                failures.append(f"{row['id']} {label} example {k}: {exc}")
                continue
            if _norm(got) != _norm(expected):
                failures.append(f"{row['id']} {label} example {k}: expected {expected!r}, got {got!r}")
    return failures


def test_solutions_pass_statement_examples():
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(_check_row, ROWS))
    failures = [f for res in results for f in res]
    assert not failures, "\n".join(failures[:20])


def test_very_easy_tier_for_the_demo():
    """The VERY_EASY tier (issue #28): one-liners in every split, after the 63 classic problems, whose rows and
    splits it leaves as they were; held-out problems of the same shapes as trained ones."""
    groups = _by_problem()
    tier = {pid: rows for pid, rows in groups.items() if rows[0]["difficulty"] == "VERY_EASY"}
    assert min(int(pid.split("-")[1]) for pid in tier) == 64 and len(groups) - len(tier) == 63
    by_split = defaultdict(list)
    for pid, rows in tier.items():
        by_split[rows[0]["split"]].append(pid)
        assert len(rows) == 1 and rows[0]["solution"].count("\n") <= 2, pid  # a one- or two-line program
    assert len(by_split["train"]) >= 10 and len(by_split["test"]) >= 8 and by_split["valid"]
    classic = _rows((DATA,))
    assert all(r["difficulty"] != "VERY_EASY" for r in classic) and len(classic) == 104  # `sample` as it was
    assert all(r["difficulty"] == "VERY_EASY" for r in _rows((VERY_EASY,)))
    assert "VERY_EASY" in (Path(__file__).resolve().parents[1] / "docs" / "data.md").read_text()

    from codelora.data.load import load_rows

    demo, report = load_rows("demo")
    assert len(demo) == len(ROWS) and report["rows_read"] == len(ROWS) and not report["bad_rows"]
    assert len(load_rows("sample")[0]) == 104
