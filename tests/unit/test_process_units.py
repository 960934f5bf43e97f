# SPDX-License-Identifier: Apache-2.0
"""process.py translation layers: capabilities, rlimits, executable lookup, fd closing."""

from __future__ import annotations

import errno
import os
import resource
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from oci_systemd.container import abi, process
from oci_systemd.errors import ExecFailedError, OciSystemdError

if TYPE_CHECKING:
    from oci_systemd.container import config


def test_cap_mask_names() -> None:
    assert process.cap_mask(["CAP_CHOWN", "CAP_KILL"], last=40) == 1 << 0 | 1 << 5
    assert process.cap_mask(["net_raw", "SYS_ADMIN"], last=40) == 1 << 13 | 1 << 21
    # unknown names and caps beyond the kernel's last one are ignored, as runc does
    assert process.cap_mask(["CAP_NOPE", "CAP_CHECKPOINT_RESTORE"], last=39) == 0
    assert process.cap_mask(None, last=40) == 0
    assert len(abi.CAPABILITIES) == 41 and sorted(abi.CAPABILITIES.values()) == list(range(41))


def test_rlimit_names_match_resource_module() -> None:
    for name, number in abi.RLIMITS.items():
        if hasattr(resource, name):
            assert getattr(resource, name) == number
    assert process._rlim(2**64 - 1) == resource.RLIM_INFINITY
    assert process._rlim(1024) == 1024


def test_rlimit_hard_limit_error_message() -> None:
    """Raising the hard limit without CAP_SYS_RESOURCE: a clear message (checked in a child)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        msg = b"no error"
        try:
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 512), 512))
            if os.geteuid() == 0:
                from oci_systemd.container import linux

                linux.prctl(linux.PR_CAPBSET_DROP, 24)
                eff, prm, inh = linux.capget()
                linux.capset(eff & ~(1 << 24), prm & ~(1 << 24), inh)
            process.set_rlimits([{"type": "RLIMIT_NOFILE", "soft": 4096, "hard": 4096}])
        except OciSystemdError as e:
            msg = str(e).encode()
        os.write(w, msg)
        os._exit(0)
    os.close(w)
    out = os.read(r, 1000).decode()
    os.close(r)
    os.waitpid(pid, 0)
    assert out == "setrlimit RLIMIT_NOFILE: operation not permitted (hard limit is 512)"


@pytest.fixture
def bindirs(tmp_path: Path) -> Path:
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
    tool = tmp_path / "b" / "tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    noexec = tmp_path / "a" / "tool"  # earlier in PATH but not executable: skipped
    noexec.write_text("")
    noexec.chmod(0o644)
    (tmp_path / "a" / "dir").mkdir()
    return tmp_path


def test_find_executable_uses_container_path(bindirs: Path) -> None:
    env = ["HOME=/", f"PATH=relative:{bindirs}/a:{bindirs}/b"]
    assert process.find_executable("tool", env) == f"{bindirs}/b/tool"
    assert process.find_executable(f"{bindirs}/b/tool", []) == f"{bindirs}/b/tool"


def test_find_executable_errors(bindirs: Path) -> None:
    env = [f"PATH={bindirs}/a"]
    with pytest.raises(ExecFailedError) as info:
        process.find_executable("foo", env)
    assert str(info.value) == 'exec: "foo": executable file not found in $PATH'
    assert info.value.exit_code == 127 and info.value.errno == errno.ENOENT
    with pytest.raises(ExecFailedError) as info:
        process.find_executable(f"{bindirs}/a/dir", env)
    assert str(info.value) == f'exec: "{bindirs}/a/dir": permission denied'
    assert info.value.exit_code == 126
    with pytest.raises(ExecFailedError) as info:
        process.find_executable("/nonexistent/x", env)
    assert str(info.value) == 'exec: "/nonexistent/x": no such file or directory'
    assert info.value.exit_code == 127
    if os.geteuid() != 0:
        with pytest.raises(ExecFailedError, match="permission denied"):
            process.find_executable(f"{bindirs}/a/tool", env)


def test_env_value_last_wins() -> None:
    assert process.env_value(["PATH=/a", "X=1", "PATH=/b"], "PATH") == "/b"
    assert process.env_value(["PATHX=/a"], "PATH") is None


def test_close_fds_keeps_stdio_and_listed() -> None:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        keep_a, keep_b = os.open("/dev/null", os.O_RDONLY), os.open("/dev/null", os.O_RDONLY)
        gone = os.dup(w)
        os.set_inheritable(keep_b, True)
        process.close_fds([keep_a, keep_b, w])
        fds = sorted(int(x) for x in os.listdir("/proc/self/fd"))
        extra = set(fds) - {0, 1, 2, keep_a, keep_b, w}  # only listdir's own fd may remain
        ok = len(extra) <= 1 and gone not in fds and {keep_a, keep_b, w} <= set(fds)
        ok = ok and not os.get_inheritable(keep_a) and os.get_inheritable(keep_b)
        os.write(w, b"ok" if ok else repr(fds).encode())
        os._exit(0)
    os.close(w)
    out = os.read(r, 1000)
    os.close(r)
    os.waitpid(pid, 0)
    assert out == b"ok"


def _in_child(body: Callable[[int], object]) -> str:
    """repr() of `body(w)` (or of what it raised) run in a forked child; `w` is the pipe's fd
    that prepare() must keep."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            os.write(w, repr(body(w)).encode())
        except BaseException as e:
            os.write(w, repr(e).encode())
        os._exit(0)
    os.close(w)
    out = os.read(r, 1000).decode()
    os.close(r)
    os.waitpid(pid, 0)
    return out


