# SPDX-License-Identifier: Apache-2.0
"""The ctypes sd-bus path of oci_systemd.runtime.systemd, against a fake systemd Manager.

A private dbus-daemon stands in for the system bus (DBUS_SYSTEM_BUS_ADDRESS), and a dbus-next
service in a thread answers as org.freedesktop.systemd1: GetUnit, Properties.Get, KillUnit,
ResetFailedUnit, FreezeUnit, ThawUnit, StopUnit, StartTransientUnit (with their JobRemoved
signal) and SetUnitProperties.
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

from oci_systemd.errors import JobFailedError, SystemdError, UnsupportedPropertyError
from oci_systemd.runtime import systemd

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

        @method()
        def StartTransientUnit(  # type: ignore[no-untyped-def]
            self,
            name: "s",  # type: ignore[name-defined]  # noqa: F821
            mode: "s",  # type: ignore[name-defined]  # noqa: F821
            props: "a(sv)",  # type: ignore[name-defined]  # noqa: F821
            aux: "a(sa(sv))",  # type: ignore[name-defined]  # noqa: F821
        ) -> "o":  # type: ignore[name-defined]  # noqa: F821
            decoded = [(p, v.signature, v.value) for p, v in props]
            calls.append(("StartTransientUnit", name, mode, decoded, aux))
            for p, _sig, _value in decoded:
                if p.startswith("NoSuch"):
                    raise DBusError(
                        "org.freedesktop.DBus.Error.PropertyReadOnly",
                        f"Cannot set property {p}, or unknown property.",
                    )
            if name == "again.scope" and sum(c[:2] == ("StartTransientUnit", name) for c in calls) == 1:
                raise DBusError(
                    "org.freedesktop.systemd1.UnitExists",
                    f"Unit {name} was already loaded or has a fragment file.",
                )
            job = f"/org/freedesktop/systemd1/job/{len(calls)}"
            result = "failed" if name == "fail.scope" else "done"
            asyncio.get_running_loop().call_later(0.01, self.JobRemoved, len(calls), job, name, result)
            return job

        @method()
        def SetUnitProperties(self, name: "s", runtime: "b", props: "a(sv)"):  # type: ignore[name-defined]  # noqa: F821
            decoded = [(p, v.signature, v.value) for p, v in props]
            calls.append(("SetUnitProperties", name, runtime, decoded))
            for p, _sig, _value in decoded:
                if p.startswith("NoSuch"):
                    raise DBusError(
                        "org.freedesktop.DBus.Error.PropertyReadOnly",
                        f"Cannot set property {p}, or unknown property.",
                    )

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


def _run_against_fake_systemd(body: str) -> subprocess.CompletedProcess[str]:
    """Run `body` (indented statements using `sd`) in a fresh interpreter connected to the fake
    systemd; it prints the heavy modules that got imported last."""
    code = (
        "import sys\n"
        "from oci_systemd.runtime.systemd import connect\n"
        "with connect() as sd:\n"
        f"{body}"
        "print(sorted(m for m in sys.modules if m.startswith(('pystemd', 'dataclasses', 'inspect'))))\n"
    )
    argv = [sys.executable, "-c", code]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)


def test_short_commands_do_not_import_pystemd(fake_systemd: list[tuple[Any, ...]]) -> None:
    out = _run_against_fake_systemd(
        "    print(sd.active_state('c1.scope'))\n"
        "    sd.kill_unit('c1.scope', 15)\n"
        "    sd.stop_unit('c1.scope')\n"
        "    sd.reset_failed('c1.scope')\n"
    )
    assert out.stdout.splitlines() == ["active", "[]"], out.stderr


# One property of every kind the encoder handles: (name, signature, value sent, value the
# fake decodes with dbus-next). dbus-next gives structs as lists and variants as Variants.
EVERY_KIND: list[tuple[str, str, Any, Any]] = [
    ("Byte", "y", 255, 255),
    ("Bool", "b", True, True),
    ("BoolFalse", "b", False, False),
    ("Int16", "n", -(2**15), -(2**15)),
    ("Uint16", "q", 2**16 - 1, 2**16 - 1),
    ("Int32", "i", -(2**31), -(2**31)),
    ("Uint32", "u", 2**32 - 1, 2**32 - 1),
    ("Int64", "x", -(2**63), -(2**63)),
    ("Uint64", "t", 2**64 - 1, 2**64 - 1),
    ("Double", "d", 0.25, 0.25),
    ("DoubleFromInt", "d", 3, 3.0),
    ("Text", "s", "héllo", "héllo"),
    ("TextBytes", "s", b"raw", "raw"),
    ("EmptyText", "s", "", ""),
    ("Path", "o", "/org/x", "/org/x"),
    ("Sig", "g", "a(st)", "a(st)"),
    ("PIDs", "au", [1, 2**32 - 1], [1, 2**32 - 1]),
    ("NoPIDs", "au", [], []),
    ("AllowedCPUs", "ay", b"\x0f\x80", b"\x0f\x80"),
    ("BytesFromList", "ay", [1, 2], b"\x01\x02"),
    ("Int64s", "ax", (-1, 2), [-1, 2]),
    ("Doubles", "ad", [0.5, 1], [0.5, 1.0]),
    ("Bools", "ab", [True, False], [True, False]),
    ("Strings", "as", ["a", "b"], ["a", "b"]),
    ("Paths", "ao", ["/a"], ["/a"]),
    (
        "DeviceAllow",
        "a(ss)",
        [("/dev/null", "rwm"), ("char-pts", "rw")],
        [["/dev/null", "rwm"], ["char-pts", "rw"]],
    ),
    ("DeviceAllowReset", "a(ss)", [], []),
    ("IOReadBandwidthMax", "a(st)", [("/dev/sda", 2**64 - 1)], [["/dev/sda", 2**64 - 1]]),
    ("Nested", "aas", [["a"], []], [["a"], []]),
    ("Struct", "(sbt)", ("a", False, 3), ["a", False, 3]),
    ("StructInStruct", "(s(iu))", ["x", [-1, 1]], ["x", [-1, 1]]),
    ("Dict", "a{st}", {"k": 5}, {"k": 5}),
    ("DictFromPairs", "a{sb}", [("k", True)], {"k": True}),
]


def _plain(value: Any) -> Any:
    """dbus-next's decoded value with Variants as (signature, value)."""
    from dbus_next import Variant

    if isinstance(value, Variant):
        return (value.signature, _plain(value.value))
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def test_start_transient_scope_encodes_every_kind(fake_systemd: list[tuple[Any, ...]]) -> None:
    props = [(name, sig, sent) for name, sig, sent, _got in EVERY_KIND]
    props += [("Variant", "v", ("s", "inner")), ("Variants", "a{sv}", {"k": ("au", [7])})]
    with systemd.connect() as sd:
        assert sd._sd is not None
        sd.start_transient_scope("c2.scope", props)  # returns once JobRemoved said "done"
    [(_m, name, mode, got, aux)] = [c for c in fake_systemd if c[0] == "StartTransientUnit"]
    assert (name, mode, aux) == ("c2.scope", "fail", [])
    expected = [(name, sig, value) for name, sig, _sent, value in EVERY_KIND]
    expected += [("Variant", "v", ("s", "inner")), ("Variants", "a{sv}", {"k": ("au", [7])})]
    assert [(n, s, _plain(v)) for n, s, v in got] == expected


