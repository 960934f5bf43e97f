# SPDX-License-Identifier: Apache-2.0
"""`list`, `ps`, `stats` and `events`: what runs, read from systemd and the cgroup."""

from __future__ import annotations

from oci_systemd.errors import ContainerNotFoundError, ContainerNotRunningError
from oci_systemd.runtime import status
from oci_systemd.runtime.placement import placement_of

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from oci_systemd.runtime.lifecycle import Runtime
    from oci_systemd.runtime.status import OciState


def list_containers(rt: Runtime) -> list[OciState]:
    """The state object of every container under the root, with one bus connection."""
    out: list[OciState] = []
    ids = rt.store.ids()
    if not ids:
        return out  # nothing to ask systemd about
    with rt.manager:
        for cid in ids:
            try:
                with rt.store.locked(cid, shared=True) as record:
                    out.append(status.state_json(record, status.status(rt.store, record, rt.manager)))
            except ContainerNotFoundError:
                continue  # deleted while we listed
    return out


def ps(rt: Runtime, cid: str) -> list[int]:
    """The pids of the container's unit (none once it has stopped)."""
    with rt.store.locked(cid, shared=True) as record, rt.manager as bus:
        found = status.status(rt.store, record, rt.manager)
        if not found.has_processes():
            return []
        return placement_of(record).processes(bus, record)


def stats(rt: Runtime, cid: str) -> dict[str, Any]:
    """runc's `events --stats` object, from the init's cgroup."""
    from oci_systemd.runtime import cgroups

    with rt.store.locked(cid, shared=True) as record:
        found = status.status(rt.store, record, rt.manager)
        if not found.has_processes():
            raise ContainerNotRunningError(cid, found.value)
        return {"type": "stats", "id": cid, "data": cgroups.stats(record["pid"])}


def events(
    rt: Runtime, cid: str, *, interval: float, stats_only: bool, emit: Callable[[dict[str, Any]], None]
) -> None:
    """runc's `events`: stats every interval, an `oom` event when systemd reports one,
    until the container stops. Unit changes arrive as D-Bus signals."""
    import asyncio
    import gc

    gc.enable()  # a long-running command (cli/entry.py turns the collector off for short ones)
    emit(stats(rt, cid))
    if stats_only:
        return
    with rt.store.locked(cid, shared=True) as record:
        changes = placement_of(record).watch(record, interval=interval)

    async def loop() -> None:
        async for change in changes:
            if change is None:
                try:
                    emit(stats(rt, cid))
                except ContainerNotRunningError:
                    return
                continue
            if change.get("Result") == "oom-kill":
                emit({"type": "oom", "id": cid})
            if change.get("ActiveState") in ("inactive", "failed"):
                return

    asyncio.run(loop())
