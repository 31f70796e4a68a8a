"""`codelora export`: one checkpoint of a run as a PEFT adapter folder or as a merged, verified transformers model.

Adapter export: adapter_config.json + adapter_model.safetensors (loadable by `PeftModel.from_pretrained` and vLLM),
the tokenizer with its chat template, the model card and the loss plot; the copy is loaded back onto the base
model and generates before the folder is published.

Merged export: the base model is loaded in fp32, the adapter applied and merged (`merge_and_unload`), the result
cast to the requested dtype and saved as safetensors shards with the tokenizer, chat template and generation
config, loadable by `AutoModelForCausalLM` alone. The merge is then verified against base + adapter (fp32, unmerged)
on a few chat-formatted prompts (the run's system prompt):

* logits: max |merged - reference| over every position of prompt + continuation must stay within
  `rtol * max(1, max |reference logit|)`, rtol = 1e-4 (fp32), 3e-2 (fp16), 1e-1 (bf16). Checked twice: the fp32
  merge in memory against the fp32 tolerance (this is what catches a wrong merge, however small the adapter), and
  the folder reloaded in the export dtype against that dtype's tolerance (this catches casting and saving mistakes:
  lost tied weights, missing shards). bf16 keeps 8 bits of mantissa (rounding 2^-9 per weight), fp16 11: the
  bounds leave room for that rounding adding up over the layers. Measured on SmolLM2-135M (30 layers, max |logit|
  43): fp32 8.6e-5 (tolerance 4.3e-3), bf16 1.18 (tolerance 4.3); a lost lm_head or layer is far above both.
* greedy continuation: the reference greedily generates VERIFY_TOKENS tokens per prompt; the merged model, fed the
  same sequence, must pick the same token at every step (teacher forcing, so one step cannot cascade). A step may
  differ only where the reference's own top two logits are within `TIE[dtype] * max(1, max |logit|)`: a tie that
  rounding can flip (1e-5 fp32, 4e-3 fp16, 1.5e-2 bf16). Ties are counted and printed.

Everything is written to `DIR.tmp-xxxx` and renamed to DIR at the end; a failure removes the temporary folder.
Every file and folder of the export gets the mode the umask gives (0644 / 0755 under umask 022), the weights too.
"""

from __future__ import annotations

import gc
import json
import os
import secrets
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from codelora.errors import UserError
from codelora.files import follow_umask, is_disk_full, read_json, require_writable
from codelora.model.sources import base_quantization_note
from codelora.publish.model_card import EMBEDDED_HUB_IDS, hub_base_id
from codelora.run import layout as runs
from codelora.run import results as run_results
from codelora.run import selection as run_selection
from codelora.run.layout import require_run

__all__ = [
    "ExportError",
    "TOLERANCE",
    "VERIFY_PROMPTS",
    "VERIFY_TOKENS",
    "export",
    "prompt_example",
    "resolve_checkpoint",
    "verify_prompt_ids",
]

# Relative logit tolerance per export dtype (see the module docstring).
TOLERANCE = {"fp32": 1e-4, "fp16": 3e-2, "bf16": 1e-1}
# A greedy step may differ only where the reference's own top two logits are this close (relative, as above).
TIE = {"fp32": 1e-5, "fp16": 4e-3, "bf16": 1.5e-2}
VERIFY_TOKENS = 16
VERIFY_PROMPTS = [
    "Read two integers a and b from standard input and print their sum.",
    "Given a line of space-separated integers, print the largest one.",
    "Read a string s and print it reversed.",
]
# Files of a PEFT adapter folder; checkpoints also hold trainer state that an export must not carry.
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


class ExportError(UserError):
    """The merged model does not reproduce base + adapter (or the export cannot be written)."""


