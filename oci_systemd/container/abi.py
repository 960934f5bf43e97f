# SPDX-License-Identifier: Apache-2.0
"""The names config.json gives kernel values, and the values: the tables the container side
implements, which spec validation accepts and `oci-systemd features` reports.

One table per fact, in a module that imports nothing: `process.py` maps through these tables,
`oci_systemd.runtime.spec` accepts exactly their keys and `runtime/features.py` lists them, so
the three cannot disagree (tests/unit/test_tables.py). The values are the kernel's (uapi headers
named below); keeping them here rather than behind `linux.py` keeps `create` from importing
ctypes (~5 ms) just to validate a config. linux.py's constants of the same names must agree
(the test checks).
"""

from __future__ import annotations

# include/uapi/linux/capability.h, in number order up to CAP_LAST_CAP of Linux 5.9+.
CAPABILITIES: dict[str, int] = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_DAC_READ_SEARCH": 2,
    "CAP_FOWNER": 3,
    "CAP_FSETID": 4,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9,
    "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12,
    "CAP_NET_RAW": 13,
    "CAP_IPC_LOCK": 14,
    "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16,
    "CAP_SYS_RAWIO": 17,
    "CAP_SYS_CHROOT": 18,
    "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20,
    "CAP_SYS_ADMIN": 21,
    "CAP_SYS_BOOT": 22,
    "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24,
    "CAP_SYS_TIME": 25,
    "CAP_SYS_TTY_CONFIG": 26,
    "CAP_MKNOD": 27,
    "CAP_LEASE": 28,
    "CAP_AUDIT_WRITE": 29,
    "CAP_AUDIT_CONTROL": 30,
    "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32,
    "CAP_MAC_ADMIN": 33,
    "CAP_SYSLOG": 34,
    "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36,
    "CAP_AUDIT_READ": 37,
    "CAP_PERFMON": 38,
    "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}

# include/uapi/asm-generic/resource.h
RLIMITS: dict[str, int] = {
    "RLIMIT_CPU": 0,
    "RLIMIT_FSIZE": 1,
    "RLIMIT_DATA": 2,
    "RLIMIT_STACK": 3,
    "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5,
    "RLIMIT_NPROC": 6,
    "RLIMIT_NOFILE": 7,
    "RLIMIT_MEMLOCK": 8,
    "RLIMIT_AS": 9,
    "RLIMIT_LOCKS": 10,
    "RLIMIT_SIGPENDING": 11,
    "RLIMIT_MSGQUEUE": 12,
    "RLIMIT_NICE": 13,
    "RLIMIT_RTPRIO": 14,
    "RLIMIT_RTTIME": 15,
}

# include/uapi/linux/ioprio.h
IOPRIO_CLASSES: dict[str, int] = {"IOPRIO_CLASS_RT": 1, "IOPRIO_CLASS_BE": 2, "IOPRIO_CLASS_IDLE": 3}

# include/uapi/linux/sched.h: policies, and the sched_attr flags
SCHED_POLICIES: dict[str, int] = {
    "SCHED_OTHER": 0,
    "SCHED_FIFO": 1,
    "SCHED_RR": 2,
    "SCHED_BATCH": 3,
    "SCHED_ISO": 4,
    "SCHED_IDLE": 5,
    "SCHED_DEADLINE": 6,
}
SCHED_FLAGS: dict[str, int] = {
    "SCHED_FLAG_RESET_ON_FORK": 0x01,
    "SCHED_FLAG_RECLAIM": 0x02,
    "SCHED_FLAG_DL_OVERRUN": 0x04,
    "SCHED_FLAG_KEEP_POLICY": 0x08,
    "SCHED_FLAG_KEEP_PARAMS": 0x10,
    "SCHED_FLAG_UTIL_CLAMP_MIN": 0x20,
    "SCHED_FLAG_UTIL_CLAMP_MAX": 0x40,
}

# include/uapi/linux/personality.h (PER_LINUX, PER_LINUX32): the domains runtime-spec names
PERSONALITY_DOMAINS: dict[str, int] = {"LINUX": 0x0000, "LINUX32": 0x0008}

# config-linux.md namespace types: namespaces.NAMESPACE_FLAGS maps each to its clone flag
# (that module needs ctypes; the test keeps the two key sets equal).
NAMESPACE_TYPES: tuple[str, ...] = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")

# linux.rootfsPropagation: runtime-spec 1.2 lists the first four; runc and crun also take
# mount(8)'s recursive forms. mounts.PROPAGATION_FLAGS maps each to its MS_* flags.
ROOTFS_PROPAGATIONS: tuple[str, ...] = (
    "private", "shared", "slave", "unbindable", "rprivate", "rshared", "rslave", "runbindable",
)  # fmt: skip
