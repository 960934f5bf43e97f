# SPDX-License-Identifier: Apache-2.0
"""sd_notify passthrough: a container started by a Type=notify service tells that service's
systemd when it is ready (docs/sd-notify.md).

At create, `settings` reads the caller's NOTIFY_SOCKET and the mode, and `with_mount` binds
the container's notify directory at /run/notify. At start, `bind_proxy` binds the socket the
container sends to, and `announce_ready` relays READY=1 (and MAINPID = the init) to the
caller's socket; a foreground `run` keeps relaying (`forward_notifications`). The proxy
itself, with its allow-list, is sdnotify.py.
"""

from __future__ import annotations

import os

from oci_systemd.errors import SpecError, SyscallError
from oci_systemd.runtime.log import log
from oci_systemd.runtime.state import process_start_time

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading
    from collections.abc import Mapping

    from oci_systemd.container import config
    from oci_systemd.runtime.sdnotify import NotifyProxy
    from oci_systemd.runtime.state import Record

NOTIFY_DIR = "notify"
NOTIFY_MODE_ANNOTATION = "io.github.oci-systemd.notify"


def settings(raw: config.Config) -> tuple[str, str] | None:
    """(host NOTIFY_SOCKET, mode) when our caller wants sd_notify, else None."""
    host = os.environ.get("NOTIFY_SOCKET", "")
    if not host:
        return None
    return host, mode_of(raw.get("annotations") or {})


def mode_of(annotations: Mapping[str, str]) -> str:
    """ "container" (the program says READY=1) or "started" (we say it once it runs)."""
    mode = annotations.get(NOTIFY_MODE_ANNOTATION) or os.environ.get("OCI_SYSTEMD_NOTIFY", "container")
    if mode not in ("container", "started"):
        raise SpecError(
            f'annotations["{NOTIFY_MODE_ANNOTATION}"]', f"expected container or started, got {mode!r}"
        )
    return mode


def direct(raw: config.Config, notify: tuple[str, str] | None) -> config.Config:
    """The unit mode: the container's init is the service's main process, so with the
    "container" mode the program sends to the service's own NOTIFY_SOCKET (bound read-only
    at /run/notify/notify.sock in a mount namespace, NotifyAccess=main lets only the init
    in). With "started" the runtime says READY=1 and the container gets no socket."""
    from oci_systemd.runtime.sdnotify import CONTAINER_NOTIFY_SOCKET

    if notify is None or notify[1] != "container":
        return raw
    host = notify[0]
    proc = raw.get("process") or {}
    env = [e for e in proc.get("env") or [] if not e.startswith("NOTIFY_SOCKET=")]
    changed = raw.copy()
    namespaces = (raw.get("linux") or {}).get("namespaces") or ()
    if not any(ns.get("type") == "mount" for ns in namespaces) or host.startswith("@"):
        # The host's mount namespace (the socket is where it is), or an abstract socket,
        # which the container reaches if it shares the network namespace.
        changed["process"] = {**proc, "env": [*env, f"NOTIFY_SOCKET={host}"]}
        return changed
    mount: config.Mount = {
        "destination": CONTAINER_NOTIFY_SOCKET,
        "type": "bind",
        "source": host,
        "options": ["bind", "ro", "nosuid", "nodev", "noexec"],
    }
    changed["process"] = {**proc, "env": [*env, f"NOTIFY_SOCKET={CONTAINER_NOTIFY_SOCKET}"]}
    changed["mounts"] = [*(raw.get("mounts") or []), mount]
    return changed


def needs_mount(raw: config.Config, mode: str) -> bool:
    """Whether the container gets our notify socket (a bind mount at /run/notify).

    Without a mount namespace nothing can be mounted for it (it would be mounted in the
    caller's namespace): with `started` the runtime says READY=1 itself and the container
    needs no socket; with `container` nobody could say it, so that is refused."""
    if any(ns.get("type") == "mount" for ns in (raw.get("linux") or {}).get("namespaces") or ()):
        return True
    if mode == "started":
        return False
    raise SpecError(
        "linux.namespaces",
        "sd_notify passthrough to the container (NOTIFY_SOCKET) needs a mount namespace; "
        "add one, or let the runtime report READY=1 itself (OCI_SYSTEMD_NOTIFY=started)",
    )


