"""`codelora evaluate`: generate with each model, extract the code, grade it in the sandbox.

Layout (see the team contract): outputs/<run>/eval/<benchmark>/<model>/{generations.jsonl, samples file,
results.jsonl, summary.json}. Every model of one evaluation gets the same prompts (the run's system prompt
and the model's chat template, exactly as in training) and the same decoding settings.

The benchmark (codelora.benchmarks) gives the problems and the user message of each; codelora.model.chat renders it
with the system prompt and chat template. Generations are appended to generations.jsonl (flushed and fsynced) as
each batch finishes, keyed by (model fingerprint, task_id, sample_index, decoding settings, prompt hash): a rerun
after a crash or Ctrl-C generates only what is missing, and a finished evaluation reruns without loading the model.
The code extracted from each answer is graded in memory (`codelora.evaluation.score.grade_samples`); results.jsonl, the
samples file (for `codelora score`) and summary.json are then written once (codelora.run.layout.write_results).
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codelora import benchmarks
from codelora.benchmarks.base import Benchmark, EvalContext, Problem, ProblemSet
from codelora.benchmarks.protocol import Protocol
from codelora.commands import EvalOptions
from codelora.errors import UserError
from codelora.files import require_writable, sha256_file
from codelora.generation import backends
from codelora.generation.backends import Backend, ModelSpec
from codelora.generation.sampling import Generation, Sampling
from codelora.run import layout as runs
from codelora.run import results as run_results

# ---------------------------------------------------------------- models of a run


def _check_adapter_base(adapter: str, source: str) -> None:
    """An adapter trained by codelora records its base in meta.json: refuse another base up front
    (same-shaped bases would otherwise load silently and give meaningless scores)."""
    folder = Path(adapter)
    if not (folder / "adapter_config.json").is_file():
        raise UserError(f"{adapter} is not a LoRA adapter folder (no adapter_config.json)")
    trained_on = ((runs.read_meta(folder).get("config") or {}).get("model") or {}).get("source")
    if trained_on and trained_on != source:
        raise UserError(f"adapter {adapter} was trained on {trained_on}, not on {source}; pass --model {trained_on}")


def _fingerprint(spec: ModelSpec) -> dict:
    """Identifies the model a generation came from: the base source and the adapter's identity (weights + canonical
    adapter_config.json, `runs.adapter_sha256`): a retrained checkpoint or an edited lora_alpha is another model."""
    return {"source": spec.source, "adapter_sha256": runs.adapter_sha256(spec.adapter)}


# ---------------------------------------------------------------- backends


# ---------------------------------------------------------------- one model


def _sampling(cfg, opts: EvalOptions, protocol=None) -> tuple[Sampling, int]:
    """Decoding settings from the config and options; a protocol that fixes them (the course's: greedy, one answer,
    8192 new tokens) refuses options that contradict it."""
    ev = cfg.eval
    if protocol is not None and protocol.greedy:
        clash = [
            f"--{k.replace('_', '-')} {getattr(opts, k)}"
            for k, ok in (("n", 1), ("temperature", 0), ("max_new_tokens", protocol.max_new_tokens))
            if getattr(opts, k) is not None and getattr(opts, k) != ok
        ]
        if clash:
            raise UserError(
                f"--protocol {protocol.name} decodes greedily, one answer per problem, up to "
                f"{protocol.max_new_tokens} new tokens; drop {', '.join(clash)} (or use --protocol livecodebench)"
            )
        seed = opts.seed if opts.seed is not None else ev.seed
        return Sampling(True, 0.0, 1.0, int(protocol.max_new_tokens or ev.max_new_tokens), seed), 1
    n = opts.n  # EvalOptions has checked every value
    temperature = opts.temperature
    top_p = opts.top_p if opts.top_p is not None else ev.top_p
    if temperature is not None:
        greedy = temperature == 0
    elif n > 1 and ev.greedy:
        # n identical greedy answers say nothing about pass@k: sample with the configured temperature
        greedy, temperature = False, ev.temperature
        print(
            f"note: --n {n} without --temperature samples at temperature {temperature}, top_p {top_p}", file=sys.stderr
        )
    else:
        greedy, temperature = ev.greedy or ev.temperature == 0, ev.temperature
    max_new = opts.max_new_tokens if opts.max_new_tokens is not None else ev.max_new_tokens
    seed = opts.seed if opts.seed is not None else ev.seed
    return Sampling(greedy, float(temperature), float(top_p), max_new, seed), n


@dataclass
class _Evaluation:
    """What every model of one evaluation shares: the benchmark, its protocol, the problems and the user message of
    each, the decoding settings, the options."""

    bench: Benchmark
    protocol: Protocol | None
    problems: ProblemSet
    messages: dict[str, str]
    sampling: Sampling
    n: int
    opts: EvalOptions

    @classmethod
    def make(cls, bench: Benchmark, ctx: EvalContext, cfg) -> _Evaluation:
        if ctx.opts.tests is not None and ctx.opts.tests not in bench.test_choices:
            with_tests = [n for n in benchmarks.names() if benchmarks.get(n).test_choices]
            raise UserError(
                f"--tests applies to {', '.join(with_tests)} only, not to {bench.name} (--tests {ctx.opts.tests})"
            )
        pset = bench.problems(ctx)
        messages = {p.id: bench.prompt(p, ctx.protocol) for p in pset.problems}
        sampling, n = _sampling(cfg, ctx.opts, ctx.protocol)
        return cls(bench, ctx.protocol, pset, messages, sampling, n, ctx.opts)


def _evaluate_one(
    spec: ModelSpec,
    ev: _Evaluation,
    out: Path,
    cfg,
    run_dir: Path | None,
    backend: Backend,
    grade: bool = True,
) -> dict:
    """Generate (or reuse) every answer of one model, extract the code, grade it in memory; write the samples file,
    results.jsonl and summary.json (codelora.run.layout.write_results); return the summary.

    backend: the evaluation's generation backend (codelora.generation.backends.Backend). grade=False stops
    once every answer is in the generation store and returns {model, step, graded: False, generation: {generated,
    reused, new_tokens, seconds}} without writing results (a later call grades them and generates nothing)."""
    from codelora.benchmarks.base import Sample
    from codelora.evaluation.score import grade_samples
    from codelora.generation.extract import extract
    from codelora.model.chat import prompt_ids, render_prompt, stop_token_ids
    from codelora.model.sources import load_tokenizer

    bench, protocol, problems, sampling, n, opts = (
        ev.bench,
        ev.protocol,
        ev.problems.problems,
        ev.sampling,
        ev.n,
        ev.opts,
    )
    rule = bench.extraction(protocol)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = load_tokenizer(spec.source, cfg.model.revision)
    system = cfg.data.system_prompt
    prompt_sha = {}
    for p in problems:
        prompt_sha[p.id] = hashlib.sha256(render_prompt(tokenizer, system, ev.messages[p.id]).encode()).hexdigest()
    all_prompts = hashlib.sha256("".join(f"{p.id}\0{prompt_sha[p.id]}\n" for p in problems).encode()).hexdigest()

    generator = backend.fingerprint()
    fp = {**_fingerprint(spec), **(generator or {})}  # llama.cpp's answers never pass for transformers' or back
    skey = sampling.key()
    prov = run_results.provenance(
        benchmark=bench.name,
        protocol=protocol.name if protocol is not None else None,
        source=spec.source,
        revision=cfg.model.revision,
        weights_sha256=runs.weights_sha256(spec.adapter),
        adapter_sha256=fp["adapter_sha256"],
        prompts_sha256=all_prompts,
        sampling={**skey, "n": n},
        problems_sha256=_problem_set_sha256(problems, ev.messages, ev.problems.file),
        limit=opts.limit,
        generator=generator,
        tests=ev.problems.tests,
    )
    result_key = run_results.canonical_sha256(prov)
    old = run_results.read_summary(out)
    if old is not None and old.get("result_key") == result_key and runs.ResultFolder(out).results_file.is_file():
        # Everything this evaluation would compute is already stored for exactly these inputs: write nothing.
        print(
            f"{spec.name}: results current (same adapter, prompts, sampling and problems); nothing to do",
            file=sys.stderr,
        )
        return old

    gen_path = runs.ResultFolder(out).generations_file
    existing = run_results.read_generations(gen_path)
    # Another model of this benchmark with byte-identical weights already answered (final is usually the last
    # checkpoint): its answers are this model's too, since the key holds the weights' hash, prompt and sampling.
    for sibling in runs.sibling_generations(out):
        if sibling != gen_path:
            for k, rec in run_results.read_generations(sibling).items():
                existing.setdefault(k, rec)
    wanted = [(p, i) for p in problems for i in range(n)]
    keys = {(p.id, i): run_results.generation_key(fp, p.id, i, skey, prompt_sha[p.id]) for p, i in wanted}
    have = {k: existing[k] for k in keys.values() if k in existing}
    todo = [(p, i) for p, i in wanted if keys[(p.id, i)] not in have]
    print(
        f"{spec.name}: {len(wanted)} answers, {len(wanted) - len(todo)} reused, {len(todo)} to generate",
        file=sys.stderr,
    )
    # Answers borrowed from a sibling with identical weights are copied into this model's own store, so the store
    # alone holds every answer its summary was graded on.
    own = run_results.read_generations(gen_path)
    copied = [have[k] for k in dict.fromkeys(keys.values()) if k in have and k not in own]
    store = run_results.GenerationStore(gen_path)
    store.append(copied)

    backend_name = backend.name
    gen_seconds, load_seconds, new_tokens = 0.0, 0.0, 0
    if todo:
        run_results.clear_results(out)  # old results must not sit next to half-made new generations looking finished
        ids = [prompt_ids(tokenizer, system, ev.messages[p.id]) for p, _ in todo]
        seeds = [sampling.seed + i for _, i in todo]

        def save(done: list[tuple[int, Generation]]) -> None:
            recs = []
            for j, g in done:
                p, i = todo[j]
                got = extract(g.text, rule, entry_point=p.entry_point)
                rec = {
                    "task_id": p.id,
                    "sample_index": i,
                    "prompt_sha256": prompt_sha[p.id],
                    "sampling": sampling.to_dict(),
                    "model": fp,
                    "backend": backend_name,
                    "raw": g.text,
                    "code": got.code,
                    "code_found": got.found,
                    "extraction": got.to_dict(),  # which fenced block was taken and why
                    "new_tokens": g.new_tokens,
                    "stopped": g.stopped,
                }
                have[keys[(p.id, i)]] = rec
                recs.append(rec)
            store.append(recs)

        t_load = time.monotonic()
        try:
            # engine start-up, merging and adapter conversion inside `generate` are counted as generation time
            backend.load(spec)
            t0 = time.monotonic()
            try:
                gens = backend.generate(spec, out, ids, sampling, seeds, stop_token_ids(tokenizer), save)
            finally:
                backend.unload()
        finally:
            store.close()
        gen_seconds = time.monotonic() - t0
        load_seconds = t0 - t_load
        new_tokens = sum(g.new_tokens for g in gens)

    store.close()
    if not grade:
        return {
            "model": spec.name,
            "step": spec.step,
            "graded": False,
            "generation": {
                "generated": len(todo),
                "reused": len(wanted) - len(todo),
                "new_tokens": new_tokens,
                "seconds": round(gen_seconds, 3),
            },
        }
    # a reused answer is graded by this evaluation's extraction rule, whatever rule stored its code (the store
    # itself is never rewritten: its records keep the code their own evaluation graded)
    records = []
    for p, i in wanted:
        r = have[keys[(p.id, i)]]
        got = extract(r["raw"], rule, entry_point=p.entry_point)
        records.append({**r, "code": got.code, "code_found": got.found, "extraction": got.to_dict()})
    samples = [Sample(r["task_id"], r["sample_index"], r["code"], f"{gen_path}") for r in records]
    ks = tuple(sorted({1} | {k for k in (5, 10, n) if k <= n}))
    results, summary = grade_samples(
        bench,
        {p.id: p for p in problems},
        samples,
        bench.settings(protocol=protocol),
        workers=opts.workers,
        k=ks,
        skipped=ev.problems.skipped,
        source=str(gen_path),
    )
    summary.update(
        {
            "model": spec.name,
            "step": spec.step,
            "source": spec.source,
            "adapter": runs.relative_to_run(spec.adapter, run_dir),
            "provenance": prov,
            "result_key": result_key,
            "sampling": {
                "n": n,
                "temperature": sampling.temperature,
                "top_p": sampling.top_p,
                "max_new_tokens": sampling.max_new_tokens,
                "seed": sampling.seed,
                "greedy": sampling.greedy,
            },
            "prompts_sha256": all_prompts,
            "system_prompt": system,
            "benchmark_info": ev.problems.info,
            # how people call each problem (title or the dataset's own id): compare and report show these
            "problem_labels": {p.id: bench.label(p) for p in problems},
            "generation": {
                "backend": backend_name,
                **({"gguf": str(backend.gguf)} if getattr(backend, "gguf", None) else {}),
                "generated": len(todo),
                "reused": len(wanted) - len(todo),
                "new_tokens": new_tokens,
                "load_seconds": round(load_seconds, 3),
                "seconds": round(gen_seconds, 3),
                "tokens_per_second": round(new_tokens / gen_seconds, 2) if gen_seconds > 0 else None,
                "code_found": sum(1 for r in records if r["code_found"]),
                "stopped": sum(1 for r in records if r.get("stopped")),
                "answer_tokens_mean": round(sum(r.get("new_tokens", 0) for r in records) / len(records), 1),
            },
        }
    )
    # the samples file is for `codelora score` (re-grading with other limits); this evaluation graded in memory
    samples_file = (bench.samples_file, bench.samples_text([(r["task_id"], r["code"]) for r in records]))
    run_results.write_results(out, results, summary, samples_file)
    return summary


def _problem_set_sha256(problems: list[Problem], messages: dict[str, str], problems_file: Path | None) -> str:
    """The problem set's identity: problem ids and user messages in order, plus the problems file's bytes (its
    tests)."""
    h = hashlib.sha256()
    for p in problems:
        h.update(f"{p.id}\0{hashlib.sha256(messages[p.id].encode()).hexdigest()}\n".encode())
    if problems_file is not None and Path(problems_file).is_file():
        h.update(sha256_file(problems_file).encode())
    return h.hexdigest()


# ---------------------------------------------------------------- entry points


def _backend(cfg, opts: EvalOptions, adapters: list[str], source: str) -> Backend:
    """The evaluation's generation backend (`--backend`, else the run config's `eval.backend`)."""
    return backends.create(opts.backend or cfg.eval.backend, cfg, opts, adapters, source)


def evaluate(
    run_dir: str | Path,
    benchmark: str,
    models: list[str] | str | None = None,
    opts: EvalOptions | None = None,
    generator: Any = None,
    grade: bool = True,
    **options: Any,
) -> dict[str, dict]:
    """Evaluate models of a run on a benchmark; returns model name -> summary dict (see `_evaluate_one`).

    generator: a backend object to generate with instead of the configured one (codelora.training.execution_eval's
    live training model: same keys, same results as `--backend hf`); it is not closed here. grade=False: generate
    the missing answers only (each model's dict then says graded: False); a later call grades without generating.

    models: names (base, final, checkpoint-<step>, all) as a list or comma string; default base,final.
    opts: `codelora.commands.EvalOptions` (sampling, problem selection, protocol, grading; fields documented
    there; the course protocol's results go to eval/livecodebench-course/); `options` are EvalOptions fields
    overriding opts. Raises UserError for a bad value, a folder that is not a run, an unknown model name, or
    problems that cannot be graded.
    """
    opts = dataclasses.replace(opts or EvalOptions(), **options)
    from codelora.data.split import load_split_json

    bench = benchmarks.get(benchmark)
    run = runs.RunFolder(run_dir)
    run_dir = run.root
    if not run_dir.is_dir():
        raise UserError(f"run folder not found: {run_dir}")
    if not run.split_file.is_file():
        raise UserError(f"{run_dir} has no split.json; is it a run folder (written by `codelora train`)?")
    if not run.config_file.is_file():
        raise UserError(f"{run_dir} has no config.yaml; is it a run folder (written by `codelora train`)?")
    require_writable(run.eval_root, "run folder")
    cfg = run.config(opts.overrides)
    split_doc = load_split_json(run.split_file)
    chosen, _ = run.select(models, default="base,final")
    protocol = bench.protocol(opts.protocol)
    eval_dir = run.eval_dir(benchmark, protocol and protocol.name)
    with run.lock(f"evaluate {benchmark}"):
        ev = _Evaluation.make(bench, EvalContext(opts, eval_dir, run_dir, cfg, split_doc, protocol), cfg)
        if generator is not None:
            backend = generator
        else:
            backend = _backend(cfg, opts, [m.adapter for m in chosen if m.adapter], cfg.model.source)
        results: dict[str, dict] = {}
        try:
            for m in chosen:
                spec = ModelSpec(m.name, cfg.model.source, m.adapter, int(m.step))
                if spec.adapter:
                    _check_adapter_base(spec.adapter, spec.source)
                results[spec.name] = _evaluate_one(spec, ev, eval_dir / spec.name, cfg, run_dir, backend, grade)
        finally:
            if generator is None:  # a caller's generator is the caller's to close
                backend.close()
    return results


def evaluate_model(
    source: str | None,
    benchmark: str,
    out: str | Path,
    adapter: str | None = None,
    config: str = "demo",
    name: str | None = None,
    opts: EvalOptions | None = None,
    **options: Any,
) -> dict:
    """Evaluate one model without a run (`--model SOURCE [--adapter PATH] --out DIR`); returns its summary.

    The system prompt, dtype and device come from `config` (a preset or YAML file) plus `opts.overrides`;
    opts/options as for `evaluate`.
    """
    opts = dataclasses.replace(opts or EvalOptions(), **options)
    from codelora.config import load_config
    from codelora.model.sources import parse_source

    bench = benchmarks.get(benchmark)
    cfg = load_config(config, opts.overrides)
    source = source or cfg.model.source
    parse_source(source)  # a bad source fails before any benchmark work
    if adapter:
        _check_adapter_base(adapter, source)
    out = Path(out)
    require_writable(out, "--out folder")
    protocol = bench.protocol(opts.protocol)
    with runs.run_lock(out, f"evaluate {benchmark}"):
        ev = _Evaluation.make(bench, EvalContext(opts, out, None, cfg, None, protocol), cfg)
        step = int(runs.read_meta(adapter).get("step", 0)) if adapter else 0
        spec = ModelSpec(name or (Path(adapter).name if adapter else "base"), source, adapter, step)
        backend = _backend(cfg, opts, [adapter] if adapter else [], source)
        try:
            return _evaluate_one(spec, ev, out, cfg, None, backend)
        finally:
            backend.close()


def print_table(results: dict[str, dict]) -> None:
    """One line per model: step, problems, pass@k, code found, generated/reused, generation speed."""
    head = f"{'model':<18} {'step':>6} {'problems':>8} {'pass@1':>7} {'code':>7} {'new/reused':>11} {'tok/s':>7}"
    print(head)
    for name, s in results.items():
        g = s.get("generation", {})
        tps = g.get("tokens_per_second")
        print(
            f"{name:<18} {s['step']:>6} {s['problems']:>8} {s.get('pass@1', 0.0):>7.3f} "
            f"{g.get('code_found', 0):>3}/{s['samples']:<3} {g.get('generated', 0):>5}/{g.get('reused', 0):<5} "
            f"{(f'{tps:.1f}' if tps else '-'):>7}"
        )
