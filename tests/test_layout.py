"""The package's shape, read from its source (ast): one owner for the run folder's paths (codelora/run/), no import
circle, no module importing a later stage's module. See docs/architecture.md for the layers."""

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

# Layers, earliest first: a module may import its own layer and earlier ones, never a later one. Within a layer the
# modules are independent concerns; `cli` wires every stage.
LAYERS: list[tuple[str, ...]] = [
    ("errors", "files", "safetext", "sandbox", "presets", "registry", "hub"),
    # the registries and plain data every layer may name: "=x" is the module x alone, not its package
    (
        "=benchmarks",
        "benchmarks.base",
        "benchmarks.protocol",
        "=generation.backends",
        "generation.extract",
        "generation.sampling",
    ),
    ("config",),
    ("flags",),
    ("commands",),
    ("run",),
    ("model",),
    ("=data", "data.load", "data.split", "data.examples", "data.format", "data.check"),
    ("benchmarks", "data.generated_tests", "evaluation.reward"),
    ("evaluation.score",),
    ("data.prepare", "generation"),
    ("training",),
    ("evaluation",),
    ("selection",),
    ("publish", "download"),
    ("cli", "__main__", "__init__"),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, imported codelora module) for every import in a file, nested (lazy) ones included, those only a type
    checker reads (`if TYPE_CHECKING:`) left out; `from codelora.x import y` counts as importing codelora.x.y when
    that is a module, else codelora.x."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    type_only = {
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for n in ast.walk(block)
    }
    out = []
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("codelora.")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("codelora"):
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.append((node.lineno, sub if sub.removeprefix("codelora.") in MODULES else node.module))
    return [(line, m.removeprefix("codelora.").removeprefix("codelora")) for line, m in out]


def layer_of(module: str) -> int:
    best, rank = -1, None
    for i, layer in enumerate(LAYERS):
        for entry in layer:
            prefix = entry.lstrip("=")
            hit = module == prefix or (not entry.startswith("=") and module.startswith(prefix + "."))
            if hit and len(prefix) > best:
                best, rank = len(prefix), i
    assert rank is not None, f"codelora.{module} is in no layer of tests/test_layout.py: add it to LAYERS"
    return rank


def test_every_module_has_a_layer():
    for name in MODULES:
        layer_of(name)


def test_no_module_imports_a_later_layer():
    bad = []
    for name, path in MODULES.items():
        for line, imported in imports_of(path):
            if imported and imported in MODULES and layer_of(imported) > layer_of(name):
                bad.append(f"codelora/{path.relative_to(PACKAGE)}:{line}: {name} imports later {imported}")
    assert not bad, "imports that climb back up the layers:\n" + "\n".join(bad)


def test_no_import_circle():
    graph = {name: {m for _, m in imports_of(path) if m in MODULES and m != name} for name, path in MODULES.items()}
    # a package's __init__ is not a dependency of its modules in this sense (Python imports it first anyway)
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import circles:\n" + "\n".join(cycles)


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
