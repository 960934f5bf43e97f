# SPDX-License-Identifier: Apache-2.0
"""The ctypes sd-bus path of oci_systemd.systemd, against a fake systemd Manager.

A private dbus-daemon stands in for the system bus (DBUS_SYSTEM_BUS_ADDRESS), and a dbus-next
service in a thread answers as org.freedesktop.systemd1: GetUnit, Properties.Get, KillUnit,
ResetFailedUnit, FreezeUnit, ThawUnit and StopUnit with its JobRemoved signal.
"""

import asyncio
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from oci_systemd import systemd
from oci_systemd.errors import SystemdError

pytestmark = pytest.mark.skipif(
    shutil.which("dbus-daemon") is None or systemd._libsystemd() is None,
    reason="needs dbus-daemon and libsystemd.so.0",
)

UNIT_PATH = "/org/freedesktop/systemd1/unit/c1_2escope"


def _fake_manager(calls: list[tuple[Any, ...]]) -> tuple[Any, Any]:
    from dbus_next import DBusError
    from dbus_next.service import PropertyAccess, ServiceInterface, dbus_property, method, signal

    class Unit(ServiceInterface):
        def __init__(self) -> None:
            super().__init__("org.freedesktop.systemd1.Unit")

        @dbus_property(access=PropertyAccess.READ)
        def ActiveState(self) -> "s":  # type: ignore[name-defined]  # noqa: F821
            return "active"

        @dbus_property(access=PropertyAccess.READ)
        def FreezerState(self) -> "s":  # type: ignore[name-defined]  # noqa: F821
            return "frozen"

    class Manager(ServiceInterface):
        def __init__(self) -> None:
            super().__init__("org.freedesktop.systemd1.Manager")

        @method()
        def GetUnit(self, name: "s") -> "o":  # type: ignore[name-defined]  # noqa: F821
            calls.append(("GetUnit", name))
            if name != "c1.scope":
                raise DBusError("org.freedesktop.systemd1.NoSuchUnit", f"Unit {name} not loaded.")
            return UNIT_PATH

        @method()
        def KillUnit(self, name: "s", who: "s", sig: "i"):  # type: ignore[name-defined]  # noqa: F821
            calls.append(("KillUnit", name, who, sig))
            if name != "c1.scope":
                raise DBusError("org.freedesktop.systemd1.NoSuchUnit", f"Unit {name} not loaded.")
            if who not in ("all", "main"):
                raise DBusError("org.freedesktop.DBus.Error.InvalidArgs", f"Invalid who argument {who}")

        @method()
        def ResetFailedUnit(self, name: "s"):  # type: ignore[name-defined]  # noqa: F821
            calls.append(("ResetFailedUnit", name))
            raise DBusError("org.freedesktop.systemd1.NoSuchUnit", f"Unit {name} not loaded.")

        @method()
        def FreezeUnit(self, name: "s"):  # type: ignore[name-defined]  # noqa: F821
            calls.append(("FreezeUnit", name))

        @method()
        def ThawUnit(self, name: "s"):  # type: ignore[name-defined]  # noqa: F821
            calls.append(("ThawUnit", name))

        @method()
        def StopUnit(self, name: "s", mode: "s") -> "o":  # type: ignore[name-defined]  # noqa: F821
            calls.append(("StopUnit", name, mode))
            job = "/org/freedesktop/systemd1/job/7"
            # The reply goes out before the signal, as systemd's would.
            asyncio.get_running_loop().call_later(0.05, self.JobRemoved, 7, job, name, "done")
            return job

        @signal()
        def JobRemoved(self, id_: "u", job: "o", unit: "s", result: "s") -> "uoss":  # type: ignore[name-defined]  # noqa: F821
            return [id_, job, unit, result]

    return Manager(), Unit()


