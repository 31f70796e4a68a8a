"""LiveCodeBench code_generation_lite problems and grading of generated programs.

Private tests are stored as base64(zlib(pickle(json string))). They are unpickled with an
Unpickler that refuses every global, so a hostile file cannot run code: only plain pickled
strings (and other builtin containers) decode.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from codelora.errors import UserError
from codelora.files import jsonl_lines
from codelora.sandbox.grading import (
    IMPORT_HEADER,
    SANDBOX_ERROR,
    GradeResult,
    _fail,
    grade_call_problem,
    grade_stdio_problem,
)

DEFAULT_TIMEOUT = 6.0


class _NoGlobalsUnpickler(pickle.Unpickler):
    def find_class(self, module, name):  # noqa: D401
        raise pickle.UnpicklingError(f"refused global {module}.{name} in private tests")


def safe_unpickle(data: bytes):
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
class Problem:
    question_id: str
    difficulty: str
    func_name: str | None
    tests: list[dict] = field(default_factory=list)
    error: str | None = None  # tests could not be decoded

    @property
    def call_based(self) -> bool:
        return bool(self.tests) and self.tests[0].get("testtype") == "functional"


def _decode_problem(raw: dict, where: str) -> Problem:
    qid = str(raw["question_id"])
    difficulty = str(raw.get("difficulty") or "unknown")
    try:
        meta = raw.get("metadata") or "{}"
        meta = json.loads(meta) if isinstance(meta, str) else meta
        func_name = meta.get("func_name") if isinstance(meta, dict) else None
        public = raw.get("public_test_cases") or "[]"
        public = json.loads(public) if isinstance(public, str) else public
        private = decode_private_tests(raw.get("private_test_cases") or "")
        tests = list(public) + list(private)
        for t in tests:
            if not isinstance(t, dict) or "input" not in t or "output" not in t:
                raise ValueError("test case without input/output")
        if tests and tests[0].get("testtype") == "functional" and not func_name:
            raise ValueError("functional tests but no metadata.func_name")
        return Problem(qid, difficulty, func_name, tests)
    except Exception as e:  # noqa: BLE001 - any decoding failure is reported, not raised
        msg = f"{where}: question_id {qid}: cannot decode tests ({type(e).__name__}: {e})"
        return Problem(qid, difficulty, None, [], error=msg)


def load_problems(path: Path, wanted: set[str] | None = None) -> dict[str, Problem]:
    """question_id -> Problem. Only problems in `wanted` (if given) have their tests decoded."""
    path = Path(path)
    problems: dict[str, Problem] = {}
    for lineno, line in jsonl_lines(path, "problems file"):
        try:
            raw = json.loads(line)
            qid = str(raw["question_id"])
        except (ValueError, KeyError, TypeError) as e:
            raise UserError(f"{path}:{lineno}: not a LiveCodeBench problem ({e})") from None
        if wanted is not None and qid not in wanted:
            problems[qid] = Problem(qid, str(raw.get("difficulty") or "unknown"), None, [])
            continue
        problems[qid] = _decode_problem(raw, f"{path}:{lineno}")
    return problems


def load_samples(path: Path) -> tuple[list[tuple[str, int, str]], list[dict]]:
    """Parse LCB custom-evaluator samples: JSON list (or JSONL) of {question_id, code_list}.

    Returns ([(question_id, sample_index, code)], bad_samples).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read samples file {path}: {e}") from None
    entries: list[tuple[str, object]] = []  # (location, object)
    bad: list[dict] = []
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
                bad.append({"where": f"{path}:{lineno}", "error": f"invalid JSON ({e})"})
    samples: list[tuple[str, int, str]] = []
    for where, obj in entries:
        if not isinstance(obj, dict) or "question_id" not in obj:
            bad.append({"where": where, "error": "expected an object with question_id and code_list"})
            continue
        codes = obj.get("code_list")
        if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
            bad.append(
                {"where": where, "error": f"question_id {obj['question_id']}: code_list must be a list of strings"}
            )
            continue
        if not codes:
            bad.append({"where": where, "error": f"question_id {obj['question_id']}: empty code_list"})
            continue
        for i, code in enumerate(codes):
            samples.append((str(obj["question_id"]), i, code))
    return samples, bad


def grade(problem: Problem, code: str, timeout: float | None = None, memory_mb: int = 1024) -> GradeResult:
    timeout = timeout or DEFAULT_TIMEOUT
    if problem.error:
        return GradeResult(SANDBOX_ERROR, [], _fail(SANDBOX_ERROR, "", "", "", "bad_input: " + problem.error))
    if problem.call_based:
        return grade_call_problem(code, problem.tests, problem.func_name or "", timeout, memory_mb)
    return grade_stdio_problem(code, problem.tests, timeout, memory_mb, header=IMPORT_HEADER)


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


def build_prompt(raw: dict) -> str:
    """User message for one problem: call-based problems show their starter code, stdin ones say
    to read stdin and write stdout (LiveCodeBench's format)."""
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
