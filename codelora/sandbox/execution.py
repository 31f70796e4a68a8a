"""Run one untrusted Python program in a sandbox and capture bounded output.

Isolation: bubblewrap (read-only root, private /tmp, private workdir, no network, own pid
namespace that dies with the sandbox) when `bwrap` works on this machine; otherwise plain
process isolation (see `isolation_description()`). Resource limits (address space, CPU time,
file size, no core dumps) are applied in both modes, plus a wall-clock timeout after which the
whole process group is killed.
"""

from __future__ import annotations

import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

OUTPUT_LIMIT = 16 * 1024 * 1024  # bytes kept per stream
FILE_SIZE_LIMIT = 16 * 1024 * 1024
_SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
_MEMORY_MARKERS = ("MemoryError", "Cannot allocate memory", "std::bad_alloc")


@dataclass
class ExecResult:
    returncode: int | None  # None when killed by us (timeout / output limit)
    stdout: str
    stderr: str
    timed_out: bool
    output_limit_exceeded: bool
    memory_error: bool
    elapsed: float
    sandbox_error: str | None = None

    @property
    def signal(self) -> int | None:
        """Signal that killed the program, if any (bwrap reports 128+sig)."""
        rc = self.returncode
        if rc is None:
            return None
        if rc < 0:
            return -rc
        if rc > 128 and _bwrap_ok():
            return rc - 128
        return None


def python_executable() -> str:
    """Interpreter used for sandboxed programs: the one running codelora (resolved symlinks)."""
    return os.path.realpath(sys.executable) or "python3"


@functools.lru_cache(maxsize=1)
def _site_prelude() -> str:
    """First line of every program: put site-packages on sys.path.

    Programs run with `-I -S`: skipping the `site` module (and the .pth files it would execute)
    cuts interpreter start-up from ~95 ms to ~25 ms here; site-packages directories are still
    appended to sys.path so that e.g. numpy stays importable. Kept on one line so tracebacks are
    off by exactly one line.
    """
    import site

    dirs = [d for d in site.getsitepackages() if os.path.isdir(d)]
    return f"import sys as _s; _s.path.extend({dirs!r}); del _s\n"


def _bwrap_base(workdir: str) -> list[str]:
    return [
        "bwrap",
        "--ro-bind", "/", "/",
        "--dev", "/dev",
        "--proc", "/proc",
        "--tmpfs", "/tmp",
        "--bind", workdir, workdir,
        "--chdir", workdir,
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
    ]  # fmt: skip


@functools.lru_cache(maxsize=1)
def _bwrap_ok() -> bool:
    """Probe once whether bubblewrap can create a sandbox here."""
    if os.environ.get("CODELORA_NO_BWRAP"):
        return False
    if shutil.which("bwrap") is None:
        return False
    workdir = tempfile.mkdtemp(prefix="codelora-probe-")
    try:
        cmd = [*_bwrap_base(workdir), python_executable(), "-I", "-c", "print('ok')"]
        proc = subprocess.run(cmd, capture_output=True, timeout=20, env=_scrubbed_env())
        return proc.returncode == 0 and proc.stdout.strip() == b"ok"
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def isolation() -> str:
    """'bwrap' or 'process'."""
    return "bwrap" if _bwrap_ok() else "process"


def isolation_description() -> str:
    if _bwrap_ok():
        return (
            "bubblewrap: read-only filesystem, private /tmp and workdir, no network, "
            "own pid/ipc/uts namespaces; rlimits (address space, CPU, file size); "
            "whole sandbox killed at the end"
        )
    return (
        "process only (bubblewrap unavailable): rlimits and process-group kill apply, but the "
        "program can read and write any file this user can, use the network, and a child "
        "that calls setsid() can outlive the run"
    )


def _scrubbed_env() -> dict[str, str]:
    # Note: `python -I` ignores PYTHON* variables; they are set for non-Python helpers.
    return {
        "PATH": _SAFE_PATH,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8",
        "OMP_NUM_THREADS": "1",
    }


def _limits(memory_mb: int, cpu_seconds: int):
    def apply() -> None:
        mem = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
        resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    return apply


