# SPDX-License-Identifier: Apache-2.0
"""`delete`: stop and forget the container's unit, run the poststop hooks, drop its state."""

from __future__ import annotations

import os

from oci_systemd.errors import ContainerNotFoundError, InvalidStateError
from oci_systemd.runtime import status
from oci_systemd.runtime.state import Status, pid_alive
from oci_systemd.runtime.transitions import fault_point, log_event, run_late_hooks

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal as _signal

    from oci_systemd.runtime.lifecycle import Runtime
    from oci_systemd.runtime.state import Record
    from oci_systemd.runtime.systemd import Systemd
else:
    import _signal  # the C module: `signal` costs every delete its enums


def delete(rt: Runtime, cid: str, *, force: bool = False) -> None:
    """Delete a stopped container; with --force any, killing it first. A missing container
    is an error, except with --force (runc's behaviour, which engines rely on)."""
    try:
        ctx = rt.store.locked(cid)
        record = ctx.__enter__()
    except ContainerNotFoundError:
        if force:
            return
        raise
    try:
        with rt.manager as bus:
            found = status.status(rt.store, record, rt.manager)
            if not found.can_delete() and not force:
                raise InvalidStateError(
                    f"cannot delete container {cid} that is not stopped", status=found.value
                )
            destroy(bus, record)
        fault_point("delete:stopped")
        rt.store.remove(cid)
        fault_point("delete:removed")
    finally:
        ctx.__exit__(None, None, None)
    run_late_hooks("poststop", record, Status.STOPPED)
    log_event("DELETED", record, "stopped", f"Container {cid} deleted")


def destroy(bus: Systemd, record: Record) -> None:
    """Kill everything of the container, stop and forget its unit. A create that died before
    its unit existed leaves an init outside any unit: it is killed too."""
    from oci_systemd.runtime.placement import placement_of

    placement_of(record).destroy(bus, record)
    if pid_alive(record):
        try:
            os.kill(record["pid"], _signal.SIGKILL)
        except ProcessLookupError:
            pass
