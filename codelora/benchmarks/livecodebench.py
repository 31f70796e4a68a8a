"""LiveCodeBench code_generation_lite: problem selection, prompts, samples format and grading of programs.

Private tests are stored as base64(zlib(pickle(json string))). They are unpickled with an
Unpickler that refuses every global, so a hostile file cannot run code: only plain pickled
strings (and other builtin containers) decode.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from codelora.benchmarks import register
from codelora.benchmarks.base import Benchmark, EvalContext, GradeSettings, Problem, ProblemSet, Sample
from codelora.benchmarks.protocol import DEFAULT_PROTOCOL, PROTOCOLS, Protocol, get_protocol
from codelora.errors import UserError
from codelora.files import jsonl_lines
from codelora.run import layout as runs
from codelora.sandbox.grading import (
    COMPILE_ERROR,
    IMPORT_HEADER,
    OUTPUT_CAP,
    SANDBOX_ERROR,
    GradeResult,
    failed,
    grade_call_problem,
    grade_stdio_problem,
)

DEFAULT_TIMEOUT = 6.0  # LiveCodeBench's seconds per test (the `livecodebench` protocol's)


class _NoGlobalsUnpickler(pickle.Unpickler):
    def find_class(self, module, name):  # noqa: D401
        raise pickle.UnpicklingError(f"refused global {module}.{name} in private tests")


def safe_unpickle(data: bytes):
    """Unpickle without globals: plain containers, strings and numbers only (pickle.UnpicklingError otherwise),
    so a crafted private_test_cases blob cannot run code."""
    return _NoGlobalsUnpickler(io.BytesIO(data)).load()


def decode_private_tests(blob: str) -> list[dict]:
    """Decode LCB private_test_cases; a plain JSON list string is also accepted."""
    if not blob:
        return []
    text = blob.strip()
    if text.startswith("["):
        return json.loads(text)
    raw = zlib.decompress(base64.b64decode(text, validate=False))
    obj = safe_unpickle(raw)
    if isinstance(obj, bytes):
        obj = obj.decode("utf-8")
    if isinstance(obj, str):
        obj = json.loads(obj)
    if not isinstance(obj, list):
        raise ValueError("private tests are not a list")
    return obj


@dataclass
class ProblemTests:
    """One problem's graded tests. tests: the tests the protocol grades (public, or public + private), each
    {input, output, testtype?}; error: why the tests could not be decoded (then the problem has no tests);
    raw: the code_generation_lite row (statement, starter code) when the prompt is needed too."""

    question_id: str
    difficulty: str
    func_name: str | None
    tests: list[dict] = field(default_factory=list)
    error: str | None = None
    raw: dict | None = field(default=None, repr=False)

    @property
    def call_based(self) -> bool:
        """True for LeetCode-style problems graded by calling a method (testtype functional), not stdin/stdout."""
        return bool(self.tests) and self.tests[0].get("testtype") == "functional"


def _decode_problem(raw: dict, where: str, tests: str = "public+private") -> ProblemTests:
    qid = str(raw["question_id"])
    difficulty = str(raw.get("difficulty") or "unknown")
    try:
        meta = raw.get("metadata") or "{}"
        meta = json.loads(meta) if isinstance(meta, str) else meta
        func_name = meta.get("func_name") if isinstance(meta, dict) else None
        public = raw.get("public_test_cases") or "[]"
        public = json.loads(public) if isinstance(public, str) else public
        private = decode_private_tests(raw.get("private_test_cases") or "") if tests == "public+private" else []
        chosen = list(public) + list(private)
        for t in chosen:
            if not isinstance(t, dict) or not isinstance(t.get("input"), str) or not isinstance(t.get("output"), str):
                raise ValueError("a test case without input/output strings")
        if chosen and chosen[0].get("testtype") == "functional" and not func_name:
            raise ValueError("functional tests but no metadata.func_name")
        return ProblemTests(qid, difficulty, func_name, chosen)
    except Exception as e:  # noqa: BLE001 - any decoding failure is reported, not raised
        msg = f"{where}: question_id {qid}: cannot decode tests ({type(e).__name__}: {e})"
        return ProblemTests(qid, difficulty, None, [], error=msg)


def entry_point(raw: dict) -> str | None:
    """The method a call-based problem's tests call (`metadata.func_name`), None for stdin problems."""
    meta = raw.get("metadata") or "{}"
    try:
        meta = json.loads(meta) if isinstance(meta, str) else meta
    except ValueError:
        return None
    name = meta.get("func_name") if isinstance(meta, dict) else None
    return str(name) if name else None


