# SPDX-License-Identifier: Apache-2.0
"""spec.parse/load: good configs parse to the right values, bad ones name the bad field."""

from __future__ import annotations

import copy
import itertools
import json
import os
import re
from pathlib import Path
from typing import Any, cast

import pytest

from oci_systemd.errors import InvalidIdError, SpecError
from oci_systemd.runtime import spec
from oci_systemd.runtime.default_config import default_config

DELETE = object()


def edit(config: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    """A copy of `config` with the value at `path` ("linux.namespaces[2].type") replaced or deleted."""
    out = copy.deepcopy(config)
    parts: list[str | int] = []
    for name, index in re.findall(r"([A-Za-z0-9_]+)|\[(\d+)\]", path):
        parts.append(name if name else int(index))
    node: Any = out
    for part, after in itertools.pairwise(parts):
        if isinstance(part, str) and part not in node:
            node[part] = [] if isinstance(after, int) else {}
        node = node[part]
    if value is DELETE:
        del node[parts[-1]]
    elif isinstance(parts[-1], int) and parts[-1] == len(node):
        node.append(value)
    else:
        node[parts[-1]] = value
    return out


def base() -> dict[str, Any]:
    # The tests edit it into shapes config.Config refuses (that is what they check): as a
    # document before validation it is a dict of anything.
    return cast("dict[str, Any]", default_config(cgroup2=True))


# A config in the shape runc 1.1 writes with `runc spec`, by hand, so a drift in default_config
# cannot hide a parser bug.
RUNC_SPEC = {
    "ociVersion": "1.0.2-dev",
    "process": {
        "terminal": True,
        "user": {"uid": 0, "gid": 0},
        "args": ["sh"],
        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
        "cwd": "/",
        "capabilities": {
            "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "inheritable": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "ambient": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
        },
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": True,
    },
    "root": {"path": "rootfs", "readonly": True},
    "hostname": "runc",
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
    ],
    "linux": {
        "resources": {"devices": [{"allow": False, "access": "rwm"}]},
        "namespaces": [
            {"type": "pid"},
            {"type": "network"},
            {"type": "ipc"},
            {"type": "uts"},
            {"type": "mount"},
        ],
        "maskedPaths": ["/proc/kcore"],
        "readonlyPaths": ["/proc/sys"],
    },
}


