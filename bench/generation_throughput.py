"""Generation throughput: one prompt at a time (the original project's way) vs codelora's batched generation.

The embedded SmolLM2-135M-Instruct (CPU, fp32) answers the same N problems of the bundled sample set (the
test split first, then valid) with the run's system prompt and chat template, greedy, max_new_tokens M:

* one by one: `model.generate` on each unpadded prompt, as the original project's run.py did;
* batched: `codelora.generate.generate_batch` (prompts sorted by length, left padding, KV cache, batch B).

Both stop at the end-of-turn token. Reported: new tokens (through the stop token) per second of wall time for
each, their ratio, and how many answers are identical (greedy: they should be, up to float noise).
Writes bench/results/generation_throughput.json. Run it alone (`flock /tmp/codelora-bench.lock ...`).

Usage: .venv/bin/python bench/generation_throughput.py [--n 8] [--max-new-tokens 128] [--batch-size 8]
"""

from __future__ import annotations

import argparse
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
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "generation_throughput.json"))
    args = ap.parse_args()

    import torch

    from codelora.config import SYSTEM_PROMPT
    from codelora.generate import Sampling, generate_batch, prompt_ids, stop_token_ids
    from codelora.models import load_model

    model, tok = load_model(args.model, dtype="fp32", device="cpu")
    prompts = [prompt_ids(tok, SYSTEM_PROMPT, p) for p in problems(args.n)]
    sampling = Sampling(greedy=True, max_new_tokens=args.max_new_tokens)
    stops = stop_token_ids(tok)
    pad = tok.pad_token_id if tok.pad_token_id is not None else stops[0]

    # warm-up (first-call allocations) on a short prompt, not timed
    generate_batch(model, tok, prompts[:1], Sampling(max_new_tokens=4), batch_size=1, progress=False)

    t0 = time.perf_counter()
    single_texts, single_tokens = [], 0
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
        new = out[0, len(p) :].tolist()
        single_tokens += len(new)
        single_texts.append(tok.decode(new, skip_special_tokens=True))
    single_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    gens = generate_batch(model, tok, prompts, sampling, batch_size=args.batch_size, progress=False)
    batched_s = time.perf_counter() - t0
    batched_tokens = sum(g.new_tokens for g in gens)

    same = sum(a == g.text for a, g in zip(single_texts, gens, strict=True))
    result = {
        "model": args.model,
        "device": "cpu",
        "dtype": "fp32",
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "prompts": len(prompts),
        "prompt_tokens": [len(p) for p in prompts],
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "one_by_one": {
            "seconds": round(single_s, 2),
            "new_tokens": single_tokens,
            "tokens_per_second": round(single_tokens / single_s, 2),
        },
        "batched": {
            "seconds": round(batched_s, 2),
            "new_tokens": batched_tokens,
            "tokens_per_second": round(batched_tokens / batched_s, 2),
        },
        "identical_answers": same,
        "vllm": "not measured (no GPU on this machine)",
    }
    result["ratio_tokens_per_second"] = round(
        result["batched"]["tokens_per_second"] / result["one_by_one"]["tokens_per_second"], 2
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(args.out + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, args.out)
    print("| way | seconds | new tokens | tokens/s |\n|---|---|---|---|")
    for way in ("one_by_one", "batched"):
        r = result[way]
        print(f"| {way} | {r['seconds']} | {r['new_tokens']} | {r['tokens_per_second']} |")
    print(f"ratio {result['ratio_tokens_per_second']}x, identical answers {same}/{len(prompts)}")


if __name__ == "__main__":
    main()
