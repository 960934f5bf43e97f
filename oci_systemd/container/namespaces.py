# SPDX-License-Identifier: Apache-2.0
"""Entering and creating the container's namespaces from the raw `linux.namespaces` list.

Idler hot path: imports only `os`, `errno`, `oci_systemd.container.linux` and `oci_systemd.errors`;
`shutil` and `subprocess` only for the newuidmap/newgidmap fallback of an unprivileged writer.

Ordering (runc's nsexec.c follows the same rules):
1. every `path` is opened first, before any setns(), because joining a mount or user namespace
   changes what paths resolve to and what we may open;
2. a user namespace given by path is joined first, so that joining the others is checked against
   the capabilities we hold in it; the others follow, mount namespace last;
3. new namespaces are unshared after the joins; a new user namespace is unshared first (alone when
   the caller needs to get its id maps written before the others are created; otherwise in the same
   unshare(2) call, where the kernel also creates it first and makes it own the others);
4. a new cgroup namespace is left to `unshare_cgroup()`, called once the process sits in its
   systemd scope, so that the scope's cgroup becomes the namespace's root.
A new pid or time namespace applies to children only (as does a joined pid namespace), so the
caller must fork: `EnterResult.needs_fork`.
"""

from __future__ import annotations

import errno
import os

from oci_systemd.container import linux
from oci_systemd.errors import OciSystemdError, SyscallError

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: importing typing costs the idler ~10 ms
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from oci_systemd.container import config

# runtime-spec config-linux.md namespace types → clone flags
NAMESPACE_FLAGS: dict[str, int] = {
    "user": linux.CLONE_NEWUSER,
    "pid": linux.CLONE_NEWPID,
    "network": linux.CLONE_NEWNET,
    "ipc": linux.CLONE_NEWIPC,
    "uts": linux.CLONE_NEWUTS,
    "mount": linux.CLONE_NEWNS,
    "cgroup": linux.CLONE_NEWCGROUP,
    "time": linux.CLONE_NEWTIME,
}

# Join order after "user": mount last, since it changes the root of later path lookups.
_JOIN_ORDER = ("user", "ipc", "uts", "network", "pid", "cgroup", "time", "mount")


class EnterResult:
    """What `enter()` did: `unshared` holds the CLONE_* flags of the namespaces created."""

    __slots__ = ("cgroup_pending", "joined", "needs_fork", "new_net_ns", "new_user_ns", "unshared")

    def __init__(
        self,
        *,
        unshared: int,
        joined: int,
        needs_fork: bool,
        new_user_ns: bool,
        new_net_ns: bool,
        cgroup_pending: bool,
    ) -> None:
        self.unshared = unshared
        self.joined = joined
        self.needs_fork = needs_fork
        self.new_user_ns = new_user_ns
        self.new_net_ns = new_net_ns
        self.cgroup_pending = cgroup_pending

    def as_dict(self) -> dict[str, int | bool]:
        return {k: getattr(self, k) for k in self.__slots__}

    def __repr__(self) -> str:
        return f"EnterResult({self.as_dict()})"


def flag_names(flags: int) -> str:
    return ", ".join(name for name, f in NAMESPACE_FLAGS.items() if flags & f) or "none"


