# SPDX-License-Identifier: Apache-2.0
"""Warnings about config fields that are accepted but not (all) applied: LSM labels nobody
applies, and capabilities this kernel does not know (runtime-spec 1.2: a warning, and the
rest apply). Printed on stderr, in the log and in the journal."""

from __future__ import annotations

from oci_systemd.runtime.log import log

TYPE_CHECKING = False
if TYPE_CHECKING:
    from oci_systemd.container import config


def warn_about_labels(proc: config.Process, linux: config.Linux) -> None:
    """AppArmor/SELinux settings are accepted, and applied by nobody: say so when the host
    has no such LSM (this runtime doesn't load profiles or set labels)."""
    try:
        with open("/sys/kernel/security/lsm", encoding="utf-8") as f:  # not ascii: a codec import
            active = set(f.read().strip().split(","))
    except OSError:
        active = set()
    wanted = {
        "process.apparmorProfile": ("apparmor", proc.get("apparmorProfile")),
        "process.selinuxLabel": ("selinux", proc.get("selinuxLabel")),
        "linux.mountLabel": ("selinux", linux.get("mountLabel")),
    }
    for field, (lsm, value) in wanted.items():
        if value:
            state = "is not active on this host" if lsm not in active else "is not applied by oci-systemd"
            log.warning(f"{field} {value!r} ignored: {lsm} {state}")


def warn_about_capabilities(cid: str, caps: config.Capabilities | None) -> None:
    """runtime-spec 1.2: unknown or ungrantable capabilities are a warning, and the rest apply."""
    from oci_systemd.runtime import spec

    if caps is None:
        return
    try:
        with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
            last = int(f.read())
    except (OSError, ValueError):
        last = len(spec.CAPABILITY_NAMES) - 1
    for warning in spec.capability_warnings(caps, last_cap=last):
        log.warning(warning, container_id=cid)
