# SPDX-License-Identifier: Apache-2.0
"""linux.resources and org.systemd.property.* → systemd unit properties."""

from __future__ import annotations

from typing import Any

import pytest

from oci_systemd.errors import SpecError
from oci_systemd.runtime import resources as res
from oci_systemd.runtime import spec
from oci_systemd.runtime.default_config import default_config
from oci_systemd.runtime.resources import INFINITY

DEVICES = {8: {0: "/dev/sda", 16: "/dev/sdb"}}


def fake_block_device(major: int, minor: int) -> str | None:
    return DEVICES.get(major, {}).get(minor)


def props(raw: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, tuple[str, Any]]:
    """scope_properties without the device rules, as {name: (signature, value)}."""
    r = spec.parse_resources(raw)
    out = res.scope_properties(r, annotations or {}, block_device=fake_block_device)
    return {name: (sig, value) for name, sig, value in out if not name.startswith("Device")}


# ----------------------------------------------------------------------------------------------
# Conversions, checked against values computed with runc's and crun's formulas.


@pytest.mark.parametrize(
    ("shares", "weight"),
    [(2, 1), (1024, 39), (512, 20), (262144, 10000), (1, 1), (10**9, 10000), (100, 4)],
)
def test_cpu_shares_to_weight(shares: int, weight: int) -> None:
    assert res.cpu_shares_to_weight(shares) == weight


@pytest.mark.parametrize(
    ("blkio", "io"), [(10, 1), (1000, 10000), (500, 4950), (100, 910), (5, 1), (2000, 10000)]
)
def test_blkio_weight_to_io_weight(blkio: int, io: int) -> None:
    assert res.blkio_weight_to_io_weight(blkio) == io


def test_memory_properties() -> None:
    p = props({"memory": {"limit": 1 << 30, "reservation": 1 << 29, "swap": 3 << 29}})
    assert p["MemoryMax"] == ("t", 1 << 30)
    assert p["MemoryLow"] == ("t", 1 << 29)
    assert p["MemorySwapMax"] == ("t", (3 << 29) - (1 << 30))


def test_memory_unlimited() -> None:
    p = props({"memory": {"limit": -1, "reservation": -1, "swap": -1}})
    assert p["MemoryMax"] == ("t", INFINITY)
    assert p["MemoryLow"] == ("t", INFINITY)
    assert p["MemorySwapMax"] == ("t", INFINITY)


def test_memory_zero_means_unset() -> None:
    assert props({"memory": {"limit": 0, "swap": 0}}) == {}


@pytest.mark.parametrize(
    ("memory", "problem"),
    [({"swap": 100}, "needs a memory limit"), ({"limit": 200, "swap": 100}, "lower than the memory limit")],
)
def test_memory_swap_errors(memory: dict[str, int], problem: str) -> None:
    with pytest.raises(SpecError, match=problem) as info:
        props({"memory": memory})
    assert info.value.field == "linux.resources.memory.swap"


def test_cpu_weight_and_quota() -> None:
    p = props({"cpu": {"shares": 1024, "quota": 50000, "period": 100000}})
    assert p["CPUWeight"] == ("t", 39)
    assert p["CPUQuotaPerSecUSec"] == ("t", 500000)
    assert p["CPUQuotaPeriodUSec"] == ("t", 100000)


@pytest.mark.parametrize(
    ("quota", "period", "expected"),
    [
        (50000, None, [("CPUQuotaPerSecUSec", "t", 500000)]),
        # 12345/100000 of a CPU = 123450 µs/s, rounded up to the next 10 ms as runc does.
        (12345, 100000, [("CPUQuotaPeriodUSec", "t", 100000), ("CPUQuotaPerSecUSec", "t", 130000)]),
        (200000, 50000, [("CPUQuotaPeriodUSec", "t", 50000), ("CPUQuotaPerSecUSec", "t", 4000000)]),
        (-1, None, [("CPUQuotaPerSecUSec", "t", INFINITY)]),
        (-1, 100000, [("CPUQuotaPeriodUSec", "t", 100000), ("CPUQuotaPerSecUSec", "t", INFINITY)]),
        (None, None, []),
        (0, 0, []),
    ],
)
def test_cpu_quota(quota: int | None, period: int | None, expected: list[res.UnitProperty]) -> None:
    assert res.cpu_quota_properties(quota, period) == expected


