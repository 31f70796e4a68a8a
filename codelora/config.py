"""Run configuration: documented dataclasses, filled from defaults -> preset/YAML -> `--set key=value` (the
commands' own options are codelora/commands.py).

Every field is validated before anything heavy loads, so a typo costs a second, not a model load.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import yaml

from codelora.errors import UserError

SYSTEM_PROMPT = "You are an expert Python programmer. Please read the problem carefully before writing any Python code."
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class ModelConfig:
    """`model:` section: which model is fine-tuned and how it is loaded."""

    source: str = "Qwen/Qwen2.5-Coder-1.5B-Instruct"
    """Hub id, local folder, `embedded:smollm2-135m-instruct` or `tiny-random:qwen2|llama`."""
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    """`auto`: bf16 where CUDA supports it, fp32 otherwise (CPU)."""
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"
    """Attention kernel; the original project used PyTorch SDPA."""
    device: str = "auto"
    """`auto` (cuda if available, else cpu), `cpu`, `cuda`, `cuda:1`, ..."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) for hub ids."""
    quantization: Literal["none", "nf4", "int8"] = "none"
    """QLoRA: load the frozen base quantised by bitsandbytes (`nf4`: 4-bit NormalFloat with double quantisation, compute in model.dtype; `int8`: LLM.int8) for training, its eval losses and `evaluate`; the adapter stays in full precision and `export --merge` merges it into the unquantised base. Needs `pip install 'codelora[qlora]'`."""


@dataclass
class DataConfig:
    """`data:` section: the dataset, what the model learns to write, lengths and the by-problem split."""

    dataset: str = "deep"
    """`deep` (Naholav/CodeGen-Deep-5K), `diverse` (Naholav/CodeGen-Diverse-5K), `sample` (bundled), `demo` (the sample plus its VERY_EASY tier), a hub id or a local file/folder."""
    target: Literal["solution", "output"] = "solution"
    """What the model learns to write: `solution` (code only, as the original project) or `output` (reasoning + code)."""
    system_prompt: str = SYSTEM_PROMPT
    """System message of every chat, in training and evaluation alike."""
    max_length: int = 1024
    """Maximum tokens of prompt + completion."""
    overlong: Literal["drop", "truncate"] = "drop"
    """What to do with examples longer than max_length; they are always counted in the data report."""
    split: Literal["auto", "column", "by_problem"] = "auto"
    """`auto`: the dataset's `split` column when it has one, else by problem; `column`: the column (required); `by_problem`: ignore any column and split hashed problem keys by the fractions below."""
    split_conflicts: Literal["held_out", "refuse"] = "held_out"
    """A problem whose rows carry different `split` values: `held_out` puts all its rows in the most held-out split it appears in (test > valid > train) and lists it in data_report.json; `refuse` stops prepare."""
    split_seed: int = 42
    """Seed of the by-problem split and of the choice of problems moved from train to valid."""
    valid_fraction: float = 0.05
    """Share of problems in the validation split; with a split column, train problems move to valid until it has this share (0 keeps the column's)."""
    test_fraction: float = 0.10
    """Share of problems in the test split (by-problem split only; a split column's test split is kept)."""
    skip_bad_rows: bool = False
    """Skip (and report) malformed rows instead of stopping."""
    max_problems: int | None = None
    """Use only the first N problems (by stable key order) of the training split; None = all."""


@dataclass
class LoraConfig:
    """`lora:` section: the adapter (peft.LoraConfig fields of the same names)."""

    r: int = 16
    """LoRA rank."""
    alpha: int = 32
    """LoRA alpha (scale = alpha / r)."""
    dropout: float = 0.05
    """Dropout on the LoRA input."""
    bias: Literal["none", "all", "lora_only"] = "none"
    """Which biases train."""
    target_modules: list[str] = field(default_factory=lambda: list(ALL_LINEAR))
    """Modules that get adapters: all linear layers of the attention and MLP blocks."""


@dataclass
class EarlyStoppingConfig:
    """`train.early_stopping:` stop training when pass@1 (train.execution_eval) stops improving."""

    metric: Literal["pass@1"] = "pass@1"
    """The execution metric watched (per saved checkpoint)."""
    patience: int = 0
    """Stop after this many evaluations in a row without an improvement of more than min_delta (0: off)."""
    min_delta: float = 0.0
    """An improvement counts only when the metric rises by more than this (pass@1 is a fraction, 0..1)."""


