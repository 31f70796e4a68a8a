"""Split rows by problem, so no problem statement ever sits in two splits.

The problem key is the sha1 of the statement, lowercased with whitespace collapsed: every solution of one
problem shares it. How problems are assigned (``data.split``):

* ``by_problem`` (and ``auto`` without a ``split`` column): each key is hashed with sha256(seed:key) to a number
  in [0, 1); the keys are ranked by that number and the first ``round(n * test_fraction)`` go to test, the next
  ``round(n * valid_fraction)`` to valid, the rest to train (at least one problem per non-zero fraction once
  there are 3 or more problems).
* ``column`` (and ``auto`` with a ``split`` column): the dataset's own column. Two corrections, both listed in
  the result (and so in split.json and data_report.json):

  - a problem whose rows carry different split values goes whole to the most held-out split it appears in
    (test before valid before train), so none of its rows is trained on (``data.split_conflicts: refuse``
    stops instead);
  - when the column's validation split has fewer problems than ``valid_fraction`` asks for (the real
    CodeGen-Deep/Diverse-5K files have 3-4), whole problems move from train to valid: the train problems
    ranked first by the same sha256(seed:key) order, so the choice is seeded and machine-independent.
    ``valid_fraction: 0`` keeps the column's validation split as it is.

Only sha1/sha256 and sorting are used - no Python ``hash()``, no RNG - so the split is identical across runs
and machines.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codelora.errors import UserError
from codelora.files import atomic_write_text

__all__ = [
    "CONFLICT_ACTIONS",
    "SPLITS",
    "SPLIT_MODES",
    "Split",
    "check_not_in_train",
    "load_split_json",
    "problem_key",
    "split_keys",
    "split_rows",
    "write_split_json",
]

SPLITS = ("train", "valid", "test")
SPLIT_MODES = ("auto", "column", "by_problem")
CONFLICT_ACTIONS = ("held_out", "refuse")
# Most held-out first: a conflicting problem goes to the first of these it appears in.
HELD_OUT_ORDER = ("test", "valid", "train")
SPLIT_JSON_VERSION = 1
SHOW_FIRST = 6


def normalise_problem(text: str) -> str:
    """Problem statement lower-cased with runs of whitespace made one space (what `problem_key` hashes)."""
    return " ".join(text.lower().split())


def problem_key(text: str) -> str:
    """sha1 hex of the normalised problem statement (lowercase, whitespace collapsed)."""
    return hashlib.sha1(normalise_problem(text).encode("utf-8")).hexdigest()


def _unit(seed: int | str, key: str) -> float:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _ranked(keys, seed: int | str) -> list[str]:
    return sorted(set(keys), key=lambda k: (_unit(seed, k), k))


def _count(n: int, frac: float) -> int:
    """Problems a fraction asks for: round(n * frac), at least 1 for a non-zero fraction once n >= 3."""
    c = round(n * frac)
    return max(c, 1) if frac > 0 and n >= 3 else c


def split_keys(
    keys: list[str] | set[str], *, seed: int = 42, valid_fraction: float = 0.05, test_fraction: float = 0.10
) -> dict[str, list[str]]:
    """Assign problem keys to train/valid/test deterministically; each list is sorted."""
    ordered = _ranked(keys, seed)
    n = len(ordered)
    n_test = _count(n, test_fraction)
    n_valid = min(_count(n, valid_fraction), max(n - n_test - 1, 0))
    return {
        "train": sorted(ordered[n_test + n_valid :]),
        "valid": sorted(ordered[n_test : n_test + n_valid]),
        "test": sorted(ordered[:n_test]),
    }


@dataclass
class Split:
    """What split_rows decided.

    rows: {train, valid, test: rows}, row order kept; method: "by problem" or "split column";
    moved_to_valid: sorted problem keys moved from the column's train split to valid (the top-up);
    conflicts: one dict per problem whose rows disagreed: {problem_key, statement (first 60 characters),
    column: {split: rows}, lines (first few), to: split it went to}; column_problems: problems per split as
    the column had them (before both corrections), None for by problem.
    """

    rows: dict[str, list[dict[str, Any]]]
    method: str
    moved_to_valid: list[str] = field(default_factory=list)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    column_problems: dict[str, int] | None = None

    def meta(self) -> dict[str, Any]:
        """The decisions, as split.json and data_report.json record them (problem keys in full)."""
        moved_rows = sum(1 for r in self.rows["valid"] if r["problem_key"] in set(self.moved_to_valid))
        return {
            "method": self.method,
            "column_problems": self.column_problems,
            "moved_to_valid": {"problems": len(self.moved_to_valid), "rows": moved_rows, "keys": self.moved_to_valid},
            "conflicts": {
                "problems": len(self.conflicts),
                "rows": sum(sum(c["column"].values()) for c in self.conflicts),
                "action": "all rows to the most held-out split (test > valid > train)",
                "list": self.conflicts,
            },
        }


def split_rows(
    rows: list[dict[str, Any]],
    *,
    seed: int = 42,
    valid_fraction: float = 0.05,
    test_fraction: float = 0.10,
    source: str = "dataset",
    mode: str = "auto",
    conflicts: str = "held_out",
) -> Split:
    """Split rows by problem (see the module docstring); each row gains `problem_key`.

    mode: auto | column | by_problem; conflicts: held_out | refuse. Raises UserError for an unknown mode,
    `column` without a split column, rows without a split value beside rows with one, a conflict under
    `refuse`, and a split left with zero problems.
    """
    if mode not in SPLIT_MODES:
        raise UserError(f"data.split={mode!r} is not valid; choices: {', '.join(SPLIT_MODES)}")
    if conflicts not in CONFLICT_ACTIONS:
        raise UserError(f"data.split_conflicts={conflicts!r} is not valid; choices: {', '.join(CONFLICT_ACTIONS)}")
    by_key: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        row["problem_key"] = problem_key(row["input"])
        by_key.setdefault(row["problem_key"], []).append(row)
    has_column = any(r.get("split") is not None for r in rows)
    if mode == "column" and not has_column:
        raise UserError(
            f"{source}: data.split=column but the dataset has no split column; use data.split=auto or by_problem"
        )
    if has_column and mode != "by_problem":
        assign, result = _from_column(by_key, seed, valid_fraction, source, conflicts)
    else:
        parts = split_keys(list(by_key), seed=seed, valid_fraction=valid_fraction, test_fraction=test_fraction)
        if not parts["train"]:
            raise UserError(f"{source}: too few problems ({len(by_key)}) to leave any for training")
        assign = {k: name for name, ks in parts.items() for k in ks}
        result = Split({}, "by problem")
    result.rows = {name: [] for name in SPLITS}
    for row in rows:
        result.rows[assign[row["problem_key"]]].append(row)
    return result


def _from_column(
    by_key: dict[str, list[dict[str, Any]]], seed: int, valid_fraction: float, source: str, on_conflict: str
) -> tuple[dict[str, str], Split]:
    """(problem key -> split, Split without rows) from the split column, with both corrections applied."""
    assign: dict[str, str] = {}
    found: list[dict[str, Any]] = []
    column_problems = dict.fromkeys(SPLITS, 0)
    for key, group in by_key.items():
        names = [r.get("split") for r in group]
        if None in names:
            lines = [str(r.get("_line", "?")) for r in group if r.get("split") is None][:5]
            raise UserError(
                f"{source}: rows without a split value (line {', '.join(lines)}) in a dataset with a split column"
            )
        for name in set(names):
            column_problems[name] += 1
        if len(set(names)) == 1:
            assign[key] = names[0]
            continue
        to = next(n for n in HELD_OUT_ORDER if n in names)
        first = " ".join(group[0]["input"].split())[:60]
        if on_conflict == "refuse":
            where = ", ".join(f"line {r.get('_line', '?')}={r['split']}" for r in group[:SHOW_FIRST])
            raise UserError(
                f"{source}: problem '{first}...' (key {key[:12]}) is in several splits ({where}); "
                "that would leak test problems into training - give all its rows one split, or set "
                "data.split_conflicts=held_out to put them all in the most held-out split"
            )
        assign[key] = to
        found.append(
            {
                "problem_key": key,
                "statement": first,
                "column": {n: names.count(n) for n in SPLITS if n in names},
                "lines": [r.get("_line") for r in group[:SHOW_FIRST]],
                "to": to,
            }
        )
    moved: list[str] = []
    have = sum(1 for v in assign.values() if v == "valid")
    want = _count(len(by_key), valid_fraction)
    if have < want:
        train_keys = [k for k, v in assign.items() if v == "train"]
        # the seeded ranking of split_keys; at least one problem stays in train
        moved = sorted(_ranked(train_keys, seed)[: max(0, min(want - have, len(train_keys) - 1))])
        for k in moved:
            assign[k] = "valid"
    for name in SPLITS:
        if name not in assign.values():
            hint = "raise data.valid_fraction to fill it from train, " if name == "valid" else ""
            raise UserError(
                f"{source}: the split column leaves zero problems in split '{name}'; {hint}add some, "
                "or set data.split=by_problem to ignore the column"
            )
    found.sort(key=lambda c: c["problem_key"])
    return assign, Split({}, "split column", moved, found, column_problems)


def _row_digest(row: dict[str, Any]) -> str:
    clean = {k: v for k, v in row.items() if not k.startswith("_")}
    return hashlib.sha256(json.dumps(clean, sort_keys=True, default=str).encode()).hexdigest()


def split_summary(splits: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per split: example and problem counts and the sorted problem keys (the body of split.json)."""
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
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")
    return doc


def load_split_json(path: str | Path) -> dict[str, Any]:
    """A run's split.json; UserError naming the file when it is missing, unreadable or not a split document."""
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
