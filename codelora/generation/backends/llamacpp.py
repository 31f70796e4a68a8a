"""The `llamacpp` generation backend of `codelora evaluate`: llama.cpp (`llama_cpp_python`) on a GGUF of the base
model, with each checkpoint's PEFT LoRA adapter converted to a GGUF LoRA adapter.

Why: on a CPU, llama.cpp on the embedded model's Q4_1 GGUF answered about 2x faster than codelora's batched HF
generation (README, Benchmarks: `bench/generation_throughput.py`). Its answers come from *quantised* weights, so
they are not the HF backend's answers: every answer and result records the backend and the base GGUF's sha256
(`fingerprint`), and neither backend ever reuses the other's.

* **base weights** (`base_gguf`): the embedded model's own GGUF, or a GGUF file given as `eval.gguf` (`--gguf`),
  checked against the base model (`check_base_gguf`: architecture, layer/head/width counts, vocabulary size, the
  token ids of a chat prompt by llama.cpp's tokenizer vs the model's, and that prompt's logits by llama.cpp vs
  transformers within a tolerance per quantisation type, `LOGIT_TOLERANCE`). An HF base needs one.
* **adapters** (`convert_adapter`): `adapter_model.safetensors` + `adapter_config.json` to a GGUF LoRA adapter
  (llama.cpp's `convert_lora_to_gguf.py` is the reference): `general.type=adapter`, `adapter.type=lora`,
  `adapter.lora.alpha`; tensors named by gguf's tensor-name map for the architecture plus `.lora_a` / `.lora_b`.
  For the llama architecture, the rows of q_proj's and k_proj's lora_B are permuted as `convert_hf_to_gguf.py`
  permutes the q/k weights (rotary halves interleaved): transformers un-permutes them when it loads a GGUF, so an
  adapter trained on the HF model is in the un-permuted order. Per-module scales PEFT applies that llama.cpp does
  not (rsLoRA, `alpha_pattern`) are folded into lora_B. Adapters llama.cpp cannot apply are refused with one line.
  The converted file is cached under `<cache>/llamacpp-lora/`, named by the sha256 of everything it depends on.
* **generation** (`LlamaCppBackend.generate`): the prompt token ids codelora.model.chat builds (ids, not text), one
  prompt at a time, the same stop tokens and new-token cap; greedy is the argmax of the logits, sampling is the HF
  backend's rule (temperature, then top-p keeping the token that crosses it) with a numpy generator seeded per
  sample (same seeds as the HF backend; a different random stream, so sampled answers differ from HF's).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from codelora.errors import UserError
from codelora.files import read_json, sha256_file
from codelora.generation.backends import Backend, register
from codelora.model.llamacpp_log import quiet_logs

NAME = "llamacpp"
# HF config model_type -> (GGUF general.architecture, q/k rows permuted by convert_hf_to_gguf.py's LlamaModel)
ARCHS: dict[str, tuple[str, bool]] = {
    "llama": ("llama", True),
    "mistral": ("llama", True),
    "qwen2": ("qwen2", False),
}
# Version of the adapter conversion rules: a cached conversion made under another version is not reused.
CONVERT_VERSION = 1
_PEFT_PREFIX = "base_model.model."
_LORA_SUFFIXES = {".lora_A.weight": "lora_a", ".lora_B.weight": "lora_b"}
# adapter_config.json keys whose non-empty value llama.cpp cannot reproduce (what, why)
_REFUSED_CONFIG = {
    "use_dora": "DoRA (weight-decomposed LoRA): llama.cpp applies plain LoRA only",
    "modules_to_save": "modules_to_save (fully trained modules): a GGUF LoRA adapter holds LoRA pairs only",
    "fan_in_fan_out": "fan_in_fan_out (Conv1D layers)",
    "lora_bias": "lora_bias (a trained bias on lora_B)",
    "target_parameters": "target_parameters (LoRA on raw parameters)",
    "trainable_token_indices": "trainable_token_indices (trained token embeddings)",
    "alora_invocation_tokens": "activated LoRA (alora_invocation_tokens)",
    "use_qalora": "QA-LoRA",
}
_GGUF_SHA: dict[tuple[str, int, int], str] = {}
# The base-logits check (check_base_gguf): the probe prompt's logits by llama.cpp on the GGUF against transformers'
# on the base model (fp32, CPU), compared per position as rms(gguf - hf) / std(hf) over the vocabulary; the mean
# over the positions must stay within the tolerance of the GGUF's file type (general.file_type: the bits of most of
# its weights). Measured on the embedded SmolLM2-135M (bench/base_gguf_check.py, bench/results/base_gguf_check.json;
# its transformers weights are the Q4_1 GGUF's, dequantised): its own Q4_1 GGUF 0.067 (llama.cpp's arithmetic: it
# rounds activations to 8 bits in quantised products), those weights re-quantised to F16 0.003, Q8_0 0.073, Q5_0
# 0.42, Q4_0 0.78; the Q4_1 GGUF with its weight rows shuffled (same metadata: what the other checks accept) 4.2.
# Each bound sits about 2x above what its type measured (F16's leaves room for bf16 rounding), 4-bit's 2.8x below
# re-drawn; the types not measured (Q6_K, Q5_1, K-quants, IQ4) take the bound of their bit width.
LOGIT_TOLERANCE = {
    "F32": 0.05,
    "F16": 0.05,
    "BF16": 0.05,
    "Q8_0": 0.25,
    "Q6_K": 0.6,
    "Q5_0": 0.8,
    "Q5_1": 0.8,
    "Q5_K": 0.8,
    "Q4_0": 1.5,
    "Q4_1": 1.5,
    "Q4_K": 1.5,
    "IQ4": 1.5,
}
LOGIT_TOLERANCE_OTHER = 2.5  # 1-3 bit types and anything newer: unmeasured; still below a re-drawn GGUF's 4.2
BASE_CHECK_VERSION = 1
# The user message of the probe chat prompt: digits, a date and code, where tokenizers and weights differ first.
PROBE_MESSAGE = "Print 12345 + 0.5, then 2024-08-01.\n\n  def f(a, b):"


def require_llama_cpp():
    """The `llama_cpp` module; UserError (one line) when llama-cpp-python is not installed."""
    try:
        import llama_cpp
    except ImportError:
        raise UserError(
            "the llamacpp backend needs llama-cpp-python (pip install llama-cpp-python, or reinstall codelora)"
        ) from None
    return llama_cpp


def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask; a container's cpuset), the thread count llama.cpp uses."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def gguf_sha256(path: str | Path) -> str:
    """sha256 of a GGUF file, cached per (path, size, mtime) within a process (a 1.5B model's GGUF is ~1 GB)."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _GGUF_SHA:
        _GGUF_SHA[key] = sha256_file(p)
    return _GGUF_SHA[key]


# ---------------------------------------------------------------- base weights


def _arch(config, what: str) -> tuple[str, bool]:
    model_type = getattr(config, "model_type", None)
    if model_type not in ARCHS:
        raise UserError(
            f"the llamacpp backend does not support {what}'s architecture {model_type!r}; supported: "
            f"{', '.join(ARCHS)} (use --backend hf)"
        )
    return ARCHS[model_type]


def base_gguf(source: str, gguf: str | None) -> Path:
    """The GGUF file of `source`'s base weights: `gguf` (eval.gguf / --gguf) when given, else the embedded model's
    own GGUF. UserError for a missing file, an HF base without one, or a tiny-random base (no GGUF can hold it)."""
    from codelora.model.sources import embedded_gguf, parse_source

    src = parse_source(source)
    if src.kind == "tiny-random":
        # built in memory from a seed (and a 49,152-token embedded vocabulary): no GGUF file holds these weights
        raise UserError(
            f"the llamacpp backend cannot run {source}: a tiny-random model exists only in memory, so there is no "
            "GGUF of its weights; use --backend hf (or an embedded: or local model)"
        )
    if gguf:
        path = Path(gguf).expanduser()
        if not path.is_file():
            raise UserError(f"eval.gguf: {gguf}: no such file (the GGUF of the base model {source})")
        return path
    if src.kind == "embedded":
        return embedded_gguf(src.name)
    raise UserError(
        f"the llamacpp backend needs a GGUF file of {source}'s weights: pass --gguf FILE (or set eval.gguf), "
        "e.g. one made by llama.cpp's convert_hf_to_gguf.py; or use --backend hf"
    )


def _unloadable(path: Path) -> UserError:
    """Why llama.cpp could not load `path` as a model, in one line (its header read with gguf only now: reading a
    model's whole vocabulary that way takes seconds)."""
    from gguf import GGUFReader

    try:
        field = GGUFReader(str(path)).fields.get("general.type")
    except (ValueError, OSError) as e:
        return UserError(f"eval.gguf: {path} is not a readable GGUF file ({str(e).splitlines()[0]})")
    kind = "model" if field is None else bytes(field.parts[field.data[0]]).decode("utf-8", "replace")
    if kind != "model":
        return UserError(f"eval.gguf: {path} is a GGUF {kind}, not a model")
    return UserError(f"eval.gguf: llama.cpp cannot load {path} (an architecture or format this build lacks?)")


def check_base_gguf(
    path: Path,
    source: str,
    revision: str | None,
    tokenizer,
    system_prompt: str,
    logits: bool = True,
    threads: int = 0,
) -> None:
    """Refuse a GGUF that is not `source`'s base model, with one line naming the first difference: its type (a
    model, not an adapter), architecture, layer count, width, head counts, vocabulary size, and the token ids
    llama.cpp's tokenizer gives a chat prompt (the prompts are fed as ids, so the vocabularies must agree), read by
    llama.cpp itself (vocabulary only); then, with `logits`, that prompt's logits against the base model's
    (`check_base_logits` on `threads` threads, 0: every CPU; other weights with the same metadata, e.g. a base
    model's GGUF for its Instruct model)."""
    from llama_cpp import Llama

    from codelora.model.chat import render_prompt
    from codelora.model.sources import model_config

    config = model_config(source, revision)
    arch, _ = _arch(config, source)
    quiet_logs()
    try:
        vocab = Llama(model_path=str(path), vocab_only=True, verbose=False)
    except ValueError:
        raise _unloadable(path) from None
    try:
        meta, n_vocab = dict(vocab.metadata), vocab.n_vocab()
        probe = render_prompt(tokenizer, system_prompt, PROBE_MESSAGE)
        theirs = vocab.tokenize(probe.encode(), add_bos=False, special=True)
    finally:
        vocab.close()
    if meta.get("general.type", "model") != "model":
        raise UserError(f"eval.gguf: {path} is a GGUF {meta['general.type']}, not a model")
    got_arch = meta.get("general.architecture")
    if got_arch != arch:
        raise UserError(f"eval.gguf: {path} is a {got_arch!r} model; {source} is {arch!r}")
    text_cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = int(text_cfg.num_attention_heads)
    want = {
        "block_count": int(text_cfg.num_hidden_layers),
        "embedding_length": int(text_cfg.hidden_size),
        "attention.head_count": heads,
        "attention.head_count_kv": int(getattr(text_cfg, "num_key_value_heads", None) or heads),
    }
    for key, value in want.items():
        got = meta.get(f"{arch}.{key}")
        if got != str(value):
            raise UserError(f"eval.gguf: {path} has {arch}.{key}={got}; {source} has {value}")
    if n_vocab != int(text_cfg.vocab_size):
        raise UserError(f"eval.gguf: {path} has a vocabulary of {n_vocab} tokens; {source} has {text_cfg.vocab_size}")
    ours = tokenizer.encode(probe, add_special_tokens=False)
    if ours != theirs:
        at = next(
            (i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b), min(len(ours), len(theirs))
        )
        raise UserError(
            f"eval.gguf: {path} tokenizes a chat prompt differently from {source} (from token {at}: "
            f"{theirs[at : at + 4]} vs {ours[at : at + 4]}); it is not this model's GGUF"
        )
    if logits:
        check_base_logits(path, source, revision, ours, meta, threads)


def logit_tolerance(file_type: str) -> float:
    """LOGIT_TOLERANCE of a GGUF file type name (`Q4_K_M` -> Q4_K's, `IQ4_XS` -> IQ4's), else the loosest."""
    name = file_type.removeprefix("MOSTLY_").removeprefix("ALL_")
    for key in sorted(LOGIT_TOLERANCE, key=len, reverse=True):
        if name == key or name.startswith(key + "_") or (key == "IQ4" and name.startswith("IQ4")):
            return LOGIT_TOLERANCE[key]
    return LOGIT_TOLERANCE_OTHER


def _file_type(meta: dict) -> str:
    from gguf import LlamaFileType

    raw = meta.get("general.file_type")
    try:
        return LlamaFileType(int(raw)).name.removeprefix("MOSTLY_").removeprefix("ALL_")
    except (TypeError, ValueError):
        return "unknown"


def gguf_file_type(path: Path) -> str:
    """The GGUF's file type name (general.file_type: `Q4_1`, `Q8_0`, `F16`, ...; `unknown` when absent), read by
    llama.cpp (vocabulary only)."""
    from llama_cpp import Llama

    vocab = Llama(model_path=str(path), vocab_only=True, verbose=False)
    try:
        return _file_type(dict(vocab.metadata))
    finally:
        vocab.close()


def base_logits_difference(path: Path, source: str, revision: str | None, ids: list[int], threads: int = 0) -> float:
    """The mean over the positions of `base_logits_differences` (what LOGIT_TOLERANCE bounds)."""
    diffs = base_logits_differences(path, source, revision, ids, threads)
    return float(sum(diffs) / len(diffs)) if diffs else float("inf")


def base_logits_differences(
    path: Path, source: str, revision: str | None, ids: list[int], threads: int = 0
) -> list[float]:
    """Per position of `ids`: rms(llama.cpp's logits on `path` - transformers' on `source`) / std(the latter) over
    the vocabulary (no unit; 0 = the same logits, ~sqrt(2) for unrelated logits of one scale). Loads both models
    (transformers' in fp32 on the CPU; llama.cpp on `threads` threads, 0: every CPU); [inf] when their shapes
    differ."""
    import numpy as np
    import torch
    from llama_cpp import Llama

    from codelora.model.sources import load_model

    n = threads or cpu_count()
    llm = Llama(
        model_path=str(path), n_ctx=len(ids) + 8, logits_all=True, n_threads=n, n_threads_batch=n, verbose=False
    )
    try:
        llm.eval(ids)
        theirs = np.array(llm.scores[: len(ids)], dtype=np.float64)
    finally:
        llm.close()
    model, _ = load_model(source, dtype="fp32", device="cpu", revision=revision)
    with torch.no_grad():
        ref = model(input_ids=torch.tensor([ids])).logits[0].double().numpy()
    del model
    if theirs.shape != ref.shape:
        return [float("inf")]
    rel = np.sqrt(((theirs - ref) ** 2).mean(axis=1)) / np.maximum(ref.std(axis=1), 1e-6)
    return [float(x) for x in rel]


def _base_check_key(path: Path, source: str, revision: str | None, ids: list[int]) -> str:
    """What a base-logits verdict depends on: the GGUF's bytes, the base model's identity (a local folder by its
    files' names, sizes and times; the embedded model by its cache manifest; a hub id with its revision)."""
    from codelora.model.sources import embedded_dir, parse_source
    from codelora.run.layout import canonical_sha256

    src = parse_source(source)
    model: object = [str(src), revision]
    if src.kind == "local":
        folder = Path(src.name)
        model = [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in sorted(folder.iterdir()) if f.is_file()]
    elif src.kind == "embedded":
        manifest = embedded_dir(src.name) / "codelora-manifest.json"
        model = [str(src), sha256_file(manifest) if manifest.is_file() else None]
    return canonical_sha256({"v": BASE_CHECK_VERSION, "gguf": gguf_sha256(path), "model": model, "ids": ids})


def check_base_logits(
    path: Path, source: str, revision: str | None, ids: list[int], meta: dict, threads: int = 0
) -> float:
    """Refuse (one UserError line) a GGUF whose weights are not `source`'s: `base_logits_difference` on the probe
    prompt `ids` above the tolerance of its file type (LOGIT_TOLERANCE). A passing verdict is cached in
    `<cache>/llamacpp-base-checks/` (keyed by `_base_check_key`), so each (GGUF, base) pair is checked once.
    Returns the difference."""
    import json

    from codelora.files import atomic_write_text
    from codelora.model.sources import cache_root

    ftype = _file_type(meta)
    tol = logit_tolerance(ftype)
    cached = cache_root() / "llamacpp-base-checks" / f"{_base_check_key(path, source, revision, ids)}.json"
    if cached.is_file():
        try:
            diff = float(json.loads(cached.read_text(encoding="utf-8"))["difference"])
            if diff <= tol:
                return diff
        except (OSError, ValueError, KeyError, TypeError):
            pass
    diff = base_logits_difference(path, source, revision, ids, threads)
    if not diff <= tol:
        raise UserError(
            f"eval.gguf: {path} is not a GGUF of {source}'s weights: its logits on a probe prompt differ from "
            f"{source}'s by {diff:.3g} (relative RMS; tolerance {tol:g} for a {ftype} GGUF); give the GGUF made "
            "from this model (e.g. not the base model's for an Instruct model)"
        )
    doc = {"difference": diff, "tolerance": tol, "file_type": ftype, "gguf": str(path), "source": source}
    atomic_write_text(cached, json.dumps(doc, indent=1) + "\n")
    return diff


# ---------------------------------------------------------------- adapters


def _permute_rows(b, n_head: int):
    """lora_B rows (out, r) reordered as convert_hf_to_gguf.py's LlamaModel.permute reorders a q/k weight: within
    each head, the rotary halves' rows [first half | second half] become interleaved pairs."""
    out, r = b.shape
    return b.reshape(n_head, 2, out // n_head // 2, r).swapaxes(1, 2).reshape(out, r)


def _adapter_tensors(adapter: Path) -> dict[str, Any]:
    """name -> float32 numpy array of the adapter's weights file (safetensors, or a PEFT .bin read without
    unpickling code)."""
    st = adapter / "adapter_model.safetensors"
    if st.is_file():
        from safetensors.numpy import load_file

        try:
            return {k: v.astype("float32") for k, v in load_file(st).items()}
        except Exception:  # noqa: BLE001 - bf16 tensors: numpy has no bf16, read them through torch
            from safetensors.torch import load_file as load_torch

            return {k: v.float().numpy() for k, v in load_torch(st).items()}
    binary = adapter / "adapter_model.bin"
    if binary.is_file():
        import torch

        return {k: v.float().numpy() for k, v in torch.load(binary, map_location="cpu", weights_only=True).items()}
    raise UserError(f"{adapter}: no adapter_model.safetensors or adapter_model.bin")


def _scale(acfg: dict, module: str, rank: int) -> float:
    """The scale PEFT applies to module's B @ A (peft.tuners.lora: alpha / r, or alpha / sqrt(r) with rsLoRA;
    alpha_pattern overrides alpha for the modules it matches, with peft's own matching rule)."""
    alpha = float(acfg.get("lora_alpha", 8))
    pattern = acfg.get("alpha_pattern") or {}
    if pattern:
        from peft.utils.other import get_pattern_key

        alpha = float(pattern.get(get_pattern_key(pattern.keys(), module), alpha))
    return alpha / (rank**0.5 if acfg.get("use_rslora") else rank)


def convert_adapter(adapter: str | Path, config, out: str | Path) -> dict:
    """Write `adapter` (a PEFT LoRA folder) as a GGUF LoRA adapter file `out` for the base model of HF `config`.

    Returns {"tensors": pairs written, "alpha": adapter.lora.alpha}. Raises UserError (one line) for an adapter
    llama.cpp cannot apply: DoRA, modules_to_save, a tensor that is not a lora_A/lora_B pair (embeddings, biases),
    a module gguf has no name for, or an unsupported architecture.
    """
    import numpy as np
    from gguf import MODEL_ARCH_NAMES, GGUFType, GGUFWriter, Keys, get_tensor_name_map

    adapter = Path(adapter)
    acfg = read_json(adapter / "adapter_config.json")
    if acfg.get("peft_type", "LORA") != "LORA":
        raise UserError(f"{adapter}: a {acfg.get('peft_type')} adapter; the llamacpp backend applies LoRA only")
    for key, what in _REFUSED_CONFIG.items():
        if acfg.get(key):
            raise UserError(f"{adapter}: adapter_config.json {key}={acfg[key]!r}: llama.cpp cannot apply {what}")
    base_alpha = float(acfg.get("lora_alpha", 8))
    if base_alpha <= 0:
        raise UserError(f"{adapter}: adapter_config.json lora_alpha={acfg.get('lora_alpha')!r}; must be > 0")
    arch, permute = _arch(config, "the adapter's base model")
    text_cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    n_head = int(text_cfg.num_attention_heads)
    n_kv = int(getattr(text_cfg, "num_key_value_heads", None) or n_head)
    arch_id = next(k for k, v in MODEL_ARCH_NAMES.items() if v == arch)
    names = get_tensor_name_map(arch_id, int(text_cfg.num_hidden_layers))

    pairs: dict[str, dict[str, Any]] = {}
    for key, value in _adapter_tensors(adapter).items():
        name = key.removeprefix(_PEFT_PREFIX)
        suffix = next((s for s in _LORA_SUFFIXES if name.endswith(s)), None)
        if suffix is None:
            raise UserError(
                f"{adapter}: tensor {key} is not a lora_A/lora_B weight; llama.cpp applies LoRA pairs only "
                "(no embeddings, biases or fully trained modules)"
            )
        pairs.setdefault(name[: -len(suffix)], {})[_LORA_SUFFIXES[suffix]] = value

    tensors: list[tuple[str, Any]] = []
    for module, ab in sorted(pairs.items()):
        if set(ab) != {"lora_a", "lora_b"}:
            raise UserError(f"{adapter}: module {module} has {', '.join(ab)} but not both lora_A and lora_B")
        a, b = ab["lora_a"], ab["lora_b"]
        target = names.get_name(module + ".weight", try_suffixes=(".weight",))
        if target is None or module.endswith(("embed_tokens", "lm_head")):
            raise UserError(f"{adapter}: module {module} has no LoRA-capable llama.cpp tensor in {arch}")
        rank = a.shape[0]
        if a.ndim != 2 or b.ndim != 2 or b.shape[1] != rank:
            raise UserError(f"{adapter}: module {module}: lora_A {a.shape} and lora_B {b.shape} do not pair")
        # llama.cpp scales B @ A by alpha / rank (rank = this module's); fold whatever PEFT does differently into B
        factor = _scale(acfg, module, rank) / (base_alpha / rank)
        if factor != 1.0:
            b = b * np.float32(factor)
        leaf = module.rsplit(".", 1)[-1]
        if permute and leaf == "q_proj":
            b = _permute_rows(b, n_head)
        elif permute and leaf == "k_proj":
            b = _permute_rows(b, n_kv)
        tensors += [(target + ".lora_a", a), (target + ".lora_b", b)]
    if not tensors:
        raise UserError(f"{adapter}: no LoRA tensors")

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        writer = GGUFWriter(str(tmp), arch)
        writer.add_type(GGUFType.ADAPTER)
        writer.add_string(Keys.Adapter.TYPE, "lora")
        writer.add_float32(Keys.Adapter.LORA_ALPHA, base_alpha)
        for name, value in tensors:
            writer.add_tensor(name, np.ascontiguousarray(value, dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out)  # the cache holds whole conversions only
    finally:
        tmp.unlink(missing_ok=True)
    return {"tensors": len(tensors) // 2, "alpha": base_alpha}


def cached_adapter(adapter: str | Path, config) -> Path:
    """The GGUF conversion of `adapter` for `config`'s base, converted once into codelora's cache
    (`<cache>/llamacpp-lora/<sha256>.gguf`, named by the adapter's identity (`layout.adapter_sha256`: weights and
    canonical adapter_config.json), the base's shape and CONVERT_VERSION: a retrained checkpoint or an edited
    lora_alpha never reuses an old conversion)."""
    from codelora.model.sources import cache_root
    from codelora.run.layout import adapter_sha256
    from codelora.run.results import canonical_sha256

    adapter = Path(adapter)
    text_cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    key = canonical_sha256(
        {
            "version": CONVERT_VERSION,
            "adapter": adapter_sha256(adapter),  # weights + canonical adapter_config.json
            "base": [config.model_type, text_cfg.num_attention_heads, getattr(text_cfg, "num_key_value_heads", None)],
        }
    )
    out = cache_root() / "llamacpp-lora" / f"{key}.gguf"
    if not out.is_file():
        convert_adapter(adapter, config, out)
    return out


# ---------------------------------------------------------------- generation


def next_token(logits, sampling, rng) -> int:
    """The next token from one row of logits (n_vocab,): the argmax when greedy, else a draw from the HF backend's
    distribution (logits / temperature, then the smallest top-p set, the token that crosses top_p kept)."""
    import numpy as np

    if sampling.greedy:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / sampling.temperature
    z -= z.max()
    p = np.exp(z)
    p /= p.sum()
    if sampling.top_p < 1.0:
        order = np.argsort(-p, kind="stable")
        sorted_p = p[order]
        drop = np.cumsum(sorted_p) - sorted_p > sampling.top_p
        p[order[drop]] = 0.0
        p /= p.sum()
    return int(min(np.searchsorted(np.cumsum(p), rng.random(), side="right"), len(p) - 1))


@register
class LlamaCppBackend(Backend):
    """llama.cpp generation for `codelora evaluate` (CPU). One per evaluation: the base GGUF is resolved and checked
    once (`base_gguf`, `check_base_gguf`); each model then loads it with its converted adapter.

    `fingerprint()` is what ties an answer to these weights besides the adapter: the backend and the base GGUF's
    sha256. `generate` is the Backend interface's (codelora.generation.backends)."""

    name = NAME
    exclusive_options = ("gguf", "threads")

    @classmethod
    def create(cls, cfg, opts, adapters, source):
        return cls(cfg, source, opts.gguf or cfg.eval.gguf, opts.threads or cfg.eval.threads)

    def __init__(self, cfg, source: str, gguf: str | None = None, threads: int = 0):
        require_llama_cpp()
        from codelora.model.sources import load_tokenizer, model_config

        self.cfg, self.source = cfg, source
        self.gguf = base_gguf(source, gguf)
        self.tokenizer = load_tokenizer(source, cfg.model.revision)
        self.threads = threads or cpu_count()
        check_base_gguf(
            self.gguf, source, cfg.model.revision, self.tokenizer, cfg.data.system_prompt, threads=self.threads
        )
        self.config = model_config(source, cfg.model.revision)
        self.gguf_sha256 = gguf_sha256(self.gguf)

    def fingerprint(self) -> dict:
        """{"backend", "gguf_sha256"}: added to each answer's model fingerprint and to the results' provenance."""
        return {"backend": self.name, "gguf_sha256": self.gguf_sha256}

    def _load(self, adapter: str | None, n_ctx: int):
        from llama_cpp import Llama

        lora = str(cached_adapter(adapter, self.config)) if adapter else None
        quiet_logs()
        try:
            return Llama(
                model_path=str(self.gguf),
                lora_path=lora,
                n_ctx=n_ctx,
                n_threads=self.threads,
                n_threads_batch=self.threads,
                seed=self.cfg.eval.seed,
                verbose=False,
            )
        except ValueError as e:  # llama.cpp refused the model or the adapter (details on its own log)
            raise UserError(
                f"llama.cpp could not load {self.gguf}{' with ' + adapter if adapter else ''}: {e}"
            ) from None

    def generate(self, spec, work, prompts: list[list[int]], sampling, seeds: list[int], stops: list[int], on_batch):
        """One answer per prompt (token ids), one prompt at a time; `on_batch([(index, Generation)])` after each.
        Returns the generations in prompt order (codelora.generation.generate.Generation: text decoded by the model's own
        tokenizer with special tokens skipped, new tokens counting the stop token)."""
        import numpy as np
        from llama_cpp import llama_get_logits_ith
        from tqdm import tqdm

        from codelora.generation.sampling import Generation

        if not prompts:
            return []
        llm = self._load(spec.adapter, max(map(len, prompts)) + sampling.max_new_tokens + 1)
        n_vocab = llm.n_vocab()
        stop = set(stops)
        results: list[Generation] = []
        try:
            for j, ids in enumerate(tqdm(prompts, desc="generate (llama.cpp)", unit="answer", file=sys.stderr)):
                rng = np.random.default_rng(int(seeds[j]))
                llm.reset()  # no KV-cache reuse between prompts: each answer is computed as it would be alone
                llm.eval(ids)
                new: list[int] = []
                while len(new) < sampling.max_new_tokens:
                    logits = np.ctypeslib.as_array(llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))
                    tok = next_token(logits, sampling, rng)
                    new.append(tok)
                    if tok in stop or len(new) == sampling.max_new_tokens:
                        break
                    llm.eval([tok])
                stopped = bool(new) and new[-1] in stop
                g = Generation(self.tokenizer.decode(new, skip_special_tokens=True), len(new), stopped)
                results.append(g)
                on_batch([(j, g)])
        finally:
            llm.close()
        return results

    def close(self) -> None:
        """Nothing is held between models (each `generate` loads and closes its own llama.cpp model)."""


def describe(fp: dict | None) -> str:
    """A short label of a generator fingerprint for tables: `hf` (None), or `llamacpp (gguf 1a2b3c4d5e6f)`."""
    if not fp:
        return "hf"
    return f"{fp.get('backend')} (gguf {str(fp.get('gguf_sha256'))[:12]})"