@pytest.mark.parametrize(
    ("text", "mask"),
    [
        ("0", b"\x01"),
        ("1", b"\x02"),
        ("0-3", b"\x0f"),
        ("4-7", b"\xf0"),
        ("0-15", b"\xff\xff"),
        # systemd wants byte 0 = CPUs 0-7 (runc#3611): "16" is the third byte's lowest bit.
        ("16", b"\x00\x00\x01"),
        ("0-3,32-33", b"\x0f\x00\x00\x00\x03"),
        ("1, 2, 1-2", b"\x06"),
        ("    , 1   , 3  ,  5-7,\t", b"\xea"),
        ("10-23", b"\x00\xfc\xff"),
    ],
)
def test_cpu_list_to_bits(text: str, mask: bytes) -> None:
    assert res.cpu_list_to_bits(text) == mask


@pytest.mark.parametrize("text", ["", "-", "1-", "-3", "54-53", "1 - 2", "a", "0-99999999", ",", "½"])
def test_cpu_list_errors(text: str) -> None:
    with pytest.raises(SpecError):
        res.cpu_list_to_bits(text)


def test_cpuset_properties() -> None:
    p = props({"cpu": {"cpus": "0-3", "mems": "0"}})
    assert p["AllowedCPUs"] == ("ay", b"\x0f")
    assert p["AllowedMemoryNodes"] == ("ay", b"\x01")


@pytest.mark.parametrize(("limit", "tasks"), [(100, 100), (-1, INFINITY), (0, INFINITY), (-5, INFINITY)])
def test_pids(limit: int, tasks: int) -> None:
    assert props({"pids": {"limit": limit}})["TasksMax"] == ("t", tasks)


def test_pids_without_limit() -> None:
    assert "TasksMax" not in props({"pids": {}})


def test_block_io() -> None:
    p = props(
        {
            "blockIO": {
                "weight": 500,
                "weightDevice": [{"major": 8, "minor": 0, "weight": 100}, {"major": 8, "minor": 16}],
                "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1000}],
                "throttleWriteBpsDevice": [{"major": 8, "minor": 16, "rate": 2000}],
                "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 30}],
                "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 0}],
            }
        }
    )
    assert p["IOWeight"] == ("t", 4950)
    assert p["IODeviceWeight"] == ("a(st)", [("/dev/sda", 910)])
    assert p["IOReadBandwidthMax"] == ("a(st)", [("/dev/sda", 1000)])
    assert p["IOWriteBandwidthMax"] == ("a(st)", [("/dev/sdb", 2000)])
    assert p["IOReadIOPSMax"] == ("a(st)", [("/dev/sda", 30)])
    assert p["IOWriteIOPSMax"] == ("a(st)", [("/dev/sda", INFINITY)])


def test_block_io_unknown_device() -> None:
    with pytest.raises(SpecError, match="block device 9:9 not found") as info:
        props({"blockIO": {"throttleReadIOPSDevice": [{"major": 9, "minor": 9, "rate": 1}]}})
    assert info.value.field == "linux.resources.blockIO.throttleReadIOPSDevice[0]"


def test_resolve_block_device_missing() -> None:
    # Major 4095 is never assigned to a block driver.
    assert res.resolve_block_device(4095, 1048575) is None


# ----------------------------------------------------------------------------------------------
# Devices


def device_props(rules: list[dict[str, Any]], *, defaults: bool = False) -> list[res.UnitProperty]:
    return res.device_properties(
        spec.parse_resources({"devices": rules}).get("devices") or [], defaults=defaults
    )


def test_default_config_devices() -> None:
    linux = spec.parse(default_config()).get("linux")
    assert linux is not None
    out = res.scope_properties(linux.get("resources"), {})
    assert out[0] == ("DevicePolicy", "s", "strict")
    assert out[1] == ("DeviceAllow", "a(ss)", [])
    assert out[2] == (
        "DeviceAllow",
        "a(ss)",
        [
            ("block-*", "m"),
            ("char-*", "m"),
            ("/dev/char/1:3", "rwm"),
            ("/dev/char/1:5", "rwm"),
            ("/dev/char/1:7", "rwm"),
            ("/dev/char/1:8", "rwm"),
            ("/dev/char/1:9", "rwm"),
            ("/dev/char/5:0", "rwm"),
            ("/dev/char/5:2", "rwm"),
            ("char-136", "rwm"),
        ],
    )


