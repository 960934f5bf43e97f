# SPDX-License-Identifier: Apache-2.0
"""The entries of config.json's `mounts` (runtime-spec config.md), performed below the rootfs:
bind mounts (plain, or idmapped by `idmap`) and their sources, filesystems, tmpfs copy-up.

Idler module: `os`, `errno`, `_socket` (loaded by the channel anyway), `oci_systemd.container`'s
`linux`, `channel`, `namespaces`, `mount_options`, `mounts.resolve` and `oci_systemd.errors` only;
`stat` and `idmap` are imported when first needed, always before pivot_root.
"""

from __future__ import annotations

import _socket
import errno
import os

from oci_systemd.container import channel, linux, mount_options, namespaces
from oci_systemd.container.mounts import resolve
from oci_systemd.errors import OciSystemdError, SyscallError

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: importing typing costs the idler ~10 ms
if TYPE_CHECKING:
    from oci_systemd.container import config

# In a user namespace without its own network/cgroup namespace the kernel refuses these
# filesystems: the host's are bound instead, like runc does.
_BIND_FALLBACKS = {"sysfs": "/sys", "cgroup2": "/sys/fs/cgroup"}


def mount_entry(
    m: config.Mount, *, root_fd: int, root: str, bundle: str, source_fd: int | None = None
) -> None:
    """Perform one `mounts` entry below the rootfs `root` (opened as `root_fd`).

    `source_fd`: the bind source, opened by `SourceOpener` with the host's credentials."""
    opts = mount_options.parse_options(m.get("options") or ())
    if mount_options.is_bind(m, opts):
        _bind(m, opts, root_fd=root_fd, root=root, bundle=bundle, source_fd=source_fd)
    else:
        _mount_filesystem(m, opts, root_fd=root_fd, root=root)
    resolve.set_propagation(root_fd, root, m["destination"], opts.propagation)


def _bind(
    m: config.Mount,
    opts: mount_options.MountOptions,
    *,
    root_fd: int,
    root: str,
    bundle: str,
    source_fd: int | None,
) -> None:
    dest = m["destination"]
    source = m.get("source")
    if not source:
        raise OciSystemdError(f"bind mount on {dest} has no source")
    src = resolve.host_source(source, bundle)
    try:
        st = os.stat(src) if source_fd is None else os.fstat(source_fd)
    except OSError as e:
        raise SyscallError("stat", src, e.errno or errno.ENOENT) from e
    is_dir = (st.st_mode & 0o170000) == 0o040000
    fd = resolve.mkdest_in_root(root_fd, root, dest, directory=is_dir)
    try:
        resolve.step(f"bind {src} -> {dest}{' (recursive)' if opts.flags & linux.MS_REC else ''}")
        if not _attach_idmapped(m, fd, dest):
            from_ = src if source_fd is None else resolve.fdpath(source_fd)
            resolve.mount_fd(from_, fd, None, linux.MS_BIND | (opts.flags & linux.MS_REC), None, dest)
    finally:
        os.close(fd)
    extra = opts.flags & ~(linux.MS_BIND | linux.MS_REC | linux.MS_REMOUNT)
    if extra:
        resolve.remount_bind(root_fd, root, dest, extra)


def _attach_idmapped(m: config.Mount, fd: int, dest: str) -> bool:
    """An `idmap`/`ridmap` mount: move the tree idmap.prepare() made onto `fd` (True)."""
    if not mount_options.wants_idmap(m):
        return False
    from oci_systemd.container import idmap  # loaded by idmap.prepare(), before any namespace was entered

    idmap.attach(m, fd, dest)
    return True


def _mount_filesystem(m: config.Mount, opts: mount_options.MountOptions, *, root_fd: int, root: str) -> None:
    dest = m["destination"]
    source = m.get("source")
    fstype = m.get("type")
    if fstype == "cgroup":
        fstype = "cgroup2"  # cgroup v2 only: a v1 hierarchy list is not built
    data = opts.data
    if fstype == "devpts":
        keys = {d.split("=", 1)[0] for d in data.split(",") if d}
        add = [x for x in ("newinstance", "ptmxmode=0666") if x.split("=")[0] not in keys]
        data = ",".join([*([data] if data else []), *add])
    fd = resolve.mkdest_in_root(root_fd, root, dest, directory=True)
    below = -1
    try:
        if opts.copy_up and fstype == "tmpfs":
            # The directory the tmpfs will hide, held open to copy from after the mount.
            below = os.open(resolve.fdpath(fd), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        resolve.step(f"mount {fstype} {source or fstype} -> {dest} flags={opts.flags:#x} data={data!r}")
        try:
            resolve.mount_fd(source or fstype, fd, fstype, opts.flags, data or None, dest)
        except SyscallError as e:
            fallback = _BIND_FALLBACKS.get(fstype or "")
            if e.errno not in (errno.EPERM, errno.EBUSY) or fallback is None:
                raise
            resolve.step(f"bind {fallback} -> {dest} (fallback)")
            resolve.mount_fd(fallback, fd, None, linux.MS_BIND | linux.MS_REC, None, dest)
            if opts.flags & ~linux.MS_REMOUNT:
                os.close(fd)
                fd = -1
                resolve.remount_bind(root_fd, root, dest, opts.flags & ~linux.MS_REMOUNT)
        if below >= 0:
            top = resolve.open_in_root(root_fd, root, dest, os.O_RDONLY | os.O_DIRECTORY)
            try:
                resolve.step(f"copy up {dest}")
                copy_tree(below, top)
            finally:
                os.close(top)
    finally:
        if fd >= 0:
            os.close(fd)
        if below >= 0:
            os.close(below)


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
            _copy_file(name, st.st_mode, src_fd, dst_fd)
        else:  # devices, fifos, sockets
            os.mknod(name, st.st_mode, st.st_rdev, dir_fd=dst_fd)
        os.chown(name, st.st_uid, st.st_gid, dir_fd=dst_fd, follow_symlinks=False)
        if not stat.S_ISLNK(st.st_mode):
            os.chmod(name, mode, dir_fd=dst_fd)


def _copy_file(name: str, mode: int, src_fd: int, dst_fd: int) -> None:
    src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_fd)
    try:
        dst = os.open(
            name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode & 0o7777, dir_fd=dst_fd
        )
        try:
            while chunk := os.read(src, 1 << 20):
                os.write(dst, chunk)
        finally:
            os.close(dst)
    finally:
        os.close(src)


# --- bind sources ---------------------------------------------------------------------------------
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
    def start(cls, cfg: config.Config, bundle: str) -> SourceOpener | None:
        if namespaces.configured(cfg, "user") is None or namespaces.configured(cfg, "mount") is None:
            return None
        if os.geteuid() != 0:
            # Rootless: the host's credentials are the user's, which the container's root
            # keeps (mapped onto it); a helper with them could open nothing more, and could not
            # join a mount namespace that the new user namespace owns.
            return None
        paths = {
            i: resolve.host_source(m["source"], bundle)
            for i, m in enumerate(cfg.get("mounts") or ())
            if m.get("source") and mount_options.is_bind(m)
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
