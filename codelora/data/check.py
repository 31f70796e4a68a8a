"""`codelora prepare --check FILE`: validate a dataset file against the row schema without creating a run.

The schema (docs: "Dataset format"): each row needs `input` (the problem statement) and the target field
(`solution`, or `output` with data.target=output) as non-empty strings; `split` (train / valid / test;
`validation`, `val` read as valid) and `problem_id` (the dataset's own name of the problem, shown in reports) are
optional, and any other field is kept but unused. Rows with the same statement are one problem. A held-out (test)
problem is graded on the worked examples of its statement: an Examples (or Sample Input / Example 1:) section with
Input and Output blocks that a reference solution passes.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from codelora.data.examples import parse_examples
from codelora.data.load import load_rows
from codelora.data.split import problem_key

__all__ = ["check_dataset"]


def check_dataset(path: str, target: str = "solution") -> tuple[list[str], list[str]]:
    """(errors, notes) for the dataset file or folder `path`: one error line per bad row
    (`FILE:LINE: missing field 'input'`) and notes summarising a valid file (rows, problems, split column, how many
    test problems the held-out benchmark can grade). Raises UserError for a file that cannot be read at all."""
    rows, report = load_rows(path, target=target, skip_bad_rows=True, allow_empty=True)
    sep = ":" if report["unit"] == "line" else ": row "
    errors = [f"{report['source']}{sep}{b['line']}: {b['reason']}" for b in report["bad_rows"]]
    if any(r.get("split") for r in rows):  # a split column: prepare refuses rows without a value
        errors += [
            f"{report['source']}{sep}{r.get('_line', '?')}: no 'split' value, but other rows have one "
            "(give every row train, valid or test, or none)"
            for r in rows
            if not r.get("split")
        ]
    problems: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        problems.setdefault(problem_key(r["input"]), []).append(r)
    splits = Counter()
    for group in problems.values():
        splits[next((r["split"] for r in group if r.get("split")), "none")] += 1
    notes = [f"{report['source']}: {len(rows)} valid rows, {len(report['bad_rows'])} bad, {len(problems)} problems"]
    if set(splits) - {"none"}:
        notes.append(
            "split column: "
            + ", ".join(f"{splits[s]} {s}" for s in ("train", "valid", "test", "none") if splits[s])
            + " problems"
        )
    else:
        notes.append("no split column: prepare splits problems by hashing them (data.valid_fraction, test_fraction)")
    tests = [g for g in problems.values() if next((r.get("split") for r in g if r.get("split")), None) == "test"]
    pool = tests or list(problems.values())
    gradable = sum(1 for g in pool if parse_examples(g[0]["input"]))
    which = "test problems" if tests else "problems (any could be held out)"
    notes.append(
        f"{gradable} of {len(pool)} {which} have an Examples section (Input/Output blocks) the held-out benchmark "
        "can grade" + ("" if gradable == len(pool) else "; the others are left out of `evaluate --benchmark heldout`")
    )
    own = sum(1 for g in problems.values() if any(r.get("problem_id") not in (None, "") for r in g))
    if own:
        notes.append(f"problem_id: {own} of {len(problems)} problems have one (reports name them by title and id)")
    return errors, notes