def test_device_allow_forms() -> None:
    out = device_props(
        [
            {"allow": False, "access": "rwm"},
            {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rw"},
            {"allow": True, "type": "b", "major": 8, "access": "r"},
            {"allow": True, "type": "b", "access": "m"},
            {"allow": True, "type": "c", "minor": 3, "access": "r"},  # systemd cannot say "any major"
            {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "mr"},
        ]
    )
    assert out[-1] == (
        "DeviceAllow",
        "a(ss)",
        [("block-*", "m"), ("block-8", "r"), ("/dev/char/10:200", "rwm")],
    )


def test_device_deny_after_allow_removes_access() -> None:
    out = device_props(
        [
            {"allow": False, "access": "rwm"},
            {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "w"},
            {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "r"},
            {"allow": False, "type": "c", "major": 1, "minor": 5, "access": "r"},
        ]
    )
    assert out[-1] == ("DeviceAllow", "a(ss)", [("/dev/char/1:3", "rm")])


def test_device_cannot_punch_hole_in_wildcard() -> None:
    with pytest.raises(SpecError, match="wildcard") as info:
        device_props(
            [
                {"allow": False, "access": "rwm"},
                {"allow": True, "type": "c", "major": 1, "access": "rwm"},
                {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "w"},
            ]
        )
    assert info.value.field == "linux.resources.devices[2]"


def test_device_allow_all() -> None:
    assert device_props([{"allow": True, "access": "rwm"}]) == [
        ("DevicePolicy", "s", "auto"),
        ("DeviceAllow", "a(ss)", []),
    ]
    # the default rules do not turn an allow-all into an allow-list
    assert device_props([{"allow": True}], defaults=True)[0] == ("DevicePolicy", "s", "auto")


def test_device_allow_all_with_deny_exception_is_refused() -> None:
    with pytest.raises(SpecError, match="deny exceptions"):
        device_props(
            [{"allow": True, "access": "rwm"}, {"allow": False, "type": "c", "major": 1, "minor": 3}]
        )


def test_device_deny_all_resets_earlier_rules() -> None:
    out = device_props([{"allow": True, "type": "c", "major": 1, "minor": 3}, {"allow": False, "type": "a"}])
    assert out[-1] == ("DeviceAllow", "a(ss)", [])


def test_no_resources_no_properties() -> None:
    assert res.scope_properties(None, {}) == []


def test_update_leaves_devices_alone_without_rules() -> None:
    r = spec.parse_resources({"memory": {"limit": 100}})
    assert res.update_properties(r) == [("MemoryMax", "t", 100)]
    r = spec.parse_resources({"devices": [{"allow": True}]})
    assert res.update_properties(r)[0] == ("DevicePolicy", "s", "auto")


# ----------------------------------------------------------------------------------------------
# unified


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("memory.max", "1073741824", {"MemoryMax": ("t", 1073741824)}),
        ("memory.max", "max", {"MemoryMax": ("t", INFINITY)}),
        ("memory.low", " 1000\n", {"MemoryLow": ("t", 1000)}),
        ("memory.high", "2000", {"MemoryHigh": ("t", 2000)}),
        ("memory.min", "10", {"MemoryMin": ("t", 10)}),
        ("memory.swap.max", "max", {"MemorySwapMax": ("t", INFINITY)}),
        ("pids.max", "max", {"TasksMax": ("t", INFINITY)}),
        ("pids.max", "42", {"TasksMax": ("t", 42)}),
        ("cpu.weight", "150", {"CPUWeight": ("t", 150)}),
        (
            "cpu.max",
            "50000 100000",
            {"CPUQuotaPeriodUSec": ("t", 100000), "CPUQuotaPerSecUSec": ("t", 500000)},
        ),
        ("cpu.max", "max", {"CPUQuotaPeriodUSec": ("t", 100000), "CPUQuotaPerSecUSec": ("t", INFINITY)}),
        ("cpu.max", "25000", {"CPUQuotaPeriodUSec": ("t", 100000), "CPUQuotaPerSecUSec": ("t", 250000)}),
        ("cpuset.cpus", "0-1", {"AllowedCPUs": ("ay", b"\x03")}),
        ("cpuset.mems", "1", {"AllowedMemoryNodes": ("ay", b"\x02")}),
        ("io.weight", "default 200", {"IOWeight": ("t", 200)}),
        ("io.weight", "300", {"IOWeight": ("t", 300)}),
    ],
)
def test_unified(key: str, value: str, expected: dict[str, tuple[str, Any]]) -> None:
    assert props({"unified": {key: value}}) == expected


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("memory.max", "1G", "expected an integer"),
        ("memory.max", "-1", "expected an integer"),
        ("cpu.weight", "0", "[1, 10000]"),
        ("cpu.weight", "10001", "[1, 10000]"),
        ("cpu.max", "1 2 3", "QUOTA [PERIOD]"),
        ("cpu.max", "x 100", "expected an integer"),
        ("io.weight", "8:16 200", "default WEIGHT"),
        ("cpuset.cpus", "", "empty CPU list"),
        ("memory.oom.group", "1", "no systemd unit property"),
        ("hugetlb.2MB.max", "1", "no systemd unit property"),
        ("nodot", "1", "CONTROLLER.PARAMETER"),
    ],
)
def test_unified_errors(key: str, value: str, problem: str) -> None:
    with pytest.raises(SpecError) as info:
        props({"unified": {key: value}})
    assert info.value.field == f'linux.resources.unified["{key}"]'
    assert problem in info.value.problem


