# SPDX-License-Identifier: Apache-2.0
"""An unprivileged caller (euid != 0): its state root, its systemd manager, what it may map.

A user's containers live where the user's session lives, as with runc and crun: the state in
`$XDG_RUNTIME_DIR/oci-systemd` (0700; `--root` still wins), the scopes in the user's own
systemd manager, reached over the user bus (`$DBUS_SESSION_BUS_ADDRESS`, else
`unix:path=$XDG_RUNTIME_DIR/bus`). Nothing here asks for privileges the user lacks: what a
config needs beyond them is refused at create, before anything exists, naming what is missing.

What a user's config may ask for (id maps, limits) is rootless_policy.py, imported by create
and update only: this module is imported by every command (Runtime), root's included, so it
holds only what every command needs, with stdlib `os` alone at import.
docs/rootless.md says what works rootless and what does not yet.
"""

from __future__ import annotations

import os

from oci_systemd.errors import OciSystemdError

# What `--root` defaults to for root (cli/commands.py DEFAULT_ROOT); a user's default is its own.
SYSTEM_ROOT = "/run/oci-systemd"
STATE_DIR = "oci-systemd"
ROOT_MODE = 0o700
# The user manager's slice for applications (systemd.special(7)); podman names its own.
USER_SLICE = "app.slice"


class RootlessError(OciSystemdError):
    """What an unprivileged user cannot have, and what to do about it."""


def is_rootless() -> bool:
    """Not root, or root only of a user namespace whose system manager is not ours (rootless
    podman runs its runtime so): either way PID 1's manager and /run/oci-systemd are out of
    reach. Root of a container with its own systemd (LXC, nspawn -U) stays root."""
    return os.geteuid() != 0 or (in_user_namespace() and not _pid1_is_ours())


# runc's --rootless: Go's strconv.ParseBool spellings, or "auto" (any case) / "" for detection.
_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def check_flag(value: str) -> None:
    """runc's `--rootless true|false|auto`, read where runc reads it (create and run): which
    cgroup manager the container gets. Here that follows from who runs us (`is_rootless`: the
    user's manager or PID 1's, and the state root with it), so `auto` and the value detection
    gives are accepted, and the other value is refused: root's containers are in the system
    manager and a user cannot reach it (runc would try and fail on permissions)."""
    if value.lower() in ("", "auto"):
        return
    if value not in _TRUE + _FALSE:
        raise OciSystemdError(f"invalid --rootless value {value!r}", hint="expected true, false or auto")
    wanted, detected = value in _TRUE, is_rootless()
    if wanted != detected:
        who = "an unprivileged caller" if detected else "root"
        where = "its own user manager" if detected else "the system manager (PID 1)"
        raise OciSystemdError(
            f"--rootless={value}: the containers of {who} live in {where}",
            hint="leave --rootless out (auto); run as the user whose manager should hold them",
        )


def in_user_namespace() -> bool:
    """In a user namespace other than the initial one, whose uid map is every id to itself."""
    try:
        # UTF-8, not ASCII: its codec is loaded at start-up, ascii's would be imported.
        with open("/proc/self/uid_map", encoding="utf-8") as f:
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
