"""Text from programs and models made safe to show: control characters become visible escapes.

A program under test (or a model's answer) can print ANSI escape sequences that move the cursor, clear the
screen, rewrite earlier lines or set the window title, a carriage return that hides what came before it on
the line, or Unicode bidirectional controls that make shown code read differently from what runs. Wherever
codelora shows such text (console tables, `compare --problems`, error lines, report.html and report.md) it goes
through `terminal_safe` first.
"""

from __future__ import annotations

import re

# C0 controls except tab and newline, DEL, C1 controls, and the Unicode bidirectional formatting characters.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(m: re.Match) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def terminal_safe(text: object, newlines: bool = True) -> str:
    """`str(text)` with every control character written as an escape (ESC -> `\\x1b`, CR -> `\\x0d`,
    U+202E -> `\\u202e`); tabs and (unless `newlines=False`) newlines are kept. Other text is unchanged."""
    s = _UNSAFE.sub(_escape, str(text))
    return s if newlines else s.replace("\n", "\\x0a")
