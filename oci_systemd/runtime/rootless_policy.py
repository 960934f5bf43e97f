# SPDX-License-Identifier: Apache-2.0
"""What an unprivileged user's config may have, checked at create (and update) before anything
exists: its user namespace's id maps and the limits its systemd manager can enforce.

User namespaces: the maps are written by the runtime (namespaces.write_id_maps). Without
CAP_SETUID the kernel takes one line mapping the writer's own euid (and, for gid_map, after
setgroups is denied, its own egid); every other map needs the setuid helpers newuidmap and
newgidmap, which allow the ranges /etc/subuid and /etc/subgid give the user.

Limits: a user manager enforces only what its own cgroup's controllers allow (what
user@.service's Delegate= and the host give it). Host side; docs/rootless.md.
"""

from __future__ import annotations

import os

from oci_systemd.runtime.rootless import RootlessError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from oci_systemd.container.config import Config, IDMapping
    from oci_systemd.runtime.systemd import UnitProperty

SUBID_FILES = {"uid": "/etc/subuid", "gid": "/etc/subgid"}

# Unit properties by the cgroup controller that enforces them (systemd.resource-control(5)).
_CONTROLLER_OF = {
    "MemoryMin": "memory", "MemoryLow": "memory", "MemoryHigh": "memory", "MemoryMax": "memory",
    "MemorySwapMax": "memory", "TasksMax": "pids", "CPUWeight": "cpu", "StartupCPUWeight": "cpu",
    "CPUQuotaPerSecUSec": "cpu", "CPUQuotaPeriodUSec": "cpu", "AllowedCPUs": "cpuset",
    "AllowedMemoryNodes": "cpuset", "IOWeight": "io", "IODeviceWeight": "io",
    "IOReadBandwidthMax": "io", "IOWriteBandwidthMax": "io", "IOReadIOPSMax": "io",
    "IOWriteIOPSMax": "io",
}  # fmt: skip
# Device rules are a BPF program that only a privileged manager attaches (delegated_properties).
_PRIVILEGED_ONLY = frozenset({"DevicePolicy", "DeviceAllow"})


# -- user namespaces ---------------------------------------------------------------------------


def check_config(cfg: Config) -> None:
    """Refuse, before anything exists, what a user cannot have: no new user namespace (every
    other namespace needs CAP_SYS_ADMIN), maps beyond what the kernel or newuidmap allow, and
    what else needs privileges the user lacks (rootless_privileges)."""
    from oci_systemd.runtime import rootless_privileges

    linux = cfg.get("linux") or {}
    users = [ns for ns in linux.get("namespaces") or () if ns.get("type") == "user"]
    if not users:
        raise RootlessError(
            "a rootless container needs a user namespace (linux.namespaces has no 'user')",
            hint="`oci-systemd spec --rootless` writes a config with one and the id maps it needs",
        )
    new_userns = not users[0].get("path")  # joined: its maps are set; the kernel checks entering it
    if new_userns:
        for kind, mappings in (("uid", linux.get("uidMappings")), ("gid", linux.get("gidMappings"))):
            check_mappings(kind, list(mappings or ()))
    rootless_privileges.check(cfg, new_userns=new_userns)


def check_mappings(kind: str, mappings: Sequence[IDMapping]) -> None:
    """`kind` is "uid" or "gid". One line of our own id is written directly; anything else
    needs new{kind}map and every host id in our /etc/sub{kind} ranges (or our own id)."""
    own = os.geteuid() if kind == "uid" else os.getegid()
    field = f"linux.{kind}Mappings"
    if not mappings:
        raise RootlessError(
            f"{field} is empty: a rootless container's user namespace must map uid and gid 0 "
            f"(at least) to your own {kind} {own}",
            hint="`oci-systemd spec --rootless` writes these maps",
        )
    from oci_systemd.container.namespaces import own_id_only

    if own_id_only(kind, mappings):
        return
    allowed = [(own, 1), *subordinate_ranges(kind)]
    outside = [m for m in mappings if not _covered(int(m["hostID"]), int(m["size"]), allowed)]
    if outside:
        m = outside[0]
        first, last = int(m["hostID"]), int(m["hostID"]) + int(m["size"]) - 1
        have = ", ".join(f"{start}-{start + size - 1}" for start, size in allowed)
        raise RootlessError(
            f"{field} maps host {kind}s {first}-{last}, outside what {kind} {own} may map ({have})",
            hint=f"map only your own {kind} {own}, or ask root for a range in {SUBID_FILES[kind]}",
        )
    import shutil

    if shutil.which(f"new{kind}map") is None:
        raise RootlessError(
            f"{field} maps more than your own {kind} {own}: that needs new{kind}map, which is not installed",
            hint="install it (Debian: apt-get install uidmap), or map only your own id",
        )


def _covered(start: int, size: int, allowed: Sequence[tuple[int, int]]) -> bool:
    end = start + size
    return any(a <= start and end <= a + n for a, n in allowed)


def subordinate_ranges(kind: str, *, path: str | None = None) -> list[tuple[int, int]]:
    """Our (start, count) ranges in /etc/subuid or /etc/subgid, named by user name or id."""
    import pwd

    uid = os.geteuid()
    names = {str(uid)}
    try:
        names.add(pwd.getpwuid(uid).pw_name)
    except KeyError:
        pass
    ranges = []
    try:
        with open(path or SUBID_FILES[kind], encoding="utf-8") as f:
            for line in f:
                owner, _, rest = line.strip().partition(":")
                start, _, count = rest.partition(":")
                if owner in names and start.isdigit() and count.isdigit():
                    ranges.append((int(start), int(count)))
    except OSError:
        return []
    return ranges


# -- resources --------------------------------------------------------------------------------


def delegated_properties(
    props: Sequence[UnitProperty], controllers: frozenset[str]
) -> tuple[list[UnitProperty], list[str]]:
    """(the properties the user manager can enforce, the names of the limits it cannot): a
    limit needs its controller in the user manager's cgroup (user@.service's Delegate=, what
    the host delegates). Device rules go without a word, as with runc: only a privileged
    manager attaches their BPF program, and every engine sends them (podman's deny-all), while
    in a user namespace the container opens only the device nodes bound into it, with the
    user's rights. Properties of no controller (accounting, Delegate, ...) pass."""
    kept: list[UnitProperty] = []
    dropped: list[str] = []
    for prop in props:
        name = prop[0]
        controller = _CONTROLLER_OF.get(name)
        if name in _PRIVILEGED_ONLY:
            continue
        if controller is not None and controller not in controllers:
            dropped.append(name)
        else:
            kept.append(prop)
    return kept, dropped


def manager_controllers(manager_cgroup: str, *, mount: str | None) -> frozenset[str]:
    """The controllers available to the user manager: its cgroup's `cgroup.controllers`."""
    if mount is None:
        return frozenset()
    try:
        path = os.path.join(mount, manager_cgroup.lstrip("/"), "cgroup.controllers")
        with open(path, encoding="ascii") as f:
            return frozenset(f.read().split())
    except OSError:
        return frozenset()


def warn_dropped(cid: str, dropped: Sequence[str], controllers: frozenset[str]) -> None:
    """One warning for the limits left out, as crun and runc warn when cgroups are not theirs."""
    if not dropped:
        return
    from oci_systemd.runtime.log import log

    have = " ".join(sorted(controllers)) or "none"
    log.warning(
        f"rootless: {', '.join(dict.fromkeys(dropped))} not applied: the user manager cannot enforce "
        f"them (controllers delegated to it: {have})",
        container_id=cid,
    )
