# SPDX-License-Identifier: Apache-2.0
"""`linux.seccomp` (config-linux.md): what container/seccomp.py can load.

Actions, operators, flags and architectures are the keys of container/seccomp.py's tables
(that module imports ctypes only to build a filter, so reading its tables is free here).
"""

from __future__ import annotations

from oci_systemd.container.seccomp import ACTIONS, ARCHITECTURES, FLAGS, OPERATORS, uses_notify
from oci_systemd.errors import SpecError
from oci_systemd.runtime.spec.fields import U32_MAX, U64_MAX, Obj, trusted

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

    from oci_systemd.container import config

HANDOVER_SYSCALL: Final = "sendmsg"  # how the idler sends the notify fd out


def check_seccomp(raw: object, path: str) -> None:
    o = Obj(raw, path)
    o.req_enum("defaultAction", ACTIONS, "seccomp action")
    o.opt_int("defaultErrnoRet", 0, U32_MAX)
    o.enums("architectures", ARCHITECTURES, "seccomp architecture")
    o.enums("flags", FLAGS, "seccomp flag")
    o.opt_str("listenerPath")
    o.opt_str("listenerMetadata")
    o.items("syscalls", _check_syscall)
    profile: config.Seccomp = trusted(raw)
    # config-linux.md: SCMP_ACT_NOTIFY needs a listener to hand the notify fd to.
    if uses_notify(profile) and not profile.get("listenerPath"):
        raise SpecError(o.at("listenerPath"), "required when an action is SCMP_ACT_NOTIFY")
    # A notification the runtime itself triggers before the agent has the fd never gets an
    # answer: every syscall for a default action, and the hand-over's own sendmsg (runc
    # refuses the default action, and `write`, its own hand-over call).
    if profile["defaultAction"] == "SCMP_ACT_NOTIFY":
        raise SpecError(o.at("defaultAction"), "SCMP_ACT_NOTIFY cannot be used as the default action")
    for i, rule in enumerate(profile.get("syscalls") or ()):
        if rule["action"] == "SCMP_ACT_NOTIFY" and HANDOVER_SYSCALL in rule["names"]:
            raise SpecError(
                f"{o.at('syscalls')}[{i}].names",
                f"SCMP_ACT_NOTIFY cannot be used for {HANDOVER_SYSCALL}: "
                "the runtime hands the notify fd to the agent with it",
            )


def _check_syscall(raw: object, path: str) -> None:
    o = Obj(raw, path)
    if not o.strs("names"):
        raise SpecError(
            o.at("names"), "required field missing" if not o.has("names") else "must not be empty"
        )
    o.req_enum("action", ACTIONS, "seccomp action")
    o.opt_int("errnoRet", 0, U32_MAX)
    o.items("args", _check_arg)


def _check_arg(raw: object, path: str) -> None:
    o = Obj(raw, path)
    o.req_int("index", 0, 5)  # Syscalls take at most six arguments.
    o.req_int("value", 0, U64_MAX)
    o.req_enum("op", OPERATORS, "seccomp operator")
    o.opt_int("valueTwo", 0, U64_MAX)
