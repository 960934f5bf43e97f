# SPDX-License-Identifier: Apache-2.0
"""`linux.seccomp` (runtime-spec config-linux.md) through libseccomp.so.2 via ctypes.

Two layers: `translate()` is pure Python (config dict → `Plan` of numbers, names and flags, unit
tested without libseccomp), `build()` turns a Plan into a libseccomp filter context (`Filter`,
which can `export_bpf()` for tests or `load()`), and `apply()` does all three. Behaviour follows
runc: unknown syscall names are skipped (profiles list syscalls of newer kernels), rules whose
action equals the default action are skipped, conditions on the same argument index become
separate rules (OR), and libseccomp's own no_new_privs is turned off (process.noNewPrivileges
decides). Unknown actions, architectures, operators and flags are errors.

The tables below (ACTIONS, OPERATORS, FLAGS, ARCHITECTURES) are what `linux.seccomp` may name:
spec validation accepts exactly their keys and `oci-systemd features` reports them. ctypes is
imported only to build a filter, so that validating a config (`create`) can read the tables
without it (~5 ms).

SCMP_ACT_NOTIFY (seccomp user notification): libseccomp loads such a filter with
SECCOMP_FILTER_FLAG_NEW_LISTENER; `apply()` hands the listener fd to its `hand_over` callback
right after loading (the idler sends it to `oci-systemd start`, which gives it to the agent at
`listenerPath`: seccomp_notify.py, docs/protocol.md), and closes it before the exec.
"""

from __future__ import annotations

import errno

from oci_systemd.errors import OciSystemdError

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: importing typing costs the idler ~10 ms
if TYPE_CHECKING:
    import ctypes
    from collections.abc import Callable

    from oci_systemd.container import config

# seccomp.h
SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_KILL_THREAD = 0x00000000
SCMP_ACT_TRAP = 0x00030000
SCMP_ACT_NOTIFY = 0x7FC00000
SCMP_ACT_ERRNO_BASE = 0x00050000
SCMP_ACT_TRACE_BASE = 0x7FF00000
SCMP_ACT_LOG = 0x7FFC0000
SCMP_ACT_ALLOW = 0x7FFF0000

ACTIONS: dict[str, int] = {
    "SCMP_ACT_KILL": SCMP_ACT_KILL_THREAD,
    "SCMP_ACT_KILL_THREAD": SCMP_ACT_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": SCMP_ACT_KILL_PROCESS,
    "SCMP_ACT_TRAP": SCMP_ACT_TRAP,
    "SCMP_ACT_ERRNO": SCMP_ACT_ERRNO_BASE,
    "SCMP_ACT_TRACE": SCMP_ACT_TRACE_BASE,
    "SCMP_ACT_ALLOW": SCMP_ACT_ALLOW,
    "SCMP_ACT_LOG": SCMP_ACT_LOG,
    "SCMP_ACT_NOTIFY": SCMP_ACT_NOTIFY,
}

OPERATORS: dict[str, int] = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}

# enum scmp_filter_attr
SCMP_FLTATR_CTL_NNP = 3
SCMP_FLTATR_CTL_TSYNC = 4
SCMP_FLTATR_CTL_LOG = 6
SCMP_FLTATR_CTL_SSB = 7

FLAGS: dict[str, int] = {
    "SECCOMP_FILTER_FLAG_TSYNC": SCMP_FLTATR_CTL_TSYNC,
    "SECCOMP_FILTER_FLAG_LOG": SCMP_FLTATR_CTL_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": SCMP_FLTATR_CTL_SSB,
}

# enum scmp_filter_attr has no attribute for SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV before
# libseccomp 2.6 (this machine's is 2.5.4) and runc does not implement it either: refused.

# runtime-spec architectures → libseccomp's names for seccomp_arch_resolve_name(); a name the
# loaded libseccomp does not know is skipped by build() (it cannot be this machine's).
ARCHITECTURES: dict[str, str] = {
    "SCMP_ARCH_X86": "x86",
    "SCMP_ARCH_X86_64": "x86_64",
    "SCMP_ARCH_X32": "x32",
    "SCMP_ARCH_ARM": "arm",
    "SCMP_ARCH_AARCH64": "aarch64",
    "SCMP_ARCH_MIPS": "mips",
    "SCMP_ARCH_MIPS64": "mips64",
    "SCMP_ARCH_MIPS64N32": "mips64n32",
    "SCMP_ARCH_MIPSEL": "mipsel",
    "SCMP_ARCH_MIPSEL64": "mipsel64",
    "SCMP_ARCH_MIPSEL64N32": "mipsel64n32",
    "SCMP_ARCH_PPC": "ppc",
    "SCMP_ARCH_PPC64": "ppc64",
    "SCMP_ARCH_PPC64LE": "ppc64le",
    "SCMP_ARCH_S390": "s390",
    "SCMP_ARCH_S390X": "s390x",
    "SCMP_ARCH_PARISC": "parisc",
    "SCMP_ARCH_PARISC64": "parisc64",
    "SCMP_ARCH_RISCV64": "riscv64",
    "SCMP_ARCH_LOONGARCH64": "loongarch64",
    "SCMP_ARCH_M68K": "m68k",  # libseccomp 2.6
    "SCMP_ARCH_SH": "sh",  # libseccomp 2.6
    "SCMP_ARCH_SHEB": "sheb",  # libseccomp 2.6
}


