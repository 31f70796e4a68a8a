"""The sandbox's system-call filter (seccomp BPF), built with libseccomp and handed to bubblewrap.

Everything is allowed except the calls below, which fail with EPERM (the program sees an
ordinary error; nothing is killed, the scorer is untouched). Other architectures' system calls
(e.g. 32-bit `int 0x80` on x86-64) kill the caller: libseccomp's default for a foreign ABI.

Denied, and why:
- another process's memory or state: ptrace, process_vm_readv/writev, pidfd_getfd, kcmp,
  process_madvise, migrate_pages, move_pages;
- kernel keyrings, which outlive the process and are not namespaced per sandbox: add_key,
  request_key, keyctl;
- the filesystem view and namespaces: mount, umount2, pivot_root, chroot, unshare, setns, the new
  mount API (fsopen, fsconfig, fsmount, fspick, open_tree, move_mount, mount_setattr), and
  `clone` with any CLONE_NEW* flag; `clone3` answers ENOSYS (its flags live in memory a filter
  cannot read) so that the C library falls back to `clone`;
- large kernel attack surface that no contest program needs: bpf, perf_event_open, userfaultfd,
  io_uring_setup/enter/register (its operations bypass this filter), module and kexec calls,
  name_to_handle_at/open_by_handle_at, fanotify_init, acct, swapon/swapoff, reboot, syslog,
  quotactl, iopl/ioperm/modify_ldt, clock and time setting, sethostname/setdomainname, vhangup;
- another process's limits and scheduling (the kernel only checks for the same uid, which pid 1
  shares with programs when the scorer is not root): prlimit64, sched_setscheduler,
  sched_setparam, sched_setaffinity and sched_setattr for any pid but 0 (the caller),
  setpriority and ioprio_set for anything but the calling process;
- `ioctl(TIOCSTI)` and `ioctl(TIOCLINUX)` (typing into a terminal);
- made to succeed without doing anything (return 0): sync, syncfs, fsync, fdatasync,
  sync_file_range, msync (everything a program may write is tmpfs; on the host's read-only files
  they still sent a cache flush to the disk), fadvise64 (DONTNEED on a host file evicts it from the
  page cache for everyone) and madvise's MADV_COLD/MADV_PAGEOUT (reclaim page-cache pages);
- inotify (inotify_init, inotify_init1, inotify_add_watch): a watch on a shared read-only host file saw every
  other sandbox open or read it (a channel between concurrent programs, issue #24); fanotify is denied above;
- made to succeed without doing anything (return 0): advisory file locks, `flock` and `fcntl`'s F_SETLK,
  F_SETLKW, F_OFD_SETLK and F_OFD_SETLKW (lockf, sqlite's locks): the files under /usr, the interpreter's
  prefix and site-packages are the host's inodes, shared by every sandbox, so a lock taken on one was seen by
  every concurrent sandbox (a channel between programs, red team of issue #24). F_GETLK still reports the real
  state, in which no sandbox holds a lock; a program's own processes cannot exclude each other with locks;
- futexes not private to the process (FUTEX_PRIVATE_FLAG clear), whose key is the page's inode and offset when the
  word lies in a file mapping: every sandbox maps the same host files under /usr read-only, so a FUTEX_WAIT on a word
  of one was woken by another sandbox's FUTEX_WAKE on it (a channel between concurrent programs, red team of issue
  #24). A shared FUTEX_WAIT or FUTEX_WAIT_BITSET returns EAGAIN at once (a spurious wake-up, which every futex user
  handles by checking its word again: such a wait spins instead of sleeping), a shared FUTEX_WAKE or
  FUTEX_WAKE_BITSET returns 0 (no one woken), every other shared operation (requeue, wake-op, priority
  inheritance) EPERM. Private futexes (glibc's default mutexes, condition variables, semaphores, CPython's locks
  and GIL) are untouched; so is the kernel's own wake-up on thread exit (CLONE_CHILD_CLEARTID, robust lists),
  which no waiter in a sandbox can receive since none can wait on a shared key. The futex2 calls (futex_waitv,
  futex_wait, futex_wake, futex_requeue; flags in memory or per call) answer ENOSYS, as on a kernel without them;
- directory notifications and leases (`fcntl` F_NOTIFY, F_SETLEASE): EPERM. A dnotify watch on a shared host
  folder saw concurrent sandboxes read its files (the same channel as inotify); a lease taken on a shared file
  would be broken by another sandbox's open;
- Linux AIO (io_setup, io_submit, io_getevents, io_pgetevents, io_cancel, io_destroy): its event
  count (fs.aio-nr) is host-wide;
- sockets other than AF_UNIX (EAFNOSUPPORT): contest programs need no network, and cgroup v1 does not
  charge UDP or netlink buffers to the sandbox's memory (loopback traffic could pin gigabytes of
  kernel memory); AF_VSOCK would reach the hypervisor's host whatever the network namespace, AF_ALG
  is the kernel's crypto API.

Needs libseccomp (Debian: libseccomp2) and the `pyseccomp` binding; `build()` raises
`FilterUnavailable` with the reason when either is missing.
"""

