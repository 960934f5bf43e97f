# SPDX-License-Identifier: Apache-2.0
"""`start`: the waiting idler execs the program."""

from __future__ import annotations

from oci_systemd.runtime import status
from oci_systemd.runtime.state import Status
from oci_systemd.runtime.transitions import fault_point, log_event, run_late_hooks

TYPE_CHECKING = False
if TYPE_CHECKING:
    from oci_systemd.runtime.lifecycle import Runtime
    from oci_systemd.runtime.sdnotify import NotifyProxy
    from oci_systemd.runtime.state import Record


def start(rt: Runtime, cid: str) -> None:
    proxy = start_keeping_proxy(rt, cid)
    if proxy is not None:
        proxy.close()


def start_keeping_proxy(rt: Runtime, cid: str) -> NotifyProxy | None:
    """Start; with sd_notify passthrough, returns the proxy still bound (for `run`).

    The lock covers the status check and handing START to the idler, never the wait for
    the exec (startContainer hooks, a frozen scope): kill, delete --force and state must
    not wait behind a start that does not finish."""
    from oci_systemd.runtime import idler_client

    proxy = None
    try:
        with rt.store.locked(cid) as record:
            found = start_status(rt, record)
            if not found.can_start():
                raise status.cannot("start", found)
            if record.get("notify_socket"):  # sd_notify passthrough: its module only then
                from oci_systemd.runtime import notify_passthrough

                proxy = notify_passthrough.bind_proxy(rt.store.dir(cid), record)
            agent = idler_client.seccomp_agent(record, record["pid"], Status.CREATED)
            peer = idler_client.send_start(rt.store.dir(cid), cid)
        idler_client.await_started(peer, cid, agent)
        fault_point("start:sent")
        with rt.store.locked(cid) as record:  # ContainerNotFoundError: deleted meanwhile
            record["phase"] = "started"
            rt.store.write(cid, record)
    except BaseException:
        if proxy is not None:
            proxy.close()
        raise
    fault_point("start:recorded")
    if proxy is not None:
        from oci_systemd.runtime import notify_passthrough

        notify_passthrough.announce_ready(record, proxy)
    log_event("STARTED", record, "running", f"Container {cid} started")
    run_late_hooks("poststart", record, Status.RUNNING)
    return proxy


def start_status(rt: Runtime, record: Record) -> Status:
    """start's precondition without a D-Bus round trip: created means the init we recorded
    is alive (pid + start time), still waits on its start socket, and its cgroup is not
    frozen (a paused created container: runc refuses to start it too). Whatever systemd
    thinks of the unit, a live waiting idler is a created container (and if the unit is
    being stopped, the idler dies with it and start reports that). Only a started
    container asks systemd, to name running or paused in the error."""
    if record.get("phase") == "started":
        return status.status(rt.store, record, rt.manager)
    return status.exec_status(rt.store, record, rt.manager)
