# SPDX-License-Identifier: Apache-2.0
"""The container's /dev: the default devices, `linux.devices`, and the /dev links.

Device nodes are made with mknod(2), or bind-mounted from the host's /dev when the container
(or the runtime) has a user namespace, where mknod of a device needs CAP_MKNOD of the initial
one; a FIFO needs no privilege and is always made.

Idler module: `os`, `errno`, `oci_systemd.container.linux`, `.mount_options`, `.namespaces`,
`.mounts.resolve` and `oci_systemd.errors` only.
"""

from __future__ import annotations

import errno
import os

from oci_systemd.container import linux, mount_options, namespaces
from oci_systemd.container.mounts import resolve
from oci_systemd.errors import OciSystemdError, SyscallError

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: importing typing costs the idler ~10 ms
if TYPE_CHECKING:
    from oci_systemd.container import config

# (path, major, minor) of the character devices every container gets (runtime-spec config-linux.md).
DEFAULT_DEVICES: tuple[tuple[str, int, int], ...] = (
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
)
DEV_SYMLINKS: tuple[tuple[str, str], ...] = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
)
# `linux.devices[].type` → the S_IF* file type of the node.
DEVICE_TYPES = {"c": 0o020000, "u": 0o020000, "b": 0o060000, "p": 0o010000}
_S_IFIFO = 0o010000

_INIT_USER_NS_INO = 0xEFFFFFFD  # PROC_USER_INIT_INO (include/linux/proc_ns.h)


def in_user_namespace(cfg: config.Config) -> bool:
    """Whether mknod(2) is refused: the container has a user namespace (new or joined, whatever
    its maps say: a full identity map is still not the initial namespace), or the runtime itself
    runs in one."""
    if namespaces.configured(cfg, "user") is not None:
        return True
    try:
        return os.stat("/proc/self/ns/user").st_ino != _INIT_USER_NS_INO
    except OSError:
        return False


def needs_dev_setup(cfg: config.Config) -> bool:
    """runc: devices are created unless /dev is bind-mounted from the host."""
    for m in cfg.get("mounts") or ():
        if m.get("destination", "").rstrip("/") == "/dev":
            return not mount_options.is_bind(m)
    return True


def create_device(dev: config.Device, *, root_fd: int, root: str, bind: bool) -> None:
    """One `linux.devices` entry (path, type, major, minor, fileMode, uid, gid)."""
    path = dev["path"]
    kind = DEVICE_TYPES.get(dev.get("type", "c"))
    if kind is None:
        raise OciSystemdError(f"device {path}: unknown type {dev.get('type')!r}")
    parent, name = os.path.split(path.rstrip("/"))
    if not name:
        raise OciSystemdError(f"device path {path!r} is invalid")
    pfd = resolve.mkdest_in_root(root_fd, root, parent, directory=True)
    try:
        if bind and kind != _S_IFIFO:
            _bind_host_device(path, root_fd=root_fd, root=root)
        else:
            _mknod(dev, kind, name, pfd)
    finally:
        os.close(pfd)


def _bind_host_device(path: str, *, root_fd: int, root: str) -> None:
    """mknod is not allowed in a user namespace: bind the host's node onto an empty file."""
    if not os.path.exists(path):
        raise OciSystemdError(
            f"device {path}: mknod is not allowed in a user namespace and the host has no "
            f"{path} to bind-mount instead",
        )
    fd = resolve.mkdest_in_root(root_fd, root, path, directory=False)
    try:
        resolve.step(f"bind device {path}")
        resolve.mount_fd(path, fd, None, linux.MS_BIND, None, path)
    finally:
        os.close(fd)


def _mknod(dev: config.Device, kind: int, name: str, pfd: int) -> None:
    """The node `name` in the directory `pfd`, replacing what is there, with the entry's owner."""
    path = dev["path"]
    mode = int(dev.get("fileMode", 0o666)) & 0o7777
    rdev = os.makedev(int(dev.get("major", 0)), int(dev.get("minor", 0))) if kind != _S_IFIFO else 0
    resolve.step(f"mknod {path} {dev.get('type', 'c')} {os.major(rdev)}:{os.minor(rdev)} {mode:o}")
    try:
        os.unlink(name, dir_fd=pfd)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise SyscallError("unlink", path, e.errno or errno.EIO) from e
    old = os.umask(0)
    try:
        os.mknod(name, kind | mode, rdev, dir_fd=pfd)
    except OSError as e:
        raise SyscallError("mknod", path, e.errno or errno.EIO) from e
    finally:
        os.umask(old)
    try:
        os.chown(name, int(dev.get("uid", 0)), int(dev.get("gid", 0)), dir_fd=pfd, follow_symlinks=False)
    except OSError as e:
        raise SyscallError("chown", path, e.errno or errno.EIO) from e


def setup_dev(cfg: config.Config, *, root_fd: int, root: str) -> None:
    """Default devices + `linux.devices`, /dev/ptmx → pts/ptmx, /dev/fd and stdio links."""
    bind = in_user_namespace(cfg)
    devices = list((cfg.get("linux") or {}).get("devices") or ())
    configured = {d["path"] for d in devices}
    for path, major, minor in DEFAULT_DEVICES:
        if path not in configured:
            default: config.Device = {"path": path, "type": "c", "major": major, "minor": minor}
            create_device(default, root_fd=root_fd, root=root, bind=bind)
    for dev in devices:
        create_device(dev, root_fd=root_fd, root=root, bind=bind)
    dfd = resolve.mkdest_in_root(root_fd, root, "/dev", directory=True)
    try:
        _make_links(dfd)
    finally:
        os.close(dfd)


def _make_links(dfd: int) -> None:
    links = (*DEV_SYMLINKS, ("ptmx", "pts/ptmx"))
    if os.path.exists("/proc/kcore"):
        links = (*links, ("core", "/proc/kcore"))
    for name, target in links:
        if name == "ptmx":
            try:
                os.unlink(name, dir_fd=dfd)
            except FileNotFoundError:
                pass
            except OSError as e:
                raise SyscallError("unlink", "/dev/ptmx", e.errno or errno.EIO) from e
        try:
            os.symlink(target, name, dir_fd=dfd)
        except FileExistsError:
            pass
        except OSError as e:
            raise SyscallError("symlink", f"/dev/{name}", e.errno or errno.EIO) from e
