# SPDX-License-Identifier: Apache-2.0
"""The systemd Manager and Unit operations the runtime calls, over one `Bus`.

`Systemd` is the whole interface: the verbs call its methods and never see the binding
(bus.py: libsystemd's sd-bus through ctypes, for every call and signal). Each verb is a fresh
process, so a connection must cost well under a millisecond, and `connect()` takes an address
so tests (tests/unit/fake_systemd.py) and other managers can stand in for the system bus.
"""

from __future__ import annotations

import time

from oci_systemd.errors import JobFailedError, SystemdError, UnsupportedPropertyError
from oci_systemd.runtime.systemd.bus import NO_SUCH_UNIT, Bus, NoSuchUnit
from oci_systemd.runtime.systemd.signature import PropertyEncodingError

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: importing typing costs ~5 ms per command
if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable, Sequence

    from oci_systemd.runtime.systemd.bus import UnitProperty, Value

    # GetUnitProcesses: (cgroup path, pid, command line)
    UnitProcess = tuple[str, int, str]

PATH = "/org/freedesktop/systemd1"
MANAGER = "org.freedesktop.systemd1.Manager"
UNIT = "org.freedesktop.systemd1.Unit"
SCOPE = "org.freedesktop.systemd1.Scope"
PROPS = "org.freedesktop.DBus.Properties"

# How long a job (start/stop of a scope) may take before we give up.
JOB_TIMEOUT_S = 30.0
# unit_properties: up to this many names are read with one Properties.Get each (a few
# round trips beat decoding the ~100 properties GetAll returns).
_FEW = 4
# What Properties.Get answers for a property the interface does not have.
_UNKNOWN_PROPERTY = frozenset(
    ("org.freedesktop.DBus.Error.UnknownProperty", "org.freedesktop.DBus.Error.InvalidArgs")
)


