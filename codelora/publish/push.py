"""`codelora push`: upload an export folder to the Hugging Face Hub, keeping the write token out of sight.

The token comes only from the `HF_TOKEN` environment variable or the huggingface_hub login cache
(`huggingface-cli login`); there is no command-line flag for it (a flag lands in shell history and the process
list). Every message that could carry text from the Hub client is masked, so the token never reaches the output.
All files go up in one commit: a failed push leaves none of them in the repo.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

from codelora.errors import UserError

__all__ = ["PushError", "list_files", "push"]

_REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_TOKENISH = re.compile(r"hf_[A-Za-z0-9]{6,}")
_BEARER = re.compile(r"(?i)(bearer\s+|authorization['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]+")
NO_TOKEN = (
    "no Hugging Face token found: set HF_TOKEN or run `huggingface-cli login` (`hf auth login` in newer "
    "huggingface_hub); codelora never takes a token on the command line"
)


class PushError(UserError):
    """The push could not be done; the message says what, if anything, reached the Hub."""


def mask(text: str, token: str | None) -> str:
    """Remove the token (and anything shaped like a Hub token or an Authorization header) from text."""
    if token:
        text = text.replace(token, "***")
    text = _TOKENISH.sub("hf_***", text)
    return _BEARER.sub(lambda m: m.group(1) + "***", text)


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def find_token() -> tuple[str | None, str | None]:
    """(token, where it came from) from HF_TOKEN or the login cache; (None, None) if neither has one."""
    env = os.environ.get("HF_TOKEN", "").strip()
    if env:
        return env, "HF_TOKEN"
    try:
        import huggingface_hub

        token = huggingface_hub.get_token()
    except Exception:  # noqa: BLE001 - an unreadable cache is the same as no cache here
        token = None
    return (token, "huggingface_hub login cache") if token else (None, None)


def list_files(export_dir: Path) -> list[tuple[str, int]]:
    """(path relative to the folder, size) of every file that would go up, sorted; hidden entries are skipped."""
    files = []
    for p in sorted(export_dir.rglob("*")):
        rel = p.relative_to(export_dir)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if p.is_file():
            files.append((rel.as_posix(), p.stat().st_size))
    return files


def _check_export(export_dir: Path) -> dict[str, Any]:
    from codelora.publish.model_card import check_front_matter, front_matter

    if not export_dir.is_dir():
        raise UserError(f"--export {export_dir}: no such folder (write one with `codelora export`)")
    if export_dir.name.split(".tmp-")[0] != export_dir.name:
        raise UserError(f"--export {export_dir} is an unfinished export (a .tmp- folder); export again")
    card = export_dir / "README.md"
    if not card.is_file():
        raise UserError(f"{card} not found: the export has no model card (write it with `codelora export`)")
    meta = front_matter(card.read_text(encoding="utf-8"), str(card))
    problems = check_front_matter(meta)
    if problems:
        raise UserError(f"{card}: card metadata invalid: {'; '.join(problems)}")
    if not (export_dir / "export_meta.json").is_file():
        raise UserError(f"{export_dir} has no export_meta.json; it was not written by `codelora export`")
    weights = [f for f in ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json")]
    if not any((export_dir / f).is_file() for f in weights):
        raise UserError(f"{export_dir} holds no weights (adapter_model.safetensors or model*.safetensors)")
    return meta


def push(export_dir: str | Path, repo: str, private: bool = False, dry_run: bool = False) -> dict[str, Any]:
    """Upload export_dir to the Hub model repo `repo` (created if needed) in one commit, or describe it (dry run)."""
    from codelora.publish.model_card import REPO_PLACEHOLDER

    export_dir = Path(export_dir).expanduser()
    if not _REPO_RE.match(repo or "") or len(repo) > 96:
        raise UserError(f"--repo {repo!r} is not a Hub repo id; expected USER/NAME (letters, digits, . _ -)")
    card_meta = _check_export(export_dir)
    files = list_files(export_dir)
    total = sum(size for _, size in files)
    token, where = find_token()
    visibility = "private" if private else "public"
    out = print
    out(
        f"{'would upload' if dry_run else 'uploading'} {len(files)} files, {_human(total)}, "
        f"to https://huggingface.co/{repo} ({visibility}, one commit)"
    )
    width = max(len(_human(s)) for _, s in files)
    for rel, size in files:
        out(f"  {_human(size):>{width}}  {rel}")
    out(f"  {'':>{width}}  total {_human(total)} ({total} bytes)")
    out(
        f"card metadata: ok (base_model {card_meta['base_model']}, library_name {card_meta['library_name']}, "
        f"license {card_meta['license']}, tags {', '.join(card_meta['tags'])})"
    )
    if card_meta["base_model"].count("/") != 1:
        out(f"note: base_model {card_meta['base_model']!r} is not a Hub id; the Hub will not link the base model")
    if REPO_PLACEHOLDER in (export_dir / "README.md").read_text(encoding="utf-8"):
        out(f"README.md: usage snippets will name {repo} (in place of {REPO_PLACEHOLDER})")
    summary = {"repo": repo, "private": private, "files": files, "total_bytes": total, "dry_run": dry_run}
    if dry_run:
        out(
            f"token: {'found (' + where + ')' if token else 'not found - a real push needs HF_TOKEN or `huggingface-cli login`'}"
        )
        out("dry run: nothing was sent")
        return summary
    if not token:
        raise PushError(NO_TOKEN)
    try:
        result = _upload(export_dir, repo, private, files, token)
    except PushError as e:
        raise PushError(mask(str(e), token)) from None
    except Exception as e:  # noqa: BLE001 - any client error text may hold the token: mask it, never re-raise raw
        raise PushError(mask(f"push to {repo} failed: {type(e).__name__}: {e}", token)) from None
    summary.update(result)
    out(f"pushed {len(files)} files ({_human(total)}) to {result['url']} in one commit ({result.get('commit') or '?'})")
    return summary


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")


def _is_unreachable(e: BaseException) -> bool:
    from huggingface_hub.errors import OfflineModeIsEnabled

    while e is not None:
        if isinstance(e, (OfflineModeIsEnabled, ConnectionError, TimeoutError)):
            return True
        name = type(e).__name__
        if name in ("ConnectError", "ConnectTimeout", "ReadTimeout", "ConnectionError", "Timeout", "ProxyError"):
            return True
        e = e.__cause__ or e.__context__
    return False


def _explain(e: BaseException, repo: str) -> str:
    if _is_unreachable(e):
        offline = (
            " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes") else ""
        )
        return f"cannot reach the Hugging Face Hub{offline}: {_first_line(e)}"
    status = getattr(getattr(e, "response", None), "status_code", None)
    if status == 401:
        return "the Hub rejected the token (401): set a valid write token in HF_TOKEN or run `huggingface-cli login`"
    if status == 403:
        return f"the token may not write to {repo} (403): use a write token of {repo.split('/')[0]}"
    return _first_line(e)


def _upload(export_dir: Path, repo: str, private: bool, files: list[tuple[str, int]], token: str) -> dict[str, Any]:
    from huggingface_hub import CommitOperationAdd, HfApi

    from codelora.publish.model_card import REPO_PLACEHOLDER

    api = HfApi(token=token)
    try:
        url = api.create_repo(repo, repo_type="model", private=private, exist_ok=True)
    except Exception as e:  # noqa: BLE001 - see push(): explained and masked
        raise PushError(f"{_explain(e, repo)}; nothing was uploaded to {repo}") from None
    ops = []
    for rel, _ in files:
        path = export_dir / rel
        if rel == "README.md":  # the usage snippets name the repo they now live in
            data = path.read_text(encoding="utf-8").replace(REPO_PLACEHOLDER, repo).encode("utf-8")
            ops.append(CommitOperationAdd(path_in_repo=rel, path_or_fileobj=data))
        else:
            ops.append(CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(path)))
    print(f"uploading {len(ops)} files to {repo} as one commit", file=sys.stderr, flush=True)
    try:
        info = api.create_commit(
            repo,
            operations=ops,
            commit_message=f"codelora export ({export_dir.name})",
            repo_type="model",
        )
    except Exception as e:  # noqa: BLE001 - see push(): explained and masked
        raise PushError(
            f"{_explain(e, repo)}; the upload is a single commit, so none of the {len(ops)} files is in {repo} "
            f"(the repo {repo} exists); run the same command again to retry"
        ) from None
    return {"url": str(url), "commit": getattr(info, "oid", None), "commit_url": getattr(info, "commit_url", None)}