def full_config() -> dict[str, Any]:
    """Every field of runtime-spec 1.2 that spec.py reads, set to a non-default value."""
    hook = {"path": "/usr/bin/hook", "args": ["hook", "x"], "env": ["A=1"], "timeout": 5}
    return {
        "ociVersion": "1.2.0",
        "root": {"path": "/var/lib/rootfs", "readonly": True},
        "hostname": "box",
        "domainname": "example.org",
        "annotations": {"org.systemd.property.TimeoutStopSec": "30", "x": "y"},
        "mounts": [
            {
                "destination": "/data",
                "type": "bind",
                "source": "/srv/data",
                "options": ["rbind", "ro"],
                "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
                "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
            }
        ],
        "process": {
            "terminal": True,
            "consoleSize": {"height": 24, "width": 80},
            "user": {"uid": 1, "gid": 2, "umask": 18, "additionalGids": [3, 4], "username": "daemon"},
            "args": ["/bin/sh", "-c", "true"],
            "commandLine": "sh",
            "env": ["PATH=/bin", "EMPTY="],
            "cwd": "/tmp",
            "capabilities": {
                "bounding": ["CAP_KILL"],
                "effective": ["CAP_KILL"],
                "inheritable": [],
                "permitted": ["CAP_KILL"],
                "ambient": ["CAP_KILL"],
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 4096}],
            "noNewPrivileges": True,
            "apparmorProfile": "profile",
            "selinuxLabel": "system_u:system_r:container_t:s0",
            "oomScoreAdj": -500,
            "ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 4},
            "scheduler": {
                "policy": "SCHED_DEADLINE",
                "nice": 1,
                "priority": 0,
                "flags": ["SCHED_FLAG_RESET_ON_FORK"],
                "runtime": 10,
                "deadline": 20,
                "period": 30,
            },
            "execCPUAffinity": {"initial": "0", "final": "0-3,7"},
        },
        "hooks": {
            "prestart": [hook],
            "createRuntime": [hook],
            "createContainer": [hook],
            "startContainer": [hook],
            "poststart": [hook],
            "poststop": [hook, {"path": "/bin/true"}],
        },
        "linux": {
            "namespaces": [
                {"type": "pid"},
                {"type": "network", "path": "/run/netns/x"},
                {"type": "mount"},
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "user"},
                {"type": "cgroup"},
                {"type": "time"},
            ],
            "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
            "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
            "devices": [
                {
                    "type": "c",
                    "path": "/dev/fuse",
                    "major": 10,
                    "minor": 229,
                    "fileMode": 438,
                    "uid": 0,
                    "gid": 0,
                },
                {"type": "p", "path": "/dev/fifo"},
            ],
            "netDevices": {"eth1": {"name": "eth0"}},
            "cgroupsPath": "system.slice:oci:box",
            "resources": {
                "devices": [
                    {"allow": False, "access": "rwm"},
                    {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"},
                ],
                "memory": {
                    "limit": 536870912,
                    "reservation": 268435456,
                    "swap": 1073741824,
                    "kernel": -1,
                    "kernelTCP": -1,
                    "swappiness": 0,
                    "disableOOMKiller": False,
                    "useHierarchy": True,
                    "checkBeforeUpdate": True,
                },
                "cpu": {
                    "shares": 1024,
                    "quota": 50000,
                    "burst": 1000,
                    "period": 100000,
                    "realtimeRuntime": 950000,
                    "realtimePeriod": 1000000,
                    "cpus": "0-3",
                    "mems": "0",
                    "idle": 0,
                },
                "pids": {"limit": 100},
                "blockIO": {
                    "weight": 500,
                    "leafWeight": 300,
                    "weightDevice": [{"major": 8, "minor": 0, "weight": 500, "leafWeight": 300}],
                    "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 600}],
                    "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 700}],
                    "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 800}],
                    "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 900}],
                },
                "hugepageLimits": [{"pageSize": "2MB", "limit": 9223372036854772736}],
                "network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 500}]},
                "rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}},
                "unified": {"memory.high": "max", "io.weight": "default 100"},
            },
            "rootfsPropagation": "slave",
            "seccomp": {
                "defaultAction": "SCMP_ACT_ERRNO",
                "defaultErrnoRet": 1,
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
                "flags": ["SECCOMP_FILTER_FLAG_LOG"],
                "listenerPath": "/run/seccomp.sock",
                "listenerMetadata": "meta",
                "syscalls": [
                    {
                        "names": ["personality"],
                        "action": "SCMP_ACT_ALLOW",
                        "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}],
                    },
                    {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY", "errnoRet": 5},
                ],
            },
            "sysctl": {"net.ipv4.ip_forward": "1"},
            "maskedPaths": ["/proc/kcore"],
            "readonlyPaths": ["/proc/sys"],
            "mountLabel": "system_u:object_r:container_file_t:s0",
            "intelRdt": {
                "closID": "guaranteed_group",
                "l3CacheSchema": "L3:0=7f0",
                "memBwSchema": "MB:0=20",
                "enableCMT": True,
                "enableMBM": True,
            },
            "personality": {"domain": "LINUX32", "flags": []},
            "timeOffsets": {
                "boottime": {"secs": 1, "nanosecs": 2},
                "monotonic": {"secs": -3, "nanosecs": 4},
            },
        },
    }


# ----------------------------------------------------------------------------------------------
# Good configs


@pytest.mark.parametrize("rootless", [False, True])
def test_default_config_parses(rootless: bool) -> None:
    config = default_config(rootless=rootless)
    assert spec.parse(config) is config


