# SPDX-License-Identifier: Apache-2.0
"""linux.py wrappers that work unprivileged, on the test machine itself."""

import errno
import os
import signal
from pathlib import Path

import pytest

from oci_systemd.container import linux
from oci_systemd.errors import SyscallError


def test_syscall_errors_name_the_call_and_target(tmp_path: Path) -> None:
    with pytest.raises(SyscallError) as info:
        linux.umount2(os.fspath(tmp_path / "not-a-mount"))
    assert info.value.call == "umount2"
    assert info.value.errno == errno.ENOENT
    assert str(info.value).startswith(f"umount2 `{tmp_path}/not-a-mount`: ")


def test_prctl_and_capget() -> None:
    assert linux.prctl(linux.PR_GET_DUMPABLE) in (0, 1, 2)
    eff, prm, inh = linux.capget()
    assert eff & ~prm == 0
    assert inh >= 0


def test_openat2_in_root(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("inside")
    (tmp_path / "link").symlink_to("/etc/passwd")
    root = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    try:
        fd = linux.openat2(root, "link", os.O_RDONLY, 0, linux.RESOLVE_IN_ROOT)
    except SyscallError as e:
        if e.errno == errno.ENOSYS:
            pytest.skip("kernel without openat2")
        raise
    finally:
        os.close(root)
    try:
        assert os.read(fd, 100) == b"inside"
    finally:
        os.close(fd)


def test_fstatfs_type_of_proc() -> None:
    fd = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert linux.fstatfs_type(fd) == linux.PROC_SUPER_MAGIC
    finally:
        os.close(fd)


def test_pidfd_open_and_signal_zero() -> None:
    try:
        fd = linux.pidfd_open(os.getpid())
    except SyscallError as e:
        if e.errno == errno.ENOSYS:
            pytest.skip("kernel without pidfd_open")
        raise
    try:
        linux.pidfd_send_signal(fd, 0)
        assert signal.SIGTERM  # the signal 0 probe reached ourselves without harm
    finally:
        os.close(fd)


def test_close_range_cloexec() -> None:
    import fcntl

    r, w = os.pipe()
    os.set_inheritable(r, True)
    try:
        linux.close_range(r, r, linux.CLOSE_RANGE_CLOEXEC)
    except SyscallError as e:
        if e.errno in (errno.ENOSYS, errno.EINVAL):
            pytest.skip("kernel without close_range CLOEXEC")
        raise
    try:
        assert fcntl.fcntl(r, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    finally:
        os.close(r)
        os.close(w)


def test_propagation_name() -> None:
    assert linux.propagation_name(linux.MS_SHARED | linux.MS_REC) == "rshared"
    assert linux.propagation_name(linux.MS_SLAVE) == "slave"
