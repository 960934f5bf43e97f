# SPDX-License-Identifier: Apache-2.0
"""What accompanies a lifecycle transition: its journal entry, the record's hooks of that
stage (poststart, poststop: the ones that run after create's process is gone), and the named
points between its steps where the reliability tests make a verb die (`fault_point`).

Every verb that changes a container imports this module: it stays import-light (the journal
and the hooks are imported on first use), and the fault points live here rather than in a
module of their own, which start and delete would pay ~0.1 ms to import."""

from __future__ import annotations

import os

from oci_systemd.runtime.log import log

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal as _signal
    from typing import Any

    from oci_systemd.runtime.state import Record, Status
else:
    import _signal  # the C module: `signal` costs every command its enums


def log_event(
    event: str, record: Record, status: str, message: str, extra: dict[str, Any] | None = None
) -> None:
    """One lifecycle entry in the journal (the journal module is imported on first use)."""
    from oci_systemd.runtime import journal

    journal.log_event(
        journal.event_named(event),
        container_id=record["id"],
        bundle=record.get("bundle", ""),
        status=status,
        unit=record.get("scope", ""),
        message=message,
        extra=extra,
        user_manager=in_user_manager(record),
    )


# placement.USER_SCOPE and USER_SERVICE, by value: start would import placement (~0.5 ms) for them.
_USER_PLACEMENTS = ("user-scope", "user-service")


def in_user_manager(record: Record) -> bool:
    """The container's unit is one of the caller's own user manager (journal.unit_fields())."""
    return record.get("placement") in _USER_PLACEMENTS


def run_record_hooks(stage: str, record: Record, status: Status) -> None:
    """Run a stage's hooks from the record; the hooks module is imported only when there are
    any (most containers have none, and start/delete should not pay for the import)."""
    if not (record.get("hooks") or {}).get(stage):
        return
    from oci_systemd.container import hooks
    from oci_systemd.runtime.status import state_json

    hooks.run_stage(stage, record.get("hooks"), state_json(record, status))


def run_late_hooks(stage: str, record: Record, status: Status) -> None:
    """poststart and poststop: a failing hook is logged, and the verb still succeeds (the
    runtime-spec: the container keeps running; delete has already removed it)."""
    from oci_systemd.errors import HookError

    try:
        run_record_hooks(stage, record, status)
    except HookError as exc:
        log.warning(str(exc))
        log_event("HOOK_FAILED", record, status.value, str(exc))


def fault_point(name: str) -> None:
    """Die here with SIGKILL when OCI_SYSTEMD_FAULT names this point (fault-injection tests).

    Points: create:claimed, create:spawned, create:scoped, create:pid, create:built,
    start:sent, start:recorded, delete:killed, delete:stopped, delete:removed.
    """
    if os.environ.get("OCI_SYSTEMD_FAULT") == name:
        os.kill(os.getpid(), _signal.SIGKILL)
