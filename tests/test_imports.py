"""No module under codelora/ imports another module's private (`_name`) names, and export does not import the
model card's module at load time in a cycle (each stage owns its internals; shared helpers are public)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "codelora"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str, str]]:
    """(line, module, name) of every `from codelora.x import name` in a file, nested imports included."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("codelora"):
            out.extend((node.lineno, node.module, a.name) for a in node.names)
    return out


def _private_uses(path: Path) -> list[str]:
    """`module._name` attribute uses where `module` was imported from codelora (e.g. `import codelora.x as x`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("codelora"):
                    aliases[a.asname or a.name.split(".")[0]] = a.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("codelora"):
            for a in node.names:
                if not a.name.startswith("_") and (PACKAGE.parent / node.module.replace(".", "/") / a.name).exists():
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
                elif (PACKAGE.parent / node.module.replace(".", "/") / f"{a.name}.py").exists():
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and aliases[node.value.id] != _module_name(path)
        ):
            found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {aliases[node.value.id]}.{node.attr}")
    return found


def test_no_module_imports_another_modules_private_names():
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        me = _module_name(path)
        for line, module, name in _imports(path):
            if name.startswith("_") and not name.startswith("__") and module != me:
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line}: from {module} import {name}")
        bad += _private_uses(path)
    assert not bad, "private names imported across modules:\n" + "\n".join(bad)


def test_export_and_model_card_do_not_import_each_other_both_ways():
    card = {m for _, m, _ in _imports(PACKAGE / "publish" / "model_card.py")}
    assert "codelora.publish.export" not in card


def test_runs_reads_the_folder_without_train():
    # runs.py is the schema every stage reads through: it must not depend on a stage's module
    mods = {m for _, m, _ in _imports(PACKAGE / "run" / "layout.py")}
    assert not mods & {
        "codelora.training.sft",
        "codelora.data.prepare",
        "codelora.evaluation.evaluate",
        "codelora.selection.compare",
    }


STAGES = {
    f"codelora.{m}"
    for m in (
        "cli",
        "download",
        "data.prepare",
        "training.sft",
        "generation.generate",
        "evaluation.evaluate",
        "evaluation.score",
        "selection.compare",
        "publish.report",
        "publish.export",
    )
}


def test_benchmarks_import_no_stage_module():
    # a benchmark is read by evaluate, score, compare and the card; it must not reach back into any of them
    # (benchmarks/heldout.py once imported its problems reader from the score stage)
    bad = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: from {module} import {name}"
        for path in sorted((PACKAGE / "benchmarks").glob("*.py"))
        for line, module, name in _imports(path)
        if module in STAGES or any(module.startswith(s + ".") for s in STAGES)
    ]
    assert not bad, "benchmark modules importing a stage:\n" + "\n".join(bad)