class _Reader(threading.Thread):
    """Read a pipe incrementally, keeping at most `limit` bytes."""

    def __init__(self, pipe, limit: int, on_overflow) -> None:
        super().__init__(daemon=True)
        self.pipe, self.limit, self.on_overflow = pipe, limit, on_overflow
        self.chunks: list[bytes] = []
        self.size = 0
        self.overflow = False

    def run(self) -> None:
        fd = self.pipe.fileno()
        try:
            while True:
                chunk = os.read(fd, 65536)  # raw fd: no buffer lock held while blocked
                if not chunk:
                    break
                room = self.limit - self.size
                if len(chunk) > room:
                    self.chunks.append(chunk[:room])
                    self.size = self.limit
                    self.overflow = True
                    self.on_overflow()
                    break
                self.chunks.append(chunk)
                self.size += len(chunk)
        except (OSError, ValueError):
            pass

    def text(self) -> str:
        return b"".join(self.chunks).decode("utf-8", errors="replace")


def _writer(pipe, data: bytes) -> None:
    try:
        pipe.write(data)
    except (OSError, ValueError):
        pass
    finally:
        try:
            pipe.close()
        except OSError:
            pass


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.kill()
    except OSError:
        pass


def run_program(
    program: str,
    stdin: str = "",
    timeout: float = 6.0,
    memory_mb: int = 1024,
    output_limit: int = OUTPUT_LIMIT,
    extra_files: dict[str, str] | None = None,
    args: list[str] | None = None,
) -> ExecResult:
    """Run `python3 -I -S main.py` (program written to a private workdir) with `stdin`."""
    workdir = tempfile.mkdtemp(prefix="codelora-run-")
    start = time.monotonic()
    try:
        with open(os.path.join(workdir, "main.py"), "w", encoding="utf-8") as f:
            f.write(_site_prelude() + program)
        for name, content in (extra_files or {}).items():
            with open(os.path.join(workdir, name), "w", encoding="utf-8") as f:
                f.write(content)
        cmd = [python_executable(), "-I", "-S", "main.py", *(args or [])]
        if _bwrap_ok():
            cmd = [*_bwrap_base(workdir), *cmd]
        cpu = max(1, int(timeout) + 1)
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=workdir,
                env=_scrubbed_env(),
                preexec_fn=_limits(memory_mb, cpu),
                start_new_session=True,
                close_fds=True,
            )
        except OSError as e:
            return ExecResult(None, "", "", False, False, False, 0.0, sandbox_error=f"spawn failed: {e}")
        overflow = threading.Event()

        def on_overflow() -> None:
            overflow.set()
            _kill_group(proc)

        out = _Reader(proc.stdout, output_limit, on_overflow)
        err = _Reader(proc.stderr, output_limit, on_overflow)
        wr = threading.Thread(target=_writer, args=(proc.stdin, stdin.encode("utf-8", "replace")), daemon=True)
        out.start()
        err.start()
        wr.start()
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = not overflow.is_set()
        elapsed = time.monotonic() - start
        killed_by_us = timed_out or overflow.is_set()
        _kill_group(proc)  # also reaps anything left in the process group
        proc.wait()
        for t in (out, err, wr):
            t.join(timeout=2)
        # A reader still blocked means an escaped process holds the pipe (process isolation
        # only); leave that pipe to its daemon thread rather than block on close().
        for t, p in ((out, proc.stdout), (err, proc.stderr)):
            if not t.is_alive():
                try:
                    p.close()
                except OSError:
                    pass
        stderr = err.text()
        rc = None if killed_by_us else proc.returncode
        sig = -rc if rc is not None and rc < 0 else (rc - 128 if rc is not None and rc > 128 and _bwrap_ok() else None)
        if sig == signal.SIGXCPU:
            timed_out, rc = True, None
        memory_error = any(m in stderr[-4096:] for m in _MEMORY_MARKERS) or (sig == signal.SIGKILL and not killed_by_us)
        return ExecResult(
            returncode=rc,
            stdout=out.text(),
            stderr=stderr,
            timed_out=timed_out,
            output_limit_exceeded=overflow.is_set(),
            memory_error=memory_error,
            elapsed=elapsed,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
