"""Text from programs and models made safe to show: control characters become visible escapes.

A program under test (or a model's answer) can print ANSI escape sequences that move the cursor, clear the
screen, rewrite earlier lines or set the window title, a carriage return that hides what came before it on
the line, or Unicode bidirectional controls that make shown code read differently from what runs. Wherever
codelora shows such text (console tables, `compare --problems`, error lines, report.html and report.md) it goes
through `terminal_safe` first. Such text written into Markdown (report.md, the model card) goes into a code block
made by `markdown_code_block`, which it cannot close.
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


def markdown_code_block(text: object, lang: str = "") -> str:
    """A fenced Markdown code block holding `str(text)` verbatim (trailing newlines dropped), ending in a newline.

    CommonMark (spec 0.31, "Fenced code blocks") closes a backtick fence only with a line of at least as many
    backticks, so the fence is one backtick longer than the longest run of backticks anywhere in the text (at
    least three): no line of the text, whatever its line endings or indentation, can close the block early and
    have the rest rendered as Markdown (headings, links, remote images, raw HTML). `lang` is the info string
    (a language name of ours, never untrusted text: it must not hold a backtick). Control characters are not
    touched: pass text through `terminal_safe` first.
    """
    if "`" in lang or "\n" in lang:
        raise ValueError(f"bad code block language {lang!r}")
    body = str(text).rstrip("\r\n")
    longest = max((len(run) for run in re.findall("`+", body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{body}\n{fence}\n"
