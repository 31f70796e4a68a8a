"""The judge under load (issue #24): bounded scorer work on replies, times no other worker can move, nothing a
program made surviving it (in flight in unix sockets included), no lock, futex or notification channel between
concurrent sandboxes.

Each test runs in both sandbox modes (per-worker zygote, and one sandbox per program with CODELORA_NO_ZYGOTE=1),
and is followed by a correct program in the same worker (thread) that must be judged correctly.
"""

import json
import os
import threading
import time

import pytest

from codelora.sandbox import execution, grading
from codelora.sandbox.execution import isolation_report, run_program
from codelora.sandbox.grading import grade_call_problem, grade_stdio_problem

REPORT = isolation_report()
pytestmark = pytest.mark.skipif(REPORT["sandbox"] != "bwrap", reason="bubblewrap not available")
needs_cgroup = pytest.mark.skipif(REPORT["cgroup"] == "none", reason="no writable cgroup on this machine")
needs_seccomp = pytest.mark.skipif(not REPORT["seccomp"], reason="no system-call filter on this machine")


@pytest.fixture(autouse=True, params=["zygote", "one-off"])
def sandbox_mode(request, monkeypatch):
    if request.param == "one-off":
        monkeypatch.setenv("CODELORA_NO_ZYGOTE", "1")
    return request.param


def assert_next_program_accepted(**kw) -> None:
    """A correct program graded right after, in this same worker, is accepted."""
    res = grade_stdio_problem("print(int(input()) * 2)", [{"input": "21", "output": "42"}], timeout=5, **kw)
    assert res.verdict == "accepted", res.failure


def call_test(expected) -> list[dict]:
    return [{"input": "3", "output": json.dumps(expected)}]


# A solution that writes the harness's reply line itself (the harness runs in the solution's interpreter: the
# nonce and the reply fd are in __main__), with a body of its choosing, and exits before the harness would.
FORGE = (
    "import __main__, os\n"
    "def _forge(body):\n"
    "    data = ('\\n' + __main__._nonce + '{\"value\": ' + body + '}\\n').encode()\n"
    "    while data:\n"
    "        data = data[os.write(__main__._fd, data):]\n"
    "    os._exit(0)\n"
)


# --------------------------------------------------------------------------- 1. bounded scorer work


def test_a_forged_reply_of_a_huge_integer_is_a_wrong_answer_never_decoded(sandbox_mode, monkeypatch):
    decoded = []
    real = grading._loads
    monkeypatch.setattr(grading, "_loads", lambda text: decoded.append(len(text)) or real(text))
    code = FORGE + "class Solution:\n    def f(self, n):\n        _forge('9' * 60000)\n"
    res = grade_call_problem(code, call_test(5), "f", timeout=5, header="")
    assert res.verdict == "wrong_answer", res.failure
    assert "digits" in res.failure["detail"] and res.failure["got"] == "<reply not decoded>"
    assert max(decoded, default=0) < 1000  # only the test's own expected value and arguments were decoded
    assert_next_program_accepted()


def test_a_reply_over_the_bound_is_cut_at_the_reply_cap(sandbox_mode):
    # The amplification: 3 million empty lists (12 MiB of JSON, 280 MiB as Python objects in the scorer),
    # and a 200000-digit integer (quadratic to decode): both far over what a value equal to `5` can be.
    for body in ("return [[]] * 3_000_000", "return 10 ** 200000"):
        code = f"import sys\nsys.set_int_max_str_digits(0)\nclass Solution:\n    def f(self, n):\n        {body}\n"
        res = grade_call_problem(code, call_test(5), "f", timeout=8, header="")
        assert res.verdict == "output_limit_exceeded", (body, res.failure)
    assert_next_program_accepted()


