"""One plug-in registry, shared by codelora's three kinds of plug-in: benchmarks (codelora.benchmarks), generation
backends (codelora.generation.backends) and training methods (codelora.training).

Each kind is a package whose modules register themselves when imported. Reading a registry (`names`, `get`,
`items`) first imports every module of the package not imported yet, so a file added to the package becomes a
choice the next time the registry is read, with nothing else to edit. The built-in entries are listed first, in
their given order, and the others follow by name.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from codelora.errors import UserError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """name -> entry for the modules of `package` (a dotted name).

    kind: what an entry is, in messages ("benchmark", "backend", "training method"). built_in: names listed first,
    in this order; the package's modules of the same names are imported first too. skip: module names of the
    package that register nothing (shared code such as `base`). The package's `__path__` is read at every load, so
    a caller may extend it (tests add a folder of plug-ins).
    """

    def __init__(self, kind: str, package: str, built_in: Iterable[str], skip: Iterable[str] = ()):
        self.kind, self.package = kind, package
        self.built_in = tuple(built_in)
        self.skip = frozenset(skip)
        self.entries: dict[str, T] = {}
        self.imported: set[str] = set()  # module names already imported (each once)

    def load(self) -> None:
        """Import every module of the package not imported yet (each registers its entries)."""
        path = sys.modules[self.package].__path__
        found = sorted(
            m.name for m in pkgutil.iter_modules(path) if not m.name.startswith("_") and m.name not in self.skip
        )
        for name in [*self.built_in, *(m for m in found if m not in self.built_in)]:
            if name not in self.imported:
                self.imported.add(name)
                importlib.import_module(f"{self.package}.{name}")

    def add(self, name: str, entry: T, same: Callable[[T, T], bool]) -> T:
        """Register `entry` under `name`; returns it. Registering again what `same(old, new)` calls the same entry
        (a module imported twice) replaces it; anything else under a taken name is a ValueError."""
        old = self.entries.get(name)
        if old is not None and not same(old, entry):
            raise ValueError(f"a {self.kind} named {name!r} is already registered ({old!r})")
        self.entries[name] = entry
        return entry

    def remove(self, name: str) -> None:
        """Forget `name` (tests that register their own)."""
        self.entries.pop(name, None)

    def names(self) -> tuple[str, ...]:
        """The registered names: the built-in ones first in their order, then the others by name."""
        self.load()
        rank = {n: i for i, n in enumerate(self.built_in)}
        return tuple(sorted(self.entries, key=lambda n: (rank.get(n, len(self.built_in)), n)))

    def get(self, name: str) -> T:
        """The entry called `name`; UserError (one line naming the choices) for an unknown one."""
        self.load()
        try:
            return self.entries[name]
        except KeyError:
            raise UserError(f"unknown {self.kind} {name!r}; choose from {', '.join(self.names())}") from None
