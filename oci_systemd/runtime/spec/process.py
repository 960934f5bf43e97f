# SPDX-License-Identifier: Apache-2.0
"""`process` (config.md): config.json's, or the `--process` file of `exec`.

The names it may use (rlimits, scheduler policies and flags, I/O priority classes,
capabilities) are the tables of container/abi.py, which container/process.py applies.
"""

from __future__ import annotations

from oci_systemd import jsonio
from oci_systemd.container.abi import CAPABILITIES, IOPRIO_CLASSES, RLIMITS, SCHED_FLAGS, SCHED_POLICIES
from oci_systemd.errors import SpecError
from oci_systemd.runtime.spec.fields import (
    I32_MAX,
    I32_MIN,
    U16_MAX,
    U32_MAX,
    U64_MAX,
    Obj,
    abs_path,
    as_int,
    cpu_list,
    env_entry,
    trusted,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

    from oci_systemd.container import config

CAPABILITY_SETS: Final = ("bounding", "effective", "inheritable", "permitted", "ambient")


def parse_process(raw: object, path: str = "process") -> config.Process:
    """Validate a `process` object and return it typed; raise SpecError naming the bad field."""
    o = Obj(raw, path)
    args = o.strs("args")
    if not args:
        raise SpecError(o.at("args"), "required field missing" if not o.has("args") else "must not be empty")
    _check_rlimits(o)
    io = o.obj("ioPriority")
    aff = o.obj("execCPUAffinity")
    abs_path(o.required("cwd"), o.at("cwd"))
    o.check("user", _check_user)
    o.items("env", env_entry)
    o.opt_bool("terminal")
    o.check("consoleSize", _check_console_size)
    o.opt_str("commandLine")
    o.check("capabilities", _check_capabilities)
    o.opt_bool("noNewPrivileges")
    o.opt_str("apparmorProfile")
    o.opt_str("selinuxLabel")
    o.opt_int("oomScoreAdj", -1000, 1000)
    if io is not None:
        io.req_enum("class", IOPRIO_CLASSES, "I/O priority class")
        io.opt_int("priority", 0, 7)  # ioprio_set(2) levels are 0 (highest) to 7.
    o.check("scheduler", _check_scheduler)
    if aff is not None:
        aff.check("initial", cpu_list)
        aff.check("final", cpu_list)
    process: config.Process = trusted(raw)
    return process


def _check_user(raw: object, path: str) -> None:
    o = Obj(raw, path)
    o.req_int("uid", 0, U32_MAX)
    o.req_int("gid", 0, U32_MAX)
    o.opt_int("umask", 0, U32_MAX)
    o.items("additionalGids", lambda v, p: as_int(v, p, 0, U32_MAX))
    o.opt_str("username")


def _check_capabilities(raw: object, path: str) -> None:
    o = Obj(raw, path)
    for kind in CAPABILITY_SETS:
        # Any name: runtime-spec 1.2 says an unknown or ungrantable capability is logged as a
        # warning (capability_warnings) and SHOULD NOT fail; process.cap_mask() leaves it out.
        o.strs(kind)


def capability_warnings(
    caps: config.Capabilities | None, *, last_cap: int, path: str = "process.capabilities"
) -> list[str]:
    """One warning per capability of `caps` that is unknown or above the kernel's `last_cap`."""
    if caps is None:
        return []
    sets: dict[str, list[str]] = {}
    for kind, names in (
        ("bounding", caps.get("bounding")),
        ("effective", caps.get("effective")),
        ("inheritable", caps.get("inheritable")),
        ("permitted", caps.get("permitted")),
        ("ambient", caps.get("ambient")),
    ):
        for name in names or ():
            key = _capability_key(name)
            if key not in CAPABILITIES or CAPABILITIES[key] > last_cap:
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


def _check_rlimits(o: Obj) -> None:
    seen: set[str] = set()
    base = o.at("rlimits")
    for i, item in enumerate(o.items("rlimits", _check_rlimit)):
        rlimit: config.Rlimit = trusted(item)
        type_ = rlimit["type"]
        if type_ in seen:
            raise SpecError(f"{base}[{i}].type", f"duplicate rlimit type {type_}")
        seen.add(type_)


def _check_rlimit(raw: object, path: str) -> None:
    o = Obj(raw, path)
    type_ = o.req_str("type")
    if type_ not in RLIMITS:
        raise SpecError(o.at("type"), f"unknown rlimit type {jsonio.dumps(type_)}")
    soft = o.req_int("soft", 0, U64_MAX)
    hard = o.req_int("hard", 0, U64_MAX)
    # setrlimit(2) fails with EINVAL on soft > hard; say so before anything is created.
    if soft > hard:
        raise SpecError(o.at("soft"), f"soft limit {soft} exceeds hard limit {hard}")


def _check_console_size(raw: object, path: str) -> None:
    o = Obj(raw, path)
    # TIOCSWINSZ takes unsigned shorts; a larger size cannot be applied.
    o.req_int("height", 0, U16_MAX)
    o.req_int("width", 0, U16_MAX)


def _check_scheduler(raw: object, path: str) -> None:
    o = Obj(raw, path)
    o.req_enum("policy", SCHED_POLICIES, "scheduler policy")
    o.opt_int("nice", -20, 19)
    o.opt_int("priority", I32_MIN, I32_MAX)
    o.enums("flags", SCHED_FLAGS, "scheduler flag")
    o.opt_int("runtime", 0, U64_MAX)
    o.opt_int("deadline", 0, U64_MAX)
    o.opt_int("period", 0, U64_MAX)


__all__ = ["CAPABILITY_SETS", "capability_warnings", "parse_process"]
