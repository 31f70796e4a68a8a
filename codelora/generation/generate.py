"""`codelora generate`: the original project's inference check (its run.py), on any model source."""

from __future__ import annotations

import sys
from pathlib import Path

from codelora.config import RunConfig
from codelora.errors import UserError
from codelora.generation.extract import extract_code
from codelora.generation.sampling import Generation, Sampling
from codelora.model.chat import load_with_adapter, prompt_ids, stop_token_ids


def generate_answer(model, tokenizer, system_prompt: str, problem: str, cfg: RunConfig, stream: bool = False) -> str:
    """One chat answer to the prompt codelora.model.chat builds (as training saw it), stopping at the end of the turn;
    greedy or seeded sampling per cfg.eval."""
    import torch
    from transformers import TextStreamer

    ids = torch.tensor([prompt_ids(tokenizer, system_prompt, problem)], device=model.device)
    enc = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    ev = cfg.eval
    stops = stop_token_ids(tokenizer)
    kwargs: dict = {
        "max_new_tokens": ev.max_new_tokens,
        "eos_token_id": stops,
        "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0],
    }
    if ev.greedy or ev.temperature == 0:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    else:
        torch.manual_seed(ev.seed)
        kwargs.update(do_sample=True, temperature=ev.temperature, top_p=ev.top_p, top_k=None)
    if stream:
        kwargs["streamer"] = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    with torch.no_grad():
        out = model.generate(**enc, **kwargs)
    return tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)


def run_generate(cfg: RunConfig, source: str | None, adapter: str | None, prompt: str | None, problem_file: str | None):
    """`codelora generate`: answer one problem (text, or a file's) with `source` (default cfg.model.source) plus an
    optional adapter; streams the answer to stdout and prints the extracted code. UserError unless exactly one of
    prompt / problem_file is given, or for a bad source or adapter."""
    if (prompt is None) == (problem_file is None):
        raise UserError("give exactly one of --prompt TEXT or --problem-file FILE")
    if problem_file is not None:
        path = Path(problem_file)
        if not path.is_file():
            raise UserError(f"problem file not found: {problem_file}")
        try:
            prompt = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UserError(f"{problem_file}: not UTF-8 text") from None
        if not prompt.strip():
            raise UserError(f"{problem_file}: empty problem")
    source = source or cfg.model.source
    model, tokenizer = load_with_adapter(source, adapter, cfg)
    print(f"--- answer ({source}{' + ' + adapter if adapter else ''}) ---", file=sys.stderr)
    answer = generate_answer(model, tokenizer, cfg.data.system_prompt, prompt, cfg, stream=True)
    code, found = extract_code(answer)
    print("\n--- extracted code ---")
    print(code if found else "(no Python code block found in the answer)")
    return answer, code


# ---------------------------------------------------------------- batched generation (codelora evaluate)


class _PerRowSampler:
    """Samples each row with its own torch.Generator, so a sample's tokens depend only on its seed,
    not on which other prompts share its batch (or on resuming). Returns scores that are -inf except
    at the chosen token, so generate's greedy step picks it."""

    def __init__(self, seeds: list[int], temperature: float, top_p: float, device):
        import torch

        self.generators = []
        for s in seeds:
            g = torch.Generator(device=device)
            g.manual_seed(int(s))
            self.generators.append(g)
        self.temperature = temperature
        self.top_p = top_p

    def __call__(self, input_ids, scores):
        import torch

        logits = scores.float() / self.temperature
        if self.top_p < 1.0:
            sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
            cum = sorted_logits.softmax(-1).cumsum(-1)
            drop_sorted = cum - sorted_logits.softmax(-1) > self.top_p  # keep the token that crosses top_p
            drop = drop_sorted.scatter(-1, order, drop_sorted)
            logits = logits.masked_fill(drop, float("-inf"))
        probs = logits.softmax(-1)
        out = torch.full_like(scores, float("-inf"))
        for row, g in enumerate(self.generators):
            tok = torch.multinomial(probs[row], 1, generator=g)
            out[row, tok] = 0.0
        return out


def generate_batch(
    model,
    tokenizer,
    prompts: list[list[int]],
    sampling: Sampling,
    seeds: list[int] | None = None,
    batch_size: int = 8,
    on_batch=None,
    progress: bool = True,
) -> list[Generation]:
    """Generate one answer per prompt (token ids from `prompt_ids`), batched.

    Prompts are sorted by length (longest first: little padding, and memory trouble shows at once),
    left-padded, decoded with the KV cache, and stop at the end-of-turn token. `seeds[i]` seeds prompt
    i's sampling (ignored when greedy). `on_batch([(index, Generation), ...])` is called as each batch
    finishes, so the caller can save it. Returns the generations in prompt order.
    """
    import torch
    from transformers import LogitsProcessorList

    if seeds is None:
        seeds = [sampling.seed] * len(prompts)
    stops = stop_token_ids(tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    results: list[Generation | None] = [None] * len(prompts)
    device = model.device
    bar = None
    if progress and prompts:
        from tqdm import tqdm

        bar = tqdm(total=len(prompts), desc="generate", unit="answer", file=sys.stderr)
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            width = max(len(prompts[i]) for i in idx)
            ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                p = prompts[i]
                ids[row, width - len(p) :] = torch.tensor(p, dtype=torch.long)
                mask[row, width - len(p) :] = 1
            kwargs: dict = {
                "max_new_tokens": sampling.max_new_tokens,
                "do_sample": False,
                "temperature": None,
                "top_p": None,
                "top_k": None,
                "eos_token_id": stops,
                "pad_token_id": pad_id,
                "use_cache": True,
            }
            if not sampling.greedy:
                sampler = _PerRowSampler([seeds[i] for i in idx], sampling.temperature, sampling.top_p, device)
                kwargs["logits_processor"] = LogitsProcessorList([sampler])
            with torch.no_grad():
                out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs)
            new = out[:, width:].tolist()
            done = []
            for row, i in enumerate(idx):
                toks = new[row]
                stop_at = next((j for j, t in enumerate(toks) if t in stops), None)
                kept = toks if stop_at is None else toks[: stop_at + 1]
                gen = Generation(tokenizer.decode(kept, skip_special_tokens=True), len(kept), stop_at is not None)
                results[i] = gen
                done.append((i, gen))
            if on_batch is not None:
                on_batch(done)
            if bar is not None:
                bar.update(len(idx))
    finally:
        if bar is not None:
            bar.close()
    return results  # type: ignore[return-value]