def test_a_forged_reply_of_many_objects_under_the_length_cap_is_not_decoded(sandbox_mode):
    # 60 KiB of empty lists fits under the 64 KiB floor, but holds 15000 lists where the expected value has none.
    code = FORGE + "class Solution:\n    def f(self, n):\n        _forge('[' + '[], ' * 15000 + '[]]')\n"
    res = grade_call_problem(code, call_test(5), "f", timeout=5, header="")
    assert res.verdict == "wrong_answer" and res.failure["got"] == "<reply not decoded>", res.failure
    assert "lists, dicts and elements" in res.failure["detail"]
    # ... and a reply one character over the length bound is not decoded either
    bounds = grading.reply_bounds("5")
    with pytest.raises(grading.ReplyTooLarge, match="characters"):
        grading._loads_bounded('"' + "a" * bounds[0] + '"', bounds)
    assert_next_program_accepted()


def test_a_reply_nested_too_deep_is_the_programs_failure(sandbox_mode):
    # Returned: the harness refuses a value nested deeper than 200 (wrong_answer). Forged: more brackets than the
    # expected value has is a wrong answer undecoded; within that count (an expected list of 2000 elements) but
    # past the interpreter's recursion limit, json stops and the reply does not decode (runtime_error).
    code = "class Solution:\n    def f(self, n):\n        v = []\n        for _ in range(300):\n            v = [v]\n        return v\n"
    assert grade_call_problem(code, call_test(5), "f", header="").verdict == "wrong_answer"
    code = FORGE + "class Solution:\n    def f(self, n):\n        _forge('[' * 1500 + ']' * 1500)\n"
    res = grade_call_problem(code, call_test(5), "f", header="")
    assert res.verdict == "wrong_answer" and res.failure["got"] == "<reply not decoded>", res.failure
    res = grade_call_problem(code, call_test(list(range(2000))), "f", header="")
    assert res.verdict == "runtime_error", res.failure
    assert_next_program_accepted()


def test_correct_answers_at_the_worst_expansion_stay_accepted(sandbox_mode):
    # A value equal to the expected one may be written much longer than the expected text: 0 as `false` (3.5x
    # with the separator), an astral character as a 12-character escape pair. Both are within the bound.
    n = 20000
    zeros = [{"input": "3", "output": "[" + ",".join(["0"] * n) + "]"}]
    res = grade_call_problem(
        f"class Solution:\n    def f(self, k):\n        return [False] * {n}\n", zeros, "f", header=""
    )
    assert res.verdict == "accepted", res.failure
    emoji = [{"input": "3", "output": json.dumps("\U0001f600" * n, ensure_ascii=False)}]
    code = f"class Solution:\n    def f(self, k):\n        return '\\U0001f600' * {n}\n"
    assert len(json.dumps("\U0001f600" * n)) > grading.REPLY_FLOOR  # the floor alone would not hold it
    res = grade_call_problem(code, emoji, "f", header="")
    assert res.verdict == "accepted", res.failure
    tests = [{"input": "3", "output": str(7**5000)}]  # an expected integer of 4226 digits, over the digit floor
    header = "import sys\nsys.set_int_max_str_digits(0)\nclass Solution:\n    def f(self, k):\n        return 7 ** 5000"
    assert grade_call_problem(header + "\n", tests, "f", header="").verdict == "accepted"
    assert grade_call_problem(header + " + 1\n", tests, "f", header="").verdict == "wrong_answer"
    assert_next_program_accepted()


def test_bounded_decoding_is_refused_before_json_sees_the_text(monkeypatch):
    monkeypatch.setattr(grading, "_loads", lambda text: pytest.fail("decoded"))
    bounds = grading.reply_bounds("[1, 22, 333]")
    assert bounds == (grading.REPLY_FLOOR + grading.REPLY_FACTOR * 12, grading.INT_DIGITS_FLOOR, 3 + 64)
    for text in ("9" * 401, '{"value": [' + "1," * 40000 + "1]}", '{"value": "' + "7" * 500 + '"}', "[" * 68):
        with pytest.raises(grading.ReplyTooLarge):
            grading._loads_bounded(text, bounds)
    monkeypatch.undo()
    assert grading._loads_bounded('{"value": [1, 22, 333]}', bounds) == {"value": [1, 22, 333]}


