"""Hidden tests generated from each problem's worked examples (AlphaCode / CodeContests style).

The datasets' only tests are the examples of each statement, and those are in the prompt: a program that prints
them literally passes them. So, per problem:

1. **Examples**: the statement's examples (codelora.data.examples.parse_examples) that a reference solution passes
   (`codelora.data.examples.check_examples`, the held-out benchmark's rule).
2. **References**: the problem's distinct reference solutions (the dataset's `solution` of each row) that pass every
   kept example. A reference that fails the statement's own examples is wrong (the datasets' solutions are not
   verified; one of the real Deep-5K rows in the field data fails its examples) and is left out, counted as
   `wrong_references`.
3. **Candidates**: `candidates` inputs made by type-preserving mutation of the kept examples' inputs (`mutate`):
   integers changed within a plausible range (sign kept, at most twice the value, not past a round power of ten,
   not past the input's largest size value when the integer is no larger: an index stays an index), decimals
   scaled keeping their digits after the point, characters of strings swapped or replaced by characters of the
   same class seen in the problem's examples (length kept), the tokens of a line shuffled, consecutive lines of one
   shape shuffled. Integers that look like sizes (equal to the next line's token count, the length of the string on
   the next line, the number of lines or tokens after them) are never changed, so the shape of the input holds.
4. **Agreement**: every reference runs on every candidate in the sandbox. A candidate is kept only when all of them
   finish (exit 0, no limit hit) and their outputs agree (the grader's own comparison, `outputs_match`); it is then a
   test whose expected output is the first reference's. Dropped, by reason: `reference_<verdict>` (a reference
   crashed, timed out, ...), `references_disagree`, `empty_output` (nothing printed: a program printing nothing
   would pass), `output_too_large`, `sandbox_error`, `duplicate` (mutation gave an example's input or an earlier
   candidate). A problem without a correct reference or without kept examples gains nothing.

Everything is seeded: one `random.Random` per problem from (GENERATOR_VERSION, seed, problem id), so the same seed,
problems and references give the same tests whatever the order or the other problems. Each test records how it
was made (`made`: the example it came from, the mutations, the seed, the candidate index) and how many references
agreed.

Cache: `RUN/tests/<split>.jsonl` (one record per problem of the split: id, prompt, examples, generated, counts, the
record's key) and `RUN/tests/<split>_report.json`. A record is reused only while its key (sha256 of the generator
version, seed, candidates, grading limits, the statement and the reference solutions) is unchanged: a change of
seed, problems or references regenerates the problems it touches.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import statistics
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

GENERATOR_VERSION = 1  # bump when mutation or the keep rule changes: cached tests are rebuilt
TIMEOUT = 6.0  # seconds per reference run (the held-out benchmark's REFERENCE_TIMEOUT)
MEMORY_MB = 1024
MAX_OUTPUT = 64 * 1024  # bytes of a generated test's expected output; more is dropped (output_too_large)
TESTS_FOLDER = "tests"

_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?\d+\.\d+")
_SPACE = re.compile(r"(\s+)")


# ------------------------------------------------------------------------------------------------------- mutation


def _kind(tok: str) -> str:
    """int, float or str. Digit strings with a leading zero ("007") and long 0/1 strings ("10110") are strings:
    their length and alphabet matter more than their value."""
    if _INT.fullmatch(tok):
        digits = tok.lstrip("+-")
        if len(digits) > 1 and digits[0] == "0":
            return "str"
        if len(digits) >= 4 and set(digits) <= {"0", "1"} and digits != "1" + "0" * (len(digits) - 1):
            return "str"
        return "int"
    if _FLOAT.fullmatch(tok):
        return "float"
    return "str"


def _char_class(c: str) -> str:
    return "lower" if c.islower() else "upper" if c.isupper() else "digit" if c.isdigit() else "other"


class _Input:
    """An input as lines of parts (tokens at even indexes, the whitespace between them at odd ones), so that a
    mutation rewrites tokens and keeps every separator."""

    def __init__(self, text: str) -> None:
        self.trailing = text.endswith("\n")
        body = text[:-1] if self.trailing else text
        self.lines = [_SPACE.split(line) for line in body.split("\n")]

    def text(self) -> str:
        return "\n".join("".join(parts) for parts in self.lines) + ("\n" if self.trailing else "")

    def tokens(self, i: int) -> list[tuple[int, str]]:
        """(part index, token) of line i's non-empty tokens."""
        return [(j, t) for j, t in enumerate(self.lines[i]) if j % 2 == 0 and t]

    def shape_positions(self) -> set[tuple[int, int]]:
        """(line, part) of the integers that look like sizes of what follows them."""
        out = set()
        n = len(self.lines)
        toks = [self.tokens(i) for i in range(n)]
        for i in range(n):
            rest_lines = sum(1 for k in range(i + 1, n) if toks[k])
            rest_tokens = sum(len(toks[k]) for k in range(i + 1, n))
            nxt = toks[i + 1] if i + 1 < n else []
            sizes = {len(nxt), rest_lines, rest_tokens, rest_lines // 2, rest_lines // 3}
            if len(nxt) == 1:
                sizes.add(len(nxt[0][1]))
            for j, tok in toks[i]:
                if _kind(tok) == "int" and int(tok) in sizes and int(tok) >= 0:
                    out.add((i, j))
        return out


def _new_int(x: int, rng: random.Random, cap: int | None) -> int:
    """Another integer like x: same sign, magnitude in [1, 2|x|] (0 and 1 swap within {0, 1} / {1, 2}), not past a
    round power of ten x is (10**9 stays a bound), not past `cap` when |x| <= cap."""
    sign, m = (-1 if x < 0 else 1), abs(x)
    if m <= 1:
        choices = [0, 1] if m == 0 else [1, 2]
        return sign * rng.choice([c for c in choices if c != m])
    hi = m if (m >= 10 and str(m).rstrip("0") == "1") else 2 * m
    if cap is not None and m <= cap:
        hi = min(hi, max(cap, 2))
    for _ in range(8):
        v = rng.randint(1, hi)
        if v != m:
            return sign * v
    return sign * (m - 1)


def _new_float(tok: str, rng: random.Random) -> str:
    decimals = len(tok.split(".")[1])
    v = float(tok) * rng.uniform(0.5, 1.5)
    out = f"{v:.{decimals}f}"
    return out if not out.startswith("-") or tok.startswith("-") else out[1:]


def mutate(text: str, rng: random.Random, alphabet: dict[str, str], frozen: set[str]) -> tuple[str, list[str]]:
    """One mutated copy of input `text` and the names of the mutations applied (1 to 3 of: int, float, chars,
    shuffle_tokens, shuffle_lines; only those the input allows). alphabet: character class (lower, upper, digit,
    other) -> characters of that class seen in the problem's examples. frozen: string tokens never changed (words
    repeated across the examples: commands, keywords). Returns (text, []) when nothing applies."""
    inp = _Input(text)
    shape = inp.shape_positions()
    sizes = [int(inp.lines[i][j]) for i, j in shape]
    cap = max(sizes) if sizes else None
    n = len(inp.lines)
    ints, floats, strs = [], [], []
    for i in range(n):
        for j, tok in inp.tokens(i):
            k = _kind(tok)
            if k == "int" and (i, j) not in shape:
                ints.append((i, j))
            elif k == "float":
                floats.append((i, j))
            elif k == "str" and tok not in frozen:
                strs.append((i, j))
    lists = []  # lines of >= 2 tokens of one kind, none a size
    for i in range(n):
        toks = inp.tokens(i)
        if len(toks) >= 2 and len({_kind(t) for _, t in toks}) == 1 and not any((i, j) in shape for j, _ in toks):
            if len({t for _, t in toks}) > 1:
                lists.append(i)
    runs = []  # runs of >= 2 consecutive lines of one shape (not the first line: it usually holds the sizes)
    sig = [tuple(_kind(t) for _, t in inp.tokens(i)) for i in range(n)]
    i = 1
    while i < n:
        k = i
        while k + 1 < n and sig[k + 1] == sig[i] and sig[i]:
            k += 1
        if k > i and len({"".join(inp.lines[r]) for r in range(i, k + 1)}) > 1:
            runs.append((i, k))
        i = k + 1
    ops = [name for name, ok in (("int", ints), ("float", floats), ("chars", strs), ("shuffle_tokens", lists),
                                 ("shuffle_lines", runs)) if ok]  # fmt: skip
    if not ops:
        return text, []
    chosen = rng.sample(ops, rng.randint(1, min(3, len(ops))))
    for op in chosen:
        if op == "int":
            for i, j in rng.sample(ints, rng.randint(1, max(1, (len(ints) + 1) // 2))):
                inp.lines[i][j] = str(_new_int(int(inp.lines[i][j]), rng, cap))
        elif op == "float":
            for i, j in rng.sample(floats, rng.randint(1, max(1, (len(floats) + 1) // 2))):
                inp.lines[i][j] = _new_float(inp.lines[i][j], rng)
        elif op == "chars":
            i, j = rng.choice(strs)
            chars = list(inp.lines[i][j])
            if len(chars) >= 2 and len(set(chars)) > 1 and rng.random() < 0.5:
                a, b = rng.sample(range(len(chars)), 2)
                while chars[a] == chars[b]:
                    a, b = rng.sample(range(len(chars)), 2)
                chars[a], chars[b] = chars[b], chars[a]
            else:
                for p in rng.sample(range(len(chars)), rng.randint(1, max(1, len(chars) // 4))):
                    pool = alphabet.get(_char_class(chars[p]), "") or chars[p]
                    chars[p] = rng.choice(pool)
            inp.lines[i][j] = "".join(chars)
        elif op == "shuffle_tokens":
            i = rng.choice(lists)
            pos = [j for j, _ in inp.tokens(i)]
            vals = [inp.lines[i][j] for j in pos]
            rng.shuffle(vals)
            for j, v in zip(pos, vals, strict=True):
                inp.lines[i][j] = v
        else:
            a, b = rng.choice(runs)
            block = inp.lines[a : b + 1]
            rng.shuffle(block)
            inp.lines[a : b + 1] = block
    return inp.text(), chosen


def _alphabet_and_frozen(inputs: list[str]) -> tuple[dict[str, str], set[str]]:
    seen: dict[str, set[str]] = {}
    counts: Counter = Counter()
    for text in inputs:
        for tok in text.split():
            if _kind(tok) == "str":
                counts[tok] += 1
                for c in tok:
                    seen.setdefault(_char_class(c), set()).add(c)
    frozen = {t for t, c in counts.items() if c >= 2 and t.isalpha() and len(t) >= 2}
    return {k: "".join(sorted(v)) for k, v in seen.items()}, frozen


def candidate_inputs(task_id: str, inputs: list[str], count: int, seed: int) -> tuple[list[dict], int]:
    """Up to `count` distinct mutated inputs of one problem: ([{input, made}], duplicates skipped). Reproducible:
    the problem's own random generator is seeded by (GENERATOR_VERSION, seed, task_id)."""
    rng = random.Random(f"codelora-tests:{GENERATOR_VERSION}:{seed}:{task_id}")
    alphabet, frozen = _alphabet_and_frozen(inputs)
    seen = set(inputs)
    out: list[dict] = []
    duplicates = 0
    if not inputs:
        return out, 0
    for attempt in range(count * 5):
        if len(out) >= count:
            break
        idx = rng.randrange(len(inputs))
        text, ops = mutate(inputs[idx], rng, alphabet, frozen)
        if not ops:
            continue
        if text in seen:
            duplicates += 1
            continue
        seen.add(text)
        out.append({"input": text, "made": {"example": idx + 1, "ops": ops, "seed": seed, "attempt": attempt}})
    return out, duplicates


# ------------------------------------------------------------------------------------------------------ agreement


def _normalise(stdout: str) -> str:
    return "\n".join(line.rstrip() for line in stdout.strip().split("\n"))


def generate_tests(
    problems: list[dict],
    seed: int = 0,
    candidates: int = 10,
    workers: int | None = None,
    timeout: float = TIMEOUT,
    memory_mb: int = MEMORY_MB,
) -> list[dict]:
    """For each {task_id, tests (kept examples), references}: add `generated` (kept tests: {input, output,
    references, made}), `correct_references`, `wrong_references`, `candidates` (inputs tried) and `dropped`
    ({reason: count}). Runs every reference in the sandbox; returns the problems."""
    import os

    from tqdm import tqdm

    from codelora.sandbox.execution import run_program
    from codelora.sandbox.grading import SANDBOX_ERROR, execution_verdict, grade_stdio_problem, outputs_match

    workers = workers or os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        # references that pass every kept example are the ones whose agreement makes a test
        checks = [(p, ref) for p in problems if p["tests"] for ref in p["references"]]
        passed = list(
            pool.map(lambda job: grade_stdio_problem(job[1], job[0]["tests"], timeout, memory_mb).passed, checks)
        )
        for p in problems:
            p["correct_refs"] = []
        for (p, ref), ok in zip(checks, passed, strict=True):
            if ok:
                p["correct_refs"].append(ref)
        jobs = []
        for p in problems:
            p["generated"], p["dropped"] = [], Counter()
            cands, dups = candidate_inputs(str(p["task_id"]), [t["input"] for t in p["tests"]], candidates, seed)
            if dups:
                p["dropped"]["duplicate"] += dups
            p["cands"] = cands if p["correct_refs"] else []
            if cands and not p["correct_refs"]:
                p["dropped"]["no_correct_reference"] += len(cands)
            jobs += [(c, ref) for c in p["cands"] for ref in p["correct_refs"]]
        runs = list(
            tqdm(
                pool.map(lambda job: run_program(job[1], job[0]["input"], timeout=timeout, memory_mb=memory_mb), jobs),
                total=len(jobs),
                desc="generated tests",
                unit="run",
                file=sys.stderr,
            )
        )
    by_cand: dict[int, list] = {}
    for (c, _), res in zip(jobs, runs, strict=True):
        by_cand.setdefault(id(c), []).append(res)
    for p in problems:
        for c in p.pop("cands"):
            results = by_cand[id(c)]
            verdicts = [execution_verdict(r) for r in results]
            bad = next((v for v in verdicts if v is not None), None)
            if SANDBOX_ERROR in verdicts:
                reason = SANDBOX_ERROR
            elif bad is not None:
                reason = f"reference_{bad}"
            else:
                first = _normalise(results[0].stdout)
                if not first.strip():
                    reason = "empty_output"
                elif any(not outputs_match(r.stdout, first) for r in results[1:]):
                    reason = "references_disagree"
                elif len(first.encode()) > MAX_OUTPUT:
                    reason = "output_too_large"
                else:
                    reason = None
                    p["generated"].append(
                        {"input": c["input"], "output": first, "references": len(results), "made": c["made"]}
                    )
            if reason:
                p["dropped"][reason] += 1
        p["candidates"] = len(p["generated"]) + sum(v for k, v in p["dropped"].items() if k != "duplicate")
        p["dropped"] = dict(sorted(p["dropped"].items()))
        p["wrong_references"] = len(p["references"]) - len(p.pop("correct_refs")) if p["tests"] else 0
        p["correct_references"] = len(p["references"]) - p["wrong_references"] if p["tests"] else 0
    return problems


# ---------------------------------------------------------------------------------------------------- run folder


def tests_path(run_dir: str | Path, split: str) -> Path:
    """RUN/tests/<split>.jsonl: the split's problems with their examples and generated tests."""
    return Path(run_dir) / TESTS_FOLDER / f"{split}.jsonl"


def _record_key(p: dict, seed: int, candidates: int) -> str:
    from codelora.data.examples import PARSER_VERSION

    doc = {
        "generator_version": GENERATOR_VERSION,
        "parser_version": PARSER_VERSION,
        "seed": seed,
        "candidates": candidates,
        "timeout": TIMEOUT,
        "memory_mb": MEMORY_MB,
        "prompt": p["prompt"],
        "references": p["references"],
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def split_problems(run_dir: str | Path, cfg, split: str) -> tuple[list[dict], list[str]]:
    """The problems of one split of a run ({task_id, name, prompt, difficulty, references}, in split.json's
    order) and the split's keys missing from the dataset. UserError without split.json or for an empty split."""
    from codelora.data.examples import dataset_problems
    from codelora.data.split import load_split_json
    from codelora.errors import UserError
    from codelora.run.layout import RunFolder

    split_path = RunFolder(run_dir).split_file
    if not split_path.is_file():
        raise UserError(f"{run_dir} has no split.json (written by `codelora prepare`/`train`)")
    doc = load_split_json(split_path)
    if split not in doc["splits"]:
        raise UserError(f"{split_path}: no split {split!r} (splits: {', '.join(doc['splits'])})")
    keys = list((doc["splits"][split] or {}).get("problems") or [])
    if not keys:
        raise UserError(f"{split_path}: the {split} split has zero problems")
    problems, missing = dataset_problems(cfg.data.dataset, cfg.data.target, keys)
    for p in problems:
        del p["rows"]  # a generated-tests record names its problem, not the dataset rows
    return problems, missing


def build_tests(
    run_dir: str | Path, cfg, split: str, workers: int | None = None, quiet: bool = False
) -> tuple[Path, list[dict], dict]:
    """Write (or reuse) RUN/tests/<split>.jsonl and <split>_report.json; return (path, records, report).

    Each record: task_id, name, prompt, difficulty, examples ([{input, output}]: the kept statement examples),
    generated ([{input, output, references, made}]), references / correct_references / wrong_references (counts),
    candidates, dropped ({reason: count}), key. Records whose key is unchanged are reused without running anything.
    The report (also printed, one line, unless quiet) says how many problems gained how many tests and how many
    candidate inputs were dropped, by reason. Seed and candidates come from cfg.tests.
    """
    from codelora.data.examples import check_examples
    from codelora.errors import UserError
    from codelora.run import layout as runs

    seed, count = int(cfg.tests.seed), int(cfg.tests.candidates)
    path = tests_path(run_dir, split)
    report_path = path.with_name(f"{split}_report.json")
    problems, missing = split_problems(run_dir, cfg, split)
    if not problems:
        raise UserError(f"none of the {split} problems of {run_dir}/split.json are in the dataset {cfg.data.dataset!r}")
    old: dict[str, dict] = {}
    if path.is_file():
        try:
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    rec = json.loads(line)
                    old[rec["task_id"]] = rec
        except (ValueError, KeyError, TypeError, OSError):
            old = {}  # unreadable cache: rebuild it
    records: dict[str, dict] = {}
    todo = []
    for p in problems:
        key = _record_key(p, seed, count)
        if old.get(p["task_id"], {}).get("key") == key:
            records[p["task_id"]] = old[p["task_id"]]
        else:
            p["key"] = key
            todo.append(p)
    if todo:
        check_examples(todo, workers)
        generate_tests(todo, seed, count, workers)
        for p in todo:
            records[p["task_id"]] = {
                "task_id": p["task_id"],
                "name": p["name"],
                "prompt": p["prompt"],
                "difficulty": p["difficulty"],
                "examples": p["tests"],
                "generated": p["generated"],
                "references": len(p["references"]),
                "correct_references": p["correct_references"],
                "wrong_references": p["wrong_references"],
                "candidates": p["candidates"],
                "dropped": p["dropped"],
                "key": p["key"],
            }
    ordered = [records[p["task_id"]] for p in problems]
    report = tests_report(ordered, split, seed, count)
    report.update({"missing_from_dataset": len(missing), "reused": len(problems) - len(todo), "built": len(todo)})
    runs.update_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ordered))
    runs.write_json(report_path, report, indent=1)
    if not quiet:
        print(report_line(report), file=sys.stderr)
    return path, ordered, report


def tests_report(records: list[dict], split: str, seed: int, candidates: int) -> dict:
    """Counts of one split's records: problems, with_examples, gained (problems with >= 1 generated test),
    generated_tests, tests_per_problem (min/median/max over the problems that gained), candidates (inputs run),
    dropped ({reason: count}, duplicates included), dropped_total (candidates run and dropped), references,
    wrong_references, constant_output (problems whose tests all expect one output: a constant program passes)."""
    gained = [len(r["generated"]) for r in records if r["generated"]]
    dropped: Counter = Counter()
    for r in records:
        dropped.update(r["dropped"])
    constant = 0
    for r in records:
        outs = {t["output"] for t in r["examples"] + r["generated"]}
        if r["generated"] and len(outs) == 1:
            constant += 1
    return {
        "split": split,
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "candidates_per_problem": candidates,
        "problems": len(records),
        "with_examples": sum(1 for r in records if r["examples"]),
        "gained": len(gained),
        "generated_tests": sum(gained),
        "tests_per_problem": (
            {"min": min(gained), "median": statistics.median(gained), "max": max(gained)} if gained else None
        ),
        "candidates": sum(r["candidates"] for r in records),
        "dropped": dict(sorted(dropped.items())),
        "dropped_total": sum(v for k, v in dropped.items() if k != "duplicate"),
        "references": sum(r["references"] for r in records),
        "wrong_references": sum(r["wrong_references"] for r in records),
        "constant_output": constant,
    }


def report_line(report: dict) -> str:
    """One line: `tests (<split>): G of P problems gained T generated tests (...); D of C candidate inputs dropped
    (reasons)`."""
    tpp = report.get("tests_per_problem")
    per = f"; {tpp['min']}-{tpp['max']} per problem, median {tpp['median']}" if tpp else ""
    reasons = ", ".join(f"{k} {v}" for k, v in report["dropped"].items() if k != "duplicate") or "none"
    return (
        f"tests ({report['split']}, seed {report['seed']}): {report['gained']} of {report['problems']} problems gained "
        f"{report['generated_tests']} generated tests{per}; {report['dropped_total']} of {report['candidates']} "
        f"candidate inputs dropped ({reasons})"
    )


def load_problems(
    run_dir: str | Path, cfg, split: str = "train", tests: str = "generated", workers: int | None = None
) -> dict[str, dict]:
    """Problem id -> record (see `build_tests`) of the split's problems that have `tests` tests (generated, examples
    or all): what `codelora.evaluation.reward.make_reward` takes. Builds or reuses the cache."""
    from codelora.evaluation.reward import problem_tests

    _, records, _ = build_tests(run_dir, cfg, split, workers)
    return {r["task_id"]: r for r in records if problem_tests(r, tests)}
