"""The chat: the one place that decides what a model of a run is shown and how its answer ends.

Every stage builds its prompt here: `prepare` (and so `train`), `generate`, `evaluate`, the export's checks and
the model card. What they share:

* **messages**: `[system, user]` (+ `assistant` for a training example). `data.system_prompt` is sent exactly as
  configured, always as an explicit system turn. An empty prompt (`data.system_prompt: ""`) is an explicit
  *empty* system turn, so no template default sneaks in (SmolLM2's template otherwise inserts "You are a helpful
  AI assistant named SmolLM…", Qwen2.5's "You are Qwen, created by Alibaba Cloud…"). A template that refuses a
  system turn is refused with one line.
* **prompt ids**: the tokenizer's own chat template with the generation prompt (`apply_chat_template`).
* **completion boundary**: the completion is what the full conversation adds after the prompt, cut right after
  its end-of-turn token (a trailing newline the template adds is not trained on).
* **stop tokens**: the end-of-turn token and eos.
* **pad token rule** (no vocabulary surgery): see `set_pad_token`.
* **adapter loading**: `load_with_adapter` (base + PEFT adapter, one line when it does not fit) and
  `inference_model` (merge the adapter for speed only where the merge provably equals base + adapter).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from codelora.errors import UserError

__all__ = [
    "END_OF_TURN_TOKENS",
    "encode_prompt_completion",
    "end_of_turn_id",
    "inference_model",
    "load_with_adapter",
    "messages",
    "prompt_ids",
    "render_prompt",
    "set_pad_token",
    "stop_token_ids",
    "tied_embedding_modules",
]

# End-of-turn tokens of the chat formats codelora knows, first found wins: ChatML (Qwen, SmolLM), Llama 3,
# Phi-3, Gemma. A tokenizer with none of them ends a turn with its eos token.
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>")
# Relative logit tolerance of the in-memory merge check per dtype (as codelora.publish.export's merge check).
MERGE_RTOL = {"float32": 1e-4, "float16": 3e-2, "bfloat16": 1e-1}
_PROBE = "Read two integers a and b from standard input and print their sum."


# ---------------------------------------------------------------- messages and token ids


def messages(system_prompt: str, problem: str, answer: str | None = None) -> list[dict[str, str]]:
    """[system, user(, assistant)]: the system turn is always there, "" included (see the module docstring)."""
    if not isinstance(system_prompt, str):
        raise TypeError(f"system_prompt must be a string, got {type(system_prompt).__name__}")  # a bug, not input
    msgs = [{"role": "system", "content": system_prompt}, {"role": "user", "content": problem}]
    if answer is not None:
        msgs.append({"role": "assistant", "content": answer})
    return msgs


def _ids(out: Any) -> list[int]:
    """apply_chat_template(tokenize=True) returns a list, or (transformers 5) a BatchEncoding/dict."""
    if hasattr(out, "keys") and "input_ids" in out:
        out = out["input_ids"]
    if hasattr(out, "tolist"):
        out = out.tolist()
    out = list(out)
    if out and isinstance(out[0], (list, tuple)):
        if len(out) != 1:
            raise ValueError("expected one conversation")
        out = list(out[0])
    return [int(i) for i in out]


def _apply(tokenizer: Any, msgs: list[dict[str, str]], generation_prompt: bool, tokenize: bool) -> Any:
    if not getattr(tokenizer, "chat_template", None):
        raise UserError("the tokenizer has no chat template; use an instruct/chat model")
    try:
        return tokenizer.apply_chat_template(msgs, tokenize=tokenize, add_generation_prompt=generation_prompt)
    except Exception as e:  # jinja2's TemplateError (raise_exception in the template): no common base to name
        if type(e).__name__ != "TemplateError":
            raise
        raise UserError(
            f"the chat template refuses this conversation ({e}); codelora always sends data.system_prompt as a "
            "system turn, which this model's template does not accept"
        ) from None


def render_prompt(tokenizer: Any, system_prompt: str, problem: str) -> str:
    """The prompt as text, ending with the generation prompt (what the model card shows)."""
    return _apply(tokenizer, messages(system_prompt, problem), True, tokenize=False)


def prompt_ids(tokenizer: Any, system_prompt: str, problem: str) -> list[int]:
    """Token ids of the prompt (system + user + generation prompt), as every stage feeds the model."""
    return _ids(_apply(tokenizer, messages(system_prompt, problem), True, tokenize=True))


def encode_prompt_completion(
    tokenizer: Any, system_prompt: str, problem: str, completion: str
) -> tuple[list[int], list[int]]:
    """(prompt ids, completion ids ending with the end-of-turn token) of one training example.

    The prompt must be a prefix of the full conversation (else the prompt cannot be masked: UserError)."""
    prompt = prompt_ids(tokenizer, system_prompt, problem)
    full = _ids(_apply(tokenizer, messages(system_prompt, problem, completion), False, tokenize=True))
    if full[: len(prompt)] != prompt:
        raise UserError(
            "the chat template does not render the prompt as a prefix of the full conversation; "
            "cannot mask the prompt reliably with this tokenizer"
        )
    comp = full[len(prompt) :]
    eot = end_of_turn_id(tokenizer)
    if eot in comp:
        last = len(comp) - 1 - comp[::-1].index(eot)
        comp = comp[: last + 1]
    else:
        comp = comp + [eot]
    return prompt, comp


# ---------------------------------------------------------------- special tokens


def _token_id(tokenizer: Any, token: str) -> int | None:
    """Id of `token` if it is in the vocabulary, else None (get_vocab() is slow on large vocabularies)."""
    tid = tokenizer.convert_tokens_to_ids(token)
    if tid is None or isinstance(tid, list) or tokenizer.convert_ids_to_tokens(tid) != token:
        return None
    return int(tid)


def end_of_turn_id(tokenizer: Any) -> int:
    """Id of the first of END_OF_TURN_TOKENS in the vocabulary, else the eos token's."""
    for token in END_OF_TURN_TOKENS:
        tid = _token_id(tokenizer, token)
        if tid is not None:
            return tid
    if tokenizer.eos_token_id is None:
        raise UserError("the tokenizer has no end-of-turn token and no eos token; cannot mark the end of an answer")
    return int(tokenizer.eos_token_id)