class Systemd:
    """A connection to systemd's Manager (on the system bus, or the bus at `address`).

    Its own context manager, closed on exit (no contextlib: ~1 ms to import).
    """

    def __init__(self, address: str | None = None) -> None:
        self.address = address
        self._bus = Bus(address)
        self._jobs: dict[str, str] = {}  # JobRemoved: job path -> result
        self._subscribed = False

    def close(self) -> None:
        self._bus.close()

    def __enter__(self) -> Systemd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _manager(self, member: str, args: Sequence[tuple[str, object]], what: str) -> list[Value]:
        return self._bus.call(PATH, MANAGER, member, args, what=what)

    # -- jobs ----------------------------------------------------------------------------

    def _subscribe_jobs(self) -> None:
        # Subscribe before enqueueing, or a fast job's JobRemoved can be missed.
        if self._subscribed:
            return
        jobs = self._jobs

        def on_job_removed(values: list[Value]) -> None:
            _id, job, _unit, result = values
            jobs[str(job)] = str(result)

        self._bus.match_signal(PATH, MANAGER, "JobRemoved", on_job_removed)
        self._subscribed = True

    def _wait_job(self, job: str, unit: str, timeout: float = JOB_TIMEOUT_S) -> str:
        """The result of `job` ("done", "failed", ...), once its JobRemoved has arrived."""
        bus = self._bus
        deadline = time.monotonic() + timeout
        while True:
            bus.process()
            if job in self._jobs:
                return self._jobs.pop(job)
            left = deadline - time.monotonic()
            if left <= 0:
                raise SystemdError(f"timed out waiting for systemd job {job} on {unit}")
            bus.wait(int(min(left, 1.0) * 1_000_000))

    # -- units -----------------------------------------------------------------------

    def start_transient_scope(self, name: str, properties: Sequence[UnitProperty]) -> None:
        """StartTransientUnit(name, "fail", props) and wait until its job is done.

        A unit of that name left failed or inactive (an OOM-killed scope, say) would
        make systemd answer "Unit ... already exists": reset it and try once more.
        """
        what = f"start scope {name}"
        self._subscribe_jobs()

        def start() -> str:
            reply = self._bus.call(
                PATH,
                MANAGER,
                "StartTransientUnit",
                [("s", name), ("s", "fail")],
                what=what,
                properties=properties,
                tail=[("a(sa(sv))", [])],  # no auxiliary units
            )
            return _text(reply[0])

        try:
            job = start()
        except PropertyEncodingError:
            raise  # ours, found before sending: not systemd refusing a property
        except SystemdError as exc:
            if exc.dbus_name == "org.freedesktop.systemd1.UnitExists" and self._reset_if_dead(name):
                job = start()
            else:
                raise _property_error(exc, properties) from exc
        result = self._wait_job(job, name)
        if result != "done":
            self.reset_failed(name)
            raise JobFailedError(name, result)

    def _reset_if_dead(self, name: str) -> bool:
        state = self.active_state(name)
        if state in (None, "failed", "inactive"):
            self.reset_failed(name)
            return True
        return False

    def unit_path(self, name: str) -> str | None:
        """GetUnit: the unit's object path, or None when systemd has not loaded it."""
        try:
            return _text(self._manager("GetUnit", [("s", name)], f"get unit {name}")[0])
        except NoSuchUnit:
            return None

    def _loaded(self, name: str) -> str:
        path = self.unit_path(name)
        if path is None:
            raise NoSuchUnit(f"unit {name} is not loaded", dbus_name=NO_SUCH_UNIT)
        return path

    def get_property(self, path: str, interface: str, prop: str, *, what: str) -> Value:
        """Properties.Get of the object at `path`."""
        return self._bus.call(path, PROPS, "Get", [("s", interface), ("s", prop)], what=what)[0]

    def active_state(self, name: str) -> str | None:
        """ActiveState of a loaded unit, or None when systemd does not know it."""
        path = self.unit_path(name)
        if path is None:
            return None
        return _text(self.get_property(path, UNIT, "ActiveState", what="get ActiveState"))

    def unit_properties(self, name: str, interface: str, names: Iterable[str]) -> dict[str, Value]:
        """The properties `names` of the unit's `interface` it has (NoSuchUnit when systemd
        has not loaded the unit): one Properties.Get each for a few, one GetAll for more."""
        path = self._loaded(name)
        wanted = set(names)
        what = f"get properties of {name}"
        if len(wanted) > _FEW:
            [every] = self._bus.call(path, PROPS, "GetAll", [("s", interface)], what=what)
            if not isinstance(every, dict):
                raise SystemdError(f"{what}: GetAll did not answer a dict")
            return {k: v for k, v in every.items() if isinstance(k, str) and k in wanted}
        out: dict[str, Value] = {}
        for prop in sorted(wanted):
            try:
                out[prop] = self.get_property(path, interface, prop, what=what)
            except SystemdError as exc:
                if exc.dbus_name not in _UNKNOWN_PROPERTY:
                    raise
        return out

    def kill_unit(self, name: str, signal: int, *, who: str = "all") -> None:
        self._manager("KillUnit", [("s", name), ("s", who), ("i", signal)], f"kill {name}")

    def stop_unit(self, name: str, *, wait: bool = True) -> None:
        """StopUnit(name, "replace"), waiting for its job unless `wait` is false; a unit
        systemd does not know is already stopped."""
        self._subscribe_jobs()
        try:
            job = _text(self._manager("StopUnit", [("s", name), ("s", "replace")], f"stop {name}")[0])
        except NoSuchUnit:
            return
        if wait:
            self._wait_job(job, name)

    def reset_failed(self, name: str) -> None:
        try:
            self._manager("ResetFailedUnit", [("s", name)], f"reset {name}")
        except SystemdError:
            pass  # not loaded or not failed: nothing to reset

    def unit_processes(self, name: str) -> list[UnitProcess]:
        """GetUnitProcesses: (cgroup path, pid, command line) for every process of the unit."""
        what = f"list processes of {name}"
        [rows] = self._manager("GetUnitProcesses", [("s", name)], what)
        out: list[UnitProcess] = []
        for row in rows if isinstance(rows, list) else ():
            match row:
                case (str(cgroup), int(pid), str(command)):
                    out.append((cgroup, pid, command))
                case _:
                    raise SystemdError(f"{what}: unexpected row {row!r}")
        return out

    def attach_processes(self, name: str, subcgroup: str, pids: Sequence[int]) -> None:
        """AttachProcessesToUnit: systemd moves `pids` into `subcgroup` of the unit's cgroup
        (a user's manager asks PID 1 when it may not move them itself)."""
        args = [("s", name), ("s", subcgroup), ("au", list(pids))]
        self._manager("AttachProcessesToUnit", args, f"attach processes to {name}")

    def set_unit_properties(
        self, name: str, properties: Sequence[UnitProperty], *, runtime: bool = True
    ) -> None:
        what = f"set properties of {name}"
        try:
            self._bus.call(
                PATH,
                MANAGER,
                "SetUnitProperties",
                [("s", name), ("b", runtime)],
                what=what,
                properties=properties,
            )
        except PropertyEncodingError:
            raise
        except SystemdError as exc:
            raise _property_error(exc, properties) from exc

    def freeze_unit(self, name: str) -> None:
        self._manager("FreezeUnit", [("s", name)], f"freeze {name}")

    def thaw_unit(self, name: str) -> None:
        self._manager("ThawUnit", [("s", name)], f"thaw {name}")

    # -- signal streams ------------------------------------------------------------------

    async def watch_unit(self, name: str, *, interval: float) -> AsyncIterator[dict[str, Value] | None]:
        """Yield the unit's PropertiesChanged (changed properties as a dict) as they come, and
        None every `interval` seconds of silence; nothing when systemd does not know the unit.

        The connection's socket is watched by the running asyncio loop (add_reader), and
        sd_bus_process dispatches what arrived to the match's handler.
        """
        import asyncio

        path = self.unit_path(name)
        if path is None:
            return
        changes: list[dict[str, Value]] = []

        def on_change(values: list[Value]) -> None:
            _interface, changed, _invalidated = values
            if isinstance(changed, dict):
                changes.append({str(k): v for k, v in changed.items()})

        bus = self._bus
        bus.match_signal(path, PROPS, "PropertiesChanged", on_change)
        loop = asyncio.get_running_loop()
        readable = asyncio.Event()
        fd = bus.fileno()
        loop.add_reader(fd, readable.set)
        try:
            while True:
                readable.clear()
                bus.process()  # to the end of what sd-bus has buffered: then the fd tells
                if changes:
                    yield changes.pop(0)
                    continue
                try:
                    await asyncio.wait_for(readable.wait(), timeout=interval)
                except TimeoutError:
                    yield None
        finally:
            loop.remove_reader(fd)


