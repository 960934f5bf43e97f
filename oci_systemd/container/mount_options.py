# SPDX-License-Identifier: Apache-2.0
"""The `options` of a mount entry: the mount(2) flags, the tables of the option names oci-systemd
implements, and their translation into flags, propagation changes and filesystem data.

The tables are the one record of what is implemented: `KNOWN_OPTIONS` (every name with a meaning
of its own here) is what the spec may accept and `features` may report, `PROPAGATION_FLAGS` also
holds the values of `linux.rootfsPropagation`; any other name is handed to the filesystem as
data, except the `UNSUPPORTED_OPTIONS`, which are refused.

A leaf outside the `mounts` package, importing only `oci_systemd.errors`: the runtime's spec
validation and `features` read these tables without loading the idler's mount code or ctypes.
For the same reason the MS_* flags are defined here; `linux` re-exports them with the syscalls.
"""

from __future__ import annotations

from oci_systemd.errors import OciSystemdError

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: importing typing costs the idler ~10 ms
if TYPE_CHECKING:
    from collections.abc import Iterable

    from oci_systemd.container import config

# --- include/uapi/linux/mount.h -------------------------------------------------------------------
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_POSIXACL = 1 << 16
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

# option → (flags to clear, flags to set); mount(8) names, as runc's mountFlags table.
MOUNT_FLAGS: dict[str, tuple[int, int]] = {
    "defaults": (0, 0),
    "ro": (0, MS_RDONLY),
    "rw": (MS_RDONLY, 0),
    "suid": (MS_NOSUID, 0),
    "nosuid": (0, MS_NOSUID),
    "dev": (MS_NODEV, 0),
    "nodev": (0, MS_NODEV),
    "exec": (MS_NOEXEC, 0),
    "noexec": (0, MS_NOEXEC),
    "sync": (0, MS_SYNCHRONOUS),
    "async": (MS_SYNCHRONOUS, 0),
    "remount": (0, MS_REMOUNT),
    "mand": (0, MS_MANDLOCK),
    "nomand": (MS_MANDLOCK, 0),
    "dirsync": (0, MS_DIRSYNC),
    "atime": (MS_NOATIME, 0),
    "noatime": (0, MS_NOATIME),
    "diratime": (MS_NODIRATIME, 0),
    "nodiratime": (0, MS_NODIRATIME),
    "relatime": (0, MS_RELATIME),
    "norelatime": (MS_RELATIME, 0),
    "strictatime": (0, MS_STRICTATIME),
    "nostrictatime": (MS_STRICTATIME, 0),
    "lazytime": (0, MS_LAZYTIME),
    "nolazytime": (MS_LAZYTIME, 0),
    "nosymfollow": (0, MS_NOSYMFOLLOW),
    "symfollow": (MS_NOSYMFOLLOW, 0),
    "silent": (0, MS_SILENT),
    "loud": (MS_SILENT, 0),
    "bind": (0, MS_BIND),
    "rbind": (0, MS_BIND | MS_REC),
}

# option → the mount(2) propagation flag, applied after the mount; also `linux.rootfsPropagation`.
PROPAGATION_FLAGS: dict[str, int] = {
    "shared": MS_SHARED,
    "rshared": MS_SHARED | MS_REC,
    "slave": MS_SLAVE,
    "rslave": MS_SLAVE | MS_REC,
    "private": MS_PRIVATE,
    "rprivate": MS_PRIVATE | MS_REC,
    "unbindable": MS_UNBINDABLE,
    "runbindable": MS_UNBINDABLE | MS_REC,
}

# Idmapped bind mounts: made by idmap.py before the namespaces, attached by mounts.entries.
IDMAP_OPTIONS = frozenset({"idmap", "ridmap"})

# podman puts it on every tmpfs: fill the new tmpfs with what was there before (mounts.entries).
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


def is_bind(m: config.Mount, opts: MountOptions | None = None) -> bool:
    """A bind mount: by its options (bind, rbind) or its type; `opts`, when already parsed."""
    if opts is None:
        opts = parse_options(m.get("options") or ())
    return bool(opts.flags & MS_BIND) or m.get("type") == "bind"


def wants_idmap(m: config.Mount) -> bool:
    return not IDMAP_OPTIONS.isdisjoint(m.get("options") or ())