from __future__ import annotations

import errno
import functools
import os
import termios

DENIED = (
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp", "process_madvise",
    "migrate_pages", "move_pages",
    "add_key", "request_key", "keyctl",
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns",
    "fsopen", "fsconfig", "fsmount", "fspick", "open_tree", "move_mount", "mount_setattr",
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "name_to_handle_at", "open_by_handle_at", "fanotify_init", "acct", "swapon", "swapoff", "reboot",
    "syslog", "quotactl", "quotactl_fd", "iopl", "ioperm", "modify_ldt", "settimeofday",
    "clock_settime", "clock_adjtime", "adjtimex", "sethostname", "setdomainname", "vhangup",
    "lookup_dcookie", "uselib", "nfsservctl",
    "io_setup", "io_submit", "io_getevents", "io_pgetevents", "io_cancel", "io_destroy",
    "inotify_init", "inotify_init1", "inotify_add_watch",
)  # fmt: skip
# The calls every filter must contain (the list); a libseccomp that knows fewer is refused.
REQUIRED = (
    "ptrace", "process_vm_readv", "process_vm_writev", "add_key", "request_key", "keyctl", "mount",
    "umount2", "pivot_root", "chroot", "unshare", "setns", "bpf", "perf_event_open", "userfaultfd",
    "init_module", "finit_module", "delete_module", "kexec_load",
)  # fmt: skip
CLONE_NEW_FLAGS = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
    0x00000080,  # CLONE_NEWTIME
)
SELF_ONLY = ("prlimit64", "sched_setscheduler", "sched_setparam", "sched_setaffinity", "sched_setattr")  # arg 0: pid
PRIO_PROCESS, IOPRIO_WHO_PROCESS = 0, 1
NO_OPS = ("sync", "syncfs", "fsync", "fdatasync", "sync_file_range", "msync", "fadvise64")  # return 0, do nothing
MADV_COLD, MADV_PAGEOUT = 20, 21
F_SETLK, F_SETLKW, F_OFD_SETLK, F_OFD_SETLKW = 6, 7, 37, 38  # fcntl commands that take a lock: return 0, do nothing
F_SETLEASE, F_NOTIFY = 1024, 1026  # refused (EPERM)
FUTEX_PRIVATE_FLAG = 128
FUTEX_OP_MASK = 0xFF  # the command (low 7 bits) and FUTEX_PRIVATE_FLAG; FUTEX_CLOCK_REALTIME (256) is not looked at
FUTEX_SHARED_WAITS = (0, 9)  # FUTEX_WAIT, FUTEX_WAIT_BITSET: EAGAIN when shared
FUTEX_SHARED_WAKES = (1, 10)  # FUTEX_WAKE, FUTEX_WAKE_BITSET: 0 when shared
FUTEX_SHARED_OTHERS = (2, 3, 4, 5, 6, 7, 8, 11, 12, 13)  # FD, REQUEUE, CMP_REQUEUE, WAKE_OP, *_PI: EPERM when shared
# futex_waitv, futex_wake, futex_wait, futex_requeue (Linux 5.16, 6.7): ENOSYS. By number, the same on every
# architecture (the unified table), so that a libseccomp older than the call still filters it.
FUTEX2 = (449, 454, 455, 456)
AF_UNIX = 1  # the only socket family programs may create
TIOCLINUX = 0x541C


