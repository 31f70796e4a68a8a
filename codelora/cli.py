"""The `codelora` command: parse arguments, call one function per subcommand."""

from __future__ import annotations

import argparse
import os
import sys

from codelora.errors import UserError


def _add_config_args(p: argparse.ArgumentParser, default: str = "demo") -> None:
    p.add_argument("--config", default=default, help=f"preset name or YAML file (default: {default})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config field; repeatable")


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

    from codelora.config import load_config, save_config
    from codelora.data.format import ensure_pad_token
    from codelora.models import load_tokenizer
    from codelora.prepare import prepare, print_report

    cfg = load_config(a.config, a.overrides)
    if a.run_name:
        cfg.run_name = a.run_name
    run_dir = Path(cfg.output_dir) / cfg.run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    tokenizer = load_tokenizer(cfg.model.source, cfg.model.revision)
    ensure_pad_token(tokenizer)
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
    result = train(cfg, run_dir, resume=a.resume)
    if result.get("interrupted"):
        print(f"interrupted at step {result['global_step']}; checkpoint saved. Continue with --resume", file=sys.stderr)
    print(json.dumps(result, indent=2, default=str))


def _cmd_score(a: argparse.Namespace) -> None:
    import json

    from codelora.score import score

    ks = tuple(int(x) for x in a.k.split(",")) if a.k else (1,)
    summary = score(a.benchmark, a.samples, a.out, a.problems, a.timeout, a.memory_mb, a.workers, ks, a.tolerance)
    print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, (dict, list))}, indent=2))


def build_parser() -> argparse.ArgumentParser:
    from codelora import __version__

    parser = argparse.ArgumentParser(
        prog="codelora",
        description="LoRA-fine-tune a code LLM and pick the best checkpoint by running the code it writes.",
    )
    parser.add_argument("--version", action="version", version=f"codelora {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("generate", help="answer one problem with a model (streams the answer, prints the code)")
    _add_config_args(p)
    p.add_argument("--model", help="model source (default: the config's model.source)")
    p.add_argument("--adapter", help="LoRA adapter folder to apply")
    p.add_argument("--prompt", help="problem text")
    p.add_argument("--problem-file", help="file holding the problem text")
    p.set_defaults(func=_cmd_generate)

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
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("score", help="grade already-generated programs in the sandbox (no model loaded)")
    p.add_argument("--benchmark", required=True, choices=["humaneval", "livecodebench", "heldout"])
    p.add_argument("--samples", required=True, help="samples file in the benchmark's own format")
    p.add_argument("--problems", help="problems file (LiveCodeBench JSONL; default for humaneval: the bundled 164)")
    p.add_argument("--out", required=True, help="folder for results.jsonl and summary.json")
    p.add_argument("--timeout", type=float, help="seconds per test (default: 6 livecodebench, 3 humaneval)")
    p.add_argument("--memory-mb", type=int, default=1024, help="address-space limit per program (default 1024)")
    p.add_argument("--workers", type=int, help="parallel programs (default: number of cores)")
    p.add_argument("--k", help="comma-separated k for pass@k (default: 1)")
    p.add_argument("--tolerance", type=float, help="heldout only: absolute float tolerance (default: exact, as LiveCodeBench)")
    p.set_defaults(func=_cmd_score)

    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        args.func(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