# --------------------------------------------------------------------------- 2. times other workers cannot move


def _hold_the_interpreter_lock(seconds: float) -> None:
    """Scorer work that does not release the GIL for `seconds` of wall time (long C calls), as decoding a huge
    integer did.

    One C call sized by a calibration alone could be shorter than asked: on a loaded machine the calibration ran
    slower than the hold (CI saw 2.6 s for 6). So the fastest of three calibrations sizes it, and should the call
    still end early, another covers the rest (the GIL may change hands for one switch interval in between)."""
    n = 2_000_000
    per = 1.0
    for _ in range(3):
        t = time.monotonic()
        sum(range(n))
        per = min(per, max(time.monotonic() - t, 1e-4) / n)
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0.05:
        sum(range(int(left / per)))


NEAR_LIMIT = "import time\nt = time.monotonic()\nwhile time.monotonic() - t < 1.5:\n    pass\nprint(int(input()) * 2)\n"


def _grade_near_limit_while(stall, program=NEAR_LIMIT, test=None) -> tuple[grading.GradeResult, float]:
    """Grade a correct 1.5 s program (limit 3 s) in worker 2 while `stall()` runs in this thread (worker 1),
    starting while the program runs."""
    test = test or {"input": "21", "output": "42"}
    out = {}
    started = threading.Event()

    def worker2():
        grade_stdio_problem("print(1)", [{"input": "", "output": "1"}], timeout=5)  # its sandbox, warmed up
        started.set()
        out["res"] = grade_stdio_problem(program, [test], timeout=3.0)

    run_program("print(1)")  # this worker's sandbox, warmed up too: the stall starts while worker 2's program runs
    th = threading.Thread(target=worker2)
    th.start()
    assert started.wait(60)
    time.sleep(0.5)  # the program is running now (its compile run and a one-off sandbox's start take less)
    t = time.monotonic()
    stall()
    stalled = time.monotonic() - t
    th.join(60)
    return out["res"], stalled


def test_a_scorer_thread_held_up_by_another_workers_work_does_not_time_a_program_out(sandbox_mode):
    res, stalled = _grade_near_limit_while(lambda: _hold_the_interpreter_lock(6.0))
    assert stalled > 3.2  # the lock was held past the program's time limit (3 s)
    assert res.verdict == "accepted", res.failure
    assert 1.4 < res.tests[0].time < 3.0  # its own time, measured inside its sandbox
    assert_next_program_accepted()


def test_a_large_input_does_not_wait_for_a_held_up_scorer_thread(sandbox_mode):
    # 8 MiB of stdin, read after 1.2 s: were it fed through a pipe by the scorer's thread (held up for 4 s), the
    # program would wait for it, and its time with it.
    program = NEAR_LIMIT.replace("print(int(input()) * 2)", "print(len(input()))").replace("1.5", "1.2")
    res, stalled = _grade_near_limit_while(
        lambda: _hold_the_interpreter_lock(6.0), program, {"input": "7" * (8 << 20), "output": str(8 << 20)}
    )
    assert stalled > 3.2  # the lock was held past the program's time limit (3 s)
    assert res.verdict == "accepted", res.failure
    assert 1.1 < res.tests[0].time < 3.0
    assert_next_program_accepted()


def test_a_huge_reply_in_worker_1_does_not_move_worker_2s_verdict(sandbox_mode):
    # The scenario: worker 1 grades a call-based program that forges a 550000-digit reply (the old scorer
    # spent tens of seconds decoding it, holding the interpreter lock) while worker 2 runs a correct program.
    code = FORGE + "class Solution:\n    def f(self, n):\n        _forge('9' * 550000)\n"
    got = {}

    def stall():
        got["res"] = grade_call_problem(code, call_test(5), "f", timeout=5, header="")

    res, stalled = _grade_near_limit_while(stall)
    assert got["res"].verdict in ("wrong_answer", "output_limit_exceeded"), got["res"].failure
    assert res.verdict == "accepted", res.failure
    assert 1.4 < res.tests[0].time < 3.0
    assert_next_program_accepted()


