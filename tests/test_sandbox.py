"""Hostile programs in the sandbox: each bounded, the scorer survives, nothing is left behind."""

import os
import socket
import time

import pytest

from codelora.sandbox.execution import isolation, isolation_description, run_program
from codelora.sandbox.grading import execution_verdict, grade_stdio_problem

needs_bwrap = pytest.mark.skipif(isolation() != "bwrap", reason="bubblewrap not available")


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
            "import socket\ns = socket.socket()\ns.settimeout(2)\n"
            f"try:\n    s.connect(('127.0.0.1', {port}))\n    print('connected')\n"
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
