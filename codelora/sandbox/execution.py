"""Run one untrusted Python program in a sandbox and capture bounded output.

Isolation: bubblewrap (read-only root, private /tmp, private workdir, no network, own pid/ipc/uts
namespaces, all capabilities dropped) when `bwrap` works on this machine; otherwise plain process
isolation (see `isolation_description()`). Resource limits (address space, CPU time, file size,
no core dumps, open files) are applied in both modes, plus a wall-clock timeout.

Speed: starting bubblewrap and a Python interpreter costs more than most programs run, so under
bubblewrap each thread that calls `run_program` keeps one long-lived sandbox (a "zygote": a small
server, `_ZYGOTE`, running `python -I -S` inside its own bwrap). Per program the zygote forks a
child that takes the program's own stdin/stdout/stderr pipes (passed over a socket; the scorer
reads and bounds them itself, as before), calls setsid(), sets the rlimits, and runs main.py in
that forked interpreter exactly as `python -I -S main.py` would (fresh __main__, argv, std
streams; traceback and exit status, threads, atexit and flushing as at a normal interpreter exit).
When the program ends the zygote kills every other process in the sandbox's pid namespace
(kill(-1); it is their subreaper and reaps them all), empties /tmp, /dev/shm and the message-queue
mount, checks that /dev and the SysV IPC tables are as they were, and only then reports the exit
status; the scorer empties the workdir. Shared between consecutive programs of one zygote,
therefore: the namespaces themselves (loopback interface, hostname: unchangeable without
capabilities), and the interpreter state the zygote had when it forked: the same string-hash seed
(a fresh `python -I` picks a random one) and a few stdlib modules already imported (json, socket,
ctypes, shutil, io, types, resource, importlib.machinery); nothing a program did. A program that
leaves SysV IPC objects or changes /dev retires its zygote; one that times out, floods its output,
or kills or stops the zygote has the zygote killed (a killed zygote also reruns the program in a
one-off sandbox, the pre-zygote path, so that its verdict is the program's own). The zygote is
not dumpable and holds no capabilities, so programs cannot ptrace it or open its file
descriptors; its control socket is closed in the child before the program runs.
`CODELORA_NO_ZYGOTE=1` disables it (one bwrap and one interpreter per program).
"""

from __future__ import annotations

import functools
import json
import os
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass

