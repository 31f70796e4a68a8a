"""The `hf` generation backend (the default): transformers on the model's own weights, batched
(codelora.generation.generate.generate_batch: prompts sorted by length, left padding, KV cache), with the adapter
merged into the base where the merge reproduces base + adapter (codelora.model.chat.inference_model)."""

from __future__ import annotations

import gc
import sys

from codelora.generation.backends import Backend, ModelSpec, register


def load_model(spec: ModelSpec, cfg):
    """(model, tokenizer) of `spec` ready for decoding: base + adapter, merged where the merge is exact (a note on
    stderr says when it is not)."""
    from codelora.model.chat import inference_model, load_with_adapter

    model, tokenizer = load_with_adapter(spec.source, spec.adapter, cfg)
    # Merging the adapter removes its extra matmuls from every decoding step; codelora.model.chat merges only where
    # the merged model reproduces base + adapter (checked on a prompt's logits) and says so otherwise.
    model, note = inference_model(model, tokenizer, cfg.data.system_prompt)
    if note:
        print(f"{spec.name}: {note}", file=sys.stderr)
    return model, tokenizer


@register
class HfBackend(Backend):
    """transformers generation, one model loaded at a time (`load`), `eval.batch_size` (or `--batch-size`) prompts
    per batch."""

    name = "hf"

    def __init__(self, cfg, batch_size: int):
        self.cfg, self.batch_size = cfg, batch_size
        self.model = self.tokenizer = None

    @classmethod
    def create(cls, cfg, opts, adapters, source):
        return cls(cfg, opts.batch_size or cfg.eval.batch_size)

    def load(self, spec):
        self.model, self.tokenizer = load_model(spec, self.cfg)

    def generate(self, spec, work, prompts, sampling, seeds, stops, on_batch):
        from codelora.generation import generate as batched  # looked up here: tests replace generate_batch

        return batched.generate_batch(self.model, self.tokenizer, prompts, sampling, seeds, self.batch_size, on_batch)

    def unload(self):
        self.model = self.tokenizer = None
        gc.collect()
