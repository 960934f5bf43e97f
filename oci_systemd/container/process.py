# SPDX-License-Identifier: Apache-2.0
"""The container process's attributes, applied in the idler right before execve().

Idler hot path: imports only `os`, `oci_systemd.container.linux`, `.abi` and `.errors` (plus `resource`, a
small C module, and `oci_systemd.container.seccomp` when the config has a seccomp profile). Works on the
`process` object of config.json as `oci_systemd.runtime.spec` validated it (container/config.py): names,
ranges and enums are not checked again here; what is checked is what only the container can tell
(its /etc/passwd, its kernel's last capability, what the kernel allows).

Order of `prepare()` (runc's standard_init_linux.go / finalizeNamespace):
HOME from /etc/passwd → close fds → personality → rlimits → oomScoreAdj → ioPriority → scheduler
→ chdir (as root) → [seccomp, when noNewPrivileges is off: loading a filter without NNP needs CAP_SYS_ADMIN]
→ bounding set → keepcaps + setgroups/setresgid/setresuid → chdir again, verify cwd
→ capset (inheritable empty unless listed, CVE-2022-29162) → ambient → umask
→ executable lookup (as the container user) → no_new_privs → seccomp (last).
"""

from __future__ import annotations

import errno
import os
import resource  # imported now: after pivot_root the host's lib-dynload is out of reach

from oci_systemd.container import linux
from oci_systemd.container.abi import (
    CAPABILITIES,
    IOPRIO_CLASSES,
    PERSONALITY_DOMAINS,
    RLIMITS,
    SCHED_FLAGS,
    SCHED_POLICIES,
)
from oci_systemd.errors import ExecFailedError, OciSystemdError, SyscallError

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: importing typing costs the idler ~10 ms
if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable

    from oci_systemd.container import config

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_RLIM_INFINITY = 2**64 - 1
_ROOT: config.User = {"uid": 0, "gid": 0}  # an absent process.user


def preload(profile: config.Seccomp | None) -> None:
    """Import and dlopen() what `prepare()` needs for `linux.seccomp` while the host's files are
    still reachable.

    Call it before `mounts.enter_rootfs()`: afterwards the interpreter's lib-dynload and
    libseccomp.so.2 live outside the container's root.
    """
    if profile:
        from oci_systemd.container import seccomp

        seccomp.preload()


def seal_self() -> None:
    """Non-dumpable: container processes cannot open /proc/<idler>/exe, the host's interpreter
    (CVE-2019-5736), nor ptrace us. Call it first thing in the idler; execve() resets it."""
    linux.prctl(linux.PR_SET_DUMPABLE, 0)


def unseal_for_id_maps() -> None:
    """Dumpable again, in a new user namespace whose maps a user's runtime writes: it may open
    /proc/<pid>/uid_map only of a dumpable process (runc's nsexec does the same). No
    container process exists yet, and the idler seals itself again once its namespaces are
    made. Root's runtime opens them either way, so root's idler never calls this."""
    linux.prctl(linux.PR_SET_DUMPABLE, 1)


# --- file descriptors -----------------------------------------------------------------------------
def close_fds(keep: Iterable[int]) -> None:
    """Close every fd but 0-2 and `keep` (CVE-2024-21626); kept fds keep their CLOEXEC flag."""
    k = sorted({fd for fd in keep if fd > 2})
    start = 3
    try:
        for fd in k:
            if fd > start:
                linux.close_range(start, fd - 1)
            start = fd + 1
        linux.close_range(start, 0xFFFFFFFF)
    except SyscallError as e:
        if e.errno not in (errno.ENOSYS, errno.EPERM):
            raise
        keepset = set(k)
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd > 2 and fd not in keepset:
                os.closerange(fd, fd + 1)  # ignores EBADF (the listing's own fd)


# --- capabilities ---------------------------------------------------------------------------------
def last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
            return int(f.read())
    except (OSError, ValueError):
        return max(CAPABILITIES.values())


def cap_mask(names: Iterable[str] | None, *, last: int | None = None) -> int:
    """Capability names → bit mask; unknown names (or above the kernel's last) are ignored, as runc."""
    top = last_cap() if last is None else last
    mask = 0
    for name in names or ():
        n = CAPABILITIES.get(name.upper() if name.upper().startswith("CAP_") else f"CAP_{name.upper()}")
        if n is not None and n <= top:
            mask |= 1 << n
    return mask


