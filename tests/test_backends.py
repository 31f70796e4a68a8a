"""Generation backends sit behind one interface (codelora.generation.backends.Backend): a backend added as one
module file is an `evaluate --backend` choice and a valid `eval.backend`, and its answers are graded, stored and
kept apart from other backends' answers like the built-in ones'."""

from __future__ import annotations

import json
import sys

import pytest

import codelora.generation.backends as B
from codelora.cli import build_parser, main
from codelora.config import load_config
from codelora.errors import UserError

TOY = '''
from codelora.generation.backends import Backend, register


@register
class Canned(Backend):
    """Answers every prompt with one program, without a model."""

    name = "canned"
    exclusive_options = ()

    @classmethod
    def create(cls, cfg, opts, adapters, source):
        return cls()

    def fingerprint(self):
        return {"backend": self.name}

    def generate(self, spec, work, prompts, sampling, seeds, stops, on_batch):
        from codelora.generation.generate import Generation

        gens = [Generation("```python\\nprint(int(input()) * 2)\\n```", 9, True) for _ in prompts]
        on_batch(list(enumerate(gens)))
        return gens
'''


@pytest.fixture
def canned(tmp_path, monkeypatch):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "canned.py").write_text(TOY, encoding="utf-8")
    monkeypatch.setattr(B, "__path__", [*B.__path__, str(folder)])
    yield "canned"
    B.unregister("canned")
    B.registry.imported.discard("canned")
    sys.modules.pop("codelora.generation.backends.canned", None)


def _backend_choices() -> tuple[str, ...]:
    sub = next(a for a in build_parser()._actions if a.choices and "evaluate" in a.choices)
    (flag,) = [a for a in sub.choices["evaluate"]._actions if a.dest == "backend"]
    return tuple(flag.choices or ()) or tuple(flag.metavar.strip("{}").split(","))


def test_built_in_backends_are_registered_in_order():
    assert B.names()[:3] == ("hf", "vllm", "llamacpp")
    assert all(issubclass(B.get(n), B.Backend) for n in B.names())
    with pytest.raises(UserError, match="unknown backend 'nope'; choose from hf, vllm, llamacpp"):
        B.get("nope")


def test_a_backend_is_one_new_module(canned, tmp_path, capsys):
    assert B.names()[-1] == "canned"
    assert "canned" in build_parser().format_help() or "canned" in repr(_backend_choices())
    assert load_config("demo", ["eval.backend=canned"]).eval.backend == "canned"  # a valid run-config value too
    problems = tmp_path / "double.jsonl"
    rows = [
        {"task_id": "double", "prompt": "Read n, print 2n.", "tests": [{"input": "3\n", "output": "6"}]},
        {"task_id": "twice", "prompt": "Read n, print n+n.", "tests": [{"input": "5\n", "output": "10"}]},
    ]
    problems.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "eval"
    argv = ["evaluate", "--model", "tiny-random:qwen2", "--benchmark", "heldout", "--problems", str(problems)]
    assert main([*argv, "--backend", "canned", "--out", str(out), "--workers", "1"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pass@1"] == 1.0 and summary["problems"] == 2
    assert summary["generation"]["backend"] == "canned" and summary["generation"]["generated"] == 2
    assert summary["provenance"]["generator"] == {"backend": "canned"}
    gens = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert {g["backend"] for g in gens} == {"canned"} and all(g["model"]["backend"] == "canned" for g in gens)
    # the same evaluation again: results current, nothing generated
    assert main([*argv, "--backend", "canned", "--out", str(out), "--workers", "1"]) == 0
    assert "results current" in capsys.readouterr().err


def test_an_unknown_backend_is_one_line(capsys):
    argv = ["evaluate", "--model", "tiny-random:qwen2", "--benchmark", "humaneval", "--out", "x", "--backend", "nope"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --backend 'nope': not allowed; choose from hf, vllm, llamacpp") and "\n" not in err
    with pytest.raises(UserError, match=r"eval.backend='nope' is not valid; choices: hf, vllm, llamacpp"):
        load_config("demo", ["eval.backend=nope"])
