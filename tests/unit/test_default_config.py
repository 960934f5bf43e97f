# SPDX-License-Identifier: Apache-2.0
"""default_config() is runc's `spec` template (hostname aside) and its rootless variant."""

from __future__ import annotations

import json
import os

import pytest

from oci_systemd import OCI_VERSION
from oci_systemd.runtime import spec
from oci_systemd.runtime.default_config import default_config


def test_matches_runc_example() -> None:
    c = default_config(cgroup2=False)
    assert c["ociVersion"] == OCI_VERSION
    assert c["hostname"] == "oci-systemd"
    assert c["root"] == {"path": "rootfs", "readonly": True}
    p = c["process"]
    assert p["terminal"] is True and p["args"] == ["sh"] and p["cwd"] == "/"
    assert p["user"] == {"uid": 0, "gid": 0}
    assert p["noNewPrivileges"] is True
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    assert p["capabilities"] == {"bounding": caps, "effective": caps, "permitted": caps}
    assert p["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
    assert [m["destination"] for m in c["mounts"]] == [
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        "/sys/fs/cgroup",
    ]
    assert c["mounts"][2]["options"] == [
        "nosuid",
        "noexec",
        "newinstance",
        "ptmxmode=0666",
        "mode=0620",
        "gid=5",
    ]
    linux = c["linux"]
    assert [ns["type"] for ns in linux["namespaces"]] == ["pid", "network", "ipc", "uts", "mount"]
    assert linux["resources"] == {"devices": [{"allow": False, "access": "rwm"}]}
    assert "/proc/kcore" in linux["maskedPaths"] and len(linux["maskedPaths"]) == 11
    assert linux["readonlyPaths"] == [
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ]


def test_cgroup_namespace_only_on_cgroup2() -> None:
    types = [ns["type"] for ns in default_config(cgroup2=True)["linux"]["namespaces"]]
    assert types[-1] == "cgroup"
    assert "cgroup" not in [ns["type"] for ns in default_config(cgroup2=False)["linux"]["namespaces"]]


def test_rootless_variant() -> None:
    c = default_config(rootless=True, cgroup2=True)
    linux = c["linux"]
    types = [ns["type"] for ns in linux["namespaces"]]
    assert "network" not in types and types[-1] == "user"
    assert linux["uidMappings"] == [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
    assert linux["gidMappings"] == [{"containerID": 0, "hostID": os.getegid(), "size": 1}]
    assert "resources" not in linux
    sys_mounts = [m for m in c["mounts"] if m["destination"].startswith("/sys")]
    assert sys_mounts == [
        {
            "destination": "/sys",
            "type": "none",
            "source": "/sys",
            "options": ["rbind", "nosuid", "noexec", "nodev", "ro"],
        }
    ]
    for m in c["mounts"]:
        assert not any(o.startswith(("uid=", "gid=")) for o in m.get("options", []))


@pytest.mark.parametrize("rootless", [False, True])
@pytest.mark.parametrize("cgroup2", [False, True, None])
def test_parses_cleanly_and_round_trips_json(rootless: bool, cgroup2: bool | None) -> None:
    c = default_config(rootless=rootless, cgroup2=cgroup2)
    assert spec.parse(json.loads(json.dumps(c))) == spec.parse(c)


def test_each_call_returns_a_fresh_dict() -> None:
    a = default_config()
    a["process"]["capabilities"]["bounding"].append("CAP_SYS_ADMIN")
    a["mounts"][3]["options"].append("x")
    assert default_config() != a