def test_set_unit_properties_over_ctypes(fake_systemd: list[tuple[Any, ...]]) -> None:
    with systemd.connect() as sd:
        sd.set_unit_properties("c1.scope", [("CPUWeight", "t", 20), ("AllowedCPUs", "ay", b"\x01")])
        with pytest.raises(UnsupportedPropertyError) as refused:
            sd.set_unit_properties("c1.scope", [("CPUWeight", "t", 20), ("NoSuchThing", "t", 1)])
    assert refused.value.prop == "NoSuchThing"
    assert (
        "SetUnitProperties",
        "c1.scope",
        True,
        [("CPUWeight", "t", 20), ("AllowedCPUs", "ay", b"\x01")],
    ) in (fake_systemd)


def test_start_transient_scope_errors(fake_systemd: list[tuple[Any, ...]]) -> None:
    with systemd.connect() as sd:
        # systemd refusing a property: named, with systemd's message kept.
        with pytest.raises(UnsupportedPropertyError) as refused:
            sd.start_transient_scope("c3.scope", [("Delegate", "b", True), ("NoSuchProperty", "t", 1)])
        assert refused.value.prop == "NoSuchProperty"
        assert str(refused.value) == (
            "systemd rejected unit property NoSuchProperty: start scope c3.scope: "
            "Cannot set property NoSuchProperty, or unknown property."
        )
        # A dead unit of that name: reset, then the second try succeeds.
        sd.start_transient_scope("again.scope", [("Delegate", "b", True)])
        # The job fails: JobFailedError, and the unit is reset.
        with pytest.raises(JobFailedError) as failed:
            sd.start_transient_scope("fail.scope", [("Delegate", "b", True)])
        assert (failed.value.unit, failed.value.result) == ("fail.scope", "failed")
    assert [c[1] for c in fake_systemd if c[0] == "StartTransientUnit"] == [
        "c3.scope",
        "again.scope",
        "again.scope",
        "fail.scope",
    ]
    assert ("ResetFailedUnit", "again.scope") in fake_systemd
    assert ("ResetFailedUnit", "fail.scope") in fake_systemd