class Rule:
    """One libseccomp rule: `action` for syscall `name` when all `args` (index, op, a, b) match."""

    __slots__ = ("action", "args", "name")

    def __init__(self, name: str, action: int, args: list[tuple[int, int, int, int]]) -> None:
        self.name = name
        self.action = action
        self.args = args

    def __repr__(self) -> str:
        return f"Rule({self.name!r}, {self.action:#x}, {self.args})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rule) and (self.name, self.action, self.args) == (
            other.name,
            other.action,
            other.args,
        )

    __hash__ = None  # type: ignore[assignment]


class Plan:
    """The translated profile: default action, arch names, rules, filter attributes to set."""

    __slots__ = ("arches", "attrs", "default_action", "rules")

    def __init__(self, default_action: int, arches: list[str], rules: list[Rule], attrs: list[int]) -> None:
        self.default_action = default_action
        self.arches = arches
        self.rules = rules
        self.attrs = attrs


def action_value(name: str, errno_ret: int | None, *, where: str) -> int:
    base = ACTIONS.get(name)
    if base is None:
        raise OciSystemdError(f"seccomp: unknown action {name!r} in {where}")
    if base in (SCMP_ACT_ERRNO_BASE, SCMP_ACT_TRACE_BASE):
        return base | ((errno.EPERM if errno_ret is None else int(errno_ret)) & 0xFFFF)
    return base


def uses_notify(profile: config.Seccomp) -> bool:
    """Whether `linux.seccomp` has an SCMP_ACT_NOTIFY rule (then, and only then, the agent at
    listenerPath gets the listener fd, as with runc)."""
    return profile.get("defaultAction") == "SCMP_ACT_NOTIFY" or any(
        sc.get("action") == "SCMP_ACT_NOTIFY" for sc in profile.get("syscalls") or ()
    )


def translate(profile: config.Seccomp) -> Plan:
    """Pure translation of `linux.seccomp` into numbers; raises OciSystemdError on invalid input."""
    default = action_value(profile["defaultAction"], profile.get("defaultErrnoRet"), where="defaultAction")
    arches: list[str] = []
    for a in profile.get("architectures") or ():
        name = ARCHITECTURES.get(a)
        if name is None:
            raise OciSystemdError(f"seccomp: unknown architecture {a!r}")
        arches.append(name)
    attrs: list[int] = []
    for f in profile.get("flags") or ():
        attr = FLAGS.get(f)
        if attr is None:
            raise OciSystemdError(f"seccomp: flag {f!r} is not supported")
        attrs.append(attr)
    rules: list[Rule] = []
    for i, sc in enumerate(profile.get("syscalls") or ()):
        where = f"syscalls[{i}]"
        action = action_value(sc["action"], sc.get("errnoRet"), where=where)
        conds: list[tuple[int, int, int, int]] = []
        for arg in sc.get("args") or ():
            op = OPERATORS.get(arg["op"])
            if op is None:
                raise OciSystemdError(f"seccomp: unknown operator {arg.get('op')!r} in {where}")
            index = int(arg["index"])
            if not 0 <= index <= 5:
                raise OciSystemdError(f"seccomp: argument index {index} out of range in {where}")
            conds.append((index, op, int(arg.get("value", 0)), int(arg.get("valueTwo") or 0)))
        if action == default:
            continue  # libseccomp refuses rules that repeat the default action; runc skips them
        # libseccomp allows one comparison per argument in a rule: same index twice means OR.
        split = len({c[0] for c in conds}) != len(conds)
        for name in sc.get("names") or ():
            if split:
                rules.extend(Rule(name, action, [c]) for c in conds)
            else:
                rules.append(Rule(name, action, list(conds)))
    return Plan(default, arches, rules, attrs)


_lib: ctypes.CDLL | None = None
_ArgCmp: type[ctypes.Structure] | None = None  # struct scmp_arg_cmp, made with the library