def stop_token_ids(tokenizer: Any) -> list[int]:
    """End-of-turn and eos (when different): generation of one answer stops at either; the export's
    generation_config.json lists the same ids."""
    ids = [end_of_turn_id(tokenizer)]
    if tokenizer.eos_token_id is not None and int(tokenizer.eos_token_id) not in ids:
        ids.append(int(tokenizer.eos_token_id))
    return ids


def set_pad_token(tokenizer: Any) -> str | None:
    """Give the tokenizer a pad token without touching its vocabulary; return a note of what changed, or None.

    Rule: keep a pad token that is neither end-of-turn nor eos. Otherwise reuse an existing special token that
    is none of end-of-turn, eos, bos or a token the chat template writes (preferring `<|endoftext|>`, as Qwen2.5
    and SmolLM2 ship it, then one named like a pad token, e.g. Llama 3.1's `<|finetune_right_pad_id|>`, then a
    reserved one). If there is none,
    pad with the end-of-turn token: padding is masked by the attention mask and -100 labels, so the pad id is
    never attended to nor learned. Tokens are never added and embeddings never resized, so every adapter is
    LoRA-only and loads on the unmodified base model.
    """
    eot = end_of_turn_id(tokenizer)
    taken = {eot, tokenizer.eos_token_id, tokenizer.bos_token_id} - {None}
    pad = tokenizer.pad_token_id
    if pad is not None and pad not in taken:
        return None
    old = tokenizer.pad_token
    in_template = str(getattr(tokenizer, "chat_template", "") or "")
    candidates = []
    for tid, added in sorted(getattr(tokenizer, "added_tokens_decoder", {}).items()):
        text = str(getattr(added, "content", added))
        if tid in taken or text in in_template or not getattr(added, "special", True):
            continue
        rank = 0 if text == "<|endoftext|>" else 1 if "pad" in text.lower() else 2 if "reserved" in text else 3
        candidates.append((rank, tid, text))
    if candidates:
        _, _, text = min(candidates)
        tokenizer.pad_token = text
        return f"pad token set to the existing special token {text} (was {old})"
    tokenizer.pad_token = tokenizer.convert_ids_to_tokens(eot)
    if old == tokenizer.pad_token:
        return None
    return f"pad token set to the end-of-turn token {tokenizer.pad_token} (was {old}); padding is masked"


# ---------------------------------------------------------------- adapters


def tied_embedding_modules(model: Any) -> list[str]:
    """Names (last component) of the input and output embedding modules when the model ties them, else []."""
    config = getattr(model, "config", None)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    if hasattr(config, "get_text_config"):
        tied = tied or bool(getattr(config.get_text_config(), "tie_word_embeddings", False))
    if not tied:
        return []
    names = []
    wanted = {id(model.get_input_embeddings()): None, id(model.get_output_embeddings()): None}
    for name, module in model.named_modules():
        if id(module) in wanted and name:
            names.append(name.rsplit(".", 1)[-1])
    return sorted(set(names))


