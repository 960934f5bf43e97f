# SPDX-License-Identifier: Apache-2.0
"""The container's root filesystem: mounts, /dev, pivot_root, masked and read-only paths, sysctl.

Idler hot path: imports only `os`, `_socket` (loaded by the channel anyway), `stat`-free
arithmetic, `oci_systemd.container.linux`, `.channel`, `.namespaces` and `.errors`; it works on the raw
config.json dict.

Every destination is resolved *inside* the rootfs and mounted through an O_PATH fd
(`/proc/self/fd/N`), never through a path string a symlink could redirect (CVE-2021-30465):
openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) when the kernel has it, otherwise a lexical
resolution (`secure_join`, symlinks re-rooted at the rootfs) followed by a component-by-component
O_NOFOLLOW walk that fails rather than follow a symlink swapped in meanwhile. A mount covers the
O_PATH fd it was made through, so remounts and propagation changes re-resolve the destination.

Order (runc's rootfs_linux.go): `prepare_rootfs` (propagation of /, rootfs bind onto itself, the
`mounts` in config order, devices and /dev links) → createContainer hooks (caller) →
`enter_rootfs` (pivot_root or MS_MOVE + chroot; chroot only without a mount namespace) →
`finish_rootfs` (rootfsPropagation, root.readonly, sysctl, readonlyPaths, maskedPaths).

`trace` may be set to a callable receiving one line per step (the idler wires it to --debug).
"""

from __future__ import annotations

import _socket
import errno
import os

from oci_systemd.container import channel, linux, namespaces
from oci_systemd.errors import OciSystemdError, SyscallError

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: importing typing costs the idler ~10 ms
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

trace: Callable[[str], None] | None = None


def _trace(msg: str) -> None:
    if trace is not None:
        trace(msg)


# --- mount options --------------------------------------------------------------------------------
# option → (flags to clear, flags to set); mount(8) names, as runc's mountFlags table.
MOUNT_FLAGS: dict[str, tuple[int, int]] = {
    "defaults": (0, 0),
    "ro": (0, linux.MS_RDONLY),
    "rw": (linux.MS_RDONLY, 0),
    "suid": (linux.MS_NOSUID, 0),
    "nosuid": (0, linux.MS_NOSUID),
    "dev": (linux.MS_NODEV, 0),
    "nodev": (0, linux.MS_NODEV),
    "exec": (linux.MS_NOEXEC, 0),
    "noexec": (0, linux.MS_NOEXEC),
    "sync": (0, linux.MS_SYNCHRONOUS),
    "async": (linux.MS_SYNCHRONOUS, 0),
    "remount": (0, linux.MS_REMOUNT),
    "mand": (0, linux.MS_MANDLOCK),
    "nomand": (linux.MS_MANDLOCK, 0),
    "dirsync": (0, linux.MS_DIRSYNC),
    "atime": (linux.MS_NOATIME, 0),
    "noatime": (0, linux.MS_NOATIME),
    "diratime": (linux.MS_NODIRATIME, 0),
    "nodiratime": (0, linux.MS_NODIRATIME),
    "relatime": (0, linux.MS_RELATIME),
    "norelatime": (linux.MS_RELATIME, 0),
    "strictatime": (0, linux.MS_STRICTATIME),
    "nostrictatime": (linux.MS_STRICTATIME, 0),
    "lazytime": (0, linux.MS_LAZYTIME),
    "nolazytime": (linux.MS_LAZYTIME, 0),
    "nosymfollow": (0, linux.MS_NOSYMFOLLOW),
    "symfollow": (linux.MS_NOSYMFOLLOW, 0),
    "silent": (0, linux.MS_SILENT),
    "loud": (linux.MS_SILENT, 0),
    "bind": (0, linux.MS_BIND),
    "rbind": (0, linux.MS_BIND | linux.MS_REC),
}

PROPAGATION_FLAGS: dict[str, int] = {
    "shared": linux.MS_SHARED,
    "rshared": linux.MS_SHARED | linux.MS_REC,
    "slave": linux.MS_SLAVE,
    "rslave": linux.MS_SLAVE | linux.MS_REC,
    "private": linux.MS_PRIVATE,
    "rprivate": linux.MS_PRIVATE | linux.MS_REC,
    "unbindable": linux.MS_UNBINDABLE,
    "runbindable": linux.MS_UNBINDABLE | linux.MS_REC,
}