def test_the_time_limit_is_enforced_inside_the_sandbox(sandbox_mode):
    r = run_program("import time\ntime.sleep(30)", timeout=1.0)
    assert r.limit == "time" and r.timed_out and 0.9 < r.elapsed < 1.5, r
    assert grading.execution_verdict(r) == "time_limit_exceeded"
    assert_next_program_accepted()


# --------------------------------------------------------------------------- 3. nothing left in flight

# Descriptors parked in a cycle: both ends of a socketpair in flight in each other's queue, every fd closed.
PARK = (
    "import os, socket\n"
    "def park(fds):\n"
    "    a, b = socket.socketpair()\n"
    "    socket.send_fds(a, [b'x'], fds + [a.fileno(), b.fileno()])\n"
    "    socket.send_fds(b, [b'x'], [a.fileno(), b.fileno()])\n"
    "    a.close(); b.close()\n"
    "    for fd in fds:\n"
    "        os.close(fd)\n"
    "    print('parked')\n"
)


def _same_worker_after(hostile: str, then: str, memory_mb: int = 256) -> tuple:
    first = run_program(PARK + hostile, timeout=10, memory_mb=memory_mb, disk_mb=64)
    assert first.stdout == "parked\n", first.stderr[-2000:]
    second = run_program(then, timeout=10, memory_mb=memory_mb, disk_mb=64)
    return first, second


def test_a_deleted_tmpfs_file_kept_in_flight_does_not_fill_the_next_programs_tmp(sandbox_mode):
    hostile = (
        "fds = []\n"
        "for i in range(4):  # 60 MiB of the 64 MiB /tmp, in files of 15 MiB (the file-size limit is 16)\n"
        "    fd = os.open(f'/tmp/f{i}', os.O_RDWR | os.O_CREAT)\n"
        "    os.write(fd, b'x' * (15 << 20))\n"
        "    os.unlink(f'/tmp/f{i}')\n"
        "    fds.append(fd)\n"
        "park(fds)\n"
    )
    then = "for i in range(2):\n    open(f'/tmp/g{i}', 'wb').write(b'y' * (15 << 20))\nprint('wrote')\n"
    _, second = _same_worker_after(hostile, then)
    assert second.returncode == 0 and second.stdout == "wrote\n", second.stderr[-2000:]
    assert_next_program_accepted()


@needs_cgroup
def test_memfd_memory_kept_in_flight_is_not_charged_to_the_next_program(sandbox_mode):
    hostile = (
        "fds = []\n"
        "for i in range(10):  # 150 MiB of the 256 MiB limit\n"
        "    fd = os.memfd_create(f'm{i}')\n"
        "    os.write(fd, b'x' * (15 << 20))\n"
        "    fds.append(fd)\n"
        "park(fds)\n"
    )
    then = "b = bytearray(150 << 20)\nprint('allocated')\n"
    _, second = _same_worker_after(hostile, then)
    assert second.limit is None and second.stdout == "allocated\n", (second.limit, second.stderr[-2000:])
    assert_next_program_accepted()


def test_an_abstract_socket_name_kept_in_flight_is_no_channel_to_the_next_program(sandbox_mode):
    # A correct program publishes its answers under an abstract name; a later wrong program would read them.
    hostile = (
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\ns.bind(b'\\0codelora-answers')\npark([s.detach()])\n"
    )
    then = (
        "import socket\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
        "try:\n    s.connect(b'\\0codelora-answers')\n    print('channel')\n"
        "except OSError:\n    print('none')\n"
        "print(len(open('/proc/net/unix').read().splitlines()) - 1)\n"
    )
    _, second = _same_worker_after(hostile, then)
    assert second.stdout == "none\n1\n", second.stdout + second.stderr[-2000:]  # only its own socket
    # The same through grading: a wrong program reading the channel would have printed the published answer.
    wrong = (
        "import socket\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
        "try:\n    s.connect(b'\\0codelora-answers')\n    print(42)\n"
        "except OSError:\n    print(0)\n"
    )
    run_program(PARK + hostile, timeout=10)
    res = grade_stdio_problem(wrong, [{"input": "21", "output": "42"}], timeout=5)
    assert res.verdict == "wrong_answer", res.failure
    assert_next_program_accepted()


