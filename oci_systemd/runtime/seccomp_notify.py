# SPDX-License-Identifier: Apache-2.0
"""Seccomp user notification, the runtime's side (runtime-spec config-linux.md, "seccomp":
`listenerPath`, `listenerMetadata`, SCMP_ACT_NOTIFY).

The idler loads the filter right before execve, inside the container (past pivot_root, where
the host's `listenerPath` is out of reach; and the idler must hold no host fd where the
container's processes can reach it), so it sends the notify fd back over the start socket
(`protocol.SECCOMP`, SCM_RIGHTS). `oci-systemd start` (or `exec`), on the host, connects to
`listenerPath` and sends the container process state with that fd, one state per connection,
then tells the idler to go on (`protocol.SECCOMP_SENT`). Only a filter with an SCMP_ACT_NOTIFY
rule makes the connection (as runc); a failure to send fails start.
"""

from __future__ import annotations

import os

from oci_systemd import jsonio
from oci_systemd.errors import OciSystemdError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from oci_systemd.container import config


def listener_of(seccomp: config.Seccomp | None) -> dict[str, str] | None:
    """What the record keeps for start: the agent's socket (absolute, as create saw it) and the
    metadata; None when no rule uses SCMP_ACT_NOTIFY (listenerPath is then ignored)."""
    if not seccomp or not seccomp.get("listenerPath"):
        return None
    from oci_systemd.container.seccomp import uses_notify

    if not uses_notify(seccomp):
        return None
    return {
        "path": os.path.abspath(seccomp["listenerPath"]),
        "metadata": str(seccomp.get("listenerMetadata") or ""),
    }


def process_state(listener: dict[str, str], pid: int, state: Mapping[str, object]) -> dict[str, Any]:
    """The spec's container process state: `fds` names what travels with it over SCM_RIGHTS."""
    return {
        "ociVersion": state.get("ociVersion", "1.2.0"),
        "fds": ["seccompFd"],
        "pid": pid,
        "metadata": listener.get("metadata", ""),
        "state": state,
    }


def send_state(listener: dict[str, str], pid: int, state: Mapping[str, object], fd: int) -> None:
    """Connect to the agent, send the process state with the notify fd, close: the spec's "exactly
    one container process state per connection"."""
    from oci_systemd.container import channel

    path = listener["path"]
    data = jsonio.dumps(process_state(listener, pid, state)).encode()
    try:
        sock = channel.connect_unix(path)
        try:
            channel.send_fds(sock, data, [fd])
        finally:
            sock.close()
    except OSError as exc:
        raise OciSystemdError(
            f"seccomp: cannot send the notify fd to listenerPath {path}: {exc.strerror or exc}",
            hint="the seccomp agent must listen there before the container starts",
        ) from exc
