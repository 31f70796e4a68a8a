"""The generation backends of `codelora evaluate` (`--backend`, `eval.backend`), one module each, behind one
interface (`Backend`): `hf` (transformers, batched), `vllm` (GPU, optional extra), `llamacpp` (llama.cpp on a GGUF).

Every module of this package is imported when the registry is first read, and each registers its class
(`register`), so a backend is one new file here: it is then an `evaluate --backend` choice and a valid
`eval.backend`. A backend must answer the same prompt token ids (codelora.model.chat), seed sample i with
`seeds[i]`, stop at the given stop tokens, and say in `fingerprint()` what besides the adapter made its answers
(None: the model's own weights, as transformers computes them), so its answers never pass for another's.
Modules here import nothing heavy at load time (the CLI reads the registry to build its flags).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from codelora.errors import UserError
from codelora.registry import Registry

if TYPE_CHECKING:
    from codelora.generation.sampling import Generation, Sampling

__all__ = ["BUILT_IN", "Backend", "ModelSpec", "create", "get", "names", "register", "registry", "unregister"]

BUILT_IN = ("hf", "vllm", "llamacpp")  # listed first, in this order; other modules follow by name
registry: Registry[type[Backend]] = Registry("backend", __name__, BUILT_IN)


@dataclass
class ModelSpec:
    """One model to answer with: its name in the run (base, checkpoint-N, final), base source, adapter folder, step."""

    name: str
    source: str
    adapter: str | None
    step: int


class Backend(ABC):
    """One evaluation's generator. Lifecycle: `create` once per evaluation; per model `load(spec)` (timed as the
    summary's `load_seconds`), `generate(...)` (timed as `seconds`), `unload()`; `close()` at the end."""

    name: ClassVar[str]
    exclusive_options: ClassVar[tuple[str, ...]] = ()
    """EvalOptions fields only this backend reads: given with another backend, they are refused with one line."""

    @classmethod
    @abstractmethod
    def create(cls, cfg, opts, adapters: list[str], source: str) -> Backend:
        """The backend for one evaluation: `cfg` the run config, `opts` its EvalOptions, `adapters` every adapter
        folder it will serve (fixed before an engine is built), `source` the base model. UserError for bad options
        or a missing optional dependency."""

    def fingerprint(self) -> dict | None:
        """What besides the adapter made the answers (added to each answer's key and the results' provenance), or
        None for the model's own weights."""
        return None

    def load(self, spec: ModelSpec) -> None:  # noqa: B027 - optional step, most backends load inside generate
        """Get ready to answer as `spec` (a backend that loads inside `generate` does nothing here)."""

    @abstractmethod
    def generate(
        self,
        spec: ModelSpec,
        work: Path,
        prompts: list[list[int]],
        sampling: Sampling,
        seeds: list[int],
        stops: list[int],
        on_batch: Callable[[list[tuple[int, Generation]]], None],
    ) -> list[Generation]:
        """One answer per prompt (token ids), in prompt order; `on_batch([(index, Generation)])` as answers finish
        (they are saved at once). `work`: the model's eval folder, for files the backend makes (merged copies)."""

    def unload(self) -> None:  # noqa: B027 - optional step
        """Free what `load` took."""

    def close(self) -> None:  # noqa: B027 - optional step
        """Free what the backend holds across models (an engine)."""


def register(cls: type[Backend]) -> type[Backend]:
    """Add a backend class under `cls.name` (ValueError if another class has that name); returns it (a decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise TypeError(f"{cls!r} is not a codelora.generation.backends.Backend subclass")
    return registry.add(cls.name, cls, same=lambda old, new: old.__qualname__ == new.__qualname__)


unregister = registry.remove  # remove a registered backend (tests that register their own)
names = registry.names  # registered names, the built-in ones first (the `--backend` choices)
get = registry.get  # the backend class called `name`; UserError naming the choices for an unknown one


def create(name: str, cfg, opts: Any, adapters: list[str], source: str) -> Backend:
    """The evaluation's backend `name`, after refusing another backend's exclusive options (e.g. `--gguf` without
    `--backend llamacpp`)."""
    cls = get(name)
    for other in names():
        if other == name:
            continue
        for option in registry.entries[other].exclusive_options:
            if getattr(opts, option, None):
                flag = "--" + option.replace("_", "-")
                raise UserError(f"{flag} is a {other} backend option; add --backend {other} (backend: {name})")
    return cls.create(cfg, opts, adapters, source)
