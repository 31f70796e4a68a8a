"""Whole-sandbox limits with a cgroup: memory (resident, tmpfs included), number of tasks, CPU share.

One `Cgroup` per sandbox, created as a child of the cgroup the scorer itself runs in (so it
stays inside any limit the machine gives the scorer). cgroup v2 is used when the scorer's own
v2 cgroup delegates the `memory` controller to its children; otherwise cgroup v1, where the
`memory` hierarchy (and `pids`, `cpu` where present) is mounted and writable (root). Without
either, `support()` says why and the sandbox falls back to per-process rlimits.

Counters read back per program: `oom_kill` (v1 `memory.oom_control`, v2 `memory.events`) and the
`max` count of refused forks (`pids.events`).
"""

from __future__ import annotations

import functools
import itertools
import os
import signal
import time
from dataclasses import dataclass

MOUNTS = "/proc/self/mountinfo"
TCP_BUFFERS_V1 = 32 * 1024 * 1024  # v1: bytes of TCP socket buffers per sandbox, on top of its memory limit
_counter = itertools.count()


@dataclass(frozen=True)
class Support:
    """What this machine offers: kind "v1" | "v2" | None, the parent folder per controller, and why not."""

    kind: str | None
    parents: dict[str, str]  # controller ("memory", "pids", "cpu") -> folder new cgroups are made in
    reason: str = ""


def _own_paths() -> tuple[dict[str, str], str | None]:
    """(v1 controller -> own cgroup path, own v2 path) from /proc/self/cgroup."""
    v1, v2 = {}, None
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            if ctrls == "":
                v2 = path
            for c in ctrls.split(","):
                if c:
                    v1[c] = path
    return v1, v2


def _mounts() -> tuple[dict[str, str], str | None]:
    """(v1 controller -> mount point, v2 mount point)."""
    v1, v2 = {}, None
    with open(MOUNTS) as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype, _, opts = right.split()[:3]
            mnt = left.split()[4]
            if fstype == "cgroup2" and v2 is None:
                v2 = mnt
            elif fstype == "cgroup":
                for c in opts.split(","):
                    if c in ("memory", "pids", "cpu") and c not in v1:
                        v1[c] = mnt
    return v1, v2


def _probe(parent: str) -> bool:
    path = os.path.join(parent, f"codelora-probe-{os.getpid()}-{next(_counter)}")
    try:
        os.mkdir(path)
    except OSError:
        return False
    try:
        os.rmdir(path)
    except OSError:
        pass
    return True


@functools.lru_cache(maxsize=1)
def support() -> Support:
    """Probe once which cgroup kind this process can create children in."""
    if os.environ.get("CODELORA_NO_CGROUP"):
        return Support(None, {}, "disabled by CODELORA_NO_CGROUP")
    try:
        own_v1, own_v2 = _own_paths()
        mnt_v1, mnt_v2 = _mounts()
    except (OSError, ValueError) as e:
        return Support(None, {}, f"cannot read the cgroup mounts ({e})")
    if mnt_v2 and own_v2 is not None:
        own = os.path.join(mnt_v2, own_v2.lstrip("/"))
        try:
            with open(os.path.join(own, "cgroup.subtree_control")) as f:
                delegated = f.read().split()
        except OSError:
            delegated = []
        if "memory" in delegated and _probe(own):
            sweep({"memory": own})
            return Support("v2", {c: own for c in ("memory", "pids", "cpu") if c in delegated})
    parents = {}
    for c in ("memory", "pids", "cpu"):
        if c in mnt_v1 and c in own_v1:
            p = os.path.join(mnt_v1[c], own_v1[c].lstrip("/"))
            if _probe(p):
                parents[c] = p
    if "memory" in parents:
        sweep(parents)
        return Support("v1", parents)
    return Support(None, {}, "no writable cgroup with the memory controller (v2 delegation or v1 as root)")


def sweep(parents: dict[str, str], min_age: float = 60.0) -> list[str]:
    """Remove the empty cgroups left by scorers that died (codelora-PID-N, PID not running, older than `min_age` s).

    The age guards a scorer in another pid namespace whose new cgroup is not yet populated.
    """
    removed = []
    for parent in set(parents.values()):
        try:
            names = os.listdir(parent)
        except OSError:
            continue
        for name in names:
            parts = name.split("-")
            if len(parts) != 3 or parts[0] != "codelora" or not parts[1].isdigit():
                continue
            path = os.path.join(parent, name)
            try:
                if os.path.exists(f"/proc/{parts[1]}") or time.time() - os.stat(path).st_mtime < min_age:
                    continue
                os.rmdir(path)  # fails while a process is still inside
                removed.append(path)
            except OSError:
                pass
    return removed