@pytest.mark.parametrize(
    "config", [RUNC_SPEC, full_config(), {"ociVersion": "1.2.0"}], ids=["runc", "full", "minimal"]
)
def test_parse_returns_the_config_it_checked_unchanged(config: dict[str, Any]) -> None:
    """The validated dict is the one model the runtime and the idler read: nothing is built,
    converted or filled in (container/config.py describes it)."""
    before = copy.deepcopy(config)
    assert spec.parse(config) is config
    assert config == before


def test_unknown_fields_are_ignored() -> None:
    config = base()
    config["futureField"] = {"anything": [1, 2]}
    config["process"]["newKnob"] = True
    config["linux"]["resources"]["newController"] = {"x": 1}
    config["linux"]["namespaces"][0]["extra"] = "x"
    config["windows"] = {"layerFolders": []}
    assert spec.parse(config)["process"]["args"] == base()["process"]["args"]


def test_null_is_absent() -> None:
    # Go generators emit null for nil pointers and slices; what reads the config reads a null
    # as an absent key (resources, process: tested there).
    config = edit(base(), "hooks", None)
    config = edit(config, "linux.seccomp", None)
    config = edit(config, "process.capabilities.ambient", None)
    config = edit(config, "process.user", None)
    config = edit(config, "linux.resources.memory", None)
    spec.parse(config)


def test_process_user_may_be_absent() -> None:
    spec.parse(edit(base(), "process.user", DELETE))


def test_parse_process_for_exec() -> None:
    process = {"args": ["ls"], "cwd": "/", "user": {"uid": 5, "gid": 5}}
    assert spec.parse_process(process) is process
    with pytest.raises(SpecError, match=r"process\.cwd: required field missing"):
        spec.parse_process({"args": ["ls"]})


def test_parse_resources_alone_for_update() -> None:
    resources = {"memory": {"limit": 1000}, "pids": {"limit": 10}}
    assert spec.parse_resources(resources, path="") is resources
    with pytest.raises(SpecError, match=r"memory\.limit: expected an integer, got string"):
        spec.parse_resources({"memory": {"limit": "1G"}}, path="")


def test_device_rule_wildcards() -> None:
    spec.parse_resources({"devices": [{"allow": True, "type": "c", "major": -1, "minor": 5, "access": "r"}]})
    with pytest.raises(SpecError, match=r"devices\[0\]\.major: -2 is out of range"):
        spec.parse_resources({"devices": [{"allow": True, "type": "c", "major": -2}]})


# ----------------------------------------------------------------------------------------------
# Bad configs: each case is (path to edit, new value or DELETE, expected field, problem fragment).

