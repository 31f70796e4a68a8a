"""Unit tests of the sandbox's parts, on the host: the zygote's helpers, the system-call filter, cgroup parsing."""

import os
import subprocess
import sys

import pytest

from codelora.sandbox import cgroups, syscall_filter, zygote
from codelora.sandbox.execution import _keep_paths


def memfd(data: bytes) -> int:
    fd = os.memfd_create("t")
    os.write(fd, data)
    return fd


def test_write_files_copies_memfds_from_the_start(tmp_path):
    big = os.urandom(3 << 20)
    fds = [memfd(b"print(1)\n"), memfd(big)]  # offsets at the end: pread reads from 0 anyway
    try:
        zygote.write_files(str(tmp_path), ["main.py", "data.bin"], fds)
    finally:
        for fd in fds:
            os.close(fd)
    assert (tmp_path / "main.py").read_bytes() == b"print(1)\n" and (tmp_path / "data.bin").read_bytes() == big


def test_write_files_never_follows_a_planted_link(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("intact")
    work = tmp_path / "work"
    work.mkdir()
    (work / "main.py").symlink_to(victim)
    fd = memfd(b"evil")
    try:
        with pytest.raises(FileExistsError):
            zygote.write_files(str(work), ["main.py"], [fd])
        link = tmp_path / "worklink"
        link.symlink_to(work)
        with pytest.raises(OSError):  # the work folder itself must not be a link either
            zygote.write_files(str(link), ["other.py"], [fd])
    finally:
        os.close(fd)
    assert victim.read_text() == "intact"


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../x", "/etc/passwd", "a\0b"])
def test_check_name_rejects_paths(name):
    with pytest.raises(ValueError):
        zygote.check_name(name)


def test_empty_dir_removes_everything_but_kept_mounts(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("x")
    w = tmp_path / "w"
    (w / "locked" / "deep").mkdir(parents=True)
    (w / "locked" / "deep" / "f").write_text("x")
    (w / "locked").chmod(0)
    (w / "link").symlink_to(outside)
    (w / "file").write_text("x")
    (w / "env" / "lib" / "site").mkdir(parents=True)
    (w / "env" / "lib" / "site" / "pkg.py").write_text("x")
    (w / "env" / "junk").write_text("x")
    keep = frozenset({str(w / "env"), str(w / "env" / "lib"), str(w / "env" / "lib" / "site")})
    zygote.empty_dir(str(w), keep)
    assert sorted(os.listdir(w)) == ["env"]
    assert sorted(os.listdir(w / "env")) == ["lib"]
    assert (w / "env" / "lib" / "site" / "pkg.py").exists()
    assert (outside / "keep.txt").exists()  # the link was removed, not followed


def test_keep_paths_lists_mounts_and_their_parents_under_writable_roots():
    assert _keep_paths(["/tmp/venv/lib/site-packages"]) == [
        "/tmp/venv",
        "/tmp/venv/lib",
        "/tmp/venv/lib/site-packages",
    ]
    assert _keep_paths([]) == []


def test_exit_status_as_the_interpreter(capsys):
    assert zygote.exit_status(None) == 0
    assert zygote.exit_status(3) == 3
    assert zygote.exit_status("bye") == 1
    assert capsys.readouterr().err == "bye\n"


def test_zygote_refuses_to_run_unless_pid_1():
    # kill(-1) outside its own pid namespace would kill every process of its uid.
    r = subprocess.run(
        [sys.executable, "-I", "-S", zygote.__file__, "0", "-1", "-1", "fork", "[]"], capture_output=True
    )
    assert r.returncode == 3 and b"pid 1" in r.stderr


def test_drop_privileges_is_a_no_op_for_negative_uid():
    uid = os.getuid()
    zygote.drop_privileges(-1, -1)
    assert os.getuid() == uid


def test_syscall_filter_builds_a_bpf_program():
    try:
        bpf = syscall_filter.build()
    except syscall_filter.FilterUnavailable as e:
        pytest.skip(str(e))
    assert len(bpf) % 8 == 0 and len(bpf) > 8 * len(syscall_filter.REQUIRED)
    fd = syscall_filter.memfd()
    try:
        assert os.pread(fd, len(bpf) + 1, 0) == bpf
    finally:
        os.close(fd)


def test_cgroup_field_parsing():
    assert cgroups._field("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", "oom_kill") == 3
    assert cgroups._field("max 7\n", "max") == 7
    assert cgroups._field("", "max") == 0


def test_cgroups_can_be_disabled(monkeypatch):
    monkeypatch.setenv("CODELORA_NO_CGROUP", "1")
    cgroups.support.cache_clear()
    try:
        s = cgroups.support()
        assert s.kind is None and "CODELORA_NO_CGROUP" in s.reason
    finally:
        cgroups.support.cache_clear()


def test_sweep_removes_cgroups_of_dead_scorers_only():
    sup = cgroups.support()
    if sup.kind is None:
        pytest.skip(sup.reason)
    parent = sup.parents["memory"]
    dead = os.path.join(parent, "codelora-999999999-0")  # above pid_max: never a live process
    mine = os.path.join(parent, f"codelora-{os.getpid()}-999999")
    os.mkdir(dead)
    os.mkdir(mine)
    try:
        assert cgroups.sweep({"memory": parent}) == []  # too recent: perhaps a scorer we cannot see
        assert cgroups.sweep({"memory": parent}, min_age=0) == [dead]
        assert os.path.isdir(mine) and not os.path.exists(dead)
    finally:
        for d in (dead, mine):
            if os.path.isdir(d):
                os.rmdir(d)


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "main.py", "a\0b"])
def test_run_program_refuses_extra_file_names_that_are_not_plain(name):
    from codelora.sandbox.execution import run_program

    with pytest.raises(ValueError, match="extra file name"):
        run_program("print(1)", extra_files={name: "x"})