def enter(
    namespaces: list[config.Namespace],
    *,
    sync_user_ns: Callable[[], None] | None = None,
) -> EnterResult:
    """Join the namespaces that have a `path`, unshare the others (the cgroup one excepted).

    With a new user namespace and `sync_user_ns` given, the user namespace is unshared alone, then
    `sync_user_ns()` is called (it must get the parent to run `write_id_maps()` for this pid and
    wait for it), then this process becomes root in it (`become_root()`), and only then are the
    other namespaces unshared. Without `sync_user_ns`, all are unshared at once and the caller must
    call `become_root()` after the maps are written.
    """
    to_join: dict[str, str] = {}
    new = 0
    for ns in namespaces:
        nstype = ns["type"]
        flag = NAMESPACE_FLAGS.get(nstype)
        if flag is None:
            raise OciSystemdError(f"unknown namespace type {nstype!r}")
        path = ns.get("path")
        if path:
            to_join[nstype] = path
        else:
            new |= flag

    fds: list[tuple[str, str, int]] = []
    try:
        for nstype in _JOIN_ORDER:
            path = to_join.get(nstype)
            if path is None:
                continue
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as e:
                raise SyscallError(f"open {nstype} namespace", path, e.errno or 1) from e
            fds.append((nstype, path, fd))
            if nstype == "mount":
                _refuse_own_mount_ns(fd, path)
        for nstype, path, fd in fds:
            try:
                linux.setns(fd, NAMESPACE_FLAGS[nstype], path)
            except SyscallError as e:
                raise SyscallError(f"join {nstype} namespace", path, e.errno) from e
    finally:
        for _, _, fd in fds:
            os.close(fd)

    joined = 0
    for nstype in to_join:
        joined |= NAMESPACE_FLAGS[nstype]
    cgroup_pending = bool(new & linux.CLONE_NEWCGROUP)
    rest = new & ~linux.CLONE_NEWCGROUP
    if rest & linux.CLONE_NEWUSER and sync_user_ns is not None:
        _unshare(linux.CLONE_NEWUSER)
        sync_user_ns()
        become_root()
        rest &= ~linux.CLONE_NEWUSER
    if rest:
        _unshare(rest)

    return EnterResult(
        unshared=new & ~linux.CLONE_NEWCGROUP,
        joined=joined,
        needs_fork=bool((new | joined) & linux.CLONE_NEWPID or new & linux.CLONE_NEWTIME),
        new_user_ns=bool(new & linux.CLONE_NEWUSER),
        new_net_ns=bool(new & linux.CLONE_NEWNET),
        cgroup_pending=cgroup_pending,
    )


def _refuse_own_mount_ns(fd: int, path: str) -> None:
    """The rootfs is built by changing propagation, pivot_root and unmounting the old root: in the
    caller's own mount namespace that would take the caller's / away."""
    st, own = os.fstat(fd), os.stat("/proc/self/ns/mnt")
    if (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino):
        raise OciSystemdError(
            f"mount namespace {path} is the runtime's own: the container would replace its root",
            hint='use a new mount namespace ({"type": "mount"}) or the path of another one',
        )


def _unshare(flags: int) -> None:
    try:
        linux.unshare(flags)
    except SyscallError as e:
        raise SyscallError("unshare", f"{flag_names(flags)} namespace", e.errno) from e


def become_root() -> None:
    """Switch to uid/gid 0 inside a freshly mapped user namespace so new files get a mapped owner."""
    linux.setresgid(0, 0, 0)
    linux.setresuid(0, 0, 0)


def unshare_cgroup() -> None:
    """Create the cgroup namespace: call it once this process sits in the container's cgroup."""
    _unshare(linux.CLONE_NEWCGROUP)


def _format_map(mappings: list[config.IDMapping]) -> str:
    return "".join(f"{int(m['containerID'])} {int(m['hostID'])} {int(m['size'])}\n" for m in mappings)


