"""The real-size numbers on a GPU, in one run of under 8 minutes: Qwen2.5-Coder-1.5B-Instruct's architecture.

The machine has no Hub, so the model is randomly initialised from Qwen2.5-Coder-1.5B-Instruct's architecture values
(`../shared/field/qwen25_tokenizer/config.json`, beside the checkout) with the real Qwen2.5 tokenizer from that
folder, saved to a temporary folder that codelora loads like any local model. Speed and memory do not depend on the
weights' values (a random model never stops early, so generation always runs to the cap: the worst case).

1. Training (bench/train_throughput.py's runs, each in its own process, bf16 + SDPA + gradient checkpointing,
   batch 1 x 16, the bundled sample set's rows, max length 1024): the original recipe (pad to 1024, loss on
   everything) vs codelora's default (micro-batches of one example, the LM head at labelled positions) vs packed
   steps (train.packing=true: each step's 16 examples in one row) vs QLoRA (model.quantization=nf4: the base's linear layers in bitsandbytes NF4,
   the adapter, norms and embeddings in fp32 as peft's prepare_model_for_kbit_training leaves them; its peak memory
   and whether it fits in 8 GiB). Real tokens/s, peak GPU memory (allocated and reserved), MFU against the measured bf16 matmul rate, and whether the original recipe fits in 8 GiB (the course's card).
2. Generation: codelora's batched HF generation (`codelora.generation.generate.generate_batch`, greedy) of the course's 41
   LiveCodeBench problems (`../shared/field/lcb41/`), up to 512 new tokens each.
3. RL: `codelora rl` (TRL's GRPOTrainer, HF generation) from a fresh adapter on a run of the bundled sample problems
   with their generated hidden tests: 3 steps of 2 problems x 8 completions of up to 256 tokens. Steps/s (step wall
   time as RUN/rl/logs/metrics.jsonl records it) and the reward's throughput (completions graded per second of the
   reward calls' wall time; a random model's answers are graded like any others).
4. Generation at a checkpoint while training (train.execution_eval), the two ways it could be done: in-process,
   with the live training model (LoRA unmerged, no second copy of the base; what codelora does) vs a separate
   process on the saved checkpoint (start, load base + adapter, merge, generate; wall time, its peak memory being a
   second model beside the training one). Same prompts as 2; `in_process_vs_separate` > 1 means in-process is faster.

--tiny: the same script end to end on CPU with a 2-layer, width-64 model of the same architecture and tokenizer,
1 step of 2 examples, 2 prompts x 8 tokens and 1 RL step of 2 x 2 completions of 8 tokens (the test suite runs it;
its numbers mean nothing).

Usage: python bench/gpu.py [--tiny] [--out bench/results/gpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIELD = ROOT.parent / "shared" / "field"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
EIGHT_GIB_MB = 8 * 1024


def build_model(folder: Path, tiny: bool) -> dict:
    """Save a randomly initialised model of the real architecture (or its tiny version) with the real tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    real = FIELD / "qwen25_tokenizer"
    values = json.loads((real / "config.json").read_text())
    if tiny:
        values.update(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_window_layers=2)  # fmt: skip
    config = AutoConfig.for_model(**values)  # derived values (per-layer types) follow the layer count
    torch.manual_seed(0)
    dtype = torch.float32 if tiny or not torch.cuda.is_available() else torch.bfloat16
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(real).save_pretrained(folder)
    return {
        "architecture": config.architectures[0],
        "parameters": sum(p.numel() for p in model.parameters()),
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_hidden_layers,
        "saved_dtype": str(dtype).removeprefix("torch."),
    }


def lcb_prompts(n: int) -> list[str]:
    rows = [json.loads(line) for line in (FIELD / "lcb41" / "lcb41_atcoder_easy_public.jsonl").open()]
    return [r["question_content"] for r in rows[:n]]


