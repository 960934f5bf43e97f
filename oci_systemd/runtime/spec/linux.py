# SPDX-License-Identifier: Apache-2.0
"""`linux` (config-linux.md): namespaces, id mappings, devices, sysctls, paths and the rest.

Namespace types, rootfs propagations and personality domains are container/abi.py's tables;
`resources` and `seccomp` have modules of their own.
"""

from __future__ import annotations

from oci_systemd import jsonio
from oci_systemd.container.abi import NAMESPACE_TYPES, PERSONALITY_DOMAINS, ROOTFS_PROPAGATIONS
from oci_systemd.errors import SpecError
from oci_systemd.runtime.spec.fields import (
    I64_MAX,
    I64_MIN,
    U32_MAX,
    Obj,
    abs_path,
    container_path,
    trusted,
)
from oci_systemd.runtime.spec.mounts import check_id_mapping
from oci_systemd.runtime.spec.resources import parse_resources

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

    from oci_systemd.container import config

# set_mempolicy(2) names. Accepted and not applied: nothing on the container side implements
# linux.memoryPolicy yet, so `features` does not report it.
MEMORY_POLICY_MODES: Final = frozenset(
    {
        "MPOL_DEFAULT", "MPOL_BIND", "MPOL_INTERLEAVE", "MPOL_WEIGHTED_INTERLEAVE", "MPOL_PREFERRED",
        "MPOL_PREFERRED_MANY", "MPOL_LOCAL",
    }
)  # fmt: skip
MEMORY_POLICY_FLAGS: Final = frozenset(
    {"MPOL_F_NUMA_BALANCING", "MPOL_F_RELATIVE_NODES", "MPOL_F_STATIC_NODES"}
)


def check_linux(raw: object, path: str) -> config.Linux:
    o = Obj(raw, path)
    seen = _check_namespaces(o)
    uid_mappings = o.items("uidMappings", check_id_mapping)
    gid_mappings = o.items("gidMappings", check_id_mapping)
    if (uid_mappings or gid_mappings) and "user" not in seen:
        key = "uidMappings" if uid_mappings else "gidMappings"
        raise SpecError(o.at(key), "requires a user namespace in linux.namespaces")
    rdt = o.obj("intelRdt")
    pers = o.obj("personality")
    tof = o.obj("timeOffsets")
    if tof is not None and "time" not in seen:
        raise SpecError(tof.path, "requires a time namespace in linux.namespaces")
    mpol = o.obj("memoryPolicy")
    o.items("devices", _check_device)
    o.obj_map("netDevices", lambda v, p: Obj(v, p).opt_str("name"))
    o.opt_str("cgroupsPath")
    o.check("resources", parse_resources)
    o.opt_enum("rootfsPropagation", ROOTFS_PROPAGATIONS, "rootfs propagation")
    if o.has("seccomp"):  # its checks and tables (container/seccomp.py) only for a filter
        from oci_systemd.runtime.spec.seccomp import check_seccomp

        o.check("seccomp", check_seccomp)
    o.str_map("sysctl")
    o.strs("maskedPaths")
    o.strs("readonlyPaths")
    o.opt_str("mountLabel")
    if rdt is not None:
        for key in ("closID", "l3CacheSchema", "memBwSchema"):
            rdt.opt_str(key)
        rdt.strs("schemata")
        for key in ("enableCMT", "enableMBM", "enableMonitoring"):
            rdt.opt_bool(key)
    if pers is not None:
        pers.req_enum("domain", PERSONALITY_DOMAINS, "personality domain")
        # personality(2) flags beyond the domain: none is defined in runtime-spec, and
        # container/process.py applies the domain only.
        if pers.strs("flags"):
            raise SpecError(pers.at("flags"), "personality flags are not supported")
    if tof is not None:
        tof.check("boottime", _check_time_offset)
        tof.check("monotonic", _check_time_offset)
    if mpol is not None:
        mpol.req_enum("mode", MEMORY_POLICY_MODES, "memory policy mode")
        mpol.opt_str("nodes")
        mpol.enums("flags", MEMORY_POLICY_FLAGS, "memory policy flag")
    linux: config.Linux = trusted(raw)
    return linux


def _check_namespaces(o: Obj) -> set[str]:
    """The namespace types the config lists, each at most once."""
    seen: set[str] = set()
    for i, item in enumerate(o.items("namespaces", _check_namespace)):
        ns: config.Namespace = trusted(item)
        if ns["type"] in seen:
            raise SpecError(
                f"{o.at('namespaces')}[{i}].type", f"duplicate namespace type {jsonio.dumps(ns['type'])}"
            )
        seen.add(ns["type"])
    return seen


def _check_namespace(raw: object, path: str) -> None:
    o = Obj(raw, path)
    o.req_enum("type", NAMESPACE_TYPES, "namespace type")
    o.check("path", abs_path)


def _check_device(raw: object, path: str) -> None:
    o = Obj(raw, path)
    type_ = o.req_str("type")
    if type_ not in ("c", "b", "u", "p"):
        raise SpecError(o.at("type"), f"unknown device type {jsonio.dumps(type_)} (expected c, b, u or p)")
    container_path(o.required("path"), o.at("path"))
    o.opt_int("major", 0, I64_MAX)
    o.opt_int("minor", 0, I64_MAX)
    # Generators differ on whether S_IFMT bits are included; the runtime masks with 0o7777.
    o.opt_int("fileMode", 0, U32_MAX)
    o.opt_int("uid", 0, U32_MAX)
    o.opt_int("gid", 0, U32_MAX)
    if type_ != "p":
        for key in ("major", "minor"):
            if not o.has(key):
                raise SpecError(o.at(key), f"required field missing for device type {type_!r}")


def _check_time_offset(raw: object, path: str) -> None:
    o = Obj(raw, path)
    o.opt_int("secs", I64_MIN, I64_MAX)
    o.opt_int("nanosecs", 0, 999_999_999)


def has_namespace(linux: config.Linux, type_: str) -> bool:
    """Whether the container gets (or joins) a namespace of `type_` ("pid", "network", ...)."""
    return any(ns["type"] == type_ for ns in linux.get("namespaces") or ())


__all__ = ["MEMORY_POLICY_FLAGS", "MEMORY_POLICY_MODES", "check_linux", "has_namespace"]
