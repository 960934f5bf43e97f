# SPDX-License-Identifier: Apache-2.0
"""config.json (OCI runtime-spec 1.2) parsed into frozen records, validated on the way in.

Every problem is a `SpecError` naming the JSON path of the offending field
(`linux.namespaces[2].type`), so a user can find it without reading our code.
Unknown fields are ignored, as runtime-spec requires. The module is pure: the
only I/O is `load()` reading `bundle/config.json`. Keep it import-light: the
runtime parses the spec on every `create`.
"""

from __future__ import annotations

import os

from oci_systemd import jsonio
from oci_systemd.errors import SpecError
from oci_systemd.runtime.records import field, record

# create imports this module: typing, re and json (~9 ms) stay out of it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Final, TypeVar

    T = TypeVar("T")

U16_MAX: Final = 2**16 - 1
U32_MAX: Final = 2**32 - 1
U64_MAX: Final = 2**64 - 1
I32_MIN: Final = -(2**31)
I32_MAX: Final = 2**31 - 1
I64_MIN: Final = -(2**63)
I64_MAX: Final = 2**63 - 1

NAMESPACE_TYPES: Final = frozenset({"pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time"})

# Linux capability names up to CAP_CHECKPOINT_RESTORE (40), from linux/capability.h, in number order.
CAPABILITY_NAMES: Final = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)  # fmt: skip
CAPABILITIES: Final = frozenset(CAPABILITY_NAMES)
CAPABILITY_SETS: Final = ("bounding", "effective", "inheritable", "permitted", "ambient")

RLIMITS: Final = frozenset(
    {
        "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE", "RLIMIT_RSS",
        "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS", "RLIMIT_LOCKS",
        "RLIMIT_SIGPENDING", "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_RTPRIO", "RLIMIT_RTTIME",
    }
)  # fmt: skip

# runtime-spec 1.2 lists the first four; runc and crun also take mount(8)'s recursive forms.
ROOTFS_PROPAGATIONS: Final = frozenset(
    {"private", "shared", "slave", "unbindable", "rprivate", "rshared", "rslave", "runbindable"}
)
IOPRIO_CLASSES: Final = frozenset({"IOPRIO_CLASS_RT", "IOPRIO_CLASS_BE", "IOPRIO_CLASS_IDLE"})
SCHED_POLICIES: Final = frozenset(
    {"SCHED_OTHER", "SCHED_FIFO", "SCHED_RR", "SCHED_BATCH", "SCHED_ISO", "SCHED_IDLE", "SCHED_DEADLINE"}
)
SCHED_FLAGS: Final = frozenset(
    {
        "SCHED_FLAG_RESET_ON_FORK", "SCHED_FLAG_RECLAIM", "SCHED_FLAG_DL_OVERRUN",
        "SCHED_FLAG_KEEP_POLICY", "SCHED_FLAG_KEEP_PARAMS", "SCHED_FLAG_UTIL_CLAMP_MIN",
        "SCHED_FLAG_UTIL_CLAMP_MAX",
    }
)  # fmt: skip
SECCOMP_ACTIONS: Final = frozenset(
    {
        "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
        "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY",
    }
)  # fmt: skip
SECCOMP_HANDOVER_SYSCALL: Final = "sendmsg"  # how the idler sends the notify fd out
SECCOMP_FLAGS: Final = frozenset(
    {
        "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
    }
)  # fmt: skip
SECCOMP_OPERATORS: Final = frozenset(
    {
        "SCMP_CMP_NE",
        "SCMP_CMP_LT",
        "SCMP_CMP_LE",
        "SCMP_CMP_EQ",
        "SCMP_CMP_GE",
        "SCMP_CMP_GT",
        "SCMP_CMP_MASKED_EQ",
    }
)
SECCOMP_ARCHES: Final = frozenset(
    {
        "SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64",
        "SCMP_ARCH_LOONGARCH64", "SCMP_ARCH_M68K", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64",
        "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32",
        "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X",
        "SCMP_ARCH_SH", "SCMP_ARCH_SHEB", "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64",
    }
)  # fmt: skip
PERSONALITY_DOMAINS: Final = frozenset({"LINUX", "LINUX32"})
MEMORY_POLICY_MODES: Final = frozenset(
    {
        "MPOL_DEFAULT", "MPOL_BIND", "MPOL_INTERLEAVE", "MPOL_WEIGHTED_INTERLEAVE", "MPOL_PREFERRED",
        "MPOL_PREFERRED_MANY", "MPOL_LOCAL",
    }
)  # fmt: skip
MEMORY_POLICY_FLAGS: Final = frozenset(
    {"MPOL_F_NUMA_BALANCING", "MPOL_F_RELATIVE_NODES", "MPOL_F_STATIC_NODES"}
)

# runtime-spec follows semver; we implement 1.x and refuse a future 2.0 rather than misread it.
# Checks below are str methods, not `re` (~4 ms to import): ASCII only, and strip(chars) is
# empty exactly when every character is one of `chars`.
_DIGITS: Final = "0123456789"
_ALNUM: Final = _DIGITS + "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _is_v1_version(version: str) -> bool:
    """fullmatch of 1\\.[0-9]+(\\.[0-9]+)?([-+][0-9A-Za-z.+-]*)?"""
    if not version.startswith("1.") or not version.isascii():
        return False
    rest = version[2:]
    cut = min((i for i in (rest.find("-"), rest.find("+")) if i >= 0), default=len(rest))
    core, suffix = rest[:cut], rest[cut + 1 :]
    numbers = core.split(".")
    if not 1 <= len(numbers) <= 2 or not all(n and not n.strip(_DIGITS) for n in numbers):
        return False
    return not suffix.strip(_ALNUM + ".+-")


def _is_hugepage_size(size: str) -> bool:
    """fullmatch of [1-9][0-9]*[KMG]B"""
    number = size[:-2]
    return (
        size.endswith(("KB", "MB", "GB")) and bool(number) and not number.strip(_DIGITS) and number[0] != "0"
    )


# ----------------------------------------------------------------------------------------------
# The records (records.py: like frozen dataclasses, cheaper to import). Field names are the
# JSON names in snake_case; optional objects are None when absent, lists are tuples (empty
# when absent), and maps are dicts.


