# SPDX-License-Identifier: Apache-2.0
"""Where a container lives: the seam between the verbs and the systemd unit that holds it.

A placement names the unit of a container, puts the idler into it at create, and answers
for it afterwards: its state, kill of all its processes, freeze and thaw, live resource
changes, its processes, and its removal. The verbs never ask systemd about a unit directly;
they go through the placement the container's record names, chosen once (`placement_of`),
as crun picks one cgroup manager (a vtable) for a container.

`SystemScope`, the default: a transient scope of its own (Delegate=yes) started over D-Bus
in the system manager (`record["placement"] == "scope"`; records written before the field
existed are scopes too). `ServiceUnit`, the unit mode (`"service"`, docs/unit-mode.md): the
calling service is the unit, asked for explicitly by that unit (OCI_SYSTEMD_PLACEMENT=service)
and only for `run`; the container's init becomes its main process (service_unit.py).
`UserScope` (`"user-scope"`, docs/rootless.md): a caller that is not root gets the same scope
in its own user manager, over the user bus, in `app.slice` by default. `UserService`
(`"user-service"`): the unit mode in a user's manager (a user unit from units/).
"""

from __future__ import annotations

import os

from oci_systemd.errors import OciSystemdError, SpecError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence
    from typing import Any, Protocol

    from oci_systemd.runtime.state import Record
    from oci_systemd.runtime.systemd import Systemd, UnitProperty

    class Placement(Protocol):
        """What every placement does; `bus` is a connected `systemd.Systemd`."""

        kind: str
        # The container's init becomes the calling unit's main process and the runtime's
        # processes exit (the unit mode): the idler is not our child, there is no forwarder.
        hands_over: bool

        def unit_for(self, cid: str, cgroups_path: str | None) -> tuple[str, str]: ...

        def start(
            self, bus: Systemd, record: Record, pids: list[int], props: Sequence[UnitProperty]
        ) -> None: ...

        def enter_leaf(self, idler_pid: int, forwarder_pid: int) -> None: ...

        def unit_state(self, bus: Systemd, record: Record) -> tuple[str | None, bool]: ...

        def kill_all(self, bus: Systemd, record: Record, signum: int, *, stopped: bool) -> None: ...

        def destroy(self, bus: Systemd, record: Record) -> None: ...

        def freeze(self, bus: Systemd, record: Record, *, frozen: bool) -> None: ...

        def set_properties(self, bus: Systemd, record: Record, props: Sequence[UnitProperty]) -> None: ...

        def processes(self, bus: Systemd, record: Record) -> list[int]: ...

        def watch(self, record: Record, *, interval: float) -> AsyncIterator[dict[str, Any] | None]: ...


DEFAULT_SLICE = "system.slice"
UNIT_PREFIX = "oci-systemd"
SCOPE = "scope"
SERVICE = "service"
USER_SCOPE = "user-scope"
USER_SERVICE = "user-service"
# Set by a unit that wants to be the container (units/oci-container@.service): the only way in.
PLACEMENT_ENV = "OCI_SYSTEMD_PLACEMENT"

# The scope's own properties; resources and annotations add theirs.
_SCOPE_BASE: tuple[tuple[str, str, object], ...] = (
    ("Delegate", "b", True),
    ("DefaultDependencies", "b", False),
    # A failed scope (OOM kill, say) is garbage-collected, so it never blocks the id.
    ("CollectMode", "s", "inactive-or-failed"),
    ("MemoryAccounting", "b", True),
    ("CPUAccounting", "b", True),
    ("IOAccounting", "b", True),
    ("TasksAccounting", "b", True),
    # `systemctl stop` sends SIGTERM, which a namespace's init without a handler never
    # sees; don't make it wait systemd's 90 s for the SIGKILL. 10 s is podman's and
    # docker's stop timeout; org.systemd.property.TimeoutStopUSec overrides it.
    ("TimeoutStopUSec", "t", 10_000_000),
)

_RUNNING_STATES = ("active", "activating", "reloading", "deactivating")