def generation(folder: Path, n: int, max_new_tokens: int, batch_size: int) -> dict:
    import torch

    from codelora.config import SYSTEM_PROMPT
    from codelora.generation.generate import Sampling, generate_batch
    from codelora.model.chat import prompt_ids
    from codelora.model.sources import load_model

    model, tok = load_model(str(folder), dtype="auto", device="auto")
    prompts = [prompt_ids(tok, SYSTEM_PROMPT, p) for p in lcb_prompts(n)]
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    generate_batch(model, tok, prompts[:1], Sampling(max_new_tokens=4), batch_size=1, progress=False)  # warm-up
    t0 = time.perf_counter()
    gens = generate_batch(
        model, tok, prompts, Sampling(greedy=True, max_new_tokens=max_new_tokens), batch_size=batch_size, progress=False
    )
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    new = sum(g.new_tokens for g in gens)
    res = {
        "prompts": len(prompts),
        "prompt_tokens_mean": round(sum(map(len, prompts)) / len(prompts), 1),
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "seconds": round(seconds, 2),
        "new_tokens": new,
        "tokens_per_second": round(new / seconds, 2),
    }
    if torch.cuda.is_available():
        res["peak_cuda_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return res


def rl_row(folder: Path, tiny: bool) -> dict:
    """`codelora rl` from a fresh adapter on a run of the bundled sample set (prepared with this model's tokenizer);
    steps/s and reward throughput from RUN/rl/logs/metrics.jsonl."""
    from codelora.config import load_config
    from codelora.data.prepare import prepare_run
    from codelora.training.grpo import rl

    steps, gens, prompts, new = (1, 2, 2, 8) if tiny else (3, 8, 2, 256)
    with tempfile.TemporaryDirectory(prefix="codelora-gpu-rl-") as tmp:
        run_dir = Path(tmp) / "run"
        cfg = load_config("demo", [f"model.source={folder}", "model.dtype=auto", f"output_dir={tmp}"])
        prepare_run(cfg, run_dir)
        overrides = [
            f"rl.steps={steps}", f"rl.num_generations={gens}", f"rl.prompts_per_step={prompts}",
            f"rl.max_new_tokens={new}", "rl.save_steps=1000",
        ]  # fmt: skip
        t0 = time.perf_counter()
        result = rl(run_dir, "base", overrides)
        wall = time.perf_counter() - t0
        rows = [json.loads(line) for line in (run_dir / "rl" / "logs" / "metrics.jsonl").read_text().splitlines()]
    elapsed = rows[-1]["elapsed_seconds"]
    graded = sum(r["completions"] for r in rows)
    reward_s = sum(r["reward_seconds"] for r in rows)
    return {
        "steps": result["global_step"],
        "completions_per_step": gens * prompts,
        "max_new_tokens": new,
        "completion_length_mean": round(sum(r["completion_length"] for r in rows) / len(rows), 1),
        "train_seconds": round(elapsed, 2),
        "wall_seconds_with_setup": round(wall, 2),
        "steps_per_second": round(result["global_step"] / elapsed, 4),
        "completions_graded": graded,
        "reward_seconds": round(reward_s, 3),
        "reward_completions_per_second": round(graded / reward_s, 1) if reward_s else None,
        "reward_share_of_step": round(reward_s / elapsed, 3),
        "verdicts": dict(sum((Counter(r["verdicts"] or {}) for r in rows), Counter())),
    }


SEPARATE = """
import json, sys, time
t0 = time.perf_counter()
from peft import PeftModel
from codelora.generation.generate import Sampling, generate_batch
from codelora.model.sources import load_model
folder, adapter, n, max_new, bs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
prompts = json.loads(sys.argv[6])
model, tok = load_model(folder, dtype="auto", device="auto")
model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
t1 = time.perf_counter()
gens = generate_batch(model, tok, prompts, Sampling(greedy=True, max_new_tokens=max_new), batch_size=bs, progress=False)
print(json.dumps({"load_seconds": t1 - t0, "generate_seconds": time.perf_counter() - t1,
                  "new_tokens": sum(g.new_tokens for g in gens)}))
"""


def checkpoint_generation(folder: Path, n: int, max_new_tokens: int, batch_size: int) -> dict:
    """train.execution_eval at one checkpoint: the live PEFT model in this process vs a separate process."""
    import subprocess

    import torch

    from codelora.config import SYSTEM_PROMPT, LoraConfig
    from codelora.generation.generate import Sampling, generate_batch
    from codelora.model.chat import prompt_ids
    from codelora.model.sources import load_model
    from codelora.training.sft import add_lora

    model, tok = load_model(str(folder), dtype="auto", device="auto")
    model = add_lora(model, LoraConfig(), gradient_checkpointing=True)  # as training holds it
    adapter = folder.parent / "adapter"
    model.save_pretrained(adapter)
    prompts = [prompt_ids(tok, SYSTEM_PROMPT, p) for p in lcb_prompts(n)]
    sampling = Sampling(greedy=True, max_new_tokens=max_new_tokens)
    model.eval()
    generate_batch(model, tok, prompts[:1], Sampling(max_new_tokens=4), batch_size=1, progress=False)  # warm-up
    t0 = time.perf_counter()
    generate_batch(model, tok, prompts, sampling, batch_size=batch_size, progress=False)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    in_process = time.perf_counter() - t0
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    t0 = time.perf_counter()
    args = [str(folder), str(adapter), str(n), str(max_new_tokens), str(batch_size), json.dumps(prompts)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", SEPARATE, *args], capture_output=True, text=True, env=env, check=True)
    separate = time.perf_counter() - t0
    inner = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "prompts": len(prompts),
        "max_new_tokens": max_new_tokens,
        "in_process_seconds": round(in_process, 2),
        "separate_process_seconds": round(separate, 2),
        "separate_process_load_seconds": round(inner["load_seconds"], 2),
        "separate_process_generate_seconds": round(inner["generate_seconds"], 2),
        "in_process_vs_separate": round(separate / in_process, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="tiny model on CPU: checks the script, not the numbers")
    ap.add_argument("--steps", type=int, help="optimizer steps per training run (default 4; --tiny 1)")
    ap.add_argument("--out", help="results JSON (default bench/results/gpu.json; --tiny: gpu_tiny.json)")
    args = ap.parse_args()
    if not (FIELD / "qwen25_tokenizer" / "config.json").is_file():
        sys.exit(
            f"error: {FIELD}/qwen25_tokenizer/config.json not found: the script needs the field data beside the checkout"
        )

    import torch
    import train_throughput as tt

    started = time.perf_counter()
    out = Path(args.out or ROOT / "bench" / "results" / ("gpu_tiny.json" if args.tiny else "gpu.json"))
    steps = args.steps or (1 if args.tiny else 4)
    accum = 2 if args.tiny else 16
    n_prompts, max_new = (2, 8) if args.tiny else (41, 512)
    with tempfile.TemporaryDirectory(prefix="codelora-gpu-") as tmp:
        folder = Path(tmp) / "model"
        model_info = build_model(folder, args.tiny)
        print(f"model: {model_info}", file=sys.stderr, flush=True)
        run_args = argparse.Namespace(
            model=str(folder), steps=steps, accum=accum, no_gc=False, no_trl=True, only=["a", "b", "c", "g"],
            # tiny: 4 training problems and no eval splits (no step-0 eval): the test checks the script, fast
            set=["data.split=by_problem", "data.valid_fraction=0", "data.test_fraction=0", "data.max_problems=4"]
            if args.tiny
            else [],
            matmul_size=256 if args.tiny else 8192, out=str(out),
        )  # fmt: skip
        training = tt.summarize(run_args, tt.run_all(run_args))
        gen = generation(folder, n_prompts, max_new, batch_size=n_prompts if args.tiny else 16)
        rl_doc = rl_row(folder, args.tiny)
        at_checkpoint = checkpoint_generation(folder, n_prompts, max_new, batch_size=n_prompts if args.tiny else 16)
    runs = training["runs"]
    fits = qlora_fits = None
    if training["memory_metric"] == "peak_cuda_allocated_mb":
        original, qlora = runs["a"], runs["g"]
        fits = {
            "original_recipe_peak_reserved_mb": original["peak_cuda_reserved_mb"],
            "limit_mb": EIGHT_GIB_MB,
            "fits": original["peak_cuda_reserved_mb"] <= EIGHT_GIB_MB,
        }
        qlora_fits = {
            "qlora_peak_reserved_mb": qlora["peak_cuda_reserved_mb"],
            "qlora_peak_allocated_mb": qlora["peak_cuda_allocated_mb"],
            "codelora_default_peak_reserved_mb": runs["b"]["peak_cuda_reserved_mb"],
            "limit_mb": EIGHT_GIB_MB,
            "fits": qlora["peak_cuda_reserved_mb"] <= EIGHT_GIB_MB,
        }
    doc = {
        "tiny": args.tiny,
        "device_name": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "model": model_info,
        "training": training,
        "original_recipe_fits_8gib": fits,
        "qlora_fits_8gib": qlora_fits,
        "generation": gen,
        "rl": rl_doc,
        "checkpoint_generation": at_checkpoint,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp_out, out)
    mem = training["memory_metric"]
    print(f"| run | batch | real tokens/s | vs codelora | {mem} | MFU |\n|---|---|---|---|---|---|")
    for r in runs.values():
        print(
            f"| {r['label']} | {r['batch']} | {r['real_tokens_per_second']} | "
            f"{r['real_tokens_per_second_vs_codelora']}x | {r[mem]} | {r['mfu']:.1%} |"
        )
    print(f"original recipe fits in 8 GiB: {fits}")
    print(f"QLoRA (nf4) fits in 8 GiB: {qlora_fits}")
    print(f"generation: {gen}")
    print(
        f"| RL (GRPO, {rl_doc['completions_per_step']} completions/step) | {rl_doc['steps_per_second']} steps/s | "
        f"reward {rl_doc['reward_completions_per_second']} completions/s ({rl_doc['reward_share_of_step']:.0%} of "
        "the step) |"
    )
    print(f"generation at a checkpoint (train.execution_eval), in-process vs separate process: {at_checkpoint}")
    print(f"wrote {out} ({doc['wall_seconds']} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