class Cgroup:
    """One sandbox's cgroup: created on init, `remove()`d (after killing what is left) at the end."""

    def __init__(self, sup: Support) -> None:
        self.kind = sup.kind
        name = self.name = f"codelora-{os.getpid()}-{next(_counter)}"
        self.dirs: dict[str, str] = {}
        try:
            for c, parent in sup.parents.items():
                d = os.path.join(parent, name)
                if d not in self.dirs.values():
                    os.mkdir(d)
                self.dirs[c] = d
        except OSError:
            self.remove()
            raise
        self.memory_limit: int | None = None
        if "cpu" in self.dirs:  # at most one CPU for the whole sandbox, however many threads it runs
            try:
                if self.kind == "v2":
                    self._write("cpu", "cpu.max", "100000 100000")
                else:
                    self._write("cpu", "cpu.cfs_quota_us", self._read("cpu", "cpu.cfs_period_us").strip())
            except OSError:
                pass
        if self.kind == "v2":
            try:
                self._write("memory", "memory.swap.max", "0")
            except OSError:
                pass

    def _path(self, c: str, f: str) -> str:
        return os.path.join(self.dirs[c], f)

    def _read(self, c: str, f: str) -> str:
        with open(self._path(c, f)) as fh:
            return fh.read()

    def _write(self, c: str, f: str, value: str) -> None:
        with open(self._path(c, f), "w") as fh:
            fh.write(value)

    def procs_fds(self) -> list[int]:
        """Write-only fds of each hierarchy's cgroup.procs, for `enter()` in a child before exec."""
        return [os.open(os.path.join(d, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC) for d in set(self.dirs.values())]

    @staticmethod
    def enter(fds: list[int]) -> None:
        """Move the calling process into the cgroup (runs in the forked child: no allocation-heavy work)."""
        pid = str(os.getpid()).encode()
        for fd in fds:
            os.write(fd, pid)

    def set_memory(self, limit: int) -> None:
        """Limit resident memory + tmpfs + kernel memory of the whole sandbox to `limit` bytes, no swap."""
        if limit == self.memory_limit:
            return
        if self.kind == "v2":
            self._write("memory", "memory.max", str(limit))
        else:
            # memsw (memory + swap) must stay >= memory: raise it first, lower it last.
            memsw = os.path.exists(self._path("memory", "memory.memsw.limit_in_bytes"))
            raising = self.memory_limit is not None and limit > self.memory_limit
            if memsw and raising:
                self._write("memory", "memory.memsw.limit_in_bytes", str(limit))
            self._write("memory", "memory.limit_in_bytes", str(limit))
            if memsw and not raising:
                self._write("memory", "memory.memsw.limit_in_bytes", str(limit))
            # v1 charges TCP socket buffers to a cgroup only once it has a TCP limit, and apart from
            # memory.limit_in_bytes (v2 counts them in memory.max): without one, loopback connections
            # queued gigabytes outside the memory limit. Contest programs need next to none.
            if os.path.exists(self._path("memory", "memory.kmem.tcp.limit_in_bytes")):
                self._write("memory", "memory.kmem.tcp.limit_in_bytes", str(min(limit, TCP_BUFFERS_V1)))
        self.memory_limit = limit

    def set_pids(self, n: int) -> bool:
        """Limit the sandbox to n tasks (pids.max); False where the pids controller is not available."""
        if "pids" not in self.dirs:
            return False
        self._write("pids", "pids.max", str(n))
        return True

    def counters(self) -> tuple[int, int]:
        """(OOM kills so far, forks refused by pids.max so far)."""
        oom = refused = 0
        try:
            text = self._read("memory", "memory.events" if self.kind == "v2" else "memory.oom_control")
            oom = _field(text, "oom_kill")
        except (OSError, ValueError):
            pass
        if "pids" in self.dirs:
            try:
                refused = _field(self._read("pids", "pids.events"), "max")
            except OSError:
                pass
        return oom, refused

    def shmem(self) -> int | None:
        """Bytes of shared memory charged to this cgroup itself (memory.stat `shmem`: tmpfs files, memfds, SysV and
        shared anonymous memory), None when unreadable. What no process holds any more must be back to zero."""
        try:
            stat = dict(line.split(" ", 1) for line in self._read("memory", "memory.stat").splitlines())
            return int(stat["shmem"])
        except (OSError, ValueError, KeyError):
            return None

    def oom_eventfd(self) -> int | None:
        """v1: an eventfd that becomes readable on each OOM in this cgroup (None on v2 or failure)."""
        if self.kind != "v1":
            return None
        efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        ctl = os.open(self._path("memory", "memory.oom_control"), os.O_RDONLY | os.O_CLOEXEC)
        try:
            self._write("memory", "cgroup.event_control", f"{efd} {ctl}")
        except OSError:
            os.close(efd)
            return None
        finally:
            os.close(ctl)
        return efd

    def pids(self) -> set[int]:
        """Process ids now in the sandbox's cgroups (every controller's folder), read from cgroup.procs."""
        out: set[int] = set()
        for d in set(self.dirs.values()):
            try:
                with open(os.path.join(d, "cgroup.procs")) as f:
                    out.update(int(x) for x in f.read().split())
            except (OSError, ValueError):
                pass
        return out

    def kill_all(self, wait: float = 2.0) -> bool:
        """SIGKILL every process in the cgroup until none is left (or `wait` seconds pass)."""
        deadline = time.monotonic() + wait
        while pids := self.pids():
            if time.monotonic() > deadline:
                return False
            for pid in pids:
                self._kill(pid)
            time.sleep(0.005)
        return True

    def _kill(self, pid: int) -> None:
        """SIGKILL `pid` only if it is still in this cgroup: through a pidfd, so a reused pid is never hit."""
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                if any(line.rstrip("\n").endswith("/" + self.name) for line in f):
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
        except OSError:
            pass
        finally:
            os.close(fd)

    def remove(self) -> None:
        """Kill what is left and delete the cgroup folders (best effort)."""
        if self.dirs:
            self.kill_all()
        for d in set(self.dirs.values()):
            for _ in range(50):
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)
        self.dirs = {}


def _field(text: str, key: str) -> int:
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        if k == key:
            return int(v)
    return 0