@record
class User:
    uid: int
    gid: int
    umask: int | None = None
    additional_gids: tuple[int, ...] = ()
    username: str | None = None


@record
class Capabilities:
    bounding: tuple[str, ...] = ()
    effective: tuple[str, ...] = ()
    inheritable: tuple[str, ...] = ()
    permitted: tuple[str, ...] = ()
    ambient: tuple[str, ...] = ()


@record
class Rlimit:
    type: str
    soft: int
    hard: int


@record
class ConsoleSize:
    height: int
    width: int


@record
class IOPriority:
    class_: str
    priority: int = 0


@record
class Scheduler:
    policy: str
    nice: int = 0
    priority: int = 0
    flags: tuple[str, ...] = ()
    runtime: int = 0
    deadline: int = 0
    period: int = 0


@record
class ExecCPUAffinity:
    initial: str | None = None
    final: str | None = None


@record
class Process:
    args: tuple[str, ...]
    cwd: str
    user: User = field(default_factory=lambda: User(uid=0, gid=0))
    env: tuple[str, ...] = ()
    terminal: bool = False
    console_size: ConsoleSize | None = None
    command_line: str | None = None
    capabilities: Capabilities | None = None
    rlimits: tuple[Rlimit, ...] = ()
    no_new_privileges: bool = False
    apparmor_profile: str | None = None
    selinux_label: str | None = None
    oom_score_adj: int | None = None
    io_priority: IOPriority | None = None
    scheduler: Scheduler | None = None
    exec_cpu_affinity: ExecCPUAffinity | None = None


@record
class Root:
    path: str
    readonly: bool = False


@record
class IDMapping:
    container_id: int
    host_id: int
    size: int


@record
class Mount:
    destination: str
    type: str | None = None
    source: str | None = None
    options: tuple[str, ...] = ()
    uid_mappings: tuple[IDMapping, ...] = ()
    gid_mappings: tuple[IDMapping, ...] = ()


@record
class Hook:
    path: str
    args: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    timeout: int | None = None


@record
class Hooks:
    prestart: tuple[Hook, ...] = ()
    create_runtime: tuple[Hook, ...] = ()
    create_container: tuple[Hook, ...] = ()
    start_container: tuple[Hook, ...] = ()
    poststart: tuple[Hook, ...] = ()
    poststop: tuple[Hook, ...] = ()


@record
class Namespace:
    type: str
    path: str | None = None


@record
class Device:
    type: str
    path: str
    major: int | None = None
    minor: int | None = None
    file_mode: int | None = None
    uid: int | None = None
    gid: int | None = None


@record
class DeviceRule:
    """One `linux.resources.devices` entry; None major/minor/type mean "any"."""

    allow: bool
    type: str | None = None
    major: int | None = None
    minor: int | None = None
    access: str | None = None


@record
class Memory:
    limit: int | None = None
    reservation: int | None = None
    swap: int | None = None
    kernel: int | None = None
    kernel_tcp: int | None = None
    swappiness: int | None = None
    disable_oom_killer: bool | None = None
    use_hierarchy: bool | None = None
    check_before_update: bool | None = None


@record
class CPU:
    shares: int | None = None
    quota: int | None = None
    burst: int | None = None
    period: int | None = None
    realtime_runtime: int | None = None
    realtime_period: int | None = None
    cpus: str | None = None
    mems: str | None = None
    idle: int | None = None


@record
class Pids:
    # Required in 1.2's schema, optional since 1.3: None means "no limit".
    limit: int | None = None


@record
class WeightDevice:
    major: int
    minor: int
    weight: int | None = None
    leaf_weight: int | None = None


@record
class ThrottleDevice:
    major: int
    minor: int
    rate: int = 0


@record
class BlockIO:
    weight: int | None = None
    leaf_weight: int | None = None
    weight_device: tuple[WeightDevice, ...] = ()
    throttle_read_bps_device: tuple[ThrottleDevice, ...] = ()
    throttle_write_bps_device: tuple[ThrottleDevice, ...] = ()
    throttle_read_iops_device: tuple[ThrottleDevice, ...] = ()
    throttle_write_iops_device: tuple[ThrottleDevice, ...] = ()


@record
class HugepageLimit:
    page_size: str
    limit: int


@record
class NetworkPriority:
    name: str
    priority: int


@record
class Network:
    class_id: int | None = None
    priorities: tuple[NetworkPriority, ...] = ()


@record
class Rdma:
    hca_handles: int | None = None
    hca_objects: int | None = None


@record
class Resources:
    devices: tuple[DeviceRule, ...] = ()
    memory: Memory | None = None
    cpu: CPU | None = None
    pids: Pids | None = None
    block_io: BlockIO | None = None
    hugepage_limits: tuple[HugepageLimit, ...] = ()
    network: Network | None = None
    rdma: dict[str, Rdma] = field(default_factory=dict)
    unified: dict[str, str] = field(default_factory=dict)


@record
class SeccompArg:
    index: int
    value: int
    op: str
    value_two: int = 0


@record
class Syscall:
    names: tuple[str, ...]
    action: str
    errno_ret: int | None = None
    args: tuple[SeccompArg, ...] = ()


@record
class Seccomp:
    default_action: str
    default_errno_ret: int | None = None
    architectures: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    listener_path: str | None = None
    listener_metadata: str | None = None
    syscalls: tuple[Syscall, ...] = ()


@record
class IntelRdt:
    clos_id: str | None = None
    l3_cache_schema: str | None = None
    mem_bw_schema: str | None = None
    schemata: tuple[str, ...] = ()
    enable_cmt: bool = False
    enable_mbm: bool = False
    enable_monitoring: bool = False


@record
class Personality:
    domain: str
    flags: tuple[str, ...] = ()


@record
class TimeOffset:
    secs: int = 0
    nanosecs: int = 0


@record
class TimeOffsets:
    boottime: TimeOffset | None = None
    monotonic: TimeOffset | None = None


@record
class NetDevice:
    name: str | None = None


@record
class MemoryPolicy:
    mode: str
    nodes: str | None = None
    flags: tuple[str, ...] = ()


