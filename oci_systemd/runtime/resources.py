# SPDX-License-Identifier: Apache-2.0
"""`linux.resources` and `org.systemd.property.*` annotations as systemd unit properties.

systemd owns the container's cgroup, so limits are set as properties of its scope
(StartTransientUnit at create, SetUnitProperties at update) rather than by writing
cgroupfs files behind systemd's back, which a `daemon-reload` would undo.
The conversions follow runc's systemd driver (libcontainer/cgroups/systemd) and crun,
so a config means the same thing under all three; the annotations are read by
property_annotations.py. Pure apart from resolving block devices for the I/O limits
(injectable); no D-Bus import. Reads `linux.resources` as spec
validation left it (container/config.py's views of the raw dict): a JSON null counts as absent.
"""

from __future__ import annotations

import os

from oci_systemd import jsonio
from oci_systemd.errors import SpecError
from oci_systemd.runtime.property_annotations import (
    ANNOTATION_PREFIX,
    INFINITY,
    annotation_properties,
    parse_property_annotation,
)
from oci_systemd.runtime.spec.fields import U64_MAX

# create imports this module: typing, collections.abc, re and json (~10 ms) stay out of it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from typing import Final

    from oci_systemd.container.config import CPU, BlockIO, DeviceRule, Memory, Resources, ThrottleDevice
    from oci_systemd.runtime.systemd import UnitProperty as UnitProperty

    BlockDeviceResolver = Callable[[int, int], str | None]

DEFAULT_CPU_QUOTA_PERIOD: Final = 100_000  # µs; the kernel default, same for cgroup v1 and v2

_RES = "linux.resources"

# Devices every container gets whatever its rules say, as runc's specconv.AllowedDevices:
# mknod of anything (the device must still be allowed to be opened), the pseudo devices that
# runtime-spec requires in /dev, and the pty devices.
DEFAULT_DEVICE_RULES: Final[tuple[DeviceRule, ...]] = (
    {"allow": True, "type": "c", "access": "m"},
    {"allow": True, "type": "b", "access": "m"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},  # /dev/null
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},  # /dev/random
    {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"},  # /dev/full
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},  # /dev/tty
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},  # /dev/zero
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},  # /dev/urandom
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},  # /dev/pts/*
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},  # /dev/ptmx
)


def scope_properties(
    resources: Resources | None,
    annotations: Mapping[str, str],
    *,
    block_device: BlockDeviceResolver | None = None,
) -> list[UnitProperty]:
    """Properties for the container's scope at `create`: resources first, annotations last.

    Annotations come last so a user's explicit `org.systemd.property.X` wins over the mapping.
    Raises SpecError naming the field that cannot be expressed.
    """
    props = _resource_properties(resources, block_device, creating=True) if resources is not None else []
    return _dedupe([*props, *annotation_properties(annotations)])


def update_properties(
    resources: Resources,
    *,
    block_device: BlockDeviceResolver | None = None,
    path: str = _RES,
) -> list[UnitProperty]:
    """Properties for `oci-systemd update`; device rules are only touched when some are given."""
    return _dedupe(_resource_properties(resources, block_device, creating=False, path=path))


def unsupported_settings(resources: Resources | None, path: str = _RES) -> list[str]:
    """JSON paths of set fields that no systemd property expresses, for the runtime to warn about."""
    if resources is None:
        return []
    out: list[str] = []
    if (m := resources.get("memory")) is not None:
        for key, is_set in (
            ("kernel", m.get("kernel") is not None),
            ("kernelTCP", m.get("kernelTCP") is not None),
            ("swappiness", m.get("swappiness") is not None),
            ("disableOOMKiller", bool(m.get("disableOOMKiller"))),
        ):
            if is_set:
                out.append(f"{path}.memory.{key}")
    if (c := resources.get("cpu")) is not None:
        for key, value in (
            ("realtimeRuntime", c.get("realtimeRuntime")),
            ("realtimePeriod", c.get("realtimePeriod")),
            ("burst", c.get("burst")),
            ("idle", c.get("idle")),
        ):
            if value:
                out.append(f"{path}.cpu.{key}")
    if (b := resources.get("blockIO")) is not None and b.get("leafWeight"):
        out.append(f"{path}.blockIO.leafWeight")
    if resources.get("hugepageLimits"):
        out.append(f"{path}.hugepageLimits")
    if (n := resources.get("network")) is not None and (n.get("classID") or n.get("priorities")):
        out.append(f"{path}.network")
    if resources.get("rdma"):
        out.append(f"{path}.rdma")
    return out


