"""Pull the Python program out of a model's answer.

Rule "program" (codelora's; the `livecodebench` protocol and the held-out and HumanEval benchmarks):

1. `<think>…</think>` reasoning is dropped (and everything before a lone `</think>`).
2. Fenced blocks are found by CommonMark's rules: an opening fence is a line that *starts* (after indentation)
   with three or more backticks or tildes, then an optional info string whose first word is the language (a
   backtick fence's info string holds no backtick); the block ends at a line holding only the same character at
   least as many times; an unclosed block runs to the end of the answer (cut by max_new_tokens). A fence marker
   inside a sentence is not a fence. The opening fence's indentation is removed from the block's lines.
   One deviation: a labelled opening fence (```` ```python ````) met inside an open *unlabelled* block closes that
   block first, since the unlabelled one was a stray fence around prose.
3. Candidates: blocks labelled python/py/python3/py3, and unlabelled blocks that parse as a Python program (more
   than a bare name or constant). Blocks in other languages, sample input/output and prose never are.
4. The program is the candidate that ranks highest on, in order: defines the entry point (`def <entry_point>`
   at the top level or in a class: call-based problems, HumanEval), or, without an entry point, reads standard
   input *and* is self-contained; reads standard input; is self-contained (uses no name it does not define,
   import or get from builtins); is labelled python; comes later. So a solution followed by a usage snippet
   (`Solution().f(...)`, `print(solve(3))`) or a test block keeps the solution, and a revised solution later in
   the answer beats an earlier draft.
5. An answer without any fenced block is taken whole when it parses as a Python program.

Rule "first_python" (the course's grader, as its logs show it): the first ```` ```python ```` block (closed); an
answer without any fence is taken whole; otherwise nothing.

`extract` returns an `Extraction` (code, found, which block, how many, why); `extract_code` just (code, found).
"""

from __future__ import annotations

import ast
import builtins
import re
import textwrap
from dataclasses import dataclass

_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL | re.IGNORECASE)
_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^\n]*)$")
_PYTHON_TAGS = ("python", "py", "python3", "py3")
_COURSE_BLOCK = re.compile(r"```python[^\n]*\n(.*?)```", re.DOTALL)
_BUILTINS = frozenset(dir(builtins)) | {"__name__", "__file__", "__doc__", "__builtins__"}
RULES = ("program", "first_python")


@dataclass(frozen=True)
class Extraction:
    """The program taken from an answer.

    code: the program ("" when none, else ending in one newline); found: whether one was found; block: 0-based
    index of the fenced block taken among the answer's fenced blocks (None: no block, e.g. the whole answer);
    blocks: number of fenced blocks in the answer; reason: why this one (recorded in generations.jsonl).
    """

    code: str
    found: bool
    block: int | None
    blocks: int
    reason: str

    def to_dict(self) -> dict:
        """{block, blocks, reason}: what evaluate records next to the code."""
        return {"block": self.block, "blocks": self.blocks, "reason": self.reason}


@dataclass
class _Block:
    lang: str
    fence: str
    indent: int
    lines: list[str]


def _strip_thinking(text: str) -> str:
    # Some chat templates open <think> inside the prompt, so the answer holds only the closing tag:
    # everything before the last </think> is reasoning.
    text = _THINK.sub("", text)
    if "</think>" in text.lower():
        text = text[text.lower().rfind("</think>") + len("</think>") :]
    return text


def _opening(line: str) -> re.Match | None:
    m = _OPEN.match(line)
    if m is None or (m["fence"][0] == "`" and "`" in m["info"]):
        return None  # CommonMark: a backtick fence's info string cannot contain a backtick
    return m


def _closes(line: str, fence: str) -> bool:
    s = line.strip()
    return len(s) >= len(fence) and s == fence[0] * len(s)


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """[(language, body)] of the fenced code blocks of `text`, in order (see the module docstring, rule 2)."""
    blocks: list[_Block] = []
    cur: _Block | None = None
    for line in text.split("\n"):
        if cur is not None and _closes(line, cur.fence):
            blocks.append(cur)
            cur = None
            continue
        m = _opening(line)
        if cur is None:
            if m:
                info = m["info"].strip().split()
                cur = _Block(info[0].lower() if info else "", m["fence"], len(m["indent"].expandtabs(4)), [])
            continue
        if m and not cur.lang and m["info"].strip():
            # a labelled fence inside an unlabelled block: the unlabelled fence was stray (prose followed it)
            blocks.append(cur)
            info = m["info"].strip().split()
            cur = _Block(info[0].lower(), m["fence"], len(m["indent"].expandtabs(4)), [])
            continue
        if cur.indent:
            body = line.expandtabs(4)
            line = body[min(cur.indent, len(body) - len(body.lstrip(" "))) :]
        cur.lines.append(line)
    if cur is not None:
        blocks.append(cur)
    return [(b.lang, "\n".join(b.lines)) for b in blocks]