class FilterUnavailable(RuntimeError):
    """libseccomp or its Python binding is missing or refused a rule."""


@functools.lru_cache(maxsize=1)
def build() -> bytes:
    """The filter as a BPF program (bytes, as `bwrap --seccomp FD` reads it) for this machine's ABI."""
    try:
        import pyseccomp as sc
    except (ImportError, OSError) as e:  # OSError: the binding could not load libseccomp.so.2
        raise FilterUnavailable(f"libseccomp or pyseccomp not available ({e})") from e
    try:
        f = sc.SyscallFilter(defaction=sc.ALLOW)
        deny = sc.ERRNO(errno.EPERM)
        missing = []
        for name in DENIED:
            try:
                f.add_rule(deny, name)
            except (RuntimeError, ValueError, OSError):  # a call this kernel/libseccomp does not know
                missing.append(name)
        if set(missing) & set(REQUIRED):
            raise FilterUnavailable(f"libseccomp does not know {sorted(set(missing) & set(REQUIRED))}")
        for req in (termios.TIOCSTI, TIOCLINUX):
            f.add_rule(deny, "ioctl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, req))
        for flag in CLONE_NEW_FLAGS:
            f.add_rule(deny, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
        f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
        for call in NO_OPS:
            f.add_rule(sc.ERRNO(0), call)
        f.add_rule(sc.ERRNO(0), "flock")
        for cmd in (F_SETLK, F_SETLKW, F_OFD_SETLK, F_OFD_SETLKW):  # the kernel reads cmd as a 32-bit int
            f.add_rule(sc.ERRNO(0), "fcntl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, cmd))
        for cmd in (F_SETLEASE, F_NOTIFY):
            f.add_rule(deny, "fcntl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, cmd))
        for cmds, action in (
            (FUTEX_SHARED_WAITS, sc.ERRNO(errno.EAGAIN)),
            (FUTEX_SHARED_WAKES, sc.ERRNO(0)),
            (FUTEX_SHARED_OTHERS, deny),
        ):
            for cmd in cmds:  # the kernel reads op as a 32-bit int; shared: FUTEX_PRIVATE_FLAG clear
                f.add_rule(action, "futex", sc.Arg(1, sc.MASKED_EQ, FUTEX_OP_MASK, cmd))
        for nr in FUTEX2:
            f.add_rule(sc.ERRNO(errno.ENOSYS), nr)
        for advice in (MADV_COLD, MADV_PAGEOUT):
            f.add_rule(sc.ERRNO(0), "madvise", sc.Arg(2, sc.EQ, advice))
        for call in SELF_ONLY:
            f.add_rule(deny, call, sc.Arg(0, sc.NE, 0))
        f.add_rule(deny, "setpriority", sc.Arg(0, sc.NE, PRIO_PROCESS))
        f.add_rule(deny, "setpriority", sc.Arg(1, sc.NE, 0))
        f.add_rule(deny, "ioprio_set", sc.Arg(0, sc.NE, IOPRIO_WHO_PROCESS))
        f.add_rule(deny, "ioprio_set", sc.Arg(1, sc.NE, 0))
        for call in ("socket", "socketpair"):
            f.add_rule(sc.ERRNO(errno.EAFNOSUPPORT), call, sc.Arg(0, sc.NE, AF_UNIX))
        fd = os.memfd_create("codelora-seccomp-build", os.MFD_CLOEXEC)
        with os.fdopen(fd, "w+b") as out:
            f.export_bpf(out)  # writes through the fd itself
            out.seek(0)
            return out.read()
    except FilterUnavailable:
        raise
    except (RuntimeError, ValueError, OSError) as e:
        raise FilterUnavailable(f"libseccomp refused the filter ({e})") from e


def memfd() -> int:
    """A fresh fd holding the filter at offset 0, for `bwrap --seccomp FD` (which reads and closes it)."""
    data = build()
    fd = os.memfd_create("codelora-seccomp", 0)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
