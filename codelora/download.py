"""`codelora download`: pre-fetch a hub model or dataset into the local cache (the original download.py)."""

from __future__ import annotations

from codelora.errors import UserError

DATASET_ALIASES = {"deep": "Naholav/CodeGen-Deep-5K", "diverse": "Naholav/CodeGen-Diverse-5K"}


def download(name: str, repo_type: str | None = None, revision: str | None = None) -> str:
    """Download with huggingface_hub's own progress bars; returns the local snapshot folder."""
    from huggingface_hub import snapshot_download

    repo_id = DATASET_ALIASES.get(name, name)
    if repo_type is None:
        repo_type = "dataset" if name in DATASET_ALIASES else "model"
    if repo_id.count("/") != 1:
        raise UserError(f"'{name}' is not a hub id (org/name) or one of: {', '.join(DATASET_ALIASES)}")
    from codelora.hub import go_offline_if_unreachable

    try:
        go_offline_if_unreachable()  # unreachable: fail in a second (from the cache if it is there), no retries
        return snapshot_download(repo_id, repo_type=repo_type, revision=revision)
    except Exception as e:  # huggingface_hub raises many kinds for "offline"; all mean the same to the user
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise UserError(
            f"cannot download {repo_type} '{repo_id}': the hub cannot be reached ({type(e).__name__}: {first}); "
            "use a local folder or file instead (models: a transformers folder or embedded:smollm2-135m-instruct; "
            "data: a JSONL/Parquet file or `sample`)"
        ) from None
