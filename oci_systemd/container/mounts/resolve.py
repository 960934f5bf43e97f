# SPDX-License-Identifier: Apache-2.0
"""Destinations inside the container's root: resolved to O_PATH fds, never outside the root, and
mounted through those fds (CVE-2021-30465).

A destination is opened as an O_PATH fd and mounted through `/proc/self/fd/N`, never through a
path string a symlink could redirect between the check and the mount: openat2(RESOLVE_IN_ROOT |
RESOLVE_NO_MAGICLINKS) when the kernel has it, otherwise a lexical resolution (`secure_join`,
symlinks re-rooted at the rootfs) followed by a component-by-component O_NOFOLLOW walk that fails
rather than follow a symlink swapped in meanwhile. A mount covers the O_PATH fd it was made
through, so a remount or a propagation change resolves the destination again (now the new mount).

`trace` may be set to a callable receiving one line per step of the rootfs (nothing sets it in
the product; it is there for debugging).

Idler module: `os`, `errno`, `oci_systemd.container.linux` and `oci_systemd.errors` only.
"""

from __future__ import annotations

import errno
import os

from oci_systemd.container import linux
from oci_systemd.errors import SyscallError

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: importing typing costs the idler ~10 ms
if TYPE_CHECKING:
    from collections.abc import Callable

trace: Callable[[str], None] | None = None


def step(msg: str) -> None:
    """Report one step of the rootfs to `trace`, when set."""
    if trace is not None:
        trace(msg)


# Whether openat2(2) works here: None until the first call tells (kernel < 5.6, or an outer
# seccomp profile filtering it, make it False and every later call takes the fallback).
_openat2_works: bool | None = None
_O_PATH = os.O_PATH | os.O_CLOEXEC
_S_IFMT, _S_IFLNK = 0o170000, 0o120000


def fdpath(fd: int) -> str:
    """The magic link through which mount(2) and open(2) reach what `fd` is open on."""
    return f"/proc/self/fd/{fd}"


def host_source(source: str, bundle: str) -> str:
    """The host path of a bind source (or an idmapped one): a relative one is relative to the bundle."""
    return source if os.path.isabs(source) else os.path.join(bundle, source)


def secure_join(root: str, path: str) -> str:
    """`path` resolved as if `root` were "/": symlinks, absolute or with "..", stay inside root.

    Missing components are kept lexically; the result contains no symlink at the time of the call.
    """
    parts = [p for p in path.split("/") if p and p != "."]
    parts.reverse()  # a stack
    resolved: list[str] = []
    links = 0
    while parts:
        comp = parts.pop()
        if comp == "..":
            if resolved:
                resolved.pop()
            continue
        cur = os.path.join(root, *resolved, comp)
        try:
            target = os.readlink(cur)
        except OSError as e:
            if e.errno in (errno.EINVAL, errno.ENOENT, errno.ENOTDIR):
                resolved.append(comp)
                continue
            raise SyscallError("readlink", cur, e.errno or errno.EIO) from e
        links += 1
        if links > 255:
            raise SyscallError("resolve", os.path.join(root, path.lstrip("/")), errno.ELOOP)
        if target.startswith("/"):
            resolved = []
        new = [p for p in target.split("/") if p and p != "."]
        new.reverse()
        parts.extend(new)
    return os.path.join(root, *resolved)


def walk(root_fd: int, rel: str, *, create: str | None = None, mode: int = 0o755) -> int:
    """Open `rel` (symlink-free, below root_fd) component by component with O_NOFOLLOW.

    `create` is None, "dir" or "file": missing components are created (directories, and the last
    one as `create` says). A symlink met on the way is an error (ELOOP), never followed.
    """
    comps = [c for c in rel.split("/") if c and c != "."]
    cur = os.dup(root_fd)
    try:
        for i, comp in enumerate(comps):
            if comp == "..":
                raise SyscallError("open", rel, errno.EXDEV)
            last = i == len(comps) - 1
            oflags = _O_PATH | os.O_NOFOLLOW | (os.O_DIRECTORY if not last else 0)
            try:
                nfd = os.open(comp, oflags, dir_fd=cur)
            except FileNotFoundError:
                if create is None:
                    raise
                _create_component(cur, comp, directory=not last or create == "dir", mode=mode)
                nfd = os.open(comp, oflags, dir_fd=cur)
            os.close(cur)
            cur = nfd
            if last and (os.fstat(cur).st_mode & _S_IFMT) == _S_IFLNK:
                raise SyscallError("open", rel, errno.ELOOP)
        return cur
    except BaseException:
        os.close(cur)
        raise


def _create_component(dir_fd: int, name: str, *, directory: bool, mode: int) -> None:
    """A missing directory, or an empty file to mount a file onto; one made meanwhile will do."""
    try:
        if directory:
            os.mkdir(name, mode, dir_fd=dir_fd)
        else:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            os.close(os.open(name, flags, 0o644, dir_fd=dir_fd))
    except FileExistsError:
        pass