def load_problems(
    path: Path, wanted: set[str] | None = None, tests: str = "public+private", skip_untested: bool = False
) -> tuple[dict[str, ProblemTests], list[str]]:
    """question_id -> ProblemTests, and the question_ids skipped for having no usable tests.

    Only problems in `wanted` (if given) have their tests decoded. tests: "public+private" (LiveCodeBench) or
    "public" (the course's protocol). A wanted problem with no usable tests (none given, or undecodable) is
    refused with UserError naming it, since any program would pass it; with `skip_untested` it is left out
    and listed instead.
    """
    path = Path(path)
    problems: dict[str, ProblemTests] = {}
    skipped: list[str] = []
    for lineno, line in jsonl_lines(path, "problems file"):
        try:
            raw = json.loads(line)
            qid = str(raw["question_id"])
        except (ValueError, KeyError, TypeError) as e:
            raise UserError(f"{path}:{lineno}: not a LiveCodeBench problem ({e})") from None
        if wanted is not None and qid not in wanted:
            problems[qid] = ProblemTests(qid, str(raw.get("difficulty") or "unknown"), None, [])
            continue
        prob = _decode_problem(raw, f"{path}:{lineno}", tests)
        if not prob.tests:
            why = prob.error or f"{path}:{lineno}: question_id {qid} has no {tests.replace('+', ' or ')} tests"
            if not skip_untested:
                raise UserError(f"{why}; no verdict is possible (--skip-untested leaves such problems out)")
            skipped.append(qid)
            continue
        problems[qid] = prob
    return problems, skipped


def decode_rows(
    rows: list[dict], where: str, tests: str = "public+private", skip_untested: bool = False
) -> tuple[list[ProblemTests], list[str]]:
    """The rows (code_generation_lite dicts) decoded with `tests` ("public+private" or "public") when they have
    usable tests (each with its row as `raw`), and the question_ids of those without.

    Used before generating, so that a problem nobody can be graded on stops `evaluate` up front. Raises UserError
    for the first row without tests unless `skip_untested`.
    """
    kept, skipped = [], []
    for i, raw in enumerate(rows, 1):
        prob = _decode_problem(raw, f"{where}: problem {i}", tests)
        if prob.tests:
            prob.raw = raw
            kept.append(prob)
            continue
        if not skip_untested:
            why = prob.error or f"{where}: question_id {prob.question_id} has no {tests.replace('+', ' or ')} tests"
            raise UserError(f"{why}; no verdict is possible (--skip-untested leaves such problems out)")
        skipped.append(prob.question_id)
    return kept, skipped


