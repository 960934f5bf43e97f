# SPDX-License-Identifier: Apache-2.0
"""The fields of a user's config that need privileges the user lacks: refused at create.

rootless_policy.check_config calls `check` after the id maps, before anything exists; each error
names the field and what is missing.

Only what is certain up front is refused here. What only the kernel knows fails in the idler
with the field in the error, and create undoes what it made: a filesystem a user namespace may
not mount, an oomScoreAdj below the lowest the caller may go, a scheduler policy beyond
RLIMIT_RTPRIO, namespaces joined by path together with their user namespace. A privilege counts
as missing when it is not in our effective set: the runtime of a user with file capabilities
is left to the kernel. docs/rootless.md, "What is refused".
"""

from __future__ import annotations

import os

from oci_systemd.runtime.rootless import RootlessError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from oci_systemd.container.config import Config, IDMapping, Linux, Process

# Filesystems that a user namespace mounts only for a namespace of the given type that it
# owns (their fs_context's user_ns), with what to add. sysfs and cgroup2 need a network and a
# cgroup namespace as well, but the idler binds the host's instead, as runc does.
_OWNED_BY = {"proc": "pid", "mqueue": "ipc"}
_UTS_SYSCTLS = ("kernel/hostname", "kernel/domainname")


def check(cfg: Config, *, new_userns: bool) -> None:
    """Everything below; what depends on the maps only for a new user namespace (`new_userns`):
    a joined one's maps are not in the config."""
    linux: Linux = cfg.get("linux") or {}
    proc: Process = cfg.get("process") or {}
    if linux.get("devices"):
        _check_devices(cfg)
    _check_net_devices(linux)
    if linux.get("sysctl"):
        _check_sysctls(cfg)
    _check_rlimits(proc)
    _check_io_priority(proc)
    _check_intel_rdt(linux)
    if new_userns:
        _check_joined(linux)
        _check_mounts(cfg)
        _check_user(proc, linux)


def capable(*names: str) -> bool:
    """Whether one of the capabilities `names` is in our effective set."""
    from oci_systemd.container.abi import CAPABILITIES

    try:
        with open("/proc/self/status", encoding="ascii") as f:
            eff = next((int(line.split()[1], 16) for line in f if line.startswith("CapEff:")), 0)
    except OSError:
        eff = 0
    return any(eff >> CAPABILITIES[name] & 1 for name in names)


def _check_devices(cfg: Config) -> None:
    """mknod of a device node needs CAP_MKNOD in the initial user namespace: in a user namespace
    the idler binds the host's node of the same path instead (runc does too), so it must exist.
    FIFOs are made with mknod, which needs no privilege."""
    from oci_systemd.container.mounts import dev

    if not dev.needs_dev_setup(cfg):
        return  # /dev is the host's, bound: nothing is created
    for i, device in enumerate((cfg.get("linux") or {}).get("devices") or ()):
        path = device["path"]
        if device.get("type") != "p" and not os.path.exists(path):
            raise RootlessError(
                f"linux.devices[{i}]: {path}: a user namespace cannot make device nodes (mknod needs "
                f"CAP_MKNOD in the initial user namespace), and the host has no {path} to bind-mount",
                hint="device nodes are bound from the host's node of the same path, as runc does",
            )


def _check_net_devices(linux: Linux) -> None:
    devices = linux.get("netDevices") or {}
    if devices and not capable("CAP_NET_ADMIN"):
        name = next(iter(devices))
        raise RootlessError(
            f"linux.netDevices: moving the host's network device {name!r} into the container needs "
            f"CAP_NET_ADMIN in the host's network namespace, which uid {os.geteuid()} does not have",
            hint="give the container a network of its own (slirp4netns or pasta, as rootless podman "
            "does), or run it as root",
        )


def _check_sysctls(cfg: Config) -> None:
    """The idler's namespace rules (net.* needs a network namespace, ...), now; and the uts
    sysctls, whose /proc/sys files stay the initial namespace's root's (no set_ownership for
    them), also in the container's own uts namespace."""
    from oci_systemd.container.mounts import sysctl

    sysctl.check_sysctls(cfg)
    for key in (cfg.get("linux") or {}).get("sysctl") or {}:
        rel = sysctl.sysctl_path(key)
        if rel in _UTS_SYSCTLS:
            raise RootlessError(
                f"linux.sysctl {key!r}: /proc/sys/{rel} belongs to root of the initial user "
                "namespace, also in the container's own uts namespace",
                hint=f"set the config's `{rel.split('/')[1]}` instead",
            )


def _check_rlimits(proc: Process) -> None:
    """A hard limit above the runtime's own: raising one needs CAP_SYS_RESOURCE in the initial
    user namespace, and the idler and container inherit the runtime's (a unit mode's
    runtime is the service's own process, with the service's limits)."""
    rlimits = proc.get("rlimits") or ()
    if not rlimits or capable("CAP_SYS_RESOURCE"):
        return
    import resource

    from oci_systemd.container.abi import RLIMITS

    for rl in rlimits:
        own = resource.getrlimit(RLIMITS[rl["type"]])[1]
        hard = int(rl["hard"])
        if own != resource.RLIM_INFINITY and (hard < 0 or hard >= 2**64 - 1 or hard > own):
            raise RootlessError(
                f"process.rlimits {rl['type']}: hard limit {hard} is above the runtime's own ({own}): "
                "raising a hard limit needs CAP_SYS_RESOURCE in the initial user namespace",
                hint=f"ask for at most {own}, or raise your own hard limit first (ulimit -H; for a "
                "user manager's services, LimitNOFILE= and the like of user@.service)",
            )


