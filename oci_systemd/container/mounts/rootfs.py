# SPDX-License-Identifier: Apache-2.0
"""The sequence that makes the rootfs the container's root (runc's rootfs_linux.go order).

`prepare_rootfs` (propagation of /, rootfs bind onto itself, the `mounts` in config order,
devices and /dev links) → createContainer hooks (caller) → `enter_rootfs` (pivot_root, or
MS_MOVE + chroot) → `finish_rootfs` (rootfsPropagation, root.readonly, sysctl, readonlyPaths,
maskedPaths). Without a mount namespace the caller's is shared: nothing is mounted, /dev nodes
are made as files and `enter_rootfs` only chroots.

Idler module: `os`, `errno`, `oci_systemd.container.linux`, `.mount_options`, `.namespaces`, `.mounts.*`
and `oci_systemd.errors` only.
"""

from __future__ import annotations

import errno
import os

from oci_systemd.container import linux, mount_options, namespaces
from oci_systemd.container.mounts import dev, entries, masked, resolve, sysctl
from oci_systemd.errors import OciSystemdError, SyscallError

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: importing typing costs the idler ~10 ms
if TYPE_CHECKING:
    from oci_systemd.container import config

_O_ROOT = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
# EPERM mounting a filesystem in a user namespace: which types it may mount is the kernel's
# (FS_USERNS_MOUNT), not listed anywhere a runtime can read.
_USERNS_MOUNT_HINT = (
    "mounts[{i}] ({type}): a user namespace mounts only filesystems the kernel allows there "
    "(tmpfs, proc, sysfs, devpts, mqueue, cgroup2, overlay, fuse, ...) and bind mounts"
)


