"""Generation throughput: one prompt at a time (the original project's way) vs codelora's batched generation.

The embedded SmolLM2-135M-Instruct (CPU, fp32) answers the same N problems of the bundled sample set (the
test split first, then valid) with the run's system prompt and chat template, greedy, max_new_tokens M:

* one by one: `model.generate` on each unpadded prompt, as the original project's run.py did;
* batched: `codelora.generation.generate.generate_batch` (prompts sorted by length, left padding, KV cache, batch B);
* llama.cpp (`llama_cpp_python`, installed with the embedded model's package) on the GGUF the embedded model is
  converted from (Q4_1 weights), the same prompt token ids (codelora's chat template; the converted tokenizer
  equals llama.cpp's), greedy sampler, same cap and stop tokens, as many threads as torch uses, one prompt at a
  time with the KV cache reset between prompts. The binding generates one sequence per context, so there is no
  batched llama.cpp row.

All stop at the end-of-turn token. Reported: new tokens (through the stop token) per second of wall time for
each, ratios, how many answers are identical to codelora's batched ones (greedy HF one by one: they should be,
up to float noise; llama.cpp: quantised weights, so also the mean shared-prefix share = common leading
characters / the longer answer's characters). Writes bench/results/generation_throughput.json. Run it alone
(`flock /tmp/codelora-bench.lock ...`). --no-hf-single skips the slow one-by-one HF row (e.g. at 512 tokens).

Usage: .venv/bin/python bench/generation_throughput.py [--n 8] [--max-new-tokens 128] [--batch-size 8]
       [--no-hf-single] [--no-llama-cpp]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def problems(n: int) -> list[str]:
    from codelora.data.load import load_rows

    rows, _ = load_rows("sample")
    out: list[str] = []
    for split in ("test", "valid", "train"):
        for r in rows:
            if r.get("split") == split and r["input"] not in out:
                out.append(r["input"])
    return out[:n]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="embedded:smollm2-135m-instruct")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--no-hf-single", action="store_true", help="skip one-prompt-at-a-time HF generation")
    ap.add_argument("--no-llama-cpp", action="store_true", help="skip llama.cpp")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "generation_throughput.json"))
    args = ap.parse_args()

    import torch

    from codelora.config import SYSTEM_PROMPT
    from codelora.generation.generate import Sampling, generate_batch
    from codelora.model.chat import prompt_ids, stop_token_ids
    from codelora.model.sources import load_model

    model, tok = load_model(args.model, dtype="fp32", device="cpu")
    prompts = [prompt_ids(tok, SYSTEM_PROMPT, p) for p in problems(args.n)]
    sampling = Sampling(greedy=True, max_new_tokens=args.max_new_tokens)
    stops = stop_token_ids(tok)
    pad = tok.pad_token_id if tok.pad_token_id is not None else stops[0]

    # warm-up (first-call allocations) on a short prompt, not timed
    generate_batch(model, tok, prompts[:1], Sampling(max_new_tokens=4), batch_size=1, progress=False)

    single = None
    if not args.no_hf_single:
        t0 = time.perf_counter()
        single_ids, single_texts = [], []
        for p in prompts:
            ids = torch.tensor([p])
            with torch.no_grad():
                out = model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=args.max_new_tokens,
                    do_sample=False,
                    eos_token_id=stops,
                    pad_token_id=pad,
                )
            single_ids.append(out[0, len(p) :].tolist())
            single_texts.append(tok.decode(single_ids[-1], skip_special_tokens=True))
        single = _row(sum(map(len, single_ids)), single_texts, time.perf_counter() - t0)

    t0 = time.perf_counter()
    gens = generate_batch(model, tok, prompts, sampling, batch_size=args.batch_size, progress=False)
    batched_texts = [g.text for g in gens]
    batched = _row(sum(g.new_tokens for g in gens), batched_texts, time.perf_counter() - t0)

    llama = None
    if not args.no_llama_cpp:
        llama_ids, seconds = llama_cpp_generate(prompts, args.max_new_tokens, stops, torch.get_num_threads())
        texts = [tok.decode(x, skip_special_tokens=True) for x in llama_ids]
        llama = _row(sum(map(len, llama_ids)), texts, seconds)

    result = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["bench/generation_throughput.py", *sys.argv[1:]]),
        "model": args.model,
        "device": "cpu",
        "dtype": "fp32 (HF); Q4_1 GGUF (llama.cpp)",
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "platform": platform.platform(),
        "prompts": len(prompts),
        "prompt_tokens": [len(p) for p in prompts],
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "one_by_one": single,
        "batched": batched,
        "llama_cpp_one_by_one": llama,
        "vllm": "not measured (no GPU on this machine)",
    }
    for name in ("one_by_one", "llama_cpp_one_by_one"):
        row = result[name]
        if row is not None:
            row["agreement_with_batched"] = _agreement(row.pop("texts"), batched_texts)
            row["tokens_per_second_vs_batched"] = round(row["tokens_per_second"] / batched["tokens_per_second"], 2)
    batched.pop("texts")
    if single is not None:  # kept under its old names for the earlier runs' comparison
        result["identical_answers"] = single["agreement_with_batched"]["identical"]
        result["ratio_tokens_per_second"] = round(batched["tokens_per_second"] / single["tokens_per_second"], 2)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(args.out + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, args.out)
    print("| way | seconds | new tokens | tokens/s | vs codelora batched | identical | shared prefix |")
    print("|---|---|---|---|---|---|---|")
    for way in ("one_by_one", "batched", "llama_cpp_one_by_one"):
        r = result[way]
        if r is None:
            continue
        agree = r.get("agreement_with_batched", {})
        print(
            f"| {way} | {r['seconds']} | {r['new_tokens']} | {r['tokens_per_second']} | "
            f"{r.get('tokens_per_second_vs_batched', 1.0)}x | {agree.get('identical', '-')} | "
            f"{agree.get('mean_shared_prefix', '-')} |"
        )


def _row(new_tokens: int, texts: list[str], seconds: float) -> dict:
    return {
        "seconds": round(seconds, 2),
        "new_tokens": new_tokens,
        "tokens_per_second": round(new_tokens / seconds, 2),
        "texts": texts,
    }


def _agreement(ours: list[str], reference: list[str]) -> dict:
    """Identical answers and the mean share of leading characters two answers have in common (of the longer one)."""
    shares = []
    for a, b in zip(ours, reference, strict=True):
        common = len(os.path.commonprefix([a, b]))
        shares.append(common / max(len(a), len(b), 1))
    return {
        "identical": f"{sum(a == b for a, b in zip(ours, reference, strict=True))}/{len(ours)}",
        "mean_shared_prefix": round(sum(shares) / len(shares), 3),
        "shared_prefix": [round(x, 3) for x in shares],
    }


def llama_cpp_generate(prompts: list[list[int]], max_new_tokens: int, stops: list[int], threads: int):
    """Greedy new token ids of each prompt by llama.cpp on the embedded GGUF (stop token included, like HF's),
    one prompt at a time; and the seconds it took (model loading and a warm-up excluded)."""
    from llama_cpp import Llama

    from codelora.model.sources import embedded_gguf

    n_ctx = max(len(p) for p in prompts) + max_new_tokens + 8
    llm = Llama(
        model_path=str(embedded_gguf("smollm2-135m-instruct")),
        n_ctx=n_ctx,
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )

    def one(p: list[int], cap: int) -> list[int]:
        llm.reset()  # no KV-cache reuse between prompts: each answer costs what it would alone
        out = []
        for t in llm.generate(p, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0):
            out.append(int(t))
            if t in stops or len(out) >= cap:
                break
        return out

    one(prompts[0], 4)  # warm-up, not timed
    t0 = time.perf_counter()
    ids = [one(p, max_new_tokens) for p in prompts]
    seconds = time.perf_counter() - t0
    llm.close()
    return ids, seconds


if __name__ == "__main__":
    main()
