"""Pull the Python program out of a model's answer."""

from __future__ import annotations

import ast
import re

_THINK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL)
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|$)", re.DOTALL)


def extract_code(text: str) -> tuple[str, bool]:
    """Return (code, found). Drops `<think>` blocks, takes the last fenced python block
    (or unlabelled fence), else the whole answer when it parses as Python."""
    answer = _THINK.sub("", text)
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(answer)]
    python_blocks = [body for lang, body in blocks if lang in ("python", "py", "python3", "")]
    if python_blocks:
        return python_blocks[-1].rstrip() + "\n", True
    stripped = answer.strip()
    if stripped:
        try:
            ast.parse(stripped)
            return stripped + "\n", True
        except SyntaxError:
            pass
    return "", False