def test_a_zygote_left_with_shared_memory_is_retired(sandbox_mode, monkeypatch):
    if sandbox_mode != "zygote":
        pytest.skip("one sandbox per program: nothing is reused")
    z = execution._thread_zygote()
    assert run_program("print(1)").stdout == "1\n"
    assert execution._thread_zygote() is z  # a clean sandbox is kept
    if z.cgroup is None:
        pytest.skip("no cgroup")
    monkeypatch.setattr(type(z.cgroup), "shmem", lambda self: 8 << 20)  # as if a memfd were still charged
    assert run_program("print(2)").stdout == "2\n"
    assert execution._thread_zygote() is not z and not z.alive
    monkeypatch.undo()
    assert_next_program_accepted()


# --------------------------------------------------------------------------- 4. locks on shared inodes


@needs_seccomp
def test_locks_on_shared_read_only_files_are_no_channel_between_concurrent_sandboxes(sandbox_mode):
    shared = os.path.realpath(os.__file__)  # the interpreter's os.py: the host's inode, in every sandbox
    holder = (
        "import fcntl, os, time\n"
        f"a = os.open({shared!r}, os.O_RDONLY)\n"
        "fcntl.flock(a, fcntl.LOCK_EX)\n"
        "fcntl.lockf(a, fcntl.LOCK_SH)\n"
        "print('held', flush=True)\n"
        "time.sleep(3)\n"
    )
    prober = (
        "import fcntl, os, struct\n"
        f"b = os.open({shared!r}, os.O_RDONLY)\n"
        "try:\n    fcntl.flock(b, fcntl.LOCK_EX | fcntl.LOCK_NB)\n    print('flock free')\n"
        "except OSError:\n    print('flock busy')\n"
        "got = fcntl.fcntl(b, fcntl.F_GETLK, struct.pack('hhqqi', fcntl.F_WRLCK, 0, 0, 0, 0))\n"
        "print('posix free' if struct.unpack('hhqqi', got)[0] == fcntl.F_UNLCK else 'posix busy')\n"
        "c = os.open({!r}, os.O_RDONLY)\n".format(shared)
        + "fcntl.flock(c, fcntl.LOCK_EX | fcntl.LOCK_NB)\nprint('second fd free')\n"
    )
    out = {}
    th = threading.Thread(target=lambda: out.setdefault("holder", run_program(holder, timeout=10)))
    th.start()
    time.sleep(1.5)  # the holder has taken its locks
    probe = run_program(prober, timeout=5)
    th.join()
    assert out["holder"].stdout == "held\n", out["holder"].stderr
    assert probe.stdout == "flock free\nposix free\nsecond fd free\n", probe.stdout + probe.stderr
    assert_next_program_accepted()


@needs_seccomp
def test_no_inotify_watch_on_shared_files(sandbox_mode):
    # A watch on a host file shared by every sandbox would see each open or read of it by a concurrent program.
    code = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print(libc.inotify_init1(0), ctypes.get_errno() == 1)\n"
        "print(libc.syscall(253), ctypes.get_errno() == 1)  # inotify_init (x86-64 number)\n"
        f"print(libc.inotify_add_watch(0, {os.path.realpath(os.__file__).encode()!r}, 0x20), ctypes.get_errno() == 1)\n"
    )
    r = run_program(code, timeout=5)
    lines = r.stdout.split("\n")
    assert lines[0] == "-1 True" and lines[2] == "-1 True", r.stdout + r.stderr
    if os.uname().machine == "x86_64":
        assert lines[1] == "-1 True", r.stdout
    assert_next_program_accepted()


