# SPDX-License-Identifier: Apache-2.0
"""Thin ctypes wrappers around the Linux syscalls the idler needs, plus kernel constants.

This module is imported by the idler (`python -I -S`), so it imports only `ctypes`, `os`,
`oci_systemd.errors` (itself `os` + `errno`) and `oci_systemd.container.mount_options` (no import
of its own), where the MS_* mount flags are defined. Every wrapper is named after its syscall, takes
the kernel's arguments and raises `SyscallError(call, target, errno)` on failure. Constants are copied
from the Linux kernel's uapi headers (named in the comments). Syscalls without a glibc wrapper go
through `libc.syscall()` with the numbers of x86_64 and aarch64 (asm-generic/unistd.h).
"""

from __future__ import annotations

import ctypes
import os

# The mount(2) flags (include/uapi/linux/mount.h) are defined with the option names that set
# them, in a module the runtime can read without ctypes; re-exported here with the syscalls.
# isort: off
from oci_systemd.container.mount_options import (
    MS_BIND as MS_BIND,
    MS_DIRSYNC as MS_DIRSYNC,
    MS_LAZYTIME as MS_LAZYTIME,
    MS_MANDLOCK as MS_MANDLOCK,
    MS_MOVE as MS_MOVE,
    MS_NOATIME as MS_NOATIME,
    MS_NODEV as MS_NODEV,
    MS_NODIRATIME as MS_NODIRATIME,
    MS_NOEXEC as MS_NOEXEC,
    MS_NOSUID as MS_NOSUID,
    MS_NOSYMFOLLOW as MS_NOSYMFOLLOW,
    MS_POSIXACL as MS_POSIXACL,
    MS_PRIVATE as MS_PRIVATE,
    MS_RDONLY as MS_RDONLY,
    MS_REC as MS_REC,
    MS_RELATIME as MS_RELATIME,
    MS_REMOUNT as MS_REMOUNT,
    MS_SHARED as MS_SHARED,
    MS_SILENT as MS_SILENT,
    MS_SLAVE as MS_SLAVE,
    MS_STRICTATIME as MS_STRICTATIME,
    MS_SYNCHRONOUS as MS_SYNCHRONOUS,
    MS_UNBINDABLE as MS_UNBINDABLE,
)

# isort: on
from oci_systemd.errors import SyscallError

libc = ctypes.CDLL(None, use_errno=True)

# --- include/uapi/linux/sched.h ------------------------------------------------------------------
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000


def propagation_name(flags: int) -> str:
    """MS_SHARED|MS_REC → "rshared" (for traces)."""
    for name, bit in (
        ("shared", MS_SHARED),
        ("slave", MS_SLAVE),
        ("private", MS_PRIVATE),
        ("unbindable", MS_UNBINDABLE),
    ):
        if flags & bit:
            return ("r" if flags & MS_REC else "") + name
    return hex(flags)


# include/linux/fs.h (umount2 flags)
MNT_FORCE = 1
MNT_DETACH = 2
MNT_EXPIRE = 4
UMOUNT_NOFOLLOW = 8

# --- include/uapi/linux/openat2.h -----------------------------------------------------------------
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10
RESOLVE_CACHED = 0x20

# --- include/uapi/linux/prctl.h -------------------------------------------------------------------
PR_SET_PDEATHSIG = 1
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
PR_GET_KEEPCAPS = 7
PR_SET_KEEPCAPS = 8
PR_SET_NAME = 15
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_SECUREBITS = 28
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_IS_SET = 1
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_LOWER = 3
PR_CAP_AMBIENT_CLEAR_ALL = 4

# --- include/uapi/linux/capability.h --------------------------------------------------------------
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

# --- include/uapi/linux/close_range.h -------------------------------------------------------------
CLOSE_RANGE_UNSHARE = 1 << 1
CLOSE_RANGE_CLOEXEC = 1 << 2

# --- include/uapi/linux/ioprio.h ------------------------------------------------------------------
IOPRIO_CLASS_RT = 1
IOPRIO_CLASS_BE = 2
IOPRIO_CLASS_IDLE = 3
IOPRIO_CLASS_SHIFT = 13
IOPRIO_WHO_PROCESS = 1

# --- include/uapi/linux/sched.h (policies and sched_attr flags) -----------------------------------
SCHED_OTHER = 0
SCHED_FIFO = 1
SCHED_RR = 2
SCHED_BATCH = 3
SCHED_ISO = 4
SCHED_IDLE = 5
SCHED_DEADLINE = 6
SCHED_FLAG_RESET_ON_FORK = 0x01
SCHED_FLAG_RECLAIM = 0x02
SCHED_FLAG_DL_OVERRUN = 0x04
SCHED_FLAG_KEEP_POLICY = 0x08
SCHED_FLAG_KEEP_PARAMS = 0x10
SCHED_FLAG_UTIL_CLAMP_MIN = 0x20
SCHED_FLAG_UTIL_CLAMP_MAX = 0x40