# Idmapped bind mounts: made by idmap.py before the namespaces, attached by mount_entry().
IDMAP_OPTIONS = frozenset({"idmap", "ridmap"})

# Options other runtimes accept that need mount_setattr(2)/idmapped mounts or copy-up: refused
# clearly instead of reaching the kernel as unknown data (EINVAL).
UNSUPPORTED_OPTIONS = frozenset(
    {
        "rro",
        "rrw",
        "rnosuid",
        "rsuid",
        "rnodev",
        "rdev",
        "rnoexec",
        "rexec",
        "rnoatime",
        "ratime",
        "rrelatime",
        "rnorelatime",
        "rstrictatime",
        "rnostrictatime",
        "rnodiratime",
        "rdiratime",
        "rnosymfollow",
        "rsymfollow",
    },
)

# statvfs f_flag bits (ST_*, same values as MS_*) a remount must keep when they are locked.
_LOCKED = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC
_ATIME = linux.MS_NOATIME | linux.MS_NODIRATIME | linux.MS_RELATIME | linux.MS_STRICTATIME
_ST_RELATIME = 4096  # ST_RELATIME has its own value in statvfs


class MountOptions:
    """`options` of one mount entry split into mount(2) flags, propagation changes and data."""

    __slots__ = ("copy_up", "data", "flags", "propagation")

    def __init__(self, flags: int, propagation: list[int], data: str, *, copy_up: bool = False) -> None:
        self.flags = flags
        self.propagation = propagation
        self.data = data
        self.copy_up = copy_up

    def __repr__(self) -> str:
        return f"MountOptions(flags={self.flags:#x}, propagation={self.propagation}, data={self.data!r})"


def parse_options(options: Iterable[str]) -> MountOptions:
    flags = 0
    propagation: list[int] = []
    data: list[str] = []
    copy_up = False
    for opt in options:
        fl = MOUNT_FLAGS.get(opt)
        if opt == "tmpcopyup":
            # podman puts it on every tmpfs: fill the new tmpfs with what was there before.
            copy_up = True
        elif fl is not None:
            flags = (flags & ~fl[0]) | fl[1]
        elif opt in PROPAGATION_FLAGS:
            propagation.append(PROPAGATION_FLAGS[opt])
        elif opt in IDMAP_OPTIONS:
            pass  # idmap.py: the tree is idmapped before it is attached
        elif opt in UNSUPPORTED_OPTIONS:
            raise OciSystemdError(f"mount option {opt!r} is not supported by oci-systemd")
        else:
            data.append(opt)
    return MountOptions(flags, propagation, ",".join(data), copy_up=copy_up)


def statvfs_flags(path: str) -> int:
    """The MS_* flags of the mount at `path` that a bind remount must repeat (locked in user ns)."""
    f = os.statvfs(path).f_flag
    flags = f & (_LOCKED | linux.MS_NOATIME | linux.MS_NODIRATIME)
    if f & _ST_RELATIME:
        flags |= linux.MS_RELATIME
    return flags


# --- resolution inside a root ---------------------------------------------------------------------
_openat2_works: bool | None = None
_O_PATH = os.O_PATH | os.O_CLOEXEC


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


def _walk(root_fd: int, rel: str, *, create: str | None = None, mode: int = 0o755) -> int:
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
            want_dir = not last or create == "dir"
            oflags = _O_PATH | os.O_NOFOLLOW | (os.O_DIRECTORY if not last else 0)
            try:
                nfd = os.open(comp, oflags, dir_fd=cur)
            except FileNotFoundError:
                if create is None:
                    raise
                try:
                    if want_dir:
                        os.mkdir(comp, mode, dir_fd=cur)
                    else:
                        os.close(
                            os.open(
                                comp,
                                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                                0o644,
                                dir_fd=cur,
                            )
                        )
                except FileExistsError:
                    pass
                nfd = os.open(comp, oflags, dir_fd=cur)
            os.close(cur)
            cur = nfd
            if last and (os.fstat(cur).st_mode & 0o170000) == 0o120000:  # S_IFLNK
                raise SyscallError("open", rel, errno.ELOOP)
        return cur
    except BaseException:
        os.close(cur)
        raise


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
    return _walk(root_fd, rel)


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
    fd = _walk(root_fd, rel, create="dir" if directory else "file", mode=mode)
    if _openat2_works:
        # Double-check with the kernel's own in-root resolution, and use that fd.
        os.close(fd)
        fd = open_in_root(root_fd, root, rel)
    return fd


