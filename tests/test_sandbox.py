"""Hostile programs in the sandbox: each bounded, the scorer survives, nothing is left behind."""

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from codelora.sandbox import execution
from codelora.sandbox.execution import isolation, isolation_description, run_program
from codelora.sandbox.grading import execution_verdict, grade_stdio_problem

needs_bwrap = pytest.mark.skipif(isolation() != "bwrap", reason="bubblewrap not available")


@pytest.fixture(autouse=True, params=["zygote", "one-off"])
def sandbox_mode(request, monkeypatch):
    """Every test runs both through the per-thread zygote sandbox and through one bwrap per program."""
    if request.param == "one-off":
        monkeypatch.setenv("CODELORA_NO_ZYGOTE", "1")
    return request.param


def test_isolation_description():
    assert isolation() in ("bwrap", "process")
    assert isolation_description()


def test_stdin_stdout_and_env_scrubbed():
    os.environ["CODELORA_TEST_SECRET"] = "hunter2"
    r = run_program("import os,sys\nprint(sys.stdin.read().upper())\nprint(sorted(os.environ))", "abc")
    assert r.returncode == 0 and r.stdout.startswith("ABC")
    assert "CODELORA_TEST_SECRET" not in r.stdout and "HOME" not in r.stdout


def test_infinite_loop():
    r = run_program("while True: pass", timeout=1)
    assert r.timed_out and execution_verdict(r) == "time_limit_exceeded" and r.elapsed < 5


def test_sleep_forever():
    r = run_program("import time\ntime.sleep(10**6)", timeout=1)
    assert r.timed_out and r.elapsed < 5


def test_spinning_threads():
    code = (
        "import threading\nfor _ in range(8):\n    threading.Thread(target=lambda: [0 for _ in iter(int, 1)]).start()\n"
    )
    t = time.monotonic()
    r = run_program(code, timeout=1)
    assert execution_verdict(r) == "time_limit_exceeded" and time.monotonic() - t < 5


def test_memory_bomb():
    r = run_program("x = []\nwhile True: x.append(bytearray(10**7))", timeout=10, memory_mb=256)
    assert execution_verdict(r) == "memory_limit_exceeded"


def test_output_flood():
    r = run_program("while True: print('spam' * 1000)", timeout=10, output_limit=1 << 20)
    assert r.output_limit_exceeded and len(r.stdout) <= 1 << 20
    assert execution_verdict(r) == "output_limit_exceeded"


def test_output_flood_one_line_no_newline():
    r = run_program("import sys\nwhile True: sys.stdout.write('x' * 65536)", timeout=10, output_limit=1 << 20)
    assert r.output_limit_exceeded and len(r.stdout) == 1 << 20


def test_stderr_flood():
    r = run_program("import sys\nwhile True: sys.stderr.write('e' * 65536)", timeout=10, output_limit=1 << 20)
    assert r.output_limit_exceeded