def test_unified_overrides_structured_value() -> None:
    out = res.scope_properties(
        spec.parse_resources({"memory": {"limit": 100}, "unified": {"memory.max": "200"}}), {}
    )
    assert [p for p in out if p[0] == "MemoryMax"] == [("MemoryMax", "t", 200)]


def test_unsupported_settings() -> None:
    r = spec.parse(
        {
            "ociVersion": "1.2.0",
            "linux": {
                "resources": {
                    "memory": {"kernel": 100, "swappiness": 0},
                    "cpu": {"realtimeRuntime": 5},
                    "hugepageLimits": [{"pageSize": "2MB", "limit": 1}],
                    "rdma": {"mlx": {"hcaHandles": 1}},
                }
            },
        }
    )
    linux = r.get("linux")
    assert linux is not None
    assert res.unsupported_settings(linux.get("resources")) == [
        "linux.resources.memory.kernel",
        "linux.resources.memory.swappiness",
        "linux.resources.cpu.realtimeRuntime",
        "linux.resources.hugepageLimits",
        "linux.resources.rdma",
    ]
    assert res.unsupported_settings(None) == []


# ----------------------------------------------------------------------------------------------
# org.systemd.property.* annotations


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("TimeoutStopUSec", "uint64 123456789", ("TimeoutStopUSec", "t", 123456789)),
        ("TimeoutStopUSec", "@t 5", ("TimeoutStopUSec", "t", 5)),
        ("TimeoutStopUSec", "100", ("TimeoutStopUSec", "t", 100)),
        ("TimeoutStopUSec", "'infinity'", ("TimeoutStopUSec", "t", INFINITY)),
        ("TimeoutStopSec", "30", ("TimeoutStopUSec", "t", 30_000_000)),
        ("TimeoutStopSec", "@u 2", ("TimeoutStopUSec", "t", 2_000_000)),
        ("RuntimeMaxSec", "1.5", ("RuntimeMaxUSec", "t", 1_500_000)),
        ("RuntimeMaxSec", "double 0.25", ("RuntimeMaxUSec", "t", 250_000)),
        ("CollectMode", "'inactive-or-failed'", ("CollectMode", "s", "inactive-or-failed")),
        ("Description", '"a \\"quoted\\" text"', ("Description", "s", 'a "quoted" text')),
        ("Description", "@s 'x'", ("Description", "s", "x")),
        ("Delegate", "true", ("Delegate", "b", True)),
        ("SendSIGKILL", "false", ("SendSIGKILL", "b", False)),
        ("SendSIGKILL", "@b false", ("SendSIGKILL", "b", False)),
        ("TasksMax", "100", ("TasksMax", "t", 100)),
        ("MemoryMax", "8589934592", ("MemoryMax", "t", 8589934592)),
        ("LimitNOFILE", "65536", ("LimitNOFILE", "t", 65536)),
        ("OOMScoreAdjust", "-100", ("OOMScoreAdjust", "i", -100)),
        ("OOMScoreAdjust", "@i 5", ("OOMScoreAdjust", "i", 5)),
        ("Nice", "int32 -5", ("Nice", "i", -5)),
        ("Something", "@x -9000000000", ("Something", "x", -9000000000)),
        ("Something", "uint32 0x10", ("Something", "u", 16)),
        ("Wants", "@as ['a.service', 'b.service']", ("Wants", "as", ["a.service", "b.service"])),
        ("Wants", "['a.service']", ("Wants", "as", ["a.service"])),
        ("Wants", "@as []", ("Wants", "as", [])),
        ("Things", "@au [1, 2]", ("Things", "au", [1, 2])),
        ("Things", "[1, 2]", ("Things", "ai", [1, 2])),
    ],
)
def test_annotation_values(name: str, value: str, expected: res.UnitProperty) -> None:
    assert res.parse_property_annotation("org.systemd.property." + name, value) == expected


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("Ab", "true", "invalid systemd property name"),
        ("Foo-Bar", "true", "invalid systemd property name"),
        ("Föö", "true", "invalid systemd property name"),
        ("Foo1", "true", "invalid systemd property name"),
        ("CollectMode", "inactive-or-failed", "cannot parse value"),
        ("Description", "'unterminated", "unterminated string"),
        ("Description", "'a' 'b'", "unexpected"),
        ("Description", "", "missing value"),
        ("TasksMax", "@t -1", "out of range"),
        ("Nice", "@y 256", "out of range"),
        ("Delegate", "@b 1", "cannot be read as D-Bus type 'b'"),
        ("Wants", "@as [1]", "cannot be read as D-Bus type 's'"),
        ("Wants", "[]", "empty array"),
        ("Wants", "['a', 1]", "different types"),
        ("Wants", "['a' 'b']", "expected ',' or ']'"),
        ("Foo", "@v 1", "unsupported type annotation"),
        ("TimeoutStopSec", "-1", "non-negative number of seconds"),
        ("TimeoutStopSec", "'soon'", "non-negative number of seconds"),
        ("TimeoutStopUSec", "true", "non-negative integer"),
        ("Other", "4294967296", "does not fit a D-Bus int32"),
    ],
)
def test_annotation_errors(name: str, value: str, problem: str) -> None:
    key = "org.systemd.property." + name
    with pytest.raises(SpecError) as info:
        res.annotation_properties({key: value})
    assert info.value.field == f'annotations["{key}"]'
    assert problem in info.value.problem


