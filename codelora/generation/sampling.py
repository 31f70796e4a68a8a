"""What decides a generated answer (`Sampling`) and one answer (`Generation`): shared by every generation backend,
the generation store (codelora.run.results) and evaluate. Plain data, no model code."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Sampling:
    """Decoding settings shared by every model of one evaluation (so comparisons are fair)."""

    greedy: bool = True
    temperature: float = 0.2
    top_p: float = 0.9
    max_new_tokens: int = 1024
    seed: int = 42

    @classmethod
    def from_config(cls, ev) -> Sampling:
        """The decoding settings of an EvalConfig (`eval:` section); temperature 0 means greedy."""
        greedy = ev.greedy or ev.temperature == 0
        return cls(greedy, ev.temperature, ev.top_p, ev.max_new_tokens, ev.seed)

    def key(self) -> dict:
        """What decides a sample's output: greedy ignores temperature, top_p and seed."""
        if self.greedy:
            return {"greedy": True, "max_new_tokens": self.max_new_tokens}
        return {
            "greedy": False,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_new_tokens": self.max_new_tokens,
            "seed": self.seed,
        }

    def to_dict(self) -> dict:
        """JSON-ready fields (as recorded in generations.jsonl)."""
        return asdict(self)


@dataclass
class Generation:
    """One generated answer."""

    text: str  # decoded answer, special tokens skipped
    new_tokens: int  # tokens generated, the stop token included, padding after it excluded
    stopped: bool  # ended on an end-of-turn/eos token (False: hit max_new_tokens)
