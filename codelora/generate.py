"""`codelora generate`: the original project's inference check (its run.py), on any model source."""

from __future__ import annotations

import sys
from pathlib import Path

from codelora.config import SYSTEM_PROMPT, RunConfig
from codelora.errors import UserError
from codelora.extract import extract_code


def build_chat(system_prompt: str, problem: str) -> list[dict]:
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": problem}]


def load_with_adapter(source: str, adapter: str | None, cfg: RunConfig):
    from codelora.models import load_model

    model, tokenizer = load_model(
        source,
        dtype=cfg.model.dtype,
        device=cfg.model.device,
        attn_implementation=cfg.model.attn_implementation,
        revision=cfg.model.revision,
    )
    if adapter:
        if not (Path(adapter) / "adapter_config.json").is_file():
            raise UserError(f"{adapter} is not a LoRA adapter folder (no adapter_config.json)")
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(model, adapter)
        except (RuntimeError, ValueError, KeyError) as e:
            raise UserError(f"adapter {adapter} does not fit model {source}: {str(e).splitlines()[0]}") from None
        model.eval()
    return model, tokenizer


def generate_answer(model, tokenizer, system_prompt: str, problem: str, cfg: RunConfig, stream: bool = False) -> str:
    """One chat answer with the model's own chat template; greedy or seeded sampling per cfg.eval."""
    import torch
    from transformers import TextStreamer

    enc = tokenizer.apply_chat_template(
        build_chat(system_prompt, problem), add_generation_prompt=True, return_tensors="pt", return_dict=True
    ).to(model.device)
    ev = cfg.eval
    kwargs: dict = {"max_new_tokens": ev.max_new_tokens, "pad_token_id": tokenizer.pad_token_id or tokenizer.eos_token_id}
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
    answer = generate_answer(model, tokenizer, cfg.data.system_prompt or SYSTEM_PROMPT, prompt, cfg, stream=True)
    code, found = extract_code(answer)
    print("\n--- extracted code ---")
    print(code if found else "(no Python code block found in the answer)")
    return answer, code