@record
class Linux:
    namespaces: tuple[Namespace, ...] = ()
    uid_mappings: tuple[IDMapping, ...] = ()
    gid_mappings: tuple[IDMapping, ...] = ()
    devices: tuple[Device, ...] = ()
    net_devices: dict[str, NetDevice] = field(default_factory=dict)
    cgroups_path: str | None = None
    resources: Resources | None = None
    rootfs_propagation: str | None = None
    seccomp: Seccomp | None = None
    sysctl: dict[str, str] = field(default_factory=dict)
    masked_paths: tuple[str, ...] = ()
    readonly_paths: tuple[str, ...] = ()
    mount_label: str | None = None
    intel_rdt: IntelRdt | None = None
    personality: Personality | None = None
    time_offsets: TimeOffsets | None = None
    memory_policy: MemoryPolicy | None = None

    def namespace(self, type_: str) -> Namespace | None:
        """The entry for `type_` ("pid", "network", ...), or None when the container shares the host's."""
        return next((ns for ns in self.namespaces if ns.type == type_), None)

    def has_namespace(self, type_: str) -> bool:
        return self.namespace(type_) is not None


@record
class Spec:
    oci_version: str
    root: Root | None = None
    mounts: tuple[Mount, ...] = ()
    process: Process | None = None
    hostname: str | None = None
    domainname: str | None = None
    hooks: Hooks | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    linux: Linux | None = None


# ----------------------------------------------------------------------------------------------
# Typed access to untrusted JSON. Each helper takes the JSON path so errors can name the field.


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _key_path(base: str, key: str) -> str:
    # Map keys are user data (annotation names, sysctls) and may contain dots; quote those.
    if key.isascii() and key.isidentifier():  # [A-Za-z_][A-Za-z0-9_]*
        return f"{base}.{key}" if base else key
    return f"{base}[{jsonio.dumps(key)}]"


