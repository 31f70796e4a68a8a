"""Training methods, one module each, behind one interface (`Method`): SFT (`sft.py`, `codelora train`) first; a
method after it (e.g. GRPO, `grpo.py`) is one more module here that calls `register` when imported.

A method trains adapters of the run's base model and writes them into its own folder, in SFT's layout
(`RunFolder.method(name)`: RUN/<name>/checkpoints/checkpoint-<step>/ with meta.json written last, RUN/<name>/final/,
RUN/<name>/logs/metrics.jsonl). The run folder's one model resolver (codelora.run.layout.list_models) lists them as
`<name>-checkpoint-<step>` and `<name>-final`, so evaluate, compare, report and export take them with nothing else
to change. SFT itself writes RUN/checkpoints/ and RUN/final/ (models `checkpoint-<step>`, `final`).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from codelora.errors import UserError

__all__ = ["Method", "get", "names", "register", "unregister"]

BUILT_IN = ("sft",)
_REGISTRY: dict[str, Method] = {}
_imported: set[str] = set()


@dataclass(frozen=True)
class Method:
    """A training method: `name` (its run subfolder and model-name prefix; "sft" writes the run's own folders),
    `title`, and `train(...) -> result dict`: the stage function its command calls (codelora.training.sft.train
    takes `(cfg, run_dir, ...)`; a method after SFT starts from a run's model, e.g. codelora.training.grpo.rl takes
    `(run_dir, start, overrides, ...)`).
    """

    name: str
    title: str
    train: Callable[..., dict[str, Any]]


def _load() -> None:
    """Import every method module of the package not imported yet (each registers itself)."""
    found = sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_") and m.name != "trainer")
    for name in [*BUILT_IN, *(m for m in found if m not in BUILT_IN)]:
        if name not in _imported:
            _imported.add(name)
            importlib.import_module(f"{__name__}.{name}")


def register(method: Method) -> Method:
    """Add a training method under `method.name` (ValueError if another one has that name); returns it."""
    old = _REGISTRY.get(method.name)
    if old is not None and old.train is not method.train:
        raise ValueError(f"a training method named {method.name!r} is already registered ({old.title})")
    _REGISTRY[method.name] = method
    return method


def unregister(name: str) -> None:
    """Remove a registered method (tests that register their own)."""
    _REGISTRY.pop(name, None)


def names() -> tuple[str, ...]:
    """Registered method names: sft first, then the others by name."""
    _load()
    return tuple(sorted(_REGISTRY, key=lambda n: (n not in BUILT_IN, n)))


def get(name: str) -> Method:
    """The method called `name`; UserError naming the choices for an unknown one."""
    _load()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UserError(f"unknown training method {name!r} (choose from {', '.join(names())})") from None
