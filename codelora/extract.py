"""Pull the Python program out of a model's answer."""

from __future__ import annotations

import ast
import re
import textwrap

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


def extract_code(text: str) -> tuple[str, bool]:
    """Return (code, found). Drops `<think>` blocks, takes the last fenced block labelled python (else the
    last unlabelled one; an unterminated last fence - cut by max_new_tokens - counts), else the whole
    answer when it parses as Python."""
    answer = _strip_thinking(text)
    blocks = [(lang.lower(), textwrap.dedent(body)) for lang, body in _FENCE.findall(answer) if body.strip()]
    # a block labelled python beats an unlabelled one (often sample input/output shown after the code)
    labelled = [body for lang, body in blocks if lang in _PYTHON_TAGS and lang]
    unlabelled = [body for lang, body in blocks if not lang]
    for candidates in (labelled, unlabelled):
        if candidates:
            return candidates[-1].rstrip() + "\n", True
    stripped = answer.strip()
    if stripped and "```" not in stripped and _is_program(stripped):
        return stripped + "\n", True
    return "", False
