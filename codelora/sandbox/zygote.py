"""The sandbox's init process: runs untrusted programs one after another inside one bubblewrap sandbox.

This file runs *inside* the sandbox as `python -I -S zygote.py CONTROL_FD UID GID MODE KEEP_JSON`
(and, in MODE "exec", as the program's fresh interpreter: `zygote.py run PATH_JSON ARGS...`)
(see `codelora.sandbox.execution`), as the sandbox's pid 1, and uses the standard library only.
It is also importable on the host, for its unit tests; nothing runs at import.

Who is who: when the scorer is root, pid 1 keeps uid 0 with only CAP_SETUID, CAP_SETGID and CAP_KILL
(all bwrap gives it), and every process that runs program code (and the helper that cleans up
after it) first drops to the unprivileged UID/GID, which clears those capabilities. Programs then
share no uid with pid 1: they cannot signal it, change its rlimits, priority, scheduling, CPU
affinity or I/O priority, nor open its /proc files. When the scorer is not root (UID -1) pid 1 and
programs share the scorer's uid, and the system-call filter refuses those calls for other pids.
pid 1 is also non-dumpable (no ptrace, no /proc/1/mem, fds or environ) and installs no signal
handler: the kernel discards any signal its own namespace sends it, SIGKILL and SIGSTOP included.

Per request (a JSON message on the control socket, with the program's stdin/stdout/stderr and one
memfd per file as SCM_RIGHTS): fork a child that starts a new session, drops to UID/GID, writes the
files into the empty work folder /sandbox itself (O_EXCL | O_NOFOLLOW: the scorer never writes into a
folder a program can see), makes itself the first victim of the kernel's OOM killer, sets the rlimits, and then
- MODE "fork": runs main.py in this forked interpreter as `python -I -S main.py` would (fresh
  __main__, argv and std streams, traceback and exit status, threads, atexit, flush); fast: no
  interpreter start-up per program;
- MODE "exec": execs a fresh interpreter, `python -I -S zygote.py run`, that runs main.py the same
  way (one program per sandbox).
Either way the program sees what `python main.py` would give it: site-packages at the end of
sys.path and the builtins `site` adds (exit, quit, help, ...), without running `site` itself.
Both modes have the scorer's harness modules loaded (HARNESSES; MODE "fork" also PRELOADED) before main.py runs.
pid 1 waits for the child at most the request's "timeout" seconds, on its own clock (`wait_program`: the scorer's
threads cannot delay it), and kills the sandbox's processes when it runs out.
When the child ends, kill every other process of the sandbox (kill(-1) from pid 1), reap them all, note whether a
writable tmpfs filled up, empty the writable folders (pid 1 itself when only non-folders are left at their top,
`clean_here`; else another helper as UID/GID, the owner of what a program left), check the SysV IPC tables, and make
the kernel free what was left in flight in unix sockets (`collect_in_flight`: no socket left, every tmpfs empty). Two
replies: {"status", "cpu", "full", "wall", "timed_out"} as soon as the program's processes are gone (its result; the cleanup is not
part of its run time), then {"clean"} (MODE "fork" only). A sandbox that is not clean afterwards is retired by the
scorer. MODE "exec" serves one request, then exits.
"""

from __future__ import annotations

import builtins
import ctypes
import functools
import gc
import importlib.machinery
import io
import json
import os
import resource
import select
import signal
import socket
import stat
import sys
import time
import types

WORKDIR = "/sandbox"
# The scorer's harness modules (trusted, standard library only, nothing runs at import), next to this file (in the
# sandbox bound read-only beside it): loaded into sys.modules before any program runs, so that a harness main.py
# (`sys.modules["humaneval_harness"].checker()`) costs no compiling per program.
HARNESSES = ("humaneval_harness",)
# Standard library modules programs import often and that cost a forked interpreter milliseconds each time (typing:
# ~5 ms; most HumanEval prompts start with `from typing import List`): imported once by the zygote, as it imports
# its own. Each program gets its own copy-on-write view of them: nothing a program changes reaches the next one.
PRELOADED = ("typing",)
WRITABLE = (WORKDIR, "/tmp", "/dev/shm")  # size-limited tmpfs mounts, emptied after each program
CLEANED = (*WRITABLE, "/dev/mqueue")
PR_SET_DUMPABLE = 4
GC_WAIT = 2.0  # seconds pid 1 waits for the kernel to free what a program left in flight (collect_in_flight)


