# SPDX-License-Identifier: Apache-2.0
"""A container's status, and the OCI state object built from it.

systemd is the source of truth about what runs: `status` asks the container's placement for
its unit's state. The verbs that must not pay for a D-Bus round trip (start, a plain kill,
exec: every ExecSync probe of a pod) decide from the record and the init alone
(`local_status`, `exec_status`), as runc does from its own state.
"""

from __future__ import annotations

from oci_systemd.errors import InvalidStateError
from oci_systemd.runtime.log import rfc3339
from oci_systemd.runtime.state import Status, derive_status, pid_alive, start_socket

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TypedDict

    from oci_systemd.runtime.lifecycle import Manager
    from oci_systemd.runtime.state import Record, Store

    # The OCI state object (runtime-spec runtime.md "State"), plus runc's extras; what `state`
    # prints, hooks read on stdin and a seccomp agent gets. (Functional form: "systemd-scope".)
    OciState = TypedDict(
        "OciState",
        {
            "ociVersion": str,
            "id": str,
            "pid": int,
            "status": str,
            "bundle": str,
            "rootfs": str,
            "created": str,
            "owner": str,
            "annotations": dict[str, str],
            "systemd-scope": str,
        },
    )


def status(store: Store, record: Record, manager: Manager) -> Status:
    """The status with systemd's view of the unit; `manager` gives the bus connection."""
    phase = record.get("phase", "creating")
    if phase == "creating":
        return derive_status(record, unit_state=None, alive=False)
    alive = pid_alive(record)
    if not alive:
        # No need to ask systemd: the init is gone, whatever the unit does.
        return Status.STOPPED
    from oci_systemd.runtime.placement import placement_of

    with manager as bus:
        unit_state, frozen = placement_of(record).unit_state(bus, record)
    waiting = phase == "created" and idler_waiting(store, record)
    return derive_status(record, unit_state=unit_state, alive=alive, frozen=frozen, waiting=waiting)


def local_status(store: Store, record: Record, manager: Manager) -> Status:
    """The status from the record and the init alone, without D-Bus, for a plain kill: a
    live init (pid + start time) is created (its idler still waits on the start socket)
    or running. Paused reads as running here: only systemd knows, and a signal is queued
    for a frozen process either way. (`manager` is used for creating/stopped only, which
    are decided without D-Bus too.)"""
    phase = record.get("phase", "creating")
    if phase == "creating" or not pid_alive(record):
        return status(store, record, manager)
    if phase == "started":
        return Status.RUNNING
    return Status.CREATED if idler_waiting(store, record) else Status.RUNNING


def exec_status(store: Store, record: Record, manager: Manager) -> Status:
    """exec's and start's precondition without D-Bus, as runc decides it: the init alive
    (pid + start time) and the cgroup not frozen."""
    from oci_systemd.runtime import cgroups

    found = local_status(store, record, manager)
    if found in (Status.CREATED, Status.RUNNING) and cgroups.frozen(record["pid"]):
        return Status.PAUSED
    return found


def idler_waiting(store: Store, record: Record) -> bool:
    """The idler still waits for start: start removes its socket when it hands START over."""
    return start_socket(store.dir(record["id"])) is not None


def state_json(record: Record, found: Status) -> OciState:
    """The OCI state object (runtime-spec runtime.md "State"), plus runc's extras."""
    running = found in (Status.CREATED, Status.RUNNING, Status.PAUSED, Status.CREATING)
    return {
        "ociVersion": record.get("oci_version", "1.2.0"),
        "id": record["id"],
        "pid": record.get("pid", 0) if running else 0,
        "status": found.value,
        "bundle": record.get("bundle", ""),
        "rootfs": record.get("rootfs", ""),
        "created": record.get("created", rfc3339(0)),
        "owner": record.get("owner", ""),
        "annotations": record.get("annotations") or {},
        "systemd-scope": record.get("scope", ""),
    }


def cannot(op: str, found: Status) -> InvalidStateError:
    """runc's words for a verb the status does not allow."""
    if found is Status.STOPPED:
        return InvalidStateError(f"cannot {op} a container that has stopped", status=found.value)
    if found is Status.RUNNING:
        return InvalidStateError(f"cannot {op} an already running container", status=found.value)
    return InvalidStateError(f"cannot {op} a container in the {found.value} state", status=found.value)