@dataclass
class TrainConfig:
    """`train:` section: optimisation, logging and checkpointing (transformers.TrainingArguments, in codelora's
    names; steps are optimizer steps)."""

    epochs: float = 3.0
    """Passes over the training split."""
    max_steps: int = -1
    """Stop after this many optimizer steps (-1: run all epochs)."""
    per_device_batch_size: int = 1
    """Examples per device per micro-batch."""
    gradient_accumulation_steps: int = 16
    """Micro-batches per optimizer step (effective batch = per_device_batch_size x this x devices)."""
    learning_rate: float = 2e-4
    """Peak learning rate."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    optim: Literal["adamw_torch", "adamw_torch_fused", "sgd"] = "adamw_torch"
    """Optimizer name as transformers spells it."""
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = "cosine"
    """Learning-rate schedule."""
    warmup_ratio: float = 0.03
    """Share of steps spent warming up."""
    logging_steps: int = 20
    """Log the mean train loss every N optimizer steps."""
    eval_steps: int = 100
    """Compute the validation loss every N optimizer steps (and at step 0); the test loss too with train.eval_test."""
    eval_test: bool = False
    """Also compute the test-split loss at every eval (default: validation only; the test split is what evaluate and compare grade at the end, and its loss costs an eval pass each time)."""
    save_steps: int = 100
    """Save a checkpoint every N optimizer steps; every checkpoint is kept."""
    seed: int = 42
    """Seed of data order, dropout and initialisation."""
    gradient_checkpointing: bool = True
    """Trade compute for memory (use_reentrant=False)."""
    packing: bool = False
    """On CPU 1.14x the tokens/s at 1.25x the peak RSS (bench/train_throughput.py, docs/performance.md), hence off by default. Train each optimizer step's examples (per_device_batch_size x gradient_accumulation_steps, the same examples and order as unpacked) packed into rows of at most per_device_batch_size x data.max_length tokens (position_ids restart per example, no padding); the loss is normalised per label token of the step either way, so the gradient is the padded one's. A start-of-training probe refuses it where the attention kernel cannot keep examples apart; `false`: padded micro-batches."""
    group_by_length: bool = True
    """Batch examples of similar length to cut padding."""
    sparse_dropout: bool = True
    """LoRA dropout (lora.dropout) that draws only the dropped positions (codelora.training.lora_dropout): the same i.i.d. masks in distribution as PEFT's nn.Dropout, several times cheaper on CPU; `false`: PEFT's nn.Dropout. On a GPU torch's own dropout runs either way."""
    report_to: Literal["none", "tensorboard"] = "none"
    """Extra logging backend besides metrics.jsonl/csv; `tensorboard` writes events to outputs/<run>/logs/tensorboard."""
    execution_eval: str = "none"
    """Grade every saved checkpoint by running its code while training: `none`, or a benchmark (`heldout`, `humaneval`, `livecodebench`, ...), evaluated exactly as `codelora evaluate --run RUN --models checkpoint-N --backend hf` would (same results, reused by compare); pass@1 goes to metrics.jsonl and the loss plot (docs: training, pass@1 while training)."""
    execution_eval_limit: int | None = None
    """Only the first K problems of train.execution_eval (null: all); compare then matches that limit."""
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    """Stop when train.execution_eval's metric has not improved for `patience` evaluations (patience 0: never); no checkpoint is deleted."""


@dataclass
class EvalConfig:
    """`eval:` section: decoding settings of `evaluate` and `generate` (evaluate's flags override them)."""

    temperature: float = 0.2
    """Sampling temperature of the original project's checkpoint comparison."""
    top_p: float = 0.9
    """Nucleus sampling of the original project's checkpoint comparison."""
    max_new_tokens: int = 1024
    """Longest answer generated."""
    seed: int = 42
    """Base seed; sample i of a problem uses seed + i, so sampled runs are reproducible."""
    greedy: bool = True
    """Greedy decoding for pass@1 (temperature/top_p then unused)."""
    batch_size: int = 8
    """Prompts generated together."""
    backend: str = "hf"
    """Generation backend of `codelora evaluate`: `hf` (transformers, batched), `vllm` (GPU, optional extra) or `llamacpp` (llama.cpp on a GGUF of the base: faster on CPU, quantised weights; see docs/evaluation.md); any other module of codelora/generation/backends/ adds its name."""
    gguf: str | None = None
    """llamacpp backend: GGUF file of the base model (default: the embedded model's own GGUF; an HF model needs one)."""
    threads: int = 0
    """llamacpp backend: CPU threads (0: every CPU this process may use); on a machine other jobs share, fewer than the free cores (llama.cpp's threads wait for each other at every layer)."""
    vllm_mode: Literal["merge", "lora"] = "merge"
    """vLLM only: `merge` the adapter into the base (fastest for one model) or serve it as a `lora` adapter."""


