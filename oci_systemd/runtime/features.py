# SPDX-License-Identifier: Apache-2.0
"""`oci-systemd features`: what this runtime implements, in runtime-spec features.md shape.

Every list is read from the table that implements it (container/abi.py, container/seccomp.py,
container/mounts.py, container/namespaces.py, the hook stages spec/hooks.py checks and
container/hooks.py runs), the same tables spec validation accepts, so what
is reported is what works (tests/unit/test_tables.py). `features` is not a hot command: the
container modules (ctypes) are imported here freely.
"""

from __future__ import annotations

from oci_systemd import OCI_VERSION

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# mounts.parse_options gives this option its own branch (copy_up), in no table of its own.
TMPCOPYUP = "tmpcopyup"


def mount_options() -> list[str]:
    """The options container/mounts.py gives a meaning (flags, propagation, idmap, tmpcopyup);
    any other option is passed to the filesystem as data."""
    from oci_systemd.container import mounts

    return sorted({*mounts.MOUNT_FLAGS, *mounts.PROPAGATION_FLAGS, *mounts.IDMAP_OPTIONS, TMPCOPYUP})


def features() -> dict[str, Any]:
    from oci_systemd.container import abi, namespaces, seccomp
    from oci_systemd.runtime.spec.hooks import STAGES

    flags = sorted(seccomp.FLAGS)
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": list(STAGES),
        "mountOptions": mount_options(),
        "linux": {
            "namespaces": sorted(namespaces.NAMESPACE_FLAGS),
            "capabilities": sorted(abi.CAPABILITIES),
            # systemdUser: a user's scopes in its own manager (placement.UserScope, docs/rootless.md).
            "cgroup": {"v1": False, "v2": True, "systemd": True, "systemdUser": True, "rdma": False},
            "seccomp": {
                "enabled": True,
                "actions": sorted(seccomp.ACTIONS),
                "operators": sorted(seccomp.OPERATORS),
                "archs": sorted(seccomp.ARCHITECTURES),
                "knownFlags": flags,
                "supportedFlags": flags,
            },
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
            "mountExtensions": {"idmap": {"enabled": True}},  # idmap.py
            "netDevices": {"enabled": True},
        },
        "annotations": {
            "io.github.oci-systemd.commit": "",
            "org.opencontainers.runc.checkpoint.enabled": "false",
            "org.opencontainers.runc.version": "",
        },
        "potentiallyUnsafeConfigAnnotations": ["org.systemd.property."],
    }
