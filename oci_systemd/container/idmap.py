# SPDX-License-Identifier: Apache-2.0
"""Idmapped bind mounts: the mount options `idmap` and `ridmap` (runtime-spec 1.2, config.md).

A mount with one of them is a detached copy of its source, `open_tree(OPEN_TREE_CLONE)`, whose
owners are shifted with `mount_setattr(MOUNT_ATTR_IDMAP)` through a user namespace holding the
mount's `uidMappings`/`gidMappings` (the container's own when the mount has none): a file owned
by `containerID` on disk appears owned by `hostID`. `mounts.mount_entry` then attaches it with
`move_mount()` instead of bind-mounting the source.

`prepare()` runs in the idler before it enters the container's namespaces: idmapping a mount of a
host filesystem needs CAP_SYS_ADMIN in the user namespace that owns the filesystem (the host's),
which a process in the container's user namespace no longer has (runc does it in its parent
for the same reason). The mapping's user namespace comes from a child that unshares
CLONE_NEWUSER and is given the maps; its /proc/<pid>/ns/user fd outlives it.

Idler module: stdlib, `linux`, `mount_options`, `mounts.resolve` and `namespaces` only.
"""

from __future__ import annotations

import errno
import os

from oci_systemd.container import linux, mount_options, namespaces
from oci_systemd.container.mounts import resolve
from oci_systemd.errors import OciSystemdError, SpecError, SyscallError

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: this runs in the idler, and typing costs ~5 ms
if TYPE_CHECKING:
    from oci_systemd.container import config

# Detached, idmapped trees made by prepare(), by id() of their entry in cfg["mounts"] (the same
# dicts mount_entry() gets): held until attach() moves them into place.
_prepared: dict[int, int] = {}


def prepare(cfg: config.Config, *, bundle: str) -> None:
    """Make the idmapped tree of every `idmap`/`ridmap` mount; call before entering namespaces."""
    lin = cfg.get("linux") or {}
    for i, m in enumerate(cfg.get("mounts") or ()):
        if not mount_options.wants_idmap(m):
            continue
        where = f"mounts[{i}]"
        opts = m.get("options") or ()
        if m.get("type") != "bind" and "bind" not in opts and "rbind" not in opts:
            raise SpecError(where, "idmap and ridmap need a bind mount")
        uids = m.get("uidMappings") or lin.get("uidMappings") or []
        gids = m.get("gidMappings") or lin.get("gidMappings") or []
        if not uids or not gids:
            raise SpecError(where, "idmap needs uidMappings and gidMappings, on the mount or in linux")
        src = resolve.host_source(m.get("source") or "", bundle)
        _prepared[id(m)] = _idmapped_tree(
            src, uids, gids, clone_recursive="rbind" in opts, idmap_recursive="ridmap" in opts
        )


def _idmapped_tree(
    src: str,
    uids: list[config.IDMapping],
    gids: list[config.IDMapping],
    *,
    clone_recursive: bool,
    idmap_recursive: bool,
) -> int:
    flags = linux.OPEN_TREE_CLONE | os.O_CLOEXEC | (linux.AT_RECURSIVE if clone_recursive else 0)
    tree = linux.open_tree(linux.AT_FDCWD, src, flags)
    try:
        userns = user_namespace(uids, gids)
        try:
            at = linux.AT_EMPTY_PATH | (linux.AT_RECURSIVE if idmap_recursive else 0)
            linux.mount_setattr(tree, "", at, attr_set=linux.MOUNT_ATTR_IDMAP, userns_fd=userns)
        except SyscallError as e:
            raise OciSystemdError(
                f"mount_setattr `{src}` (idmap): {os.strerror(e.errno or 0).lower()}",
                hint="the source's filesystem must support idmapped mounts (ext4, xfs, btrfs: "
                "Linux 5.12; tmpfs: 6.3; overlayfs: 5.19) and not be idmapped already",
            ) from None
        finally:
            os.close(userns)
    except BaseException:
        os.close(tree)
        raise
    return tree


def user_namespace(uids: list[config.IDMapping], gids: list[config.IDMapping]) -> int:
    """An fd of a new user namespace with these maps: a child unshares it, we write its maps."""
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: unshare, say so, wait until the parent holds the namespace
        code = 0
        try:
            os.close(ready_r)
            os.close(done_w)
            linux.unshare(linux.CLONE_NEWUSER)
            os.write(ready_w, b"u")
            os.read(done_r, 1)
        except BaseException:
            code = 1
        os._exit(code)
    os.close(ready_w)
    os.close(done_r)
    try:
        if os.read(ready_r, 1) != b"u":
            raise SyscallError("unshare", "user namespace for idmap", errno.EPERM)
        namespaces.write_id_maps(pid, uids, gids)
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_r)
        os.close(done_w)  # the child's read returns: it exits
        os.waitpid(pid, 0)


def attach(m: config.Mount, dest_fd: int, dest: str) -> None:
    """Move `m`'s idmapped tree onto `dest_fd` (an O_PATH fd of the destination)."""
    tree = _prepared.pop(id(m), None)
    if tree is None:  # never fall back to a plain bind: the owners would not be shifted
        raise OciSystemdError(f"idmapped mount on {dest} was not prepared before the namespaces")
    try:
        flags = linux.MOVE_MOUNT_F_EMPTY_PATH | linux.MOVE_MOUNT_T_EMPTY_PATH
        linux.move_mount(tree, "", dest_fd, "", flags, dest)
    finally:
        os.close(tree)