@dataclass
class TestsConfig:
    """Hidden tests generated from each problem's worked examples (codelora.data.generated_tests)."""

    seed: int = 0
    """Seed of the input mutations: the same seed, problems and reference solutions give the same tests."""
    candidates: int = 10
    """Mutated inputs tried per problem; an input is kept only when every reference solution finishes on it and all agree."""


@dataclass
class RLConfig:
    """`rl:` section: `codelora rl`, GRPO (TRL's GRPOTrainer) on the run's training-split problems with the sandbox's
    verdicts as the reward. The adapter keeps the run's `lora:` shape; see docs/rl.md."""

    steps: int = 20
    """GRPO optimizer steps (each samples `prompts_per_step` problems x `num_generations` completions)."""
    prompts_per_step: int = 2
    """Problems per optimizer step; each is one group of completions (one micro-batch, gradients accumulated)."""
    num_generations: int = 4
    """Completions per problem (GRPO's group size G, >= 2): a problem's advantages are its completions' rewards
    relative to the group's mean."""
    max_new_tokens: int = 256
    """Longest completion sampled (tokens); a cut-off answer is graded like any other."""
    temperature: float = 1.0
    """Sampling temperature of the completions (> 0: GRPO needs different completions per group)."""
    learning_rate: float = 1.0e-5
    """Learning rate of the LoRA weights (AdamW, constant schedule)."""
    loss_type: Literal["dapo", "dr_grpo", "grpo"] = "dapo"
    """TRL's loss normalisation: `dapo` (token-level, TRL's default), `dr_grpo` (Dr. GRPO: constant length
    normaliser, rewards not scaled by the group's std) or `grpo` (the original per-sequence mean)."""
    beta: float = 0.0
    """KL penalty to the starting model (0: none and no reference model in memory, TRL's default)."""
    reward: Literal["binary", "fraction"] = "binary"
    """Reward of a completion: `binary` 1 when every test passes, else 0; `fraction` the share of tests passed."""
    tests: Literal["generated", "examples", "all"] = "generated"
    """Which tests reward: `generated` hidden tests made by mutating the statement's examples (the default);
    `examples` the worked examples only, which are in the prompt, so a policy can learn to print them (hackable:
    choose it only knowingly); `all` both."""
    seed: int = 42
    """Seed of the problem order and of the sampling (a resumed run draws the same completions)."""
    save_steps: int = 10
    """Save a checkpoint (RUN/rl/checkpoints/checkpoint-N) every N steps; every checkpoint is kept."""
    vllm: Literal["none", "colocate"] = "none"
    """Generation of the completions: `none` (transformers, everywhere) or `colocate` (vLLM in the training process,
    GPU with vllm installed only)."""
    workers: int = 0
    """Sandbox processes grading completions concurrently (0: every CPU)."""


@dataclass
class RunConfig:
    """A whole run's configuration: defaults, then a preset or YAML file, then `--set` (see `load_config`)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tests: TestsConfig = field(default_factory=TestsConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    output_dir: str = "outputs"
    """Folder that holds one sub-folder per run."""
    run_name: str | None = None
    """Run folder name under output_dir; default: the preset or file name."""

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML- and JSON-ready), sections as keys."""
        return dataclasses.asdict(self)


PRESETS_PACKAGE = "codelora.presets"
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def preset_names() -> list[str]:
    """Names of the bundled presets (codelora/presets/*.yaml), sorted."""
    return sorted(p.name[:-5] for p in resources.files(PRESETS_PACKAGE).iterdir() if p.name.endswith(".yaml"))


