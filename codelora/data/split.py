"""Split rows by problem, so no problem statement ever sits in two splits.

The problem key is the sha1 of the statement, lowercased with whitespace collapsed: every solution of one
problem shares it. A dataset with a ``split`` column keeps its split (a problem whose rows disagree is a
leak and stops the run). Otherwise the split is computed from the keys alone: each key is hashed with
sha256(seed:key) to a number in [0, 1); the keys are ranked by that number and the first
``round(n * test_fraction)`` go to test, the next ``round(n * valid_fraction)`` to valid, the rest to
train (at least one problem per non-zero fraction once there are 3 or more problems). Only sha1/sha256
and sorting are used - no Python ``hash()``, no RNG - so the split is identical across runs and machines.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from codelora.errors import UserError

__all__ = [
    "SPLITS",
    "check_not_in_train",
    "load_split_json",
    "problem_key",
    "split_keys",
    "split_rows",
    "write_split_json",
]

SPLITS = ("train", "valid", "test")
SPLIT_JSON_VERSION = 1


def normalise_problem(text: str) -> str:
    return " ".join(text.lower().split())


def problem_key(text: str) -> str:
    """sha1 hex of the normalised problem statement (lowercase, whitespace collapsed)."""
    return hashlib.sha1(normalise_problem(text).encode("utf-8")).hexdigest()


def _unit(seed: int | str, key: str) -> float:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_keys(
    keys: list[str] | set[str], *, seed: int = 42, valid_fraction: float = 0.05, test_fraction: float = 0.10
) -> dict[str, list[str]]:
    """Assign problem keys to train/valid/test deterministically; each list is sorted."""
    ordered = sorted(set(keys), key=lambda k: (_unit(seed, k), k))
    n = len(ordered)

    def count(frac: float) -> int:
        c = round(n * frac)
        return max(c, 1) if frac > 0 and n >= 3 else c

    n_test = count(test_fraction)
    n_valid = min(count(valid_fraction), max(n - n_test - 1, 0))
    return {
        "train": sorted(ordered[n_test + n_valid :]),
        "valid": sorted(ordered[n_test : n_test + n_valid]),
        "test": sorted(ordered[:n_test]),
    }


def split_rows(
    rows: list[dict[str, Any]],
    *,
    seed: int = 42,
    valid_fraction: float = 0.05,
    test_fraction: float = 0.10,
    source: str = "dataset",
) -> dict[str, list[dict[str, Any]]]:
    """Return {train, valid, test: rows}; each row gains `problem_key`. Row order within a split is kept."""
    by_key: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        row["problem_key"] = problem_key(row["input"])
        by_key.setdefault(row["problem_key"], []).append(row)
    has_column = any(r.get("split") is not None for r in rows)
    if has_column:
        assign: dict[str, str] = {}
        for key, group in by_key.items():
            names = {r.get("split") for r in group}
            if None in names:
                lines = [str(r.get("_line", "?")) for r in group if r.get("split") is None][:5]
                raise UserError(
                    f"{source}: rows without a split value (line {', '.join(lines)}) in a dataset with a split column"
                )
            if len(names) > 1:
                first = " ".join(group[0]["input"].split())[:60]
                where = ", ".join(f"line {r.get('_line', '?')}={r['split']}" for r in group[:6])
                raise UserError(
                    f"{source}: problem '{first}...' (key {key[:12]}) is in several splits ({where}); "
                    "that would leak test problems into training - give all its rows one split"
                )
            assign[key] = names.pop()
        for name in SPLITS:
            if name not in assign.values():
                raise UserError(
                    f"{source}: the split column has zero rows for split '{name}'; add some or remove the "
                    "split column to split by problem"
                )
    else:
        parts = split_keys(list(by_key), seed=seed, valid_fraction=valid_fraction, test_fraction=test_fraction)
        assign = {k: name for name, ks in parts.items() for k in ks}
        if not parts["train"]:
            raise UserError(f"{source}: too few problems ({len(by_key)}) to leave any for training")
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in SPLITS}
    for row in rows:
        out[assign[row["problem_key"]]].append(row)
    return out


def _row_digest(row: dict[str, Any]) -> str:
    clean = {k: v for k, v in row.items() if not k.startswith("_")}
    return hashlib.sha256(json.dumps(clean, sort_keys=True, default=str).encode()).hexdigest()


def split_summary(splits: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    out = {}
    for name in SPLITS:
        rows = splits.get(name, [])
        keys = sorted({r["problem_key"] for r in rows})
        content = hashlib.sha256()
        for digest in sorted(_row_digest(r) for r in rows):
            content.update(digest.encode())
        out[name] = {
            "rows": len(rows),
            "n_problems": len(keys),
            "sha256": content.hexdigest(),
            "problems": keys,
        }
    return out


def write_split_json(path: str | Path, splits: dict[str, list[dict[str, Any]]], meta: dict | None = None) -> dict:
    """Write per split the sorted problem keys, row count and a sha256 of the rows' content (atomically)."""
    doc = {"version": SPLIT_JSON_VERSION, "key": "sha1(lowercase, whitespace-collapsed statement)"}
    doc.update(meta or {})
    doc["splits"] = split_summary(splits)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return doc


def load_split_json(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: split file not found (it is written by prepare/train into the run folder)")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: not a valid split file ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("splits"), dict) or "train" not in doc["splits"]:
        raise UserError(f"{path}: not a valid split file (no splits.train)")
    return doc


def check_not_in_train(
    keys: list[str] | set[str], split_json: dict[str, Any] | str | Path, allow_contamination: bool = False
) -> int:
    """Count evaluation problem keys that are in the training split; raise unless allow_contamination."""
    doc = split_json if isinstance(split_json, dict) else load_split_json(split_json)
    train = set(doc["splits"]["train"]["problems"])
    keys = set(keys)
    hit = len(keys & train)
    if hit and not allow_contamination:
        raise UserError(
            f"{hit} of {len(keys)} evaluation problems are in the training split; evaluate on valid/test "
            "problems, or pass --allow-contamination to run anyway (results then overstate the model)"
        )
    return hit