def _check_io_priority(proc: Process) -> None:
    """block/ioprio.c: the real-time class needs CAP_SYS_ADMIN or CAP_SYS_NICE, whatever the
    priority (capable(): the initial user namespace's)."""
    io = proc.get("ioPriority")
    if io and io["class"] == "IOPRIO_CLASS_RT" and not capable("CAP_SYS_ADMIN", "CAP_SYS_NICE"):
        raise RootlessError(
            "process.ioPriority: IOPRIO_CLASS_RT needs CAP_SYS_ADMIN or CAP_SYS_NICE in the initial "
            f"user namespace, which uid {os.geteuid()} does not have",
            hint="IOPRIO_CLASS_BE and IOPRIO_CLASS_IDLE need no privilege",
        )


def _check_intel_rdt(linux: Linux) -> None:
    if linux.get("intelRdt") is not None:
        raise RootlessError(
            "linux.intelRdt: only root may write the resctrl filesystem (/sys/fs/resctrl), so a "
            "user's container cannot have a resource control group",
            hint="leave linux.intelRdt out (oci-systemd applies no Intel RDT settings for root "
            "either: `features` reports intelRdt disabled)",
        )


def _check_joined(linux: Linux) -> None:
    """setns(2) into any namespace but a user namespace needs CAP_SYS_ADMIN both in the caller's
    user namespace and in the one owning the target: never ours outside, and a new user
    namespace owns nothing made before it. Joining the owner's user namespace too would do."""
    if capable("CAP_SYS_ADMIN"):
        return
    for i, ns in enumerate(linux.get("namespaces") or ()):
        if ns.get("path") and ns["type"] != "user":
            raise RootlessError(
                f"linux.namespaces[{i}]: joining the {ns['type']} namespace {ns.get('path')} needs "
                "CAP_SYS_ADMIN over it, which a new user namespace has only over namespaces it made",
                hint="join the user namespace that owns it too (its /proc/PID/ns/user as the 'user' "
                "path), or leave the path out for a new one",
            )


def _check_mounts(cfg: Config) -> None:
    """proc and mqueue only for the container's own pid and ipc namespaces (a joined one is
    owned by another user namespace); uid=/gid= options of ids the maps have (runc's check)."""
    from oci_systemd.container import mount_options

    linux = cfg.get("linux") or {}
    kinds = {ns.get("type"): ns for ns in linux.get("namespaces") or ()}
    maps = {"uid": linux.get("uidMappings") or [], "gid": linux.get("gidMappings") or []}
    for i, m in enumerate(cfg.get("mounts") or ()):
        if mount_options.is_bind(m):
            continue
        fstype, dest = m.get("type") or "", m["destination"]
        owner = _OWNED_BY.get(fstype)
        if owner is not None and (owner not in kinds or kinds[owner].get("path")):
            raise RootlessError(
                f"mounts[{i}]: {fstype} on {dest} needs the container's own {owner} namespace: a user "
                f"namespace mounts {fstype} only for the {owner} namespaces it owns",
                hint=f'add {{"type": "{owner}"}} to linux.namespaces',
            )
        for opt in m.get("options") or ():
            key, _, value = opt.partition("=")
            if key in maps and value.isdigit() and not _mapped(int(value), maps[key]):
                raise RootlessError(
                    f"mounts[{i}]: option {opt} on {dest}: container {key} {value} is not mapped "
                    f"(linux.{key}Mappings has {_ranges(maps[key])})",
                    hint=f"name a mapped {key}, or map {value} too",
                )


def _check_user(proc: Process, linux: Linux) -> None:
    """The process's ids must be in the maps (setresuid of an unmapped id is EINVAL), and
    additional groups need setgroups(2), which the kernel denies when an unprivileged writer
    wrote the gid map itself (one line of its own gid; newgidmap leaves it allowed)."""
    from oci_systemd.container.namespaces import own_id_only

    user = proc.get("user") or {"uid": 0, "gid": 0}
    maps = {"uid": linux.get("uidMappings") or [], "gid": linux.get("gidMappings") or []}
    for key, value in (("uid", int(user.get("uid") or 0)), ("gid", int(user.get("gid") or 0))):
        if not _mapped(value, maps[key]):
            raise RootlessError(
                f"process.user.{key} {value} is not mapped (linux.{key}Mappings has {_ranges(maps[key])})",
                hint=f"run the process as a mapped {key}, or map a range of /etc/sub{key} too",
            )
    groups = [int(g) for g in user.get("additionalGids") or ()]
    if groups and own_id_only("gid", maps["gid"]):
        raise RootlessError(
            "process.user.additionalGids: setgroups(2) is denied in a user namespace whose gid map "
            f"is only your own gid {os.getegid()}, written without newgidmap",
            hint="map a range of /etc/subgid too (newgidmap leaves setgroups allowed), or leave "
            "additionalGids out",
        )
    for gid in groups:
        if not _mapped(gid, maps["gid"]):
            raise RootlessError(
                f"process.user.additionalGids: gid {gid} is not mapped "
                f"(linux.gidMappings has {_ranges(maps['gid'])})",
                hint="leave it out, or map it too",
            )


def _mapped(value: int, mappings: Sequence[IDMapping]) -> bool:
    return any(int(m["containerID"]) <= value < int(m["containerID"]) + int(m["size"]) for m in mappings)


def _ranges(mappings: Sequence[IDMapping]) -> str:
    return ", ".join(
        f"{int(m['containerID'])}-{int(m['containerID']) + int(m['size']) - 1}" for m in mappings
    )