def load_config(name_or_path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Load a preset (`demo` or `preset:demo`) or a YAML file, apply `section.key=value` overrides, validate.

    A bare preset name is the bundled preset even where the working directory has a file or folder of that name
    (`./demo` names those); UserError (one line) for an unknown preset or a missing file."""
    text, origin = _read_source(str(name_or_path))
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise UserError(f"{origin}{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(raw, dict):
        raise UserError(f"{origin}: a config must be a mapping of sections, got {type(raw).__name__}")
    set_keys = set()
    for item in overrides:
        set_keys.add(_apply_override(raw, item))
    cfg = _build(RunConfig, raw, origin, prefix="", set_keys=frozenset(set_keys))
    if cfg.run_name is None:
        if origin.startswith(PRESET_PREFIX):
            cfg.run_name = origin[len(PRESET_PREFIX) :]
        else:
            cfg.run_name = Path(origin).stem if origin.endswith((".yaml", ".yml")) else str(name_or_path)
    validate(cfg, origin, set_keys=frozenset(set_keys))
    return cfg


def config_keys(cls: type | None = None, prefix: str = "") -> list[str]:
    """Every dotted key of the run config (`train.max_steps`, ..., `output_dir`), sections excluded."""
    cls = cls or RunConfig
    keys = []
    hints = get_type_hints(cls)
    for f in fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            keys += config_keys(hints[f.name], f"{prefix}{f.name}.")
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


def did_you_mean(key: str, known: list[str]) -> str:
    """` (did you mean 'x'?)` for the closest of `known` to `key` (also across sections: `max_steps` finds
    `train.max_steps`), or ''."""
    import difflib

    pool = {k: k for k in known}
    pool.update({k.rsplit(".", 1)[-1]: k for k in known if "." in k and k.rsplit(".", 1)[-1] not in pool})
    close = difflib.get_close_matches(key, list(pool), n=1, cutoff=0.75)
    if not close:
        close = difflib.get_close_matches(key.rsplit(".", 1)[-1], list(pool), n=1, cutoff=0.75)
    return f" (did you mean '{pool[close[0]]}'?)" if close else ""


def save_config(cfg: RunConfig, path: Path) -> None:
    """Write the resolved config (atomically) so a run can be reproduced from its folder."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    tmp.replace(path)


PRESET_PREFIX = "preset:"


def _read_source(name: str) -> tuple[str, str]:
    """(YAML text, origin) of `name`: `preset:NAME` is always a bundled preset; a bare name that is a preset's
    (no `/`, no .yaml suffix) is the preset even when a file or folder of that name is in the working directory
    (write `./NAME` for that file); anything else is a YAML file path."""
    if name.startswith(PRESET_PREFIX):
        preset = name[len(PRESET_PREFIX) :]
        if preset not in preset_names():
            raise UserError(f"unknown preset '{preset}' ({name}); presets: {', '.join(preset_names())}")
        return resources.files(PRESETS_PACKAGE).joinpath(f"{preset}.yaml").read_text(), name
    path = Path(name)
    bare = "/" not in name and path.suffix not in (".yaml", ".yml")
    if bare and name in preset_names():
        return resources.files(PRESETS_PACKAGE).joinpath(f"{name}.yaml").read_text(), f"preset:{name}"
    if path.suffix in (".yaml", ".yml") or path.exists() or "/" in name:
        if path.is_dir():
            raise UserError(f"config {name} is a folder, not a YAML file; presets: {', '.join(preset_names())}")
        if not path.is_file():
            raise UserError(f"config file not found: {name}")
        try:
            return path.read_text(encoding="utf-8-sig"), str(path)
        except UnicodeDecodeError as e:
            raise UserError(f"{path}: not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start})") from None
        except OSError as e:
            raise UserError(f"cannot read config file {path}: {e.strerror or e}") from None
    raise UserError(f"unknown preset '{name}'; presets: {', '.join(preset_names())} (or a path to a .yaml file)")


def _apply_override(raw: dict, item: str) -> str:
    """Apply one `--set section.key=value` to the raw mapping; return the dotted key. UserError naming --set for a
    key the config does not have (with the closest one)."""
    if "=" not in item:
        raise UserError(f"--set {item!r}: expected section.key=value")
    key, value = item.split("=", 1)
    key = key.strip()
    known = config_keys()
    if key not in known:
        sections = sorted({k.split(".", 1)[0] for k in known if "." in k})
        what = f"'{key}' is a section; give section.key=value" if key in sections else f"unknown key '{key}'"
        raise UserError(f"--set {key}={value}: {what}{did_you_mean(key, known)}")
    parts = key.split(".")
    node = raw
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise UserError(f"--set {key}: '{p}' is not a section")
    try:
        node[parts[-1]] = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as e:
        raise UserError(f"--set {key}={value}: not a valid value ({getattr(e, 'problem', e)})") from None
    return key


def _build(cls: type, raw: Any, origin: str, prefix: str, set_keys: frozenset = frozenset()) -> Any:
    """`cls` from the raw mapping; a bad value of a key in set_keys (given with --set) is blamed on --set."""
    if not isinstance(raw, dict):
        raise UserError(f"{origin}: '{prefix.rstrip('.') or 'config'}' must be a mapping")
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    for key in raw:
        if key not in known:
            hint = did_you_mean(f"{prefix}{key}", config_keys()) or did_you_mean(str(key), sorted(known))
            raise UserError(
                f"{origin}: unknown key '{prefix}{key}'{hint}; valid keys{' of ' + prefix.rstrip('.') if prefix else ''}:"
                f" {', '.join(sorted(known))}"
            )
    kwargs = {}
    for f in fields(cls):
        if f.name not in raw:
            continue
        typ = hints[f.name]
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(typ):
            kwargs[f.name] = _build(typ, raw[f.name], origin, f"{key}.", set_keys)
        else:
            kwargs[f.name] = _coerce(raw[f.name], typ, "--set" if key in set_keys else origin, key)
    return cls(**kwargs)


def _coerce(value: Any, typ: Any, origin: str, key: str) -> Any:
    origin_t = get_origin(typ)
    if origin_t is Literal:
        choices = get_args(typ)
        if value not in choices:
            raise UserError(f"{origin}: {key}={value!r} is not valid; choices: {', '.join(map(str, choices))}")
        return value
    if origin_t in (typing.Union, types.UnionType):
        args = get_args(typ)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)][0]
        return _coerce(value, inner, origin, key)
    if origin_t is list:
        if not isinstance(value, list):
            raise UserError(f"{origin}: {key} must be a list, got {value!r}")
        (inner,) = get_args(typ)
        return [_coerce(v, inner, origin, key) for v in value]
    if typ is bool:
        if not isinstance(value, bool):
            raise UserError(f"{origin}: {key} must be true or false, got {value!r}")
        return value
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{origin}: {key} must be an integer, got {value!r}")
        return value
    if typ is float:
        if isinstance(value, str):  # YAML 1.1 reads `1e-4` (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{origin}: {key} must be a number, got {value!r}")
        # `1e400` and `.inf` read as infinity: a run would train on NaN losses
        if not math.isfinite(value):
            raise UserError(f"{origin}: {key}={value!r} is not allowed; it must be a finite number")
        return float(value)
    if typ is str:
        if not isinstance(value, str):
            raise UserError(f"{origin}: {key} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {typ} for {key}")  # a bug in this file, not user input


