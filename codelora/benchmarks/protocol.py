"""Grading protocols for LiveCodeBench: how a model is asked, which program is taken, how it is judged.

One object says everything that makes two pass@1 numbers comparable. Two protocols exist:

- `livecodebench` (the default): LiveCodeBench's own rules (`lcb_runner`, `evaluation/testing_util.py`):
  the statement wrapped in LiveCodeBench's prompt text, the program chosen by codelora's extraction rule,
  public *and* private tests, per line exact match or else equal `Decimal` tokens, 6 s per test.
- `course`: the course's own grader, as its evaluation logs show it (see docs/protocols.md):
  the raw statement as the user message, greedy decoding with up to 8192 new tokens, the *first* ```python
  block, the public tests only, exact string comparison after stripping the whole output and each line, 10 s
  per test, 512 MB. An answer without any code counts as failed.

Use `get_protocol(name)`; `PROTOCOLS` maps every name to its `Protocol`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from codelora.errors import UserError

# Values of the fields below (each rule is implemented where the field is read).
PROMPT_STYLES = ("livecodebench", "raw")  # benchmarks.livecodebench.build_prompt(raw, style)
EXTRACTION_RULES = ("program", "first_python")  # extract.extract_code(text, rule)
TEST_SETS = ("public+private", "public")  # benchmarks.livecodebench.load_problems(..., tests=)
COMPARISONS = ("decimal", "exact")  # sandbox.grading.outputs_match(..., comparison=)


@dataclass(frozen=True)
class Protocol:
    """Everything that decides a LiveCodeBench verdict besides the model.

    name: registry key, recorded in summary.json. prompt: "livecodebench" (LiveCodeBench's format text around
    the statement) or "raw" (the statement alone). max_new_tokens: generation budget in tokens, or None for
    the config's `eval.max_new_tokens` (1024 in the seed presets). greedy: True forces greedy decoding, None
    leaves it to the config and flags. extraction: "program" (codelora's rule: prefer the block that is the
    program, see codelora.generation.extract) or "first_python" (the first ```python block; an answer with no fence at
    all is taken whole). tests: "public+private" or "public". comparison: "decimal" (per line: exact, else
    every whitespace token equal as Decimal) or "exact" (after stripping the output and each line).
    timeout: seconds per test. memory_mb: address-space limit per program in MiB. import_header: whether
    LiveCodeBench's block of imports (`from math import *`, ...) is put before stdin programs.
    """

    name: str
    description: str
    prompt: str
    max_new_tokens: int | None
    greedy: bool | None
    extraction: str
    tests: str
    comparison: str
    timeout: float
    memory_mb: int
    import_header: bool

    def __post_init__(self) -> None:
        for field, value, allowed in (
            ("prompt", self.prompt, PROMPT_STYLES),
            ("extraction", self.extraction, EXTRACTION_RULES),
            ("tests", self.tests, TEST_SETS),
            ("comparison", self.comparison, COMPARISONS),
        ):
            if value not in allowed:
                raise ValueError(f"Protocol.{field}={value!r}: choose from {', '.join(allowed)}")

    def to_dict(self) -> dict:
        """JSON-ready fields, as recorded in summary.json."""
        return asdict(self)


# One row per protocol, the columns in Protocol's field order after the description (prompt, max_new_tokens, greedy,
# extraction, tests, comparison, timeout, memory_mb, import_header): the rules side by side, differences at a glance.
# fmt: off
LIVECODEBENCH = Protocol(
    "livecodebench",
    "LiveCodeBench's rules: its prompt format, public+private tests, Decimal comparison, 6 s per test",
    "livecodebench", None, None, "program", "public+private", "decimal", 6.0, 1024, True,
)
COURSE = Protocol(
    "course",
    "the course's grader: raw statement, greedy, 8192 new tokens, first python block, public tests only, "
    "exact comparison after stripping, 10 s per test, 512 MB",
    "raw", 8192, True, "first_python", "public", "exact", 10.0, 512, False,
)
# fmt: on

PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (LIVECODEBENCH, COURSE)}
DEFAULT_PROTOCOL = LIVECODEBENCH.name


def get_protocol(name: str | Protocol | None) -> Protocol:
    """The Protocol called `name` (None: the default, `livecodebench`); UserError for an unknown name."""
    if isinstance(name, Protocol):
        return name
    if name is None:
        return PROTOCOLS[DEFAULT_PROTOCOL]
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise UserError(f"unknown protocol {name!r}; choose from {', '.join(PROTOCOLS)}") from None