def _unescape_mountinfo(s: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    if "\\" not in s:
        return s
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 3 < len(s) + 1 and s[i + 1 : i + 4].isdigit():
            out.append(chr(int(s[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def mount_point_of(path: str) -> str:
    """The mount point (in this mount namespace) of the mount holding `path`."""
    best = "/"
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = _unescape_mountinfo(line.split(" ", 5)[4])
            if (path == mp or path.startswith(mp.rstrip("/") + "/")) and len(mp) > len(best):
                best = mp
    return best


def root_propagation(cfg: config.Config) -> int | None:
    """The MS_* flag of `linux.rootfsPropagation`, None when unset."""
    value = (cfg.get("linux") or {}).get("rootfsPropagation")
    if not value:
        return None
    flag = mount_options.PROPAGATION_FLAGS.get(value)
    if flag is None:
        raise OciSystemdError(f"invalid rootfsPropagation {value!r}")
    return flag


_NEED_MOUNT_NS = ("maskedPaths", "readonlyPaths", "rootfsPropagation")


def _prepare_in_callers_ns(cfg: config.Config, rootfs: str) -> None:
    """No mount namespace: the caller's is shared, so nothing may be mounted, unmounted or have
    its propagation changed. What needs that is refused (also by spec.py, before create);
    /dev nodes are made as files in the rootfs, sysctls written through the caller's /proc (its
    /proc/sys shows the namespaces of the writer: ours), and enter_rootfs() chroots."""
    lin = cfg.get("linux") or {}
    wanted = ["mounts"] if cfg.get("mounts") else []
    wanted += [k for k in _NEED_MOUNT_NS if lin.get(k)]
    if (cfg.get("root") or {}).get("readonly"):
        wanted.append("root.readonly")
    if dev.in_user_namespace(cfg):
        wanted.append("a user namespace")  # its /dev could only be bind-mounted
    if wanted:
        raise OciSystemdError(f"{', '.join(wanted)}: requires a mount namespace in linux.namespaces")
    root_fd = os.open(rootfs, _O_ROOT)
    try:
        dev.setup_dev(cfg, root_fd=root_fd, root=rootfs)
    finally:
        os.close(root_fd)
    sysctl.write_sysctls(lin.get("sysctl") or {})


def prepare_rootfs(
    cfg: config.Config, *, rootfs: str, bundle: str, sources: dict[int, int] | None = None
) -> None:
    """All mounts, devices and /dev links below `rootfs`, in the new mount namespace, before pivot.

    `rootfs` and `bundle` are absolute host paths; relative bind sources are relative to `bundle`.
    `sources` maps the index of a bind entry in `mounts` to its source fd (`SourceOpener`); they
    are closed here, whatever happens.
    """
    try:
        _prepare_rootfs(cfg, os.path.realpath(rootfs), bundle, sources or {})
    finally:
        for fd in (sources or {}).values():
            os.close(fd)


def _prepare_rootfs(cfg: config.Config, rootfs: str, bundle: str, sources: dict[int, int]) -> None:
    sysctl.check_sysctls(cfg)
    if namespaces.configured(cfg, "mount") is None:
        _prepare_in_callers_ns(cfg, rootfs)
        return
    _isolate_root(cfg, rootfs)
    root_fd = os.open(rootfs, _O_ROOT)
    try:
        for i, m in enumerate(cfg.get("mounts") or ()):
            try:
                entries.mount_entry(m, root_fd=root_fd, root=rootfs, bundle=bundle, source_fd=sources.get(i))
            except SyscallError as e:
                if e.errno == errno.EPERM and not mount_options.is_bind(m) and dev.in_user_namespace(cfg):
                    e.hint = e.hint or _USERNS_MOUNT_HINT.format(i=i, type=m.get("type"))
                raise
        if dev.needs_dev_setup(cfg):
            dev.setup_dev(cfg, root_fd=root_fd, root=rootfs)
    finally:
        os.close(root_fd)


def _isolate_root(cfg: config.Config, rootfs: str) -> None:
    """Stop our mounts from propagating to the host, and bind the rootfs onto itself.

    Without rootfsPropagation / becomes rslave, runc's default (crun's is rprivate): host mounts
    made later below a bind source reach the container, nothing goes the other way.
    "shared" variants of rootfsPropagation keep / shared, but then the rootfs' parent mount must
    be private for pivot_root(2). An unbindable rootfs could not be bound onto itself: it stays
    private here and finish_rootfs() makes it unbindable."""
    root_flag = linux.MS_REC | _initial_root_propagation(root_propagation(cfg))
    resolve.step(f"propagation of / = {linux.propagation_name(root_flag)}")
    linux.mount(None, "/", None, root_flag)
    if root_flag & linux.MS_SHARED:
        linux.mount(None, mount_point_of(rootfs), None, linux.MS_PRIVATE)
    resolve.step(f"bind {rootfs} -> {rootfs}")
    linux.mount(rootfs, rootfs, None, linux.MS_BIND | linux.MS_REC)


def _initial_root_propagation(prop: int | None) -> int:
    """The propagation type (no MS_REC) given to / before the rootfs is prepared."""
    if prop is None:
        return linux.MS_SLAVE
    if prop & linux.MS_UNBINDABLE:
        return linux.MS_PRIVATE
    return prop & ~linux.MS_REC


def enter_rootfs(cfg: config.Config, rootfs: str, *, no_pivot: bool = False) -> None:
    """Make `rootfs` the root: pivot_root(".", ".") + detach the old root, or MS_MOVE + chroot;
    without a mount namespace only chroot (runc too): the caller's mounts stay as they are."""
    rootfs = os.path.realpath(rootfs)
    if namespaces.configured(cfg, "mount") is None:
        resolve.step(f"chroot {rootfs} (no mount namespace)")
        os.chdir(rootfs)
        os.chroot(".")
        os.chdir("/")
        return
    if no_pivot:
        resolve.step(f"move {rootfs} -> / and chroot")
        os.chdir(rootfs)
        linux.mount(rootfs, "/", None, linux.MS_MOVE)
        os.chroot(".")
        os.chdir("/")
        return
    resolve.step(f"pivot_root {rootfs}")
    old = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    new = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fchdir(new)
        linux.pivot_root(".", ".")
        # The old root is now stacked on "." (pivot_root(2) man page); make it rslave so that
        # unmounting it does not propagate to the host, then detach it.
        os.fchdir(old)
        linux.mount(None, ".", None, linux.MS_SLAVE | linux.MS_REC)
        linux.umount2(".", linux.MNT_DETACH)
    finally:
        os.close(old)
        os.close(new)
    os.chdir("/")


def finish_rootfs(cfg: config.Config) -> None:
    """After pivot, in runc's order: rootfsPropagation, root.readonly, sysctl (while /proc/sys is
    still writable), readonlyPaths, maskedPaths; an unbindable propagation comes last, since the
    read-only paths are bind mounts of themselves (EINVAL below an unbindable mount). Nothing to
    do without a mount namespace."""
    if namespaces.configured(cfg, "mount") is None:
        return
    lin = cfg.get("linux") or {}
    prop = root_propagation(cfg)
    if prop and not prop & linux.MS_UNBINDABLE:
        _set_root_propagation(prop)
    if (cfg.get("root") or {}).get("readonly"):
        resolve.step("remount / read-only")
        flags = linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY | resolve.statvfs_flags("/")
        linux.mount(None, "/", None, flags)
    sysctl.write_sysctls(lin.get("sysctl") or {})
    root_fd = os.open("/", _O_ROOT)
    try:
        masked.readonly_paths(lin.get("readonlyPaths") or (), root_fd=root_fd)
        masked.mask_paths(lin.get("maskedPaths") or (), root_fd=root_fd)
    finally:
        os.close(root_fd)
    if prop and prop & linux.MS_UNBINDABLE:
        _set_root_propagation(prop)


def _set_root_propagation(prop: int) -> None:
    resolve.step(f"propagation of / = {linux.propagation_name(prop)}")
    linux.mount(None, "/", None, prop)