def with_mount(raw: config.Config, host_dir: str) -> config.Config:
    """Bind our notify directory at /run/notify and point NOTIFY_SOCKET there (as runc).

    Read-only: the directory is on the host (often its /run tmpfs), so a writable one would
    let the container's root plant files, setuid binaries, devices or deep trees there.
    Sending to the socket needs only its mode, not a writable mount."""
    from oci_systemd.runtime.sdnotify import CONTAINER_DIRECTORY, CONTAINER_NOTIFY_SOCKET

    proc = raw.get("process") or {}
    env = [e for e in proc.get("env") or [] if not e.startswith("NOTIFY_SOCKET=")]
    mount: config.Mount = {
        "destination": CONTAINER_DIRECTORY,
        "type": "bind",
        "source": host_dir,
        "options": ["bind", "ro", "nosuid", "nodev", "noexec"],
    }
    changed = raw.copy()
    changed["process"] = {**proc, "env": [*env, f"NOTIFY_SOCKET={CONTAINER_NOTIFY_SOCKET}"]}
    changed["mounts"] = [*(raw.get("mounts") or []), mount]
    return changed


def bind_proxy(state_dir: str, record: Record) -> NotifyProxy | None:
    """Bind the container's notify socket (bind-mounted at /run/notify) before the
    program can run: it may send READY=1 at once."""
    if not record.get("notify_socket"):
        return None
    from oci_systemd.runtime.sdnotify import NotifyProxy

    proxy = NotifyProxy()
    proxy.bind(os.path.join(state_dir, NOTIFY_DIR))
    return proxy


def announce_ready(record: Record, proxy: NotifyProxy) -> None:
    """Tell the caller's systemd that the service is ready, with MAINPID = the init.

    mode "container": forward what the program sends until its READY=1 (runc's way);
    mode "started": the runtime says READY=1 once the program runs (for programs
    that don't speak sd_notify).
    """
    host = record["notify_socket"]
    try:
        if record.get("notify_mode") == "started":
            proxy.forward(host, {"READY": "1"}, mainpid=record["pid"])
            return
        # Forward until READY=1, but never wait for a program that has already exited.
        while not proxy.run_until_ready(host, record["pid"], timeout=0.25):
            if process_start_time(record["pid"]) != record.get("pid_start"):
                log.warning("the container exited before it sent READY=1")
                return
    except OSError as exc:
        log.warning(f"cannot reach NOTIFY_SOCKET {host}: {exc.strerror or exc}")


def forward_notifications(proxy: NotifyProxy, record: Record) -> threading.Thread | None:
    """`run` in the foreground: keep relaying STATUS=, WATCHDOG=1, ... until the init exits."""
    import threading

    from oci_systemd.container import linux

    try:
        pidfd = linux.pidfd_open(record["pid"])
    except SyscallError:
        return None

    def relay() -> None:
        try:
            proxy.forward_forever(record["notify_socket"], record["pid"], pidfd)
        finally:
            os.close(pidfd)

    thread = threading.Thread(target=relay, name="sd-notify-relay", daemon=True)
    thread.start()
    return thread


def reclaim_main_pid(record: Record) -> None:
    """After the container's init has exited: `run`, the service's ExecStart and systemd's own
    child, names itself the main process again (MAINPID=, then BARRIER=1 so systemd has read it
    before we exit). The init it had been moved to is not systemd's child, and systemd counts
    the exit of such a main process as a success whatever its status; now the service's
    ExecMainStatus=, Result= and Restart= come from `run`'s exit status, which is the program's.
    Without NOTIFY_SOCKET there was no MAINPID= to take back."""
    from oci_systemd.runtime import sdnotify

    path = record.get("notify_socket")
    if not path:
        return
    try:
        sdnotify.notify_barrier(f"MAINPID={os.getpid()}\n", path, timeout=1.0)
    except OSError:
        pass  # systemd re-executing, say: the status is then lost, as it was without this
