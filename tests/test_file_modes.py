"""Every file codelora writes into a run folder and an export follows the umask (issue 30): safetensors (0.8) writes
its files through a private temporary file (mode 0600) and copies keep their source's mode, so without care the
one file that matters, adapter_model.safetensors, was the one file a colleague could not read."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from codelora.config import load_config
from codelora.publish.export import export
from codelora.training.sft import train


def _modes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): stat.S_IMODE(p.lstat().st_mode) for p in [folder, *folder.rglob("*")]}


def _wrong(folder: Path, mask: int) -> dict[str, str]:
    out = {}
    for rel, mode in _modes(folder).items():
        want = (0o777 if (folder / rel).is_dir() else 0o666) & ~mask
        if mode != want:
            out[rel] = f"{mode:o} (umask {mask:03o} gives {want:o})"
    return out


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield lambda m: os.umask(m)
    os.umask(old)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("modes")
    old = os.umask(0o027)
    try:
        cfg = load_config(
            "demo",
            [
                "model.source=tiny-random:qwen2",
                "train.max_steps=2",
                "train.logging_steps=1",
                "train.eval_steps=2",
                "train.save_steps=1",
                "data.max_length=128",
                f"output_dir={tmp}",
            ],
        )
        train(cfg, tmp / "run")
    finally:
        os.umask(old)
    return tmp / "run"


def test_run_folder_follows_the_umask(run):
    for part in ("checkpoints/checkpoint-1", "checkpoints/checkpoint-2", "final", "logs", "plots"):
        assert _wrong(run / part, 0o027) == {}, part
    assert (run / "final" / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize("mask", [0o022, 0o027])
@pytest.mark.parametrize("merge", [False, True])
def test_export_follows_the_umask(run, tmp_path, umask, mask, merge):
    umask(mask)
    out = tmp_path / "export"
    export(run, out, checkpoint="final", merge=merge, dtype="fp32" if merge else None, verify_tokens=2)
    weights = sorted(p.name for p in out.glob("*.safetensors"))
    assert weights == (["model.safetensors"] if merge else ["adapter_model.safetensors"])
    assert _wrong(out, mask) == {}
