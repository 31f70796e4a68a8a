"""Held-out benchmark: a run's test-split problems, graded on the worked examples of their statements and on hidden
tests generated from them.

Tests come from the Examples of each statement (codelora.data.examples.parse_examples). A parsed pair is
kept only when one of the problem's reference solutions (the dataset's `solution`) passes it in the
sandbox, so a mis-parsed example (prose glued to the output, a partial block) never counts against a
model. Problems of the training split are refused. The result is cached in
`<run>/eval/heldout/problems.jsonl` (+ `problems_report.json`), rebuilt when the test split changes.

`--tests` (with a run) chooses what grades: `examples` (those examples only: the problem file above, as before),
`generated` (the hidden tests of codelora.data.generated_tests, mutated example inputs on which every reference
agrees; problems without any are left out) or `all` (both; the default). The chosen set is written as
`problems-<tests>.jsonl` beside problems.jsonl (a {task_id, prompt, tests} file `codelora score --problems` reads),
and the choice is recorded in summary.json's benchmark_info and, for generated/all, in the results' provenance.
Without a run, a {task_id, prompt, tests} JSONL given with --problems is the problem set (its own tests).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from codelora.benchmarks import register
from codelora.benchmarks.base import Benchmark, EvalContext, GradeSettings, Problem, ProblemSet
from codelora.data.examples import PARSER_VERSION, REFERENCE_TIMEOUT, check_examples, dataset_problems
from codelora.errors import UserError
from codelora.files import jsonl_lines
from codelora.run import layout as runs

if TYPE_CHECKING:
    from codelora.sandbox.grading import GradeResult


def build_heldout(
    run_dir: Path, cfg, folder: Path, workers: int | None = None, allow_contamination: bool = False
) -> tuple[Path, list[dict], dict]:
    """Write (or reuse) FOLDER/problems.jsonl (+ problems_report.json) for the run's test split; return (path,
    problems with tests, report). FOLDER is the run's eval/heldout/ (codelora.run.layout.eval_dir)."""
    from codelora.data.split import check_not_in_train, load_split_json

    run_dir = Path(run_dir)
    split_path = runs.RunFolder(run_dir).split_file
    if not split_path.is_file():
        raise UserError(
            f"{run_dir} has no split.json (written by `codelora prepare`/`train`): without it the held-out "
            "problems are unknown"
        )
    doc = load_split_json(split_path)
    test = doc["splits"].get("test") or {}
    keys = list(test.get("problems") or [])
    if not keys:
        raise UserError(f"{split_path}: the test split has zero problems; nothing to evaluate on")
    check_not_in_train(keys, doc, allow_contamination)

    out, report_path = runs.ResultFolder(folder).problems_file, runs.ResultFolder(folder).problems_report_file
    ident = {
        "parser_version": PARSER_VERSION,
        "dataset": cfg.data.dataset,
        "split_test_sha256": test.get("sha256"),
        "split_test_problems": len(keys),
    }
    if out.is_file() and report_path.is_file():
        try:
            report = json.loads(report_path.read_text(encoding="utf-8"))
            if all(report.get(k) == v for k, v in ident.items()):
                problems = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines() if line]
                return out, problems, report
        except (ValueError, OSError):
            pass  # unreadable cache: rebuild it

    problems, missing = dataset_problems(cfg.data.dataset, cfg.data.target, keys)
    if len(missing) == len(keys):
        raise UserError(
            f"none of the {len(keys)} test problems of {split_path} are in the dataset {cfg.data.dataset!r} "
            "any more; was the data changed after training?"
        )
    check_examples(problems, workers)
    usable = [p for p in problems if p["tests"]]
    report = {
        **ident,
        "test_problems": len(keys),
        "missing_from_dataset": len(missing),
        "with_examples": sum(1 for p in problems if p["examples_found"]),
        "with_usable_tests": len(usable),
        "examples_found": sum(p["examples_found"] for p in problems),
        "examples_kept": sum(p["examples_kept"] for p in problems),
        "no_usable_tests": [p["task_id"] for p in problems if not p["tests"]],
        "dropped_examples": [{"task_id": p["task_id"], **d} for p in problems for d in p["dropped"]][:50],
    }
    for p in usable:
        p.pop("references")
        p.pop("dropped")
    runs.update_text(out, "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in usable))
    runs.write_json(report_path, report, indent=1)
    return out, usable, report


def load_heldout(problems: Path, skip_untested: bool = False) -> tuple[dict[str, dict], list[str]]:
    """A held-out problems JSONL, one {task_id, tests: [{input, output}], prompt?, difficulty?} per line:
    (task_id -> problem, task_ids left out for having no tests).

    A problem with an empty `tests` list is refused (UserError naming its line: any program would pass it), or with
    `skip_untested` left out and listed. UserError for a line that is not such an object, or a file with none.
    """
    probs: dict[str, dict] = {}
    skipped: list[str] = []
    for lineno, line in jsonl_lines(problems, "problems file"):
        try:
            obj = json.loads(line)
            tests = obj["tests"]
            ok = (
                isinstance(obj.get("task_id"), (str, int))
                and not isinstance(obj["task_id"], bool)
                and isinstance(tests, list)
                and all(isinstance(t.get("input"), str) and isinstance(t.get("output"), str) for t in tests)
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            ok = False
        if not ok:
            raise UserError(f"{problems}:{lineno}: expected {{task_id, tests: [{{input, output}}]}}")
        tid = str(obj["task_id"])
        if not tests:
            if not skip_untested:
                raise UserError(
                    f"{problems}:{lineno}: task {tid} has no tests; no verdict is possible "
                    "(--skip-untested leaves such problems out)"
                )
            skipped.append(tid)
            continue
        probs[tid] = obj
    if not probs:
        raise UserError(f"{problems}: no problems" + (" with tests" if skipped else ""))
    return probs, skipped


TEST_CHOICES = ("examples", "generated", "all")
DEFAULT_TESTS = "all"


def with_generated(
    run_dir: Path, cfg, folder: Path, rows: list[dict], tests: str, workers: int | None = None
) -> tuple[Path, list[dict], dict]:
    """The held-out problems `rows` (with their example tests) graded on `tests` (generated or all): writes
    FOLDER/problems-<tests>.jsonl and returns (its path, its problems, info for benchmark_info). The generated tests
    are the test split's (codelora.data.generated_tests.build_tests, cached in RUN/tests/, its report printed)."""
    from codelora.data.generated_tests import build_tests

    _, records, report = build_tests(run_dir, cfg, "test", workers)
    generated = {r["task_id"]: [{"input": t["input"], "output": t["output"]} for t in r["generated"]] for r in records}
    out, none = [], []
    for p in rows:
        gen = generated.get(p["task_id"], [])
        chosen = gen if tests == "generated" else p["tests"] + gen
        if not gen:
            none.append(p["task_id"])
        if chosen:
            out.append({**p, "tests": chosen, "generated_tests": len(gen)})
    path = folder / f"problems-{tests}.jsonl"
    runs.update_text(path, "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in out))
    info = {
        "generated_tests": sum(p["generated_tests"] for p in out),
        "with_generated_tests": len(rows) - len(none),
        "without_generated_tests": none[:50],
        "tests_generation": {
            k: report[k] for k in ("seed", "generator_version", "candidates", "dropped_total", "dropped", "gained")
        },
    }
    return path, out, info


class Heldout(Benchmark):
    """A run's test-split problems (or a {task_id, prompt, tests} JSONL), graded as stdin programs on the worked
    examples of their statements that a reference solution passes and (`--tests`, default all) on the hidden tests
    generated from them."""

    name = "heldout"
    title = "held-out test split"
    timeout = REFERENCE_TIMEOUT
    test_choices = TEST_CHOICES

    def problems(self, ctx: EvalContext) -> ProblemSet:
        """With a run: its test split (built and cached in ctx.folder); without: --problems FILE. Then --limit."""
        opts, skipped, tests = ctx.opts, [], None
        if ctx.run_dir is None:
            if opts.tests is not None:
                raise UserError(
                    "heldout --problems FILE grades on the file's own tests; --tests applies with --run (drop it)"
                )
            if not opts.problems:
                raise UserError("heldout without --run needs --problems FILE ({task_id, prompt, tests} per line)")
            path = Path(opts.problems)
            by_id, skipped = load_heldout(path, opts.skip_untested)
            for tid, p in by_id.items():
                if not isinstance(p.get("prompt"), str) or not p["prompt"].strip():
                    raise UserError(f"{path}: task {tid} has no 'prompt' (the statement shown to the model)")
            rows = list(by_id.values())
            info: dict = {"source": str(path), "with_usable_tests": len(rows)}
        else:
            if opts.problems:
                raise UserError("with --run the held-out problems come from the run's split.json; drop --problems")
            path, rows, report = build_heldout(ctx.run_dir, ctx.cfg, ctx.folder, opts.workers, opts.allow_contamination)
            info = {k: v for k, v in report.items() if not isinstance(v, list)}
            print(
                f"heldout: {report['with_usable_tests']} of {report['test_problems']} test problems have usable "
                f"tests ({report['examples_kept']} of {report['examples_found']} statement examples pass the "
                "reference solution)",
                file=sys.stderr,
            )
            info["tests"] = opts.tests or DEFAULT_TESTS
            if info["tests"] != "examples":
                tests = info["tests"]
                path, rows, more = with_generated(ctx.run_dir, ctx.cfg, ctx.folder, rows, tests, opts.workers)
                info.update(more)
        if not rows:
            why = "no generated test" if tests == "generated" else "no statement example passed its reference solution"
            raise UserError(f"heldout: zero problems with usable tests ({why})")
        chosen = self.first([self._problem(p) for p in rows], opts.limit)
        info["selected"] = len(chosen)
        return ProblemSet(chosen, path, info, skipped, tests)

    @staticmethod
    def _problem(p: dict) -> Problem:
        return Problem(str(p["task_id"]), p, None, str(p.get("difficulty", "unknown")))

    def prompt(self, problem: Problem, protocol=None) -> str:
        return problem.data["prompt"]

    def grade(self, problem: Problem, code: str, settings: GradeSettings) -> GradeResult:
        from codelora.sandbox.grading import grade_stdio_problem

        return grade_stdio_problem(
            code,
            problem.data["tests"],
            settings.timeout,
            settings.memory_mb,
            settings.tolerance,
            output_limit=settings.output_limit,
        )

    def read_problems(self, path, settings, skip_untested=False, wanted=None):
        if path is None:
            raise UserError("heldout needs --problems (JSONL of {task_id, tests}; `codelora evaluate` writes one)")
        probs, skipped = load_heldout(Path(path), skip_untested)
        return {tid: self._problem(p) for tid, p in probs.items()}, skipped

    def describe(self, settings: GradeSettings) -> dict:
        return {**super().describe(settings), "tolerance": settings.tolerance}

    def card_dataset(self, cfg) -> tuple[str, str]:
        return cfg.data.dataset, f"held-out test split of {cfg.data.dataset}"


register(Heldout())
