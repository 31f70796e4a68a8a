"""LoRA dropout, PEFT's nn.Dropout against codelora's sparse dropout (train.sparse_dropout), interleaved in one
process: the same model, adapter and rows, forward + backward of one optimizer step's examples, the two
implementations taking turns `--rounds` times, so that a noisy machine slows both alike.

Model: the embedded SmolLM2-135M (fp32, SDPA, gradient checkpointing as in training), LoRA r16 on all linear layers,
dropout --p (the recipe's 0.05). Rows: --examples rows of the bundled sample set as codelora prepares them, trained
as one-example micro-batches (codelora's default) and, with --packed, also packed into one row (train.packing).
Reports the median seconds per step of each and the ratio (PEFT / sparse: > 1 means sparse is faster).

Usage: setsid bench/priority.sh .venv/bin/python bench/dropout_lever.py [--rounds 5] [--packed] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--examples", type=int, default=4)
    ap.add_argument("--p", type=float, default=0.05)
    ap.add_argument("--packed", action="store_true", help="also time the step's examples packed into one row")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "dropout_lever.json"))
    args = ap.parse_args()

    import torch
    from torch import nn

    from codelora.config import load_config
    from codelora.data.prepare import load_tokenized, prepare
    from codelora.model.chat import set_pad_token
    from codelora.model.sources import load_model
    from codelora.training.lora_dropout import SparseDropout
    from codelora.training.sft import add_lora

    cfg = load_config("demo", [f"lora.dropout={args.p}", "data.split=by_problem", "data.valid_fraction=0"])
    model, tok = load_model(cfg.model.source, dtype="fp32", device="cpu", attn_implementation="sdpa")
    set_pad_token(tok)
    model.config.use_cache = False
    with tempfile.TemporaryDirectory() as tmp:
        prepare(cfg, Path(tmp), tok)
        rows = list(load_tokenized(Path(tmp), "train"))[: args.examples]
    model = add_lora(model, cfg.lora, True, seed=0)
    model.train()
    dropouts = [(d, k) for m in model.modules() if isinstance(getattr(m, "lora_dropout", None), nn.ModuleDict)
                for d in [m.lora_dropout] for k in d]  # fmt: skip
    impls = {"peft": lambda: nn.Dropout(args.p), "sparse": lambda: SparseDropout(args.p)}

    def use(name: str) -> None:
        for d, k in dropouts:
            d[k] = impls[name]()

    def step(packed: bool) -> float:
        batches = []
        if packed:
            ids = torch.tensor([sum((r["input_ids"] for r in rows), [])])
            labels = torch.tensor([sum((r["labels"] for r in rows), [])])
            pos = torch.tensor([sum((list(range(len(r["input_ids"]))) for r in rows), [])])
            batches.append({"input_ids": ids, "labels": labels, "position_ids": pos})
        else:
            for r in rows:
                batches.append({"input_ids": torch.tensor([r["input_ids"]]), "labels": torch.tensor([r["labels"]])})
        t0 = time.perf_counter()
        for b in batches:
            model(**b).loss.backward()
        model.zero_grad(set_to_none=True)
        return time.perf_counter() - t0

    layouts = ["micro-batches"] + (["packed"] if args.packed else [])
    times: dict[str, dict[str, list[float]]] = {lay: {"peft": [], "sparse": []} for lay in layouts}
    for lay in layouts:  # one warm-up step each
        for name in impls:
            use(name)
            step(lay == "packed")
    for _ in range(args.rounds):
        for lay in layouts:
            for name in impls:
                use(name)
                times[lay][name].append(step(lay == "packed"))
    tokens = sum(len(r["input_ids"]) for r in rows)
    doc = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "model": cfg.model.source,
        "p": args.p,
        "examples": args.examples,
        "tokens_per_step": tokens,
        "rounds": args.rounds,
        "torch": torch.__version__,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "layouts": {},
    }
    for lay in layouts:
        med = {name: statistics.median(v) for name, v in times[lay].items()}
        doc["layouts"][lay] = {
            "median_seconds_peft": round(med["peft"], 3),
            "median_seconds_sparse": round(med["sparse"], 3),
            "speed_ratio_sparse_vs_peft": round(med["peft"] / med["sparse"], 3),
            "seconds": {k: [round(x, 3) for x in v] for k, v in times[lay].items()},
        }
        print(f"{lay}: PEFT {med['peft']:.2f} s, sparse {med['sparse']:.2f} s a step of {tokens} tokens: "
              f"{med['peft'] / med['sparse']:.3f}x", flush=True)  # fmt: skip
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