def _cap_numbers(mask: int) -> list[int]:
    return [n for n in range(64) if mask >> n & 1]


def drop_bounding(keep: int, *, last: int) -> None:
    for n in range(last + 1):
        if not keep >> n & 1 and linux.prctl(linux.PR_CAPBSET_READ, n) == 1:
            linux.prctl(linux.PR_CAPBSET_DROP, n)


def apply_caps(caps: config.Capabilities, *, last: int) -> None:
    """capset(effective, permitted, inheritable), then the ambient set (needs permitted+inheritable)."""
    eff = cap_mask(caps.get("effective"), last=last)
    prm = cap_mask(caps.get("permitted"), last=last)
    inh = cap_mask(caps.get("inheritable"), last=last)
    amb = cap_mask(caps.get("ambient"), last=last)
    try:
        linux.capset(eff, prm, inh)
    except SyscallError as e:
        raise SyscallError("capset", "process.capabilities", e.errno) from e
    linux.prctl(linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_CLEAR_ALL)
    for n in _cap_numbers(amb):
        try:
            linux.prctl(linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_RAISE, n)
        except SyscallError as e:
            # runc ignores ambient capabilities that are not also permitted and inheritable
            if e.errno != errno.EPERM:
                raise


# --- resources ------------------------------------------------------------------------------------
def _rlim(v: int) -> int:
    return resource.RLIM_INFINITY if v >= _RLIM_INFINITY or v < 0 else v


def set_rlimits(rlimits: Iterable[config.Rlimit]) -> None:
    for rl in rlimits:
        name = rl["type"]
        res = RLIMITS[name]
        soft, hard = _rlim(rl["soft"]), _rlim(rl["hard"])
        try:
            resource.setrlimit(res, (soft, hard))
        except (ValueError, OSError) as e:
            # CPython reports EPERM (raising the hard limit) as ValueError("not allowed to raise…")
            cur = resource.getrlimit(res)[1]
            if isinstance(e, OSError) and e.errno != errno.EPERM:
                raise SyscallError(f"setrlimit {name}", None, e.errno or errno.EINVAL) from e
            if cur != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or hard > cur):
                raise OciSystemdError(
                    f"setrlimit {name}: operation not permitted (hard limit is {cur})",
                    hint="raising a hard limit needs CAP_SYS_RESOURCE in the initial user namespace; "
                    "lower process.rlimits or raise the runtime's own limit",
                ) from e
            raise OciSystemdError(f"setrlimit {name}: {e} (soft {rl['soft']}, hard {rl['hard']})") from e


def set_oom_score_adj(value: int) -> None:
    """Write /proc/self/oom_score_adj (skipped when it already has this value).

    A sealed (non-dumpable) process's /proc files belong to root (of its user namespace, if
    that maps one): the idler of an unprivileged runtime calls this before it seals itself
    (it is inherited across fork). Lowering the score below the lowest a privileged writer
    gave this process needs CAP_SYS_RESOURCE (the kernel's EACCES).
    """
    current = None
    try:
        with open("/proc/self/oom_score_adj", "rb") as f:
            current = int(f.read())
    except (OSError, ValueError):
        pass
    if current == int(value):
        return
    try:
        fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, str(int(value)).encode())
        finally:
            os.close(fd)
    except OSError as e:
        err = SyscallError(
            "write /proc/self/oom_score_adj", f"process.oomScoreAdj {value}", e.errno or errno.EIO
        )
        if e.errno == errno.EACCES and current is not None and int(value) < current:
            err.hint = (
                f"the runtime's own score is {current}: going below the lowest a privileged writer "
                "set for it needs CAP_SYS_RESOURCE in the initial user namespace"
            )
        raise err from e


def set_io_priority(io: config.IOPriority) -> None:
    cls = io["class"]
    prio = io.get("priority") or 0
    try:
        linux.ioprio_set(linux.IOPRIO_WHO_PROCESS, 0, IOPRIO_CLASSES[cls] << linux.IOPRIO_CLASS_SHIFT | prio)
    except SyscallError as e:
        raise SyscallError("ioprio_set", f"process.ioPriority {cls} {prio}", e.errno) from e