BAD: list[tuple[str, object, str, str]] = [
    ("ociVersion", DELETE, "ociVersion", "required field missing"),
    ("ociVersion", 1, "ociVersion", "expected a string, got int"),
    ("ociVersion", "2.0.0", "ociVersion", "expected 1.x"),
    ("ociVersion", "banana", "ociVersion", "unsupported version"),
    ("root", "rootfs", "root", "expected an object, got string"),
    ("root.path", DELETE, "root.path", "required field missing"),
    ("root.path", "", "root.path", "must not be empty"),
    ("root.readonly", "yes", "root.readonly", "expected a boolean, got string"),
    ("process.args", DELETE, "process.args", "required field missing"),
    ("process.args", [], "process.args", "must not be empty"),
    ("process.args[0]", 5, "process.args[0]", "expected a string, got int"),
    ("process.args[0]", "s\0h", "process.args[0]", "NUL"),
    ("process.args", "sh", "process.args", "expected an array, got string"),
    ("process.cwd", DELETE, "process.cwd", "required field missing"),
    ("process.cwd", "tmp", "process.cwd", "must be an absolute path"),
    ("process.env[0]", "NOEQUALS", "process.env[0]", "expected KEY=VALUE"),
    ("process.env[1]", "=x", "process.env[1]", "name must not be empty"),
    ("process.terminal", 1, "process.terminal", "expected a boolean, got int"),
    ("process.user.uid", DELETE, "process.user.uid", "required field missing"),
    ("process.user.gid", DELETE, "process.user.gid", "required field missing"),
    ("process.user.uid", -1, "process.user.uid", "out of range"),
    ("process.user.uid", 2**32, "process.user.uid", "out of range"),
    ("process.user.gid", 1.0, "process.user.gid", "expected an integer, got float"),
    ("process.user.uid", True, "process.user.uid", "expected an integer, got bool"),
    ("process.user.additionalGids", [1, "2"], "process.user.additionalGids[1]", "expected an integer"),
    # An unknown capability name is a warning (test_unknown_capabilities_are_warnings), a non-string is not.
    ("process.capabilities.bounding[1]", 7, "process.capabilities.bounding[1]", "expected a string"),
    ("process.rlimits[0].type", "RLIMIT_FOO", "process.rlimits[0].type", 'unknown rlimit type "RLIMIT_FOO"'),
    ("process.rlimits[0].type", "NOFILE", "process.rlimits[0].type", "unknown rlimit type"),
    ("process.rlimits[0].hard", 2**64, "process.rlimits[0].hard", "out of range"),
    ("process.rlimits[0].soft", -1, "process.rlimits[0].soft", "out of range"),
    ("process.rlimits[0].soft", 4096, "process.rlimits[0].soft", "exceeds hard limit"),
    ("process.rlimits[0].hard", DELETE, "process.rlimits[0].hard", "required field missing"),
    (
        "process.rlimits[1]",
        {"type": "RLIMIT_NOFILE", "soft": 1, "hard": 1},
        "process.rlimits[1].type",
        "duplicate rlimit type",
    ),
    ("process.oomScoreAdj", 1001, "process.oomScoreAdj", "out of range [-1000, 1000]"),
    ("process.oomScoreAdj", -1001, "process.oomScoreAdj", "out of range"),
    ("process.consoleSize", {"height": 1}, "process.consoleSize.width", "required field missing"),
    (
        "process.ioPriority",
        {"class": "IOPRIO_CLASS_X"},
        "process.ioPriority.class",
        "unknown I/O priority class",
    ),
    ("process.scheduler", {"policy": "SCHED_FAST"}, "process.scheduler.policy", "unknown scheduler policy"),
    ("process.execCPUAffinity", {"initial": "a-b"}, "process.execCPUAffinity.initial", "CPU list"),
    ("mounts[1].destination", "dev", "mounts[1].destination", "must be an absolute path"),
    ("mounts[1].destination", DELETE, "mounts[1].destination", "required field missing"),
    ("mounts[2].destination", "/dev/../../etc", "mounts[2].destination", "'..'"),
    ("mounts[0].options", ["ro", None], "mounts[0].options[1]", "expected a string, got null"),
    ("mounts", {}, "mounts", "expected an array, got object"),
    ("mounts[0]", "proc", "mounts[0]", "expected an object, got string"),
    ("mounts[0].uidMappings", [{"containerID": 0, "hostID": 0}], "mounts[0].uidMappings[0].size", "missing"),
    ("hooks.prestart[0]", {"path": "hook"}, "hooks.prestart[0].path", "must be an absolute path"),
    ("hooks.poststop[0]", {"args": []}, "hooks.poststop[0].path", "required field missing"),
    (
        "hooks.createRuntime[0]",
        {"path": "/h", "timeout": 0},
        "hooks.createRuntime[0].timeout",
        "out of range",
    ),
    ("hooks.poststart", {"path": "/h"}, "hooks.poststart", "expected an array"),
    ("annotations.x", 1, "annotations.x", "expected a string, got int"),
    ("annotations", {"org.example.key": 5}, 'annotations["org.example.key"]', "expected a string"),
    ("annotations", {"": "v"}, "annotations", "keys must not be empty"),
    ("hostname", 7, "hostname", "expected a string, got int"),
    ("linux.namespaces[2].type", "foo", "linux.namespaces[2].type", 'unknown namespace type "foo"'),
    ("linux.namespaces[1].type", DELETE, "linux.namespaces[1].type", "required field missing"),
    ("linux.namespaces[5]", {"type": "pid"}, "linux.namespaces[5].type", 'duplicate namespace type "pid"'),
    ("linux.namespaces[0].path", "proc/1/ns/pid", "linux.namespaces[0].path", "must be an absolute path"),
    ("linux.namespaces", [{"type": "pid"}], "hostname", "requires a uts namespace"),
    (
        "linux.uidMappings",
        [{"containerID": 0, "hostID": 1, "size": 1}],
        "linux.uidMappings",
        "user namespace",
    ),
    ("linux.timeOffsets", {"boottime": {"secs": 1}}, "linux.timeOffsets", "requires a time namespace"),
    ("linux.devices", [{"type": "x", "path": "/dev/x"}], "linux.devices[0].type", "unknown device type"),
    ("linux.devices", [{"type": "c", "path": "/dev/x", "major": 1}], "linux.devices[0].minor", "missing"),
    (
        "linux.devices",
        [{"type": "c", "path": "dev/x", "major": 1, "minor": 1}],
        "linux.devices[0].path",
        "absolute",
    ),
    (
        "linux.resources.devices[0].allow",
        DELETE,
        "linux.resources.devices[0].allow",
        "required field missing",
    ),
    ("linux.resources.devices[0].access", "rwx", "linux.resources.devices[0].access", "r, w and m"),
    ("linux.resources.devices[0].type", "z", "linux.resources.devices[0].type", "unknown device type"),
    ("linux.resources.memory", {"limit": -2}, "linux.resources.memory.limit", "out of range"),
    ("linux.resources.memory", {"limit": 2**63}, "linux.resources.memory.limit", "out of range"),
    ("linux.resources.cpu", {"shares": -1}, "linux.resources.cpu.shares", "out of range"),
    ("linux.resources.cpu", {"cpus": "zero"}, "linux.resources.cpu.cpus", "CPU list"),
    ("linux.resources.pids", {"limit": "max"}, "linux.resources.pids.limit", "expected an integer"),
    ("linux.resources.blockIO", {"weight": 70000}, "linux.resources.blockIO.weight", "out of range"),
    (
        "linux.resources.blockIO",
        {"throttleReadBpsDevice": [{"major": 8, "rate": 1}]},
        "linux.resources.blockIO.throttleReadBpsDevice[0].minor",
        "required field missing",
    ),
    (
        "linux.resources.hugepageLimits",
        [{"pageSize": "2M", "limit": 1}],
        "linux.resources.hugepageLimits[0].pageSize",
        "2MB",
    ),
    ("linux.resources.unified", {"../x": "1"}, 'linux.resources.unified["../x"]', "no '/'"),
    (
        "linux.resources.unified",
        {"memory.max": 5},
        'linux.resources.unified["memory.max"]',
        "expected a string",
    ),
    (
        "linux.rootfsPropagation",
        "rbogus",
        "linux.rootfsPropagation",
        'unknown rootfs propagation "rbogus"',
    ),
    ("linux.seccomp", {}, "linux.seccomp.defaultAction", "required field missing"),
    ("linux.seccomp", {"defaultAction": "ALLOW"}, "linux.seccomp.defaultAction", "unknown seccomp action"),
    (
        "linux.seccomp",
        {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}]},
        "linux.seccomp.syscalls[0].names",
        "must not be empty",
    ),
    (
        "linux.seccomp",
        {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["x86_64"]},
        "linux.seccomp.architectures[0]",
        "unknown seccomp architecture",
    ),
    (
        "linux.seccomp",
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["a"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 6, "value": 0, "op": "x"}]}
            ],
        },
        "linux.seccomp.syscalls[0].args[0].index",
        "out of range",
    ),
    ("linux.seccomp", {"defaultAction": "SCMP_ACT_NOTIFY"}, "linux.seccomp.listenerPath", "SCMP_ACT_NOTIFY"),
    ("linux.sysctl", {"net.ipv4.ip_forward": 1}, 'linux.sysctl["net.ipv4.ip_forward"]', "expected a string"),
    ("linux.maskedPaths", "/proc", "linux.maskedPaths", "expected an array"),
    ("linux.personality", {"domain": "BSD"}, "linux.personality.domain", "unknown personality domain"),
    (
        "linux.personality",
        {"domain": "LINUX", "flags": ["ADDR_NO_RANDOMIZE"]},
        "linux.personality.flags",
        "personality flags are not supported",
    ),
    ("linux.cgroupsPath", ["a"], "linux.cgroupsPath", "expected a string, got array"),
    ("linux", [], "linux", "expected an object, got array"),
]