def drop_privileges(uid: int, gid: int) -> None:
    """Become UID/GID with no supplementary groups; no-op for uid < 0 or when not root."""
    if uid < 0 or os.getuid() != 0:
        return
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise OSError("could not drop privileges")


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)  # loaded once by pid 1: every forked child reuses it


def set_dumpable(flag: int) -> None:
    """prctl(PR_SET_DUMPABLE, flag): 0 keeps other processes of the same uid from ptrace or /proc/PID/mem access."""
    if _libc().prctl(PR_SET_DUMPABLE, flag, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE)")


def load_harnesses(preload: bool) -> None:
    """Compile and run each module of HARNESSES (found next to this file) as sys.modules[name]; with `preload`
    (a zygote that forks its programs) import PRELOADED too."""
    for name in PRELOADED if preload else ():
        __import__(name)
    here = os.path.dirname(os.path.abspath(__file__))
    for name in HARNESSES:
        path = os.path.join(here, name + ".py")
        with open(path, "rb") as f:
            code = compile(f.read(), path, "exec", dont_inherit=True)
        mod = types.ModuleType(name)
        mod.__file__ = path
        sys.modules[name] = mod
        exec(code, mod.__dict__)


def check_name(name: str) -> str:
    """A file name the scorer may ask for: one path component, no NUL."""
    if not name or "/" in name or "\0" in name or name in (".", ".."):
        raise ValueError(f"bad file name {name!r}")
    return name


def write_files(workdir: str, names: list[str], fds: list[int]) -> None:
    """Copy each memfd (read from offset 0) into a new file `workdir/name`; never through a link."""
    dfd = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for name, src in zip(names, fds, strict=True):
            out = os.open(check_name(name), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=dfd)
            try:
                offset = 0
                while chunk := os.pread(src, 1 << 20, offset):
                    os.write(out, chunk)
                    offset += len(chunk)
            finally:
                os.close(out)
    finally:
        os.close(dfd)


def remove_tree(path: str) -> None:
    """Delete `path` (file, link or folder) without following links; reopens folders a program chmod-ed."""
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(path)
        return
    if st.st_mode & 0o700 != 0o700:
        os.chmod(path, 0o700)
    for entry in os.scandir(path):
        remove_tree(entry.path)
    os.rmdir(path)


def empty_dir(path: str, keep: frozenset[str] = frozenset()) -> None:
    """Delete everything in `path` except the paths in `keep` (bind mounts and the folders leading to them)."""
    if path not in keep:
        st = os.lstat(path)
        if st.st_mode & 0o700 != 0o700:
            os.chmod(path, st.st_mode | 0o700)
    for entry in list(os.scandir(path)):
        if entry.path in keep:
            if any(k.startswith(entry.path + "/") for k in keep):
                empty_dir(entry.path, keep)
            continue
        remove_tree(entry.path)


