"""The `codelora` command: flags made from the option dataclasses in codelora/commands.py, one function per
subcommand that only wires the options to its stage."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import logging
import os
import signal
import sys
import threading

from codelora.commands import (
    CompareArgs,
    DownloadArgs,
    EvaluateArgs,
    ExportArgs,
    GenerateArgs,
    PrepareArgs,
    PushArgs,
    ReportArgs,
    RLArgs,
    ScoreArgs,
    TrainArgs,
)
from codelora.errors import UserError
from codelora.flags import add_flags, from_args
from codelora.run.layout import RunFolder
from codelora.safetext import terminal_safe


def _fields(a: object, *leave_out: str) -> dict:
    """The options' fields as keyword arguments of the stage function (same names), less `leave_out`."""
    return {f.name: getattr(a, f.name) for f in dataclasses.fields(a) if f.name not in leave_out}


def _cmd_download(a: DownloadArgs) -> None:
    from codelora.download import download

    print(download(a.name, a.repo_type, a.revision))


def _run_config(a: PrepareArgs):
    """(config, run folder) of prepare/train. The run folder is --run, else <output_dir>/<run_name> of the config.
    `train --resume` without --config reads the run's own config.yaml (with --set applied); a --config given with
    --resume is checked against the checkpoint's config by train."""
    from pathlib import Path

    from codelora.config import load_config
    from codelora.run.layout import load_run_config, require_run

    resume = getattr(a, "resume", False) or getattr(a, "resume_from", None) is not None
    if resume and a.config is None:
        run_dir = Path(a.run) if a.run is not None else _default_run_dir(a.overrides)
        require_run(run_dir, resume=True)  # "no such run folder; runs in outputs: ..."
        cfg = load_run_config(run_dir, a.overrides)
    else:
        cfg = load_config(a.config or "demo", a.overrides)
        run_dir = Path(a.run) if a.run is not None else Path(cfg.output_dir) / cfg.run_name
    # the run folder is where the run is, whatever its saved config.yaml said when it was written elsewhere
    cfg.output_dir, cfg.run_name = str(run_dir.parent), run_dir.name
    return cfg, run_dir


def _default_run_dir(overrides):
    from pathlib import Path

    from codelora.config import load_config

    cfg = load_config("demo", overrides)
    return Path(cfg.output_dir) / cfg.run_name


def _cmd_prepare(a: PrepareArgs) -> int:
    from codelora.data.prepare import prepare_run, print_report

    if a.check is not None:
        return _check_dataset(a)
    cfg, run_dir = _run_config(a)
    print_report(prepare_run(cfg, run_dir))
    run = RunFolder(run_dir)
    print(f"wrote {run.split_file}, {run.data_report_file.name}, {run.plot('lengths').relative_to(run.root)}")


def _check_dataset(a: PrepareArgs) -> int:
    """`prepare --check FILE`: one `FILE:LINE: reason` line per bad row (exit 2), else a summary (exit 0)."""
    from codelora.config import load_config
    from codelora.data.check import check_dataset

    target = load_config(a.config or "demo", a.overrides).data.target
    errors, notes = check_dataset(a.check, target)
    for line in notes:
        print(terminal_safe(line))
    for line in errors:
        print(f"error: {terminal_safe(line)}", file=sys.stderr)
    if errors:
        print(f"{len(errors)} bad row(s); fix them (see docs/data.md, Dataset format) or set data.skip_bad_rows=true")
        return 2
    print("ok: the file matches the row schema")
    return 0


def _cmd_train(a: TrainArgs) -> int:
    from codelora.training.sft import train

    cfg, run_dir = _run_config(a)
    from codelora.evaluation.evaluate import evaluate  # pass@1 while training (train.execution_eval)

    result = train(
        cfg, run_dir, resume=a.resume, resume_from=a.resume_from, reset_optimizer=a.reset_optimizer, evaluator=evaluate
    )
    return _training_outcome(result, run_dir, "step", "to train longer, raise train.max_steps or train.epochs")


def _cmd_rl(a: RLArgs) -> int:
    from codelora.training.grpo import rl

    result = rl(a.run, a.start, a.overrides, resume=a.resume, resume_from=a.resume_from)
    return _training_outcome(result, result.get("rl_dir"), "RL step", "to train longer, raise rl.steps")


def _training_outcome(result: dict, where, step: str, longer: str) -> int:
    """Print a training method's result (SFT, RL) and give the exit status: 0 when finished or nothing was left to
    do; 128 + the signal when interrupted, so that a `set -e` script does not go on to evaluate and export an
    unfinished run."""
    import json

    if result.get("already_finished"):
        print(f"{where}: already finished at {step} {result['global_step']}; nothing to do ({longer})", file=sys.stderr)
        return 0
    print(json.dumps(result, indent=2, default=str))
    if result.get("interrupted"):
        print(
            f"interrupted at {step} {result['global_step']}; checkpoint saved. Continue with --resume", file=sys.stderr
        )
        return 128 + int(result.get("signal") or signal.SIGINT)
    return 0


def _cmd_generate(a: GenerateArgs) -> None:
    from codelora.config import load_config
    from codelora.generation.generate import run_generate

    run_generate(load_config(a.config or "demo", a.overrides), a.model, a.adapter, a.prompt, a.problem_file)