def _fdpath(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


def _mount_fd(
    source: str | None,
    fd: int,
    fstype: str | None,
    flags: int,
    data: str | None,
    dest: str,
) -> None:
    try:
        linux.mount(source, _fdpath(fd), fstype, flags, data)
    except SyscallError as e:
        raise SyscallError("mount", dest, e.errno) from e


# --- the mounts list ------------------------------------------------------------------------------
def _is_bind(m: dict[str, Any], opts: MountOptions) -> bool:
    return bool(opts.flags & linux.MS_BIND) or m.get("type") == "bind"


def _host_source(source: str, bundle: str) -> str:
    return source if os.path.isabs(source) else os.path.join(bundle, source)


def wants_idmap(m: dict[str, Any]) -> bool:
    return not IDMAP_OPTIONS.isdisjoint(m.get("options") or ())


def _attach_idmapped(m: dict[str, Any], fd: int, dest: str) -> bool:
    """An `idmap`/`ridmap` mount: move the tree idmap.prepare() made onto `fd` (True)."""
    if not wants_idmap(m):
        return False
    from oci_systemd.container import idmap  # loaded by idmap.prepare(), before any namespace was entered

    idmap.attach(m, fd, dest)
    return True


def _remount_bind(root_fd: int, root: str, dest: str, flags: int) -> None:
    """Re-resolve `dest` (now a mount) and remount it MS_BIND|MS_REMOUNT with `flags` + locked ones."""
    fd = open_in_root(root_fd, root, dest)
    try:
        locked = statvfs_flags(_fdpath(fd))
        _trace(f"remount {dest} flags={flags | locked:#x}")
        _mount_fd(None, fd, None, linux.MS_BIND | linux.MS_REMOUNT | flags | locked, None, dest)
    finally:
        os.close(fd)


def _set_propagation(root_fd: int, root: str, dest: str, propagation: list[int]) -> None:
    if not propagation:
        return
    fd = open_in_root(root_fd, root, dest)
    try:
        for p in propagation:
            _mount_fd(None, fd, None, p, None, dest)
    finally:
        os.close(fd)


def mount_entry(
    m: dict[str, Any], *, root_fd: int, root: str, bundle: str, source_fd: int | None = None
) -> None:
    """Perform one `mounts` entry (runtime-spec config.md) below the rootfs.

    `source_fd`: the bind source, opened by `SourceOpener` with the host's credentials."""
    dest = m["destination"]
    fstype = m.get("type")
    source = m.get("source")
    opts = parse_options(m.get("options") or ())
    if _is_bind(opts=opts, m=m):
        if not source:
            raise OciSystemdError(f"bind mount on {dest} has no source")
        src = _host_source(source, bundle)
        try:
            st = os.stat(src) if source_fd is None else os.fstat(source_fd)
        except OSError as e:
            raise SyscallError("stat", src, e.errno or errno.ENOENT) from e
        is_dir = (st.st_mode & 0o170000) == 0o040000
        fd = mkdest_in_root(root_fd, root, dest, directory=is_dir)
        try:
            _trace(f"bind {src} -> {dest}{' (recursive)' if opts.flags & linux.MS_REC else ''}")
            if not _attach_idmapped(m, fd, dest):
                from_ = src if source_fd is None else _fdpath(source_fd)
                _mount_fd(from_, fd, None, linux.MS_BIND | (opts.flags & linux.MS_REC), None, dest)
        finally:
            os.close(fd)
        extra = opts.flags & ~(linux.MS_BIND | linux.MS_REC | linux.MS_REMOUNT)
        if extra:
            _remount_bind(root_fd, root, dest, extra)
        _set_propagation(root_fd, root, dest, opts.propagation)
        return

    if fstype == "cgroup":
        fstype = "cgroup2"  # cgroup v2 only: a v1 hierarchy list is not built
    data = opts.data
    if fstype == "devpts":
        keys = {d.split("=", 1)[0] for d in data.split(",") if d}
        add = [x for x in ("newinstance", "ptmxmode=0666") if x.split("=")[0] not in keys]
        data = ",".join([*([data] if data else []), *add])
    fd = mkdest_in_root(root_fd, root, dest, directory=True)
    below = -1
    try:
        if opts.copy_up and fstype == "tmpfs":
            # The directory the tmpfs will hide, held open to copy from after the mount.
            below = os.open(_fdpath(fd), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        _trace(f"mount {fstype} {source or fstype} -> {dest} flags={opts.flags:#x} data={data!r}")
        try:
            _mount_fd(source or fstype, fd, fstype, opts.flags, data or None, dest)
        except SyscallError as e:
            # In a user namespace without its own network/cgroup namespace the kernel refuses
            # sysfs/cgroup2: bind the host's, like runc does.
            fallback = {"sysfs": "/sys", "cgroup2": "/sys/fs/cgroup"}.get(fstype or "")
            if e.errno not in (errno.EPERM, errno.EBUSY) or fallback is None:
                raise
            _trace(f"bind {fallback} -> {dest} (fallback)")
            _mount_fd(fallback, fd, None, linux.MS_BIND | linux.MS_REC, None, dest)
            if opts.flags & ~linux.MS_REMOUNT:
                os.close(fd)
                fd = -1
                _remount_bind(root_fd, root, dest, opts.flags & ~linux.MS_REMOUNT)
        if below >= 0:
            top = open_in_root(root_fd, root, dest, os.O_RDONLY | os.O_DIRECTORY)
            try:
                _trace(f"copy up {dest}")
                copy_tree(below, top)
            finally:
                os.close(top)
    finally:
        if fd >= 0:
            os.close(fd)
        if below >= 0:
            os.close(below)
    _set_propagation(root_fd, root, dest, opts.propagation)


# --- bind sources opened with the host's credentials ----------------------------------------------
class SourceOpener:
    """Bind sources opened by a helper that keeps the host's credentials, for a container with a
    user namespace: as its root we could not reach a source under a 0700 directory of the host's
    root (runc's goCreateMountSources does the same, crun opens its sources before the switch).

    `start()` forks the helper while the idler is still the host's root in the host's namespaces.
    Once the idler has its namespaces, `receive()` lets the helper join the new mount namespace
    and open each source O_PATH there (an fd from another mount namespace cannot be bind-mounted:
    EINVAL); it returns the fds and reaps the helper. `prepare_rootfs()` mounts from the fds and
    closes them: they never reach the waiting idler.
    """

    __slots__ = ("_paths", "_pid", "_sock")

    def __init__(self, pid: int, sock: _socket.socket, paths: dict[int, str]) -> None:
        self._pid = pid
        self._sock = sock
        self._paths = paths

    @classmethod
    def start(cls, cfg: dict[str, Any], bundle: str) -> SourceOpener | None:
        if namespaces.configured(cfg, "user") is None or namespaces.configured(cfg, "mount") is None:
            return None
        paths = {
            i: _host_source(m["source"], bundle)
            for i, m in enumerate(cfg.get("mounts") or ())
            if m.get("source") and _is_bind(m, parse_options(m.get("options") or ()))
        }
        if not paths:
            return None
        ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:  # the helper: never returns into the idler's code
            code = 1
            try:
                ours.close()
                _serve_sources(theirs, list(paths.values()))
                code = 0
            finally:
                os._exit(code)
        theirs.close()
        return cls(pid, ours, paths)

    def receive(self) -> dict[int, int]:
        """Call once the mount namespace exists; index in `mounts` → O_PATH fd of its source."""
        fds: dict[int, int] = {}
        try:
            # Our own mount namespace, opened by us: the helper needs no ptrace access to us (we
            # are not dumpable) to join it.
            nsfd = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
            try:
                channel.send_fds(self._sock, b"go", [nsfd])
            finally:
                os.close(nsfd)
            for i, path in self._paths.items():
                data, fd = _recv_fd(self._sock)
                if fd >= 0:
                    fds[i] = fd
                if data != b"ok" or fd < 0:
                    what, _, err = data.decode(errors="replace").rpartition(":")
                    target = "the container's mount namespace" if what == "setns" else path
                    code = int(err) if err.isdigit() else errno.EIO
                    raise SyscallError(what or "open bind source", target, code)
            return fds
        except BaseException:
            for fd in fds.values():
                os.close(fd)
            raise
        finally:
            self._sock.close()
            os.waitpid(self._pid, 0)


def _serve_sources(sock: _socket.socket, paths: list[str]) -> None:
    """The helper's side of SourceOpener: one message per source, "ok" + fd or an errno."""
    data, nsfd = _recv_fd(sock)
    if data != b"go" or nsfd < 0:
        return  # the idler failed before making its namespaces
    try:
        linux.setns(nsfd, linux.CLONE_NEWNS, "the container's mount namespace")
    except SyscallError as e:
        sock.send(f"setns:{e.errno or errno.EIO}".encode())
        return
    finally:
        os.close(nsfd)
    for path in paths:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError as e:
            sock.send(f"open bind source:{e.errno or errno.EIO}".encode())
            return
        channel.send_fds(sock, b"ok", [fd])
        os.close(fd)


def _recv_fd(sock: _socket.socket) -> tuple[bytes, int]:
    """One message and the fd passed with it (-1 without one)."""
    data, fds = channel.recv_fds(sock, 64, 1)
    return data, (fds[0] if fds else -1)


def copy_tree(src_fd: int, dst_fd: int) -> None:
    """Copy a directory's contents (files, dirs, symlinks, devices; modes and owners) by fd,
    never following a symlink: the source is the container's image, not trusted."""
    import stat

    for entry in os.scandir(src_fd):
        name = entry.name
        st = os.stat(name, dir_fd=src_fd, follow_symlinks=False)
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(name, dir_fd=src_fd), name, dir_fd=dst_fd)
        elif stat.S_ISDIR(st.st_mode):
            os.mkdir(name, mode, dir_fd=dst_fd)
            sub_src = os.open(
                name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_fd
            )
            sub_dst = os.open(
                name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dst_fd
            )
            try:
                copy_tree(sub_src, sub_dst)
            finally:
                os.close(sub_src)
                os.close(sub_dst)
        elif stat.S_ISREG(st.st_mode):
            src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_fd)
            dst = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode, dir_fd=dst_fd)
            try:
                while chunk := os.read(src, 1 << 20):
                    os.write(dst, chunk)
            finally:
                os.close(src)
                os.close(dst)
        else:  # devices, fifos, sockets
            os.mknod(name, st.st_mode, st.st_rdev, dir_fd=dst_fd)
        os.chown(name, st.st_uid, st.st_gid, dir_fd=dst_fd, follow_symlinks=False)
        if not stat.S_ISLNK(st.st_mode):
            os.chmod(name, mode, dir_fd=dst_fd)