def _as_str(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise SpecError(path, f"expected a string, got {_type_name(value)}")
    # A NUL would be truncated by every C API the string ends up in (paths, argv, env).
    if "\0" in value:
        raise SpecError(path, "must not contain a NUL byte")
    return value


def _as_int(value: object, path: str, lo: int, hi: int) -> int:
    # bool is an int subclass in Python but not a JSON number; floats are refused like Go's decoder does.
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(path, f"expected an integer, got {_type_name(value)}")
    if not lo <= value <= hi:
        raise SpecError(path, f"{value} is out of range [{lo}, {hi}]")
    return value


def _as_bool(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise SpecError(path, f"expected a boolean, got {_type_name(value)}")
    return value


def _as_list(value: object, path: str) -> list[object]:
    if not isinstance(value, list):
        raise SpecError(path, f"expected an array, got {_type_name(value)}")
    return value


def _as_obj(value: object, path: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise SpecError(path, f"expected an object, got {_type_name(value)}")
    return value


def _abs_path(value: object, path: str) -> str:
    s = _as_str(value, path)
    if not s.startswith("/"):
        raise SpecError(path, f"must be an absolute path, got {s!r}")
    return s


def _enum(value: object, path: str, allowed: frozenset[str], what: str) -> str:
    s = _as_str(value, path)
    if s not in allowed:
        raise SpecError(path, f"unknown {what} {jsonio.dumps(s)}")
    return s


class _Obj:
    """A JSON object at `path`: getters check type and range and return None for absent keys.

    A JSON null is treated as absent, because Go-based generators emit it for nil pointers.
    """

    __slots__ = ("d", "path")

    def __init__(self, raw: object, path: str) -> None:
        self.d = _as_obj(raw, path)
        self.path = path

    def at(self, key: str) -> str:
        return _key_path(self.path, key)

    def has(self, key: str) -> bool:
        return self.d.get(key) is not None

    def required(self, key: str) -> object:
        value = self.d.get(key)
        if value is None:
            raise SpecError(self.at(key), "required field missing")
        return value

    def req_str(self, key: str) -> str:
        return _as_str(self.required(key), self.at(key))

    def opt_str(self, key: str) -> str | None:
        return _as_str(self.d[key], self.at(key)) if self.has(key) else None

    def req_int(self, key: str, lo: int, hi: int) -> int:
        return _as_int(self.required(key), self.at(key), lo, hi)

    def opt_int(self, key: str, lo: int, hi: int) -> int | None:
        return _as_int(self.d[key], self.at(key), lo, hi) if self.has(key) else None

    def opt_bool(self, key: str) -> bool | None:
        return _as_bool(self.d[key], self.at(key)) if self.has(key) else None

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.opt_bool(key)
        return default if value is None else value

    def req_enum(self, key: str, allowed: frozenset[str], what: str) -> str:
        return _enum(self.required(key), self.at(key), allowed, what)

    def opt_enum(self, key: str, allowed: frozenset[str], what: str) -> str | None:
        return _enum(self.d[key], self.at(key), allowed, what) if self.has(key) else None

    def obj(self, key: str) -> _Obj | None:
        return _Obj(self.d[key], self.at(key)) if self.has(key) else None

    def req_obj(self, key: str) -> _Obj:
        return _Obj(self.required(key), self.at(key))

    def items(self, key: str, parse: Callable[[object, str], T]) -> tuple[T, ...]:
        if not self.has(key):
            return ()
        base = self.at(key)
        return tuple(parse(item, f"{base}[{i}]") for i, item in enumerate(_as_list(self.d[key], base)))

    def strs(self, key: str) -> tuple[str, ...]:
        return self.items(key, _as_str)

    def str_map(self, key: str) -> dict[str, str]:
        return self.obj_map(key, _as_str)

    def obj_map(self, key: str, parse: Callable[[object, str], T]) -> dict[str, T]:
        sub = self.obj(key)
        if sub is None:
            return {}
        out: dict[str, T] = {}
        for k, v in sub.d.items():
            if k == "":
                raise SpecError(sub.path, "keys must not be empty")
            if "\0" in k:
                raise SpecError(sub.path, f"key {k!r} must not contain a NUL byte")
            out[k] = parse(v, sub.at(k))
        return out


# ----------------------------------------------------------------------------------------------
# Parsers, one per object type, in the order of config.md.


def _parse_user(raw: object, path: str) -> User:
    o = _Obj(raw, path)
    return User(
        uid=o.req_int("uid", 0, U32_MAX),
        gid=o.req_int("gid", 0, U32_MAX),
        umask=o.opt_int("umask", 0, U32_MAX),
        additional_gids=o.items("additionalGids", lambda v, p: _as_int(v, p, 0, U32_MAX)),
        username=o.opt_str("username"),
    )


def _capability(value: object, path: str) -> str:
    # Any name: runtime-spec 1.2 says an unknown or ungrantable capability is logged as a warning
    # (capability_warnings) and SHOULD NOT fail; process.cap_mask() leaves such names out.
    return _as_str(value, path)


def capability_warnings(
    caps: Capabilities | None, *, last_cap: int, path: str = "process.capabilities"
) -> list[str]:
    """One warning per capability of `caps` that is unknown or above the kernel's `last_cap`."""
    if caps is None:
        return []
    sets: dict[str, list[str]] = {}
    for kind in CAPABILITY_SETS:
        for name in getattr(caps, kind):
            key = _capability_key(name)
            if key not in CAPABILITIES or CAPABILITY_NAMES.index(key) > last_cap:
                sets.setdefault(name, []).append(kind)
    return [
        f"{path}: {_capability_problem(name)} {jsonio.dumps(name)} ignored (in {', '.join(kinds)})"
        for name, kinds in sets.items()
    ]


def _capability_key(name: str) -> str:
    """The name as process.cap_mask() reads it: any case, "CAP_" optional."""
    upper = name.upper()
    return upper if upper.startswith("CAP_") else f"CAP_{upper}"


def _capability_problem(name: str) -> str:
    return (
        "capability unknown to this kernel"
        if _capability_key(name) in CAPABILITIES
        else "unknown capability"
    )


def _parse_capabilities(raw: object, path: str) -> Capabilities:
    o = _Obj(raw, path)
    return Capabilities(
        bounding=o.items("bounding", _capability),
        effective=o.items("effective", _capability),
        inheritable=o.items("inheritable", _capability),
        permitted=o.items("permitted", _capability),
        ambient=o.items("ambient", _capability),
    )


def _parse_rlimit(raw: object, path: str) -> Rlimit:
    o = _Obj(raw, path)
    type_ = o.req_str("type")
    if type_ not in RLIMITS:
        raise SpecError(o.at("type"), f"unknown rlimit type {jsonio.dumps(type_)}")
    soft = o.req_int("soft", 0, U64_MAX)
    hard = o.req_int("hard", 0, U64_MAX)
    # setrlimit(2) fails with EINVAL on soft > hard; say so before anything is created.
    if soft > hard:
        raise SpecError(o.at("soft"), f"soft limit {soft} exceeds hard limit {hard}")
    return Rlimit(type=type_, soft=soft, hard=hard)


def _env_entry(value: object, path: str) -> str:
    s = _as_str(value, path)
    name, eq, _ = s.partition("=")
    if not eq:
        raise SpecError(path, f"expected KEY=VALUE, got {s!r}")
    if not name:
        raise SpecError(path, "environment variable name must not be empty")
    return s


def _parse_console_size(raw: object, path: str) -> ConsoleSize:
    o = _Obj(raw, path)
    # TIOCSWINSZ takes unsigned shorts; a larger size cannot be applied.
    return ConsoleSize(height=o.req_int("height", 0, U16_MAX), width=o.req_int("width", 0, U16_MAX))


def _parse_scheduler(raw: object, path: str) -> Scheduler:
    o = _Obj(raw, path)
    return Scheduler(
        policy=o.req_enum("policy", SCHED_POLICIES, "scheduler policy"),
        nice=o.opt_int("nice", -20, 19) or 0,
        priority=o.opt_int("priority", I32_MIN, I32_MAX) or 0,
        flags=o.items("flags", lambda v, p: _enum(v, p, SCHED_FLAGS, "scheduler flag")),
        runtime=o.opt_int("runtime", 0, U64_MAX) or 0,
        deadline=o.opt_int("deadline", 0, U64_MAX) or 0,
        period=o.opt_int("period", 0, U64_MAX) or 0,
    )


def _cpu_list(value: object, path: str) -> str:
    s = _as_str(value, path)
    if s.strip(_DIGITS + ", -"):  # [0-9, -]*
        raise SpecError(path, f'expected a CPU list like "0-3,5", got {s!r}')
    return s


def parse_process(raw: object, path: str = "process") -> Process:
    """Parse a `process` object: config.json's, or the `--process` file of `exec`."""
    o = _Obj(raw, path)
    args = o.strs("args")
    if not args:
        raise SpecError(o.at("args"), "required field missing" if not o.has("args") else "must not be empty")
    rlimits = o.items("rlimits", _parse_rlimit)
    seen: set[str] = set()
    for i, rl in enumerate(rlimits):
        if rl.type in seen:
            raise SpecError(f"{o.at('rlimits')}[{i}].type", f"duplicate rlimit type {rl.type}")
        seen.add(rl.type)
    io = o.obj("ioPriority")
    aff = o.obj("execCPUAffinity")
    return Process(
        args=args,
        cwd=_abs_path(o.required("cwd"), o.at("cwd")),
        user=_parse_user(o.d["user"], o.at("user")) if o.has("user") else User(uid=0, gid=0),
        env=o.items("env", _env_entry),
        terminal=o.flag("terminal"),
        console_size=_parse_console_size(o.d["consoleSize"], o.at("consoleSize"))
        if o.has("consoleSize")
        else None,
        command_line=o.opt_str("commandLine"),
        capabilities=_parse_capabilities(o.d["capabilities"], o.at("capabilities"))
        if o.has("capabilities")
        else None,
        rlimits=rlimits,
        no_new_privileges=o.flag("noNewPrivileges"),
        apparmor_profile=o.opt_str("apparmorProfile"),
        selinux_label=o.opt_str("selinuxLabel"),
        oom_score_adj=o.opt_int("oomScoreAdj", -1000, 1000),
        io_priority=IOPriority(
            class_=io.req_enum("class", IOPRIO_CLASSES, "I/O priority class"),
            # ioprio_set(2) levels are 0 (highest) to 7.
            priority=io.opt_int("priority", 0, 7) or 0,
        )
        if io is not None
        else None,
        scheduler=_parse_scheduler(o.d["scheduler"], o.at("scheduler")) if o.has("scheduler") else None,
        exec_cpu_affinity=ExecCPUAffinity(
            initial=_cpu_list(aff.d["initial"], aff.at("initial")) if aff.has("initial") else None,
            final=_cpu_list(aff.d["final"], aff.at("final")) if aff.has("final") else None,
        )
        if aff is not None
        else None,
    )


def _parse_root(raw: object, path: str) -> Root:
    o = _Obj(raw, path)
    # Relative paths are relative to the bundle and may legitimately leave it ("../rootfs").
    p = o.req_str("path")
    if not p:
        raise SpecError(o.at("path"), "must not be empty")
    return Root(path=p, readonly=o.flag("readonly"))


def _parse_id_mapping(raw: object, path: str) -> IDMapping:
    o = _Obj(raw, path)
    m = IDMapping(
        container_id=o.req_int("containerID", 0, U32_MAX),
        host_id=o.req_int("hostID", 0, U32_MAX),
        size=o.req_int("size", 1, U32_MAX),
    )
    # The kernel refuses ranges that wrap around the 32-bit id space (uid_map EINVAL).
    if m.container_id + m.size - 1 > U32_MAX or m.host_id + m.size - 1 > U32_MAX:
        raise SpecError(o.at("size"), "mapping range exceeds the 32-bit id space")
    return m


def _container_path(value: object, path: str) -> str:
    s = _abs_path(value, path)
    # Destinations are resolved inside the rootfs anyway; ".." only ever means an escape attempt.
    if ".." in s.split("/"):
        raise SpecError(path, f"must not contain '..' components, got {s!r}")
    return s


def _parse_mount(raw: object, path: str) -> Mount:
    o = _Obj(raw, path)
    return Mount(
        destination=_container_path(o.required("destination"), o.at("destination")),
        type=o.opt_str("type"),
        source=o.opt_str("source"),
        options=o.strs("options"),
        uid_mappings=o.items("uidMappings", _parse_id_mapping),
        gid_mappings=o.items("gidMappings", _parse_id_mapping),
    )


def _parse_hook(raw: object, path: str) -> Hook:
    o = _Obj(raw, path)
    return Hook(
        path=_abs_path(o.required("path"), o.at("path")),
        args=o.strs("args"),
        env=o.items("env", _env_entry),
        timeout=o.opt_int("timeout", 1, I64_MAX),
    )


def _parse_hooks(raw: object, path: str) -> Hooks:
    o = _Obj(raw, path)
    return Hooks(
        prestart=o.items("prestart", _parse_hook),
        create_runtime=o.items("createRuntime", _parse_hook),
        create_container=o.items("createContainer", _parse_hook),
        start_container=o.items("startContainer", _parse_hook),
        poststart=o.items("poststart", _parse_hook),
        poststop=o.items("poststop", _parse_hook),
    )


def _parse_namespace(raw: object, path: str) -> Namespace:
    o = _Obj(raw, path)
    type_ = o.req_enum("type", NAMESPACE_TYPES, "namespace type")
    ns_path = _abs_path(o.d["path"], o.at("path")) if o.has("path") else None
    return Namespace(type=type_, path=ns_path or None)


def _parse_device(raw: object, path: str) -> Device:
    o = _Obj(raw, path)
    type_ = o.req_str("type")
    if type_ not in ("c", "b", "u", "p"):
        raise SpecError(o.at("type"), f"unknown device type {jsonio.dumps(type_)} (expected c, b, u or p)")
    dev = Device(
        type=type_,
        path=_container_path(o.required("path"), o.at("path")),
        major=o.opt_int("major", 0, I64_MAX),
        minor=o.opt_int("minor", 0, I64_MAX),
        # Generators differ on whether S_IFMT bits are included; the runtime masks with 0o7777.
        file_mode=o.opt_int("fileMode", 0, U32_MAX),
        uid=o.opt_int("uid", 0, U32_MAX),
        gid=o.opt_int("gid", 0, U32_MAX),
    )
    if type_ != "p":
        for key in ("major", "minor"):
            if not o.has(key):
                raise SpecError(o.at(key), f"required field missing for device type {type_!r}")
    return dev


def _parse_device_rule(raw: object, path: str) -> DeviceRule:
    o = _Obj(raw, path)
    type_ = o.opt_str("type")
    if type_ is not None and type_ not in ("a", "b", "c"):
        raise SpecError(o.at("type"), f"unknown device type {jsonio.dumps(type_)} (expected a, b or c)")
    access = o.opt_str("access")
    if access is not None and (not access or set(access) - set("rwm")):
        raise SpecError(o.at("access"), f"expected a combination of r, w and m, got {access!r}")
    return DeviceRule(
        allow=_as_bool(o.required("allow"), o.at("allow")),
        type=type_,
        # -1 is Go's spelling of the wildcard in some generators.
        major=_wildcard(o.opt_int("major", -1, I64_MAX)),
        minor=_wildcard(o.opt_int("minor", -1, I64_MAX)),
        access=access,
    )


def _wildcard(value: int | None) -> int | None:
    return None if value == -1 else value


def _parse_memory(o: _Obj) -> Memory:
    def mem(key: str) -> int | None:
        # -1 means unlimited; other negatives are meaningless.
        return o.opt_int(key, -1, I64_MAX)

    return Memory(
        limit=mem("limit"),
        reservation=mem("reservation"),
        swap=mem("swap"),
        kernel=mem("kernel"),
        kernel_tcp=mem("kernelTCP"),
        swappiness=o.opt_int("swappiness", 0, U64_MAX),
        disable_oom_killer=o.opt_bool("disableOOMKiller"),
        use_hierarchy=o.opt_bool("useHierarchy"),
        check_before_update=o.opt_bool("checkBeforeUpdate"),
    )


def _parse_cpu(o: _Obj) -> CPU:
    return CPU(
        shares=o.opt_int("shares", 0, U64_MAX),
        quota=o.opt_int("quota", I64_MIN, I64_MAX),
        burst=o.opt_int("burst", 0, U64_MAX),
        period=o.opt_int("period", 0, U64_MAX),
        realtime_runtime=o.opt_int("realtimeRuntime", I64_MIN, I64_MAX),
        realtime_period=o.opt_int("realtimePeriod", 0, U64_MAX),
        cpus=_cpu_list(o.d["cpus"], o.at("cpus")) if o.has("cpus") else None,
        mems=_cpu_list(o.d["mems"], o.at("mems")) if o.has("mems") else None,
        idle=o.opt_int("idle", I64_MIN, I64_MAX),
    )


def _parse_weight_device(raw: object, path: str) -> WeightDevice:
    o = _Obj(raw, path)
    return WeightDevice(
        major=o.req_int("major", 0, I64_MAX),
        minor=o.req_int("minor", 0, I64_MAX),
        weight=o.opt_int("weight", 0, U16_MAX),
        leaf_weight=o.opt_int("leafWeight", 0, U16_MAX),
    )


def _parse_throttle_device(raw: object, path: str) -> ThrottleDevice:
    o = _Obj(raw, path)
    return ThrottleDevice(
        major=o.req_int("major", 0, I64_MAX),
        minor=o.req_int("minor", 0, I64_MAX),
        rate=o.opt_int("rate", 0, U64_MAX) or 0,
    )


def _parse_block_io(o: _Obj) -> BlockIO:
    return BlockIO(
        weight=o.opt_int("weight", 0, U16_MAX),
        leaf_weight=o.opt_int("leafWeight", 0, U16_MAX),
        weight_device=o.items("weightDevice", _parse_weight_device),
        throttle_read_bps_device=o.items("throttleReadBpsDevice", _parse_throttle_device),
        throttle_write_bps_device=o.items("throttleWriteBpsDevice", _parse_throttle_device),
        throttle_read_iops_device=o.items("throttleReadIOPSDevice", _parse_throttle_device),
        throttle_write_iops_device=o.items("throttleWriteIOPSDevice", _parse_throttle_device),
    )


def _parse_hugepage_limit(raw: object, path: str) -> HugepageLimit:
    o = _Obj(raw, path)
    size = o.req_str("pageSize")
    if not _is_hugepage_size(size):
        raise SpecError(o.at("pageSize"), f'expected a size like "2MB", got {size!r}')
    return HugepageLimit(page_size=size, limit=o.req_int("limit", 0, U64_MAX))


def _parse_network_priority(raw: object, path: str) -> NetworkPriority:
    o = _Obj(raw, path)
    return NetworkPriority(name=o.req_str("name"), priority=o.req_int("priority", 0, U32_MAX))


def _parse_rdma(raw: object, path: str) -> Rdma:
    o = _Obj(raw, path)
    return Rdma(
        hca_handles=o.opt_int("hcaHandles", 0, U32_MAX), hca_objects=o.opt_int("hcaObjects", 0, U32_MAX)
    )


def parse_resources(raw: object, path: str = "linux.resources") -> Resources:
    """Parse a `linux.resources` object; `update --resources` passes one alone (use path="")."""
    o = _Obj(raw, path)
    mem, cpu, pids, bio, net = (o.obj(k) for k in ("memory", "cpu", "pids", "blockIO", "network"))
    unified = o.str_map("unified")
    for key in unified:
        # Keys are cgroupfs file names; a slash would let them name a file outside the cgroup.
        if "/" in key or key.startswith("."):
            raise SpecError(_key_path(o.at("unified"), key), "must be a cgroup file name (no '/')")
    return Resources(
        devices=o.items("devices", _parse_device_rule),
        memory=_parse_memory(mem) if mem is not None else None,
        cpu=_parse_cpu(cpu) if cpu is not None else None,
        pids=Pids(limit=pids.opt_int("limit", I64_MIN, I64_MAX)) if pids is not None else None,
        block_io=_parse_block_io(bio) if bio is not None else None,
        hugepage_limits=o.items("hugepageLimits", _parse_hugepage_limit),
        network=Network(
            class_id=net.opt_int("classID", 0, U32_MAX),
            priorities=net.items("priorities", _parse_network_priority),
        )
        if net is not None
        else None,
        rdma=o.obj_map("rdma", _parse_rdma),
        unified=unified,
    )


def _parse_seccomp_arg(raw: object, path: str) -> SeccompArg:
    o = _Obj(raw, path)
    return SeccompArg(
        # Syscalls take at most six arguments.
        index=o.req_int("index", 0, 5),
        value=o.req_int("value", 0, U64_MAX),
        op=o.req_enum("op", SECCOMP_OPERATORS, "seccomp operator"),
        value_two=o.opt_int("valueTwo", 0, U64_MAX) or 0,
    )


def _parse_syscall(raw: object, path: str) -> Syscall:
    o = _Obj(raw, path)
    names = o.strs("names")
    if not names:
        raise SpecError(
            o.at("names"), "required field missing" if not o.has("names") else "must not be empty"
        )
    return Syscall(
        names=names,
        action=o.req_enum("action", SECCOMP_ACTIONS, "seccomp action"),
        errno_ret=o.opt_int("errnoRet", 0, U32_MAX),
        args=o.items("args", _parse_seccomp_arg),
    )


def _parse_seccomp(raw: object, path: str) -> Seccomp:
    o = _Obj(raw, path)
    sc = Seccomp(
        default_action=o.req_enum("defaultAction", SECCOMP_ACTIONS, "seccomp action"),
        default_errno_ret=o.opt_int("defaultErrnoRet", 0, U32_MAX),
        architectures=o.items(
            "architectures", lambda v, p: _enum(v, p, SECCOMP_ARCHES, "seccomp architecture")
        ),
        flags=o.items("flags", lambda v, p: _enum(v, p, SECCOMP_FLAGS, "seccomp flag")),
        listener_path=o.opt_str("listenerPath"),
        listener_metadata=o.opt_str("listenerMetadata"),
        syscalls=o.items("syscalls", _parse_syscall),
    )
    uses_notify = sc.default_action == "SCMP_ACT_NOTIFY" or any(
        s.action == "SCMP_ACT_NOTIFY" for s in sc.syscalls
    )
    # config-linux.md: SCMP_ACT_NOTIFY needs a listener to hand the notify fd to.
    if uses_notify and not sc.listener_path:
        raise SpecError(o.at("listenerPath"), "required when an action is SCMP_ACT_NOTIFY")
    # A notification the runtime itself triggers before the agent has the fd never gets an
    # answer: every syscall for a default action, and the hand-over's own sendmsg (runc
    # refuses the default action, and `write`, its own hand-over call).
    if sc.default_action == "SCMP_ACT_NOTIFY":
        raise SpecError(o.at("defaultAction"), "SCMP_ACT_NOTIFY cannot be used as the default action")
    for i, rule in enumerate(sc.syscalls):
        if rule.action == "SCMP_ACT_NOTIFY" and SECCOMP_HANDOVER_SYSCALL in rule.names:
            raise SpecError(
                f"{o.at('syscalls')}[{i}].names",
                f"SCMP_ACT_NOTIFY cannot be used for {SECCOMP_HANDOVER_SYSCALL}: "
                "the runtime hands the notify fd to the agent with it",
            )
    return sc


def _parse_time_offset(raw: object, path: str) -> TimeOffset:
    o = _Obj(raw, path)
    return TimeOffset(
        secs=o.opt_int("secs", I64_MIN, I64_MAX) or 0,
        nanosecs=o.opt_int("nanosecs", 0, 999_999_999) or 0,
    )


def _parse_linux(raw: object, path: str) -> Linux:
    o = _Obj(raw, path)
    namespaces = o.items("namespaces", _parse_namespace)
    seen: set[str] = set()
    for i, ns in enumerate(namespaces):
        if ns.type in seen:
            raise SpecError(
                f"{o.at('namespaces')}[{i}].type", f"duplicate namespace type {jsonio.dumps(ns.type)}"
            )
        seen.add(ns.type)
    uid_mappings = o.items("uidMappings", _parse_id_mapping)
    gid_mappings = o.items("gidMappings", _parse_id_mapping)
    if (uid_mappings or gid_mappings) and "user" not in seen:
        key = "uidMappings" if uid_mappings else "gidMappings"
        raise SpecError(o.at(key), "requires a user namespace in linux.namespaces")
    rdt = o.obj("intelRdt")
    pers = o.obj("personality")
    tof = o.obj("timeOffsets")
    if tof is not None and "time" not in seen:
        raise SpecError(tof.path, "requires a time namespace in linux.namespaces")
    mpol = o.obj("memoryPolicy")
    return Linux(
        namespaces=namespaces,
        uid_mappings=uid_mappings,
        gid_mappings=gid_mappings,
        devices=o.items("devices", _parse_device),
        net_devices=o.obj_map("netDevices", lambda v, p: NetDevice(name=_Obj(v, p).opt_str("name"))),
        cgroups_path=o.opt_str("cgroupsPath"),
        resources=parse_resources(o.d["resources"], o.at("resources")) if o.has("resources") else None,
        rootfs_propagation=o.opt_enum("rootfsPropagation", ROOTFS_PROPAGATIONS, "rootfs propagation"),
        seccomp=_parse_seccomp(o.d["seccomp"], o.at("seccomp")) if o.has("seccomp") else None,
        sysctl=o.str_map("sysctl"),
        masked_paths=o.strs("maskedPaths"),
        readonly_paths=o.strs("readonlyPaths"),
        mount_label=o.opt_str("mountLabel"),
        intel_rdt=IntelRdt(
            clos_id=rdt.opt_str("closID"),
            l3_cache_schema=rdt.opt_str("l3CacheSchema"),
            mem_bw_schema=rdt.opt_str("memBwSchema"),
            schemata=rdt.strs("schemata"),
            enable_cmt=rdt.flag("enableCMT"),
            enable_mbm=rdt.flag("enableMBM"),
            enable_monitoring=rdt.flag("enableMonitoring"),
        )
        if rdt is not None
        else None,
        personality=Personality(
            domain=pers.req_enum("domain", PERSONALITY_DOMAINS, "personality domain"),
            flags=pers.strs("flags"),
        )
        if pers is not None
        else None,
        time_offsets=TimeOffsets(
            boottime=_parse_time_offset(tof.d["boottime"], tof.at("boottime"))
            if tof.has("boottime")
            else None,
            monotonic=_parse_time_offset(tof.d["monotonic"], tof.at("monotonic"))
            if tof.has("monotonic")
            else None,
        )
        if tof is not None
        else None,
        memory_policy=MemoryPolicy(
            mode=mpol.req_enum("mode", MEMORY_POLICY_MODES, "memory policy mode"),
            nodes=mpol.opt_str("nodes"),
            flags=mpol.items("flags", lambda v, p: _enum(v, p, MEMORY_POLICY_FLAGS, "memory policy flag")),
        )
        if mpol is not None
        else None,
    )


def _check_uts_sysctls(linux: Linux, *, hostname: str | None, domainname: str | None) -> None:
    """kernel.hostname/kernel.domainname next to the field that sets the same name: which one wins
    would depend on the order we apply them in; refused, as runc refuses kernel.hostname."""
    for key in linux.sysctl:
        rel = key if "/" in key else key.replace(".", "/")
        for name, value in (("hostname", hostname), ("domainname", domainname)):
            if rel == f"kernel/{name}" and value is not None:
                raise SpecError(
                    _key_path("linux.sysctl", key), f"conflicts with the {name} field (set only one of them)"
                )


def _check_without_mount_ns(linux: Linux, root: Root | None, mounts: tuple[Mount, ...]) -> None:
    """Without a mount namespace of its own the container shares the caller's: every mount made
    for it would be made there, change the caller's view and outlive the container. What needs
    a mount is refused (docs/security.md, "Without a mount namespace")."""
    if linux.has_namespace("mount"):
        return
    problem = "requires a mount namespace in linux.namespaces (it would change the caller's mounts)"
    for field_name, wanted in (
        ("mounts", bool(mounts)),
        ("linux.maskedPaths", bool(linux.masked_paths)),
        ("linux.readonlyPaths", bool(linux.readonly_paths)),
        ("linux.rootfsPropagation", bool(linux.rootfs_propagation)),
        ("root.readonly", bool(root is not None and root.readonly)),
    ):
        if wanted:
            raise SpecError(field_name, problem)
    if linux.has_namespace("user"):
        # mknod is refused in a user namespace, and binding the host's nodes needs a mount.
        raise SpecError("linux.namespaces", "a user namespace without a mount namespace cannot provide /dev")


def parse(raw: object) -> Spec:
    """Validate a decoded config.json and return it typed; raise SpecError naming the bad field."""
    o = _Obj(raw, "")
    version = o.req_str("ociVersion")
    if not _is_v1_version(version):
        raise SpecError("ociVersion", f"unsupported version {jsonio.dumps(version)} (expected 1.x)")
    linux = _parse_linux(o.d["linux"], "linux") if o.has("linux") else None
    hostname = o.opt_str("hostname")
    domainname = o.opt_str("domainname")
    if linux is not None and not linux.has_namespace("uts"):
        # Setting them without a UTS namespace would rename the host (runc refuses too).
        for key, value in (("hostname", hostname), ("domainname", domainname)):
            if value:
                raise SpecError(key, "requires a uts namespace in linux.namespaces")
    _check_uts_sysctls(linux or Linux(), hostname=hostname, domainname=domainname)
    annotations = o.str_map("annotations")
    root = _parse_root(o.d["root"], "root") if o.has("root") else None
    mounts = o.items("mounts", _parse_mount)
    _check_without_mount_ns(linux or Linux(), root, mounts)
    return Spec(
        oci_version=version,
        root=root,
        mounts=mounts,
        process=parse_process(o.d["process"], "process") if o.has("process") else None,
        hostname=hostname,
        domainname=domainname,
        hooks=_parse_hooks(o.d["hooks"], "hooks") if o.has("hooks") else None,
        annotations=annotations,
        linux=linux,
    )


# A real config.json is a few KB (a large seccomp profile and many mounts: ~100 KB); the
# limit only stops a file that never ends (a symlink to /dev/zero, a huge file) from being
# read whole, and stays well below the channel's 16 MiB per message.
MAX_CONFIG_SIZE = 4 * 1024 * 1024


def load(bundle: str | os.PathLike[str]) -> tuple[Spec, dict[str, Any]]:
    """Read and parse `bundle/config.json`; also return the raw dict (the idler works on it).

    os.path, not pathlib: importing pathlib costs `create` ~3 ms."""
    path = os.path.join(os.fspath(bundle), "config.json")
    text = _read_config(path)
    try:
        raw = jsonio.loads(text)
    except (ValueError, RecursionError):
        raw = _load_with_json(path, text)
    if not isinstance(raw, dict):
        raise SpecError(
            "", f"{os.fspath(path)}: expected a JSON object at the top level, got {_type_name(raw)}"
        )
    return parse(raw), raw


def _read_config(path: str) -> bytes:
    """The file's bytes, if it is a regular file (a symlink to one is followed, as runc does)
    of at most MAX_CONFIG_SIZE. Opened O_PATH first and checked: opening a FIFO would block
    and opening a device can have effects; the checked inode is then reopened for reading."""
    try:
        pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError as e:
        raise SpecError("", f"open {path}: {os.strerror(e.errno or 0).lower()}") from None
    try:
        st = os.fstat(pfd)
        if (st.st_mode & 0o170000) != 0o100000:
            raise SpecError("", f"{path}: not a regular file")
        if st.st_size > MAX_CONFIG_SIZE:
            raise SpecError("", f"{path}: larger than {MAX_CONFIG_SIZE // (1024 * 1024)} MiB")
        try:
            fd = os.open(f"/proc/self/fd/{pfd}", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise SpecError("", f"open {path}: {os.strerror(e.errno or 0).lower()}") from None
    finally:
        os.close(pfd)
    with open(fd, "rb") as f:
        text = f.read(MAX_CONFIG_SIZE + 1)  # a file that grows after the check still ends here
    if len(text) > MAX_CONFIG_SIZE:
        raise SpecError("", f"{path}: larger than {MAX_CONFIG_SIZE // (1024 * 1024)} MiB")
    return text


def _load_with_json(path: str, text: bytes) -> Any:
    """Parse again with the json package, for its error messages (line and column) and the
    encodings it detects (UTF-16/32 without BOM); only bad or unusual files get here."""
    import json

    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise SpecError(
            "", f"{os.fspath(path)}: bad JSON at line {e.lineno} column {e.colno}: {e.msg}"
        ) from None
    except (ValueError, RecursionError) as e:
        # UnicodeDecodeError, Python's limit on integer digits, or nesting beyond the stack.
        raise SpecError("", f"{os.fspath(path)}: bad JSON: {e}") from None


def validate_container_id(cid: str) -> None:
    """Refuse ids runc refuses: they become file names, unit names and journal fields.

    One rule for the whole runtime: `state.validate_id`.
    """
    from oci_systemd.runtime.state import validate_id

    validate_id(cid)


__all__ = [
    "CAPABILITIES", "CAPABILITY_NAMES", "CAPABILITY_SETS", "CPU", "NAMESPACE_TYPES", "RLIMITS",
    "BlockIO", "Capabilities", "ConsoleSize", "Device", "DeviceRule", "ExecCPUAffinity", "Hook",
    "Hooks", "HugepageLimit", "IDMapping",
    "IOPriority", "IntelRdt", "Linux", "Memory", "MemoryPolicy", "Mount", "Namespace", "NetDevice",
    "Network", "NetworkPriority", "Personality", "Pids", "Process", "Rdma", "Resources", "Rlimit",
    "Root", "Scheduler", "Seccomp", "SeccompArg", "Spec", "Syscall", "ThrottleDevice", "TimeOffset",
    "TimeOffsets", "User", "WeightDevice", "capability_warnings", "load", "parse", "parse_process",
    "parse_resources", "validate_container_id",
]  # fmt: skip