@pytest.mark.parametrize(
    ("path", "value", "field", "problem"), BAD, ids=[f"{c[0]}={c[1]!r}"[:60] for c in BAD]
)
def test_bad_config(path: str, value: object, field: str, problem: str) -> None:
    config = edit(base(), path, value)
    with pytest.raises(SpecError) as info:
        spec.parse(config)
    assert info.value.field == field
    assert problem in info.value.problem
    assert str(info.value).startswith(f"invalid config.json: {field}: ")


@pytest.mark.parametrize("raw", [[], "x", 1, None, True])
def test_top_level_not_an_object(raw: object) -> None:
    with pytest.raises(SpecError, match="expected an object"):
        spec.parse(raw)


# ----------------------------------------------------------------------------------------------
# load()


def test_load_returns_the_config(tmp_path: Path) -> None:
    config = full_config()
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert spec.load(tmp_path) == config


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        spec.load(tmp_path)
    assert "no such file or directory" in str(info.value)
    assert str(tmp_path / "config.json") in str(info.value)


def test_load_bad_json_reports_position(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{\n  "ociVersion": "1.2.0",\n  "root": {\n}}}\n')
    with pytest.raises(SpecError, match=r"line 4 column 3"):
        spec.load(tmp_path)


@pytest.mark.parametrize("text", [b"[1, 2]", b'"string"', b"\xff\xfe{}", b""])
def test_load_rejects_non_objects_and_garbage(tmp_path: Path, text: bytes) -> None:
    (tmp_path / "config.json").write_bytes(text)
    with pytest.raises(SpecError):
        spec.load(tmp_path)


