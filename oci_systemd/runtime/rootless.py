# SPDX-License-Identifier: Apache-2.0
"""An unprivileged caller (euid != 0): its state root, its systemd manager, what it may map.

A user's containers live where the user's session lives, as with runc and crun: the state in
`$XDG_RUNTIME_DIR/oci-systemd` (0700; `--root` still wins), the scopes in the user's own
systemd manager, reached over the user bus (`$DBUS_SESSION_BUS_ADDRESS`, else
`unix:path=$XDG_RUNTIME_DIR/bus`). Nothing here asks for privileges the user lacks: what a
config needs beyond them is refused at create, before anything exists, naming what is missing.

User namespaces: the maps are written by the runtime (namespaces.write_id_maps). Without
CAP_SETUID the kernel takes one line mapping the writer's own euid (and, for gid_map, after
setgroups is denied, its own egid); every other map needs the setuid helpers newuidmap and
newgidmap, which allow the ranges /etc/subuid and /etc/subgid give the user.

Host side; imported by every command of a user (Runtime), so stdlib `os` only at import.
docs/rootless.md says what works rootless and what does not yet.
"""

from __future__ import annotations

import os

from oci_systemd.errors import OciSystemdError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from oci_systemd.container.config import Config, IDMapping
    from oci_systemd.runtime.systemd import UnitProperty

# What `--root` defaults to for root (cli/commands.py DEFAULT_ROOT); a user's default is its own.
SYSTEM_ROOT = "/run/oci-systemd"
STATE_DIR = "oci-systemd"
ROOT_MODE = 0o700
# The user manager's slice for applications (systemd.special(7)); podman names its own.
USER_SLICE = "app.slice"
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


class RootlessError(OciSystemdError):
    """What an unprivileged user cannot have, and what to do about it."""


def is_rootless() -> bool:
    """Not root, or root only of a user namespace whose system manager is not ours (rootless
    podman runs its runtime so): either way PID 1's manager and /run/oci-systemd are out of
    reach. Root of a container with its own systemd (LXC, nspawn -U) stays root."""
    return os.geteuid() != 0 or (in_user_namespace() and not _pid1_is_ours())


def in_user_namespace() -> bool:
    """In a user namespace other than the initial one, whose uid map is every id to itself."""
    try:
        with open("/proc/self/uid_map", encoding="ascii") as f:
            return f.read().split() != ["0", "0", "4294967295"]
    except OSError:
        return False


def _pid1_is_ours() -> bool:
    """PID 1 (the system manager we would talk to) shares our user namespace. Another one's
    PID 1 (the host's, under podman) may not even be looked at: that counts as not ours."""
    try:
        theirs, ours = os.stat("/proc/1/ns/user"), os.stat("/proc/self/ns/user")
    except OSError:
        return False
    return (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino)


def runtime_dir(
    *, needed_for: str = "a user's containers are kept there", instead: str = "pass --root DIR"
) -> str:
    """$XDG_RUNTIME_DIR, checked: set, a directory, owned by us (pam_systemd makes it 0700)."""
    path = os.environ.get("XDG_RUNTIME_DIR") or ""
    hint = f"log in through a session that sets it (pam_systemd, `machinectl shell USER@`), or {instead}"
    if not path:
        raise RootlessError(f"XDG_RUNTIME_DIR is not set: {needed_for}", hint=hint)
    try:
        st = os.stat(path)
    except OSError as exc:
        raise RootlessError(f"XDG_RUNTIME_DIR={path}: {exc.strerror}", hint=hint) from None
    if st.st_uid != os.geteuid():
        raise RootlessError(
            f"XDG_RUNTIME_DIR={path} is owned by uid {st.st_uid}, not by uid {os.geteuid()}", hint=hint
        )
    return path


def state_root(given: str) -> str:
    """The state root: `given`, unless that is root's default and we are not root."""
    if given != SYSTEM_ROOT or not is_rootless():
        return given
    return os.path.join(runtime_dir(), STATE_DIR)


def bus_address() -> str | None:
    """The D-Bus address of our systemd manager: None (the system bus) for root, the user
    bus for a user. Not sd_bus_open_user(): its fallback, the session bus of a dbus-daemon,
    is not where the user manager is when none runs."""
    if not is_rootless():
        return None
    given = os.environ.get("DBUS_SESSION_BUS_ADDRESS")
    if given:
        return given
    where = runtime_dir(
        needed_for="the user manager listens on $XDG_RUNTIME_DIR/bus", instead="set DBUS_SESSION_BUS_ADDRESS"
    )
    return f"unix:path={where}/bus"


# -- user namespaces --------------------------------------------------------------------------


def check_config(cfg: Config) -> None:
    """Refuse, before anything exists, what a user cannot have: no new user namespace (every
    other namespace needs CAP_SYS_ADMIN), maps beyond what the kernel or newuidmap allow."""
    linux = cfg.get("linux") or {}
    users = [ns for ns in linux.get("namespaces") or () if ns.get("type") == "user"]
    if not users:
        raise RootlessError(
            "a rootless container needs a user namespace (linux.namespaces has no 'user')",
            hint="`oci-systemd spec --rootless` writes a config with one and the id maps it needs",
        )
    if users[0].get("path"):
        return  # joined: its maps are set; the kernel checks that we may enter it
    for kind, mappings in (("uid", linux.get("uidMappings")), ("gid", linux.get("gidMappings"))):
        check_mappings(kind, list(mappings or ()))


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
    if len(mappings) == 1 and int(mappings[0]["hostID"]) == own and int(mappings[0]["size"]) == 1:
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