# A word of a host file under /usr that every sandbox maps (read-only): a futex on it that is not private to the
# process has the inode's key, the same in every sandbox (red team of issue #24: a receiver's FUTEX_WAIT was woken
# by another sandbox's FUTEX_WAKE, in both modes).
FUTEX_ON_SHARED_FILE = (
    "import ctypes, os, time\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "libc.syscall.restype = libc.mmap.restype = ctypes.c_long\n"
    "libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]\n"
    f"addr = libc.mmap(None, 4096, 1, 1, os.open({os.path.realpath(os.__file__)!r}, os.O_RDONLY), 0)  # MAP_SHARED\n"
    "val = ctypes.c_uint32.from_address(addr).value\n"
    "class TS(ctypes.Structure):\n    _fields_ = [('s', ctypes.c_long), ('ns', ctypes.c_long)]\n"
    "def futex(op, v, ts=None):\n"
    "    r = libc.syscall(202, ctypes.c_void_p(addr), op, ctypes.c_uint32(v), ts and ctypes.byref(ts), None, 0)\n"
    "    return r, ctypes.get_errno() if r < 0 else 0\n"
)


@needs_seccomp
def test_shared_futexes_on_shared_files_are_no_channel_between_concurrent_sandboxes(sandbox_mode):
    receiver = FUTEX_ON_SHARED_FILE + (
        "print('ready', flush=True)\n"
        "woken, errors, t = 0, set(), time.monotonic()\n"
        "while time.monotonic() - t < 3:\n"
        "    r, e = futex(0, val, TS(0, 100_000_000))  # FUTEX_WAIT, shared\n"
        "    woken += r == 0\n"
        "    errors.add(e)\n"
        "print('woken', woken, sorted(errors))\n"
    )
    sender = FUTEX_ON_SHARED_FILE + (
        "n, t = 0, time.monotonic()\n"
        "while time.monotonic() - t < 2:\n"
        "    n += max(futex(1, 0x7FFFFFFF)[0], 0)  # FUTEX_WAKE, shared: how many it woke\n"
        "    time.sleep(0.005)\n"
        "print('sent', n)\n"
    )
    out = {}
    th = threading.Thread(target=lambda: out.setdefault("receiver", run_program(receiver, timeout=10)))
    th.start()
    time.sleep(1.0)  # the receiver waits
    sent = run_program(sender, timeout=10)
    th.join()
    got = out["receiver"]
    assert got.stdout.startswith("ready\nwoken 0 ["), got.stdout + got.stderr[-2000:]
    assert "110" not in got.stdout  # never slept until its timeout either: a shared wait returns EAGAIN (11) at once
    assert sent.stdout == "sent 0\n", sent.stdout + sent.stderr[-2000:]
    assert_next_program_accepted()


@needs_seccomp
def test_private_and_process_shared_synchronisation_still_work(sandbox_mode):
    # Threads (private futexes: CPython's locks, conditions, the GIL) sleep as before; processes synchronised
    # through shared memory (multiprocessing's semaphores, in /dev/shm) spin instead of sleeping, and still agree.
    code = (
        "import multiprocessing as mp, threading, queue\n"
        "q, total = queue.Queue(), []\n"
        "def work():\n    while (x := q.get()) is not None:\n        total.append(x)\n"
        "ts = [threading.Thread(target=work) for _ in range(4)]\n"
        "[t.start() for t in ts]; [q.put(i) for i in range(1000)]; [q.put(None) for _ in ts]; [t.join() for t in ts]\n"
        "print(sum(total))\n"
        "def add(v, lock):\n    for _ in range(200):\n        with lock:\n            v.value += 1\n"
        "if __name__ == '__main__':\n"
        "    v, lock = mp.Value('i', 0, lock=False), mp.Lock()\n"
        "    ps = [mp.Process(target=add, args=(v, lock)) for _ in range(3)]\n"
        "    [p.start() for p in ps]; [p.join() for p in ps]\n"
        "    print(v.value)\n"
        "    with mp.Pool(2) as pool:\n        print(sum(pool.map(abs, range(-50, 50))))\n"
    )
    r = run_program(code, timeout=20)
    assert r.stdout == "499500\n600\n2500\n", r.stdout + r.stderr[-2000:]
    assert_next_program_accepted()