def test_annotations_come_last_and_win() -> None:
    r = spec.parse_resources({"pids": {"limit": 10}, "memory": {"limit": 100}})
    out = res.scope_properties(
        r,
        {
            "org.systemd.property.TasksMax": "uint64 20",
            "other.annotation": "ignored",
            "org.systemd.property.Foo": "1",
        },
        block_device=fake_block_device,
    )
    names = [p[0] for p in out if not p[0].startswith("Device")]
    assert names == ["MemoryMax", "Foo", "TasksMax"]
    assert ("TasksMax", "t", 20) in out and ("TasksMax", "t", 10) not in out


def test_annotations_without_resources() -> None:
    assert res.scope_properties(None, {"org.systemd.property.CPUWeight": "50"}) == [("CPUWeight", "t", 50)]


def test_json_nulls_read_as_absent() -> None:
    """Validation keeps a JSON null (Go generators write one for a nil field); the conversions
    read the validated dict and must take it for an absent key."""
    nulls = {
        "devices": None,
        "memory": {"limit": 100, "swap": None, "reservation": None},
        "cpu": {"shares": None, "quota": None, "period": None, "cpus": None},
        "pids": {"limit": None},
        "blockIO": {"weight": None, "weightDevice": None, "throttleReadBpsDevice": None},
        "network": None,
        "unified": None,
    }
    r = spec.parse_resources(nulls)
    assert res.scope_properties(r, {}) == res.scope_properties(
        spec.parse_resources({"memory": {"limit": 100}}), {}
    )
    assert res.unsupported_settings(r) == []
    rule = spec.parse_resources({"devices": [{"allow": True, "type": "c", "major": None, "minor": None}]})
    wild = spec.parse_resources({"devices": [{"allow": True, "type": "c", "major": -1, "minor": -1}]})
    assert res.device_properties(rule.get("devices") or [], defaults=False) == res.device_properties(
        wild.get("devices") or [], defaults=False
    )
