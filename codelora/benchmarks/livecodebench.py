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
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:
        raise UserError(f"cannot read problems file {path}: {e}") from None
    with f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
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