def scope_for(cid: str, cgroups_path: str | None, default_slice: str = DEFAULT_SLICE) -> tuple[str, str]:
    """(unit, slice) from linux.cgroupsPath in runc's `slice:prefix:name` form.

    `machine.slice:libpod:<id>` gives `libpod-<id>.scope` in machine.slice. A path in
    cgroupfs form (podman/containerd with their cgroupfs manager) or none at all gives
    the default `oci-systemd-<id>.scope` in `default_slice` (system.slice; a user
    manager's slices are its own, app.slice by default).
    """
    from oci_systemd.runtime.systemd import unit_name_escape

    if cgroups_path and ":" in cgroups_path and not cgroups_path.startswith("/"):
        parts = cgroups_path.split(":")
        if len(parts) != 3:
            raise SpecError("linux.cgroupsPath", f"expected slice:prefix:name, got {cgroups_path!r}")
        slice_, prefix, name = parts
        slice_ = slice_ or default_slice
        if not slice_.endswith(".slice"):
            raise SpecError("linux.cgroupsPath", f"{slice_!r} is not a slice name")
        if name.endswith(".slice"):
            raise SpecError("linux.cgroupsPath", "a slice as container cgroup is not supported")
        unit = (
            f"{unit_name_escape(prefix)}-{unit_name_escape(name)}.scope"
            if prefix
            else f"{unit_name_escape(name)}.scope"
        )
        if len(unit) > 255:
            raise SpecError("linux.cgroupsPath", f"unit name {unit[:40]}... is longer than 255 characters")
        return unit, slice_
    return f"{UNIT_PREFIX}-{unit_name_escape(cid)}.scope", default_slice


class _Unit:
    """What both placements do the same way, on the unit the record names (`record["scope"]`)."""

    def unit_state(self, bus: Systemd, record: Record) -> tuple[str | None, bool]:
        """(ActiveState or None when systemd has no such unit, frozen)."""
        state = bus.active_state(record["scope"])
        return state, state == "active" and _is_frozen(bus, record["scope"])

    def freeze(self, bus: Systemd, record: Record, *, frozen: bool) -> None:
        """FreezeUnit/ThawUnit: systemd freezes the unit's cgroup (cgroup.freeze)."""
        if frozen:
            bus.freeze_unit(record["scope"])
        else:
            bus.thaw_unit(record["scope"])

    def set_properties(self, bus: Systemd, record: Record, props: Sequence[UnitProperty]) -> None:
        bus.set_unit_properties(record["scope"], props, runtime=True)

    def watch(self, record: Record, *, interval: float) -> AsyncIterator[dict[str, Any] | None]:
        """The unit's property changes as D-Bus signals; None every `interval` seconds."""
        from oci_systemd.runtime.systemd import watch_unit

        return watch_unit(record["scope"], interval=interval)


class SystemScope(_Unit):
    """The container in a transient scope of its own, in the system manager."""

    kind = SCOPE
    hands_over = False

    def unit_for(self, cid: str, cgroups_path: str | None) -> tuple[str, str]:
        return scope_for(cid, cgroups_path)

    def start(self, bus: Systemd, record: Record, pids: list[int], props: Sequence[UnitProperty]) -> None:
        """StartTransientUnit with PIDs = the idler (and the log forwarder); returns once the
        job is done (JobRemoved), so the processes are in the scope."""
        bus.start_transient_scope(
            record["scope"],
            [
                ("Description", "s", f"oci-systemd container {record['id']}"),
                ("Slice", "s", record["slice"]),
                *_SCOPE_BASE,
                ("PIDs", "au", pids),
                *props,
            ],
        )

    def enter_leaf(self, idler_pid: int, forwarder_pid: int) -> None:
        """Move the idler into `<scope>/container` (its init is born there): with Delegate=yes,
        controllers can only be enabled for a cgroup without processes (systemd#26311), so
        they live in a leaf."""
        from oci_systemd.runtime import cgroups

        cgroups.enter_leaf(idler_pid)
        if forwarder_pid:
            cgroups.enter_leaf(forwarder_pid, "log")

    def kill_all(self, bus: Systemd, record: Record, signum: int, *, stopped: bool) -> None:
        """KillUnit(all) on the scope. runc's `kill --all` of a stopped container whose cgroup
        is gone succeeds, and containerd's CRI relies on it: it sends `kill --all <id> 9` while
        it cleans up an exited task and retries that forever on failure. A scope systemd has
        already collected (its init exited, or the init exits now, between the check and the
        call) is that case: nothing is left to signal."""
        from oci_systemd.runtime.state import pid_alive
        from oci_systemd.runtime.systemd import NoSuchUnit

        if stopped and bus.active_state(record["scope"]) in (None, "inactive", "failed"):
            return
        try:
            bus.kill_unit(record["scope"], signum, who="all")
        except NoSuchUnit:
            if pid_alive(record):
                raise

    def destroy(self, bus: Systemd, record: Record) -> None:
        """Kill everything in the scope, stop it, and make sure systemd forgets it."""
        from oci_systemd.runtime.transitions import fault_point

        scope = record.get("scope", "")
        state = bus.active_state(scope) if scope else None
        if state is None:  # systemd has no such unit (stopped and collected): nothing to reset
            return
        if state in _RUNNING_STATES:
            self._let_the_log_forwarder_finish(bus, record)
            try:
                bus.thaw_unit(scope)
            except OciSystemdError:
                pass
            try:
                bus.kill_unit(scope, 9, who="all")  # SIGKILL
            except OciSystemdError:
                pass
            fault_point("delete:killed")
            bus.stop_unit(scope)
        bus.reset_failed(scope)

    def processes(self, bus: Systemd, record: Record) -> list[int]:
        return sorted(pid for _cgroup, pid, _cmd in bus.unit_processes(record["scope"]))

    @staticmethod
    def _let_the_log_forwarder_finish(bus: Systemd, record: Record) -> None:
        """The journal forwarder (log_forwarder.py, in `<scope>/log`) writes the container's last
        lines once its pipes reach EOF, i.e. after the init has exited: killing the scope at
        once would lose them (`run` deletes right after the exit). Up to a second for it to
        finish, only when the container has one and its init is gone (not for delete --force
        of a running container)."""
        from oci_systemd.runtime import cgroups
        from oci_systemd.runtime.log_forwarder import LOG_ANNOTATION
        from oci_systemd.runtime.state import pid_alive

        if LOG_ANNOTATION not in (record.get("annotations") or {}) or pid_alive(record):
            return
        try:
            props = bus.unit_properties(record["scope"], "org.freedesktop.systemd1.Scope", ["ControlGroup"])
        except OciSystemdError:
            return
        cgroup = props.get("ControlGroup")
        if isinstance(cgroup, str) and cgroup:
            cgroups.wait_until_empty(cgroup, "log", timeout=1.0)