# ----------------------------------------------------------------------------------------------
# Conversions, each named after runc's and checked against its formulas in the unit tests.


def cpu_shares_to_weight(shares: int) -> int:
    """cgroup v1 cpu.shares [2, 262144] → v2 cpu.weight [1, 10000], linearly (runc, crun)."""
    shares = min(max(shares, 2), 262144)  # the kernel clamps shares to this range too
    return 1 + ((shares - 2) * 9999) // 262142


def blkio_weight_to_io_weight(weight: int) -> int:
    """cgroup v1 blkio.weight [10, 1000] → v2 io.weight [1, 10000] (runc's ConvertBlkIOToIOWeightValue)."""
    weight = min(max(weight, 10), 1000)
    return 1 + ((weight - 10) * 9999) // 990


def memory_swap_to_systemd(swap: int, limit: int | None, path: str = f"{_RES}.memory.swap") -> int | None:
    """OCI swap is memory+swap (v1 memsw); MemorySwapMax is swap alone (runc, crun subtract)."""
    memory = limit or 0
    if swap == 0:
        return None
    if swap == -1:
        return INFINITY
    if memory in (0, -1):
        raise SpecError(path, "a swap limit needs a memory limit (swap is memory+swap in OCI)")
    if swap < memory:
        raise SpecError(path, f"memory+swap limit {swap} is lower than the memory limit {memory}")
    return swap - memory