@pytest.mark.parametrize(
    ("prop", "message"),
    [
        (("PIDs", "au", [-1]), "PIDs as D-Bus type 'au': -1 is out of range for D-Bus type 'u'"),
        (("TasksMax", "t", 2**64), "is out of range for D-Bus type 't'"),
        (("Byte", "y", 256), "out of range for D-Bus type 'y'"),
        (("Fd", "h", -1), "out of range for D-Bus type 'h'"),
        (("TasksMax", "t", "12"), "'12' is not an integer (D-Bus type 't')"),
        (("Weight", "d", "x"), "'x' is not a number"),
        (("Slice", "s", 3), "3 is not a string"),
        (("Slice", "s", "a\0b"), "contains a NUL byte"),
        (("Text", "s", b"\xff"), "sd-bus refused"),  # not UTF-8
        (("Path", "o", "not/a/path"), "sd-bus refused"),
        (("DeviceAllow", "a(ss)", "rwm"), "is not a list (D-Bus type 'a(ss)')"),
        (("DeviceAllow", "a(ss)", [("/dev/null",)]), "does not have 2 fields (D-Bus type '(ss)')"),
        (("Variant", "v", "s"), "is not a (signature, value) pair"),
        (("Variant", "v", ("ss", "a")), "a variant holds exactly one complete type"),
        (
            ("Two", "ss", ["a", "b"]),
            "invalid D-Bus signature 'ss': a variant holds exactly one complete type",
        ),
        (("Empty", "", None), "invalid D-Bus signature ''"),
        (("Open", "a(st", []), "invalid D-Bus signature 'a(st': a container type is not complete"),
        (("Bad", "z", 1), "invalid D-Bus signature 'z': unexpected 'z' at offset 0"),
    ],
)
def test_bad_values_and_signatures_are_named_and_not_sent(
    fake_systemd: list[tuple[Any, ...]], prop: tuple[str, str, Any], message: str
) -> None:
    with systemd.connect() as sd:
        with pytest.raises(systemd.PropertyEncodingError) as bad:
            sd.start_transient_scope("c4.scope", [("Delegate", "b", True), prop])
        with pytest.raises(systemd.PropertyEncodingError):
            sd.set_unit_properties("c1.scope", [prop])
    assert not isinstance(bad.value, UnsupportedPropertyError)  # not systemd's refusal
    assert str(bad.value).startswith(f"cannot send unit property {prop[0]} as D-Bus type {prop[1]!r}: ")
    assert message in str(bad.value)
    assert not [c for c in fake_systemd if c[0] in ("StartTransientUnit", "SetUnitProperties")]


@pytest.mark.parametrize(
    ("signature", "types"),
    [
        ("", []),
        ("s", ["s"]),
        ("sa(st)v", ["s", "a(st)", "v"]),
        ("ssa(sv)a(sa(sv))", ["s", "s", "a(sv)", "a(sa(sv))"]),
        ("a{sv}ay", ["a{sv}", "ay"]),
        ("(i(uu)as)h", ["(i(uu)as)", "h"]),
        ("aaay", ["aaay"]),
    ],
)
def test_split_signature(signature: str, types: list[str]) -> None:
    assert systemd.split_signature(signature) == types