class _InUserManager:
    """What a placement in the caller's own user manager does differently: limits whose
    controller that manager lacks are left out with a warning (rootless_policy.delegated_properties),
    and signals are watched on the user bus. Mixed in before the system manager's class."""

    def start(self, bus: Systemd, record: Record, pids: list[int], props: Sequence[UnitProperty]) -> None:
        super().start(bus, record, pids, _enforceable(bus, record, props))  # type: ignore[misc]

    def set_properties(self, bus: Systemd, record: Record, props: Sequence[UnitProperty]) -> None:
        super().set_properties(bus, record, _enforceable(bus, record, props))  # type: ignore[misc]

    def watch(self, record: Record, *, interval: float) -> AsyncIterator[dict[str, Any] | None]:
        from oci_systemd.runtime.rootless import bus_address
        from oci_systemd.runtime.systemd import watch_unit

        return watch_unit(record["scope"], interval=interval, address=bus_address())


class UserScope(_InUserManager, SystemScope):
    """The same scope in the caller's own systemd manager (a user's, over the user bus):
    `app.slice` by default, `slice:prefix:name` resolved there."""

    kind = USER_SCOPE

    def unit_for(self, cid: str, cgroups_path: str | None) -> tuple[str, str]:
        from oci_systemd.runtime.rootless import USER_SLICE

        return scope_for(cid, cgroups_path, USER_SLICE)


def _enforceable(bus: Systemd, record: Record, props: Sequence[UnitProperty]) -> list[UnitProperty]:
    """The properties the user manager can enforce; a warning names the others."""
    from oci_systemd.runtime import cgroups, rootless_policy
    from oci_systemd.runtime.systemd.manager import MANAGER, PATH

    own = bus.get_property(PATH, MANAGER, "ControlGroup", what="get the manager's ControlGroup")
    controllers = rootless_policy.manager_controllers(str(own), mount=cgroups.unified_mount())
    kept, dropped = rootless_policy.delegated_properties(props, controllers)
    rootless_policy.warn_dropped(record["id"], dropped, controllers)
    return kept


def _is_frozen(bus: Systemd, scope: str) -> bool:
    try:
        props = bus.unit_properties(scope, "org.freedesktop.systemd1.Unit", ["FreezerState"])
    except OciSystemdError:
        return False
    state = props.get("FreezerState", b"running")
    return (state.decode() if isinstance(state, bytes) else str(state)) in ("frozen", "freezing")