# --- /dev -----------------------------------------------------------------------------------------
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
_DEVICE_TYPES = {"c": 0o020000, "u": 0o020000, "b": 0o060000, "p": 0o010000}


_INIT_USER_NS_INO = 0xEFFFFFFD  # PROC_USER_INIT_INO (include/linux/proc_ns.h)


def in_user_namespace(cfg: dict[str, Any]) -> bool:
    """Whether mknod(2) is refused: the container has a user namespace (new or joined, whatever
    its maps say: a full identity map is still not the initial namespace), or the runtime itself
    runs in one."""
    if namespaces.configured(cfg, "user") is not None:
        return True
    try:
        return os.stat("/proc/self/ns/user").st_ino != _INIT_USER_NS_INO
    except OSError:
        return False


def _needs_dev_setup(cfg: dict[str, Any]) -> bool:
    """runc: devices are created unless /dev is bind-mounted from the host."""
    for m in cfg.get("mounts") or ():
        if m.get("destination", "").rstrip("/") == "/dev":
            return not _is_bind(m, parse_options(m.get("options") or ()))
    return True


def create_device(dev: dict[str, Any], *, root_fd: int, root: str, bind: bool) -> None:
    """One `linux.devices` entry (path, type, major, minor, fileMode, uid, gid)."""
    path = dev["path"]
    kind = _DEVICE_TYPES.get(dev.get("type", "c"))
    if kind is None:
        raise OciSystemdError(f"device {path}: unknown type {dev.get('type')!r}")
    parent, name = os.path.split(path.rstrip("/"))
    if not name:
        raise OciSystemdError(f"device path {path!r} is invalid")
    pfd = mkdest_in_root(root_fd, root, parent, directory=True)
    try:
        if bind:
            # mknod is not allowed in a user namespace: bind the host's node onto an empty file.
            if not os.path.exists(path):
                raise OciSystemdError(
                    f"device {path}: mknod is not allowed in a user namespace and the host has no "
                    f"{path} to bind-mount instead",
                )
            fd = mkdest_in_root(root_fd, root, path, directory=False)
            try:
                _trace(f"bind device {path}")
                _mount_fd(path, fd, None, linux.MS_BIND, None, path)
            finally:
                os.close(fd)
            return
        mode = int(dev.get("fileMode", 0o666)) & 0o7777
        rdev = os.makedev(int(dev.get("major", 0)), int(dev.get("minor", 0))) if kind != 0o010000 else 0
        _trace(f"mknod {path} {dev.get('type', 'c')} {os.major(rdev)}:{os.minor(rdev)} {mode:o}")
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
    finally:
        os.close(pfd)


