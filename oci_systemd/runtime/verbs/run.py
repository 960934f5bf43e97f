# SPDX-License-Identifier: Apache-2.0
"""`run`: create and start, and in the foreground wait for the container as runc does:
signals forwarded, the pty relayed, the exit status returned, the container deleted."""

from __future__ import annotations

from oci_systemd.runtime.signals import become_subreaper, wait_forwarding_signals
from oci_systemd.runtime.transitions import log_event
from oci_systemd.runtime.verbs.start import start_keeping_proxy

TYPE_CHECKING = False
if TYPE_CHECKING:
    from oci_systemd.runtime.lifecycle import Runtime
    from oci_systemd.runtime.state import Record
    from oci_systemd.runtime.terminal import ConsoleListener


def run(
    rt: Runtime,
    cid: str,
    *,
    bundle: str,
    console_socket: str | None = None,
    pid_file: str | None = None,
    no_pivot: bool = False,
    no_new_keyring: bool = False,
    preserve_fds: int = 0,
    detach: bool = False,
    keep: bool = False,
) -> int:
    from oci_systemd.runtime.placement import choose_placement

    placement = choose_placement(run=True)
    if placement.hands_over:  # the unit mode: the container is the calling service
        from oci_systemd.runtime.service_unit import run_as_service

        return run_as_service(
            rt,
            cid,
            placement,
            bundle=bundle,
            console_socket=console_socket,
            pid_file=pid_file,
            no_pivot=no_pivot,
            no_new_keyring=no_new_keyring,
            preserve_fds=preserve_fds,
        )
    listener = None
    if not detach:
        # The init is a grandchild (the idler forks it); as subreaper we can wait for it.
        become_subreaper()
        if not console_socket:  # process.terminal: runc's and crun's pty relay
            from oci_systemd.runtime.terminal import ConsoleListener

            listener = ConsoleListener()
    try:
        record = rt.create(
            cid,
            bundle=bundle,
            console_socket=console_socket,
            pid_file=pid_file,
            no_pivot=no_pivot,
            no_new_keyring=no_new_keyring,
            preserve_fds=preserve_fds,
            console_listener=listener,
        )
        return _run_created(rt, record, listener, detach=detach, keep=keep)
    finally:
        if listener is not None:
            listener.close()


def _run_created(
    rt: Runtime, record: Record, listener: ConsoleListener | None, *, detach: bool, keep: bool
) -> int:
    cid = record["id"]
    relay = None
    try:
        if listener is not None and listener.sock is not None:
            relay = listener.relay()  # raw mode and the window size before the program runs
        proxy = start_keeping_proxy(rt, cid)
    except BaseException:
        if relay is not None:
            relay.close()
        if not detach:
            rt.delete(cid, force=True)
        raise
    if detach:
        if proxy is not None:
            proxy.close()
        return 0
    forwarder = None
    if proxy is not None:  # sd_notify passthrough (its module is imported only then)
        from oci_systemd.runtime import notify_passthrough

        forwarder = notify_passthrough.forward_notifications(proxy, record)
    try:
        status = wait_forwarding_signals(record["pid"], relay)
    finally:
        if relay is not None:
            relay.close()  # the caller's terminal back, also on errors
    if proxy is not None:
        if forwarder is not None:
            forwarder.join(timeout=1)
        proxy.close()
        notify_passthrough.reclaim_main_pid(record)
    log_event(
        "EXITED",
        record,
        "stopped",
        f"Container {cid} exited with status {status}",
        extra={"EXIT_STATUS": status},
    )
    if not keep:
        rt.delete(cid, force=True)
    return status