def _cmd_evaluate(a: EvaluateArgs) -> None:
    from codelora.evaluation.evaluate import evaluate, evaluate_model, print_table

    if a.run is not None:
        results = evaluate(a.run, a.benchmark, a.models, a.options())
    else:
        summary = evaluate_model(a.model, a.benchmark, a.out, a.adapter, a.config or "demo", opts=a.options())
        results = {summary["model"]: summary}
    print_table(results)


def _cmd_compare(a: CompareArgs) -> None:
    from codelora.selection.compare import compare_command

    compare_command(a)


def _cmd_report(a: ReportArgs) -> None:
    from codelora.publish.report import write_report

    html_path, md_path = write_report(a.run, a.benchmark)
    print(f"wrote {md_path}")
    print(f"report: {html_path}")


def _cmd_export(a: ExportArgs) -> None:
    from codelora.publish.export import export

    export(a.run, a.out, **_fields(a, "run", "out"))


def _cmd_push(a: PushArgs) -> None:
    from codelora.publish.push import push

    push(a.export, a.repo, private=a.private, dry_run=a.dry_run)


def _cmd_score(a: ScoreArgs) -> None:
    from codelora.evaluation.score import score, summary_lines

    summary = score(a.benchmark, a.samples, a.out, **{**_fields(a, "benchmark", "samples", "out"), "k": tuple(a.k)})
    print("\n".join(summary_lines(summary, a.out)))  # the whole summary is the JSON file


# (command, options dataclass, function), in workflow order: the dataclass's docstring is the command's help and
# its fields are the flags
COMMANDS = [
    ("download", DownloadArgs, _cmd_download),
    ("prepare", PrepareArgs, _cmd_prepare),
    ("train", TrainArgs, _cmd_train),
    ("rl", RLArgs, _cmd_rl),
    ("evaluate", EvaluateArgs, _cmd_evaluate),
    ("compare", CompareArgs, _cmd_compare),
    ("report", ReportArgs, _cmd_report),
    ("export", ExportArgs, _cmd_export),
    ("push", PushArgs, _cmd_push),
    ("generate", GenerateArgs, _cmd_generate),
    ("score", ScoreArgs, _cmd_score),
]


def build_parser() -> argparse.ArgumentParser:
    """The `codelora` parser: one subcommand per entry of COMMANDS, its flags made from the dataclass."""
    from codelora import __version__

    parser = argparse.ArgumentParser(
        prog="codelora",
        allow_abbrev=False,  # a prefix (`--run`) must never silently become a longer flag
        description="LoRA-fine-tune a code LLM and pick the best checkpoint by running the code it writes.",
    )
    parser.add_argument("--version", action="version", version=f"codelora {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, cls, func in COMMANDS:
        summary = cls.__doc__.partition("\n")[0]
        p = sub.add_parser(name, help=summary.rstrip("."), description=summary, allow_abbrev=False)
        add_flags(p, cls)
        p.set_defaults(func=func, options=cls)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status: 0 done, 2 bad input (one `error:` line), 130 interrupted."""
    import warnings

    # peft reads transformers' deprecated `is_gradient_checkpointing` on every adapter load; the warning is about
    # the two libraries, not the user's run, and buried every evaluate/export log.
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    quiet_third_party_logs()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    # SIGTERM unwinds like Ctrl-C: finished work is already on disk (generations are appended batch by batch,
    # results written atomically), and the exit status says the command did not finish.
    old_term = None
    if threading.current_thread() is threading.main_thread():
        old_term = signal.signal(signal.SIGTERM, _terminated)
    try:
        return args.func(from_args(args.options, args)) or 0  # every value checked before the command starts
    except UserError as e:
        print(f"error: {terminal_safe(e)}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise  # anything else is a bug to see in full
        # a folder made read-only after the up-front checks (files.require_writable): the user's to fix, one line
        print(f"error: cannot write {terminal_safe(e.filename)}: {e.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("terminated", file=sys.stderr)
        return 143
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)


# Loggers of libraries whose warnings say nothing about the user's run, each with the reason (errors still show).
QUIET_LOGGERS = {
    # bitsandbytes, imported by peft, tries on CPUs with AVX512-BF16 to fetch an optional 4-bit CPU kernel from the
    # Hub; offline it logs "Failed to load CPU gemm_4bit_forward from kernels-community ..." at every command,
    # though codelora never runs 4-bit matmuls on CPU and bitsandbytes falls back to its own code anyway
    "bitsandbytes.backends.cpu.ops": "optional 4-bit CPU kernel not fetched",
    # ... and the `kernels` package it asks logs "Skipping publisher trust check ... offline mode" first
    "kernels": "publisher trust check skipped offline",
}


def quiet_third_party_logs() -> None:
    """Raise QUIET_LOGGERS to ERROR (their warnings are noise to a codelora user; errors still reach stderr)."""

    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


class Terminated(BaseException):
    """SIGTERM, raised where the process is (like KeyboardInterrupt for SIGINT), so cleanup handlers run."""


def _terminated(signum, frame) -> None:
    raise Terminated()


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
