# SPDX-License-Identifier: Apache-2.0
"""`update`, `pause` and `resume`: live changes of the container's unit."""

from __future__ import annotations

from oci_systemd.errors import ContainerNotRunningError, InvalidStateError
from oci_systemd.runtime import status
from oci_systemd.runtime.log import log
from oci_systemd.runtime.placement import placement_of
from oci_systemd.runtime.transitions import log_event

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from oci_systemd.runtime.lifecycle import Runtime


def update(rt: Runtime, cid: str, resources: dict[str, Any]) -> None:
    """Change resource limits live: the unit's properties, via SetUnitProperties."""
    from oci_systemd.runtime import resources as res
    from oci_systemd.runtime import spec

    parsed = spec.parse_resources(resources, path="")
    props = res.update_properties(parsed, path="")
    with rt.store.locked(cid) as record, rt.manager as bus:
        found = status.status(rt.store, record, rt.manager)
        if not found.can_update():
            raise ContainerNotRunningError(cid, found.value)
        if props:
            placement_of(record).set_properties(bus, record, props)
    for path in res.unsupported_settings(parsed, path=""):
        log.warning(f"update: {path} has no systemd equivalent and was ignored")
    log_event(
        "UPDATED",
        record,
        found.value,
        f"Container {cid} resources updated: " + ", ".join(name for name, _sig, _v in props),
    )


def freeze(rt: Runtime, cid: str, *, frozen: bool) -> None:
    """pause (frozen) and resume: systemd freezes and thaws the unit's cgroup."""
    with rt.store.locked(cid) as record, rt.manager as bus:
        found = status.status(rt.store, record, rt.manager)
        if frozen and not found.can_pause():
            raise ContainerNotRunningError(cid, found.value)
        if not frozen and not found.can_resume():
            raise InvalidStateError(f"container {cid} is not paused", status=found.value)
        placement_of(record).freeze(bus, record, frozen=frozen)
    word = "paused" if frozen else "resumed"
    log_event(word.upper(), record, "paused" if frozen else "running", f"Container {cid} {word}")