def open_in_root(root_fd: int, root: str, path: str, flags: int = 0) -> int:
    """An O_PATH fd for `path` resolved inside the root `root` (opened as `root_fd`)."""
    global _openat2_works
    if _openat2_works is not False:
        try:
            fd = linux.openat2(
                root_fd,
                path.lstrip("/") or ".",
                _O_PATH | flags,
                0,
                linux.RESOLVE_IN_ROOT | linux.RESOLVE_NO_MAGICLINKS,
            )
            _openat2_works = True
            return fd
        except SyscallError as e:
            if e.errno not in (errno.ENOSYS, errno.EPERM) or _openat2_works:
                raise
            _openat2_works = False  # kernel < 5.6, or openat2 filtered by an outer seccomp profile
    rel = os.path.relpath(secure_join(root, path), root)
    return walk(root_fd, rel)


def mkdest_in_root(root_fd: int, root: str, path: str, *, directory: bool, mode: int = 0o755) -> int:
    """Open `path` inside the root, creating it (and its parents) when missing; an O_PATH fd."""
    try:
        return open_in_root(root_fd, root, path)
    except (FileNotFoundError, SyscallError) as e:
        if isinstance(e, SyscallError) and e.errno != errno.ENOENT:
            raise
    rel = os.path.relpath(secure_join(root, path), root)
    if rel == "." or rel.startswith(".."):
        raise SyscallError("mkdir", path, errno.EINVAL)
    fd = walk(root_fd, rel, create="dir" if directory else "file", mode=mode)
    if _openat2_works:
        # Double-check with the kernel's own in-root resolution, and use that fd.
        os.close(fd)
        fd = open_in_root(root_fd, root, rel)
    return fd


def open_beneath(dir_fd: int, rel: str, flags: int) -> int:
    """Open `rel` below `dir_fd` with `flags` through no symlink, magic link or other mount:
    openat2(RESOLVE_BENEATH | …) or, without it, the O_NOFOLLOW walk (the caller then checks
    the file's filesystem: the walk does not stop at mount points)."""
    if _openat2_works is not False:
        try:
            resolve = (
                linux.RESOLVE_BENEATH
                | linux.RESOLVE_NO_MAGICLINKS
                | linux.RESOLVE_NO_SYMLINKS
                | linux.RESOLVE_NO_XDEV
            )
            return linux.openat2(dir_fd, rel, flags, 0, resolve)
        except SyscallError as e:
            if e.errno != errno.ENOSYS:
                raise
    parent, name = os.path.split(rel)
    dfd = walk(dir_fd, parent) if parent else os.dup(dir_fd)
    try:
        return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    except OSError as e:
        raise SyscallError("open", rel, e.errno or errno.EIO) from e
    finally:
        os.close(dfd)


# --- mounting through the fd -----------------------------------------------------------------------
# statvfs f_flag bits (ST_*, same values as MS_*) a remount must keep when they are locked.
_LOCKED = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC
_ST_RELATIME = 4096  # ST_RELATIME has its own value in statvfs


def statvfs_flags(path: str) -> int:
    """The MS_* flags of the mount at `path` that a bind remount must repeat (locked in user ns)."""
    f = os.statvfs(path).f_flag
    flags = f & (_LOCKED | linux.MS_NOATIME | linux.MS_NODIRATIME)
    if f & _ST_RELATIME:
        flags |= linux.MS_RELATIME
    return flags


def mount_fd(
    source: str | None,
    fd: int,
    fstype: str | None,
    flags: int,
    data: str | None,
    dest: str,
) -> None:
    """mount(2) onto what `fd` is open on; errors name `dest`, not the /proc/self/fd link."""
    try:
        linux.mount(source, fdpath(fd), fstype, flags, data)
    except SyscallError as e:
        raise SyscallError("mount", dest, e.errno) from e


def remount_bind(root_fd: int, root: str, dest: str, flags: int) -> None:
    """Re-resolve `dest` (now a mount) and remount it MS_BIND|MS_REMOUNT with `flags` + locked ones."""
    fd = open_in_root(root_fd, root, dest)
    try:
        locked = statvfs_flags(fdpath(fd))
        step(f"remount {dest} flags={flags | locked:#x}")
        mount_fd(None, fd, None, linux.MS_BIND | linux.MS_REMOUNT | flags | locked, None, dest)
    finally:
        os.close(fd)


def set_propagation(root_fd: int, root: str, dest: str, propagation: list[int]) -> None:
    """Apply the propagation flags of a mount's options, in their order, to the mount at `dest`."""
    if not propagation:
        return
    fd = open_in_root(root_fd, root, dest)
    try:
        for p in propagation:
            mount_fd(None, fd, None, p, None, dest)
    finally:
        os.close(fd)