def cpu_quota_properties(quota: int | None, period: int | None) -> list[UnitProperty]:
    """CPUQuotaPerSecUSec/CPUQuotaPeriodUSec as runc's addCpuQuota computes them."""
    quota = quota or 0
    period = period or 0
    props: list[UnitProperty] = []
    if period:
        props.append(("CPUQuotaPeriodUSec", "t", period))
    if quota or period:
        per_sec = INFINITY
        if quota > 0:
            per_sec = quota * 1_000_000 // (period or DEFAULT_CPU_QUOTA_PERIOD)
            # systemd stores the quota as a whole percent of a CPU; round up to the next 10 ms
            # so the kernel quota is never lower than asked (runc does the same).
            if per_sec % 10_000:
                per_sec = (per_sec // 10_000 + 1) * 10_000
            per_sec = min(per_sec, INFINITY)
        props.append(("CPUQuotaPerSecUSec", "t", per_sec))
    return props


def cpu_list_to_bits(text: str, path: str = f"{_RES}.cpu.cpus") -> bytes:
    """ "0-3,5" → the AllowedCPUs/AllowedMemoryNodes mask: byte 0 holds CPUs 0-7, LSB first.

    systemd's byte order is little-endian by byte (runc#3611 fixed runc's big-endian version).
    """
    mask = 0
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo_s, dash, hi_s = part.partition("-")
        try:
            lo = _parse_cpu_number(lo_s)
            hi = _parse_cpu_number(hi_s) if dash else lo
        except ValueError:
            raise SpecError(path, f"invalid CPU list {text!r}") from None
        if lo > hi:
            raise SpecError(path, f"invalid range {part!r} in {text!r}")
        mask |= ((1 << (hi - lo + 1)) - 1) << lo
    if not mask:
        raise SpecError(path, f"empty CPU list {text!r}")
    return mask.to_bytes((mask.bit_length() + 7) // 8, "little")


def _parse_cpu_number(s: str) -> int:
    # The kernel takes no spaces inside a range ("1 - 2"), and CPU ids fit in 32 bits; a bound
    # also keeps a hostile "0-4294967295" from building a 512 MiB mask.
    if not s.isascii() or not s.isdigit():
        raise ValueError(s)
    n = int(s)
    if n >= 1 << 16:
        raise ValueError(s)
    return n


def resolve_block_device(major: int, minor: int) -> str | None:
    """/dev path of block device major:minor from sysfs, or None when there is no such device."""
    try:
        with open(f"/sys/dev/block/{major}:{minor}/uevent", encoding="utf-8") as f:
            for line in f:
                if line.startswith("DEVNAME="):
                    return "/dev/" + line.removeprefix("DEVNAME=").strip()
    except OSError:
        return None
    try:
        # No DEVNAME (very old kernels): the kernel name is the link's basename, '!' for '/'.
        return "/dev/" + os.path.basename(os.readlink(f"/sys/dev/block/{major}:{minor}")).replace("!", "/")
    except OSError:
        return None


# ----------------------------------------------------------------------------------------------
# linux.resources


def _resource_properties(
    r: Resources,
    block_device: BlockDeviceResolver | None,
    *,
    creating: bool,
    path: str = _RES,
) -> list[UnitProperty]:
    resolve = block_device or resolve_block_device
    props: list[UnitProperty] = []
    devices = r.get("devices") or []
    if creating or devices:
        props += device_properties(devices, path=f"{path}.devices")
    if (memory := r.get("memory")) is not None:
        props += _memory_properties(memory, f"{path}.memory")
    if (cpu := r.get("cpu")) is not None:
        props += _cpu_properties(cpu, f"{path}.cpu")
    if (pids := r.get("pids")) is not None and (limit := pids.get("limit")) is not None:
        props.append(("TasksMax", "t", INFINITY if limit <= 0 else limit))
    if (block_io := r.get("blockIO")) is not None:
        props += _block_io_properties(block_io, resolve, f"{path}.blockIO")
    if unified := r.get("unified"):
        props += unified_properties(unified, path=f"{path}.unified")
    return props


def _memory_properties(m: Memory, path: str) -> list[UnitProperty]:
    props: list[UnitProperty] = []
    limit, reservation, swap = m.get("limit"), m.get("reservation"), m.get("swap")
    if limit:
        props.append(("MemoryMax", "t", INFINITY if limit == -1 else limit))
    if reservation:
        props.append(("MemoryLow", "t", INFINITY if reservation == -1 else reservation))
    if swap is not None:
        swap = memory_swap_to_systemd(swap, limit, f"{path}.swap")
        if swap is not None:
            props.append(("MemorySwapMax", "t", swap))
    return props


def _cpu_properties(c: CPU, path: str) -> list[UnitProperty]:
    props: list[UnitProperty] = []
    if shares := c.get("shares"):
        props.append(("CPUWeight", "t", cpu_shares_to_weight(shares)))
    props += cpu_quota_properties(c.get("quota"), c.get("period"))
    if cpus := c.get("cpus"):
        props.append(("AllowedCPUs", "ay", cpu_list_to_bits(cpus, f"{path}.cpus")))
    if mems := c.get("mems"):
        props.append(("AllowedMemoryNodes", "ay", cpu_list_to_bits(mems, f"{path}.mems")))
    return props


def _block_io_properties(b: BlockIO, resolve: BlockDeviceResolver, path: str) -> list[UnitProperty]:
    def device(major: int, minor: int, at: str) -> str:
        dev = resolve(major, minor)
        if dev is None:
            raise SpecError(
                at, f"block device {major}:{minor} not found (no /sys/dev/block/{major}:{minor})"
            )
        return dev

    props: list[UnitProperty] = []
    if weight := b.get("weight"):
        props.append(("IOWeight", "t", blkio_weight_to_io_weight(weight)))
    weights = [
        (device(d["major"], d["minor"], f"{path}.weightDevice[{i}]"), blkio_weight_to_io_weight(w))
        for i, d in enumerate(b.get("weightDevice") or ())
        if (w := d.get("weight"))
    ]
    if weights:
        props.append(("IODeviceWeight", "a(st)", weights))

    def throttle(name: str, key: str, devices: Sequence[ThrottleDevice] | None) -> None:
        if devices:
            # A rate of 0 (or none) removes the limit (v1 semantics; runc writes "max" on v2).
            value = [
                (device(d["major"], d["minor"], f"{path}.{key}[{i}]"), d.get("rate") or INFINITY)
                for i, d in enumerate(devices)
            ]
            props.append((name, "a(st)", value))

    throttle("IOReadBandwidthMax", "throttleReadBpsDevice", b.get("throttleReadBpsDevice"))
    throttle("IOWriteBandwidthMax", "throttleWriteBpsDevice", b.get("throttleWriteBpsDevice"))
    throttle("IOReadIOPSMax", "throttleReadIOPSDevice", b.get("throttleReadIOPSDevice"))
    throttle("IOWriteIOPSMax", "throttleWriteIOPSDevice", b.get("throttleWriteIOPSDevice"))
    return props


# ----------------------------------------------------------------------------------------------
# Device rules. systemd only takes an allow-list (DevicePolicy=strict + DeviceAllow=), so the
# OCI rule list is first replayed as the cgroup v1 devices controller would apply it (runc's
# devices emulator), then the resulting allow-list is spelled the way systemd wants.

_WILD = -1  # also how Go generators spell "any" in a rule's major or minor

if TYPE_CHECKING:
    _DevKey = tuple[str, int, int]
    """(type "c" or "b", major, minor), _WILD for any."""


def device_properties(
    rules: Iterable[DeviceRule], *, path: str = f"{_RES}.devices", defaults: bool = True
) -> list[UnitProperty]:
    """DevicePolicy + DeviceAllow for the OCI rules, followed by DEFAULT_DEVICE_RULES if `defaults`."""
    default_allow = False  # systemd's "strict" starts from deny-all, as a fresh v1 allow-list
    allowed: dict[_DevKey, set[str]] = {}
    denied: dict[_DevKey, set[str]] = {}
    tagged = [(f"{path}[{i}]", r) for i, r in enumerate(rules)]
    if defaults:
        tagged += [(f"{path} (default device rules)", r) for r in DEFAULT_DEVICE_RULES]
    for at, rule in tagged:
        access = set(rule.get("access") or "rwm")
        type_ = rule.get("type")
        if type_ is None or type_ == "a":
            # "a" resets the whole list, whatever major/minor say (as the v1 kernel does).
            default_allow = rule["allow"]
            allowed.clear()
            denied.clear()
            continue
        major, minor = rule.get("major"), rule.get("minor")
        key = (type_, _WILD if major is None else major, _WILD if minor is None else minor)
        exceptions = denied if default_allow else allowed
        if rule["allow"] != default_allow:
            exceptions.setdefault(key, set()).update(access)
        else:
            _punch(exceptions, key, access, at)
    if default_allow:
        if denied:
            raise SpecError(
                path,
                "systemd cannot express an allow-all device policy with deny exceptions; "
                'start the rules with {"allow": false, "access": "rwm"} and list what to allow',
            )
        # DevicePolicy=auto with no DeviceAllow entries lets everything through.
        return [("DevicePolicy", "s", "auto"), ("DeviceAllow", "a(ss)", [])]
    entries: list[tuple[str, str]] = []
    for key in sorted(allowed):
        perms = "".join(c for c in "rwm" if c in allowed[key])
        if not perms:
            continue
        type_, major, minor = key
        group = "char" if type_ == "c" else "block"
        if major == _WILD:
            if minor != _WILD:
                # systemd has no "any major, this minor" form; leaving it out only denies more.
                continue
            entries.append((f"{group}-*", perms))
        elif minor == _WILD:
            entries.append((f"{group}-{major}", perms))  # systemd ≥ 240
        else:
            entries.append((f"/dev/{group}/{major}:{minor}", perms))
    # The empty DeviceAllow first resets the list when this is applied to a running unit.
    return [("DevicePolicy", "s", "strict"), ("DeviceAllow", "a(ss)", []), ("DeviceAllow", "a(ss)", entries)]


def _punch(exceptions: dict[_DevKey, set[str]], key: _DevKey, access: set[str], at: str) -> None:
    # Like runc's emulator: a narrower rule cannot remove access granted by a wildcard rule
    # (v1 ignored it silently, which is worse than an error).
    type_, major, minor = key
    for partial in ((type_, _WILD, minor), (type_, major, _WILD), (type_, _WILD, _WILD)):
        if partial == key:
            continue
        if exceptions.get(partial, set()) & access:
            raise SpecError(at, "cannot remove access from a device covered by an earlier wildcard rule")
    if key in exceptions:
        exceptions[key] -= access
        if not exceptions[key]:
            del exceptions[key]


# ----------------------------------------------------------------------------------------------
# linux.resources.unified: cgroup v2 file name → value, for the files systemd has a property for.

_MEMORY_FILES: Final = {
    "memory.max": "MemoryMax",
    "memory.high": "MemoryHigh",
    "memory.low": "MemoryLow",
    "memory.min": "MemoryMin",
    "memory.swap.max": "MemorySwapMax",
}


def unified_properties(unified: Mapping[str, str], *, path: str = f"{_RES}.unified") -> list[UnitProperty]:
    props: list[UnitProperty] = []
    for key, raw in unified.items():
        at = f"{path}[{jsonio.dumps(key)}]"
        value = raw.strip()  # the kernel tolerates surrounding whitespace; so do we
        if "/" in key or len(key.split(".", 1)) != 2:
            raise SpecError(at, "must be a cgroup file name of the form CONTROLLER.PARAMETER")
        if key in _MEMORY_FILES:
            props.append((_MEMORY_FILES[key], "t", _max_or_uint(value, at)))
        elif key == "pids.max":
            props.append(("TasksMax", "t", _max_or_uint(value, at)))
        elif key == "cpu.weight":
            props.append(("CPUWeight", "t", _uint_in(value, 1, 10000, at)))
        elif key == "io.weight":
            props += _io_weight(value, at)
        elif key == "cpu.max":
            fields = value.split()
            if not 1 <= len(fields) <= 2:
                raise SpecError(at, f'expected "QUOTA [PERIOD]", got {raw!r}')
            quota = 0 if fields[0] == "max" else _uint_in(fields[0], 1, U64_MAX, at)
            period = _uint_in(fields[1], 1, U64_MAX, at) if len(fields) == 2 else DEFAULT_CPU_QUOTA_PERIOD
            props += cpu_quota_properties(quota, period)
        elif key in ("cpuset.cpus", "cpuset.mems"):
            name = "AllowedCPUs" if key == "cpuset.cpus" else "AllowedMemoryNodes"
            props.append((name, "ay", cpu_list_to_bits(value, at)))
        else:
            raise SpecError(
                at, "no systemd unit property sets this cgroup file; oci-systemd cannot apply it"
            )
    return props


def _max_or_uint(value: str, at: str) -> int:
    return INFINITY if value == "max" else _uint_in(value, 0, U64_MAX, at)


def _uint_in(value: str, lo: int, hi: int, at: str) -> int:
    if not value.isascii() or not value.isdigit() or not lo <= int(value) <= hi:
        raise SpecError(at, f"expected an integer in [{lo}, {hi}], got {value!r}")
    return int(value)


def _io_weight(value: str, at: str) -> list[UnitProperty]:
    # io.weight is "N" or "default N"; per-device "MAJ:MIN N" lines would need device paths.
    fields = value.split()
    if len(fields) == 2 and fields[0] == "default":
        fields = fields[1:]
    if len(fields) != 1:
        raise SpecError(at, f'expected "WEIGHT" or "default WEIGHT", got {value!r}')
    return [("IOWeight", "t", _uint_in(fields[0], 1, 10000, at))]


def _dedupe(props: list[UnitProperty]) -> list[UnitProperty]:
    # Later settings win (annotations over resources, unified over structured fields); keep only
    # the last of each scalar so systemd is not asked to set a property twice. DeviceAllow is
    # additive on D-Bus (the empty list resets it), so its entries are all kept in order.
    last = {name: i for i, (name, _, _) in enumerate(props)}
    return [p for i, p in enumerate(props) if p[0] == "DeviceAllow" or last[p[0]] == i]


__all__ = [
    "ANNOTATION_PREFIX", "DEFAULT_CPU_QUOTA_PERIOD", "DEFAULT_DEVICE_RULES", "INFINITY",
    "annotation_properties", "blkio_weight_to_io_weight", "cpu_list_to_bits", "cpu_quota_properties",
    "cpu_shares_to_weight", "device_properties", "memory_swap_to_systemd", "parse_property_annotation",
    "resolve_block_device", "scope_properties", "unified_properties", "unsupported_settings",
    "update_properties",
]  # fmt: skip