OUTPUT_LIMIT = 16 * 1024 * 1024  # bytes kept per stream
FILE_SIZE_LIMIT = 16 * 1024 * 1024
_SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
_MEMORY_MARKERS = ("MemoryError", "Cannot allocate memory", "std::bad_alloc")
_EXIT_GRACE = 2.0  # seconds to drain the pipes after the program ended or was killed


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
    # Which limit the sandbox itself observed being hit: "time" (wall-clock timer fired, or the
    # CPU-time rlimit killed the program), "memory", "output" (output cap reached), "pids",
    # "file_size"; None otherwise. Never derived from a bare exit status: a program that exits
    # with 137 or kills itself gets None.
    limit: str | None = None

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
    # --cap-drop ALL: when the scorer runs as root, bwrap otherwise leaves the program every
    # capability (it could e.g. remount / read-write and write the host's files).
    return [
        "bwrap",
        "--ro-bind", "/", "/",
        "--dev", "/dev",
        "--proc", "/proc",
        "--tmpfs", "/tmp",
        "--bind", workdir, workdir,
        "--chdir", workdir,
        "--unshare-all",
        "--cap-drop", "ALL",
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


def isolation_report() -> dict:
    """The isolation actually in use on this machine, for summary.json.

    Keys: sandbox ("bwrap" | "process"), zygote (bool), seccomp (bool), cgroup ("v1" | "v2" |
    "none"), memory_limit / pids_limit (how each is enforced), uid (the uid programs run as, or
    None when unchanged), fallbacks (one line per missing host feature).
    """
    bwrap = _bwrap_ok()
    fallbacks = []
    if not bwrap:
        fallbacks.append("no bubblewrap: process isolation only")
    return {
        "sandbox": "bwrap" if bwrap else "process",
        "zygote": bwrap and not os.environ.get("CODELORA_NO_ZYGOTE"),
        "seccomp": False,
        "cgroup": "none",
        "memory_limit": "RLIMIT_AS per process",
        "pids_limit": "none",
        "uid": None,
        "fallbacks": fallbacks,
    }


def isolation_description() -> str:
    if _bwrap_ok():
        return (
            "bubblewrap: read-only filesystem, private /tmp and workdir, no network, "
            "own pid/ipc/uts namespaces, no capabilities; rlimits (address space, CPU, file size); "
            "every process a program started is killed when it ends. Each worker reuses one sandbox "
            "for consecutive programs, each a fresh fork of a pre-started interpreter (shared: its hash "
            "seed and a few preloaded stdlib modules) in a fresh workdir; /tmp, /dev/shm and message "
            "queues emptied, /dev and SysV IPC checked in between"
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


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.kill()
    except OSError:
        pass


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)  # Linux >= 5.3
    except (AttributeError, OSError):
        return None


def _exited(pid: int) -> bool:
    """Whether `pid` has exited, without reaping it (so its pid stays reserved for killpg)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _pump(in_fd, out_fd, err_fd, data: bytes, timeout: float, limit: int, exit_fd, exited, on_exit, kill):
    """Feed stdin, read stdout/stderr (each capped at `limit`) and wait for the end, in one thread.

    One epoll loop instead of reader/writer threads and `Popen.wait(timeout)`: the latter polls
    with growing sleeps (up to 50 ms), which added ~7-20 ms to every program. The end is signalled
    by `exit_fd` becoming readable (then `on_exit()` is called), or, without one, by `exited()`
    polled every 2 ms. On timeout or overflow `kill()` is called. Afterwards the pipes are drained
    for at most _EXIT_GRACE seconds. Closes the three fds.
    Returns (stdout, stderr, timed_out, output_limit_exceeded).
    """
    deadline = time.monotonic() + timeout
    bufs = {out_fd: bytearray(), err_fd: bytearray()}
    sel = selectors.DefaultSelector()
    timed_out = overflow = ended = False
    view = memoryview(data)
    try:
        for fd in (out_fd, err_fd):
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ)
        if data:
            os.set_blocking(in_fd, False)
            sel.register(in_fd, selectors.EVENT_WRITE)
        else:
            os.close(in_fd)
            in_fd = None
        if exit_fd is not None:
            sel.register(exit_fd, selectors.EVENT_READ)

        def end(by_us: bool) -> None:
            nonlocal ended, deadline
            if exit_fd is not None:
                sel.unregister(exit_fd)
            if by_us:
                kill()
            else:
                on_exit()
            ended, deadline = True, time.monotonic() + _EXIT_GRACE

        while True:
            if ended and not any(k.fd in bufs for k in sel.get_map().values()):
                break
            if not ended and exit_fd is None and exited():
                end(False)
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if ended:
                    break  # an escaped process (process isolation only) still holds a pipe
                timed_out = True
                end(True)
                continue
            if exit_fd is None:
                remaining = min(remaining, 0.002)
            for key, _ in sel.select(remaining):
                fd = key.fd
                if fd == exit_fd:
                    if not ended:
                        end(False)
                elif fd == in_fd:
                    try:
                        n = os.write(in_fd, view[:65536])
                    except BlockingIOError:
                        continue
                    except OSError:  # the program closed stdin or exited
                        n = len(view)
                    view = view[n:]
                    if not view:
                        sel.unregister(in_fd)
                        os.close(in_fd)
                        in_fd = None
                else:
                    try:
                        chunk = os.read(fd, 65536)
                    except BlockingIOError:
                        continue
                    except OSError:
                        chunk = b""
                    if not chunk:
                        sel.unregister(fd)
                        continue
                    buf = bufs[fd]
                    room = limit - len(buf)
                    buf += chunk[:room]
                    if len(chunk) > room:
                        sel.unregister(fd)
                        overflow = True
                        if not ended:
                            end(True)
    finally:
        sel.close()
        for fd in (in_fd, out_fd, err_fd):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
    return bytes(bufs[out_fd]), bytes(bufs[err_fd]), timed_out and not overflow, overflow


def _result(stdout: bytes, stderr_b: bytes, rc: int | None, timed_out: bool, overflow: bool, elapsed: float):
    killed_by_us = timed_out or overflow
    stderr = stderr_b.decode("utf-8", errors="replace")
    rc = None if killed_by_us else rc
    sig = -rc if rc is not None and rc < 0 else (rc - 128 if rc is not None and rc > 128 and _bwrap_ok() else None)
    limit = "output" if overflow else "time" if timed_out else None
    if sig == signal.SIGXCPU:
        timed_out, rc = True, None
    memory_error = any(m in stderr[-4096:] for m in _MEMORY_MARKERS) or (sig == signal.SIGKILL and not killed_by_us)
    return ExecResult(
        returncode=rc,
        stdout=stdout.decode("utf-8", errors="replace"),
        stderr=stderr,
        timed_out=timed_out,
        output_limit_exceeded=overflow,
        memory_error=memory_error,
        elapsed=elapsed,
        limit=limit,
    )


# --------------------------------------------------------------------------- zygote

# Runs inside bwrap as `python -I -S -c _ZYGOTE <control fd> <workdirs' base>`; see the module docstring.
_ZYGOTE = r"""
import builtins, ctypes, gc, importlib.machinery, io, json, os, resource, shutil, signal, socket, sys, types

def snapshot():
    out = {"/tmp": os.lstat("/tmp").st_mode}
    for d, dirs, files in os.walk("/dev"):
        for n in dirs + files:
            p = os.path.join(d, n)
            out[p] = os.readlink(p) if os.path.islink(p) else os.lstat(p).st_mode
    return out

def clean(initial, keep):
    try:
        for d in ("/tmp", "/dev/shm", "/dev/mqueue"):
            for n in os.listdir(d):
                p = os.path.join(d, n)
                if p == keep or keep.startswith(p + "/"):
                    continue  # the workdirs' mount point; the scorer empties it
                if os.path.isdir(p) and not os.path.islink(p):
                    shutil.rmtree(p)
                else:
                    os.unlink(p)
        for kind in ("shm", "sem", "msg"):
            with open("/proc/sysvipc/" + kind) as f:
                if len(f.read().strip().splitlines()) > 1:
                    return False
        return snapshot() == initial
    except OSError:
        return False

def child(req, fds, sock):
    # Runs the program in this forked interpreter, as `python -I -S main.py` would: fresh
    # __main__, argv and std streams (configured like the interpreter's own); an uncaught
    # exception prints its traceback and exits 1; SystemExit, non-daemon threads, atexit and the
    # final flush are left to the interpreter's normal exit.
    try:
        sock.detach()
        os.setsid()
        for i, fd in enumerate(fds):
            os.dup2(fd, i)
        os.closerange(3, 1 << 16)
        os.chdir(req["dir"])
        os.environ["PWD"] = req["dir"]
        mem, cpu, fsize = req["mem"], req["cpu"], req["fsize"]
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
        streams = []
        for fd, like, mode in ((0, sys.__stdin__, "rb"), (1, sys.__stdout__, "wb"), (2, sys.__stderr__, "wb")):
            buf = io.open(fd, mode, closefd=False)
            buf.raw.name = like.name
            streams.append(io.TextIOWrapper(
                buf, encoding=like.encoding, errors=like.errors, newline="\n",
                line_buffering=like.line_buffering, write_through=like.write_through,
            ))
        sys.stdin, sys.stdout, sys.stderr = sys.__stdin__, sys.__stdout__, sys.__stderr__ = streams
        path = os.path.join(req["dir"], "main.py")
        main = types.ModuleType("__main__")
        main.__file__, main.__cached__ = path, None
        main.__loader__ = importlib.machinery.SourceFileLoader("__main__", path)
        main.__builtins__ = builtins
        sys.modules["__main__"] = main
        sys.argv = ["main.py", *req["args"]]
        sys.orig_argv = [sys.executable, "-I", "-S", "main.py", *req["args"]]
        with open(path, "rb") as f:
            source = f.read()
    except BaseException as e:
        try:
            os.write(2, ("codelora sandbox: cannot start the program: %r\n" % (e,)).encode())
        finally:
            os._exit(127)
    status, interrupted = 0, False
    try:
        exec(compile(source, path, "exec", dont_inherit=True), main.__dict__)
    except SystemExit as e:
        status = exit_status(e.code)
    except BaseException as e:
        e.__traceback__ = e.__traceback__.tb_next  # drop this function's frame
        sys.excepthook(type(e), e, e.__traceback__)
        status, interrupted = 1, isinstance(e, KeyboardInterrupt)
    finish(status, interrupted)


def exit_status(code):
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    try:
        sys.stderr.write(str(code) + "\n")
    except Exception:
        pass
    return 1


def finish(status, interrupted):
    # The interpreter's exit sequence up to its final flush (Py_FinalizeEx): join non-daemon
    # threads, run atexit callbacks, flush stdout/stderr (exit status 120 if stdout cannot be
    # flushed). The module teardown that follows in a real exit is skipped: in this forked
    # interpreter it costs ~9 ms, and only __del__ methods run at teardown could observe it.
    try:
        if "threading" in sys.modules:
            sys.modules["threading"]._shutdown()
    except SystemExit as e:
        status = exit_status(e.code)
    except BaseException:
        pass
    import atexit
    atexit._run_exitfuncs()
    for f in (sys.stdout, sys.stderr):
        try:
            if not f.closed:
                f.flush()
        except Exception:
            if f is sys.stdout:
                status = 120
    # As the teardown of __main__ would (underscore names first), so that __del__ methods of
    # the program's globals still run; then flush what they printed.
    try:
        g = sys.modules["__main__"].__dict__
        for first in (True, False):
            for k in list(g):
                if k != "__builtins__" and k.startswith("_") == first:
                    g[k] = None
    except BaseException:
        pass
    for f in (sys.__stdout__, sys.__stderr__):
        try:
            if not f.closed:
                f.flush()
        except BaseException:
            pass
    if interrupted:  # as CPython does for an uncaught KeyboardInterrupt
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(status & 0xFF)


def main():
    sock = socket.socket(fileno=int(sys.argv[1]))
    keep = sys.argv[2]
    libc = ctypes.CDLL(None, use_errno=True)
    # PR_SET_DUMPABLE 0: programs (same uid, no capabilities) cannot ptrace us or open our fds.
    # PR_SET_CHILD_SUBREAPER: orphans of a program are re-parented to us and reaped by us.
    if libc.prctl(4, 0, 0, 0, 0) != 0 or libc.prctl(36, 1, 0, 0, 0) != 0:
        sys.exit(3)
    initial = snapshot()
    gc.freeze()  # the children's collector then leaves our objects' pages alone (fewer copy-on-write faults)
    while True:
        msg, fds, _, _ = socket.recv_fds(sock, 1 << 16, 3)
        if not msg:
            return
        req = json.loads(msg)
        pid = os.fork()
        if pid == 0:
            child(req, fds, sock)
        for fd in fds:
            os.close(fd)
        _, status = os.waitpid(pid, 0)
        try:
            os.kill(-1, signal.SIGKILL)  # everything else in this pid namespace but init and us
        except OSError:
            pass
        while True:
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                break
        ok = clean(initial, keep)
        sock.send(json.dumps({"status": status, "clean": ok}).encode())
        if not ok:
            return

main()
"""


class _Zygote:
    """Host side of one long-lived sandbox (see the module docstring)."""

    def __init__(self) -> None:
        self.base = tempfile.mkdtemp(prefix="codelora-zygote-")
        self.sock, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            cmd = [*_bwrap_base(self.base), "--mqueue", "/dev/mqueue", python_executable(), "-I", "-S", "-c"]
            self.proc = subprocess.Popen(
                [*cmd, _ZYGOTE, str(child.fileno()), self.base],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=self.base,
                env=_scrubbed_env(),
                pass_fds=(child.fileno(),),
                start_new_session=True,
            )
        except OSError:
            self.sock.close()
            shutil.rmtree(self.base, ignore_errors=True)
            raise
        finally:
            child.close()
        self.alive = True
        self.fresh = True  # has not run a program yet
        self._finalizer = weakref.finalize(self, _Zygote._close, self.proc, self.sock, self.base)

    @staticmethod
    def _close(proc: subprocess.Popen, sock: socket.socket, base: str) -> None:
        _kill_group(proc)
        proc.wait()
        sock.close()
        shutil.rmtree(base, ignore_errors=True)

    def kill(self) -> None:
        self.alive = False
        self._finalizer()

    def workdir(self) -> str:
        """A fresh, empty workdir inside the sandbox's bind-mounted base folder."""
        for name in os.listdir(self.base):  # whatever the previous program left
            p = os.path.join(self.base, name)
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p, ignore_errors=True)
            else:
                os.unlink(p)
        os.chmod(self.base, 0o755)
        if os.listdir(self.base):
            raise OSError(f"cannot empty {self.base}")
        return tempfile.mkdtemp(dir=self.base, prefix="run-")

    def run(self, workdir, data, timeout, memory_mb, output_limit, args):
        """ExecResult-like tuple, or None if the zygote died while the program ran."""
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        req = {
            "dir": workdir,
            "args": list(args),
            "mem": memory_mb * 1024 * 1024,
            "cpu": max(1, int(timeout) + 1),
            "fsize": FILE_SIZE_LIMIT,
        }
        try:
            socket.send_fds(self.sock, [json.dumps(req).encode()], [in_r, out_w, err_w])
        except OSError:
            for fd in (in_w, out_r, err_r):
                os.close(fd)
            self.kill()
            return None
        finally:
            for fd in (in_r, out_w, err_w):
                os.close(fd)
        report: dict = {}

        def on_exit() -> None:
            try:
                msg = self.sock.recv(4096)
            except OSError:
                msg = b""
            if msg:
                report.update(json.loads(msg))
            if not report.get("clean"):
                self.kill()

        stdout, stderr, timed_out, overflow = _pump(
            in_w, out_r, err_r, data, timeout, output_limit, self.sock.fileno(), None, on_exit, self.kill
        )
        if timed_out or overflow:
            return stdout, stderr, None, timed_out, overflow
        if "status" not in report:
            return None
        return stdout, stderr, os.waitstatus_to_exitcode(report["status"]), False, False