def _pids_with_marker(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        found.append(int(entry))
            except OSError:
                pass
    return found


def test_setsid_daemon_does_not_survive():
    # A double-forked, setsid()-detached daemon with a unique marker in its argv.
    marker = f"codelora-daemon-{os.getpid()}-{time.time_ns()}"
    code = (
        "import os, sys\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(1000)', "
        f"{marker!r}])\n"
        "    os._exit(0)\n"
        "import time; time.sleep(0.5)\n"
        "print(os.getpid())\n"
    )
    r = run_program(code, timeout=5)
    assert r.returncode == 0, r.stderr
    time.sleep(0.3)
    left = _pids_with_marker(marker)
    try:
        if isolation() == "bwrap":
            assert left == []
    finally:
        for pid in left:
            try:
                os.kill(pid, 9)
            except OSError:
                pass


def test_kill_process_group_scorer_survives():
    r = run_program("import os, signal\nos.killpg(os.getpgid(0), signal.SIGKILL)", timeout=5)
    # SIGKILL from inside is indistinguishable from the kernel's OOM kill in process mode.
    assert r.returncode != 0 and execution_verdict(r) in ("runtime_error", "memory_limit_exceeded")


@needs_bwrap
def test_kill_parent_scorer_survives():
    r = run_program("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nprint('alive')", timeout=5)
    assert execution_verdict(r) in (None, "runtime_error")


@needs_bwrap
def test_write_outside_workdir_does_not_appear(tmp_path):
    target = tmp_path / "pwned.txt"
    home_target = "/root/codelora_pwned.txt"
    code = (
        f"for p in [{str(target)!r}, {home_target!r}]:\n"
        "    try:\n        open(p, 'w').write('x')\n    except OSError as e:\n        print('blocked', e)\n"
        "open('local.txt', 'w').write('ok')\n"
    )
    r = run_program(code, timeout=5)
    assert r.returncode == 0, r.stderr
    assert not target.exists() and not os.path.exists(home_target)


@needs_bwrap
def test_network_connect_fails():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    try:
        code = (
            "import socket\n"
            f"try:\n    s = socket.socket()\n    s.settimeout(2)\n    s.connect(('127.0.0.1', {port}))\n"
            "    print('connected')\n"
            "except OSError as e:\n    print('blocked', e)\n"
        )
        r = run_program(code, timeout=5)
        assert "blocked" in r.stdout and "connected" not in r.stdout
    finally:
        srv.close()


def test_deep_recursion_segfault_is_runtime_error():
    # Recursion through a C function (lru_cache) overflows the C stack -> SIGSEGV.
    code = (
        "import sys, functools\nsys.setrecursionlimit(10**6)\n"
        "@functools.lru_cache(None)\ndef f(n):\n    return f(n + 1) + 1 if n < 10**6 else 0\nprint(f(0))\n"
    )
    r = grade_stdio_problem(code, [{"input": "", "output": "1"}], timeout=10)
    assert r.verdict == "runtime_error"


def test_reading_past_eof():
    r = run_program("import sys\nprint(repr(sys.stdin.read()))\nprint(repr(sys.stdin.read()))\ninput()", "x", timeout=5)
    assert "'x'" in r.stdout and "EOFError" in r.stderr and execution_verdict(r) == "runtime_error"


def test_large_stdin_no_deadlock():
    data = "1\n" * 3_000_000
    r = run_program("import sys\nprint(len(sys.stdin.read()))", data, timeout=10)
    assert r.stdout.strip() == str(len(data))


@needs_bwrap
def test_no_capabilities_cannot_remount_root_writable():
    # With capabilities, `mount -o remount,bind,rw /` inside bwrap (run as root) makes the host's
    # root filesystem writable from the sandbox.
    target = f"/var/tmp/codelora-remount-{os.getpid()}-{time.time_ns()}"
    code = (
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "print('caps', open('/proc/self/status').read().split('CapEff:')[1].split()[0])\n"
        "rc = libc.mount(b'none', b'/', None, 32 | 4096, None)  # MS_REMOUNT | MS_BIND, not read-only\n"
        "print('mount', rc, ctypes.get_errno())\n"
        f"try:\n    open({target!r}, 'w').write('x')\n    print('wrote')\nexcept OSError as e:\n    print('blocked', e)\n"
    )
    try:
        r = run_program(code, timeout=5)
        assert r.returncode == 0, r.stderr
        assert "caps 0000000000000000" in r.stdout and "mount -1" in r.stdout and "blocked" in r.stdout
        assert not os.path.exists(target)
    finally:
        if os.path.exists(target):
            os.unlink(target)


@needs_bwrap
def test_nothing_carries_over_to_the_next_program(sandbox_mode):
    marker = f"codelora-leftover-{os.getpid()}-{time.time_ns()}"
    places = f"['/tmp/{marker}', '/dev/shm/{marker}', '{marker}', 'sub/{marker}']"
    first = (
        "import os, sys\n"
        "os.mkdir('sub')\n"
        f"for p in {places}:\n"
        "    open(p, 'w').write('x')\n"
        "os.chmod('sub', 0)\n"
        "if os.fork() == 0:\n    os.setsid()\n"
        f"    os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(1000)', {marker!r}])\n"
        "print('left')\n"
    )
    second = (
        "import os\n"
        f"print([p for p in {places} if os.path.exists(p)])\n"
        "print(sorted(os.listdir('.')), os.access('.', os.W_OK))\n"
        "others = [p for p in os.listdir('/proc') if p.isdigit() and int(p) not in (1, os.getpid(), os.getppid())]\n"
        "print(sorted(open(f'/proc/{p}/cmdline', 'rb').read() for p in others))\n"
    )
    assert run_program(first, timeout=5).stdout.strip() == "left"
    r = run_program(second, timeout=5)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["[]", "['main.py'] True", "[]"]
    assert _pids_with_marker(marker) == []


@needs_bwrap
def test_program_cannot_reach_the_zygote(sandbox_mode):
    # The zygote (pid 1 in both modes) is not dumpable and the program has no capabilities: it
    # cannot list or open the zygote's fds (its control socket), memory or environment, nor ptrace it.
    code = (
        "import ctypes, os\nppid = os.getppid()\nprint('ppid', ppid)\n"
        "paths = [f'/proc/{ppid}/fd/{n}' for n in range(3, 8)] + [f'/proc/{ppid}/mem', f'/proc/{ppid}/environ']\n"
        "for p in paths + [f'/proc/{ppid}/fd']:\n"
        "    try:\n        os.close(os.open(p, os.O_RDWR if '/fd/' in p else os.O_RDONLY))\n        print('open', p)\n"
        "    except OSError:\n        print('blocked')\n"
        "print('ptrace', ctypes.CDLL(None).ptrace(16, ppid, 0, 0))  # PTRACE_ATTACH\n"
        "print(sorted(os.listdir('/proc/self/fd')))\n"
    )
    r = run_program(code, timeout=5)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "ppid 1" and set(lines[1:-2]) == {"blocked"} and len(lines) == 11, lines
    assert lines[-2] == "ptrace -1"
    assert lines[-1] == "['0', '1', '2', '3']"  # 3: listdir's own fd; nothing inherited


@needs_bwrap
def test_sysv_ipc_leftover_does_not_reach_the_next_program():
    code = "import ctypes\nprint(ctypes.CDLL(None).shmget(0x5eed, 4096, 0o1000 | 0o600) >= 0)\n"
    assert run_program(code, timeout=5).stdout.strip() == "True"
    r = run_program("print(len(open('/proc/sysvipc/shm').read().strip().splitlines()))", timeout=5)
    assert r.stdout.strip() == "1"


@needs_bwrap  # without bubblewrap the parent is the scorer itself
def test_sandbox_survives_and_recovers_after_killing_its_parent():
    r = run_program("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nprint('alive')", timeout=5)
    assert execution_verdict(r) in (None, "runtime_error")
    r = run_program("print(input() * 2)", "ab", timeout=5)
    assert r.returncode == 0 and r.stdout == "abab\n"


def test_concurrent_programs_get_their_own_output():
    results = {}

    def work(i):
        results[i] = [run_program(f"print({i} * int(input()))", str(j), timeout=10).stdout for j in range(3)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: [f"{i * j}\n" for j in range(3)] for i in range(4)}


@needs_bwrap
def test_zygote_is_reused(sandbox_mode):
    code = "import os\nprint(os.getppid(), os.getpid())"
    a, b = run_program(code).stdout.split(), run_program(code).stdout.split()
    if sandbox_mode == "zygote":
        assert execution._thread_zygote() is not None
        assert a[0] == b[0] and a[1] != b[1]  # same zygote, a fresh process each time
    else:
        assert a == b == ["1", "2"]  # bwrap's init and the program, a new sandbox each time


@needs_bwrap
def test_zygote_that_cannot_start_falls_back_to_one_off(sandbox_mode, monkeypatch, tmp_path):
    if sandbox_mode != "zygote":
        pytest.skip("zygote mode only")
    # A zygote that exits at once in "fork" mode (and works in "exec" mode, the one-off fallback).
    bad = tmp_path / "zygote.py"
    src = Path(execution._ZYGOTE_FILE).read_text()
    bad.write_text(
        src.replace(
            "def main(argv: list[str]) -> int:\n",
            "def main(argv: list[str]) -> int:\n    if argv[1:2] != ['run'] and argv[4] == 'fork':\n        return 3\n",
        )
    )
    bad.chmod(0o644)
    monkeypatch.setattr(execution, "_ZYGOTE_FILE", str(bad))
    monkeypatch.setattr(execution, "_zygote_failures", 0)
    monkeypatch.setattr(execution, "_local", threading.local())
    for i in range(4):
        r = run_program("print(input())", f"x{i}", timeout=5)
        assert r.returncode == 0 and r.stdout == f"x{i}\n"
    assert execution._zygote_failures == 3 and execution._thread_zygote() is None


NORMAL_INTERPRETER_CASES = [
    "from __future__ import annotations\nx: int = 1\nprint(x)",  # red team J6: a prepended line broke this
    "print(1)\nexit()",  # red team J7: -S left exit/quit undefined
    "print(2)\nquit(3)",
    "print(type(help).__name__, type(copyright).__name__, type(license).__name__)",
    "import sys\nprint(sys.argv[0], sys.path[0] != '')\nraise SystemExit(sys.stdin.readline())",
    "def f():\n    raise ValueError('x')\nf()",  # exact line numbers in the traceback
]


@pytest.mark.parametrize("code", NORMAL_INTERPRETER_CASES)
def test_programs_run_as_under_a_normal_interpreter(code, tmp_path):
    # Reference: `python -I main.py` on the host, as a grader would run the file (site included).
    (tmp_path / "main.py").write_text(code)
    ref = subprocess.run(
        [sys.executable, "-I", "main.py"], input="a\nb\n", capture_output=True, text=True, cwd=tmp_path
    )
    r = run_program(code, "a\nb\n", timeout=5)
    tail = lambda err: [ln.replace(str(tmp_path), "").replace("/sandbox", "") for ln in err.splitlines()[-3:]]  # noqa: E731
    assert (r.returncode, r.stdout, tail(r.stderr)) == (ref.returncode, ref.stdout, tail(ref.stderr))


FRESH_INTERPRETER_CASES = [
    "import sys\nprint(sys.argv, sys.orig_argv[1:], __name__, __file__.endswith('/main.py'), len(sys.path))",
    "import sys, signal\nprint(sys.stdin.name, sys.stdout.name, sys.stderr.errors, sys.stderr.line_buffering)\n"
    "print(signal.getsignal(signal.SIGPIPE), sys.flags.isolated, sys.flags.no_site, sys.getrecursionlimit())\n"
    "print(repr(sys.stdin.read()))",
    "import os\nprint(sorted(os.environ), os.environ['PWD'] == os.getcwd())",
    "import __main__\nprint(__main__.__dict__ is globals(), type(__builtins__).__name__)",
    "def f():\n    raise ValueError('x')\nf()",
    "import sys; sys.exit(3)",
    "import sys; sys.exit('bye')",
    "import sys; sys.exit(256 + 7)",
    "def f(:\n pass",
    "import threading, time\nthreading.Thread(target=lambda: (time.sleep(0.2), print('thread'))).start()\nprint('main')",
    "import atexit, sys\natexit.register(lambda: print('atexit'))\natexit.register(lambda: sys.exit(5))\nprint(1)",
    "import os\nprint('lost', end='')\nos._exit(4)",
    "import sys\nsys.stdout.write('x')\nsys.stdout.close()",
    "import sys; sys.stdout.write('no newline'); sys.stderr.write('err')",
    "class A:\n    def __del__(self):\n        print('del')\na = A()",
]


@needs_bwrap
@pytest.mark.parametrize("code", FRESH_INTERPRETER_CASES)
def test_zygote_runs_programs_like_a_fresh_interpreter(sandbox_mode, monkeypatch, code):
    if sandbox_mode != "zygote":
        pytest.skip("compares both modes itself")
    got = []
    for no_zygote in ("", "1"):
        monkeypatch.setenv("CODELORA_NO_ZYGOTE", no_zygote)
        r = run_program(code, "a\r\nb\n", timeout=5)
        got.append((r.returncode, r.stdout, r.stderr.split("main.py")[-1]))  # workdir paths differ
    assert got[0] == got[1]


def test_limit_names_the_limit_the_sandbox_observed():
    assert run_program("while True: pass", timeout=1).limit == "time"
    assert run_program("while True: print('x' * 999)", timeout=10, output_limit=1 << 16).limit == "output"
    # Exit statuses that look like signals are the program's own: no limit.
    for code in ("import sys; sys.exit(137)", "import sys; sys.exit(152)", "print(1)"):
        assert run_program(code, timeout=5).limit is None, code


def test_isolation_report_is_json():
    import json

    rep = execution.isolation_report()
    assert rep["sandbox"] == isolation() and json.loads(json.dumps(rep)) == rep