def is_full(path: str) -> bool:
    """Whether the file system at `path` has no free block left (a size-limited tmpfs filled up)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return st.f_blocks > 0 and st.f_bavail == 0


def ipc_empty() -> bool:
    """No SysV shared memory, semaphore or message queue left in this IPC namespace."""
    for kind in ("shm", "sem", "msg"):
        with open("/proc/sysvipc/" + kind) as f:
            if len(f.read().strip().splitlines()) > 1:
                return False
    return True


def unix_sockets() -> int:
    """How many unix sockets exist in this network namespace (the sandbox's own; pid 1's control socket was made
    on the host, outside it): /proc/net/unix lists every one, bound, connected or only in flight."""
    with open("/proc/net/unix") as f:
        return max(0, len(f.read().splitlines()) - 1)


def tmpfs_unused() -> bool:
    """Every writable tmpfs has all its blocks free (a deleted file still open, or in flight, holds blocks)."""
    for d in WRITABLE:
        st = os.statvfs(d)
        if st.f_bfree != st.f_blocks:
            return False
    return True


def collect_in_flight(wait: float = GC_WAIT) -> bool:
    """Free what only in-flight descriptors keep alive, and check that nothing is left.

    A program can send descriptors into its own unix sockets' queues (SCM_RIGHTS), both ends of a socketpair
    in flight in each other: once its processes are gone only the kernel's unix-socket garbage collector frees
    them (and what they hold: a deleted tmpfs file, memfd memory, a bound abstract name). Closing a unix socket
    schedules that collector (asynchronously, on recent kernels): close one, then wait until no socket is left
    in the sandbox and every writable tmpfs is empty, for at most `wait` seconds. Runs after kill_all and the
    cleanup; True when nothing is left (the usual case: no wait at all)."""
    deadline = time.monotonic() + wait
    while True:
        a, b = socket.socketpair()
        a.close()
        b.close()
        if unix_sockets() == 0 and tmpfs_unused():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.002)


def wait_program(pid: int, timeout: float | None, start: float) -> tuple[int, object, float, bool]:
    """Wait for the program's process `pid`, forked at `start` (time.monotonic()), for at most `timeout` s of wall
    clock, measured here, inside the sandbox: nothing the scorer does can delay this clock or stretch the limit.
    On timeout kill every process of the sandbox. Returns (wait status, rusage, seconds from `start` to the
    program's end (`timeout` when timed out), timed out)."""
    timed_out = False
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:  # (Linux < 5.3) no limit here: the scorer's own timer still applies
        pidfd = None
    if pidfd is not None and timeout is not None:
        try:
            timed_out = True
            while (left := start + timeout - time.monotonic()) > 0:
                if select.select([pidfd], [], [], left)[0]:
                    timed_out = False
                    break
        finally:
            os.close(pidfd)
    if timed_out:
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
    while True:
        try:
            _, status, usage = os.wait4(pid, 0)
            break
        except InterruptedError:
            continue
    wall = timeout if timed_out else time.monotonic() - start
    return status, usage, wall, timed_out


def set_limits(req: dict) -> None:
    """rlimits of the program's processes (bytes, seconds, counts; 0 = not set)."""
    if req.get("mem"):
        resource.setrlimit(resource.RLIMIT_AS, (req["mem"], req["mem"]))
    if req.get("nproc"):
        resource.setrlimit(resource.RLIMIT_NPROC, (req["nproc"], req["nproc"]))
    resource.setrlimit(resource.RLIMIT_CPU, (req["cpu"], req["cpu"] + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (req["fsize"], req["fsize"]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))


def child(req: dict, fds: list[int], sock: socket.socket, mode: str, ids: tuple[int, int]) -> None:
    """The forked child: set up the program's process, then run it (MODE "fork") or exec it ("exec")."""
    try:
        sock.detach()
        os.setsid()
        for i, fd in enumerate(fds[:3]):
            os.dup2(fd, i)
        drop_privileges(*ids)
        write_files(WORKDIR, req["files"], fds[3:])
        os.closerange(3, 1 << 16)
        os.chdir(WORKDIR)
        os.environ["PWD"] = WORKDIR
        # Dumpable again (this process only), so that it may raise its own OOM score: the kernel
        # kills the program's processes before pid 1 when the memory cgroup is full.
        set_dumpable(1)
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
        set_limits(req)
        if mode == "exec":  # a fresh interpreter that runs main.py as below
            for sig in (signal.SIGPIPE, signal.SIGXFSZ):  # as subprocess's restore_signals
                signal.signal(sig, signal.SIG_DFL)
            runner = os.path.abspath(__file__)
            os.execv(sys.executable, [sys.executable, "-I", "-S", runner, "run", json.dumps(req["path"]), *req["args"]])
        signal.signal(signal.SIGINT, signal.default_int_handler)
        main, source, path = prepare_main(req["args"], req["path"])
    except BaseException as e:
        try:
            os.write(2, (f"codelora sandbox: cannot start the program: {e!r}\n").encode())
        finally:
            os._exit(127)
    run_main(main, source, path)


def interpreter_builtins() -> None:
    """exit, quit, help, copyright, credits, license: the builtins `site` adds (programs run with -S,
    which skips `site` for speed; graders run `python main.py`, where they exist)."""
    import site  # with -S, importing it adds nothing by itself

    site.setquit()
    site.setcopyright()
    site.sethelper()


def prepare_main(args: list[str], path_dirs: list[str]) -> tuple[types.ModuleType, bytes, str]:
    """Fresh std streams, __main__ and argv, as `python -I -S main.py ARGS` has them, and the
    environment's site-packages (`path_dirs`) at the end of sys.path (-S skips `site`)."""
    sys.path.extend(path_dirs)
    streams = []
    for fd, like, mode in ((0, sys.__stdin__, "rb"), (1, sys.__stdout__, "wb"), (2, sys.__stderr__, "wb")):
        buf = open(fd, mode, closefd=False)  # noqa: SIM115 (lives as long as the program)
        buf.raw.name = like.name
        streams.append(
            io.TextIOWrapper(
                buf,
                encoding=like.encoding,
                errors=like.errors,
                newline="\n",
                line_buffering=like.line_buffering,
                write_through=like.write_through,
            )
        )
    sys.stdin, sys.stdout, sys.stderr = sys.__stdin__, sys.__stdout__, sys.__stderr__ = streams
    path = os.path.join(os.getcwd(), "main.py")  # the work folder
    main = types.ModuleType("__main__")
    main.__file__, main.__cached__ = path, None
    main.__loader__ = importlib.machinery.SourceFileLoader("__main__", path)
    main.__builtins__ = builtins
    sys.modules["__main__"] = main
    sys.argv = ["main.py", *args]
    sys.orig_argv = [sys.executable, "-I", "-S", "main.py", *args]
    with open(path, "rb") as f:
        source = f.read()
    return main, source, path


def run_main(main: types.ModuleType, source: bytes, path: str) -> None:
    """Run the program; an uncaught exception prints its traceback and exits 1, as the interpreter does."""
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


def exit_status(code: object) -> int:
    """The exit status the interpreter gives `SystemExit(code)` (a non-int code is printed, status 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    try:
        sys.stderr.write(str(code) + "\n")
    except Exception:
        pass
    return 1


def finish(status: int, interrupted: bool) -> None:
    """The interpreter's exit sequence up to its final flush (Py_FinalizeEx), then _exit.

    Joins non-daemon threads, runs atexit callbacks, flushes stdout/stderr (status 120 if stdout
    cannot be flushed). The module teardown that follows in a real exit is skipped (in this forked
    interpreter it costs ~9 ms); only __main__'s globals are cleared, so that their __del__ run.
    """
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
    try:
        g = sys.modules["__main__"].__dict__
        for first in (True, False):  # underscore names first, as the interpreter's teardown does
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


def as_user(ids: tuple[int, int], work) -> int:
    """Run `work()` in a forked child as UID/GID; its exit status: 0 if it returned True, else 1."""
    pid = os.fork()
    if pid == 0:
        ok = False
        try:
            drop_privileges(*ids)
            ok = bool(work())
        except BaseException:
            pass
        os._exit(0 if ok else 1)
    while True:
        try:
            return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        except InterruptedError:
            continue


def kill_all() -> None:
    """Kill every process of this pid namespace but pid 1, and reap them all.

    kill(-1) from pid 1 reaches every other process at once (no fork can slip through); pid 1 holds
    CAP_KILL for it when the programs run under another uid. Nothing of a program can interfere:
    it cannot signal pid 1, and the helper that cleans up runs only once they are all gone.
    """
    try:
        os.kill(-1, signal.SIGKILL)
    except OSError:  # nothing left to kill
        pass
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return
        except InterruptedError:
            continue


def clean_here(keep: frozenset[str]) -> bool:
    """Empty the writable folders from pid 1 itself when nothing in them is a folder (what a program leaves there
    most often: nothing, or a few files): pid 1 owns these tmpfs roots (mode 1777), so it may unlink any name in
    them (sticky bit: the folder's owner may), and unlinking follows no link. False, having deleted what it could,
    when a folder (a tree pid 1 may not be allowed to walk) or anything it cannot delete is there: `clean` as the
    programs' uid must then finish the job. Runs only after kill_all: no program process is left to race it."""
    try:
        for d in CLEANED:
            with os.scandir(d) as it:
                entries = list(it)
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    if entry.path in keep and not any(k.startswith(entry.path + "/") for k in keep):
                        continue  # a read-only mount point (empty_dir leaves it too)
                    return False
                os.unlink(entry.path)
    except OSError:
        return False
    return True


def clean(keep: frozenset[str]) -> bool:
    """Empty the writable folders (as the programs' uid: the owner of what they left)."""
    try:
        for d in CLEANED:
            empty_dir(d, keep)
    except (OSError, RecursionError):  # e.g. a folder tree deeper than the recursion limit: retire
        return False
    return True


def serve_one(sock: socket.socket, mode: str, keep: frozenset[str], ids: tuple[int, int]) -> bool:
    """Run one request; False when the sandbox must stop (socket closed, or not clean afterwards)."""
    msg, fds, _, _ = socket.recv_fds(sock, 1 << 16, 64)
    if not msg:
        return False
    req = json.loads(msg)
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        child(req, fds, sock, mode, ids)
    for fd in fds:
        os.close(fd)
    status, usage, wall, timed_out = wait_program(pid, req.get("timeout"), start)
    kill_all()
    full = any(is_full(d) for d in WRITABLE)
    # The program's result goes out first: cleaning up after it is not part of its run time.
    cpu = usage.ru_utime + usage.ru_stime
    sock.send(json.dumps({"status": status, "cpu": cpu, "full": full, "wall": wall, "timed_out": timed_out}).encode())
    if mode == "exec":
        try:
            collect_in_flight(0.2)  # the sandbox ends now; free the host's memory of what was left in flight
        except OSError:
            pass
        return False  # the scorer ends this sandbox now: nothing to clean for
    try:
        emptied = clean_here(keep) or as_user(ids, lambda: clean(keep)) == 0  # the helper (a fork) only if needed
        ok = emptied and ipc_empty() and collect_in_flight() and not any(is_full(d) for d in WRITABLE)
    except OSError:
        ok = False
    sock.send(json.dumps({"clean": ok}).encode())
    return ok


def main(argv: list[str]) -> int:
    """Entry point inside the sandbox: `run` (a fresh interpreter becoming one program) or the zygote loop; returns
    the exit status."""
    if len(argv) >= 3 and argv[1] == "run":  # MODE "exec": the fresh interpreter, as the program's process
        interpreter_builtins()
        load_harnesses(preload=False)
        run_main(*prepare_main(argv[3:], json.loads(argv[2])))
    fd, uid, gid, mode, keep = int(argv[1]), int(argv[2]), int(argv[3]), argv[4], frozenset(json.loads(argv[5]))
    if os.getpid() != 1 or mode not in ("fork", "exec"):
        # kill(-1) kills every process of this uid in the pid namespace: only safe as its init.
        print("codelora zygote: must run as pid 1 of its own pid namespace", file=sys.stderr)
        return 3
    sock = socket.socket(fileno=fd)
    set_dumpable(0)
    # No handler (SIGPIPE and SIGXFSZ stay ignored, as Python sets them): a handler would let the
    # sandbox's processes signal pid 1; the kernel discards their other signals to it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if mode == "fork":
        interpreter_builtins()  # inherited by every forked program
        load_harnesses(preload=True)
        gc.freeze()  # children's collector then leaves our objects' pages alone (fewer copy-on-write faults)
    while serve_one(sock, mode, keep, (uid, gid)):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
