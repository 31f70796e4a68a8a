"""`compare --protocol`, `compare --runs` across protocols, and the protocol in selection.json, the report and the
model card. Answers come from the stand-in of tests/test_protocol_evaluate.py (no model runs); grading is real."""

from __future__ import annotations

import json

import pytest

import codelora.evaluation.evaluate as E
from codelora.config import load_config, save_config
from codelora.data.split import write_split_json
from codelora.errors import UserError
from codelora.publish.model_card import build_card
from codelora.publish.report import build_report
from codelora.selection.compare import compare_run, compare_runs

try:  # pytest puts tests/ on sys.path in its default import mode
    from test_protocol_evaluate import problems, stand_in  # noqa: F401 - fixtures
except ImportError:  # --import-mode=importlib
    import importlib.util
    import pathlib

    _spec = importlib.util.spec_from_file_location(
        "_codelora_test_protocol_evaluate", pathlib.Path(__file__).with_name("test_protocol_evaluate.py")
    )
    _mod = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_mod)
    problems, stand_in = _mod.problems, _mod.stand_in


def make_run(path, problems_file, protocols):
    """A run folder (base model and a stand-in final adapter, never loaded), evaluated on LiveCodeBench under each
    of `protocols`."""
    path.mkdir()
    save_config(load_config("demo", ["model.source=tiny-random:qwen2"]), path / "config.yaml")
    rows = [{"input": f"problem {i}", "problem_key": f"k{i}", "solution": "x"} for i in range(3)]
    write_split_json(path / "split.json", {"train": rows[:1], "valid": rows[1:2], "test": rows[2:]})
    final = path / "final"
    final.mkdir()
    (final / "adapter_config.json").write_text("{}")
    (final / "adapter_model.safetensors").write_bytes(path.name.encode())  # weights differ between runs
    (final / "meta.json").write_text(json.dumps({"step": 2, "epoch": 1.0}))
    for p in protocols:
        E.evaluate(path, "livecodebench", ["base", "final"], problems=problems_file, protocol=p, workers=2)
    return path


def test_compare_reads_the_protocols_results_and_records_the_protocol(tmp_path, problems, stand_in, capsys):
    run = make_run(tmp_path / "a", problems, ["course", None])
    course = compare_run(run, "livecodebench", protocol="course", evaluate_missing=False)
    lcb = compare_run(run, "livecodebench", evaluate_missing=False, write=False)
    assert course["protocol"] == "course" and lcb["protocol"] == "livecodebench"
    solved = {d["protocol"]: d["matrix"]["solved"]["final"] for d in (course, lcb)}
    # problems in id order: abc367_b (12.340), abc999_a (first vs later block), abc999_b (no python block)
    assert solved == {"course": [False, True, False], "livecodebench": [True, False, False]}
    sel = json.loads((run / "selection.json").read_text())
    assert sel["protocol"] == "course" and sel["evaluation"]["protocol"] == "course"

    html, md = build_report(run)
    assert "benchmark: livecodebench (course protocol)" in md
    card = build_card(run, load_config(run / "config.yaml"), {"name": "final", "step": 2}, {"merged": False})
    assert "**livecodebench (course protocol)**" in card
    assert "| livecodebench (course protocol) | final | 0.333 |" in card
    assert "| livecodebench (livecodebench protocol) | final | 0.333 |" in card

    with pytest.raises(UserError, match="--protocol applies to livecodebench only, not to heldout"):
        compare_run(run, "heldout", protocol="course", evaluate_missing=False)


def test_compare_runs_refuses_runs_selected_under_different_protocols(tmp_path, problems, stand_in):
    a = make_run(tmp_path / "a", problems, ["course", None])
    b = make_run(tmp_path / "b", problems, ["course", None])
    compare_run(a, "livecodebench", protocol="course", evaluate_missing=False)
    compare_run(b, "livecodebench", evaluate_missing=False)
    with pytest.raises(UserError, match=r"different livecodebench protocols \(a under course, b under livecodebench\)"):
        compare_runs([a, b], "livecodebench", evaluate_missing=False, write=False)
    forced = compare_runs([a, b], "livecodebench", force=True, evaluate_missing=False, write=False)
    assert forced["protocol"] == ["course", "livecodebench"]
    assert any(f["differs"] == "protocol" for f in forced["flags"]) and all(r.get("forced") for r in forced["table"])
    # one protocol asked for: the run selected under the other one is selected again under it
    same = compare_runs([a, b], "livecodebench", evaluate_missing=False, out=tmp_path / "ab", protocol="course")
    assert same["protocol"] == "course" and not same["flags"]
    assert json.loads((b / "selection.json").read_text())["protocol"] == "course"
    assert json.loads((tmp_path / "ab" / "selection.json").read_text())["protocol"] == "course"
