"""The `codelora` command: parse arguments, call one function per subcommand."""

from __future__ import annotations

import argparse
import os
import sys

from codelora.errors import UserError
from codelora.safetext import terminal_safe


def _add_config_args(p: argparse.ArgumentParser, default: str | None = "demo", config_help: str | None = None) -> None:
    p.add_argument("--config", default=default, help=config_help or f"preset name or YAML file (default: {default})")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config field (e.g. eval.max_new_tokens=256); repeatable",
    )


def _cmd_generate(a: argparse.Namespace) -> None:
    from codelora.config import load_config
    from codelora.generate import run_generate

    cfg = load_config(a.config, a.overrides)
    run_generate(cfg, a.model, a.adapter, a.prompt, a.problem_file)


def _cmd_download(a: argparse.Namespace) -> None:
    from codelora.download import download

    print(download(a.name, a.repo_type, a.revision))


def _cmd_prepare(a: argparse.Namespace) -> None:
    from pathlib import Path

    from codelora.chat import set_pad_token
    from codelora.config import load_config, save_config
    from codelora.models import load_tokenizer
    from codelora.prepare import prepare, print_report

    cfg = load_config(a.config, a.overrides)
    if a.run_name:
        cfg.run_name = a.run_name
    run_dir = Path(cfg.output_dir) / cfg.run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    tokenizer = load_tokenizer(cfg.model.source, cfg.model.revision)
    set_pad_token(tokenizer)
    report = prepare(cfg, run_dir, tokenizer)
    print_report(report)
    print(f"wrote {run_dir}/split.json, data_report.json, plots/lengths.png")


def _cmd_train(a: argparse.Namespace) -> None:
    import json
    from pathlib import Path

    from codelora.config import load_config
    from codelora.train import train

    cfg = load_config(a.config, a.overrides)
    if a.run_name:
        cfg.run_name = a.run_name
    run_dir = Path(cfg.output_dir) / cfg.run_name
    result = train(cfg, run_dir, resume=a.resume, resume_from=a.resume_from, reset_optimizer=a.reset_optimizer)
    if result.get("interrupted"):
        print(f"interrupted at step {result['global_step']}; checkpoint saved. Continue with --resume", file=sys.stderr)
    print(json.dumps(result, indent=2, default=str))


def _cmd_score(a: argparse.Namespace) -> None:
    import json

    from codelora.score import score

    ks = tuple(int(x) for x in a.k.split(",")) if a.k else (1,)
    summary = score(
        a.benchmark,
        a.samples,
        a.out,
        a.problems,
        a.timeout,
        a.memory_mb,
        a.workers,
        ks,
        a.tolerance,
        protocol=a.protocol,
        output_limit_mb=a.output_limit_mb,
        skip_untested=a.skip_untested,
    )
    print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, (dict, list))}, indent=2))


def _cmd_compare(a: argparse.Namespace) -> None:
    from codelora.compare import compare_command

    # `--models base,final` (as evaluate takes them) and `--models base final` both work.
    models = [m for item in a.models for m in item.split(",") if m] if a.models else None
    compare_command(a.run, a.runs, a.benchmark, models, a.force, a.out, a.problems, not a.no_evaluate, a.limit)


def _cmd_report(a: argparse.Namespace) -> None:
    from codelora.report import write_report

    html_path, md_path = write_report(a.run, a.benchmark)
    print(f"wrote {md_path}")
    print(f"report: {html_path}")


def _cmd_evaluate(a: argparse.Namespace) -> None:
    from codelora.evaluate import evaluate, evaluate_model, print_table

    opts = {
        k: getattr(a, k)
        for k in (
            "n",
            "temperature",
            "top_p",
            "max_new_tokens",
            "seed",
            "batch_size",
            "backend",
            "vllm_mode",
            "limit",
            "preset",
            "platform",
            "difficulty",
            "date_from",
            "date_to",
            "problems",
            "release",
            "workers",
            "allow_contamination",
            "protocol",
            "skip_untested",
        )
    }
    opts["overrides"] = a.overrides
    if (a.run is None) == (a.model is None and a.out is None):
        raise UserError("give either --run RUN, or --model SOURCE [--adapter PATH] --out DIR")
    if a.run is not None:
        if a.model or a.adapter or a.out:
            raise UserError("--model/--adapter/--out are for evaluating without a run; with --run use --models")
        results = evaluate(a.run, a.benchmark, a.models, **opts)
    else:
        if a.models:
            raise UserError("--models needs --run; without a run give --model SOURCE [--adapter PATH]")
        if not a.out:
            raise UserError("without --run, give --out DIR for the results")
        summary = evaluate_model(a.model, a.benchmark, a.out, a.adapter, a.config or "demo", **opts)
        results = {summary["model"]: summary}
    print_table(results)


def _cmd_export(a: argparse.Namespace) -> None:
    from codelora.export import export

    export(
        a.run,
        a.out,
        checkpoint=a.checkpoint,
        merge=a.merge,
        dtype=a.dtype,
        force=a.force,
        max_shard_size=a.max_shard_size,
        if_base=a.if_base,
    )