def _property_error(exc: SystemdError, properties: Sequence[UnitProperty]) -> SystemdError:
    """Name the property systemd refused, so the user knows what to drop."""
    text = exc.message
    for name, _sig, _value in properties:
        if name in text:
            return UnsupportedPropertyError(name, text)
    return exc


def _text(value: Value) -> str:
    if not isinstance(value, str):
        raise SystemdError(f"expected a string in systemd's reply, got {value!r}")
    return value


def connect(address: str | None = None) -> Systemd:
    """A connection for `with connect() as sd:`: the system bus (DBUS_SYSTEM_BUS_ADDRESS
    honoured), or the bus at `address`."""
    return Systemd(address)


async def watch_unit(
    name: str, *, interval: float, address: str | None = None
) -> AsyncIterator[dict[str, Value] | None]:
    """`Systemd.watch_unit` on a connection of its own, closed when the stream ends."""
    with connect(address) as sd:
        async for change in sd.watch_unit(name, interval=interval):
            yield change


def unit_name_escape(text: str) -> str:
    """Make a string valid inside a unit name: `\\xNN` for what unit names forbid.

    Unlike `systemd-escape`, '-' stays: ids like UUIDs keep their readable form
    (`runc-<id>.scope` does the same), and '+' (valid in ids) is escaped.
    """
    out = []
    for i, ch in enumerate(text):
        if ch.isascii() and (ch.isalnum() or ch in ":_-" or (ch == "." and i > 0)):
            out.append(ch)
        else:
            out.extend(f"\\x{b:02x}" for b in ch.encode())
    return "".join(out)