def backend_names() -> tuple[str, ...]:
    """The generation backends' names (`eval.backend`, `--backend`): every module of codelora/generation/backends/."""
    from codelora.generation import backends  # here, not at the top: the backends' modules import this one

    return backends.names()


def validate(cfg: RunConfig, origin: str = "config", set_keys: frozenset = frozenset()) -> None:
    """Reject impossible values, naming the key (and `--set` when the key was given with --set)."""

    def need(ok: bool, key: str, what: str) -> None:
        if not ok:
            raise UserError(f"{'--set' if key in set_keys else origin}: {key} {what}")

    t, lo, d, e = cfg.train, cfg.lora, cfg.data, cfg.eval
    need(lo.r > 0, "lora.r", f"must be > 0, got {lo.r}")
    need(lo.alpha > 0, "lora.alpha", f"must be > 0, got {lo.alpha}")
    need(0 <= lo.dropout < 1, "lora.dropout", f"must be in [0, 1), got {lo.dropout}")
    need(bool(lo.target_modules), "lora.target_modules", "must name at least one module")
    need(t.learning_rate > 0, "train.learning_rate", f"must be > 0, got {t.learning_rate}")
    need(t.weight_decay >= 0, "train.weight_decay", f"must be >= 0, got {t.weight_decay}")
    need(0 <= t.warmup_ratio < 1, "train.warmup_ratio", f"must be in [0, 1), got {t.warmup_ratio}")
    need(t.epochs > 0, "train.epochs", f"must be > 0, got {t.epochs}")
    need(t.max_steps == -1 or t.max_steps > 0, "train.max_steps", f"must be -1 or > 0, got {t.max_steps}")
    for k in ("per_device_batch_size", "gradient_accumulation_steps", "logging_steps", "eval_steps", "save_steps"):
        need(getattr(t, k) > 0, f"train.{k}", f"must be > 0, got {getattr(t, k)}")
    need(
        t.eval_steps % t.logging_steps == 0,
        "train.eval_steps",
        f"({t.eval_steps}) must be a multiple of train.logging_steps ({t.logging_steps}) so curves share steps",
    )
    from codelora import benchmarks  # the registry alone (an earlier layer); its modules load when it is read

    ex_eval = t.execution_eval
    need(
        ex_eval == "none" or ex_eval in benchmarks.names(),
        "train.execution_eval",
        f"is {ex_eval!r}; allowed: none or a benchmark ({', '.join(benchmarks.names())})",
    )
    lim = t.execution_eval_limit
    need(lim is None or lim > 0, "train.execution_eval_limit", f"must be > 0 or null, got {lim}")
    es = t.early_stopping
    need(es.patience >= 0, "train.early_stopping.patience", f"must be >= 0 (0: off), got {es.patience}")
    need(0 <= es.min_delta < 1, "train.early_stopping.min_delta", f"must be in [0, 1), got {es.min_delta}")
    need(
        es.patience == 0 or ex_eval != "none",
        "train.early_stopping.patience",
        f"is {es.patience}, which needs train.execution_eval (a benchmark, e.g. heldout) to measure {es.metric}",
    )
    need(d.max_length >= 16, "data.max_length", f"must be >= 16, got {d.max_length}")
    need(0 <= d.valid_fraction < 1, "data.valid_fraction", f"must be in [0, 1), got {d.valid_fraction}")
    need(0 <= d.test_fraction < 1, "data.test_fraction", f"must be in [0, 1), got {d.test_fraction}")
    need(d.valid_fraction + d.test_fraction < 1, "data.test_fraction", "plus data.valid_fraction must be < 1")
    need(d.max_problems is None or d.max_problems > 0, "data.max_problems", "must be > 0 or null")
    need(e.temperature >= 0, "eval.temperature", f"must be >= 0, got {e.temperature}")
    need(0 < e.top_p <= 1, "eval.top_p", f"must be in (0, 1], got {e.top_p}")
    need(e.max_new_tokens > 0, "eval.max_new_tokens", f"must be > 0, got {e.max_new_tokens}")
    need(e.batch_size > 0, "eval.batch_size", f"must be > 0, got {e.batch_size}")
    need(e.threads >= 0, "eval.threads", f"must be >= 0 (0: every CPU), got {e.threads}")
    need(0 <= cfg.tests.candidates <= 1000, "tests.candidates", f"must be in [0, 1000], got {cfg.tests.candidates}")
    if e.backend not in backend_names():
        raise UserError(f"{origin}: eval.backend={e.backend!r} is not valid; choices: {', '.join(backend_names())}")
    r = cfg.rl
    for k in ("steps", "prompts_per_step", "max_new_tokens", "save_steps"):
        need(getattr(r, k) > 0, f"rl.{k}", f"must be an integer > 0, got {getattr(r, k)}")
    need(r.num_generations >= 2, "rl.num_generations", f"must be >= 2 (GRPO compares a group), got {r.num_generations}")
    need(r.temperature > 0, "rl.temperature", f"must be > 0 (GRPO needs varied completions), got {r.temperature}")
    need(r.learning_rate > 0, "rl.learning_rate", f"must be > 0, got {r.learning_rate}")
    need(r.beta >= 0, "rl.beta", f"must be >= 0, got {r.beta}")
    need(r.workers >= 0, "rl.workers", f"must be >= 0 (0: every CPU), got {r.workers}")
    need(bool(cfg.model.source), "model.source", "must not be empty")
    need(
        DEVICE_PATTERN.fullmatch(cfg.model.device) is not None,
        "model.device",
        f"={cfg.model.device!r} is not allowed; use auto, cpu, mps, cuda or cuda:N",
    )
    need(
        all(isinstance(m, str) and m.strip() for m in lo.target_modules),
        "lora.target_modules",
        f"={lo.target_modules!r}: every entry must be a module name",
    )