def read_samples(path: Path) -> list[Sample]:
    """Entries of LiveCodeBench custom-evaluator samples: a JSON list (or JSONL) of {question_id, code_list}.

    One Sample per code_list entry, in file order; sample indexes run on across entries with the same question_id.
    An entry of `code_list` that is not a string (null, a number), or a `code_list` that is missing, not a list or
    empty, is a Sample with code None and an error; an entry without question_id is a Sample with id None.
    UserError for an unreadable file or a JSON list that does not parse.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark is not JSON
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read samples file {path}: {e}") from None
    entries: list[tuple[str, object]] = []  # (location, object)
    out: list[Sample] = []
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except ValueError as e:
            raise UserError(f"{path}: invalid JSON ({e})") from None
        entries = [(f"{path}: item {i}", obj) for i, obj in enumerate(items)]
    else:
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                entries.append((f"{path}:{lineno}", json.loads(line)))
            except ValueError as e:
                out.append(Sample(None, 0, None, f"{path}:{lineno}", f"invalid JSON ({e})"))
    count: dict[str, int] = {}
    for where, obj in entries:
        if not isinstance(obj, dict) or "question_id" not in obj:
            out.append(Sample(None, 0, None, where, "expected an object with question_id and code_list"))
            continue
        qid = str(obj["question_id"])
        codes = obj.get("code_list")
        if not isinstance(codes, list) or not codes:
            why = "empty code_list" if codes == [] else f"code_list is {json.dumps(codes)[:40]}, not a list of strings"
            codes = [None]
        else:
            why = ""
        for j, code in enumerate(codes):
            i = count[qid] = count.get(qid, -1) + 1
            error = None
            if not isinstance(code, str):
                error, code = (
                    f"question_id {qid}: " + (why or f"code_list[{j}] is {json.dumps(code)[:40]}, not a string"),
                    None,
                )
            out.append(Sample(qid, i, code, where, error))
    return out


def grade(
    problem: ProblemTests,
    code: str,
    timeout: float | None = None,
    memory_mb: int | None = None,
    protocol: str | Protocol | None = None,
    output_limit: int = OUTPUT_CAP,
) -> GradeResult:
    """Grade one program by `protocol` (default livecodebench); timeout/memory_mb default to the protocol's.

    The problem must have been loaded with the protocol's test set (`load_problems(tests=protocol.tests)`).
    """
    proto = get_protocol(protocol)
    timeout = timeout or proto.timeout
    memory_mb = memory_mb or proto.memory_mb
    if problem.error or not problem.tests:
        return failed(SANDBOX_ERROR, "bad_input: " + (problem.error or f"{problem.question_id} has no tests"))
    if not code.strip():
        # the course's grader: an answer without code fails; LiveCodeBench would run the empty program
        return failed(COMPILE_ERROR, "no code")
    header = IMPORT_HEADER if proto.import_header else ""
    if problem.call_based:
        return grade_call_problem(
            code, problem.tests, problem.func_name or "", timeout, memory_mb, header, output_limit
        )
    return grade_stdio_problem(
        code, problem.tests, timeout, memory_mb, header=header, comparison=proto.comparison, output_limit=output_limit
    )


# ---------------------------------------------------------------- problem sets for `codelora evaluate`

HUB_DATASET = "livecodebench/code_generation_lite"
DEFAULT_RELEASE = "release_v5"
# code_generation_lite's loading script maps each release to cumulative JSONL files; we fetch those
# files directly (datasets >= 4 no longer runs loading scripts).
RELEASE_FILES = {f"release_v{i}": ["test.jsonl"] + [f"test{j}.jsonl" for j in range(2, i + 1)] for i in range(1, 7)}
RELEASE_FILES["release_latest"] = RELEASE_FILES["release_v6"]
PRESETS = {
    # The course's standard set: AtCoder easy, contests 2024-08 .. 2025-02 (41 problems in release_v5).
    "atcoder-easy": {"platform": "atcoder", "difficulty": "easy", "date_from": "2408", "date_to": "2502"},
}
PLATFORMS = ("atcoder", "codeforces", "leetcode")
DIFFICULTIES = ("easy", "medium", "hard")

# LiveCodeBench's own code-generation instructions (lcb_runner, non-reasoning models).
_WITH_STARTER = (
    "You will use the following starter code to write the solution to the problem and enclose your code within "
    "delimiters."
)
_WITHOUT_STARTER = (
    "Read the inputs from stdin solve the problem and write the answer to stdout (do not directly test on the "
    "sample inputs). Enclose your code within delimiters as follows. Ensure that when the python program runs, it "
    "reads the inputs, runs the algorithm and writes output to STDOUT."
)


def build_prompt(raw: dict, style: str = "livecodebench") -> str:
    """User message for one problem. style "livecodebench" (LiveCodeBench's format): call-based problems show
    their starter code, stdin ones say to read stdin and write stdout. style "raw" (the course's protocol):
    the statement alone."""
    if style == "raw":
        return str(raw.get("question_content") or "")
    if style != "livecodebench":
        raise ValueError(f"prompt style {style!r}: expected 'livecodebench' or 'raw'")
    text = f"### Question:\n{raw.get('question_content') or ''}\n\n"
    starter = raw.get("starter_code") or ""
    if starter.strip():
        text += f"### Format: {_WITH_STARTER}\n```python\n{starter}\n```\n\n"
    else:
        text += f"### Format: {_WITHOUT_STARTER}\n```python\n# YOUR CODE HERE\n```\n\n"
    return text + "### Answer: (use the provided format with backticks)\n\n"


def _yymm(value: str, flag: str) -> int:
    v = str(value).strip()
    if len(v) != 4 or not v.isdigit() or not 1 <= int(v[2:]) <= 12:
        raise UserError(f"{flag} {value!r}: expected YYMM, e.g. 2408 for August 2024")
    return int(v)


def _contest_yymm(raw: dict) -> int | None:
    date = str(raw.get("contest_date") or "")
    if len(date) >= 7 and date[:4].isdigit() and date[5:7].isdigit():
        return (int(date[:4]) % 100) * 100 + int(date[5:7])
    return None


def filter_problems(
    rows: list[dict],
    platform: str | None = None,
    difficulty: str | None = None,
    date_from: str | None = None,
    date_to: str | None = None,
) -> list[dict]:
    """Keep rows on `platform` (comma list), of `difficulty` (comma list), with contest dates in the
    month window date_from..date_to (YYMM, both inclusive)."""
    plats = {p.strip().lower() for p in platform.split(",")} if platform else None
    diffs = {d.strip().lower() for d in difficulty.split(",")} if difficulty else None
    for name, given, known in (("--platform", plats, PLATFORMS), ("--difficulty", diffs, DIFFICULTIES)):
        bad = sorted((given or set()) - set(known))
        if bad:
            raise UserError(f"{name} {','.join(bad)}: unknown; choose from {', '.join(known)}")
    lo = _yymm(date_from, "--date-from") if date_from else None
    hi = _yymm(date_to, "--date-to") if date_to else None
    if lo is not None and hi is not None and lo > hi:
        raise UserError(f"--date-from {date_from} is after --date-to {date_to}")
    kept = []
    for raw in rows:
        if plats and str(raw.get("platform", "")).lower() not in plats:
            continue
        if diffs and str(raw.get("difficulty", "")).lower() not in diffs:
            continue
        if lo is not None or hi is not None:
            ym = _contest_yymm(raw)
            if ym is None or (lo is not None and ym < lo) or (hi is not None and ym > hi):
                continue
        kept.append(raw)
    return kept


def select_problems(
    rows: list[dict],
    source: str,
    preset: str | None = None,
    limit: int | None = None,
    **filters: str | None,
) -> tuple[list[dict], dict, str]:
    """Apply a preset (its values fill the filters not given), the filters, then `limit` (the first K kept).

    Returns (selected rows, the filters used, one line saying what the filters matched and what the limit
    kept: "preset atcoder-easy (...) selects 41 of 880 problems from SOURCE; --limit 3 keeps the first 3").
    Raises UserError for an unknown preset, a limit <= 0, or filters matching nothing.
    """
    if preset:
        if preset not in PRESETS:
            raise UserError(f"unknown --preset {preset!r}; presets: {', '.join(PRESETS)}")
        filters = {k: (filters.get(k) if filters.get(k) is not None else v) for k, v in PRESETS[preset].items()}
    filters = {k: filters.get(k) for k in ("platform", "difficulty", "date_from", "date_to")}
    if limit is not None and limit <= 0:
        raise UserError(f"--limit must be > 0, got {limit}")
    matched = filter_problems(rows, **filters)
    shown = ", ".join(f"{k}={v}" for k, v in filters.items() if v) or "no filters"
    if not matched:
        raise UserError(f"no LiveCodeBench problems match {shown} (of {len(rows)} in {source})")
    what = f"preset {preset} ({shown})" if preset else shown
    line = f"{what} selects {len(matched)} of {len(rows)} problems from {source}"
    selected = matched[:limit] if limit is not None else matched
    if len(selected) < len(matched):
        line += f"; --limit {limit} keeps the first {len(selected)}"
    return selected, filters, line


def read_raw_problems(path: Path) -> list[dict]:
    """Rows of a code_generation_lite JSONL file, unparsed (tests are decoded only when grading)."""
    path = Path(path)
    rows = []
    for lineno, line in jsonl_lines(path, "problems file"):
        try:
            raw = json.loads(line)
            if not isinstance(raw, dict) or "question_id" not in raw or "question_content" not in raw:
                raise KeyError("question_id/question_content")
        except (ValueError, KeyError) as e:
            raise UserError(f"{path}:{lineno}: not a LiveCodeBench problem ({e})") from None
        rows.append(raw)
    if not rows:
        raise UserError(f"{path}: no problems")
    return rows


def hub_problem_files(release: str = DEFAULT_RELEASE) -> list[Path]:
    """Download (or find in the local cache) the release's JSONL files of code_generation_lite."""
    if release not in RELEASE_FILES:
        raise UserError(f"unknown LiveCodeBench release {release!r}; choose from {', '.join(RELEASE_FILES)}")
    from huggingface_hub import hf_hub_download

    from codelora.hub import go_offline_if_unreachable

    go_offline_if_unreachable()  # an unreachable hub: the local cache only, at once
    paths = []
    for name in RELEASE_FILES[release]:
        try:
            paths.append(Path(hf_hub_download(HUB_DATASET, name, repo_type="dataset")))
        except Exception as e:  # noqa: BLE001 - offline, missing cache and hub errors all end the same way
            raise UserError(
                f"cannot load {HUB_DATASET} ({release}, {name}) from the hub or the local cache "
                f"({type(e).__name__}); pass --problems FILE, a local JSONL in code_generation_lite format"
            ) from None
    return paths


def load_problem_rows(problems: Path | None = None, release: str = DEFAULT_RELEASE) -> tuple[list[dict], str]:
    """All rows of a local JSONL (`problems`) or of the hub release; returns (rows, source description)."""
    if problems is not None:
        return read_raw_problems(Path(problems)), str(problems)
    rows = []
    for p in hub_problem_files(release):
        rows += read_raw_problems(p)
    return rows, f"{HUB_DATASET}@{release}"


class LiveCodeBench(Benchmark):
    """LiveCodeBench code_generation_lite: stdin programs and LeetCode-style methods, graded under a protocol
    (codelora.benchmarks.protocol: LiveCodeBench's own rules, or the course's)."""

    name = "livecodebench"
    title = "LiveCodeBench"
    id_key = "question_id"
    samples_file = "samples.json"
    timeout = DEFAULT_TIMEOUT
    protocols = PROTOCOLS
    default_protocol = DEFAULT_PROTOCOL

    def problems(self, ctx: EvalContext) -> ProblemSet:
        """--problems FILE or the hub release, filtered (--preset, --platform, ...) and limited; problems without
        the protocol's tests are refused (or skipped); training problems are refused. The selected rows are kept in
        ctx.folder/problems.jsonl, the file `codelora score` grades the samples against."""
        opts, proto = ctx.opts, ctx.protocol or get_protocol(None)
        release = opts.release or DEFAULT_RELEASE
        rows, source = load_problem_rows(opts.problems, release)
        filters = {k: getattr(opts, k) for k in ("platform", "difficulty", "date_from", "date_to")}
        selected, filters, line = select_problems(rows, source, opts.preset, opts.limit, **filters)
        print(f"livecodebench: {line}", file=sys.stderr)
        # a problem without tests would pass any program: refuse it before generating (or skip it when asked)
        decoded, untested = decode_rows(selected, source, proto.tests, opts.skip_untested)
        if not decoded:
            raise UserError(f"none of the selected LiveCodeBench problems has tests (skipped: {', '.join(untested)})")
        if ctx.split is not None:
            from codelora.data.split import check_not_in_train, problem_key

            keys = [problem_key(p.raw["question_content"]) for p in decoded]
            check_not_in_train(keys, ctx.split, opts.allow_contamination)
        problems_file = runs.ResultFolder(ctx.folder).problems_file
        ctx.folder.mkdir(parents=True, exist_ok=True)
        runs.update_text(problems_file, "".join(json.dumps(p.raw, ensure_ascii=False) + "\n" for p in decoded))
        info = {"source": source, "release": None if opts.problems else release, "preset": opts.preset, **filters}
        info["selected"] = len(decoded)
        info["skipped_untested"] = untested
        problems = [Problem(p.question_id, p, entry_point(p.raw), p.difficulty) for p in decoded]
        return ProblemSet(problems, problems_file, info, untested)

    def prompt(self, problem: Problem, protocol: Protocol | None = None) -> str:
        return build_prompt(problem.data.raw, (protocol or get_protocol(None)).prompt)

    def grade(self, problem: Problem, code: str, settings: GradeSettings) -> GradeResult:
        return grade(problem.data, code, settings.timeout, settings.memory_mb, settings.protocol, settings.output_limit)

    def read_problems(self, path, settings, skip_untested=False, wanted=None):
        if path is None:
            raise UserError("livecodebench needs --problems (a code_generation_lite JSONL file)")
        proto = settings.protocol or get_protocol(None)
        probs, skipped = load_problems(path, wanted, proto.tests, skip_untested)
        return {q: Problem(q, p, p.func_name, p.difficulty) for q, p in probs.items()}, skipped

    def read_samples(self, path: Path) -> list[Sample]:
        return read_samples(path)

    def samples_text(self, samples: list[tuple[str, str]]) -> str:
        by_task: dict[str, list[str]] = {}
        for q, code in samples:
            by_task.setdefault(q, []).append(code)
        return json.dumps([{"question_id": q, "code_list": c} for q, c in by_task.items()]) + "\n"

    def card_dataset(self, cfg) -> tuple[str, str]:
        return HUB_DATASET, self.title


register(LiveCodeBench())