@pytest.mark.parametrize(
    ("signature", "why"),
    [
        ("a", "a container type is not complete"),
        ("(s", "a container type is not complete"),
        ("()", "empty struct"),
        ("s)", "unexpected ')' at offset 1"),
        ("{sv}", "unexpected '{' at offset 0"),
        ("a{vs}", "a dict key must be a basic type"),
        ("a{(s)s}", "a dict key must be a basic type"),
        ("a{s}", "unexpected '}' at offset 3"),
        ("a{sss}", "a dict entry holds one key and one value"),
        ("aé", "not ASCII"),
        ("a" * 100 + "s", "nested too deeply"),
        ("s" * 256, "too long"),
    ],
)
def test_split_signature_rejects(signature: str, why: str) -> None:
    with pytest.raises(systemd.PropertyEncodingError, match="invalid D-Bus signature") as bad:
        systemd.split_signature(signature)
    assert why in str(bad.value)


def test_create_path_does_not_import_pystemd(fake_systemd: list[tuple[Any, ...]]) -> None:
    out = _run_against_fake_systemd(
        "    sd.start_transient_scope('c5.scope', [('Delegate', 'b', True), ('PIDs', 'au', [1]),\n"
        "                              ('DeviceAllow', 'a(ss)', [('/dev/null', 'rwm')])])\n"
        "    sd.set_unit_properties('c5.scope', [('CPUWeight', 't', 5)])\n"
    )
    assert out.stdout.splitlines() == ["[]"], out.stderr
    assert [c[1] for c in fake_systemd if c[0] == "StartTransientUnit"] == ["c5.scope"]


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
    code = "import oci_systemd.runtime.systemd as s; s._libsystemd(); import sys; print(sorted(sys.modules))"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    loaded = out.stdout
    for heavy in ("pystemd", "dataclasses", "inspect", "pprint", "uuid", "pathlib"):
        assert f"'{heavy}'" not in loaded, heavy
    # Without site (as the runtime's launcher runs it), importing the module loads none of the
    # modules that cost ~8 ms on every command: annotations stay strings (TYPE_CHECKING).
    code = "import sys; import oci_systemd.runtime.systemd; print(sorted(sys.modules))"
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env, cwd=repo, check=True
    )
    assert "'oci_systemd.runtime.systemd'" in out.stdout
    for heavy in ("typing", "collections.abc", "contextlib", "pystemd", "re", "ctypes"):
        assert f"'{heavy}'" not in out.stdout, heavy


def test_without_libsystemd_start_transient_scope_goes_to_pystemd(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fallback keeps pystemd's raw binding for StartTransientUnit and its JobRemoved wait."""
    sent: list[tuple[bytes, Any]] = []

    class Reply:
        def __init__(self, body: Any) -> None:
            self.body = body

    class Signal:
        body = (1, b"/job/1", b"x.scope", b"done")

        def process_reply(self, _raise: bool) -> None:
            pass

    class FakeBus:
        callback: Any = None

        def open(self) -> None:
            pass

        def close(self) -> None:
            pass

        def match_signal(self, dest: bytes, path: bytes, iface: bytes, member: bytes, callback: Any) -> None:
            assert member == b"JobRemoved"
            self.callback = callback

        def call_method(self, dest: bytes, path: bytes, iface: bytes, method: bytes, args: Any) -> Reply:
            assert self.callback is not None, "subscribed before the call"
            sent.append((method, args))
            return Reply(b"/job/1")

        def process(self) -> None:
            self.callback(Signal())

        def wait(self, usec: int) -> None:
            pass

    class FakeDbuslib:
        DBus = FakeBus

        @staticmethod
        def apply_signature(sig: bytes, values: list[Any]) -> list[tuple[int, Any]]:
            return [(ord(sig[:1]), values[0])]

    monkeypatch.setattr(systemd, "_LIB", None)
    monkeypatch.setattr(systemd, "_LIB_TRIED", True)
    monkeypatch.setattr(systemd, "_dbuslib", lambda: FakeDbuslib)
    with systemd.connect() as sd:
        sd.start_transient_scope("x.scope", [("Delegate", "b", True)])
    [(method, args)] = sent
    assert method == b"StartTransientUnit"
    assert args[:3] == [(ord("s"), b"x.scope"), (ord("s"), b"fail"), (ord("a"), b"(sv)")]
    assert (ord("b"), True) in args