@pytest.fixture
def fake_systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[Any, ...]]]:
    address = f"unix:path={tmp_path}/bus"
    daemon = subprocess.Popen(
        ["dbus-daemon", "--session", "--nofork", "--nopidfile", f"--address={address}", "--print-address"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert daemon.stdout is not None
    daemon.stdout.readline()  # listening
    calls: list[tuple[Any, ...]] = []
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        from dbus_next.aio.message_bus import MessageBus

        bus = await MessageBus(bus_address=address).connect()
        manager, unit = _fake_manager(calls)
        bus.export("/org/freedesktop/systemd1", manager)
        bus.export(UNIT_PATH, unit)
        await bus.request_name("org.freedesktop.systemd1")
        ready.set()
        await stop.wait()
        bus.disconnect()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    try:
        assert ready.wait(10), "fake systemd did not come up"
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        yield calls
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(5)
        daemon.terminate()
        daemon.wait(5)


def test_flat_calls_go_through_ctypes(fake_systemd: list[tuple[Any, ...]]) -> None:
    with systemd.connect() as sd:
        assert sd._sd is not None
        assert sd.unit_path("c1.scope") == UNIT_PATH.encode()
        assert sd.unit_path("nope.scope") is None
        assert sd.active_state("c1.scope") == "active"
        assert sd.active_state("nope.scope") is None
        assert sd.unit_properties("c1.scope", "org.freedesktop.systemd1.Unit", ["FreezerState"]) == {
            "FreezerState": b"frozen"
        }
        sd.kill_unit("c1.scope", 9)
        sd.freeze_unit("c1.scope")
        sd.thaw_unit("c1.scope")
        sd.reset_failed("c1.scope")  # errors swallowed
        sd.stop_unit("c1.scope")  # waits for JobRemoved
    assert ("KillUnit", "c1.scope", "all", 9) in fake_systemd
    assert ("FreezeUnit", "c1.scope") in fake_systemd
    assert ("ThawUnit", "c1.scope") in fake_systemd
    assert ("ResetFailedUnit", "c1.scope") in fake_systemd
    assert ("StopUnit", "c1.scope", "replace") in fake_systemd


def test_errors_keep_their_dbus_names(fake_systemd: list[tuple[Any, ...]]) -> None:
    with systemd.connect() as sd:
        with pytest.raises(systemd.NoSuchUnit) as nsu:
            sd.kill_unit("nope.scope", 15)
        assert nsu.value.dbus_name == "org.freedesktop.systemd1.NoSuchUnit"
        assert str(nsu.value) == "kill nope.scope: Unit nope.scope not loaded."
        with pytest.raises(SystemdError) as bad:
            sd.kill_unit("c1.scope", 15, who="bogus")
        assert not isinstance(bad.value, systemd.NoSuchUnit)
        assert bad.value.dbus_name == "org.freedesktop.DBus.Error.InvalidArgs"
        with pytest.raises(systemd.NoSuchUnit):
            sd.unit_properties("nope.scope", "org.freedesktop.systemd1.Unit", ["FreezerState"])


def test_short_commands_do_not_import_pystemd(fake_systemd: list[tuple[Any, ...]]) -> None:
    code = (
        "import sys\n"
        "from oci_systemd.systemd import connect\n"
        "with connect() as sd:\n"
        "    print(sd.active_state('c1.scope'))\n"
        "    sd.kill_unit('c1.scope', 15)\n"
        "    sd.stop_unit('c1.scope')\n"
        "    sd.reset_failed('c1.scope')\n"
        "print(sorted(m for m in sys.modules if m.startswith(('pystemd', 'dataclasses', 'inspect'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert out.stdout.splitlines() == ["active", "[]"], out.stderr


def test_cannot_connect(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/nothing-here")
    with pytest.raises(SystemdError, match="cannot connect to the systemd system bus") as exc:
        systemd.Systemd()
    assert exc.value.hint


def test_without_libsystemd_everything_goes_to_pystemd(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []

    class Reply:
        def __init__(self, body: Any) -> None:
            self.body = body

    class FakeBus:
        def open(self) -> None:
            calls.append(("open",))

        def close(self) -> None:
            calls.append(("close",))

        def call_method(self, dest: bytes, path: bytes, iface: bytes, method: bytes, args: Any) -> Reply:
            calls.append((method, args))
            return Reply(b"/unit/x" if method == b"GetUnit" else None)

        def get_property(self, dest: bytes, path: bytes, iface: bytes, prop: bytes, sig: bytes) -> bytes:
            return b"active"

    class FakeDbuslib:
        DBus = FakeBus

    monkeypatch.setattr(systemd, "_LIB", None)
    monkeypatch.setattr(systemd, "_LIB_TRIED", True)
    monkeypatch.setattr(systemd, "_dbuslib", lambda: FakeDbuslib)
    with systemd.connect() as sd:
        assert sd._sd is None
        assert sd.active_state("x.scope") == "active"
        sd.kill_unit("x.scope", 9)
        sd.freeze_unit("x.scope")
        sd.reset_failed("x.scope")
    assert calls[0] == ("open",)
    assert calls[-1] == ("close",)
    methods = [c[0] for c in calls[1:-1]]
    assert methods == [b"GetUnit", b"KillUnit", b"FreezeUnit", b"ResetFailedUnit"]


def test_libsystemd_missing_is_not_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> None:
        raise OSError("libsystemd.so.0: cannot open shared object file")

    monkeypatch.setattr(systemd, "_LIB", None)
    monkeypatch.setattr(systemd, "_LIB_TRIED", False)
    monkeypatch.setattr(systemd, "_Lib", missing)
    assert systemd._libsystemd() is None
    assert systemd._LIB_TRIED


def test_import_cost_stays_small() -> None:
    code = "import oci_systemd.systemd as s; s._libsystemd(); import sys; print(sorted(sys.modules))"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    loaded = out.stdout
    for heavy in ("pystemd", "dataclasses", "inspect", "pprint", "uuid", "pathlib"):
        assert f"'{heavy}'" not in loaded, heavy
