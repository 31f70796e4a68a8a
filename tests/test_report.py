"""`codelora report`: the self-contained HTML page and the Markdown, on finished, training and non-run folders."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_compare import make_run, solved

from codelora.cli import main
from codelora.errors import UserError
from codelora.publish.report import SECTIONS, build_report, write_report
from codelora.selection import compare as cmp

SECTION_IDS = [sid for sid, _ in SECTIONS]


def _png(path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 4, 8], [1.0, 0.8, 0.7], "o-")
    ax.set_title(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=60)
    plt.close(fig)


def finished_run(root: Path) -> Path:
    run = make_run(
        root,
        results={
            "base": solved(6, 1),
            "checkpoint-4": solved(6, 4),
            "checkpoint-8": solved(6, 2),
            "final": solved(6, 2),
        },
    )
    report = {
        "source": "sample",
        "kind": "bundled",
        "target": "solution",
        "max_length": 384,
        "overlong": "drop",
        "rows_read": 104,
        "rows_valid": 104,
        "bad_rows": [],
        "duplicates": {"count": 0},
        "splits": {
            "train": {
                "rows": 80,
                "problems": 48,
                "examples": 78,
                "over_max_length": 2,
                "prompt_tokens": {"p50": 150, "p90": 250, "max": 300},
                "completion_tokens": {"p50": 90, "p90": 200, "max": 260},
            }
        },
        "over_max_length": 2,
    }
    (run / "data_report.json").write_text(json.dumps(report))
    for name in ("loss", "lr", "lengths"):
        _png(run / "plots" / f"{name}.png", name)
    # code that would break a careless page: HTML and Markdown specials
    gen = run / "eval" / "heldout" / "checkpoint-4" / "generations.jsonl"
    rows = [json.loads(x) for x in gen.read_text().splitlines()]
    rows[2]["code"] = "print('</pre><script>alert(1)</script> | a<b & c>d')"
    gen.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cmp.compare_run(run)
    return run


def test_report_on_finished_run_has_every_section_and_is_self_contained(tmp_path):
    run = finished_run(tmp_path)
    html_path, md_path = write_report(run)
    page = html_path.read_text()
    for sid in SECTION_IDS:
        assert f'id="{sid}"' in page
    assert "not yet available" not in page
    assert "selected: <strong>checkpoint-4</strong>" in page
    assert "highest pass@1" in page and "r 16, alpha 32" in page and "embedded:smollm2-135m-instruct" in page
    assert "greedy, max 64 new tokens" in page
    # nothing fetched from anywhere: every image is a data URI, no script, no external URL at all
    srcs = re.findall(r'src="([^"]*)"', page)
    assert len(srcs) == 4 and all(s.startswith("data:image/png;base64,") for s in srcs)  # lengths, loss, lr, compare
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert "&lt;/pre&gt;&lt;script&gt;" in page  # generated code escaped
    # matrix: 6 problems x 4 models, disagreements starred
    assert page.count('class="ok"') == 1 + 4 + 2 + 2 and page.count('class="no"') == 6 * 4 - 9
    md = md_path.read_text()
    for _, title in SECTIONS:
        assert f"## {title}" in md
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert sorted(links) == ["plots/compare.png", "plots/lengths.png", "plots/loss.png", "plots/lr.png"]
    assert all((run / link).is_file() for link in links)
    assert "| **checkpoint-4** |" in md and "a<b & c>d" in md
    assert not [p for p in run.iterdir() if ".tmp" in p.name]


def test_report_on_run_still_training(tmp_path):
    metrics = [{"step": 0, "valid_loss": 1.0, "test_loss": 1.1}, {"step": 2, "train_loss": 0.9}]
    run = make_run(tmp_path, checkpoints=(), final_step=None, metrics=metrics, incomplete=(4,))
    page, md = build_report(run)
    for sid in SECTION_IDS:
        assert f'id="{sid}"' in page
    assert "in progress or stopped: last logged step 2, 0 complete checkpoints" in page
    assert "incomplete (no meta.json): checkpoint-4" in page
    assert "not yet available: no data_report.json" in page
    assert page.count("not yet available") >= 6  # data, plots, comparison, selection, matrix, samples
    assert "_not yet available" in md


def test_report_computes_the_comparison_when_compare_has_not_run(tmp_path):
    run = make_run(tmp_path, final_step=None, results={"base": solved(4, 1), "checkpoint-4": solved(4, 3)})
    page, _ = build_report(run)
    assert "computed for this report" in page and "selected: <strong>checkpoint-4</strong>" in page
    assert not (run / "selection.json").exists()  # the report only reads


def test_report_on_a_folder_that_is_not_a_run(tmp_path, capsys):
    (tmp_path / "x").mkdir()
    with pytest.raises(UserError, match="is not a run folder"):
        write_report(tmp_path / "x")
    assert main(["report", "--run", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x" / "report.html").exists()


def test_cli_report_prints_the_path(tmp_path, capsys):
    run = finished_run(tmp_path)
    assert main(["report", "--run", str(run)]) == 0
    assert f"report: {run / 'report.html'}" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------------- browser test

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _render(page: Path, tmp: Path) -> tuple[Path, str, list[str]]:
    """Headless Chromium: screenshot, the DOM after load, and every console message the page produced."""
    shot = tmp / f"{page.stem}.png"
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp / ('profile-' + page.stem)}",
        "--enable-logging=stderr",
        "--v=0",
        f"--screenshot={shot}",
        "--dump-dom",
        "--window-size=1280,2000",
        page.resolve().as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return shot, proc.stdout, console


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make browser-deps installs it)")
def test_report_renders_in_headless_chromium(tmp_path):
    run = finished_run(tmp_path)
    html_path, _ = write_report(run)
    shot, dom, console = _render(html_path, tmp_path)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 30_000  # a blank 1280x2000 page is a few KB
    for sid in SECTION_IDS:
        assert f'id="{sid}"' in dom
    # the answer first (issue #28): selection, then the comparison, ..., the configuration last, as rendered
    positions = [dom.index(f'id="{sid}"') for sid in ("selection", "comparison", "matrix", "samples", "config")]
    assert positions == sorted(positions), positions
    assert dom.index("chosen because") < dom.index('id="comparison"')
    assert dom.count("<img") == 4
    assert console == []  # the page has no script: any console message is an error

    # The check above can fail: the same browser run on a broken page reports its console errors.
    bad = tmp_path / "broken.html"
    bad.write_text(
        '<!DOCTYPE html><html><body><h2 id="config">x</h2><script>undefinedFunction();</script></body></html>'
    )
    _, _, bad_console = _render(bad, tmp_path)
    assert any("undefinedFunction" in line for line in bad_console)
