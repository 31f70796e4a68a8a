"""codelora push: dry run, card checks, token rules (never printed, never a flag), offline and failed uploads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from codelora.cli import build_parser, main
from codelora.config import load_config, save_config
from codelora.publish.export import export
from codelora.publish.model_card import REPO_PLACEHOLDER

TOKEN = "hf_CodeloraTestSecretToken1234567890"
REPO = "someone/codelora-test"


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> Path:
    """A run with one adapter checkpoint built directly with peft (no training), exported as an adapter."""
    from peft import LoraConfig, get_peft_model

    from codelora.model.sources import load_model

    tmp = tmp_path_factory.mktemp("push")
    run = tmp / "run"
    ck = run / "checkpoints" / "checkpoint-1"
    ck.mkdir(parents=True)
    cfg = load_config("demo", ["model.source=tiny-random:qwen2", "lora.r=4", f"output_dir={tmp}"])
    save_config(cfg, run / "config.yaml")
    model, _ = load_model("tiny-random:qwen2", dtype="fp32")
    get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])).save_pretrained(ck)
    (ck / "meta.json").write_text(json.dumps({"step": 1, "config": cfg.to_dict(), "git_commit": None}))
    out = tmp / "export"
    export(run, out, checkpoint="1")
    return out


@pytest.fixture
def no_hub_calls(monkeypatch):
    """Fail the test if anything tries to talk to the Hub."""
    from huggingface_hub import HfApi

    def boom(*a, **k):
        raise AssertionError("the Hub was called")

    for name in ("create_repo", "create_commit", "upload_folder", "upload_file", "whoami"):
        monkeypatch.setattr(HfApi, name, boom)


def _run(capsys, *args) -> tuple[int, str, str]:
    rc = main(["push", *args])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _human(n: int) -> str:
    from codelora.publish.push import _human as h

    return h(n)


def test_dry_run_lists_files_sizes_and_checks_card(export_dir, capsys, monkeypatch, no_hub_calls):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    rc, out, err = _run(capsys, "--export", str(export_dir), "--repo", REPO, "--dry-run", "--private")
    assert rc == 0, err
    files = sorted(p for p in export_dir.rglob("*") if p.is_file())
    assert len(files) >= 6
    total = sum(p.stat().st_size for p in files)
    assert f"would upload {len(files)} files" in out and f"https://huggingface.co/{REPO} (private" in out
    for p in files:
        rel = p.relative_to(export_dir).as_posix()
        assert any(
            line.split() and line.split()[-1] == rel and _human(p.stat().st_size) in line for line in out.splitlines()
        )
    assert f"total {_human(total)} ({total} bytes)" in out
    assert "card metadata: ok (base_model tiny-random:qwen2, library_name peft" in out
    assert "token: found (HF_TOKEN)" in out
    assert "dry run: nothing was sent" in out
    assert TOKEN not in out + err


def test_dry_run_refuses_bad_card(export_dir, tmp_path, capsys, no_hub_calls):
    bad = tmp_path / "bad"
    shutil.copytree(export_dir, bad)
    card = bad / "README.md"
    card.write_text(card.read_text().replace("library_name: peft\n", "").replace("- codelora\n", ""))
    rc, out, err = _run(capsys, "--export", str(bad), "--repo", REPO, "--dry-run")
    assert rc == 2
    assert "card metadata invalid: missing 'library_name'; tags lack codelora" in err
    card.write_text("# no front matter\n")
    rc, _, err = _run(capsys, "--export", str(bad), "--repo", REPO, "--dry-run")
    assert rc == 2 and "no metadata block" in err
    rc, _, err = _run(capsys, "--export", str(tmp_path / "missing"), "--repo", REPO, "--dry-run")
    assert rc == 2 and "no such folder" in err
    rc, _, err = _run(capsys, "--export", str(export_dir), "--repo", "not a repo", "--dry-run")
    assert rc == 2 and "expected USER/NAME" in err


def test_token_from_login_cache_not_printed(export_dir, tmp_path, capsys, monkeypatch, no_hub_calls):
    import huggingface_hub.constants as hc

    monkeypatch.delenv("HF_TOKEN", raising=False)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    monkeypatch.setattr(hc, "HF_TOKEN_PATH", str(token_file))
    rc, out, err = _run(capsys, "--export", str(export_dir), "--repo", REPO, "--dry-run")
    assert rc == 0 and "token: found (huggingface_hub login cache)" in out
    assert TOKEN not in out + err


def test_no_token_is_a_clear_error(export_dir, tmp_path, capsys, monkeypatch, no_hub_calls):
    import huggingface_hub.constants as hc

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(hc, "HF_TOKEN_PATH", str(tmp_path / "no-token-here"))
    rc, out, err = _run(capsys, "--export", str(export_dir), "--repo", REPO, "--dry-run")
    assert rc == 0 and "token: not found" in out
    rc, out, err = _run(capsys, "--export", str(export_dir), "--repo", REPO)
    assert rc == 2
    assert err.strip().splitlines() == [
        "error: no Hugging Face token found: set HF_TOKEN or run `huggingface-cli login` (`hf auth login` in newer "
        "huggingface_hub); codelora never takes a token on the command line"
    ]


def test_there_is_no_token_flag(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["push", "--export", "x", "--repo", REPO, "--token", TOKEN])
    assert "unrecognized arguments: --token" in capsys.readouterr().err


def test_offline_hub_one_line_no_token(export_dir, capsys, monkeypatch):
    import huggingface_hub.constants as hc

    assert hc.HF_HUB_OFFLINE  # conftest: the real client refuses to connect
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    rc, out, err = _run(capsys, "--export", str(export_dir), "--repo", REPO)
    assert rc == 2
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: cannot reach the Hugging Face Hub (HF_HUB_OFFLINE is set)")
    assert lines[-1].endswith(f"nothing was uploaded to {REPO}")
    assert sum(line.startswith("error:") for line in lines) == 1
    assert TOKEN not in out + err


def test_error_text_holding_the_token_is_masked(export_dir, capsys, monkeypatch):
    from huggingface_hub import HfApi

    def leaky(self, *a, **k):
        raise RuntimeError(f"request failed; headers={{'authorization': 'Bearer {TOKEN}'}} token={TOKEN}")

    monkeypatch.setattr(HfApi, "create_repo", leaky)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    rc, out, err = _run(capsys, "--export", str(export_dir), "--repo", REPO)
    assert rc == 2 and "RuntimeError: request failed" in err and "nothing was uploaded" in err
    assert TOKEN not in out + err and TOKEN[:12] not in out + err


class _FakeApi:
    """Records what a push would send; fails the commit when told to."""

    calls: list = []
    fail_commit: Exception | None = None

    def __init__(self, token=None):
        _FakeApi.calls.append(("init", token == TOKEN))

    def create_repo(self, repo_id, repo_type=None, private=None, exist_ok=False):
        _FakeApi.calls.append(("create_repo", repo_id, repo_type, private, exist_ok))
        return f"https://huggingface.co/{repo_id}"

    def create_commit(self, repo_id, operations, commit_message, repo_type=None):
        if _FakeApi.fail_commit is not None:
            raise _FakeApi.fail_commit
        ops = list(operations)
        _FakeApi.calls.append(("create_commit", repo_id, ops))

        class Info:
            oid = "abc123"
            commit_url = f"https://huggingface.co/{repo_id}/commit/abc123"

        return Info()


def test_push_is_one_commit_with_repo_named_in_card(export_dir, capsys, monkeypatch):
    import huggingface_hub

    _FakeApi.calls, _FakeApi.fail_commit = [], None
    monkeypatch.setattr(huggingface_hub, "HfApi", _FakeApi)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    rc, out, err = _run(capsys, "--export", str(export_dir), "--repo", REPO, "--private")
    assert rc == 0, err
    assert _FakeApi.calls[0] == ("init", True)
    assert _FakeApi.calls[1] == ("create_repo", REPO, "model", True, True)
    commits = [c for c in _FakeApi.calls if c[0] == "create_commit"]
    assert len(commits) == 1
    ops = commits[0][2]
    sent = sorted(op.path_in_repo for op in ops)
    assert sent == sorted(p.relative_to(export_dir).as_posix() for p in export_dir.rglob("*") if p.is_file())
    card = next(op for op in ops if op.path_in_repo == "README.md")
    text = (
        card.path_or_fileobj.read().decode() if hasattr(card.path_or_fileobj, "read") else card.path_or_fileobj.decode()
    )
    assert REPO_PLACEHOLDER not in text and f'PeftModel.from_pretrained(base, "{REPO}")' in text
    assert REPO_PLACEHOLDER in (export_dir / "README.md").read_text()  # the export itself is untouched
    assert f"pushed {len(ops)} files" in out and "abc123" in out
    assert TOKEN not in out + err


def test_failed_commit_says_nothing_went_up(export_dir, capsys, monkeypatch):
    import huggingface_hub

    _FakeApi.calls, _FakeApi.fail_commit = [], ConnectionError(f"reset by peer (token {TOKEN})")
    monkeypatch.setattr(huggingface_hub, "HfApi", _FakeApi)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    rc, out, err = _run(capsys, "--export", str(export_dir), "--repo", REPO)
    n = sum(1 for p in export_dir.rglob("*") if p.is_file())
    assert rc == 2
    assert "cannot reach the Hugging Face Hub" in err
    assert f"single commit, so none of the {n} files is in {REPO}" in err
    assert TOKEN not in out + err
