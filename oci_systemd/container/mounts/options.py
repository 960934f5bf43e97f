# SPDX-License-Identifier: Apache-2.0
"""The `options` of a mount entry: the tables of the names oci-systemd implements, and their
translation into mount(2) flags, propagation changes and filesystem data.

The tables are the one record of what is implemented: `KNOWN_OPTIONS` (every name with a meaning
of its own here) is what the spec may accept and `features` may report; any other name is
handed to the filesystem as data, except the `UNSUPPORTED_OPTIONS`, which are refused.

Idler module: `oci_systemd.container.linux` and `oci_systemd.errors` only.
"""

from __future__ import annotations

from oci_systemd.container import linux
from oci_systemd.errors import OciSystemdError

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: importing typing costs the idler ~10 ms
if TYPE_CHECKING:
    from collections.abc import Iterable

    from oci_systemd.container import config

# option → (flags to clear, flags to set); mount(8) names, as runc's mountFlags table.
MOUNT_FLAGS: dict[str, tuple[int, int]] = {
    "defaults": (0, 0),
    "ro": (0, linux.MS_RDONLY),
    "rw": (linux.MS_RDONLY, 0),
    "suid": (linux.MS_NOSUID, 0),
    "nosuid": (0, linux.MS_NOSUID),
    "dev": (linux.MS_NODEV, 0),
    "nodev": (0, linux.MS_NODEV),
    "exec": (linux.MS_NOEXEC, 0),
    "noexec": (0, linux.MS_NOEXEC),
    "sync": (0, linux.MS_SYNCHRONOUS),
    "async": (linux.MS_SYNCHRONOUS, 0),
    "remount": (0, linux.MS_REMOUNT),
    "mand": (0, linux.MS_MANDLOCK),
    "nomand": (linux.MS_MANDLOCK, 0),
    "dirsync": (0, linux.MS_DIRSYNC),
    "atime": (linux.MS_NOATIME, 0),
    "noatime": (0, linux.MS_NOATIME),
    "diratime": (linux.MS_NODIRATIME, 0),
    "nodiratime": (0, linux.MS_NODIRATIME),
    "relatime": (0, linux.MS_RELATIME),
    "norelatime": (linux.MS_RELATIME, 0),
    "strictatime": (0, linux.MS_STRICTATIME),
    "nostrictatime": (linux.MS_STRICTATIME, 0),
    "lazytime": (0, linux.MS_LAZYTIME),
    "nolazytime": (linux.MS_LAZYTIME, 0),
    "nosymfollow": (0, linux.MS_NOSYMFOLLOW),
    "symfollow": (linux.MS_NOSYMFOLLOW, 0),
    "silent": (0, linux.MS_SILENT),
    "loud": (linux.MS_SILENT, 0),
    "bind": (0, linux.MS_BIND),
    "rbind": (0, linux.MS_BIND | linux.MS_REC),
}

# option → the mount(2) propagation flag, applied after the mount; also `linux.rootfsPropagation`.
PROPAGATION_FLAGS: dict[str, int] = {
    "shared": linux.MS_SHARED,
    "rshared": linux.MS_SHARED | linux.MS_REC,
    "slave": linux.MS_SLAVE,
    "rslave": linux.MS_SLAVE | linux.MS_REC,
    "private": linux.MS_PRIVATE,
    "rprivate": linux.MS_PRIVATE | linux.MS_REC,
    "unbindable": linux.MS_UNBINDABLE,
    "runbindable": linux.MS_UNBINDABLE | linux.MS_REC,
}

# Idmapped bind mounts: made by idmap.py before the namespaces, attached by entries.mount_entry().
IDMAP_OPTIONS = frozenset({"idmap", "ridmap"})

# podman puts it on every tmpfs: fill the new tmpfs with what was there before (entries.copy_tree).
COPY_UP_OPTIONS = frozenset({"tmpcopyup"})

# Options other runtimes accept that need mount_setattr(2) recursive attributes: refused
# clearly instead of reaching the kernel as unknown data (EINVAL).
UNSUPPORTED_OPTIONS = frozenset(
    {
        "rro",
        "rrw",
        "rnosuid",
        "rsuid",
        "rnodev",
        "rdev",
        "rnoexec",
        "rexec",
        "rnoatime",
        "ratime",
        "rrelatime",
        "rnorelatime",
        "rstrictatime",
        "rnostrictatime",
        "rnodiratime",
        "rdiratime",
        "rnosymfollow",
        "rsymfollow",
    },
)

# Every option name oci-systemd gives a meaning (the rest is filesystem data).
KNOWN_OPTIONS = frozenset({*MOUNT_FLAGS, *PROPAGATION_FLAGS, *IDMAP_OPTIONS, *COPY_UP_OPTIONS})


class MountOptions:
    """`options` of one mount entry split into mount(2) flags, propagation changes and data."""

    __slots__ = ("copy_up", "data", "flags", "propagation")

    def __init__(self, flags: int, propagation: list[int], data: str, *, copy_up: bool = False) -> None:
        self.flags = flags
        self.propagation = propagation
        self.data = data
        self.copy_up = copy_up

    def __repr__(self) -> str:
        return f"MountOptions(flags={self.flags:#x}, propagation={self.propagation}, data={self.data!r})"


def parse_options(options: Iterable[str]) -> MountOptions:
    flags = 0
    propagation: list[int] = []
    data: list[str] = []
    copy_up = False
    for opt in options:
        fl = MOUNT_FLAGS.get(opt)
        if opt in COPY_UP_OPTIONS:
            copy_up = True
        elif fl is not None:
            flags = (flags & ~fl[0]) | fl[1]
        elif opt in PROPAGATION_FLAGS:
            propagation.append(PROPAGATION_FLAGS[opt])
        elif opt in IDMAP_OPTIONS:
            pass  # idmap.py: the tree is idmapped before it is attached
        elif opt in UNSUPPORTED_OPTIONS:
            raise OciSystemdError(f"mount option {opt!r} is not supported by oci-systemd")
        else:
            data.append(opt)
    return MountOptions(flags, propagation, ",".join(data), copy_up=copy_up)


def is_bind(m: config.Mount, opts: MountOptions) -> bool:
    """A bind mount: by its options (bind, rbind) or its type."""
    return bool(opts.flags & linux.MS_BIND) or m.get("type") == "bind"


def wants_idmap(m: config.Mount) -> bool:
    return not IDMAP_OPTIONS.isdisjoint(m.get("options") or ())