def test_load_directory_instead_of_file(tmp_path: Path) -> None:
    (tmp_path / "config.json").mkdir()
    with pytest.raises(SpecError, match=r"config\.json"):
        spec.load(tmp_path)


# ----------------------------------------------------------------------------------------------
# Container ids (runc's rule)


@pytest.mark.parametrize("cid", ["a", "abc-123", "A_b.c+d", "x" * 237, "...", ".a", "-"])
def test_valid_container_ids(cid: str) -> None:
    spec.validate_container_id(cid)


@pytest.mark.parametrize(
    "cid",
    ["", ".", "..", "a/b", "/", "a b", "a\0b", "ä", "x" * 1025, "a\n", "a:b", "a;rm", "$(x)", "a*"],
)
def test_invalid_container_ids(cid: str) -> None:
    with pytest.raises(InvalidIdError, match="invalid container id"):
        spec.validate_container_id(cid)


# -- config.json that never ends (issue 14.5) ------------------------------------------------------


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "directory", "huge"])
def test_endless_or_odd_config_files_are_refused(tmp_path: Path, kind: str) -> None:
    config = tmp_path / "config.json"
    if kind == "dev-zero":
        config.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(config)  # opened for reading, it would block until a writer comes
    elif kind == "directory":
        config.mkdir()
    else:
        with config.open("wb") as f:
            f.truncate(spec.MAX_CONFIG_SIZE + 1)
    want = "larger than 4 MiB" if kind == "huge" else "not a regular file"
    with pytest.raises(SpecError, match=want):
        spec.load(tmp_path)