def _parse(code: str) -> ast.Module | None:
    try:
        return ast.parse(code)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None


def _is_program(tree: ast.Module | None) -> bool:
    """More than bare names or constants (a one-word reply or a sample output parses too)."""
    return tree is not None and any(
        not (isinstance(node, ast.Expr) and isinstance(node.value, (ast.Name, ast.Constant))) for node in tree.body
    )


def _defines(tree: ast.Module, name: str) -> bool:
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            return True
        if isinstance(node, ast.ClassDef) and any(
            isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and f.name == name for f in node.body
        ):
            return True
    return False


def _reads_stdin(tree: ast.Module) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in ("input", "stdin"):
            return True
        if isinstance(node, ast.Attribute) and node.attr == "stdin":
            return True
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "open"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value in (0, "/dev/stdin")
        ):
            return True
    return False


def _self_contained(tree: ast.Module) -> bool:
    """Every name the code reads is bound somewhere in it (scopes ignored), imported or a builtin."""
    bound, used = set(_BUILTINS), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (used if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name == "*":
                    return True  # names come from the module: unknown here
                bound.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            bound.update(node.names)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            bound.add(node.name)
    return used <= bound


def _course(text: str) -> Extraction:
    blocks = len(fenced_blocks(text))
    m = _COURSE_BLOCK.search(text)
    if m:
        code = m.group(1).strip()
        if code:
            return Extraction(code + "\n", True, None, blocks, "first python block")
    stripped = text.strip()
    if "```" not in text and stripped:
        return Extraction(stripped + "\n", True, None, 0, "no fence: the whole answer")
    return Extraction("", False, None, blocks, "no python block")


def extract(text: str, rule: str = "program", entry_point: str | None = None) -> Extraction:
    """Take the program out of a model's answer `text` by `rule` ("program" or "first_python", see the module
    docstring). entry_point: the function the tests call (call-based problems, HumanEval), None for stdin
    programs. Raises ValueError for an unknown rule."""
    if rule == "first_python":
        return _course(text)
    if rule != "program":
        raise ValueError(f"extraction rule {rule!r}: expected one of {', '.join(RULES)}")
    answer = _strip_thinking(text)
    blocks = fenced_blocks(answer)
    ranked = []
    for i, (lang, body) in enumerate(blocks):
        body = textwrap.dedent(body)
        if not body.strip() or (lang and lang not in _PYTHON_TAGS):
            continue
        tree = _parse(body)
        if not lang and not _is_program(tree):
            continue  # unlabelled: sample input/output or prose
        ok = tree is not None
        defines = ok and entry_point is not None and _defines(tree, entry_point)
        reads = ok and entry_point is None and _reads_stdin(tree)
        whole = ok and _self_contained(tree)
        ranked.append(((defines, reads and whole, reads, whole, bool(lang), i), i, lang, body))
    if ranked:
        (defines, program, reads, whole, labelled, _), i, _, body = max(ranked)
        if defines:
            why = f"defines {entry_point}"
        elif program:
            why = "a complete stdin program"
        elif reads:
            why = "reads stdin"
        elif whole:
            why = "self-contained"
        else:
            why = "python block" if labelled else "parses as python"
        reason = f"block {i + 1} of {len(blocks)}: {why}" + (
            f" (of {len(ranked)} candidates)" if len(ranked) > 1 else ""
        )
        return Extraction(body.rstrip() + "\n", True, i, len(blocks), reason)
    stripped = answer.strip()
    if stripped and not blocks and _is_program(_parse(stripped)):
        return Extraction(stripped + "\n", True, None, 0, "no fence: the whole answer is a program")
    return Extraction("", False, None, len(blocks), f"no python program in {len(blocks)} fenced block(s)")


def extract_code(text: str, rule: str = "program", entry_point: str | None = None) -> tuple[str, bool]:
    """(code, found) of `extract(text, rule, entry_point)`."""
    got = extract(text, rule, entry_point)
    return got.code, got.found