def _cmd_push(a: argparse.Namespace) -> None:
    from codelora.push import push

    push(a.export, a.repo, private=a.private, dry_run=a.dry_run)


def build_parser() -> argparse.ArgumentParser:
    from codelora import __version__
    from codelora.protocol import PROTOCOLS

    parser = argparse.ArgumentParser(
        prog="codelora",
        description="LoRA-fine-tune a code LLM and pick the best checkpoint by running the code it writes.",
    )
    parser.add_argument("--version", action="version", version=f"codelora {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("download", help="pre-fetch a hub model or dataset into the local cache")
    p.add_argument("name", help="hub id, or deep / diverse")
    p.add_argument("--repo-type", choices=["model", "dataset"], help="default: dataset for deep/diverse, else model")
    p.add_argument("--revision")
    p.set_defaults(func=_cmd_download)

    p = sub.add_parser("prepare", help="load, validate, split (by problem) and tokenize a dataset into a run folder")
    _add_config_args(p)
    p.add_argument("--run-name", help="run folder name under output_dir (default: the config's run_name)")
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser("train", help="LoRA-train a run: logs, plots, every checkpoint kept, resumable")
    _add_config_args(p)
    p.add_argument("--run-name", help="run folder name under output_dir (default: the config's run_name)")
    p.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint")
    p.add_argument(
        "--resume-from",
        metavar="CHECKPOINT",
        help="continue from this complete checkpoint (checkpoint-N or N); later checkpoints and final/ are redone",
    )
    p.add_argument(
        "--reset-optimizer",
        action="store_true",
        help="resume a checkpoint that has no optimizer state: its weights, a fresh optimizer, the schedule continues",
    )
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="generate with models of a run (or any model), grade the code, pass@k")
    p.add_argument("--run", help="run folder (outputs/<run>); its config.yaml gives system prompt, model and sampling")
    p.add_argument("--benchmark", required=True, choices=["heldout", "livecodebench", "humaneval"])
    p.add_argument("--models", help="comma list of base, final, checkpoint-N, or all (default: base,final)")
    p.add_argument("--model", help="without --run: model source to evaluate")
    p.add_argument("--adapter", help="without --run: LoRA adapter folder to apply")
    p.add_argument("--out", help="without --run: folder for generations, results and summary")
    _add_config_args(p, None, "without --run: preset or YAML for system prompt and sampling (default: demo)")
    p.add_argument("--n", type=int, help="samples per problem (default 1; n>1 samples for pass@k)")
    p.add_argument("--temperature", type=float, help="0 = greedy (the default for n=1); >0 samples")
    p.add_argument("--top-p", type=float, help="nucleus sampling (default: eval.top_p, 0.9)")
    p.add_argument("--max-new-tokens", type=int, help="default: eval.max_new_tokens")
    p.add_argument("--seed", type=int, help="sample i of every problem uses seed + i (default: eval.seed)")
    p.add_argument("--batch-size", type=int, help="prompts generated together (default: eval.batch_size)")
    p.add_argument("--backend", choices=["hf", "vllm"], help="generation backend (default: eval.backend, hf)")
    p.add_argument("--vllm-mode", choices=["merge", "lora"], help="vllm: merge the adapter or serve it as LoRA")
    p.add_argument("--limit", type=int, help="only the first K problems (after filters)")
    p.add_argument("--preset", choices=["atcoder-easy"], help="livecodebench: atcoder, easy, contests 2408..2502")
    p.add_argument("--platform", help="livecodebench: atcoder, codeforces, leetcode (comma list)")
    p.add_argument("--difficulty", help="livecodebench: easy, medium, hard (comma list)")
    p.add_argument("--date-from", help="livecodebench: first contest month, YYMM")
    p.add_argument("--date-to", help="livecodebench: last contest month, YYMM (inclusive)")
    p.add_argument(
        "--problems",
        help="livecodebench: local code_generation_lite JSONL; humaneval: problems file; "
        "heldout without --run: {task_id, prompt, tests} JSONL",
    )
    p.add_argument("--release", help="livecodebench hub release (default release_v5)")
    p.add_argument(
        "--protocol",
        choices=list(PROTOCOLS),
        help="livecodebench: how models are asked and graded (default livecodebench; course = the course's grader: "
        "raw statement, greedy, 8192 new tokens, first python block, public tests, exact output; see README)",
    )
    p.add_argument(
        "--skip-untested",
        action="store_true",
        help="leave out problems without tests (livecodebench, heldout --problems), listed in summary.json "
        "(default: refuse them)",
    )
    p.add_argument("--workers", type=int, help="parallel programs when grading (default: number of cores)")
    p.add_argument(
        "--allow-contamination",
        action="store_true",
        help="evaluate even if problems are in the training split (results then overstate the model)",
    )
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("compare", help="grade checkpoints on the same problems, choose the best, flag overfitting")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--run", help="run folder: compare its base model, checkpoints and final")
    g.add_argument("--runs", nargs="+", metavar="RUN", help="several run folders: their selected models side by side")
    p.add_argument("--benchmark", default="heldout", choices=["heldout", "livecodebench", "humaneval"])
    p.add_argument(
        "--models",
        nargs="+",
        metavar="NAME",
        help="base, checkpoint-<step>, final, or all; spaces or commas (default: all)",
    )
    p.add_argument("--force", action="store_true", help="compare despite different base/problems/sampling (marked)")
    p.add_argument("--out", help="--runs only: output folder (default: <parent>/compare-<run names>)")
    p.add_argument("--problems", nargs="+", metavar="ID", help="problems to show side by side (default: disagreements)")
    p.add_argument("--no-evaluate", action="store_true", help="use existing results only; never run evaluate")
    p.add_argument("--limit", type=int, help="models evaluated now: first N problems (default: as already evaluated)")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("report", help="write RUN/report.html (self-contained) and RUN/report.md")
    p.add_argument("--run", required=True, help="run folder")
    p.add_argument(
        "--benchmark",
        choices=["heldout", "livecodebench", "humaneval"],
        help="benchmark of the comparison sections (default: the one in selection.json)",
    )
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("export", help="export a checkpoint as a LoRA adapter or a merged, verified model + model card")
    p.add_argument("--run", required=True, help="run folder (outputs/<run>)")
    p.add_argument(
        "--checkpoint",
        default="best",
        help="best (the run's selection.json), final, a step number or checkpoint-<step> (default: best)",
    )
    p.add_argument("--merge", action="store_true", help="merge the adapter into the base weights (checked on logits)")
    p.add_argument(
        "--dtype",
        choices=["bf16", "fp16", "fp32"],
        help="merged weights' dtype (default: the run's model.dtype; auto -> bf16)",
    )
    p.add_argument("--out", required=True, help="export folder (written as OUT.tmp-xxxx, then renamed)")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out folder")
    p.add_argument("--max-shard-size", default="2GB", help="largest safetensors shard of a merged model (default 2GB)")
    p.add_argument(
        "--if-base",
        choices=["error", "final"],
        default="error",
        help="when --checkpoint best finds the base model selected: stop (default) or export final",
    )
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("push", help="upload an export folder to the Hugging Face Hub (token: HF_TOKEN or login)")
    p.add_argument("--export", required=True, help="folder written by `codelora export`")
    p.add_argument("--repo", required=True, help="Hub model repo, USER/NAME (created if needed)")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--dry-run", action="store_true", help="list files and sizes, check the card; no network")
    p.set_defaults(func=_cmd_push)

    p = sub.add_parser("generate", help="answer one problem with a model (streams the answer, prints the code)")
    _add_config_args(p)
    p.add_argument("--model", help="model source (default: the config's model.source)")
    p.add_argument("--adapter", help="LoRA adapter folder to apply")
    p.add_argument("--prompt", help="problem text")
    p.add_argument("--problem-file", help="file holding the problem text")
    p.set_defaults(func=_cmd_generate)

    p = sub.add_parser("score", help="grade already-generated programs in the sandbox (no model loaded)")
    p.add_argument("--benchmark", required=True, choices=["humaneval", "livecodebench", "heldout"])
    p.add_argument("--samples", required=True, help="samples file in the benchmark's own format")
    p.add_argument("--problems", help="problems file (LiveCodeBench JSONL; default for humaneval: the bundled 164)")
    p.add_argument("--out", required=True, help="folder for results.jsonl and summary.json")
    p.add_argument(
        "--protocol",
        choices=list(PROTOCOLS),
        help="livecodebench only: grading rules (default livecodebench; course = the course's grader, see README)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        help="seconds per test (default: the protocol's for livecodebench, 3 humaneval, 6 heldout)",
    )
    p.add_argument("--memory-mb", type=int, help="address-space limit per program in MiB (default 1024; course 512)")
    p.add_argument(
        "--output-limit-mb", type=float, default=64, help="stdout read per program; more is output_limit_exceeded (64)"
    )
    p.add_argument(
        "--skip-untested", action="store_true", help="leave out problems without tests (default: refuse the input)"
    )
    p.add_argument("--workers", type=int, help="parallel programs (default: number of cores)")
    p.add_argument("--k", help="comma-separated k for pass@k (default: 1)")
    p.add_argument(
        "--tolerance", type=float, help="heldout only: absolute float tolerance (default: exact, as LiveCodeBench)"
    )
    p.set_defaults(func=_cmd_score)

    return parser


def main(argv: list[str] | None = None) -> int:
    import warnings

    # peft reads transformers' deprecated `is_gradient_checkpointing` on every adapter load; the warning is about
    # the two libraries, not the user's run, and buried every evaluate/export log.
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        args.func(args)
    except UserError as e:
        print(f"error: {terminal_safe(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