@needs_seccomp
def test_no_directory_notification_or_lease_on_shared_files(sandbox_mode):
    # dnotify (fcntl F_NOTIFY) on a shared host folder saw other sandboxes read its files (red team of issue #24);
    # a lease on a shared file would be broken by another sandbox opening it.
    folder = os.path.dirname(os.path.realpath(os.__file__))
    code = (
        "import fcntl, os\n"
        f"d = os.open({folder!r}, os.O_RDONLY)\n"
        "try:\n    fcntl.fcntl(d, fcntl.F_NOTIFY, fcntl.DN_ACCESS | fcntl.DN_MULTISHOT)\n    print('notify')\n"
        "except OSError as e:\n    print('notify', e.errno)\n"
        "f = os.open('lease', os.O_RDWR | os.O_CREAT)\n"
        "try:\n    fcntl.fcntl(f, fcntl.F_SETLEASE, fcntl.F_WRLCK)\n    print('lease')\n"
        "except OSError as e:\n    print('lease', e.errno)\n"
    )
    r = run_program(code, timeout=5)
    assert r.stdout == "notify 1\nlease 1\n", r.stdout + r.stderr[-2000:]
    assert_next_program_accepted()


# --------------------------------------------------------------------------- 5. the compile step


def test_a_compile_starved_by_the_machine_is_no_verdict(sandbox_mode, monkeypatch):
    # Red team of issue #24: at load ~25 on 2 cores, two small correct programs were graded compile_error ("time
    # limit exceeded while compiling"). Starved: the compile harness's wall clock runs out while it gets no CPU
    # (here it sleeps first, as if the machine never ran it); the source is not at fault.
    monkeypatch.setattr(execution, "_COMPILE_HARNESS", "import time\ntime.sleep(30)\n" + execution._COMPILE_HARNESS)
    res = grade_stdio_problem("print(int(input()) * 2)", [{"input": "21", "output": "42"}], timeout=1.0)
    assert res.verdict == "sandbox_error", res.failure
    assert res.failure["detail"].startswith(execution.COMPILE_SANDBOX_ERROR) and "overloaded" in res.failure["detail"]
    monkeypatch.undo()
    assert_next_program_accepted()


def test_a_compile_that_used_its_cpu_time_is_still_the_programs_failure(monkeypatch):
    # What decides: the CPU time the compiler got while the wall clock ran (a compile bomb uses it all).
    for cpu, verdict in ((0.9, "compile_error"), (0.2, "sandbox_error")):
        got = execution.ExecResult(None, "", "", True, False, False, 1.0, limit="time", cpu=cpu)
        monkeypatch.setattr(execution, "run_program", lambda *a, got=got, **k: got)
        res = grade_stdio_problem("print(1)", [{"input": "", "output": "1"}], timeout=1.0)
        assert res.verdict == verdict, (cpu, res.failure)
    monkeypatch.undo()
    assert grade_stdio_problem("print(1", [{"input": "", "output": "1"}]).verdict == "compile_error"
    assert_next_program_accepted()


def test_a_sandbox_failure_while_compiling_is_no_verdict(sandbox_mode, monkeypatch):
    real = execution.run_program

    def failing_compile(program, *a, **kw):
        if "solution.py" in (kw.get("extra_files") or {}):  # the compile step's run
            return execution.ExecResult(None, "", "", False, False, False, 0.0, sandbox_error="injected")
        return real(program, *a, **kw)

    monkeypatch.setattr(execution, "run_program", failing_compile)
    res = grade_stdio_problem("print(int(input()) * 2)", [{"input": "21", "output": "42"}], timeout=5)
    assert res.verdict == "sandbox_error" and "injected" in res.failure["detail"], res.failure
    monkeypatch.undo()
    assert_next_program_accepted()