def _libseccomp() -> ctypes.CDLL:
    global _lib, _ArgCmp
    if _lib is None:
        import ctypes

        class ArgCmp(ctypes.Structure):
            _fields_ = (
                ("arg", ctypes.c_uint),
                ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64),
            )

        try:
            lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
        except OSError as e:
            raise OciSystemdError(
                "seccomp: libseccomp.so.2 is not available",
                hint="install libseccomp2",
            ) from e
        lib.seccomp_init.argtypes = (ctypes.c_uint32,)
        lib.seccomp_init.restype = ctypes.c_void_p
        lib.seccomp_release.argtypes = (ctypes.c_void_p,)
        lib.seccomp_release.restype = None
        lib.seccomp_arch_resolve_name.argtypes = (ctypes.c_char_p,)
        lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
        lib.seccomp_arch_native.argtypes = ()
        lib.seccomp_arch_native.restype = ctypes.c_uint32
        lib.seccomp_arch_add.argtypes = (ctypes.c_void_p, ctypes.c_uint32)
        lib.seccomp_attr_set.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32)
        lib.seccomp_syscall_resolve_name.argtypes = (ctypes.c_char_p,)
        lib.seccomp_rule_add_array.argtypes = (
            ctypes.c_void_p,
            ctypes.c_uint32,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.POINTER(ArgCmp),
        )
        lib.seccomp_load.argtypes = (ctypes.c_void_p,)
        lib.seccomp_export_bpf.argtypes = (ctypes.c_void_p, ctypes.c_int)
        lib.seccomp_notify_fd.argtypes = (ctypes.c_void_p,)
        _lib, _ArgCmp = lib, ArgCmp
    return _lib


def preload() -> None:
    """dlopen() libseccomp now, before pivot_root() hides the host's /usr/lib."""
    _libseccomp()


def _check(rc: int, what: str) -> None:
    if rc < 0:
        raise OciSystemdError(f"seccomp: {what}: {errno.errorcode.get(-rc, str(-rc))} ({-rc})")


class Filter:
    """A libseccomp filter context; release() it (or load() and release())."""

    def __init__(self, ctx: int, lib: ctypes.CDLL, skipped: list[str]) -> None:
        self._ctx: int | None = ctx
        self._lib = lib
        self.skipped = skipped  # syscall names libseccomp does not know

    def export_bpf(self, fd: int) -> None:
        _check(self._lib.seccomp_export_bpf(self._ctx, fd), "export")

    def load(self) -> None:
        rc = self._lib.seccomp_load(self._ctx)
        if rc < 0:
            raise OciSystemdError(
                f"seccomp: loading the filter failed: {errno.errorcode.get(-rc, rc)}",
                hint="without noNewPrivileges, loading needs CAP_SYS_ADMIN",
            )

    def notify_fd(self) -> int:
        """The user-notification listener of the loaded filter (it has SCMP_ACT_NOTIFY rules)."""
        fd = int(self._lib.seccomp_notify_fd(self._ctx))
        if fd < 0:
            raise OciSystemdError(f"seccomp: no notify fd after loading: {errno.errorcode.get(-fd, fd)}")
        return fd

    def release(self) -> None:
        if self._ctx is not None:
            self._lib.seccomp_release(self._ctx)
            self._ctx = None


def build(plan: Plan) -> Filter:
    lib = _libseccomp()
    arg_cmp = _ArgCmp
    assert arg_cmp is not None
    ctx = lib.seccomp_init(plan.default_action)
    if not ctx:
        raise OciSystemdError(f"seccomp: seccomp_init({plan.default_action:#x}) failed")
    filt = Filter(ctx, lib, [])
    try:
        _check(lib.seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0), "disable no_new_privs")
        for attr in plan.attrs:
            _check(lib.seccomp_attr_set(ctx, attr, 1), f"set filter attribute {attr}")
        native = lib.seccomp_arch_native()
        for name in plan.arches:
            token = lib.seccomp_arch_resolve_name(name.encode())
            if token == 0:
                continue  # an architecture this libseccomp does not know cannot be ours
            if token == native:
                continue  # already in a fresh context (arch_add would say EEXIST)
            _check(lib.seccomp_arch_add(ctx, token), f"add architecture {name}")
        for rule in plan.rules:
            nr = lib.seccomp_syscall_resolve_name(rule.name.encode())
            if nr == -1:  # __NR_SCMP_ERROR: unknown to libseccomp, skipped like runc
                filt.skipped.append(rule.name)
                continue
            arr = (arg_cmp * max(1, len(rule.args)))(*[arg_cmp(*a) for a in rule.args])
            _check(
                lib.seccomp_rule_add_array(ctx, rule.action, nr, len(rule.args), arr),
                f"add rule for {rule.name}",
            )
    except BaseException:
        filt.release()
        raise
    return filt


def apply(seccomp: config.Seccomp, hand_over: Callable[[int], None] | None = None) -> None:
    """Translate, build and load `linux.seccomp`; call it last, after no_new_privs.

    With SCMP_ACT_NOTIFY rules, `hand_over(fd)` gets the listener fd right after loading (every
    syscall from here on is filtered) and must close it: the program must never hold it."""
    notify = uses_notify(seccomp)
    if notify and hand_over is None:
        raise OciSystemdError("seccomp: SCMP_ACT_NOTIFY needs a listener to hand the notify fd to")
    filt = build(translate(seccomp))
    try:
        filt.load()
        if notify:
            assert hand_over is not None
            hand_over(filt.notify_fd())  # before release(): free() may call munmap or brk
    finally:
        filt.release()
