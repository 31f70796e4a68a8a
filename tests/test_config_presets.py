"""A bundled preset is found before a same-named file or folder in the working directory (issue 29.5): `make demo`
run from a folder holding `demo/` used to fail with "config file not found: demo". `preset:NAME` is explicit."""

from __future__ import annotations

import pytest
import yaml

from codelora.config import load_config
from codelora.errors import UserError


def test_preset_beats_a_folder_of_its_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").mkdir()
    cfg = load_config("demo")
    assert cfg.model.source == "embedded:smollm2-135m-instruct" and cfg.run_name == "demo"
    with pytest.raises(UserError, match=r"config \./demo is a folder, not a YAML file; presets: .*demo"):
        load_config("./demo")


def test_explicit_preset_prefix(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").write_text(yaml.safe_dump({"model": {"source": "tiny-random:llama"}}))
    cfg = load_config("preset:demo", ["train.max_steps=3"])
    assert cfg.run_name == "demo" and cfg.model.source == "embedded:smollm2-135m-instruct"
    assert cfg.train.max_steps == 3
    assert load_config("demo").model.source == "embedded:smollm2-135m-instruct"
    assert load_config("./demo").model.source == "tiny-random:llama"  # the file, named as a path
    with pytest.raises(UserError, match=r"unknown preset 'nope' \(preset:nope\); presets: .*demo"):
        load_config("preset:nope")
