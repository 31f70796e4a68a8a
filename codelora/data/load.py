"""Load training rows from the hub, the bundled sample or a local file, and validate every row.

Sources (``data.dataset``):

* ``deep`` / ``diverse``: ``Naholav/CodeGen-Deep-5K`` / ``Naholav/CodeGen-Diverse-5K`` on the hub;
* ``sample``: the small bundled ``codelora/data/sample_problems.jsonl`` (EASY and MEDIUM problems);
* ``demo``: the sample set plus its VERY_EASY tier (``sample_very_easy.jsonl``), what the demo trains on;
* a local ``.jsonl``, ``.json`` (a list or JSON lines), ``.parquet`` or a ``save_to_disk`` folder;
* any other ``owner/name``: a hub dataset id.

Each row needs ``input`` (the problem statement) and the target field (``solution`` or ``output``) as
non-empty strings; an optional ``split`` must be train/test/valid (``validation`` is read as valid).
Bad rows stop the load with one line naming the file, the first few line numbers and the count, unless
``skip_bad_rows`` is set: then they are skipped and listed in the report.
"""

from __future__ import annotations

import codecs
import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

from codelora.errors import UserError
from codelora.files import sha256_file

__all__ = ["BUNDLED", "HUB_DATASETS", "SPLIT_NAMES", "bundled_bytes", "dataset_sha256", "load_rows", "validate_rows"]

HUB_DATASETS = {"deep": "Naholav/CodeGen-Deep-5K", "diverse": "Naholav/CodeGen-Diverse-5K"}
# data.dataset names of the bundled files (codelora/data/), read in this order as one JSON-lines file
BUNDLED = {"sample": ("sample_problems.jsonl",), "demo": ("sample_problems.jsonl", "sample_very_easy.jsonl")}
SPLIT_NAMES = {"train": "train", "test": "test", "valid": "valid", "validation": "valid", "val": "valid"}
SHOW_FIRST = 5