def test_config_symlink_to_a_regular_file_is_followed(tmp_path: Path) -> None:
    """As runc: a bundle may link its config.json elsewhere."""
    real = tmp_path / "real.json"
    real.write_text(json.dumps(default_config()))
    (tmp_path / "config.json").symlink_to(real)
    raw = spec.load(tmp_path)
    assert raw["ociVersion"] == default_config()["ociVersion"]


# -- issue 13: propagation values, sysctl against hostname, no mount namespace --------------------


@pytest.mark.parametrize(
    "value", ["private", "rprivate", "shared", "rshared", "slave", "rslave", "unbindable", "runbindable"]
)
def test_rootfs_propagation_takes_mount8_values(value: str) -> None:
    spec.parse(edit(base(), "linux.rootfsPropagation", value))


@pytest.mark.parametrize(
    ("field", "key"),
    [("hostname", "kernel.hostname"), ("domainname", "kernel.domainname"), ("hostname", "kernel/hostname")],
)
def test_sysctl_conflicting_with_uts_field_is_refused(field: str, key: str) -> None:
    config = edit(edit(base(), field, "x"), "linux.sysctl", {key: "y"})
    with pytest.raises(SpecError) as info:
        spec.parse(config)
    assert (
        info.value.field.startswith("linux.sysctl")
        and f"conflicts with the {field} field" in info.value.problem
    )


def test_uts_sysctl_without_the_field_is_accepted() -> None:
    config = edit(base(), "linux.sysctl", {"kernel.domainname": "y"})
    config.pop("domainname", None)
    spec.parse(config)


def _without_mount_ns() -> dict[str, Any]:
    config = base()
    config["linux"]["namespaces"] = [ns for ns in config["linux"]["namespaces"] if ns["type"] != "mount"]
    config["mounts"] = []
    config["linux"].pop("maskedPaths", None)
    config["linux"].pop("readonlyPaths", None)
    config["root"]["readonly"] = False
    return config


def test_without_mount_namespace_a_plain_config_is_accepted() -> None:
    spec.parse(_without_mount_ns())


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("mounts", [{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}]),
        ("linux.maskedPaths", ["/proc/kcore"]),
        ("linux.readonlyPaths", ["/proc/sys"]),
        ("linux.rootfsPropagation", "slave"),
        ("root.readonly", True),
        ("linux.namespaces", [{"type": "uts"}, {"type": "user"}]),
    ],
)
def test_without_mount_namespace_what_needs_a_mount_is_refused(path: str, value: object) -> None:
    with pytest.raises(SpecError) as info:
        spec.parse(edit(_without_mount_ns(), path, value))
    assert info.value.field == path and "mount namespace" in info.value.problem


def test_unknown_capabilities_are_warnings() -> None:
    """runtime-spec 1.2: an unknown or ungrantable capability is logged, and SHOULD NOT fail."""
    caps = spec.parse_process(
        {
            "args": ["sh"],
            "cwd": "/",
            "capabilities": {
                "bounding": ["CAP_KILL", "CAP_FLY", "CAP_BPF"],
                "effective": ["CAP_FLY", "kill", "fly"],
            },
        }
    ).get("capabilities")
    assert spec.capability_warnings(caps, last_cap=40) == [
        'process.capabilities: unknown capability "CAP_FLY" ignored (in bounding, effective)',
        'process.capabilities: unknown capability "fly" ignored (in effective)',
    ], '"kill" is CAP_KILL to process.cap_mask: applied, so no warning'

    assert spec.capability_warnings(caps, last_cap=38)[0] == (
        'process.capabilities: unknown capability "CAP_FLY" ignored (in bounding, effective)'
    )
    assert 'capability unknown to this kernel "CAP_BPF" ignored (in bounding)' in " ".join(
        spec.capability_warnings(caps, last_cap=38)
    )
    assert spec.capability_warnings(None, last_cap=40) == []