def check_adapter_folder(adapter: str) -> None:
    """UserError (one line) unless `adapter` is a PEFT adapter folder (adapter_config.json and its weights); a
    checkpoint that does not exist names the ones beside it."""
    path = Path(adapter)
    if not path.exists():
        near = ""
        if path.parent.is_dir():
            names = sorted(p.name for p in path.parent.iterdir() if (p / "adapter_config.json").is_file())
            near = f"; adapters in {path.parent}: {', '.join(names)}" if names else ""
        raise UserError(f"adapter folder {adapter} does not exist{near}")
    if not (path / "adapter_config.json").is_file():
        raise UserError(f"{adapter} is not a LoRA adapter folder (no adapter_config.json)")
    if not any((path / f).is_file() for f in ("adapter_model.safetensors", "adapter_model.bin")):
        raise UserError(f"{adapter} is not a complete LoRA adapter folder (no adapter_model.safetensors)")


def load_with_adapter(source: str, adapter: str | None, cfg: Any):
    """(model, tokenizer): the base model of `source` per cfg.model, with the PEFT adapter folder applied (eval
    mode), and the pad token rule applied to the tokenizer. An adapter that does not fit: one line naming the
    first mismatching tensor."""
    from codelora.model.sources import load_model

    if adapter:  # before the model loads: a wrong folder costs a second, not a model load
        check_adapter_folder(adapter)
    model, tokenizer = load_model(
        source,
        dtype=cfg.model.dtype,
        device=cfg.model.device,
        attn_implementation=cfg.model.attn_implementation,
        revision=cfg.model.revision,
        quantization=getattr(cfg.model, "quantization", "none"),  # a QLoRA run is evaluated on the base it trained on
    )
    set_pad_token(tokenizer)
    if adapter:
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(model, adapter)
        except (RuntimeError, ValueError, KeyError) as e:
            lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
            # torch lists every mismatching tensor under a generic first line: name the first one
            detail = next((ln for ln in lines if "size mismatch" in ln), lines[0] if lines else type(e).__name__)
            raise UserError(f"adapter {adapter} does not fit model {source}: {detail}") from None
        model.eval()
    return model, tokenizer


def _adapted_module_names(peft_model: Any) -> set[str]:
    names = set()
    for name, module in peft_model.named_modules():
        if hasattr(module, "lora_A") or hasattr(module, "modules_to_save"):
            names.add(name.rsplit(".", 1)[-1])
    return names


def inference_model(model: Any, tokenizer: Any, system_prompt: str, require_merge: bool = False):
    """The model to generate with: a PEFT model merged into its base weights (no per-layer adapter matmuls),
    checked against base + adapter; anything else unchanged.

    The merge is skipped when the adapter touches an embedding the model ties to its output layer (merging
    it would change both: the merged model would not be base + adapter), and checked otherwise: logits of one
    chat prompt, merged vs unmerged, within MERGE_RTOL[dtype] * max(1, max |logit|). A failed check (or a tied
    adapter) keeps the unmerged model with a note on stderr, or raises UserError when `require_merge` (a merged
    copy is what will be served, e.g. vLLM merge mode). Returns (model, note or None).
    """
    import torch

    if not hasattr(model, "merge_and_unload"):
        return model, None
    from codelora.model.sources import is_quantized

    if is_quantized(model):  # merging into quantised weights re-rounds them: not base + adapter
        if require_merge:
            raise UserError("the base is quantised (model.quantization): the adapter cannot be merged into it exactly")
        return model, None
    tied = sorted(set(tied_embedding_modules(model.get_base_model())) & _adapted_module_names(model))
    if tied:
        note = (
            f"the adapter adapts {', '.join(tied)}, which this model ties to its other embedding: merging would "
            "change both, so it is served unmerged"
        )
        if require_merge:
            raise UserError(f"{note.split(': merging')[0]}; it cannot be merged exactly (use vLLM mode lora or hf)")
        return model, note
    ids = torch.tensor([prompt_ids(tokenizer, system_prompt, _PROBE)], device=next(model.parameters()).device)
    with torch.no_grad():
        want = model(input_ids=ids).logits.float()
        model.merge_adapter()
        got = model(input_ids=ids).logits.float()
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    tol = MERGE_RTOL.get(dtype, 1e-1) * max(1.0, float(want.abs().max()))
    diff = float((got - want).abs().max())
    if not diff <= tol:
        model.unmerge_adapter()
        note = f"merging the adapter changes the logits by {diff:.3g} (tolerance {tol:.3g})"
        if require_merge:
            raise UserError(f"{note}; it cannot be merged exactly (use vLLM mode lora or hf)")
        return model, note + "; it is served unmerged"
    merged = model.unload()  # the base weights already hold the merge: drop the adapter layers
    merged.eval()
    return merged, None