# --- include/uapi/linux/personality.h -------------------------------------------------------------
PER_LINUX = 0x0000
PER_LINUX32 = 0x0008
PERSONALITY_QUERY = 0xFFFFFFFF

# --- include/uapi/linux/magic.h -------------------------------------------------------------------
PROC_SUPER_MAGIC = 0x9FA0
SYSFS_MAGIC = 0x62656572
TMPFS_MAGIC = 0x01021994
CGROUP_SUPER_MAGIC = 0x27E0EB
CGROUP2_SUPER_MAGIC = 0x63677270
DEVPTS_SUPER_MAGIC = 0x1CD1

# --- include/uapi/linux/keyctl.h -----------------------------------------------------------------
KEYCTL_JOIN_SESSION_KEYRING = 1
KEYCTL_SETPERM = 5
KEYCTL_DESCRIBE = 6
KEY_SPEC_SESSION_KEYRING = -3

# --- include/uapi/linux/sockios.h, if.h (bringing "lo" up) -----------------------------------------
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

# --- syscall numbers (arch/x86/entry/syscalls/syscall_64.tbl, include/uapi/asm-generic/unistd.h) --
_SYSCALLS: dict[str, dict[str, int]] = {
    "x86_64": {
        "pivot_root": 155,
        "ioprio_set": 251,
        "sched_setattr": 314,
        "pidfd_send_signal": 424,
        "pidfd_open": 434,
        "close_range": 436,
        "openat2": 437,
        "open_tree": 428,
        "move_mount": 429,
        "mount_setattr": 442,
        "keyctl": 250,
    },
    "aarch64": {
        "pivot_root": 41,
        "ioprio_set": 30,
        "sched_setattr": 274,
        "pidfd_send_signal": 424,
        "pidfd_open": 434,
        "close_range": 436,
        "openat2": 437,
        "open_tree": 428,
        "move_mount": 429,
        "mount_setattr": 442,
        "keyctl": 219,
    },
}
_NR = _SYSCALLS.get(os.uname().machine, {})

_c_char_p = ctypes.c_char_p
_c_int = ctypes.c_int
_c_ulong = ctypes.c_ulong
_c_void_p = ctypes.c_void_p

libc.unshare.argtypes = (_c_int,)
libc.setns.argtypes = (_c_int, _c_int)
libc.mount.argtypes = (_c_char_p, _c_char_p, _c_char_p, _c_ulong, _c_char_p)
libc.umount2.argtypes = (_c_char_p, _c_int)
libc.sethostname.argtypes = (_c_char_p, ctypes.c_size_t)
libc.setdomainname.argtypes = (_c_char_p, ctypes.c_size_t)
libc.prctl.argtypes = (_c_int, _c_ulong, _c_ulong, _c_ulong, _c_ulong)
libc.capget.argtypes = (_c_void_p, _c_void_p)
libc.capset.argtypes = (_c_void_p, _c_void_p)
libc.personality.argtypes = (_c_ulong,)
libc.fstatfs.argtypes = (_c_int, _c_void_p)
libc.syscall.restype = ctypes.c_long


def _err(call: str, target: str | None = None) -> SyscallError:
    return SyscallError(call, target, ctypes.get_errno())


def _b(s: str | None) -> bytes | None:
    return None if s is None else os.fsencode(s)


def _syscall(name: str, *args: object) -> int:
    """Call a syscall by name through libc.syscall(); ENOSYS when this arch has no number for it."""
    nr = _NR.get(name)
    if nr is None:
        ctypes.set_errno(38)  # ENOSYS
        return -1
    return int(libc.syscall(ctypes.c_long(nr), *args))


# --- namespaces -----------------------------------------------------------------------------------
def unshare(flags: int) -> None:
    if libc.unshare(flags) < 0:
        raise _err("unshare")


def setns(fd: int, nstype: int, target: str | None = None) -> None:
    if libc.setns(fd, nstype) < 0:
        raise _err("setns", target)


def sethostname(name: str) -> None:
    b = name.encode()
    if libc.sethostname(b, len(b)) < 0:
        raise _err("sethostname", name)


def setdomainname(name: str) -> None:
    b = name.encode()
    if libc.setdomainname(b, len(b)) < 0:
        raise _err("setdomainname", name)


# --- mounts ---------------------------------------------------------------------------------------
def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    if libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)) < 0:
        raise _err("mount", target)


