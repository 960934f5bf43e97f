# SPDX-License-Identifier: Apache-2.0
"""The interpreter the idler runs from: a private, detached, read-only mount of it.

The waiting idler is the host's Python, and `/proc/<idler>/exe` leads to that file. Being
non-dumpable keeps container processes out, except those holding CAP_SYS_PTRACE in the
idler's user namespace (a container without a user namespace, `exec --cap CAP_SYS_PTRACE`):
they may open it, keep the fd past the idler's exec, and reopen it for writing
(CVE-2019-5736). Executed from a read-only mount, that reopen fails with EROFS. runc does the
same with an overlay or a memfd copy of its binary.

`spawn_idler` calls this in its forked child, on the path to the idler's exec, so it calls
libc through `libc.py` (the C module `_ctypes` alone): `ctypes` (struct, its type zoo) would
cost every create ~5 ms.
"""

import os
import sys

from oci_systemd.runtime import libc

# Generic syscall numbers, shared by x86_64 and aarch64 (asm-generic/unistd.h).
_NR_OPEN_TREE = 428
_NR_MOUNT_SETATTR = 442
_OPEN_TREE_CLONE = 1
_AT_FDCWD = -100
_AT_EMPTY_PATH = 0x1000
_MOUNT_ATTR_RDONLY = 0x1


# Returns and takes C ints: every number, fd, flag and size here fits.
_syscall = libc.function("syscall")


def read_only_fd() -> int:
    """An O_CLOEXEC fd of sys.executable on a new read-only mount of its own, for fexecve;
    -1 when the kernel can't (before 5.12, or without CAP_SYS_ADMIN)."""
    if os.uname().machine not in ("x86_64", "aarch64"):
        return -1
    path = os.fsencode(os.path.realpath(sys.executable))
    fd = int(_syscall(_NR_OPEN_TREE, _AT_FDCWD, path, _OPEN_TREE_CLONE | os.O_CLOEXEC))
    if fd < 0:
        return -1
    # struct mount_attr {u64 attr_set, attr_clr, propagation, userns_fd}
    attr = _MOUNT_ATTR_RDONLY.to_bytes(8, sys.byteorder) + bytes(24)
    if _syscall(_NR_MOUNT_SETATTR, fd, b"", _AT_EMPTY_PATH, attr, len(attr)) < 0:
        os.close(fd)
        return -1
    return fd