_local = threading.local()
_zygote_failures = 0  # consecutive zygotes that died before running anything; 3 disable them
_zygote_lock = threading.Lock()


def _thread_zygote() -> _Zygote | None:
    """This thread's zygote (started on first use; bwrap's --die-with-parent ends it with the thread)."""
    if not _bwrap_ok() or os.environ.get("CODELORA_NO_ZYGOTE") or _zygote_failures >= 3:
        return None
    z = getattr(_local, "zygote", None)
    if z is not None and z.alive and z.proc.poll() is None:
        return z
    if z is not None:
        z.kill()
    try:
        z = _local.zygote = _Zygote()
    except OSError:
        return None
    return z


def _run_zygote(z: _Zygote, program, stdin, timeout, memory_mb, output_limit, extra_files, args):
    global _zygote_failures
    start = time.monotonic()
    try:
        workdir = z.workdir()
        _write_files(workdir, program, extra_files)
    except OSError:  # a previous program left something we cannot remove: retire this zygote
        z.kill()
        return None
    got = z.run(workdir, stdin.encode("utf-8", "replace"), timeout, memory_mb, output_limit, args or [])
    with _zygote_lock:
        if got is None and z.fresh:
            _zygote_failures += 1
        elif got is not None:
            _zygote_failures = 0
    z.fresh = False
    if got is None:
        return None
    stdout, stderr, rc, timed_out, overflow = got
    return _result(stdout, stderr, rc, timed_out, overflow, time.monotonic() - start)


