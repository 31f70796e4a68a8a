"""Load, validate, split by problem and tokenize a dataset into a run folder, with a data report.

Writes into run_dir: split.json, data_report.json, plots/lengths.png and data/{train,valid,test}.jsonl
(one tokenized example per line: input_ids, labels, problem_key). Every file is written atomically.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

from codelora.config import RunConfig
from codelora.data.format import fit_example
from codelora.data.load import dataset_sha256, load_rows
from codelora.data.split import SPLITS, normalise_problem, split_rows, write_split_json
from codelora.errors import UserError
from codelora.files import atomic_write_text, require_writable
from codelora.model.chat import encode_prompt_completion
from codelora.run.layout import RunFolder, has_training, portable_config, save_run_config

__all__ = ["data_fingerprint", "load_tokenized", "prepare", "prepare_run", "print_report", "split_notes"]

# Bump when the tokenized format written below changes, so older caches are rebuilt rather than reused.
# 2: the system turn is always sent (codelora.model.chat), so an empty data.system_prompt is an empty system turn.
FORMAT_VERSION = 2


def data_fingerprint(cfg: RunConfig) -> str:
    """sha256 of everything that decides the prepared rows: the data config and the tokenizer's model source."""
    doc = {
        "format_version": FORMAT_VERSION,
        "data": dataclasses.asdict(cfg.data),
        "model_source": cfg.model.source,
        "model_revision": cfg.model.revision,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _percentiles(values: list[int]) -> dict[str, int]:
    if not values:
        return {"p50": 0, "p90": 0, "p99": 0, "max": 0}
    s = sorted(values)

    def pct(q: float) -> int:  # nearest-rank
        return s[max(0, math.ceil(q * len(s)) - 1)]

    return {"p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99), "max": s[-1]}


def prepare_run(cfg: RunConfig, run_dir: Path) -> dict[str, Any]:
    """`codelora prepare`: the run folder's config.yaml, then its prepared data with the model's own tokenizer
    (pad rule from codelora.model.chat); returns the data report (see `prepare`). `train` takes the same steps itself,
    with the tokenizer of the model it has loaded.

    Raises UserError before anything is written for a run that already has checkpoints (they were trained on its
    data) or a folder that cannot be written, and for bad data (see `prepare`).
    """
    from codelora.model.chat import set_pad_token
    from codelora.model.sources import load_tokenizer

    run_dir = Path(run_dir)
    cfg = portable_config(cfg, run_dir)
    if has_training(run_dir):  # before config.yaml is touched: the checkpoints were trained on this run's data
        raise UserError(
            f"{run_dir} already has checkpoints; `prepare` would replace the split and data they were trained on. "
            "Use another --run folder"
        )
    require_writable(run_dir, "run folder")
    d = cfg.data
    # the data and the tokenizer are checked before anything is written: a bad row leaves no run folder behind
    loaded = load_rows(d.dataset, target=d.target, skip_bad_rows=d.skip_bad_rows)
    tokenizer = load_tokenizer(cfg.model.source, cfg.model.revision)
    set_pad_token(tokenizer)
    run_dir.mkdir(parents=True, exist_ok=True)
    report = prepare(cfg, run_dir, tokenizer, loaded=loaded)
    save_run_config(cfg, run_dir)
    return report


def prepare(cfg: RunConfig, run_dir: Path, tokenizer: Any, loaded: tuple | None = None) -> dict[str, Any]:
    """Prepare cfg.data into run_dir; return the data report (also written as data_report.json).

    loaded: what `load_rows` already returned for cfg.data (it is read again when None).
    A run that has checkpoints is refused: its split and data are what those checkpoints were trained on.
    """
    if has_training(run_dir):
        raise UserError(
            f"{run_dir} already has checkpoints trained on its prepared data; preparing again would change the split "
            "under them. Use another --run folder"
        )
    d = cfg.data
    run_dir = Path(run_dir)
    run = RunFolder(run_dir)
    rows, load_report = loaded or load_rows(d.dataset, target=d.target, skip_bad_rows=d.skip_bad_rows)

    # identical statement + target rows: keep the first
    seen: set[tuple[str, str]] = set()
    unique, dup_lines = [], []
    for row in rows:
        sig = (normalise_problem(row["input"]), row[d.target].strip())
        if sig in seen:
            dup_lines.append(row.get("_line"))
            continue
        seen.add(sig)
        unique.append(row)

    split = split_rows(
        unique,
        seed=d.split_seed,
        valid_fraction=d.valid_fraction,
        test_fraction=d.test_fraction,
        source=load_report["source"],
        mode=d.split,
        conflicts=d.split_conflicts,
    )
    splits = split.rows
    limited = None
    if d.max_problems is not None:
        keys = sorted({r["problem_key"] for r in splits["train"]})
        if len(keys) > d.max_problems:
            keep = set(keys[: d.max_problems])
            limited = {"max_problems": d.max_problems, "problems_before": len(keys)}
            splits["train"] = [r for r in splits["train"] if r["problem_key"] in keep]

    split_meta = split.meta()
    split_doc = write_split_json(
        run.split_file,
        splits,
        meta={
            "source": load_report["source"],
            "mode": d.split,
            "seed": d.split_seed,
            "valid_fraction": d.valid_fraction,
            "test_fraction": d.test_fraction,
            "max_problems": d.max_problems,
            **split_meta,
        },
    )

    per_split: dict[str, Any] = {}
    file_hashes: dict[str, str] = {}
    all_prompt: list[int] = []
    all_completion: list[int] = []
    all_total: list[int] = []
    for name in SPLITS:
        examples, prompt_lens, comp_lens = [], [], []
        over = 0
        for row in splits[name]:
            prompt, comp = encode_prompt_completion(tokenizer, d.system_prompt, row["input"], row[d.target])
            prompt_lens.append(len(prompt))
            comp_lens.append(len(comp))
            all_total.append(len(prompt) + len(comp))
            if len(prompt) + len(comp) > d.max_length:
                over += 1
            ex = fit_example(prompt, comp, d.max_length, d.overlong)
            if ex is None:
                continue
            examples.append({"input_ids": ex["input_ids"], "labels": ex["labels"], "problem_key": row["problem_key"]})
        all_prompt += prompt_lens
        all_completion += comp_lens
        kept = len(examples)
        per_split[name] = {
            "rows": len(splits[name]),
            "problems": split_doc["splits"][name]["n_problems"],
            "examples": kept,
            "over_max_length": over,
            "dropped": len(splits[name]) - kept,
            "truncated": over - (len(splits[name]) - kept) if d.overlong == "truncate" else 0,
            "prompt_tokens": _percentiles(prompt_lens),
            "completion_tokens": _percentiles(comp_lens),
        }
        text = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in examples)
        atomic_write_text(run.data_file(name), text)
        file_hashes[name] = hashlib.sha256(text.encode("utf-8")).hexdigest()

    plot = _plot_lengths(run.plot("lengths"), all_prompt, all_completion, all_total, d.max_length)
    report = {
        "source": load_report["source"],
        "kind": load_report["kind"],
        "target": d.target,
        "max_length": d.max_length,
        "overlong": d.overlong,
        "rows_read": load_report["rows_read"],
        "rows_valid": load_report["rows"],
        "bad_rows": load_report["bad_rows"],
        "duplicates": {"count": len(dup_lines), "lines": dup_lines[:20], "action": "dropped (first kept)"},
        "max_problems": limited,
        # how the splits were made: the method, problems moved to valid (keys in split.json), conflicts
        "split": {
            "mode": d.split,
            "method": split_meta["method"],
            "column_problems": split_meta["column_problems"],
            "moved_to_valid": split_meta["moved_to_valid"],
            "conflicts": split_meta["conflicts"],
        },
        "splits": per_split,
        "prompt_tokens": _percentiles(all_prompt),
        "completion_tokens": _percentiles(all_completion),
        "over_max_length": sum(s["over_max_length"] for s in per_split.values()),
        "over_max_length_action": d.overlong,
        "split_file": run.split_file.name,
        "plot": plot,
        # what train checks before reusing data/ (written last, with this report)
        "config_sha256": data_fingerprint(cfg),
        "source_sha256": dataset_sha256(d.dataset),
        "files_sha256": file_hashes,
    }
    atomic_write_text(run.data_report_file, json.dumps(report, indent=1) + "\n")
    return report


def _plot_lengths(path: Path, prompt: list[int], comp: list[int], total: list[int], max_length: int) -> str:
    import matplotlib  # a required dependency (pyproject.toml)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    bins = 40
    for vals, label in ((prompt, "prompt"), (comp, "completion"), (total, "prompt + completion")):
        if vals:
            ax.hist(vals, bins=bins, alpha=0.5, label=label)
    ax.axvline(max_length, color="red", linestyle="--", label=f"max_length={max_length}")
    ax.set_xlabel("tokens")
    ax.set_ylabel("examples")
    ax.set_title("Token lengths")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return f"{path.parent.name}/{path.name}"  # relative to the run folder


def load_tokenized(run_dir: Path, split: str) -> list[dict[str, Any]]:
    """Read data/{split}.jsonl written by prepare."""
    path = RunFolder(run_dir).data_file(split)
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def split_notes(report: dict[str, Any]) -> list[str]:
    """Lines that say how the splits were made: method, the validation top-up and the conflicting problems."""
    sp = report.get("split")
    if not sp:
        return []
    lines = [f"split: {sp['method']} (data.split={sp['mode']})"]
    col = sp.get("column_problems")
    if col:
        lines[0] += f"; the column had {col['train']}/{col['valid']}/{col['test']} train/valid/test problems"
    moved = sp["moved_to_valid"]
    if moved["problems"]:
        lines.append(
            f"validation topped up: {moved['problems']} problems ({moved['rows']} rows) moved from train to valid "
            "to reach data.valid_fraction (listed in split.json; data.valid_fraction=0 keeps the column's)"
        )
    conflicts = sp["conflicts"]
    if conflicts["problems"]:
        to = {}
        for c in conflicts["list"]:
            to[c["to"]] = to.get(c["to"], 0) + 1
        where = ", ".join(f"{n} to {name}" for name, n in sorted(to.items()))
        lines.append(
            f"split conflicts: {conflicts['problems']} problems ({conflicts['rows']} rows) had rows in several "
            f"splits; all their rows went to the most held-out one ({where}; listed in data_report.json)"
        )
    return lines


def print_report(report: dict[str, Any]) -> None:
    """Print the per-split table (examples, problems, tokens, length percentiles) and the notes, with rich."""
    head = ["split", "rows", "problems", "examples", "over max", "prompt p50/p90/max", "completion p50/p90/max"]
    body = []
    for name, s in report["splits"].items():
        p, c = s["prompt_tokens"], s["completion_tokens"]
        body.append(
            [
                name,
                str(s["rows"]),
                str(s["problems"]),
                str(s["examples"]),
                str(s["over_max_length"]),
                f"{p['p50']}/{p['p90']}/{p['max']}",
                f"{c['p50']}/{c['p90']}/{c['max']}",
            ]
        )
    notes = [
        f"source: {report['source']} ({report['rows_read']} rows read, {len(report['bad_rows'])} bad, "
        f"{report['duplicates']['count']} duplicates dropped)",
        f"over max_length={report['max_length']}: {report['over_max_length']} ({report['overlong']})",
        *split_notes(report),
    ]
    from rich.console import Console  # a required dependency (pyproject.toml)
    from rich.table import Table

    table = Table(title="data")
    for h in head:
        table.add_column(h)
    for r in body:
        table.add_row(*r)
    console = Console()
    console.print(table)
    for n in notes:
        console.print(n)