def set_scheduler(sched: config.Scheduler) -> None:
    flags = 0
    for f in sched.get("flags") or ():
        flags |= SCHED_FLAGS[f]
    try:
        linux.sched_setattr(
            0,
            SCHED_POLICIES[sched["policy"]],
            flags=flags,
            nice=sched.get("nice") or 0,
            priority=sched.get("priority") or 0,
            runtime=sched.get("runtime") or 0,
            deadline=sched.get("deadline") or 0,
            period=sched.get("period") or 0,
        )
    except SyscallError as e:
        err = SyscallError("sched_setattr", f"process.scheduler {sched['policy']}", e.errno)
        if e.errno == errno.EPERM:
            err.hint = (
                "without CAP_SYS_NICE in the initial user namespace: SCHED_FIFO and SCHED_RR up to "
                "RLIMIT_RTPRIO only, a lower nice value only as far as RLIMIT_NICE allows, and no "
                "SCHED_DEADLINE"
            )
        raise err from e


def set_personality(pers: config.Personality) -> None:
    linux.personality(PERSONALITY_DOMAINS[pers["domain"]])  # spec refuses flags: none is defined


# --- user -----------------------------------------------------------------------------------------
def _setgroups_allowed() -> bool:
    try:
        with open("/proc/self/setgroups", "rb") as f:
            return f.read().strip() != b"deny"
    except OSError:
        return True


def set_user(user: config.User) -> None:
    """setgroups(additionalGids), setresgid(gid), setresuid(uid); the caller holds PR_SET_KEEPCAPS."""
    uid, gid = user["uid"], user["gid"]
    groups = list(user.get("additionalGids") or ())
    if _setgroups_allowed():
        linux.setgroups(groups)
    elif groups:
        raise OciSystemdError("cannot set additionalGids: setgroups is denied in this user namespace")
    linux.setresgid(gid, gid, gid)
    linux.setresuid(uid, uid, uid)


def _chdir(cwd: str) -> OSError | None:
    try:
        os.chdir(cwd)
    except OSError as e:
        return e
    return None


# --- cwd and HOME ---------------------------------------------------------------------------------
def make_cwd(process: config.Process) -> None:
    """Create a missing `process.cwd` (mode 0755, owned by whoever we are: the container's root), as
    runc's prepareRootfs does after entering the rootfs and before / is made read-only.

    Call it inside the container's root (after `mounts.enter_rootfs`): paths resolve there only.
    """
    cwd = process.get("cwd") or "/"
    if os.path.isdir(cwd):
        return
    if os.path.lexists(cwd):  # a file, or a dangling symlink: never write through it
        raise SyscallError("mkdir", cwd, errno.ENOTDIR)
    try:
        os.makedirs(cwd, 0o755, exist_ok=True)
    except OSError as e:
        raise SyscallError("mkdir", cwd, e.errno or errno.EIO) from e


_PASSWD_MAX = 4 << 20  # /etc/passwd is the image's: read a bounded amount, never block


