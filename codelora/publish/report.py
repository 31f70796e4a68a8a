"""`codelora report`: one page about a run, as self-contained HTML (plots embedded) and as Markdown.

RUN/report.html needs nothing but a browser: inline CSS, PNGs as base64 data URIs, no script, no external URL.
RUN/report.md links the same PNGs relatively (plots/...), for a repository README. Both are written atomically.
The page leads with the answer: selection (the chosen model, why it was chosen, warnings and flags), then the
comparison (table + plot), the matrix (which model solves which problem, by title, the id as a tooltip), sample
answers (side by side, wrapped, with verdicts and the first failing test); then how it came about: training (loss
and lr curves, eval rows), data, config (recipe table + resolved config). A section whose inputs do not exist yet
says "not yet available", so the report works on a run that is still training.
"""

from __future__ import annotations

import base64
import html
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from codelora import benchmarks
from codelora.errors import UserError
from codelora.files import read_json
from codelora.run.layout import (
    RunFolder,
    evaluated,
    load_run_config,
    meta_file,
    read_metrics,
    read_provisional_best,
    require_run,
    run_models,
    update_text,
)
from codelora.run.selection import read_selection, selection_staleness
from codelora.safetext import markdown_code_block, terminal_safe
from codelora.selection.compare import (
    TABLE_HEAD,
    compare_run,
    fmt,
    generator_label,
    label_of,
    protocol_label,
    table_cells,
)

