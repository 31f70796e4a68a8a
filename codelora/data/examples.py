"""Extract worked examples (input, expected output) from problem statements.

Supported layouts (case-insensitive):

* Codeforces / OpenCodeReasoning style::

      Examples

      Input

      3
      1 2 3

      Output

      6

  ("Example" singular too, with or without blank lines, ``Input:``/``Output:``).
* AtCoder style: ``Sample Input 1`` / ``Sample Output 1`` headings.
* Inline style: ``Example 1:`` followed by ``Input: ...`` / ``Output: ...``.
* Dashed headings (TACO / APPS / CodeChef): ``-----Examples-----``, ``-----Sample Input-----``,
  ``----- Sample Input 1 ------``, ``----- explanation 1 ------``.

Blocks may be wrapped in ``` fences.  Only text after the first
examples heading (or the first ``Sample Input`` heading) is considered, so
the statement's own "Input"/"Output" specification sections are ignored.
"""

from __future__ import annotations

import re
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["parse_examples"]

_HEADING_RE = re.compile(
    r"^\s*(?:#+\s*)?(?:\*\*)?\s*(?:examples?|samples?|sample\s+tests?|sample\s+cases?|"
    r"(?:example|sample)\s*#?\s*\d+)\s*(?:\*\*)?\s*:?\s*(?:\*\*)?\s*$",
    re.IGNORECASE,
)
_SAMPLE_INPUT_RE = re.compile(r"^\s*(?:#+\s*)?(?:\*\*)?\s*sample\s+input\b", re.IGNORECASE)
_MARKER_RE = re.compile(
    r"^\s*(?:#+\s*)?(?:\*\*)?\s*(?:sample\s+|example\s+)?(?P<kind>input|output)"
    r"(?:\s*#?\s*\d+)?\s*(?:\*\*)?\s*(?::\s*(?:\*\*)?\s*(?P<rest>.*?)|\s*)$",
    re.IGNORECASE,
)
_STOP_RE = re.compile(
    r"^\s*(?:#+\s*)?(?:\*\*)?\s*(?:notes?|explanation|hints?|constraints|"
    r"(?:example|sample)\s*#?\s*\d+|examples?|samples?)\b\s*(?:\*\*)?\s*:?",
    re.IGNORECASE,
)
_FENCE_RE = re.compile(r"^\s*(`{3,}|~{3,})")
# TACO / APPS / CodeChef statements wrap headings in dashes: "-----Examples-----", "----- Sample Input 1 ------".
_DASHED_RE = re.compile(r"^\s*[-=]{3,}\s*([A-Za-z][^-=]*?)\s*[-=]{3,}\s*$")


def _unwrap_heading(line: str) -> str:
    m = _DASHED_RE.match(line)
    return m.group(1) if m else line


def _is_prose(line: str) -> bool:
    s = line.strip()
    words = re.findall(r"[A-Za-z]{2,}", s)
    return len(s.split()) >= 4 and len(words) >= 2 and s[-1:] in ".:!?)"


def _clean_block(lines: list[str], is_output: bool) -> str:
    lines = [ln.rstrip() for ln in lines]
    # Fenced block: take the first fence's content.
    for i, ln in enumerate(lines):
        m = _FENCE_RE.match(ln)
        if m:
            fence = m.group(1)[0] * 3
            body = []
            for ln2 in lines[i + 1 :]:
                if ln2.strip().startswith(fence):
                    break
                body.append(ln2)
            lines = body
            break
    while lines and not lines[0].strip():
        lines.pop(0)
    if is_output:
        # Drop trailing explanatory prose separated by a blank line.
        for i in range(1, len(lines)):
            if not lines[i - 1].strip() and lines[i].strip() and _is_prose(lines[i]):
                lines = lines[:i]
                break
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines)


def _region_start(lines: list[str]) -> int | None:
    for i, ln in enumerate(lines):
        if _HEADING_RE.match(ln):
            return i + 1
        if _SAMPLE_INPUT_RE.match(ln):
            return i
    return None


