"""Pull the Python program out of a model's answer."""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass

_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL | re.IGNORECASE)
# A fence closes at a line starting with ``` or at the end of the text (an answer cut by max_new_tokens).
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+.-]*)[^\n]*\n(.*?)(?:^[ \t]*```|\Z)", re.DOTALL | re.MULTILINE)
_PYTHON_TAGS = ("python", "py", "python3", "py3", "")


def _strip_thinking(text: str) -> str:
    # Some chat templates open <think> inside the prompt, so the answer holds only the closing tag:
    # everything before the last </think> is reasoning.
    text = _THINK.sub("", text)
    if "</think>" in text.lower():
        text = text[text.lower().rfind("</think>") + len("</think>") :]
    return text


def _is_program(text: str) -> bool:
    """Parses as Python and is more than a bare name or constant (a one-word reply parses too)."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return False
    return any(
        not (isinstance(node, ast.Expr) and isinstance(node.value, (ast.Name, ast.Constant))) for node in tree.body
    )


@dataclass(frozen=True)
class Extraction:
    """The program taken from an answer. code: the program ("" when none); found: whether one was found;
    block: 0-based index of the fenced block taken among the answer's fenced blocks (None: no block taken);
    blocks: number of fenced blocks in the answer; reason: why this one (recorded in generations.jsonl)."""

    code: str
    found: bool
    block: int | None
    blocks: int
    reason: str

    def to_dict(self) -> dict:
        return {"block": self.block, "blocks": self.blocks, "reason": self.reason}


def extract(text: str, rule: str = "program") -> Extraction:
    """Take the program out of a model's answer by `rule` (see codelora.protocol.EXTRACTION_RULES).

    rule "program": drops `<think>` blocks, takes the last fenced block labelled python (else the last unlabelled
    one; an unterminated last fence - cut by max_new_tokens - counts), else the whole answer when it parses as
    Python. rule "first_python" (the course's grader): the first ```python block; an answer with no fence at
    all is taken whole; otherwise nothing is found.
    """
    if rule == "first_python":
        blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(text)]
        for i, (lang, body) in enumerate(blocks):
            if lang == "python":
                code = body.strip()
                return Extraction(code + "\n" if code else "", bool(code), i, len(blocks), "first python block")
        stripped = text.strip()
        if "```" not in text and stripped:
            return Extraction(stripped + "\n", True, None, 0, "no fence: the whole answer")
        return Extraction("", False, None, len(blocks), "no python block")
    if rule != "program":
        raise ValueError(f"extraction rule {rule!r}: expected 'program' or 'first_python'")
    answer = _strip_thinking(text)
    blocks = [(lang.lower(), textwrap.dedent(body)) for lang, body in _FENCE.findall(answer)]
    nonempty = [(i, lang, body) for i, (lang, body) in enumerate(blocks) if body.strip()]
    # a block labelled python beats an unlabelled one (often sample input/output shown after the code)
    labelled = [(i, body) for i, lang, body in nonempty if lang in _PYTHON_TAGS and lang]
    unlabelled = [(i, body) for i, lang, body in nonempty if not lang]
    for candidates, why in ((labelled, "last python block"), (unlabelled, "last unlabelled block")):
        if candidates:
            i, body = candidates[-1]
            return Extraction(body.rstrip() + "\n", True, i, len(blocks), why)
    stripped = answer.strip()
    if stripped and "```" not in stripped and _is_program(stripped):
        return Extraction(stripped + "\n", True, None, 0, "no fence: the whole answer is a program")
    return Extraction("", False, None, len(blocks), "no program found")


def extract_code(text: str, rule: str = "program") -> tuple[str, bool]:
    """(code, found) of `extract(text, rule)`."""
    got = extract(text, rule)
    return got.code, got.found
