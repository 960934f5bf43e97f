# SPDX-License-Identifier: Apache-2.0
"""`--pid-file`: the container's (or exec'd process's) pid, written where the caller asks."""

from __future__ import annotations

import os

from oci_systemd.errors import SyscallError


def write_pid_file(path: str, pid: int) -> None:
    """Write `path` atomically without following a symlink: the pid file's directory may be
    writable by someone else (an engine's per-container directory, a user's), who could plant
    a symlink under any name we pick. The temporary file is created O_EXCL|O_NOFOLLOW next to
    it, relative to a directory fd (so its parent cannot be swapped between the steps), and
    renamed over `path` (rename replaces a symlink there, it never writes through it)."""
    parent, name = os.path.split(os.path.abspath(path))
    try:
        dirfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise SyscallError.from_oserror("write pid file", exc) from exc
    try:
        tmp = f".{name}.{os.urandom(8).hex()}.tmp"  # O_EXCL: a planted name fails, never follows
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dirfd
        )
        try:
            os.write(fd, str(pid).encode())
        finally:
            os.close(fd)
        try:
            os.rename(tmp, name, src_dir_fd=dirfd, dst_dir_fd=dirfd)
        except OSError:
            os.unlink(tmp, dir_fd=dirfd)
            raise
    except OSError as exc:
        raise SyscallError.from_oserror("write pid file", exc) from exc
    finally:
        os.close(dirfd)
