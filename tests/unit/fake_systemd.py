# SPDX-License-Identifier: Apache-2.0
# dbus-next reads a method's D-Bus signature from its annotations ("s", "a(sv)", ...), quoted
# (UP037); a method that returns nothing has none (dbus-next refuses `-> None`: no-untyped-def
# on its line). dbus-next has no types, so its decorators and calls are untyped (the two codes).
# ruff: noqa: UP037
# mypy: disable-error-code="untyped-decorator, no-untyped-call"
"""A fake systemd Manager on a private dbus-daemon, for tests that need no root.

`FakeSystemd.start(directory)` runs `dbus-daemon` on a socket in `directory` and, in a thread,
a dbus-next service that owns org.freedesktop.systemd1 and answers what the runtime calls:

- Manager: GetUnit, StartTransientUnit and StopUnit (each followed by JobRemoved, sent after
  the reply as systemd sends it), KillUnit, ResetFailedUnit, FreezeUnit, ThawUnit,
  SetUnitProperties, GetUnitProcesses;
- each unit at systemd's object path for it, with Properties.Get/GetAll and
  PropertiesChanged of org.freedesktop.systemd1.Unit (Id, ActiveState, SubState,
  FreezerState) and of .Scope or .Service (ControlGroup, Result; a service also MainPID).

Units live in `units` (name -> FakeUnit); every call is recorded in `calls` as a tuple
(method name, its arguments), unit properties decoded to (name, signature, value). Use it
through the `fake_systemd` fixture (conftest.py), which also points DBUS_SYSTEM_BUS_ADDRESS
at it, so code that connects to "the system bus" reaches the fake.

Scripted failures, by unit name: StartTransientUnit of `again.scope` answers UnitExists once
(a dead unit of that name), of `fail.scope` ends with a failed job; a property whose name
starts with "NoSuch" is refused as systemd refuses unknown ones.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import subprocess
import threading
from typing import TYPE_CHECKING, Any

from dbus_next.aio.message_bus import MessageBus
from dbus_next.constants import PropertyAccess
from dbus_next.errors import DBusError
from dbus_next.service import ServiceInterface, dbus_property, method, signal
from dbus_next.signature import Variant

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    # The basic D-Bus signatures, for mypy the Python types dbus-next hands over and takes back.
    # A container signature ("a(sv)") is no name: those lines say valid-type (and F821 to ruff).
    s = str
    o = str
    b = bool
    i = int
    u = int
    uoss = list[object]  # a signal's out arguments, as the list that emits them

NO_SUCH_UNIT = "org.freedesktop.systemd1.NoSuchUnit"
MANAGER_PATH = "/org/freedesktop/systemd1"
SIGKILL = 9


def unit_path(name: str) -> str:
    """systemd's object path of a unit (bus_label_escape: `_xx` for all but [A-Za-z0-9])."""
    label = "".join(c if c.isascii() and c.isalnum() else f"_{ord(c):02x}" for c in name)
    return f"{MANAGER_PATH}/unit/{label}"


def _plain(value: Any) -> Any:
    """A dbus-next value with Variants as (signature, value), structs as tuples."""
    if isinstance(value, Variant):
        return (value.signature, _plain(value.value))
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def decode_properties(props: list[Any]) -> list[tuple[str, str, Any]]:
    """`a(sv)` as dbus-next hands it over: [(name, signature, value)], values as sent."""
    return [(name, v.signature, _plain(v.value)) for name, v in props]


class FakeUnit:
    """One unit's state, shared by its D-Bus objects; change it with `FakeSystemd.update`."""

    def __init__(self, name: str, properties: list[tuple[str, str, Any]]) -> None:
        self.name = name
        self.path = unit_path(name)
        self.active_state = "active"
        self.sub_state = "running"
        self.freezer_state = "running"
        self.result = "success"
        self.main_pid = 0
        self.control_group = f"/system.slice/{name}"
        self.processes: list[tuple[str, int, str]] = []
        self.properties = properties  # as StartTransientUnit/SetUnitProperties received them
        self.signals: list[tuple[str, int]] = []  # KillUnit's (who, signal)
        self.interfaces: list[ServiceInterface] = []


class _UnitInterface(ServiceInterface):
    CHANGING = frozenset({"ActiveState", "SubState", "FreezerState"})  # for PropertiesChanged

    def __init__(self, unit: FakeUnit) -> None:
        super().__init__("org.freedesktop.systemd1.Unit")
        self.unit = unit

    @dbus_property(access=PropertyAccess.READ)
    def Id(self) -> "s":
        return self.unit.name

    @dbus_property(access=PropertyAccess.READ)
    def ActiveState(self) -> "s":
        return self.unit.active_state

    @dbus_property(access=PropertyAccess.READ)
    def SubState(self) -> "s":
        return self.unit.sub_state

    @dbus_property(access=PropertyAccess.READ)
    def FreezerState(self) -> "s":
        return self.unit.freezer_state