# --------------------------------------------------------------------------- one-off sandbox


def _write_files(workdir: str, program: str, extra_files: dict[str, str] | None) -> None:
    with open(os.path.join(workdir, "main.py"), "w", encoding="utf-8") as f:
        f.write(_site_prelude() + program)
    for name, content in (extra_files or {}).items():
        with open(os.path.join(workdir, name), "w", encoding="utf-8") as f:
            f.write(content)


def _run_once(program, stdin, timeout, memory_mb, output_limit, extra_files, args) -> ExecResult:
    """One process (under its own bwrap, when available) for this program alone."""
    workdir = tempfile.mkdtemp(prefix="codelora-run-")
    start = time.monotonic()
    try:
        _write_files(workdir, program, extra_files)
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
        pidfd = _pidfd(proc.pid)
        # _pump works on raw fds and closes them.
        fds = [os.dup(f.fileno()) for f in (proc.stdin, proc.stdout, proc.stderr)]
        for f in (proc.stdin, proc.stdout, proc.stderr):
            f.close()
        try:
            # The process group is killed when the program exits, while it is still a zombie
            # (its pid cannot have been reused), times out or overflows.
            stdout, stderr, timed_out, overflow = _pump(
                *fds,
                stdin.encode("utf-8", "replace"),
                timeout,
                output_limit,
                pidfd,
                lambda: _exited(proc.pid),
                lambda: _kill_group(proc),
                lambda: _kill_group(proc),
            )
        finally:
            if pidfd is not None:
                os.close(pidfd)
            _kill_group(proc)
            proc.wait()
        return _result(stdout, stderr, proc.returncode, timed_out, overflow, time.monotonic() - start)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


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
    z = _thread_zygote()
    if z is not None:
        res = _run_zygote(z, program, stdin, timeout, memory_mb, output_limit, extra_files, args)
        if res is not None:
            return res
        # The zygote died under the program (e.g. it killed its parent): rerun it in a one-off
        # sandbox so that its verdict is its own, not an artefact of the zygote.
    return _run_once(program, stdin, timeout, memory_mb, output_limit, extra_files, args)