def _write_proc(path: str, data: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        raise SyscallError("open", path, e.errno or 1) from e
    try:
        os.write(fd, data.encode())
    except OSError as e:
        raise SyscallError("write", path, e.errno or 1) from e
    finally:
        os.close(fd)


def write_id_maps(
    pid: int,
    uid_mappings: list[config.IDMapping],
    gid_mappings: list[config.IDMapping],
) -> None:
    """Write /proc/<pid>/{uid_map,gid_map} (runs in the parent, outside the new user namespace).

    Mappings are runtime-spec `uidMappings`/`gidMappings` dicts (containerID, hostID, size).
    A writer without CAP_SETUID/CAP_SETGID in the parent namespace (rootless) may write one line
    of its own euid/egid, and for gid_map only after denying setgroups(2); any other map goes
    to the setuid helpers newuidmap/newgidmap (shadow-utils, from /etc/subuid and /etc/subgid),
    which decide about setgroups themselves: denying it first would make them fail.
    """
    privileged = os.geteuid() == 0
    for kind, mappings in (("uid", uid_mappings), ("gid", gid_mappings)):
        if not mappings:
            continue
        path = f"/proc/{pid}/{kind}_map"
        if not privileged and not own_id_only(kind, mappings):
            if not _map_with_helper(kind, pid, mappings):
                raise OciSystemdError(f"writing {path} needs new{kind}map, which is not installed")
            continue
        if kind == "gid" and not privileged:
            _write_proc(f"/proc/{pid}/setgroups", "deny")
        try:
            _write_proc(path, _format_map(mappings))
        except SyscallError as e:
            raise SyscallError(f"write {kind} mappings", path, e.errno) from e


def own_id_only(kind: str, mappings: Sequence[config.IDMapping]) -> bool:
    """One line mapping our own euid (egid): what the kernel lets an unprivileged writer write."""
    own = os.geteuid() if kind == "uid" else os.getegid()
    return len(mappings) == 1 and int(mappings[0]["hostID"]) == own and int(mappings[0]["size"]) == 1


def _map_with_helper(kind: str, pid: int, mappings: list[config.IDMapping]) -> bool:
    import shutil
    import subprocess

    helper = shutil.which(f"new{kind}map")
    if helper is None:
        return False
    argv = [helper, str(pid)]
    for m in mappings:
        argv += [str(int(m["containerID"])), str(int(m["hostID"])), str(int(m["size"]))]
    r = subprocess.run(argv, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise OciSystemdError(f"{os.path.basename(helper)} failed: {r.stderr.strip()}")
    return True


def write_time_offsets(offsets: config.TimeOffsets) -> None:
    """Write `linux.timeOffsets` to /proc/self/timens_offsets, right after unshare(CLONE_NEWTIME).

    `offsets` maps "monotonic"/"boottime" to {"secs": int, "nanosecs": int}. The offsets can only be
    written before the first process enters the new time namespace (our child).
    """
    lines = []
    for clock, off in (("monotonic", offsets.get("monotonic")), ("boottime", offsets.get("boottime"))):
        if off:
            lines.append(f"{clock} {int(off.get('secs', 0))} {int(off.get('nanosecs', 0))}\n")
    if not lines:
        return
    # A non-dumpable process's /proc/self files belong to the initial namespace's root: once we
    # are root of a new user namespace we may not write them. Nothing of the container runs yet
    # (the offsets must be written before the first process enters the namespace), so being
    # dumpable for the duration of this write exposes nothing.
    dumpable = linux.prctl(linux.PR_GET_DUMPABLE)
    if not dumpable:
        linux.prctl(linux.PR_SET_DUMPABLE, 1)
    try:
        _write_proc("/proc/self/timens_offsets", "".join(lines))
    finally:
        if not dumpable:
            linux.prctl(linux.PR_SET_DUMPABLE, 0)


def configured(cfg: config.Config, nstype: str) -> config.Namespace | None:
    """The `linux.namespaces` entry of type `nstype` (new or by path), None when the container
    shares the caller's namespace of that type."""
    for ns in (cfg.get("linux") or {}).get("namespaces") or ():
        if ns.get("type") == nstype:
            return ns
    return None


def same_ns(kind: str, pid: int) -> bool:
    """Whether we share namespace `kind` (a /proc/<pid>/ns name) with `pid`; False if unknown."""
    try:
        own, other = os.stat(f"/proc/self/ns/{kind}"), os.stat(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return False
    return (own.st_dev, own.st_ino) == (other.st_dev, other.st_ino)


def set_hostname(cfg: config.Config) -> None:
    """Set `hostname` and `domainname` of the full config, in the container's uts namespace: new,
    or joined by path as runc allows, unless that one is the host's (pid 1's: as for sysctls)."""
    hostname = cfg.get("hostname")
    domainname = cfg.get("domainname")
    if hostname is None and domainname is None:
        return
    uts = configured(cfg, "uts")
    if uts is None:
        raise OciSystemdError(
            "unable to set hostname without a private UTS namespace",
            hint='add {"type": "uts"} to linux.namespaces',
        )
    if uts.get("path") and same_ns("uts", 1):
        raise OciSystemdError(
            f"unable to set hostname: the uts namespace {uts['path']} is the host's (that of pid 1)",
            hint='use a new uts namespace ({"type": "uts"}) or the path of another one',
        )
    if hostname is not None:
        linux.sethostname(hostname)
    if domainname is not None:
        linux.setdomainname(domainname)


# /proc/<pid>/ns/<name> for each runtime-spec namespace type
PROC_NS_NAMES: dict[str, str] = {
    "user": "user",
    "pid": "pid",
    "network": "net",
    "ipc": "ipc",
    "uts": "uts",
    "mount": "mnt",
    "cgroup": "cgroup",
    "time": "time",
}


def join_all(pid: int, types: list[str | config.Namespace]) -> bool:
    """`exec`: join the namespaces of process `pid` (types as strings or {"type": ...} dicts).

    An empty list means every type. Namespaces we already share with `pid` are skipped (setns(2)
    into one's own user namespace is EINVAL). The user namespace is joined first, the mount
    namespace last. Returns True when a pid or time namespace was joined: the caller must fork.
    """
    wanted = [t["type"] if isinstance(t, dict) else str(t) for t in types] or list(_JOIN_ORDER)
    fds: list[tuple[str, str, int]] = []
    try:
        for nstype in _JOIN_ORDER:
            if nstype not in wanted:
                continue
            path = f"/proc/{pid}/ns/{PROC_NS_NAMES[nstype]}"
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue  # kernel without this namespace type
            except OSError as e:
                raise SyscallError(f"open {nstype} namespace", path, e.errno or 1) from e
            try:
                own = os.stat(f"/proc/self/ns/{PROC_NS_NAMES[nstype]}")
                if (own.st_dev, own.st_ino) == (st.st_dev, st.st_ino):
                    continue
            except OSError:
                pass
            try:
                fds.append((nstype, path, os.open(path, os.O_RDONLY | os.O_CLOEXEC)))
            except OSError as e:
                raise SyscallError(f"open {nstype} namespace", path, e.errno or 1) from e
        needs_fork = False
        # Opened before any setns(): a joined pid namespace does not change what /proc shows us.
        shares_mount_ns = "mount" in wanted and "mount" not in {t for t, _, _ in fds}
        root = _shared_mount_ns_root(pid) if shares_mount_ns else -1
        if root >= 0:
            fds.append(("root", f"/proc/{pid}/root", root))
        for nstype, path, fd in fds:
            if nstype == "root":
                _chroot_fd(fd)  # after the other joins: a joined user namespace grants CAP_SYS_CHROOT
                continue
            try:
                linux.setns(fd, NAMESPACE_FLAGS[nstype], path)
            except SyscallError as e:
                raise SyscallError(f"join {nstype} namespace", path, e.errno) from e
            needs_fork |= nstype in ("pid", "time")
        return needs_fork
    finally:
        for _, _, fd in fds:
            os.close(fd)


def _shared_mount_ns_root(pid: int) -> int:
    """A container without a mount namespace is only chrooted (mounts.enter_rootfs): when we share
    `pid`'s mount namespace but not its root, an fd on that root to chroot into; else -1."""
    path = f"/proc/{pid}/root"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise SyscallError("open the container's root", path, e.errno or 1) from e
    st, own = os.fstat(fd), os.stat("/")
    if (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino):
        os.close(fd)
        return -1
    return fd


def _chroot_fd(fd: int) -> None:
    os.fchdir(fd)
    os.chroot(".")
    os.chdir("/")


def loopback_up() -> None:
    """Bring "lo" up in a new network namespace (SIOCSIFFLAGS; no netlink library on this path).

    Goes through linux.py's ctypes only: after become_root() the interpreter's lib-dynload may no
    longer be readable (fcntl/socket could not be imported then).
    """
    linux.set_link_up("lo")


def join_session_keyring(name: str) -> None:
    """A fresh session keyring named `name` (runc's default, unless --no-new-keyring).

    Like runc, the possessor also gets setattr and the user view/read/link/search, so that the
    container's processes (which possess it) can manage it. ENOSYS (keyctl filtered or missing)
    is ignored, as runc does. Called past pivot_root: it imports nothing.
    """
    try:
        linux.keyctl(linux.KEYCTL_JOIN_SESSION_KEYRING, name.encode())
    except SyscallError as e:
        if e.errno == errno.ENOSYS:
            return
        raise SyscallError("join session keyring", name, e.errno) from e
    # runc: perm = (perm & ~0) | 0x080b0100
    desc = linux.keyctl_describe(linux.KEY_SPEC_SESSION_KEYRING)
    if desc is None:
        return
    try:
        perm = int(desc.split(b";")[3], 16)
    except (IndexError, ValueError):
        return
    linux.keyctl(linux.KEYCTL_SETPERM, linux.KEY_SPEC_SESSION_KEYRING, perm | 0x080B0100)
