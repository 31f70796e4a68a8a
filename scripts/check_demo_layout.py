"""Compare a `make demo` run folder with the one recorded before the layout refactor (scripts/demo_layout.json):
the same files, and the same keys in each JSON file (values differ run to run; keys and files must not).

Usage: python scripts/check_demo_layout.py [outputs/demo]   (exit 0: same; 1: the differences are printed)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RECORD = Path(__file__).with_name("demo_layout.json")


def keys(doc, prefix: str = "") -> set[str]:
    """Dotted keys of a JSON object, nested objects included (not inside per-problem or per-file maps)."""
    out: set[str] = set()
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.add(prefix + k)
            if isinstance(v, dict) and not any(c in k for c in ("problems", "matrix", "files")):
                out |= keys(v, prefix + k + ".")
    return out


def snapshot(root: Path) -> dict:
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    json_keys = {}
    for f in files:
        if f.endswith(".json"):
            try:
                json_keys[f] = sorted(keys(json.loads((root / f).read_text(encoding="utf-8"))))
            except ValueError as e:
                json_keys[f] = f"unreadable: {e}"
    return {"files": files, "json_keys": json_keys}


def main(argv: list[str]) -> int:
    root = Path(argv[0] if argv else "outputs/demo")
    want, got = json.loads(RECORD.read_text(encoding="utf-8")), snapshot(root)
    problems = [f"missing file: {f}" for f in sorted(set(want["files"]) - set(got["files"]))]
    problems += [f"new file: {f}" for f in sorted(set(got["files"]) - set(want["files"]))]
    for f, ks in want["json_keys"].items():
        if f in got["json_keys"] and got["json_keys"][f] != ks:
            a, b = set(ks), set(got["json_keys"][f])
            problems.append(f"{f}: keys missing {sorted(a - b)}, new {sorted(b - a)}")
    print("\n".join(problems) or f"{root}: same files and JSON keys as {RECORD.name} ({len(want['files'])} files)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