def home_for(uid: int, passwd: str = "/etc/passwd") -> str:
    """`uid`'s home directory from the container's /etc/passwd, or "/" (runc's and crun's default)."""
    try:
        fd = os.open(passwd, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return "/"
    try:
        if (os.fstat(fd).st_mode & 0o170000) != 0o100000:  # a FIFO or device would block or never end
            return "/"
        data = os.read(fd, _PASSWD_MAX)
    except OSError:
        return "/"
    finally:
        os.close(fd)
    for line in data.decode(errors="replace").splitlines():
        fields = line.split(":")
        if len(fields) >= 6 and fields[2].strip() == str(uid) and fields[5]:
            return fields[5]
    return "/"


def with_home(env: list[str], uid: int) -> list[str]:
    """`env` plus HOME from the container's passwd when it has none (runc's setupUser)."""
    if env_value(env, "HOME") is not None:
        return env
    return [*env, f"HOME={home_for(uid)}"]


# --- executable lookup ----------------------------------------------------------------------------
def env_value(env: Iterable[str], key: str) -> str | None:
    value = None
    prefix = key + "="
    for e in env:
        if e.startswith(prefix):
            value = e[len(prefix) :]  # the last one wins, as getenv() on the built environment
    return value


def _check_executable(path: str, shown: str) -> ExecFailedError | None:
    try:
        st = os.stat(path)
    except OSError as e:
        err = e.errno or errno.ENOENT
        return ExecFailedError(f'exec: "{shown}": {os.strerror(err).lower()}', err=err)
    if (st.st_mode & 0o170000) == 0o040000 or not os.access(path, os.X_OK):
        return ExecFailedError(f'exec: "{shown}": permission denied', err=errno.EACCES)
    return None


def find_executable(name: str, env: Iterable[str]) -> str:
    """Resolve args[0] like Go's exec.LookPath with the container's PATH (runc's error wording).

    A name with "/" is checked as is; otherwise each absolute PATH entry is tried (relative ones
    are skipped, as Go refuses results relative to the cwd). Raises ExecFailedError.
    """
    if not name:
        raise ExecFailedError('exec: "": executable file not found in $PATH', err=errno.ENOENT)
    if "/" in name:
        err = _check_executable(name, name)
        if err is not None:
            raise err
        return name
    path = env_value(env, "PATH")
    for d in (DEFAULT_PATH if path is None else path).split(":"):
        if not d.startswith("/"):
            continue
        candidate = os.path.join(d, name)
        if _check_executable(candidate, name) is None:
            return candidate
    raise ExecFailedError(f'exec: "{name}": executable file not found in $PATH', err=errno.ENOENT)


# --- all together ---------------------------------------------------------------------------------
def prepare(
    process: config.Process,
    *,
    keep_fds: Collection[int],
    seccomp: config.Seccomp | None = None,
    personality: config.Personality | None = None,
    seccomp_notify: Callable[[int], None] | None = None,
) -> tuple[str, list[str], list[str]]:
    """Apply the `process` object (runtime-spec config.md) to this process; return execve() args.

    Everything but the execve() itself: the returned (path, argv, envp) go straight to os.execve().
    `keep_fds` survive besides stdio, with their CLOEXEC flag untouched. `seccomp` and
    `personality` are `linux.seccomp` and `linux.personality` of the config (they live outside
    `process` in the spec). `seccomp_notify` receives the filter's notify fd (SCMP_ACT_NOTIFY).
    """
    args = list(process["args"])  # spec: present and not empty
    # HOME from /etc/passwd is read now, as root: the container's user may not read it.
    user = process.get("user") or _ROOT
    uid = user["uid"]
    env = with_home(list(process.get("env") or ()), uid)
    close_fds(keep_fds)

    if personality:
        set_personality(personality)
    set_rlimits(process.get("rlimits") or ())
    if (oom_score_adj := process.get("oomScoreAdj")) is not None:
        set_oom_score_adj(oom_score_adj)
    if io := process.get("ioPriority"):
        set_io_priority(io)
    if sched := process.get("scheduler"):
        set_scheduler(sched)

    cwd = process.get("cwd") or "/"
    early_cwd_error = _chdir(cwd)

    nnp = bool(process.get("noNewPrivileges"))
    if seccomp and not nnp:
        # Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: do it while we still have it.
        _apply_seccomp(seccomp, seccomp_notify)

    caps = process.get("capabilities")
    last = last_cap()
    if caps is not None:
        drop_bounding(cap_mask(caps.get("bounding"), last=last), last=last)
        linux.prctl(linux.PR_SET_KEEPCAPS, 1)
    set_user(user)
    # A uid change resets "dumpable" to fs.suid_dumpable: keep the idler sealed until exec, also
    # from the startContainer hooks that now run with the same credentials.
    seal_self()
    if caps is not None:
        linux.prctl(linux.PR_SET_KEEPCAPS, 0)

    if early_cwd_error is not None:
        err = _chdir(cwd)
        if err is not None:
            raise SyscallError("chdir", cwd, err.errno or errno.ENOENT) from err
    try:
        real = os.getcwd()
    except OSError as e:  # cwd outside our root: a leaked directory (CVE-2024-21626)
        raise SyscallError("getcwd", cwd, e.errno or errno.ENOENT) from e
    if not real.startswith("/"):
        raise OciSystemdError(f"current working directory {cwd} is outside the container's root")

    if caps is not None:
        apply_caps(caps, last=last)
    umask = user.get("umask")
    os.umask(0o022 if umask is None else umask)

    path = find_executable(args[0], env)
    if nnp:
        linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
        if seccomp:
            _apply_seccomp(seccomp, seccomp_notify)
    return path, args, env


def _apply_seccomp(profile: config.Seccomp, notify: Callable[[int], None] | None) -> None:
    from oci_systemd.container import seccomp

    seccomp.apply(profile, notify)
