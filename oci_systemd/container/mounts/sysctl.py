# SPDX-License-Identifier: Apache-2.0
"""`linux.sysctl`: which keys a container may set, and writing them through its own /proc/sys.

Idler module: `os`, `errno`, `oci_systemd.container.linux`, `.namespaces`, `.mounts.resolve` and
`oci_systemd.errors` only.
"""

from __future__ import annotations

import errno
import os

from oci_systemd.container import linux, namespaces
from oci_systemd.container.mounts import resolve
from oci_systemd.errors import OciSystemdError, SyscallError

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: importing typing costs the idler ~10 ms
if TYPE_CHECKING:
    from oci_systemd.container import config

# IPC-namespaced sysctls besides fs/mqueue/* (runc's validator list).
_IPC_SYSCTLS = frozenset(
    f"kernel/{name}"
    for name in ("msgmax", "msgmnb", "msgmni", "sem", "shmall", "shmmax", "shmmni", "shm_rmid_forced")
)


def sysctl_path(key: str) -> str:
    """`net.ipv4.ip_forward` → `net/ipv4/ip_forward` (keys already using "/" are kept)."""
    rel = key if "/" in key else key.replace(".", "/")
    if not rel or rel.startswith("/") or any(c in ("", ".", "..") for c in rel.split("/")):
        raise OciSystemdError(f"invalid sysctl key {key!r}")
    return rel


def _namespace_of(key: str) -> tuple[str, str]:
    """(runtime-spec namespace type, /proc/<pid>/ns name) that holds sysctl `key`."""
    rel = sysctl_path(key)
    if rel in _IPC_SYSCTLS or rel.startswith("fs/mqueue/"):
        return "ipc", "ipc"
    if rel.startswith("net/"):
        return "network", "net"
    if rel in ("kernel/hostname", "kernel/domainname"):
        return "uts", "uts"
    raise OciSystemdError(f"sysctl {key!r} is not in a separate kernel namespace")


def check_sysctls(cfg: config.Config) -> None:
    """Refuse `linux.sysctl` keys that would change the host (runc's validator): net.* needs a
    network namespace, IPC keys an ipc namespace, kernel.{hostname,domainname} a uts namespace,
    and nothing else is namespaced. Call it before pivot_root: a namespace joined by path is
    also refused when it turns out to be the one of the outer /proc's pid 1."""
    lin = cfg.get("linux") or {}
    sysctl = lin.get("sysctl") or {}
    if not sysctl:
        return
    kinds = {ns.get("type"): ns for ns in lin.get("namespaces") or ()}
    for key in sysctl:
        kind, proc_name = _namespace_of(key)
        ns = kinds.get(kind)
        if ns is None or (ns.get("path") and namespaces.same_ns(proc_name, 1)):
            raise OciSystemdError(
                f"sysctl {key!r} is not allowed in the host's {kind} namespace",
                hint=f"add a new {kind} namespace to linux.namespaces",
            )


def write_sysctls(sysctl: dict[str, str]) -> None:
    if not sysctl:
        return
    sfd = _open_proc_sys()
    try:
        for key, value in sysctl.items():
            _write_sysctl(sfd, sysctl_path(key), key, value)
    finally:
        os.close(sfd)


def _write_sysctl(sfd: int, rel: str, key: str, value: str) -> None:
    resolve.step(f"sysctl {key}={value}")
    try:
        fd = resolve.open_beneath(sfd, rel, os.O_WRONLY | os.O_TRUNC)
    except SyscallError as e:
        raise SyscallError("open sysctl", f"/proc/sys/{rel}", e.errno) from e
    try:
        if linux.fstatfs_type(fd) != linux.PROC_SUPER_MAGIC:
            raise OciSystemdError(f"/proc/sys/{rel} is not on procfs: refusing to write it")
        os.write(fd, str(value).encode())
    except OSError as e:
        raise SyscallError("write sysctl", f"/proc/sys/{rel}", e.errno or errno.EIO) from e
    finally:
        os.close(fd)


def _open_proc_sys() -> int:
    """/proc/sys, refusing anything that is not a real procfs (CVE-2019-16884 class)."""
    pfd = os.open("/proc", os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_RDONLY)
    try:
        if linux.fstatfs_type(pfd) != linux.PROC_SUPER_MAGIC:
            raise OciSystemdError("/proc in the container is not procfs: refusing to write sysctls")
        sfd = os.open("sys", os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_RDONLY, dir_fd=pfd)
    finally:
        os.close(pfd)
    if linux.fstatfs_type(sfd) != linux.PROC_SUPER_MAGIC:
        os.close(sfd)
        raise OciSystemdError("/proc/sys in the container is not procfs: refusing to write sysctls")
    return sfd
