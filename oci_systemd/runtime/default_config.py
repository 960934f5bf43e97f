# SPDX-License-Identifier: Apache-2.0
"""The config.json `oci-systemd spec` writes: runc's `spec` template, field for field.

Keeping runc's values means a bundle made by either tool runs the same under both;
only the hostname differs. The rootless variant follows runc's ToRootless().
"""

from __future__ import annotations

import os

from oci_systemd import OCI_VERSION

TYPE_CHECKING = False
if TYPE_CHECKING:
    from oci_systemd.container import config

_NOSUID_NOEXEC_NODEV = ["nosuid", "noexec", "nodev"]
_DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]


def _is_cgroup2() -> bool:
    # runc adds a cgroup namespace only on the unified hierarchy, where it is cheap and expected.
    return os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def default_config(*, rootless: bool = False, cgroup2: bool | None = None) -> config.Config:
    """A fresh config.json dict; `cgroup2` defaults to probing the host, like runc."""
    if cgroup2 is None:
        cgroup2 = _is_cgroup2()
    cfg: config.Config = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm",
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": list(_DEFAULT_CAPS),
                "effective": list(_DEFAULT_CAPS),
                "permitted": list(_DEFAULT_CAPS),
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "oci-systemd",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {
                "destination": "/dev/pts",
                "type": "devpts",
                "source": "devpts",
                "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
            },
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": [*_NOSUID_NOEXEC_NODEV, "mode=1777", "size=65536k"],
            },
            {
                "destination": "/dev/mqueue",
                "type": "mqueue",
                "source": "mqueue",
                "options": list(_NOSUID_NOEXEC_NODEV),
            },
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": [*_NOSUID_NOEXEC_NODEV, "ro"],
            },
            {
                "destination": "/sys/fs/cgroup",
                "type": "cgroup",
                "source": "cgroup",
                "options": [*_NOSUID_NOEXEC_NODEV, "relatime", "ro"],
            },
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
            "maskedPaths": [
                "/proc/acpi",
                "/proc/asound",
                "/proc/kcore",
                "/proc/keys",
                "/proc/latency_stats",
                "/proc/timer_list",
                "/proc/timer_stats",
                "/proc/sched_debug",
                "/sys/firmware",
                "/proc/scsi",
                "/sys/devices/virtual/tpm",
            ],
            "readonlyPaths": [
                "/proc/bus",
                "/proc/fs",
                "/proc/irq",
                "/proc/sys",
                "/proc/sysrq-trigger",
            ],
        },
    }
    if cgroup2:
        cfg["linux"]["namespaces"].append({"type": "cgroup"})
    if rootless:
        _to_rootless(cfg)
    return cfg


def _to_rootless(cfg: config.Config) -> None:
    linux = cfg["linux"]
    # An unprivileged user cannot configure a network namespace's devices, so share the host's;
    # the user namespace comes last, as in runc.
    linux["namespaces"] = [ns for ns in linux["namespaces"] if ns["type"] not in ("network", "user")]
    linux["namespaces"].append({"type": "user"})
    linux["uidMappings"] = [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
    linux["gidMappings"] = [{"containerID": 0, "hostID": os.getegid(), "size": 1}]
    mounts: list[config.Mount] = []
    for mount in cfg["mounts"]:
        if os.path.normpath(mount["destination"]) == "/sys":
            # sysfs cannot be mounted without owning the network namespace: bind the host's, read-only.
            mounts.append(
                {
                    "destination": "/sys",
                    "type": "none",
                    "source": "/sys",
                    "options": ["rbind", *_NOSUID_NOEXEC_NODEV, "ro"],
                }
            )
            continue
        if mount["destination"].startswith("/sys/"):
            # The rbind of /sys above already carries the host's cgroup tree (read-only);
            # a fresh cgroup mount fails without owning a cgroup namespace on v1 (runc 1.0 did this).
            continue
        # Only one id is mapped, so uid=/gid= options naming other ids would make the mount fail.
        if "options" in mount:
            mount["options"] = [o for o in mount["options"] if not o.startswith(("uid=", "gid="))]
        mounts.append(mount)
    cfg["mounts"] = mounts
    # Rootless containers cannot set cgroup limits unless delegated; runc drops them all.
    linux.pop("resources", None)