class _ScopeInterface(ServiceInterface):
    CHANGING = frozenset({"ControlGroup", "Result"})

    def __init__(self, unit: FakeUnit, interface: str = "org.freedesktop.systemd1.Scope") -> None:
        super().__init__(interface)
        self.unit = unit

    @dbus_property(access=PropertyAccess.READ)
    def ControlGroup(self) -> "s":
        return self.unit.control_group

    @dbus_property(access=PropertyAccess.READ)
    def Result(self) -> "s":
        return self.unit.result


class _ServiceInterface(_ScopeInterface):
    CHANGING = frozenset({"ControlGroup", "Result", "MainPID"})

    def __init__(self, unit: FakeUnit) -> None:
        super().__init__(unit, "org.freedesktop.systemd1.Service")

    @dbus_property(access=PropertyAccess.READ)
    def MainPID(self) -> "u":
        return self.unit.main_pid


class _Manager(ServiceInterface):
    def __init__(self, fake: FakeSystemd) -> None:
        super().__init__("org.freedesktop.systemd1.Manager")
        self.fake = fake
        self.next_job = 1

    def _unit(self, name: str) -> FakeUnit:
        unit = self.fake.units.get(name)
        if unit is None:
            raise DBusError(NO_SUCH_UNIT, f"Unit {name} not loaded.")
        return unit

    def _job(self, unit: str, result: str) -> str:
        """A job path; its JobRemoved goes out after the reply, as systemd's does."""
        job_id, self.next_job = self.next_job, self.next_job + 1
        job = f"{MANAGER_PATH}/job/{job_id}"
        loop = asyncio.get_running_loop()
        loop.call_later(self.fake.job_delay, self.JobRemoved, job_id, job, unit, result)
        return job

    @staticmethod
    def _refuse_unknown(props: list[tuple[str, str, Any]]) -> None:
        for name, _sig, _value in props:
            if name.startswith("NoSuch"):
                raise DBusError(
                    "org.freedesktop.DBus.Error.PropertyReadOnly",
                    f"Cannot set property {name}, or unknown property.",
                )

    @method()
    def GetUnit(self, name: "s") -> "o":
        self.fake.calls.append(("GetUnit", name))
        return self._unit(name).path

    @method()
    def StartTransientUnit(self, name: "s", mode: "s", props: "a(sv)", aux: "a(sa(sv))") -> "o":  # type: ignore[valid-type]  # noqa: F821
        decoded = decode_properties(props)
        self.fake.calls.append(("StartTransientUnit", name, mode, decoded, aux))
        self._refuse_unknown(decoded)
        tries = sum(c[:2] == ("StartTransientUnit", name) for c in self.fake.calls)
        if name in self.fake.units or (name == "again.scope" and tries == 1):
            raise DBusError(
                "org.freedesktop.systemd1.UnitExists",
                f"Unit {name} was already loaded or has a fragment file.",
            )
        unit = self.fake.add_unit_here(name, decoded)
        if name == "fail.scope":
            unit.active_state, unit.sub_state, unit.result = "failed", "failed", "resources"
            return self._job(name, "failed")
        return self._job(name, "done")

    @method()
    def StopUnit(self, name: "s", mode: "s") -> "o":
        self.fake.calls.append(("StopUnit", name, mode))
        self._unit(name)
        job = self._job(name, "done")
        # Stopped, then collected: GetUnit answers NoSuchUnit from now on.
        self.fake.update_here(name, active_state="inactive", sub_state="dead")
        self.fake.remove_unit_here(name)
        return job

    @method()
    def KillUnit(self, name: "s", who: "s", sig: "i"):  # type: ignore[no-untyped-def]
        self.fake.calls.append(("KillUnit", name, who, sig))
        unit = self._unit(name)
        if who not in ("all", "main", "control"):
            raise DBusError("org.freedesktop.DBus.Error.InvalidArgs", f"Invalid who argument {who}")
        unit.signals.append((who, sig))

    @method()
    def ResetFailedUnit(self, name: "s"):  # type: ignore[no-untyped-def]
        self.fake.calls.append(("ResetFailedUnit", name))
        if self._unit(name).active_state == "failed":
            self.fake.remove_unit_here(name)

    @method()
    def FreezeUnit(self, name: "s"):  # type: ignore[no-untyped-def]
        self.fake.calls.append(("FreezeUnit", name))
        self._unit(name)
        self.fake.update_here(name, freezer_state="frozen")

    @method()
    def ThawUnit(self, name: "s"):  # type: ignore[no-untyped-def]
        self.fake.calls.append(("ThawUnit", name))
        self._unit(name)
        self.fake.update_here(name, freezer_state="running")

    @method()
    def SetUnitProperties(self, name: "s", runtime: "b", props: "a(sv)"):  # type: ignore[no-untyped-def, valid-type]  # noqa: F821
        decoded = decode_properties(props)
        self.fake.calls.append(("SetUnitProperties", name, runtime, decoded))
        unit = self._unit(name)
        self._refuse_unknown(decoded)
        unit.properties += decoded

    @method()
    def GetUnitProcesses(self, name: "s") -> "a(sus)":  # type: ignore[valid-type]  # noqa: F821
        self.fake.calls.append(("GetUnitProcesses", name))
        return [list(p) for p in self._unit(name).processes]

    @signal()
    def JobRemoved(self, id_: "u", job: "o", unit: "s", result: "s") -> "uoss":
        return [id_, job, unit, result]


