# SPDX-License-Identifier: Apache-2.0
"""`linux.readonlyPaths` and `linux.maskedPaths`: what the container may not write, or not see.

Both run after pivot_root, resolved inside the container's root; a path that does not exist is
skipped (the spec says so). A masked directory is covered by a read-only tmpfs, anything else by
a bind of /dev/null, checked to be the real null device first.

Idler module: `os`, `errno`, `oci_systemd.container.linux`, `.mounts.resolve` and
`oci_systemd.errors` only.
"""

from __future__ import annotations

import errno
import os

from oci_systemd.container import linux
from oci_systemd.container.mounts import resolve
from oci_systemd.errors import OciSystemdError, SyscallError

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: importing typing costs the idler ~10 ms
if TYPE_CHECKING:
    from collections.abc import Iterable


def readonly_paths(paths: Iterable[str], *, root_fd: int) -> None:
    for p in paths:
        readonly_path(p, root_fd=root_fd)


def mask_paths(paths: Iterable[str], *, root_fd: int) -> None:
    paths = list(paths)
    if not paths:
        return  # no /dev/null needed (nor checked)
    null_fd = _dev_null_fd()
    try:
        for p in paths:
            mask_path(p, root_fd=root_fd, null_fd=null_fd)
    finally:
        os.close(null_fd)


def _open_existing(root_fd: int, path: str) -> int | None:
    """An O_PATH fd for `path` inside the root, None when it does not exist."""
    try:
        return resolve.open_in_root(root_fd, "/", path)
    except (FileNotFoundError, SyscallError) as e:
        if isinstance(e, SyscallError) and e.errno != errno.ENOENT:
            raise
        return None


def _dev_null_fd() -> int:
    """An O_PATH fd on /dev/null, verified to be the char device 1:3 (CVE-2025-31133)."""
    fd = os.open("/dev/null", os.O_PATH | os.O_CLOEXEC | os.O_NOFOLLOW)
    st = os.fstat(fd)
    if (st.st_mode & 0o170000) != 0o020000 or st.st_rdev != os.makedev(1, 3):
        os.close(fd)
        raise OciSystemdError(
            "/dev/null in the container is not the null device (1:3): refusing to mask paths with it",
        )
    return fd


def mask_path(path: str, *, root_fd: int, null_fd: int) -> None:
    fd = _open_existing(root_fd, path)
    if fd is None:
        return
    try:
        if (os.fstat(fd).st_mode & 0o170000) == 0o040000:
            resolve.step(f"mask {path} (read-only tmpfs)")
            resolve.mount_fd("tmpfs", fd, "tmpfs", linux.MS_RDONLY, None, path)
        else:
            resolve.step(f"mask {path} (/dev/null)")
            resolve.mount_fd(resolve.fdpath(null_fd), fd, None, linux.MS_BIND, None, path)
    finally:
        os.close(fd)


def readonly_path(path: str, *, root_fd: int) -> None:
    fd = _open_existing(root_fd, path)
    if fd is None:
        return
    try:
        resolve.step(f"read-only {path}")
        resolve.mount_fd(resolve.fdpath(fd), fd, None, linux.MS_BIND | linux.MS_REC, None, path)
    finally:
        os.close(fd)
    resolve.remount_bind(root_fd, "/", path, linux.MS_RDONLY | linux.MS_REC)