def load_rows(
    dataset: str, *, target: str = "solution", skip_bad_rows: bool = False, allow_empty: bool = False
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Return (valid rows, report). Report: source, kind, unit ("line" or "row": what bad_rows' numbers count),
    rows_read, rows, bad_rows [{line, reason}]. allow_empty: no usable row is an empty list, not a UserError (for
    `prepare --check`, which lists the bad rows)."""
    if target not in ("solution", "output"):
        raise UserError(f"data.target must be 'solution' or 'output', got {target!r}")
    raw, bad, source, kind, unit = _read(dataset)
    rows: list[dict[str, Any]] = []
    for num, row in raw:
        reason = _check_row(row, target)
        if reason:
            bad.append({"line": num, "reason": reason})
            continue
        row = dict(row)
        if row.get("split") is not None:
            row["split"] = SPLIT_NAMES[row["split"].strip().lower()]
        else:
            row.pop("split", None)
        row["_line"] = num
        rows.append(row)
    bad.sort(key=lambda b: b["line"])
    if bad and not skip_bad_rows:
        shown = "; ".join(f"{unit} {b['line']}: {b['reason']}" for b in bad[:SHOW_FIRST])
        more = f" (and {len(bad) - SHOW_FIRST} more)" if len(bad) > SHOW_FIRST else ""
        raise UserError(
            f"{source}: {len(bad)} bad row(s): {shown}{more}; fix them or set data.skip_bad_rows=true to skip them"
        )
    if not rows and not allow_empty:
        why = f" ({len(bad)} bad row(s) skipped)" if bad else ""
        raise UserError(f"{source}: no usable rows{why}")
    report = {
        "source": source,
        "kind": kind,
        "unit": unit,
        "target": target,
        "rows_read": len(rows) + len(bad),
        "rows": len(rows),
        "bad_rows": bad,
    }
    return rows, report


def validate_rows(rows: list[dict[str, Any]], target: str) -> list[dict[str, Any]]:
    """Return [{line, reason}] for rows (numbered from 1) that are not usable."""
    return [{"line": i, "reason": r} for i, row in enumerate(rows, 1) if (r := _check_row(row, target))]


def _check_row(row: Any, target: str) -> str | None:
    if not isinstance(row, dict):
        return f"expected a JSON object, got {type(row).__name__}"
    for key in ("input", target):
        if key not in row or row[key] is None:
            return f"missing field '{key}'"
        if not isinstance(row[key], str):
            return f"field '{key}' must be a string, got {type(row[key]).__name__}"
        if not row[key].strip():
            return f"field '{key}' is empty"
    split = row.get("split")
    if split is not None:
        if not isinstance(split, str) or split.strip().lower() not in SPLIT_NAMES:
            return f"unknown split {split!r} (expected train, valid or test)"
    return None


Numbered = list[tuple[int, Any]]


def bundled_bytes(name: str) -> bytes:
    """The bytes of bundled dataset `name` (BUNDLED): its files joined, each ending in a newline."""
    parts = []
    for fname in BUNDLED[name]:
        data = resources.files("codelora.data").joinpath(fname).read_bytes()
        parts.append(data if data.endswith(b"\n") else data + b"\n")
    return b"".join(parts)


def _read(dataset: str) -> tuple[Numbered, list[dict], str, str, str]:
    """Return (numbered raw rows, bad rows found while reading, source name, kind, 'line'|'row')."""
    if dataset in BUNDLED:
        source = " + ".join(BUNDLED[dataset])
        raw, bad = _parse_json_lines(bundled_bytes(dataset), source)
        return raw, bad, source, "sample", "line"
    path = Path(dataset).expanduser()
    if path.exists():
        return _read_local(path)
    if dataset in HUB_DATASETS or (dataset.count("/") == 1 and not dataset.startswith((".", "/", "~"))):
        return _read_hub(HUB_DATASETS.get(dataset, dataset))
    raise UserError(
        f"dataset {dataset!r} not found: use deep, diverse, sample, demo, a hub id (owner/name) "
        "or a local .jsonl/.json/.parquet file or save_to_disk folder"
    )


def _read_local(path: Path) -> tuple[Numbered, list[dict], str, str, str]:
    source = str(path)
    if path.is_dir():
        try:
            import datasets

            obj = datasets.load_from_disk(str(path))
        except Exception as e:  # noqa: BLE001 - any failure is the user's folder
            raise UserError(f"{source}: not a datasets save_to_disk folder ({type(e).__name__}: {e})") from None
        raw = _from_hf(obj)
        if not raw:
            raise UserError(f"{source}: the dataset is empty")
        return raw, [], source, "disk", "row"
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq

            table = pq.read_table(str(path))
        except Exception as e:  # noqa: BLE001
            raise UserError(f"{source}: cannot read parquet ({type(e).__name__}: {e})") from None
        raw = list(enumerate(table.to_pylist(), 1))
        if not raw:
            raise UserError(f"{source}: the file is empty")
        return raw, [], source, "parquet", "row"
    if suffix not in (".jsonl", ".json", ".ndjson"):
        raise UserError(f"{source}: unsupported file type '{suffix}'; use .jsonl, .json, .parquet or a folder")
    # a byte-order mark (Windows editors write one) is not part of the first row
    data = path.read_bytes().removeprefix(codecs.BOM_UTF8)
    if not data.strip():
        raise UserError(f"{source}: the file is empty")
    if suffix == ".json":
        try:
            whole = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            whole = None  # fall back to JSON lines, which numbers the bad lines
        if isinstance(whole, list):
            if not whole:
                raise UserError(f"{source}: the JSON list is empty")
            return list(enumerate(whole, 1)), [], source, "json", "row"
        if isinstance(whole, dict):
            if len(data.decode("utf-8").strip().splitlines()) > 1 or not whole:
                raise UserError(f"{source}: expected a JSON list of rows (or one JSON object per line)")
    raw, bad = _parse_json_lines(data, source)
    return raw, bad, source, "jsonl", "line"


def _parse_json_lines(data: bytes, source: str) -> tuple[Numbered, list[dict]]:
    if not data.strip():
        raise UserError(f"{source}: the file is empty")
    raw: Numbered = []
    bad: list[dict] = []
    for num, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            bad.append({"line": num, "reason": f"not valid UTF-8 (byte {e.start})"})
            continue
        try:
            raw.append((num, json.loads(text)))
        except json.JSONDecodeError as e:
            bad.append({"line": num, "reason": f"malformed JSON ({e.msg}, column {e.colno})"})
    return raw, bad


def _read_hub(repo_id: str) -> tuple[Numbered, list[dict], str, str, str]:
    try:
        import datasets

        from codelora.hub import go_offline_if_unreachable

        go_offline_if_unreachable()  # an unreachable hub: the cache only, no minute of retries
        obj = datasets.load_dataset(repo_id)
    except Exception as e:  # noqa: BLE001 - offline, missing, gated: all one line for the user
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise UserError(
            f"cannot load hub dataset {repo_id} ({type(e).__name__}: {msg}); if you are offline, download it "
            "elsewhere and pass a local file or folder (data.dataset=path/to/rows.jsonl|.parquet|save_to_disk "
            "folder), or use data.dataset=sample"
        ) from None
    raw = _from_hf(obj)
    if not raw:
        raise UserError(f"hub dataset {repo_id} has no rows")
    return raw, [], repo_id, "hub", "row"


def _from_hf(obj: Any) -> Numbered:
    """Rows of a Dataset or DatasetDict; a DatasetDict with several splits fills a missing `split` column."""
    if isinstance(getattr(obj, "column_names", None), dict):
        names = list(obj.keys())
        out: list[dict] = []
        for name in names:
            for row in obj[name]:
                row = dict(row)
                if len(names) > 1 and row.get("split") is None:
                    row["split"] = name
                out.append(row)
        return list(enumerate(out, 1))
    return list(enumerate((dict(r) for r in obj), 1))


def dataset_sha256(dataset: str) -> str | None:
    """sha256 of a dataset's source bytes: a local file, a local folder (every file, by relative name) or the bundled
    sample; None for a hub dataset (its revision is the hub's business). Recorded by prepare, so an edited file
    is noticed before its old prepared rows are reused."""
    if dataset in BUNDLED:
        return hashlib.sha256(bundled_bytes(dataset)).hexdigest()
    path = Path(dataset).expanduser()
    if path.is_file():
        return sha256_file(path)
    if path.is_dir():
        h = hashlib.sha256()
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(f"{f.relative_to(path)}\0{sha256_file(f)}\n".encode())
        return h.hexdigest()
    return None