def setup_dev(cfg: dict[str, Any], *, root_fd: int, root: str) -> None:
    """Default devices + `linux.devices`, /dev/ptmx → pts/ptmx, /dev/fd and stdio links."""
    bind = in_user_namespace(cfg)
    devices = list((cfg.get("linux") or {}).get("devices") or ())
    configured = {d["path"] for d in devices}
    for path, major, minor in DEFAULT_DEVICES:
        if path not in configured:
            create_device(
                {"path": path, "type": "c", "major": major, "minor": minor},
                root_fd=root_fd,
                root=root,
                bind=bind,
            )
    for dev in devices:
        create_device(dev, root_fd=root_fd, root=root, bind=bind)
    dfd = mkdest_in_root(root_fd, root, "/dev", directory=True)
    try:
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
    finally:
        os.close(dfd)


# --- whole rootfs ---------------------------------------------------------------------------------
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


def _root_propagation(cfg: dict[str, Any]) -> int | None:
    value = (cfg.get("linux") or {}).get("rootfsPropagation")
    if not value:
        return None
    flag = PROPAGATION_FLAGS.get(value)
    if flag is None:
        raise OciSystemdError(f"invalid rootfsPropagation {value!r}")
    return flag


_NEED_MOUNT_NS = ("mounts", "maskedPaths", "readonlyPaths", "rootfsPropagation")


