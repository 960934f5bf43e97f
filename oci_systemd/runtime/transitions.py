# SPDX-License-Identifier: Apache-2.0
"""What accompanies a lifecycle transition: its journal entry and the record's hooks of that
stage (poststart, poststop: the ones that run after create's process is gone)."""

from __future__ import annotations

from oci_systemd.runtime.log import log

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from oci_systemd.runtime.state import Record, Status


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