def test_prepare_in_child_as_current_user(tmp_path: Path) -> None:
    """prepare() end to end in a forked child (no user switch): cwd, umask, env, rlimit, NNP."""

    def body(w: int) -> list[bool]:
        from oci_systemd.container import linux

        path, argv, envp = process.prepare(
            {
                "args": ["sh", "-c", "true"],
                "env": ["PATH=/usr/bin:/bin"],
                "cwd": os.fspath(tmp_path),
                "user": {"uid": os.getuid(), "gid": os.getgid(), "umask": 0o027},
                "rlimits": [{"type": "RLIMIT_CORE", "soft": 0, "hard": 0}],
                "noNewPrivileges": True,
            },
            keep_fds=[w],
        )
        return [
            path.endswith("/sh"),
            argv == ["sh", "-c", "true"],
            envp == ["PATH=/usr/bin:/bin", f"HOME={process.home_for(os.getuid())}"],
            os.getcwd() == os.fspath(tmp_path),
            os.umask(0) == 0o027,
            resource.getrlimit(resource.RLIMIT_CORE) == (0, 0),
            linux.prctl(linux.PR_GET_NO_NEW_PRIVS) == 1,
        ]

    assert _in_child(body) == repr([True] * 7)
    assert stat.S_ISDIR(os.stat(tmp_path).st_mode)


def test_home_for_reads_passwd_and_defaults_to_slash(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/sh\nbad line\napp:x:1000:1000::/home/app:/bin/sh\n")
    assert process.home_for(0, os.fspath(passwd)) == "/root"
    assert process.home_for(1000, os.fspath(passwd)) == "/home/app"
    assert process.home_for(4242, os.fspath(passwd)) == "/"
    assert process.home_for(0, os.fspath(tmp_path / "missing")) == "/"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert process.home_for(0, os.fspath(fifo)) == "/", "an image's FIFO must not block the idler"


def test_with_home_keeps_an_existing_home() -> None:
    assert process.with_home(["HOME=/x", "A=b"], 0) == ["HOME=/x", "A=b"]


def test_prepare_leaves_the_process_non_dumpable(tmp_path: Path) -> None:
    """startContainer hooks run after prepare() with the process's uid: the idler must stay
    sealed whatever fs.suid_dumpable makes of the uid change (simulated: dumpable before)."""

    def body(w: int) -> int:
        from oci_systemd.container import linux

        linux.prctl(linux.PR_SET_DUMPABLE, 1)
        user: config.User = {"uid": os.getuid(), "gid": os.getgid()}
        process.prepare({"args": ["sh"], "cwd": os.fspath(tmp_path), "user": user}, keep_fds=[w])
        return linux.prctl(linux.PR_GET_DUMPABLE)

    assert _in_child(body) == "0"