def _prepare_in_callers_ns(cfg: dict[str, Any], rootfs: str) -> None:
    """No mount namespace: the caller's is shared, so nothing may be mounted, unmounted or have
    its propagation changed. What needs that is refused (also by spec.py, before create);
    /dev nodes are made as files in the rootfs, sysctls written through the caller's /proc (its
    /proc/sys shows the namespaces of the writer: ours), and enter_rootfs() chroots."""
    lin = cfg.get("linux") or {}
    wanted = [k for k in _NEED_MOUNT_NS if (cfg if k == "mounts" else lin).get(k)]
    if (cfg.get("root") or {}).get("readonly"):
        wanted.append("root.readonly")
    if in_user_namespace(cfg):
        wanted.append("a user namespace")  # its /dev could only be bind-mounted
    if wanted:
        raise OciSystemdError(f"{', '.join(wanted)}: requires a mount namespace in linux.namespaces")
    root_fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        setup_dev(cfg, root_fd=root_fd, root=rootfs)
    finally:
        os.close(root_fd)
    write_sysctls(lin.get("sysctl") or {})


def prepare_rootfs(
    cfg: dict[str, Any], *, rootfs: str, bundle: str, sources: dict[int, int] | None = None
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


def _prepare_rootfs(cfg: dict[str, Any], rootfs: str, bundle: str, sources: dict[int, int]) -> None:
    check_sysctls(cfg)
    if namespaces.configured(cfg, "mount") is None:
        _prepare_in_callers_ns(cfg, rootfs)
        return
    prop = _root_propagation(cfg)
    # Stop our mounts from propagating to the host; "shared" variants keep / shared but then the
    # rootfs' parent mount must be private for pivot_root(2). An unbindable rootfs could not be
    # bound onto itself: it stays private here and finish_rootfs() makes it unbindable.
    if prop and prop & linux.MS_UNBINDABLE:
        prop = None
    root_flag = linux.MS_REC | (prop & ~linux.MS_REC if prop else linux.MS_PRIVATE)
    _trace(f"propagation of / = {linux.propagation_name(root_flag)}")
    linux.mount(None, "/", None, root_flag)
    if root_flag & linux.MS_SHARED:
        linux.mount(None, mount_point_of(rootfs), None, linux.MS_PRIVATE)
    _trace(f"bind {rootfs} -> {rootfs}")
    linux.mount(rootfs, rootfs, None, linux.MS_BIND | linux.MS_REC)

    root_fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for i, m in enumerate(cfg.get("mounts") or ()):
            mount_entry(m, root_fd=root_fd, root=rootfs, bundle=bundle, source_fd=sources.get(i))
        if _needs_dev_setup(cfg):
            setup_dev(cfg, root_fd=root_fd, root=rootfs)
    finally:
        os.close(root_fd)


def enter_rootfs(cfg: dict[str, Any], rootfs: str, *, no_pivot: bool = False) -> None:
    """Make `rootfs` the root: pivot_root(".", ".") + detach the old root, or MS_MOVE + chroot;
    without a mount namespace only chroot (runc too): the caller's mounts stay as they are."""
    rootfs = os.path.realpath(rootfs)
    if namespaces.configured(cfg, "mount") is None:
        _trace(f"chroot {rootfs} (no mount namespace)")
        os.chdir(rootfs)
        os.chroot(".")
        os.chdir("/")
        return
    if no_pivot:
        _trace(f"move {rootfs} -> / and chroot")
        os.chdir(rootfs)
        linux.mount(rootfs, "/", None, linux.MS_MOVE)
        os.chroot(".")
        os.chdir("/")
        return
    _trace(f"pivot_root {rootfs}")
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


def _dev_null_fd() -> int:
    """An O_PATH fd on /dev/null, verified to be the char device 1:3 (CVE-2025-31133)."""
    fd = os.open("/dev/null", _O_PATH | os.O_NOFOLLOW)
    st = os.fstat(fd)
    if (st.st_mode & 0o170000) != 0o020000 or st.st_rdev != os.makedev(1, 3):
        os.close(fd)
        raise OciSystemdError(
            "/dev/null in the container is not the null device (1:3): refusing to mask paths with it",
        )
    return fd


def mask_path(path: str, *, root_fd: int, null_fd: int) -> None:
    try:
        fd = open_in_root(root_fd, "/", path)
    except (FileNotFoundError, SyscallError) as e:
        if isinstance(e, SyscallError) and e.errno != errno.ENOENT:
            raise
        return
    try:
        if (os.fstat(fd).st_mode & 0o170000) == 0o040000:
            _trace(f"mask {path} (read-only tmpfs)")
            _mount_fd("tmpfs", fd, "tmpfs", linux.MS_RDONLY, None, path)
        else:
            _trace(f"mask {path} (/dev/null)")
            _mount_fd(_fdpath(null_fd), fd, None, linux.MS_BIND, None, path)
    finally:
        os.close(fd)


def readonly_path(path: str, *, root_fd: int) -> None:
    try:
        fd = open_in_root(root_fd, "/", path)
    except (FileNotFoundError, SyscallError) as e:
        if isinstance(e, SyscallError) and e.errno != errno.ENOENT:
            raise
        return
    try:
        _trace(f"read-only {path}")
        _mount_fd(_fdpath(fd), fd, None, linux.MS_BIND | linux.MS_REC, None, path)
    finally:
        os.close(fd)
    _remount_bind(root_fd, "/", path, linux.MS_RDONLY | linux.MS_REC)


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


def sysctl_path(key: str) -> str:
    """`net.ipv4.ip_forward` → `net/ipv4/ip_forward` (keys already using "/" are kept)."""
    rel = key if "/" in key else key.replace(".", "/")
    if not rel or rel.startswith("/") or any(c in ("", ".", "..") for c in rel.split("/")):
        raise OciSystemdError(f"invalid sysctl key {key!r}")
    return rel


# IPC-namespaced sysctls besides fs/mqueue/* (runc's validator list).
_IPC_SYSCTLS = frozenset(
    f"kernel/{name}"
    for name in ("msgmax", "msgmnb", "msgmni", "sem", "shmall", "shmmax", "shmmni", "shm_rmid_forced")
)


def check_sysctls(cfg: dict[str, Any]) -> None:
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
        rel = sysctl_path(key)
        if rel in _IPC_SYSCTLS or rel.startswith("fs/mqueue/"):
            kind, proc_name = "ipc", "ipc"
        elif rel.startswith("net/"):
            kind, proc_name = "network", "net"
        elif rel in ("kernel/hostname", "kernel/domainname"):
            kind, proc_name = "uts", "uts"
        else:
            raise OciSystemdError(f"sysctl {key!r} is not in a separate kernel namespace")
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
            rel = sysctl_path(key)
            _trace(f"sysctl {key}={value}")
            try:
                if _openat2_works is not False:
                    try:
                        fd = linux.openat2(
                            sfd,
                            rel,
                            os.O_WRONLY | os.O_TRUNC,
                            0,
                            linux.RESOLVE_BENEATH
                            | linux.RESOLVE_NO_MAGICLINKS
                            | linux.RESOLVE_NO_SYMLINKS
                            | linux.RESOLVE_NO_XDEV,
                        )
                    except SyscallError as e:
                        if e.errno != errno.ENOSYS:
                            raise
                        fd = _open_sysctl_walk(sfd, rel)
                else:
                    fd = _open_sysctl_walk(sfd, rel)
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
    finally:
        os.close(sfd)


def _open_sysctl_walk(sfd: int, rel: str) -> int:
    parent, name = os.path.split(rel)
    dfd = _walk(sfd, parent) if parent else os.dup(sfd)
    try:
        return os.open(name, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    except OSError as e:
        raise SyscallError("open", rel, e.errno or errno.EIO) from e
    finally:
        os.close(dfd)


def finish_rootfs(cfg: dict[str, Any]) -> None:
    """After pivot, in runc's order: rootfsPropagation, root.readonly, sysctl (while /proc/sys is
    still writable), readonlyPaths, maskedPaths; an unbindable propagation comes last, since the
    read-only paths are bind mounts of themselves (EINVAL below an unbindable mount). Nothing to
    do without a mount namespace."""
    if namespaces.configured(cfg, "mount") is None:
        return
    lin = cfg.get("linux") or {}
    prop = _root_propagation(cfg)
    if prop and not prop & linux.MS_UNBINDABLE:
        _set_root_propagation(prop)
    if (cfg.get("root") or {}).get("readonly"):
        _trace("remount / read-only")
        linux.mount(None, "/", None, linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY | statvfs_flags("/"))
    write_sysctls(lin.get("sysctl") or {})
    root_fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for p in lin.get("readonlyPaths") or ():
            readonly_path(p, root_fd=root_fd)
        masked = lin.get("maskedPaths") or ()
        if masked:
            null_fd = _dev_null_fd()
            try:
                for p in masked:
                    mask_path(p, root_fd=root_fd, null_fd=null_fd)
            finally:
                os.close(null_fd)
    finally:
        os.close(root_fd)
    if prop and prop & linux.MS_UNBINDABLE:
        _set_root_propagation(prop)


def _set_root_propagation(prop: int) -> None:
    _trace(f"propagation of / = {linux.propagation_name(prop)}")
    linux.mount(None, "/", None, prop)