def parse_examples(statement: str) -> list[tuple[str, str]]:
    """Return ``[(input, expected_output), ...]`` found in ``statement``.

    Lines are right-stripped; inputs end with a newline, outputs do not.
    Returns ``[]`` when no examples section is found.
    """
    if not statement:
        return []
    lines = [_unwrap_heading(ln) for ln in statement.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    start = _region_start(lines)
    if start is None:
        return []

    blocks: list[tuple[str, list[str]]] = []
    current: tuple[str, list[str]] | None = None
    in_fence = False
    for ln in lines[start:]:
        if _FENCE_RE.match(ln):
            in_fence = not in_fence
            if current is not None:
                current[1].append(ln)
            continue
        if not in_fence:
            m = _MARKER_RE.match(ln)
            if m:
                current = (m.group("kind").lower(), [])
                blocks.append(current)
                rest = m.group("rest")
                if rest and rest.strip():
                    current[1].append(rest)
                continue
            if _STOP_RE.match(ln):
                current = None
                continue
        if current is not None:
            current[1].append(ln)

    pairs: list[tuple[str, str]] = []
    pending: str | None = None
    for kind, body in blocks:
        if kind == "input":
            pending = _clean_block(body, is_output=False)
        elif pending is not None:
            out = _clean_block(body, is_output=True)
            inp = pending + "\n" if pending else ""
            pairs.append((inp, out))
            pending = None
    return pairs


# ------------------------------------------------------------- examples checked against reference solutions

PARSER_VERSION = 2  # bump when example parsing or the keep rule changes: cached problem files are rebuilt
REFERENCE_TIMEOUT = 6.0


def dataset_problems(dataset: str, target: str, keys: list[str]) -> tuple[list[dict], list[str]]:
    """The problems `keys` (codelora.data.split.problem_key of a statement) of a dataset, in the keys' order, and the
    keys missing from it: ({task_id, name, prompt, difficulty, rows, references}, missing). name: the statement's
    first non-empty line (80 characters at most); rows: the dataset rows of the problem (their id, or line number);
    references: their distinct solutions (`reference_solutions`). Bad rows are skipped, as `prepare` does."""
    from codelora.data.load import load_rows
    from codelora.data.split import problem_key

    rows, _ = load_rows(dataset, target=target, skip_bad_rows=True)
    wanted = set(keys)
    by_key: dict[str, list[dict]] = {}
    for row in rows:
        k = problem_key(row["input"])
        if k in wanted:
            by_key.setdefault(k, []).append(row)
    problems = []
    for k in keys:
        group = by_key.get(k)
        if not group:
            continue
        first = group[0]
        problems.append(
            {
                "task_id": k,
                "name": next((ln.strip() for ln in first["input"].splitlines() if ln.strip()), "")[:80],
                **({"problem_id": str(first["problem_id"])} if first.get("problem_id") not in (None, "") else {}),
                "prompt": first["input"],
                "difficulty": str(first.get("difficulty") or "unknown").lower(),
                "rows": [str(r.get("id", r.get("_line"))) for r in group],
                "references": reference_solutions(group),
            }
        )
    return problems, [k for k in keys if k not in by_key]


def reference_solutions(rows: list[dict]) -> list[str]:
    """Distinct reference programs of one problem's rows: `solution`, else the code in `output`."""
    from codelora.generation.extract import extract_code

    refs: list[str] = []
    for row in rows:
        code = row.get("solution") if isinstance(row.get("solution"), str) else None
        if not code or not code.strip():
            code, found = extract_code(row.get("output") or "")
            if not found:
                continue
        if code not in refs:
            refs.append(code)
    return refs


def check_examples(
    problems: list[dict[str, Any]], workers: int | None = None, timeout: float = REFERENCE_TIMEOUT
) -> list[dict[str, Any]]:
    """For each {task_id, prompt, references, ...}: parse the statement's examples and keep those a
    reference solution passes. Adds tests, examples_found, examples_kept, dropped; returns the problems."""
    from codelora.sandbox.grading import grade_stdio_problem

    jobs = []
    for p in problems:
        p["parsed"] = parse_examples(p["prompt"])
        jobs += [(p, i, inp, out) for i, (inp, out) in enumerate(p["parsed"])]

    def run(job):
        """(verdict, kept output). An output block may end in an explanation after a blank line
        ("6\n\n1+2+3=6."): the text up to the first blank line is tried second."""
        p, _, inp, out = job
        candidates = [out]
        if "\n\n" in out.strip():
            candidates.append(out.strip().split("\n\n")[0].rstrip())
        verdict = "no_reference"
        for ref in p["references"]:
            for cand in candidates:
                res = grade_stdio_problem(ref, [{"input": inp, "output": cand}], timeout)
                if res.passed:
                    return "accepted", cand
                verdict = res.verdict if cand is out else verdict
        return verdict, out

    from tqdm import tqdm

    with ThreadPoolExecutor(max_workers=workers or 2) as pool:
        verdicts = list(
            tqdm(pool.map(run, jobs), total=len(jobs), desc="check examples", unit="example", file=sys.stderr)
        )
    for p in problems:
        p["tests"], p["dropped"] = [], []
    for (p, i, inp, _), (verdict, out) in zip(jobs, verdicts, strict=True):
        if verdict == "accepted":
            p["tests"].append({"input": inp, "output": out})
        else:
            p["dropped"].append({"example": i + 1, "reference_verdict": verdict})
    for p in problems:
        p["examples_found"] = len(p.pop("parsed"))
        p["examples_kept"] = len(p["tests"])
    return problems