# FakeUnit attributes -> the D-Bus property each one is.
_PROPERTY_NAMES = {
    "active_state": "ActiveState",
    "sub_state": "SubState",
    "freezer_state": "FreezerState",
    "result": "Result",
    "main_pid": "MainPID",
    "control_group": "ControlGroup",
}


class FakeSystemd:
    """dbus-daemon + the fake Manager; `address` is the bus to connect to."""

    def __init__(self, address: str, daemon: subprocess.Popen[str]) -> None:
        self.address = address
        self.units: dict[str, FakeUnit] = {}
        self.calls: list[tuple[Any, ...]] = []
        self.job_delay = 0.01  # seconds from a job's reply to its JobRemoved
        self._daemon = daemon
        self._loop = asyncio.new_event_loop()
        self._bus: MessageBus | None = None
        self._stop = asyncio.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(
            target=self._loop.run_until_complete, args=(self._serve(),), daemon=True
        )

    @classmethod
    def start(cls, directory: Path) -> FakeSystemd:
        address = f"unix:path={directory}/bus"
        daemon = subprocess.Popen(
            [
                "dbus-daemon",
                "--session",
                "--nofork",
                "--nopidfile",
                f"--address={address}",
                "--print-address",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert daemon.stdout is not None
        daemon.stdout.readline()  # it prints the address once it listens
        fake = cls(address, daemon)
        fake._thread.start()
        if not fake._ready.wait(10):
            fake.stop()
            raise RuntimeError("fake systemd did not come up")
        return fake

    async def _serve(self) -> None:
        self._bus = bus = await MessageBus(bus_address=self.address).connect()
        self.manager = _Manager(self)
        bus.export(MANAGER_PATH, self.manager)
        await bus.request_name("org.freedesktop.systemd1")
        self._ready.set()
        await self._stop.wait()
        bus.disconnect()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(5)
        self._daemon.terminate()
        self._daemon.wait(5)

    # -- from the test's thread ------------------------------------------------------------

    def _in_loop(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(fn(*args, **kwargs))
            except BaseException as exc:
                done.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return done.result(10)

    def add_unit(self, name: str, **state: Any) -> FakeUnit:
        """A loaded unit (active and running unless `state` says otherwise: `active_state`,
        `sub_state`, `freezer_state`, `result`, `main_pid`, `control_group`, `processes`)."""
        return self._in_loop(self.add_unit_here, name, [], **state)  # type: ignore[no-any-return]

    def update(self, name: str, **state: Any) -> None:
        """Change a unit's state, with PropertiesChanged for what changed, as systemd does."""
        self._in_loop(self.update_here, name, **state)

    def export(self, path: str, interface: ServiceInterface) -> None:
        """Serve one more object (a test's own interface) as org.freedesktop.systemd1."""
        assert self._bus is not None
        self._in_loop(self._bus.export, path, interface)

    def manager_calls(self, method: str) -> list[tuple[Any, ...]]:
        """The recorded calls of `method`, each without the method name."""
        return [c[1:] for c in self.calls if c[0] == method]

    # -- in the service's thread ---------------------------------------------------------

    def add_unit_here(self, name: str, properties: list[tuple[str, str, Any]], **state: Any) -> FakeUnit:
        assert self._bus is not None
        unit = FakeUnit(name, properties)
        for key, value in state.items():
            if not hasattr(unit, key):
                raise TypeError(f"FakeUnit has no {key}")
            setattr(unit, key, value)
        kind = _ServiceInterface if name.endswith(".service") else _ScopeInterface
        unit.interfaces = [_UnitInterface(unit), kind(unit)]
        for interface in unit.interfaces:
            self._bus.export(unit.path, interface)
        self.units[name] = unit
        return unit

    def update_here(self, name: str, **state: Any) -> None:
        unit = self.units[name]
        for key, value in state.items():
            setattr(unit, key, value)
        for interface in unit.interfaces:
            changing: frozenset[str] = interface.CHANGING  # type: ignore[attr-defined]
            changed = {
                _PROPERTY_NAMES[k]: getattr(unit, k)
                for k in state
                if k in _PROPERTY_NAMES and _PROPERTY_NAMES[k] in changing
            }
            if changed:
                interface.emit_properties_changed(changed)

    def remove_unit_here(self, name: str) -> None:
        assert self._bus is not None
        unit = self.units.pop(name)
        self._bus.unexport(unit.path)
