# SPDX-License-Identifier: Apache-2.0
"""`linux.resources` (config-linux.md "Control groups"), which runtime/resources.py turns into
systemd unit properties; `update --resources` validates one alone."""

from __future__ import annotations

from oci_systemd import jsonio
from oci_systemd.errors import SpecError
from oci_systemd.runtime.spec.fields import (
    DIGITS,
    I64_MAX,
    I64_MIN,
    U16_MAX,
    U32_MAX,
    U64_MAX,
    Obj,
    as_bool,
    cpu_list,
    key_path,
    trusted,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from oci_systemd.container import config


def parse_resources(raw: object, path: str = "linux.resources") -> config.Resources:
    """Validate a `linux.resources` object and return it typed; `update --resources` passes one
    alone (use path="")."""
    o = Obj(raw, path)
    mem, cpu, pids, bio, net = (o.obj(k) for k in ("memory", "cpu", "pids", "blockIO", "network"))
    for key in o.str_map("unified"):
        # Keys are cgroupfs file names; a slash would let them name a file outside the cgroup.
        if "/" in key or key.startswith("."):
            raise SpecError(key_path(o.at("unified"), key), "must be a cgroup file name (no '/')")
    o.items("devices", _check_device_rule)
    if mem is not None:
        _check_memory(mem)
    if cpu is not None:
        _check_cpu(cpu)
    if pids is not None:
        pids.opt_int("limit", I64_MIN, I64_MAX)  # required in 1.2's schema, optional since 1.3
    if bio is not None:
        _check_block_io(bio)
    o.items("hugepageLimits", _check_hugepage_limit)
    if net is not None:
        net.opt_int("classID", 0, U32_MAX)
        net.items("priorities", _check_network_priority)
    o.obj_map("rdma", _check_rdma)
    resources: config.Resources = trusted(raw)
    return resources


def _check_device_rule(raw: object, path: str) -> None:
    o = Obj(raw, path)
    type_ = o.opt_str("type")
    if type_ is not None and type_ not in ("a", "b", "c"):
        raise SpecError(o.at("type"), f"unknown device type {jsonio.dumps(type_)} (expected a, b or c)")
    access = o.opt_str("access")
    if access is not None and (not access or set(access) - set("rwm")):
        raise SpecError(o.at("access"), f"expected a combination of r, w and m, got {access!r}")
    as_bool(o.required("allow"), o.at("allow"))
    # -1 is Go's spelling of the wildcard in some generators.
    o.opt_int("major", -1, I64_MAX)
    o.opt_int("minor", -1, I64_MAX)


def _check_memory(o: Obj) -> None:
    for key in ("limit", "reservation", "swap", "kernel", "kernelTCP"):
        o.opt_int(key, -1, I64_MAX)  # -1 means unlimited; other negatives are meaningless.
    o.opt_int("swappiness", 0, U64_MAX)
    for key in ("disableOOMKiller", "useHierarchy", "checkBeforeUpdate"):
        o.opt_bool(key)


def _check_cpu(o: Obj) -> None:
    o.opt_int("shares", 0, U64_MAX)
    o.opt_int("quota", I64_MIN, I64_MAX)
    o.opt_int("burst", 0, U64_MAX)
    o.opt_int("period", 0, U64_MAX)
    o.opt_int("realtimeRuntime", I64_MIN, I64_MAX)
    o.opt_int("realtimePeriod", 0, U64_MAX)
    o.check("cpus", cpu_list)
    o.check("mems", cpu_list)
    o.opt_int("idle", I64_MIN, I64_MAX)


def _check_weight_device(raw: object, path: str) -> None:
    o = Obj(raw, path)
    o.req_int("major", 0, I64_MAX)
    o.req_int("minor", 0, I64_MAX)
    o.opt_int("weight", 0, U16_MAX)
    o.opt_int("leafWeight", 0, U16_MAX)


def _check_throttle_device(raw: object, path: str) -> None:
    o = Obj(raw, path)
    o.req_int("major", 0, I64_MAX)
    o.req_int("minor", 0, I64_MAX)
    o.opt_int("rate", 0, U64_MAX)


def _check_block_io(o: Obj) -> None:
    o.opt_int("weight", 0, U16_MAX)
    o.opt_int("leafWeight", 0, U16_MAX)
    o.items("weightDevice", _check_weight_device)
    for key in (
        "throttleReadBpsDevice",
        "throttleWriteBpsDevice",
        "throttleReadIOPSDevice",
        "throttleWriteIOPSDevice",
    ):
        o.items(key, _check_throttle_device)


def is_hugepage_size(size: str) -> bool:
    """fullmatch of [1-9][0-9]*[KMG]B"""
    number = size[:-2]
    return (
        size.endswith(("KB", "MB", "GB")) and bool(number) and not number.strip(DIGITS) and number[0] != "0"
    )


def _check_hugepage_limit(raw: object, path: str) -> None:
    o = Obj(raw, path)
    size = o.req_str("pageSize")
    if not is_hugepage_size(size):
        raise SpecError(o.at("pageSize"), f'expected a size like "2MB", got {size!r}')
    o.req_int("limit", 0, U64_MAX)


def _check_network_priority(raw: object, path: str) -> None:
    o = Obj(raw, path)
    o.req_str("name")
    o.req_int("priority", 0, U32_MAX)


def _check_rdma(raw: object, path: str) -> None:
    o = Obj(raw, path)
    o.opt_int("hcaHandles", 0, U32_MAX)
    o.opt_int("hcaObjects", 0, U32_MAX)