def test_cgroup_kill_all_kills_its_members_only():
    sup = cgroups.support()
    if sup.kind is None:
        pytest.skip(sup.reason)
    cg = cgroups.Cgroup(sup)
    outside = subprocess.Popen(["sleep", "30"])
    try:
        fds = cg.procs_fds()
        inside = subprocess.Popen(["sleep", "30"], preexec_fn=lambda: cgroups.Cgroup.enter(fds))
        for fd in fds:
            os.close(fd)
        assert cg.pids() == {inside.pid}
        cg._kill(outside.pid)  # not a member: left alone
        assert cg.kill_all() and inside.wait(5) == -9
        assert outside.poll() is None
        cg.set_memory(64 << 20)
        assert cg.counters() == (0, 0)
    finally:
        outside.kill()
        outside.wait()
        cg.remove()
    assert cg.dirs == {}


def test_clean_here_unlinks_top_level_files_and_leaves_folders_to_the_helper(tmp_path, monkeypatch):
    roots = [tmp_path / n for n in ("work", "tmp", "shm", "mqueue")]
    for r in roots:
        r.mkdir()
    monkeypatch.setattr(zygote, "CLEANED", tuple(map(str, roots)))
    outside = tmp_path / "outside"
    outside.write_text("intact")
    (roots[0] / "main.py").write_text("x")
    (roots[0] / "locked").write_text("x")
    (roots[0] / "locked").chmod(0)
    (roots[1] / "link").symlink_to(outside)
    (roots[1] / "dirlink").symlink_to(tmp_path)
    os.mkfifo(roots[2] / "fifo")
    os.link(roots[0] / "main.py", roots[3] / "hardlink")
    assert zygote.clean_here(frozenset())
    assert [sorted(os.listdir(r)) for r in roots] == [[], [], [], []]
    assert outside.read_text() == "intact" and tmp_path.is_dir()  # links removed, not followed

    # A folder (a tree pid 1 may not be allowed to walk) is left for the helper: False, the folder untouched.
    (roots[1] / "sub" / "deep").mkdir(parents=True)
    (roots[2] / "file").write_text("x")
    assert not zygote.clean_here(frozenset())
    assert (roots[1] / "sub" / "deep").is_dir()
    # A read-only mount point with nothing mounted below it (an environment under /tmp) is not a leftover.
    (roots[1] / "sub" / "deep").rmdir()
    assert zygote.clean_here(frozenset({str(roots[1] / "sub")}))
    assert [sorted(os.listdir(r)) for r in roots] == [[], ["sub"], [], []]
    assert not zygote.clean_here(frozenset({str(roots[1] / "sub"), str(roots[1] / "sub" / "x")}))