def umount2(target: str, flags: int = 0) -> None:
    if libc.umount2(_b(target), flags) < 0:
        raise _err("umount2", target)


def pivot_root(new_root: str, put_old: str) -> None:
    if _syscall("pivot_root", _b(new_root), _b(put_old)) < 0:
        raise _err("pivot_root", new_root)


class _OpenHow(ctypes.Structure):
    _fields_ = (("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64))


def openat2(dirfd: int, path: str, flags: int, mode: int = 0, resolve: int = 0) -> int:
    """openat2(2); raises SyscallError with errno ENOSYS on kernels before 5.6 (callers fall back)."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    fd = _syscall(
        "openat2",
        _c_int(dirfd),
        _b(path),
        ctypes.byref(how),
        ctypes.c_size_t(ctypes.sizeof(how)),
    )
    if fd < 0:
        raise _err("openat2", path)
    return fd


# include/uapi/linux/mount.h, include/uapi/linux/fcntl.h
OPEN_TREE_CLONE = 1
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
MOUNT_ATTR_IDMAP = 0x00100000
MOVE_MOUNT_F_EMPTY_PATH = 0x04
MOVE_MOUNT_T_EMPTY_PATH = 0x40
AT_FDCWD = -100


class _MountAttr(ctypes.Structure):
    """struct mount_attr (MOUNT_ATTR_SIZE_VER0, 32 bytes)."""

    _fields_ = (
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    )


def open_tree(dirfd: int, path: str, flags: int) -> int:
    fd = _syscall("open_tree", _c_int(dirfd), _b(path), ctypes.c_uint(flags))
    if fd < 0:
        raise _err("open_tree", path)
    return fd


def mount_setattr(fd: int, path: str, flags: int, *, attr_set: int = 0, userns_fd: int = 0) -> None:
    attr = _MountAttr(attr_set=attr_set, userns_fd=userns_fd)
    size = ctypes.c_size_t(ctypes.sizeof(attr))
    if _syscall("mount_setattr", _c_int(fd), _b(path), ctypes.c_uint(flags), ctypes.byref(attr), size) < 0:
        raise _err("mount_setattr", path or None)


def move_mount(from_fd: int, from_path: str, to_fd: int, to_path: str, flags: int, target: str) -> None:
    """move_mount(2); `target` names the destination in the error."""
    args = (_c_int(from_fd), _b(from_path), _c_int(to_fd), _b(to_path), ctypes.c_uint(flags))
    if _syscall("move_mount", *args) < 0:
        raise _err("move_mount", target)


def fstatfs_type(fd: int) -> int:
    """f_type of fstatfs(2): the first `long` of struct statfs on x86_64 and aarch64."""
    buf = (ctypes.c_long * 32)()
    if libc.fstatfs(fd, buf) < 0:
        raise _err("fstatfs")
    return int(buf[0]) & 0xFFFFFFFF


# --- process attributes ---------------------------------------------------------------------------
def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    r = int(libc.prctl(option, arg2, arg3, arg4, arg5))
    if r < 0:
        raise _err("prctl", str(option))
    return r


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


def capget(pid: int = 0) -> tuple[int, int, int]:
    """(effective, permitted, inheritable) as 64-bit masks."""
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, pid)
    data = (_CapData * 2)()
    if libc.capget(ctypes.byref(hdr), data) < 0:
        raise _err("capget")
    return (
        data[0].effective | data[1].effective << 32,
        data[0].permitted | data[1].permitted << 32,
        data[0].inheritable | data[1].inheritable << 32,
    )


def capset(effective: int, permitted: int, inheritable: int) -> None:
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    m = 0xFFFFFFFF
    data[0].effective, data[1].effective = effective & m, effective >> 32 & m
    data[0].permitted, data[1].permitted = permitted & m, permitted >> 32 & m
    data[0].inheritable, data[1].inheritable = inheritable & m, inheritable >> 32 & m
    if libc.capset(ctypes.byref(hdr), data) < 0:
        raise _err("capset")


def setresuid(ruid: int, euid: int, suid: int) -> None:
    try:
        os.setresuid(ruid, euid, suid)
    except OSError as e:
        raise SyscallError("setresuid", str(euid), e.errno or 1) from e


def setresgid(rgid: int, egid: int, sgid: int) -> None:
    try:
        os.setresgid(rgid, egid, sgid)
    except OSError as e:
        raise SyscallError("setresgid", str(egid), e.errno or 1) from e


def setgroups(groups: list[int]) -> None:
    try:
        os.setgroups(groups)
    except OSError as e:
        raise SyscallError("setgroups", ",".join(map(str, groups)), e.errno or 1) from e


def personality(persona: int) -> int:
    r = int(libc.personality(persona))
    if r < 0:
        raise _err("personality", hex(persona))
    return r


def ioprio_set(which: int, who: int, ioprio: int) -> None:
    if _syscall("ioprio_set", _c_int(which), _c_int(who), _c_int(ioprio)) < 0:
        raise _err("ioprio_set", str(ioprio))


class _SchedAttr(ctypes.Structure):
    # include/uapi/linux/sched/types.h, SCHED_ATTR_SIZE_VER0 (48 bytes)
    _fields_ = (
        ("size", ctypes.c_uint32),
        ("sched_policy", ctypes.c_uint32),
        ("sched_flags", ctypes.c_uint64),
        ("sched_nice", ctypes.c_int32),
        ("sched_priority", ctypes.c_uint32),
        ("sched_runtime", ctypes.c_uint64),
        ("sched_deadline", ctypes.c_uint64),
        ("sched_period", ctypes.c_uint64),
    )


def sched_setattr(
    pid: int,
    policy: int,
    *,
    flags: int = 0,
    nice: int = 0,
    priority: int = 0,
    runtime: int = 0,
    deadline: int = 0,
    period: int = 0,
) -> None:
    attr = _SchedAttr(ctypes.sizeof(_SchedAttr), policy, flags, nice, priority, runtime, deadline, period)
    if _syscall("sched_setattr", _c_int(pid), ctypes.byref(attr), ctypes.c_uint(0)) < 0:
        raise _err("sched_setattr", str(policy))


def pidfd_open(pid: int, flags: int = 0) -> int:
    fd = _syscall("pidfd_open", _c_int(pid), ctypes.c_uint(flags))
    if fd < 0:
        raise _err("pidfd_open", str(pid))
    return fd


def pidfd_send_signal(pidfd: int, sig: int, flags: int = 0) -> None:
    if _syscall("pidfd_send_signal", _c_int(pidfd), _c_int(sig), _c_void_p(None), ctypes.c_uint(flags)) < 0:
        raise _err("pidfd_send_signal", str(sig))


def close_range(first: int, last: int, flags: int = 0) -> None:
    """close_range(2) (Linux 5.9); `last` is clamped to UINT_MAX."""
    last = min(last, 0xFFFFFFFF)
    if _syscall("close_range", ctypes.c_uint(first), ctypes.c_uint(last), ctypes.c_uint(flags)) < 0:
        raise _err("close_range", f"{first}-{last}")


class _IfreqFlags(ctypes.Structure):
    # struct ifreq with the ifr_flags member of its union (40 bytes on 64-bit)
    _fields_ = (("name", ctypes.c_char * 16), ("flags", ctypes.c_short), ("pad", ctypes.c_char * 22))


libc.socket.argtypes = (_c_int, _c_int, _c_int)
libc.ioctl.argtypes = (_c_int, _c_ulong, _c_void_p)
libc.close.argtypes = (_c_int,)


def set_link_up(name: str) -> None:
    """SIOCGIFFLAGS + SIOCSIFFLAGS(|IFF_UP) on an AF_INET datagram socket."""
    fd = libc.socket(2, 2 | os.O_CLOEXEC, 0)  # AF_INET, SOCK_DGRAM | SOCK_CLOEXEC
    if fd < 0:
        raise _err("socket", name)
    try:
        ifr = _IfreqFlags(name.encode(), 0)
        if libc.ioctl(fd, SIOCGIFFLAGS, ctypes.byref(ifr)) < 0:
            raise _err("ioctl SIOCGIFFLAGS", name)
        if not ifr.flags & IFF_UP:
            ifr.flags |= IFF_UP
            if libc.ioctl(fd, SIOCSIFFLAGS, ctypes.byref(ifr)) < 0:
                raise _err("ioctl SIOCSIFFLAGS", name)
    finally:
        libc.close(fd)


def keyctl(op: int, arg2: int | bytes | None = 0, arg3: int | bytes | None = 0) -> int:
    """keyctl(2) with up to two arguments (ints or byte strings)."""

    def conv(a: int | bytes | None) -> object:
        return ctypes.c_char_p(a) if isinstance(a, bytes) or a is None else ctypes.c_long(a)

    r = _syscall("keyctl", _c_int(op), conv(arg2), conv(arg3))
    if r < 0:
        raise _err("keyctl", str(op))
    return r


def keyctl_describe(key: int) -> bytes | None:
    """KEYCTL_DESCRIBE: "type;uid;gid;perm;description" of `key`, None when it fails."""
    buf = ctypes.create_string_buffer(512)
    args = (_c_int(KEYCTL_DESCRIBE), ctypes.c_long(key), buf, ctypes.c_long(len(buf)))
    if _syscall("keyctl", *args) < 0:
        return None
    return buf.value
