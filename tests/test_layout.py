"""The package's shape, read from its source (ast): one owner for the run folder's paths (codelora/run/)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "codelora"

# Names of files and folders inside a run folder (codelora/run/layout.py, RunFolder and ResultFolder).
RUN_FILES = {
    "config.yaml",
    "split.json",
    "data_report.json",
    "meta.json",
    "metrics.jsonl",
    "metrics.csv",
    "selection.json",
    "summary.json",
    "results.jsonl",
    "generations.jsonl",
    "problems.jsonl",
    "problems_report.json",
    "report.html",
    "report.md",
    "loss.png",
    "lr.png",
    "lengths.png",
    "compare.png",
    ".lock",
}
# Folder names that are also ordinary words (the model `final`, a report section `data`): flagged only where a path
# is built with them (`x / "final"`).
RUN_DIRS = {"checkpoints", "final", "final.tmp", "logs", "plots", "eval", "data", "tests", "tensorboard"}

def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def run_file_literals(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            v = node.value
            if v in RUN_FILES or any(v.endswith("/" + f) for f in RUN_FILES):
                found.append(f"{node.lineno}: {v!r}")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            right = node.right
            if isinstance(right, ast.Constant) and isinstance(right.value, str):
                if right.value in RUN_DIRS or right.value.split("/")[0] in RUN_DIRS:
                    found.append(f"{node.lineno}: / {right.value!r}")
    return found


def test_no_run_file_path_literal_outside_run():
    bad = [
        f"codelora/{path.relative_to(PACKAGE)}:{hit}"
        for name, path in MODULES.items()
        if not name.startswith("run")
        for hit in run_file_literals(path)
    ]
    assert not bad, "run-folder paths spelled out outside codelora/run/ (use RunFolder / ResultFolder):\n" + "\n".join(
        bad
    )


@pytest.mark.parametrize(
    "source,hits",
    [
        ('p = run / "final" / "meta.json"', 2),
        ('x = "selection.json"', 1),
        ('if kind == "final": pass', 0),
        ('msg = f"{run} has no split.json"', 0),
    ],
)
def test_the_literal_check_can_fail(tmp_path, source, hits):
    f = tmp_path / "m.py"
    f.write_text(source + "\n")
    assert len(run_file_literals(f)) == hits