# in page order: the answer first, then what it rests on, then how the run was made
SECTIONS = [
    ("selection", "Selection"),
    ("comparison", "Checkpoint comparison"),
    ("matrix", "Per-problem matrix"),
    ("samples", "Sample answers"),
    ("training", "Training"),
    ("data", "Data"),
    ("config", "Configuration"),
]
TITLES = dict(SECTIONS)
NOT_YET = "not yet available"

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;
color:#1b1f24;line-height:1.45}
h1{border-bottom:2px solid #d0d7de;padding-bottom:.3em}
h2{border-bottom:1px solid #d0d7de;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}th,td{border:1px solid #d0d7de;padding:.25em .6em;
vertical-align:top;text-align:left}th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.best td{background:#dafbe1;font-weight:600}img{max-width:100%;border:1px solid #d0d7de;margin:.5em 0}
pre{background:#f6f8fa;padding:.6em;overflow-x:auto;font-size:.82em;max-height:32em;white-space:pre}
.na{color:#6e7781;font-style:italic}
.flag{background:#fff8c5;border-left:4px solid #d4a72c;padding:.4em .8em;margin:.4em 0}
.ok{color:#1a7f37;font-weight:700;text-align:center}.no{color:#cf222e;text-align:center}.wide{overflow-x:auto}
table.side{table-layout:fixed;width:100%}.side td{overflow-wrap:anywhere}
.side pre{white-space:pre-wrap;overflow-wrap:anywhere;overflow-x:visible}.verdict-accepted{color:#1a7f37;font-weight:700}
.chosen{font-size:1.15em}.warning{background:#ddf4ff;border-left:4px solid #54aeff;padding:.4em .8em;margin:.4em 0}
.verdict-other{color:#cf222e;font-weight:700}nav a{margin-right:1em}.meta{color:#57606a;font-size:.9em}
"""


class _Doc:
    """Builds the HTML and Markdown bodies side by side so both always hold the same sections."""

    def __init__(self) -> None:
        self.html: list[str] = []
        self.md: list[str] = []

    def section(self, sid: str, title: str) -> None:
        self.html.append(f'<h2 id="{sid}">{html.escape(title)}</h2>')
        self.md.append(f"\n## {title}\n")

    def para(self, text: str, cls: str | None = None) -> None:
        c = f' class="{cls}"' if cls else ""
        self.html.append(f"<p{c}>{html.escape(text)}</p>")
        self.md.append(f"_{text}_\n" if cls == "na" else f"{text}\n")

    def not_yet(self, why: str) -> None:
        self.para(f"{NOT_YET}: {why}", "na")

    def flag(self, text: str) -> None:
        self.html.append(f'<div class="flag">{html.escape(text)}</div>')
        self.md.append(f"> **flag:** {text}\n")

    def warning(self, text: str) -> None:
        self.html.append(f'<div class="warning">{html.escape(text)}</div>')
        self.md.append(f"> **warning:** {text}\n")

    def bullets(self, items: list[str]) -> None:
        if items:
            self.html.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>")
            self.md.append("".join(f"- {i}\n" for i in items))

    def table(
        self, head: list[str], rows: list[list[str]], highlight: set[int] = frozenset(), wide: bool = False
    ) -> None:
        h = "".join(f"<th>{html.escape(c)}</th>" for c in head)
        body = []
        for i, r in enumerate(rows):
            cls = ' class="best"' if i in highlight else ""
            body.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>")
        t = f"<table><thead><tr>{h}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        self.html.append(f'<div class="wide">{t}</div>' if wide else t)
        esc = [[str(c).replace("|", "\\|").replace("\n", " ") for c in r] for r in rows]
        md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        md += [
            "| " + " | ".join(f"**{c}**" if i in highlight and c else c for c in r) + " |" for i, r in enumerate(esc)
        ]
        self.md.append("\n".join(md) + "\n")

    def image(self, run_dir: Path, plot: str, alt: str) -> bool:
        """Embed RUN/plots/<plot>.png (the Markdown links it relatively); False when the run has none yet."""
        path = RunFolder(run_dir).plot(plot)
        rel = path.relative_to(run_dir).as_posix()
        if not path.is_file():
            return False
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        self.html.append(f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">')
        self.md.append(f"![{alt}]({rel})\n")
        return True

    def pre(self, text: str, lang: str = "") -> None:
        self.html.append(f"<pre>{html.escape(text)}</pre>")
        self.md.append(markdown_code_block(text, lang))

    def raw(self, html_text: str, md_text: str) -> None:
        self.html.append(html_text)
        self.md.append(md_text)


def _recipe_rows(cfg) -> list[list[str]]:
    m, d, lo, t, e = cfg.model, cfg.data, cfg.lora, cfg.train, cfg.eval
    steps = f"{t.max_steps} (max_steps)" if t.max_steps and t.max_steps > 0 else f"{t.epochs:g} epochs"
    return [
        ["base model", f"{m.source}" + (f" @ {m.revision}" if m.revision else "")],
        [
            "precision / attention",
            f"{m.dtype}, {m.attn_implementation}, gradient checkpointing {'on' if t.gradient_checkpointing else 'off'}",
        ],
        ["data", f"{d.dataset} (target: {d.target}, max length {d.max_length}, overlong: {d.overlong})"],
        ["LoRA", f"r {lo.r}, alpha {lo.alpha}, dropout {lo.dropout:g}, bias {lo.bias}, {' '.join(lo.target_modules)}"],
        ["length", steps],
        ["batch", f"{t.per_device_batch_size} x accumulation {t.gradient_accumulation_steps}"],
        [
            "optimizer",
            f"{t.optim}, lr {t.learning_rate:g} {t.lr_scheduler}, warmup {t.warmup_ratio:g}, "
            f"weight decay {t.weight_decay:g}",
        ],
        ["cadence", f"log every {t.logging_steps}, eval every {t.eval_steps}, save every {t.save_steps} steps"],
        ["seed", str(t.seed)],
        [
            "evaluation sampling",
            ("greedy" if e.greedy else f"temperature {e.temperature:g}, top_p {e.top_p:g}, seed {e.seed}")
            + f", max {e.max_new_tokens} new tokens",
        ],
        ["system prompt", d.system_prompt],
    ]


def _config_section(doc: _Doc, run_dir: Path, cfg) -> None:
    doc.section("config", TITLES["config"])
    doc.table(["field", "value"], _recipe_rows(cfg))
    text = yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    doc.raw("<details><summary>resolved config.yaml</summary>", "<details><summary>resolved config.yaml</summary>\n\n")
    doc.pre(text, "yaml")
    doc.raw("</details>", "\n</details>\n")


def _data_section(doc: _Doc, run_dir: Path) -> None:
    doc.section("data", TITLES["data"])
    path = RunFolder(run_dir).data_report_file
    if not path.is_file():
        doc.not_yet("no data_report.json (written by codelora prepare / train)")
        return
    rep = read_json(path)
    rows = []
    for name, s in (rep.get("splits") or {}).items():
        p, c = s.get("prompt_tokens") or {}, s.get("completion_tokens") or {}
        rows.append(
            [
                name,
                s.get("rows"),
                s.get("problems"),
                s.get("examples"),
                s.get("over_max_length"),
                f"{p.get('p50')}/{p.get('p90')}/{p.get('max')}",
                f"{c.get('p50')}/{c.get('p90')}/{c.get('max')}",
            ]
        )
    doc.table(
        [
            "split",
            "rows",
            "problems",
            "examples",
            "over max",
            "prompt tokens p50/p90/max",
            "completion tokens p50/p90/max",
        ],
        rows,
    )
    dup = (rep.get("duplicates") or {}).get("count", 0)
    doc.bullets(
        [
            f"source: {rep.get('source')} ({rep.get('kind')}), target: {rep.get('target')}",
            f"rows read: {rep.get('rows_read')}, valid: {rep.get('rows_valid')}, "
            f"bad: {len(rep.get('bad_rows') or [])}, "
            f"duplicates dropped: {dup}",
            f"over max_length {rep.get('max_length')}: {rep.get('over_max_length')} ({rep.get('overlong')})",
        ]
    )
    doc.image(run_dir, "lengths", "token lengths")


def _training_section(doc: _Doc, run_dir: Path, metrics: list[dict]) -> None:
    doc.section("training", TITLES["training"])
    models, incomplete = run_models(run_dir)
    ckpts = [m for m in models if m["kind"] == "checkpoint"]
    final = next((m for m in models if m["kind"] == "final"), None)
    last = metrics[-1]["step"] if metrics else None
    if final:
        status = f"finished: final adapter at step {final['step']}, {len(ckpts)} complete checkpoints"
    else:
        status = (
            f"in progress or stopped: last logged step {fmt(last)}, {len(ckpts)} complete checkpoints"
            f" ({', '.join(m['name'] for m in ckpts) or 'none yet'}), no final adapter yet"
        )
    if incomplete:
        status += f"; incomplete (no meta.json): {', '.join(sorted(incomplete))}"
    doc.para(status)
    if not metrics:
        doc.not_yet("no logs/metrics.jsonl yet")
        return
    shown = doc.image(run_dir, "loss", "loss curves")
    shown = doc.image(run_dir, "lr", "learning rate") or shown
    if not shown:
        doc.para(f"loss plots {NOT_YET} (drawn at each eval)", "na")
    evals = [r for r in metrics if r.get("valid_loss") is not None or r.get("test_loss") is not None]
    train_by = {}
    cur = None
    for r in metrics:
        if r.get("train_loss") is not None:
            cur = r["train_loss"]
        train_by[r["step"]] = cur
    rows = [
        [
            r["step"],
            fmt(r.get("epoch"), 2),
            fmt(train_by.get(r["step"]) if r["step"] else None),
            fmt(r.get("valid_loss")),
            fmt(r.get("test_loss")),
        ]
        for r in evals
    ]
    if rows:
        doc.table(["step", "epoch", "train loss (last logged)", "validation loss", "test loss"], rows)
    _execution_eval_rows(doc, run_dir, metrics, train_by)


def _execution_eval_rows(doc: _Doc, run_dir: Path, metrics: list[dict], train_by: dict) -> None:
    """pass@1 of each checkpoint graded while training (train.execution_eval) beside its losses, and the
    provisional best it gave, confirmed or replaced by compare's selection.json."""
    graded = [r for r in metrics if r.get("eval_pass@1") is not None]
    if not graded:
        return
    valid_at = {r["step"]: r for r in metrics if r.get("valid_loss") is not None}
    rows = [
        [
            r["step"],
            r.get("eval_model") or "",
            fmt(r["eval_pass@1"], 3),
            fmt(train_by.get(r["step"]) if r["step"] else None),
            fmt((valid_at.get(r["step"]) or {}).get("valid_loss")),
            fmt(r.get("eval_generation_seconds"), 1),
            fmt(r.get("eval_grading_seconds"), 1),
        ]
        for r in graded
    ]
    bench = graded[0].get("eval_benchmark") or ""
    doc.para(f"pass@1 while training (train.execution_eval: {bench}), one row per graded checkpoint:")
    doc.table(
        ["step", "model", "pass@1", "train loss (last logged)", "validation loss", "generation s", "grading s"], rows
    )
    prov = read_provisional_best(run_dir)
    if not prov:
        return
    text = f"provisional best (during training, {prov.get('metric')} on {prov.get('benchmark')}): {prov.get('best')}"
    text += f" ({fmt(prov.get('value'), 3)})"
    if prov.get("stopped_early"):
        text += f"; training stopped early at step {prov.get('stopped_at_step')}"
    sel = read_selection(run_dir, check=False)
    if isinstance(sel, dict) and sel.get("best") and sel.get("benchmark") == prov.get("benchmark"):
        if sel["best"] == prov.get("best"):
            text += f"; confirmed by codelora compare (selection.json: {sel['best']})"
        else:
            text += f"; replaced by codelora compare (selection.json: {sel['best']})"
    else:
        text += "; not yet confirmed: codelora compare records the selection (selection.json)"
    doc.para(text)


def _rl_part(doc: _Doc, run_dir: Path) -> None:
    """The training section's RL part (only when `codelora rl` ran): where it started, its steps, the reward plot
    (RUN/rl/plots/reward.png) and a per-step table of reward, zero-variance groups, pass rate and verdicts."""
    from codelora.run.layout import method_dir, methods

    for method in (m for m in methods(run_dir) if m == "rl"):  # the GRPO table reads RL's own metric columns
        folder = method_dir(run_dir, method)
        rows = read_metrics(folder)
        if not folder.is_dir():
            continue
        doc.raw(f"<h3>{html.escape(method.upper())} (GRPO)</h3>", f"\n### {method.upper()} (GRPO)\n")
        final = meta_file(RunFolder(folder).final_dir)
        prov = (read_json(final).get("provenance") or {}) if final.is_file() else {}
        start = (prov.get("start") or {}).get("model")
        if final.is_file():
            doc.para(
                f"finished: {method}-final at {method} step {read_json(final).get('step')}, started from {start}, "
                f"rewarded by {prov.get('tests')} tests ({prov.get('problems')} training problems)"
            )
        else:
            doc.para(f"in progress or stopped: last logged {method} step {fmt(rows[-1]['step'] if rows else None)}")
        if not rows:
            doc.not_yet(f"no {method}/logs/metrics.jsonl yet")
            continue
        doc.image(run_dir, f"{method}/plots/reward.png", f"{method} reward by step")
        doc.table(
            ["step", "mean reward", "groups with zero reward std", "pass rate", "completion tokens", "verdicts"],
            [
                [
                    r["step"],
                    fmt(r.get("reward")),
                    fmt(r.get("frac_reward_zero_std"), 2),
                    fmt(r.get("pass_rate"), 2),
                    fmt(r.get("completion_length"), 1),
                    ", ".join(f"{k} {v}" for k, v in (r.get("verdicts") or {}).items()),
                ]
                for r in rows
            ],
        )


def _load_selection(run_dir: Path, benchmark: str | None) -> tuple[dict | None, str]:
    """The run's selection.json (if for the asked benchmark), else one computed now from existing results only."""
    stale = None
    sel = read_selection(run_dir, check=False)
    if isinstance(sel, dict) and "best" in sel and (benchmark is None or sel.get("benchmark") == benchmark):
        stale = selection_staleness(run_dir, sel)
        if stale is None:
            return sel, f"from selection.json ({sel.get('created', '')})"
        benchmark = sel.get("benchmark")
    # (benchmark, LiveCodeBench protocol) pairs with results; a stale selection keeps its own protocol
    if benchmark:
        pairs = [
            (benchmark, sel.get("protocol") if isinstance(sel, dict) and benchmark == sel.get("benchmark") else None)
        ]
    else:
        pairs = [(b, p) for b, p, _ in evaluated(run_dir)]
    why = "no evaluation results yet (codelora evaluate / codelora compare)"
    for b, protocol in pairs:
        try:
            sel = compare_run(run_dir, b, evaluate_missing=False, write=False, protocol=protocol)
        except UserError as e:
            why = str(e)
            continue
        why = "computed for this report from the results so far; run `codelora compare` to record a selection"
        if stale:
            why = f"selection.json is stale ({stale}); " + why
        return sel, why
    if stale:
        why = f"selection.json is stale ({stale}) and {why}"
    return None, why


def _comparison_sections(doc: _Doc, run_dir: Path, sel: dict | None, why: str) -> None:
    """Selection (the answer: chosen model, reasons, warnings, flags), comparison, matrix, samples."""
    if sel is None:
        for sid in ("selection", "comparison", "matrix", "samples"):
            doc.section(sid, TITLES[sid])
            doc.not_yet(why if sid == "selection" else "needs the comparison")
        return
    label = protocol_label(sel.get("protocol")) + generator_label(sel.get("evaluation"))
    doc.section("selection", TITLES["selection"])
    doc.raw(
        f'<p class="chosen">selected: <strong>{html.escape(sel["best"])}</strong></p>',
        f"selected: **{sel['best']}**\n",
    )
    doc.bullets(list(sel.get("reasons") or []))
    for w in sel.get("warnings") or []:
        doc.warning(w.get("message", json.dumps(w)))
    for f in sel.get("flags") or []:
        doc.flag(f.get("message", json.dumps(f)))
    if not sel.get("flags"):
        doc.para("no overfitting flags")
    doc.para(f"benchmark: {sel['benchmark']}{label}; {why}", "meta")
    for n in sel.get("notes") or []:
        doc.para(f"note: {n}", "meta")

    doc.section("comparison", TITLES["comparison"])
    best_rows = {i for i, r in enumerate(sel["table"]) if r["model"] == sel["best"]}
    doc.table(TABLE_HEAD, [table_cells(r) for r in sel["table"]], best_rows)
    if not doc.image(run_dir, "compare", "pass@1 and losses against step"):
        doc.para(f"comparison plot {NOT_YET} (written by codelora compare)", "na")

    doc.section("matrix", TITLES["matrix"])
    m = sel.get("matrix") or {}
    if not m.get("problems"):
        doc.not_yet("no per-problem results")
    else:
        models = list(m["solved"])
        dis = set(m.get("disagreements") or [])
        head = "".join(f"<th>{html.escape(n)}</th>" for n in models)
        rows_html, rows_md = [], []
        # problems by name (the id, often a 40-hex key, is the tooltip and the Markdown's short id column)
        order = sorted(range(len(m["problems"])), key=lambda i: label_of(sel, m["problems"][i]).lower())
        for i in order:
            pid = m["problems"][i]
            name = terminal_safe(label_of(sel, pid))
            cells = [m["solved"][n][i] for n in models]
            tds = "".join(
                '<td class="ok">&#10003;</td>'
                if v
                else ('<td class="no">&#10007;</td>' if v is False else "<td>-</td>")
                for v in cells
            )
            mark = " *" if pid in dis else ""
            rows_html.append(f'<tr><td title="{html.escape(pid)}">{html.escape(name)}{mark}</td>{tds}</tr>')
            md_name = name.replace("|", "\\|")
            rows_md.append(
                f"| {md_name}{mark} | `{_short(pid)}` | "
                + " | ".join("✓" if v else ("✗" if v is False else "-") for v in cells)
                + " |"
            )
        totals = [sum(1 for v in m["solved"][n] if v) for n in models]
        foot = "".join(f"<td><strong>{t}</strong></td>" for t in totals)
        doc.raw(
            f'<div class="wide"><table><thead><tr><th>problem</th>{head}</tr></thead><tbody>{"".join(rows_html)}'
            f"<tr><td><strong>solved</strong></td>{foot}</tr></tbody></table></div>",
            "| problem | id | "
            + " | ".join(models)
            + " |\n|"
            + "---|" * (len(models) + 2)
            + "\n"
            + "\n".join(rows_md)
            + "\n| **solved** | | "
            + " | ".join(str(t) for t in totals)
            + " |\n",
        )
        doc.para(
            f"problems marked * are those the models disagree on ({len(dis)} of {len(m['problems'])}); "
            "hover a name for its id",
            "meta",
        )

    doc.section("samples", TITLES["samples"])
    examples = sel.get("examples") or []
    if not examples:
        doc.not_yet("no answers recorded")
    for ex in examples:
        _example(doc, ex, label_of(sel, ex["problem"]))


def _short(pid: str) -> str:
    """A problem id for a column: a 40-hex problem key cut to 8 characters, any other id whole."""
    return pid[:8] if re.fullmatch(r"[0-9a-f]{40}", pid) else pid


def _failure_text(f: Any) -> str:
    if not f:
        return ""
    if not isinstance(f, dict):
        return str(f)
    parts = [f"verdict: {f.get('verdict')}"]
    for key in ("input", "expected", "got", "detail"):
        if f.get(key):
            parts.append(f"{key}:\n{f[key]}")
    return terminal_safe("\n".join(parts))  # program output may hold escape sequences


def _example(doc: _Doc, ex: dict, name: str) -> None:
    pid = terminal_safe(ex["problem"])
    name = terminal_safe(name)
    doc.raw(
        f'<h3 title="{html.escape(pid)}">{html.escape(name)}</h3>',
        f"\n### {name}" + (f" (`{_short(pid)}`)" if name != pid else "") + "\n",
    )
    cells_h, md = [], []
    for a in ex["answers"]:
        v = a.get("verdict") or "not graded"
        cls = "verdict-accepted" if a.get("passed") else "verdict-other"
        code = None if a.get("code") is None else terminal_safe(a["code"])
        fail = _failure_text(a.get("first_failure"))
        cell = f'<td><strong>{html.escape(a["model"])}</strong> <span class="{cls}">{html.escape(v)}</span>'
        cell += f"<pre>{html.escape(code)}</pre>" if code is not None else '<p class="na">no code recorded</p>'
        if fail:
            cell += f"<div>first failing test:</div><pre>{html.escape(fail)}</pre>"
        cells_h.append(cell + "</td>")
        md.append(f"**{a['model']}**: {v}\n")
        if code is not None:
            md.append(markdown_code_block(code, "python"))
        if fail:
            md.append("first failing test:\n" + markdown_code_block(fail))
    doc.raw(f'<div class="wide"><table class="side"><tr>{"".join(cells_h)}</tr></table></div>', "\n".join(md))


def build_report(run_dir: str | Path, benchmark: str | None = None) -> tuple[str, str]:
    """(html, markdown) of the report for a run, from what exists so far."""
    run_dir = require_run(run_dir)
    if benchmark is not None:
        benchmarks.get(benchmark)  # UserError naming the choices
    cfg = load_run_config(run_dir)
    metrics = read_metrics(run_dir)
    doc = _Doc()
    sel, why = _load_selection(run_dir, benchmark)
    _comparison_sections(doc, run_dir, sel, why)  # the answer first
    _training_section(doc, run_dir, metrics)
    _rl_part(doc, run_dir)
    _data_section(doc, run_dir)
    _config_section(doc, run_dir, cfg)

    from codelora import __version__

    now = datetime.now(UTC).isoformat(timespec="seconds")
    title = f"codelora run: {run_dir.name}"
    nav = "".join(f'<a href="#{sid}">{html.escape(t)}</a>' for sid, t in SECTIONS)
    page = (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{html.escape(title)}</title>'
        f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"
        f'<p class="meta">{html.escape(str(run_dir))} &middot; generated {now} by codelora {__version__}</p>'
        f"<nav>{nav}</nav>\n" + "\n".join(doc.html) + "\n</body></html>\n"
    )
    md = f"# {title}\n\n_{run_dir} · generated {now} by codelora {__version__}_\n" + "\n".join(doc.md)
    return page, md


def write_report(run_dir: str | Path, benchmark: str | None = None) -> tuple[Path, Path]:
    """Write RUN/report.html and RUN/report.md atomically; return their paths."""
    run_dir = require_run(run_dir)
    page, md = build_report(run_dir, benchmark)
    html_path, md_path = RunFolder(run_dir).report_html, RunFolder(run_dir).report_md
    # Same content as the report already there (only the "generated" time would differ): leave both untouched,
    # so a rerun of the workflow changes no file.
    if not (_same_but_time(html_path, page) and _same_but_time(md_path, md)):
        update_text(html_path, page)
        update_text(md_path, md)
    return html_path, md_path


_GENERATED = re.compile(r"generated \d{4}-\d\d-\d\dT[0-9:+-]+ by codelora")


def _same_but_time(path: Path, text: str) -> bool:
    try:
        old = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return _GENERATED.sub("generated", old) == _GENERATED.sub("generated", text)
