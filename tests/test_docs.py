"""The documentation's commands are real: every `codelora ...` line in a fenced block of README.md or any
docs/*.md (new pages are picked up by the glob) parses with the real `codelora` parser, and its values pass the
same checks the CLI makes before a command starts (`flags.from_args`: types, choices, `__post_init__`). Also the
README's size and that every docs/ page it links to exists."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from codelora.cli import build_parser
from codelora.flags import from_args

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def fenced_commands(path: Path) -> list[tuple[int, str]]:
    """(line number, command line) for each shell line in a fenced block that runs `codelora` (directly, after
    `VAR=value` assignments, or as `... -m codelora` under a launcher), backslash continuations joined."""
    found: list[tuple[int, str]] = []
    fence = None
    pending: tuple[int, str] | None = None
    for num, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.strip()
        m = re.match(r"^(`{3,}|~{3,})", stripped)
        if m and (fence is None or (stripped.startswith(fence) and not stripped[len(fence) :].strip())):
            fence = m.group(1) if fence is None else None
            continue
        if fence is None:
            continue
        if pending is not None:
            pending = (pending[0], pending[1] + " " + stripped.rstrip("\\").strip())
            if not stripped.endswith("\\"):
                found.append(pending)
                pending = None
            continue
        if re.search(r"(^|\s|-m\s+)codelora\s", stripped + " ") and not stripped.startswith(("#", "pip ", "python")):
            if stripped.endswith("\\"):
                pending = (num, stripped.rstrip("\\").strip())
            else:
                found.append((num, stripped))
    return found


def codelora_argv(command: str) -> list[str]:
    """The arguments after `codelora` (comments dropped, env assignments and launchers skipped)."""
    words = shlex.split(command, comments=True)
    while words and ENV_ASSIGNMENT.match(words[0]):
        words.pop(0)
    if "-m" in words and words[words.index("-m") + 1 : words.index("-m") + 2] == ["codelora"]:
        return words[words.index("-m") + 2 :]
    assert words and words[0] == "codelora", command
    return words[1:]


CASES = [
    pytest.param(path, num, cmd, id=f"{path.relative_to(ROOT)}:{num}")
    for path in DOC_FILES
    for num, cmd in fenced_commands(path)
]


def test_docs_have_commands():
    """The extraction finds the commands (a broken extractor would make the parse test vacuous)."""
    by_file = {path.relative_to(ROOT).as_posix(): len(fenced_commands(path)) for path in DOC_FILES}
    assert by_file["README.md"] >= 6
    assert sum(by_file.values()) >= 30, by_file
    # continuation lines are joined: the multi-process training example keeps its --set
    joined = [cmd for _, cmd in fenced_commands(ROOT / "docs" / "training.md") if "fsdp.yaml" in cmd]
    assert joined and "--set train.gradient_checkpointing=false" in joined[0]


@pytest.mark.parametrize("path,num,command", CASES)
def test_documented_command_parses(path, num, command):
    parser = build_parser()
    argv = codelora_argv(command)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse printed why on stderr
        pytest.fail(f"{path.name}:{num}: `{command}` does not parse (exit {e.code})")
    assert getattr(args, "func", None), f"{path.name}:{num}: `{command}` names no command"
    from_args(args.options, args)  # a UserError here names the flag and the value


def test_extractor_joins_and_strips(tmp_path):
    page = tmp_path / "x.md"
    page.write_text(
        "codelora outside a fence\n```bash\n# codelora in a comment\nHF_TOKEN=x codelora push --export E \\\n"
        "  --repo u/n --dry-run   # note\naccelerate launch -m codelora train --config demo\n```\n",
        encoding="utf-8",
    )
    cmds = [c for _, c in fenced_commands(page)]
    assert [codelora_argv(c) for c in cmds] == [
        ["push", "--export", "E", "--repo", "u/n", "--dry-run"],
        ["train", "--config", "demo"],
    ]


def test_bad_documented_command_is_caught():
    """The check can fail: an unknown flag does not parse."""
    with pytest.raises(SystemExit):
        build_parser().parse_args(codelora_argv("codelora evaluate --run R --no-such-flag"))


def test_readme_is_short_and_links_resolve():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    for page in DOC_FILES[1:]:
        for target in re.findall(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            assert (page.parent / target).is_file(), f"{page.name} links to missing {target}"
    for target in re.findall(r"\]\((docs/[^)#\s]+)(?:#[^)]*)?\)", text):
        assert (ROOT / target).is_file(), f"README.md links to missing {target}"
