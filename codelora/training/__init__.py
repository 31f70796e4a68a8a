"""Training methods, one module each, behind one interface (`Method`): SFT (`sft.py`, `codelora train`) first; a
method after it (e.g. GRPO, `grpo.py`) is one more module here that calls `register` when imported.

A method trains adapters of the run's base model and writes them into its own folder, in SFT's layout
(`RunFolder.method(name)`: RUN/<name>/checkpoints/checkpoint-<step>/ with meta.json written last, RUN/<name>/final/,
RUN/<name>/logs/metrics.jsonl). The run folder's one model resolver (codelora.run.layout.list_models) lists them as
`<name>-checkpoint-<step>` and `<name>-final`, so evaluate, compare, report and export take them with nothing else
to change. SFT itself writes RUN/checkpoints/ and RUN/final/ (models `checkpoint-<step>`, `final`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from codelora.registry import Registry

__all__ = ["Method", "get", "names", "register", "registry", "unregister"]

BUILT_IN = ("sft",)
registry: Registry[Method] = Registry("training method", __name__, BUILT_IN, skip=("trainer",))


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


def register(method: Method) -> Method:
    """Add a training method under `method.name` (ValueError if another one has that name); returns it."""
    return registry.add(method.name, method, same=lambda old, new: old.train is new.train)


unregister = registry.remove  # remove a registered method (tests that register their own)
names = registry.names  # registered method names: sft first, then the others by name
get = registry.get  # the method called `name`; UserError naming the choices for an unknown one