def _log(msg: str) -> None:
    print(f"export: {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------- run and checkpoint


def resolve_checkpoint(run_dir: Path, which: str = "best", if_base: str = "error") -> dict[str, Any]:
    """{"name", "path", "step", "meta", "selection"} of `best` (selection.json), `final`, `<step>` or
    `checkpoint-<step>`.

    When selection.json picks the base model there is no adapter to export: an error, or with if_base="final"
    the final adapter (so a demo pipeline still ends with an export; the card says the base model won). A
    selection whose chosen model was retrained since is stale: one UserError asking for `codelora compare`.
    """
    run_dir = Path(run_dir)
    which = str(which).strip()
    selection = None
    if which == "best":
        sel_path = runs.selection_path(run_dir)
        selection = run_selection.read_selection(run_dir)
        if selection is None:
            raise UserError(
                f"{sel_path} not found: run `codelora compare --run {run_dir}` first, "
                "or pass --checkpoint final or a step"
            )
        best = selection.get("best")
        if not isinstance(best, str) or not best:
            raise UserError(f"{sel_path}: no 'best' model name")
        if best == "base" and if_base == "final":
            _log(f"{sel_path} selects the base model; exporting final instead (--if-base final)")
            best = "final"
        elif best == "base":
            raise UserError(
                f"{sel_path} selects the base model (no checkpoint beat it), so there is no adapter to export; "
                "pass --checkpoint final or a step to export one anyway"
            )
        which = best
    if which == "base":
        raise UserError("--checkpoint base: the base model has no adapter to export; give final or a step")
    model = runs.find_model(run_dir, which)
    for f in ADAPTER_FILES:
        if not (model.path / f).is_file():
            raise UserError(f"{model.path} has no {f}; it is not a LoRA adapter checkpoint")
    return {
        "name": model.name,
        "path": model.path,
        "step": model.step,
        "meta": model.meta,
        "selection": selection,
        "weights_sha256": model.weights_sha256(),
        "adapter_sha256": model.adapter_sha256(),
        "method": model.method,  # "sft", or "rl" for rl-checkpoint-N / rl-final (step: its RL step)
    }


def _identity(name: str | None) -> str:
    """A comparable name for a model source or adapter base path (embedded caches may live under any root)."""
    if not name:
        return ""
    name = str(name)
    if name.startswith(("embedded:", "tiny-random:")):
        return name
    p = Path(name).expanduser()
    if len(p.parts) >= 2 and p.parts[-2] == "embedded" and p.name in EMBEDDED_HUB_IDS:
        return f"embedded:{p.name}"
    if p.exists():
        return str(p.resolve())
    return name


def check_base_model(adapter_dir: Path, source: str, meta: dict[str, Any], run_dir: Path) -> None:
    """The adapter must have been trained on the run's base model: one line naming both otherwise."""
    from codelora.model.sources import parse_source

    cfg_path = adapter_dir / "adapter_config.json"
    adapter_base = read_json(cfg_path).get("base_model_name_or_path")
    want = _identity(source)
    kind = parse_source(source).kind
    if kind == "tiny-random":
        # Built in memory: peft records no usable name; any recorded name must still be this one.
        ok = not adapter_base or _identity(adapter_base) == want
    else:
        ok = _identity(adapter_base) == want
    trained_on = ((meta.get("config") or {}).get("model") or {}).get("source")
    if ok and trained_on and _identity(trained_on) != want:
        ok, adapter_base, cfg_path = False, trained_on, runs.meta_file(adapter_dir)
    if not ok:
        raise UserError(
            f"{cfg_path} was trained on base model '{adapter_base}', but {run_dir}/config.yaml says "
            f"model.source '{source}'; export it from its own run folder"
        )


# ----------------------------------------------------------------------------------------------- output folder


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder path")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UserError(f"--out {out} exists and is not empty; pass --force to replace it, or choose another folder")


def _publish(tmp: Path, out: Path, force: bool) -> None:
    """Rename tmp to out; an existing out (empty, or any with --force) is renamed away first, then deleted."""
    _check_out(out, force)
    old = None
    if out.exists():
        old = out.with_name(f"{out.name}.old-{secrets.token_hex(4)}")
        os.rename(out, old)
    try:
        os.rename(tmp, out)
    except OSError:
        if old is not None:
            os.rename(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


# ----------------------------------------------------------------------------------------------- models


def _load_base(cfg, dtype: str, device: str):
    """The run's base model and tokenizer exactly as training set them up (codelora.model.chat's pad token rule; the
    vocabulary and embeddings are never changed)."""
    from codelora.model.chat import set_pad_token
    from codelora.model.sources import load_model

    model, tokenizer = load_model(
        cfg.model.source,
        dtype=dtype,
        device=device,
        attn_implementation=cfg.model.attn_implementation,
        revision=cfg.model.revision,
    )
    set_pad_token(tokenizer)
    return model, tokenizer


def _apply_adapter(model, adapter_dir: Path, source: str):
    from peft import PeftModel

    try:
        model = PeftModel.from_pretrained(model, str(adapter_dir))
    except (RuntimeError, ValueError, KeyError) as e:
        raise UserError(f"adapter {adapter_dir} does not fit model {source}: {str(e).splitlines()[0]}") from None
    model.eval()
    return model


def _merge(peft_model):
    """Fold the LoRA weights into the base weights (fp32). A seam for tests that tamper with the merge."""
    return peft_model.merge_and_unload()


def _save_model(model, folder: Path, max_shard_size: str) -> None:
    model.save_pretrained(str(folder), max_shard_size=max_shard_size)


def verify_prompt_ids(tokenizer, system_prompt: str) -> list[list[int]]:
    """The verify prompts as every stage builds them (codelora.model.chat), with the run's system prompt."""
    from codelora.model.chat import prompt_ids

    return [prompt_ids(tokenizer, system_prompt, text) for text in VERIFY_PROMPTS]


def _reference(model, tokenizer, prompts: list[list[int]], n_tokens: int) -> list[dict[str, Any]]:
    """Greedy continuations of base + adapter and its fp32 logits over prompt + continuation (kept on the CPU)."""
    import torch

    refs = []
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with torch.no_grad():
        for ids in prompts:
            x = torch.tensor([ids], device=model.device)
            out = model.generate(
                input_ids=x,
                attention_mask=torch.ones_like(x),
                max_new_tokens=n_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                pad_token_id=pad,
            )
            seq = out[0].tolist()
            logits = model(input_ids=torch.tensor([seq], device=model.device)).logits[0].float().cpu()
            refs.append({"seq": seq, "prompt_len": len(ids), "logits": logits})
    return refs


def _compare(model, refs: list[dict[str, Any]], dtype: str, label: str) -> dict[str, Any]:
    """Max logit difference and teacher-forced greedy agreement of `model` against the references."""
    import torch

    rtol, tie_rtol = TOLERANCE[dtype], TIE[dtype]
    worst, scale, tokens = 0.0, 1.0, 0
    problems, ties = [], []
    with torch.no_grad():
        for i, ref in enumerate(refs):
            seq, p = ref["seq"], ref["prompt_len"]
            got = model(input_ids=torch.tensor([seq], device=model.device)).logits[0].float().cpu()
            want = ref["logits"]
            if got.shape != want.shape:
                raise ExportError(f"{label}: logits shape {tuple(got.shape)} != reference {tuple(want.shape)}")
            worst = max(worst, float((got - want).abs().max()))
            scale = max(scale, float(want.abs().max()))
            tie = tie_rtol * max(1.0, float(want.abs().max()))
            # logits at position j predict token j + 1: the continuation is seq[p:], predicted from p - 1 on
            for j in range(p - 1, len(seq) - 1):
                tokens += 1
                expected, chosen = seq[j + 1], int(got[j].argmax())
                if chosen == expected:
                    continue
                gap = float(want[j, expected] - want[j, chosen])
                where = f"prompt {i + 1} token {j - p + 2}: {chosen} instead of {expected}, reference gap {gap:.3g}"
                (ties if gap <= tie else problems).append(where)
    return {
        "max_logit_diff": worst,
        "tolerance": rtol * scale,
        "rtol": rtol,
        "tie_threshold": tie_rtol * scale,
        "greedy_tokens": tokens,
        "ties": ties,
        "divergent": problems,
    }


def _generation_config(model, tokenizer, cfg) -> None:
    """Make config.json and generation_config.json agree with the tokenizer: the same pad token, and generation
    stops at the end of a turn (codelora.model.chat's stop tokens: end-of-turn and eos); decode as the run's
    evaluation did (greedy, or its temperature/top_p)."""
    from codelora.model.chat import stop_token_ids

    stops = stop_token_ids(tokenizer)
    model.config.pad_token_id = tokenizer.pad_token_id
    gc_ = model.generation_config
    gc_.eos_token_id = stops[0] if len(stops) == 1 else stops
    gc_.pad_token_id = tokenizer.pad_token_id
    if tokenizer.bos_token_id is not None:
        gc_.bos_token_id = tokenizer.bos_token_id
    ev = cfg.eval
    gc_.max_new_tokens = ev.max_new_tokens
    if ev.greedy or ev.temperature == 0:
        gc_.do_sample, gc_.temperature, gc_.top_p, gc_.top_k = False, None, None, None
    else:
        gc_.do_sample, gc_.temperature, gc_.top_p, gc_.top_k = True, ev.temperature, ev.top_p, None


def _save_tokenizer(tokenizer, folder: Path) -> None:
    """save_pretrained, plus the chat template inside tokenizer_config.json too: recent transformers write it
    only to chat_template.jinja, which older transformers and some serving stacks (TGI) do not read."""
    from codelora.files import atomic_write_text

    tokenizer.save_pretrained(str(folder))
    path = folder / "tokenizer_config.json"
    doc = read_json(path)
    if tokenizer.chat_template and doc.get("chat_template") != tokenizer.chat_template:
        doc["chat_template"] = tokenizer.chat_template
        atomic_write_text(path, json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


def _free() -> None:
    """Give memory back after the caller dropped its references (a merged 1.5B model is 6 GB in fp32)."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------------- export


def export(
    run_dir: str | Path,
    out: str | Path,
    checkpoint: str = "best",
    merge: bool = False,
    dtype: str | None = None,
    force: bool = False,
    max_shard_size: str = "2GB",
    if_base: str = "error",
    verify_tokens: int = VERIFY_TOKENS,
) -> dict[str, Any]:
    """Export one checkpoint of a run into `out`; return export_meta (also written as out/export_meta.json)."""
    run_dir = require_run(run_dir)
    out = Path(out).expanduser()
    if dtype is not None and dtype not in TOLERANCE:
        raise UserError(f"--dtype {dtype!r} is not valid; choices: {', '.join(TOLERANCE)}")
    if dtype is not None and not merge:
        raise UserError("--dtype applies to a merged export; add --merge (an adapter export keeps its weights)")
    run_abs, out_abs = run_dir.resolve(), out.resolve()
    kept = [run_abs / d for d in ("checkpoints", "final", "data", "logs", "plots", "eval")]
    if run_abs.is_relative_to(out_abs) or any(out_abs.is_relative_to(k) for k in kept):
        raise UserError(f"--out {out} would overwrite the run folder {run_dir} or its contents; choose another")
    cfg = runs.load_run_config(run_dir)
    if if_base not in ("error", "final"):
        raise UserError(f"--if-base {if_base!r} is not valid; choices: error, final")
    ck = resolve_checkpoint(run_dir, checkpoint, if_base)
    check_base_model(ck["path"], cfg.model.source, ck["meta"], run_dir)
    if merge and dtype is None:
        dtype = cfg.model.dtype if cfg.model.dtype != "auto" else "bf16"
    inputs = _inputs_sha256(
        run_dir, ck, {"merge": merge, "dtype": dtype, "shard": max_shard_size, "verify": verify_tokens}
    )
    prev = _previous_export(out)
    if prev is not None and prev.get("inputs_sha256") == inputs:
        # the same weights, options, selection and results: the export there is this export (a rerun changes nothing)
        _log(f"{out} is up to date ({ck['name']}, same weights, options and results); nothing to do")
        return prev
    _check_out(out, force)
    require_writable(out.parent, "folder of --out")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.tmp-{secrets.token_hex(4)}")
    tmp.mkdir()
    start = time.time()
    try:
        if merge:
            meta = _export_merged(cfg, ck, tmp, dtype, max_shard_size, verify_tokens)
        else:
            meta = _export_adapter(cfg, ck, tmp, verify_tokens)
        meta.update(
            {
                "run": str(run_dir.resolve()),
                "checkpoint": ck["name"],
                "step": ck["step"],
                "weights_sha256": ck["weights_sha256"],
                "adapter_sha256": ck["adapter_sha256"],  # weights + canonical adapter_config.json
                "inputs_sha256": inputs,
                "selected_by": _selected_by(checkpoint, ck),
                "source": cfg.model.source,
                "base_model": hub_base_id(cfg.model.source),
                "base_quantization": base_quantization_note(cfg.model.quantization),
                "git_commit": ck["meta"].get("git_commit"),
                "export_git_commit": runs.git_commit(),
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )
        _write_card_and_extras(run_dir, cfg, ck, tmp, meta)
        meta["seconds"] = round(time.time() - start, 1)
        (tmp / "export_meta.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        # safetensors writes weights 0600 and copies keep their source's mode: every file follows the umask
        follow_umask(tmp)
        _publish(tmp, out, force)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, Exception) and not isinstance(e, UserError) and is_disk_full(e):
            raise ExportError(
                f"disk full while writing the export next to {out} ({_space_note(out)}); "
                "nothing was exported and the temporary folder was removed"
            ) from None
        raise
    _log(f"wrote {out} in {meta['seconds']} s")
    return meta


def _inputs_sha256(run_dir: Path, ck: dict[str, Any], options: dict[str, Any]) -> str:
    """Identity of everything an export is made from: the adapter (weights + adapter_config.json), the export
    options, and the run files the model card quotes (config, data report, metrics, selection, evaluation summaries)."""
    from codelora import __version__
    from codelora.files import sha256_file

    rels = [str(p.relative_to(run_dir)) for p in runs.RunFolder(run_dir).card_inputs()]
    files = {r: sha256_file(run_dir / r) for r in rels if (run_dir / r).is_file()}
    doc = {"checkpoint": ck["name"], "adapter": ck["adapter_sha256"], "options": options, "files": files}
    return run_results.canonical_sha256({**doc, "codelora": __version__})


def _previous_export(out: Path) -> dict[str, Any] | None:
    try:
        prev = read_json(out / "export_meta.json") if (out / "export_meta.json").is_file() else None
    except UserError:
        return None
    return prev if isinstance(prev, dict) else None


def _selected_by(checkpoint: str, ck: dict[str, Any]) -> str:
    if checkpoint != "best":
        return f"--checkpoint {checkpoint}"
    if (ck["selection"] or {}).get("best") == "base":
        return "selection.json picked the base model; final exported instead (--if-base final)"
    return runs.SELECTION_FILE


def _space_note(out: Path) -> str:
    try:
        return f"{_human(shutil.disk_usage(out.parent).free)} free there now"
    except OSError:
        return "free space unknown"


def _export_adapter(cfg, ck: dict[str, Any], tmp: Path, verify_tokens: int) -> dict[str, Any]:
    src = ck["path"]
    for f in ADAPTER_FILES:
        shutil.copy2(src / f, tmp / f)
    # A local cache path means nothing on another machine: embedded bases are named by their Hub model.
    acfg_path = tmp / "adapter_config.json"
    acfg = read_json(acfg_path)
    recorded = acfg.get("base_model_name_or_path")
    acfg["base_model_name_or_path"] = (
        hub_base_id(cfg.model.source)
        if _identity(recorded) == _identity(cfg.model.source) and cfg.model.source.startswith("embedded:")
        else recorded
    )
    acfg_path.write_text(json.dumps(acfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    _log(f"loading {cfg.model.source} + {tmp.name} to check the adapter loads and generates")
    base, tokenizer = _load_base(cfg, cfg.model.dtype, cfg.model.device)
    _save_tokenizer(tokenizer, tmp)
    model = _apply_adapter(base, tmp, cfg.model.source)
    prompts = verify_prompt_ids(tokenizer, cfg.data.system_prompt)[:1]
    refs = _reference(model, tokenizer, prompts, verify_tokens)
    generated = len(refs[0]["seq"]) - refs[0]["prompt_len"]
    lora = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    del model, base
    _free()
    if generated < 1 or lora == 0:
        raise ExportError(f"the exported adapter loaded with {lora} LoRA weights and generated {generated} tokens")
    return {
        "merged": False,
        "dtype": None,
        "adapter_parameters": lora,
        "verify": {"loaded_with": "PeftModel.from_pretrained", "generated_tokens": generated},
        "max_logit_diff": None,
    }


def _export_merged(cfg, ck: dict[str, Any], tmp: Path, dtype: str, max_shard_size: str, n_tokens: int):
    from transformers import AutoModelForCausalLM

    from codelora.model.sources import pick_device, pick_dtype

    device = pick_device(cfg.model.device)
    t0 = time.time()
    evaluated = None
    if cfg.model.quantization != "none":
        # QLoRA: evaluate ran the adapter on the quantised base; the merge goes into the unquantised one
        _log(f"loading {cfg.model.source} quantised ({cfg.model.quantization}) + {ck['path']}, as evaluated")
        from codelora.model.chat import load_with_adapter

        qmodel, qtok = load_with_adapter(cfg.model.source, str(ck["path"]), cfg)
        evaluated = _reference(qmodel, qtok, verify_prompt_ids(qtok, cfg.data.system_prompt), n_tokens)
        del qmodel
        _free()
    _log(f"loading {cfg.model.source} in fp32 on {device} and applying {ck['path']}")
    base, tokenizer = _load_base(cfg, "fp32", device)
    model = _apply_adapter(base, ck["path"], cfg.model.source)
    prompts = verify_prompt_ids(tokenizer, cfg.data.system_prompt)
    refs = _reference(model, tokenizer, prompts, n_tokens)
    t_ref = time.time()

    merged = _merge(model)
    merged.eval()
    in_memory = _compare(merged, refs, "fp32", "fp32 merge")
    _fail_if_diverged(in_memory, "the fp32 merge (in memory)", "fp32")
    vs_evaluated = None
    if evaluated is not None:
        vs = _compare(merged, evaluated, "fp32", "fp32 merge vs the quantised base + adapter")
        vs_evaluated = {
            "quantization": cfg.model.quantization,
            "max_logit_diff": vs["max_logit_diff"],
            "greedy_tokens": vs["greedy_tokens"],
            "greedy_same": vs["greedy_tokens"] - len(vs["divergent"]) - len(vs["ties"]),
        }

    _generation_config(merged, tokenizer, cfg)
    merged.to(dtype=pick_dtype(dtype, device))
    n_params = sum(p.numel() for p in merged.parameters())
    bytes_per = {"fp32": 4, "fp16": 2, "bf16": 2}[dtype]
    _log(f"saving merged model ({n_params / 1e6:.1f} M parameters, {dtype}, about {_human(n_params * bytes_per)})")
    _save_model(merged, tmp, max_shard_size)
    _save_tokenizer(tokenizer, tmp)
    del merged, model, base
    _free()
    t_save = time.time()

    _log(f"reloading {tmp.name} with AutoModelForCausalLM and comparing with base + adapter")
    reloaded = AutoModelForCausalLM.from_pretrained(str(tmp), dtype=pick_dtype(dtype, device))
    reloaded.to(device)
    reloaded.eval()
    saved = _compare(reloaded, refs, dtype, f"merged {dtype}")
    del reloaded
    _free()
    _fail_if_diverged(saved, f"the saved {dtype} merge", dtype)
    line = (
        f"merge check: max |logit diff| {saved['max_logit_diff']:.3g} (tolerance {saved['tolerance']:.3g}, {dtype}; "
        f"fp32 merge in memory {in_memory['max_logit_diff']:.3g}) over {len(refs)} prompts; "
        + (
            f"greedy continuation identical ({saved['greedy_tokens']} tokens)"
            if not saved["ties"]
            else f"greedy continuation identical except {len(saved['ties'])} of {saved['greedy_tokens']} tokens at "
            f"near-ties of the reference (top-two gap <= {saved['tie_threshold']:.3g}: {saved['ties'][0]})"
        )
    )
    if vs_evaluated is not None:
        line += (
            f"; against base + adapter as evaluated (base quantised {vs_evaluated['quantization']}): max |logit diff| "
            f"{vs_evaluated['max_logit_diff']:.3g}, greedy token the same at {vs_evaluated['greedy_same']} of "
            f"{vs_evaluated['greedy_tokens']} steps (the quantisation's rounding, measured, not a failure)"
        )
    print(line, flush=True)
    return {
        "merged": True,
        "vs_evaluated": vs_evaluated,
        "dtype": dtype,
        "parameters": n_params,
        "max_logit_diff": saved["max_logit_diff"],
        "verify": {
            "prompts": len(refs),
            "greedy_tokens": saved["greedy_tokens"],
            "tolerance": saved["tolerance"],
            "rtol": saved["rtol"],
            "max_logit_diff_fp32_in_memory": in_memory["max_logit_diff"],
            "tolerance_fp32_in_memory": in_memory["tolerance"],
            "tie_threshold": saved["tie_threshold"],
            "ties": saved["ties"],
            "line": line,
        },
        "timings": {
            "load_and_reference_s": round(t_ref - t0, 1),
            "merge_and_save_s": round(t_save - t_ref, 1),
            "reload_and_compare_s": round(time.time() - t_save, 1),
        },
    }


def _fail_if_diverged(result: dict[str, Any], what: str, dtype: str) -> None:
    over = result["max_logit_diff"] > result["tolerance"]
    if over or result["divergent"]:
        why = []
        if over:
            why.append(
                f"max |logit diff| {result['max_logit_diff']:.3g} exceeds the {dtype} tolerance {result['tolerance']:.3g}"
            )
        if result["divergent"]:
            why.append(f"greedy continuation differs ({'; '.join(result['divergent'][:3])})")
        raise ExportError(
            f"merge check failed: {what} does not reproduce base + adapter: {', '.join(why)}; nothing exported"
        )


def _write_card_and_extras(run_dir: Path, cfg, ck: dict[str, Any], tmp: Path, meta: dict[str, Any]) -> None:
    from codelora.publish.model_card import build_card

    plots = []
    for plot in (runs.RunFolder(run_dir).plot("loss"), runs.RunFolder(run_dir).plot("lr")):
        if plot.is_file():
            shutil.copy2(plot, tmp / plot.name)
            plots.append(plot.name)
    meta["plots"] = plots
    (tmp / "README.md").write_text(build_card(run_dir, cfg, ck, meta, prompt_example(tmp, cfg)), encoding="utf-8")


def prompt_example(folder: Path, cfg) -> str:
    """The chat-formatted training prompt (codelora.model.chat), rendered by the tokenizer saved in the export (proves
    it has a template)."""
    from transformers import AutoTokenizer

    from codelora.model.chat import render_prompt

    tok = AutoTokenizer.from_pretrained(str(folder))
    if not getattr(tok, "chat_template", None):
        raise ExportError(f"the tokenizer saved in {folder} has no chat template; the export would not be usable")
    return render_prompt(tok, cfg.data.system_prompt, "PROBLEM")
