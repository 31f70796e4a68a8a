"""Small file helpers every stage shares: atomic text writes, JSON/JSONL reading with clear errors, file hashes,
the full-disk rule."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from codelora.errors import UserError

# errno values of a full disk (a quota counts as full)
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(e: BaseException | None) -> bool:
    """Whether `e`, or an exception it was raised from, is a full disk: an OSError with an errno in
    DISK_FULL_ERRNOS, or safetensors' Rust writer reporting ENOSPC in its message."""
    while e is not None:
        if isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS:
            return True
        text = str(e)
        if "No space left on device" in text or "StorageFull" in text or "os error 28" in text:
            return True
        e = e.__cause__ or e.__context__
    return False


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write `text` to a unique temporary file beside `path`, then rename it over `path`.

    A crash or a full disk leaves either the old file or the new one, never a half-written file that looks whole;
    the temporary file is removed on failure. The temporary name is unique so concurrent writers never collide.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".", suffix=".tmp")
    try:
        # mkstemp creates mode 0600; a result file gets the mode any new file gets (0666 less the umask), so a
        # shared report or export is readable by whoever the user's umask allows.
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def follow_umask(path: Path | str) -> None:
    """Give `path` (a file, or a folder and everything in it) the modes the umask gives new files: 0666 less the
    umask for a file (0777 less it when the file had an execute bit), 0777 less it for a folder. For what a
    library wrote with its own mode: safetensors (0.8) writes through a private temporary file (0600), a copy keeps
    its source's mode. Call it on a temporary folder before renaming it into place; symbolic links are left alone.
    """
    mask = current_umask()
    root = Path(path)
    todo = [root] if root.is_file() or root.is_symlink() else [root, *root.rglob("*")]
    for p in todo:
        st = p.lstat()
        if p.is_symlink():
            continue
        if p.is_dir():
            want = 0o777 & ~mask
        else:
            want = (0o777 if st.st_mode & 0o111 else 0o666) & ~mask
        if st.st_mode & 0o7777 != want:
            os.chmod(p, want)


def current_umask() -> int:
    """The process umask, read without changing it (Linux: /proc/self/status), else by setting and restoring it."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def jsonl_lines(path: Path | str, what: str = "file") -> Iterator[tuple[int, str]]:
    """(line number, line) for every non-blank line; an unreadable file is one UserError naming it.

    Callers decide what a bad line means (stop, or skip and report), so parsing stays with them.
    """
    path = Path(path)
    try:
        f = open(path, encoding="utf-8-sig")  # a byte-order mark (Windows editors) is not part of line 1
    except OSError as e:
        raise UserError(f"cannot read {what} {path}: {e.strerror or e}") from None
    with f:
        try:
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    yield lineno, line
        except UnicodeDecodeError as e:
            raise UserError(f"{path}: not UTF-8 text ({e})") from None


def read_jsonl(path: Path | str, what: str = "file") -> list[dict]:
    """Every line a JSON object; the first bad line stops with `path:line: …`."""
    rows = []
    for lineno, line in jsonl_lines(path, what):
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise UserError(f"{path}:{lineno}: not valid JSON ({e})") from None
        if not isinstance(obj, dict):
            raise UserError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        rows.append(obj)
    return rows


def read_json(path: Path | str) -> Any:
    """A JSON file's content; unreadable or invalid is one UserError naming the file."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    except ValueError as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None


def read_json_object(path: Path | str, missing_ok: bool = False) -> dict | None:
    """A JSON file holding one object, as a dict; None when the file is absent and `missing_ok`. Unreadable,
    invalid or not an object is one UserError naming the file."""
    path = Path(path)
    if missing_ok and not path.is_file():
        return None
    doc = read_json(path)
    if not isinstance(doc, dict):
        raise UserError(f"{path}: expected a JSON object, got {type(doc).__name__}")
    return doc


def sha256_file(path: Path | str) -> str:
    """Hex sha256 of a file, read in 4 MiB chunks (model weights do not fit in memory twice)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def require_writable(folder: Path | str, what: str = "folder") -> None:
    """Refuse up front, in one UserError line, a folder (or, if it does not exist yet, its nearest existing
    parent) this process cannot write: a read-only run folder or file system would otherwise fail half-way, after
    minutes of loading, with a traceback. `what` names the folder in the message (e.g. "run folder")."""
    folder = Path(folder).expanduser()
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"{what} {folder}: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        reason = "read-only file system" if _read_only_mount(probe) else "permission denied"
        raise UserError(f"cannot write the {what} {folder}: {probe} is not writable ({reason})")


def _read_only_mount(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False