class ServiceUnit(_Unit):
    """The container is the calling service (Delegate=yes): its processes in the leaf
    `<service cgroup>/container`, its init the service's main process. The unit is never
    started or stopped here: systemd does that, and delete runs inside it (ExecStopPost)."""

    kind = SERVICE
    hands_over = True

    def unit_for(self, cid: str, cgroups_path: str | None) -> tuple[str, str]:
        """The calling service, whatever linux.cgroupsPath says (an engine's path is a
        scope's; no engine asks for this mode)."""
        from oci_systemd.runtime.service_unit import calling_service

        return calling_service()

    def start(self, bus: Systemd, record: Record, pids: list[int], props: Sequence[UnitProperty]) -> None:
        """Nothing to start: the unit runs us. The bundle's resources and
        org.systemd.property.* annotations become runtime properties of the service."""
        if props:
            bus.set_unit_properties(record["scope"], props, runtime=True)

    def enter_leaf(self, idler_pid: int, forwarder_pid: int) -> None:
        """The idler (in the service's cgroup, as we are) moves to `<service>/container`, so
        the init is born there and `ps` tells the container from the runtime."""
        from oci_systemd.runtime import cgroups

        cgroups.enter_leaf(idler_pid)

    def unit_state(self, bus: Systemd, record: Record) -> tuple[str | None, bool]:
        """The service's ActiveState, and its MainPID: once started, the container is the
        service's main process; a service whose main process is another one (a later
        invocation, a MAINPID= from elsewhere) does not run this container any more."""
        state, frozen = super().unit_state(bus, record)
        if state == "active" and record.get("phase") == "started":
            props = bus.unit_properties(record["scope"], "org.freedesktop.systemd1.Service", ["MainPID"])
            main = props.get("MainPID")
            if isinstance(main, int) and main not in (0, record["pid"]):
                return "inactive", False
        return state, frozen

    def kill_all(self, bus: Systemd, record: Record, signum: int, *, stopped: bool) -> None:
        """KillUnit(all) on the service: after the handover its processes are the container's."""
        if stopped and bus.active_state(record["scope"]) in (None, "inactive", "failed"):
            return
        bus.kill_unit(record["scope"], signum, who="all")

    def destroy(self, bus: Systemd, record: Record) -> None:
        """Kill the container's cgroup and remove it; the service stops by itself once its
        main process is gone (and delete may be running as one of its own commands)."""
        from oci_systemd.runtime.service_unit import kill_leaf

        kill_leaf(record)

    def processes(self, bus: Systemd, record: Record) -> list[int]:
        """The service's processes in the container's cgroup (not a runtime still exiting)."""
        from oci_systemd.runtime.service_unit import leaf_cgroup

        leaf = leaf_cgroup(record)
        rows = bus.unit_processes(record["scope"])
        return sorted(pid for cgroup, pid, _cmd in rows if cgroup == leaf or cgroup.startswith(leaf + "/"))


class UserService(_InUserManager, ServiceUnit):
    """The unit mode in a user's manager: the container is the calling user service. The
    user manager is a subreaper, so the init becomes its child, and it takes MAINPID= from an
    unprivileged sender because the init is in the service's own cgroup."""

    kind = USER_SERVICE

    def unit_for(self, cid: str, cgroups_path: str | None) -> tuple[str, str]:
        from oci_systemd.runtime.service_unit import calling_service

        return calling_service(user_manager=True)

    def start(self, bus: Systemd, record: Record, pids: list[int], props: Sequence[UnitProperty]) -> None:
        from oci_systemd.runtime.service_unit import check_delegated

        check_delegated(bus, record)
        super().start(bus, record, pids, props)


_PLACEMENTS: dict[str, Placement] = {}
_KINDS = (SCOPE, SERVICE, USER_SCOPE, USER_SERVICE)


def choose_placement(*, run: bool = False) -> Placement:
    """The placement of a new container, chosen once at create and kept in its record: the
    scope, unless the calling unit asks for the unit mode (OCI_SYSTEMD_PLACEMENT=service,
    never guessed); in the user's manager for a caller that is not root. Only `run` can
    hand the container over to the service and exit."""
    from oci_systemd.runtime.rootless import is_rootless

    kind = os.environ.get(PLACEMENT_ENV) or SCOPE
    if kind == SCOPE:
        return _placement(USER_SCOPE if is_rootless() else SCOPE)
    from oci_systemd.runtime.service_unit import PlacementError

    if kind != SERVICE:
        raise PlacementError(f"{PLACEMENT_ENV}={kind}: expected one of {SCOPE}, {SERVICE}")
    if not run:
        raise PlacementError(f"{PLACEMENT_ENV}=service is for `oci-systemd run` as a service's ExecStart")
    return _placement(USER_SERVICE if is_rootless() else SERVICE)


def placement_of(record: Record) -> Placement:
    """The placement a container's record names (chosen at create, never guessed later)."""
    kind = record.get("placement", SCOPE)
    if kind not in _KINDS:
        raise OciSystemdError(f"container {record.get('id', '?')} has an unknown placement {kind!r}")
    return _placement(kind)


def _placement(kind: str) -> Placement:
    found = _PLACEMENTS.get(kind)
    if found is None:
        classes: dict[str, type[Placement]] = {
            SERVICE: ServiceUnit,
            USER_SCOPE: UserScope,
            USER_SERVICE: UserService,
        }
        found = _PLACEMENTS[kind] = classes.get(kind, SystemScope)()
    return found
