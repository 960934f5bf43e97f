# SPDX-License-Identifier: Apache-2.0
"""oci_systemd.runtime.systemd (libsystemd's sd-bus through ctypes) against the fake systemd
Manager of fake_systemd.py, on a private dbus-daemon: every call the runtime makes, the
JobRemoved waits, the PropertiesChanged stream, and values of every D-Bus type both ways.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from dbus_next.service import ServiceInterface, method

from oci_systemd.errors import JobFailedError, SystemdError, UnsupportedPropertyError
from oci_systemd.runtime import systemd
from oci_systemd.runtime.systemd import bus as sdbus

from .fake_systemd import FakeSystemd, unit_path

UNIT = "org.freedesktop.systemd1.Unit"


def test_flat_calls(fake_systemd: FakeSystemd) -> None:
    fake_systemd.add_unit("c1.scope")
    with systemd.connect() as sd:
        assert sd.unit_path("c1.scope") == "/org/freedesktop/systemd1/unit/c1_2escope"
        assert sd.unit_path("nope.scope") is None
        assert sd.active_state("c1.scope") == "active"
        assert sd.active_state("nope.scope") is None
        sd.kill_unit("c1.scope", 9)
        sd.freeze_unit("c1.scope")
        assert sd.unit_properties("c1.scope", UNIT, ["FreezerState"]) == {"FreezerState": "frozen"}
        sd.thaw_unit("c1.scope")
        assert sd.unit_properties("c1.scope", UNIT, ["FreezerState"]) == {"FreezerState": "running"}
        sd.reset_failed("nope.scope")  # NoSuchUnit swallowed: nothing to reset
        sd.stop_unit("c1.scope")  # waits for JobRemoved
        assert sd.active_state("c1.scope") is None  # stopped and collected
        sd.stop_unit("c1.scope")  # gone already: nothing to stop
    assert fake_systemd.manager_calls("KillUnit") == [("c1.scope", "all", 9)]
    assert fake_systemd.manager_calls("FreezeUnit") == [("c1.scope",)]
    assert fake_systemd.manager_calls("ThawUnit") == [("c1.scope",)]
    assert fake_systemd.manager_calls("ResetFailedUnit") == [("nope.scope",)]
    assert fake_systemd.manager_calls("StopUnit") == [("c1.scope", "replace"), ("c1.scope", "replace")]


def test_connect_to_an_address(
    fake_systemd: FakeSystemd, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_systemd.add_unit("c1.scope", active_state="deactivating")
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/nothing-here")
    with systemd.connect(fake_systemd.address) as sd:
        assert sd.address == fake_systemd.address
        assert sd.active_state("c1.scope") == "deactivating"


def test_errors_keep_their_dbus_names(fake_systemd: FakeSystemd) -> None:
    fake_systemd.add_unit("c1.scope")
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
            sd.unit_properties("nope.scope", UNIT, ["FreezerState"])
        with pytest.raises(systemd.NoSuchUnit):
            sd.freeze_unit("nope.scope")


def test_unit_properties_few_and_many(fake_systemd: FakeSystemd) -> None:
    fake_systemd.add_unit("web.service", main_pid=4242, control_group="/system.slice/web.service")
    fake_systemd.add_unit("c1.scope", sub_state="abandoned")
    service = "org.freedesktop.systemd1.Service"
    with systemd.connect() as sd:
        # A few: one Properties.Get each; a property the interface lacks is left out.
        assert sd.unit_properties("web.service", service, ["MainPID", "NoSuchProperty"]) == {"MainPID": 4242}
        # More: one GetAll, decoded from its a{sv}.
        many = ["Id", "ActiveState", "SubState", "FreezerState", "Unknown"]
        assert sd.unit_properties("c1.scope", UNIT, many) == {
            "Id": "c1.scope",
            "ActiveState": "active",
            "SubState": "abandoned",
            "FreezerState": "running",
        }
        scope = "org.freedesktop.systemd1.Scope"
        assert sd.unit_properties("c1.scope", scope, ["ControlGroup"]) == {
            "ControlGroup": "/system.slice/c1.scope"
        }


def test_unit_processes(fake_systemd: FakeSystemd) -> None:
    rows = [("/system.slice/c1.scope", 10, "sleep 1000"), ("/system.slice/c1.scope/x", 2**32 - 1, "")]
    fake_systemd.add_unit("c1.scope", processes=rows)
    fake_systemd.add_unit("empty.scope")
    with systemd.connect() as sd:
        assert sd.unit_processes("c1.scope") == rows
        assert sd.unit_processes("empty.scope") == []
        with pytest.raises(systemd.NoSuchUnit):
            sd.unit_processes("nope.scope")


def test_watch_unit_streams_properties_changed(fake_systemd: FakeSystemd) -> None:
    fake_systemd.add_unit("c1.scope")

    async def watch() -> list[dict[str, Any] | None]:
        seen: list[dict[str, Any] | None] = []
        async for change in systemd.watch_unit("c1.scope", interval=0.05, address=fake_systemd.address):
            seen.append(change)
            if change is None and len(seen) == 1:  # silence first: then systemd changes things
                await asyncio.to_thread(fake_systemd.update, "c1.scope", freezer_state="frozen")
                await asyncio.to_thread(
                    fake_systemd.update, "c1.scope", active_state="failed", result="oom-kill"
                )
            if change is not None and "Result" in change:
                return seen
        return seen

    seen = asyncio.run(asyncio.wait_for(watch(), 10))
    changes = [c for c in seen if c is not None]
    assert seen[0] is None
    # One signal per interface, in the order the fake sends them (Unit, then Scope).
    assert changes == [{"FreezerState": "frozen"}, {"ActiveState": "failed"}, {"Result": "oom-kill"}]


def test_watch_unit_of_an_unknown_unit_ends_at_once(fake_systemd: FakeSystemd) -> None:
    async def watch() -> list[object]:
        return [c async for c in systemd.watch_unit("nope.scope", interval=0.05)]

    assert asyncio.run(asyncio.wait_for(watch(), 10)) == []


# -- StartTransientUnit and SetUnitProperties -------------------------------------------------


# One value of every kind the encoder handles: (name, signature, value sent, value the fake
# decodes with dbus-next, value the decoder gives back). Structs come back from dbus-next as
# lists, from our decoder as tuples.
EVERY_KIND: list[tuple[str, str, Any, Any, Any]] = [
    ("Byte", "y", 255, 255, 255),
    ("Bool", "b", True, True, True),
    ("BoolFalse", "b", False, False, False),
    ("Int16", "n", -(2**15), -(2**15), -(2**15)),
    ("Uint16", "q", 2**16 - 1, 2**16 - 1, 2**16 - 1),
    ("Int32", "i", -(2**31), -(2**31), -(2**31)),
    ("Uint32", "u", 2**32 - 1, 2**32 - 1, 2**32 - 1),
    ("Int64", "x", -(2**63), -(2**63), -(2**63)),
    ("Uint64", "t", 2**64 - 1, 2**64 - 1, 2**64 - 1),
    ("Double", "d", 0.25, 0.25, 0.25),
    ("DoubleFromInt", "d", 3, 3.0, 3.0),
    ("Text", "s", "héllo", "héllo", "héllo"),
    ("TextBytes", "s", b"raw", "raw", "raw"),
    ("EmptyText", "s", "", "", ""),
    ("Path", "o", "/org/x", "/org/x", "/org/x"),
    ("Sig", "g", "a(st)", "a(st)", "a(st)"),
    ("PIDs", "au", [1, 2**32 - 1], [1, 2**32 - 1], [1, 2**32 - 1]),
    ("NoPIDs", "au", [], [], []),
    ("AllowedCPUs", "ay", b"\x0f\x80", b"\x0f\x80", b"\x0f\x80"),
    ("BytesFromList", "ay", [1, 2], b"\x01\x02", b"\x01\x02"),
    ("NoBytes", "ay", b"", b"", b""),
    ("Int64s", "ax", (-1, 2), [-1, 2], [-1, 2]),
    ("Doubles", "ad", [0.5, 1], [0.5, 1.0], [0.5, 1.0]),
    ("Bools", "ab", [True, False], [True, False], [True, False]),
    ("Strings", "as", ["a", "b"], ["a", "b"], ["a", "b"]),
    ("Paths", "ao", ["/a"], ["/a"], ["/a"]),
    (
        "DeviceAllow",
        "a(ss)",
        [("/dev/null", "rwm"), ("char-pts", "rw")],
        [["/dev/null", "rwm"], ["char-pts", "rw"]],
        [("/dev/null", "rwm"), ("char-pts", "rw")],
    ),
    ("DeviceAllowReset", "a(ss)", [], [], []),
    (
        "IOReadBandwidthMax",
        "a(st)",
        [("/dev/sda", 2**64 - 1)],
        [["/dev/sda", 2**64 - 1]],
        [("/dev/sda", 2**64 - 1)],
    ),
    ("Nested", "aas", [["a"], []], [["a"], []], [["a"], []]),
    ("Struct", "(sbt)", ("a", False, 3), ["a", False, 3], ("a", False, 3)),
    ("StructInStruct", "(s(iu))", ["x", [-1, 1]], ["x", [-1, 1]], ("x", (-1, 1))),
    ("Dict", "a{st}", {"k": 5}, {"k": 5}, {"k": 5}),
    ("DictFromPairs", "a{sb}", [("k", True)], {"k": True}, {"k": True}),
    ("Variant", "v", ("s", "inner"), ("s", "inner"), "inner"),
    ("Variants", "a{sv}", {"k": ("au", [7])}, {"k": ("au", [7])}, {"k": [7]}),
]


def test_start_transient_scope_encodes_every_kind(fake_systemd: FakeSystemd) -> None:
    props = [(name, sig, sent) for name, sig, sent, _got, _back in EVERY_KIND]
    with systemd.connect() as sd:
        sd.start_transient_scope("c2.scope", props)  # returns once JobRemoved said "done"
        assert sd.active_state("c2.scope") == "active"
    [(name, mode, got, aux)] = fake_systemd.manager_calls("StartTransientUnit")
    assert (name, mode, aux) == ("c2.scope", "fail", [])
    assert got == [(name, sig, value) for name, sig, _sent, value, _back in EVERY_KIND]


class _Echo(ServiceInterface):
    """Answers a variant with itself: what the decoder reads is what the encoder wrote."""

    def __init__(self) -> None:
        super().__init__("org.example.Echo")

    # dbus-next (untyped) reads the D-Bus signature from the annotations, quoted: "v" is no name.
    @method()  # type: ignore[untyped-decorator]
    def Echo(self, value: "v") -> "v":  # type: ignore[name-defined]  # noqa: F821, UP037
        return value


def test_every_kind_decodes_as_it_was_encoded(fake_systemd: FakeSystemd) -> None:
    fake_systemd.export("/test/echo", _Echo())
    bus = sdbus.Bus(fake_systemd.address)
    try:
        for name, sig, sent, _got, back in EVERY_KIND:
            [value] = bus.call("/test/echo", "org.example.Echo", "Echo", [("v", (sig, sent))], what="echo")
            assert value == back, name
            assert type(value) is type(back), name  # bool stays bool, bytes stay bytes
    finally:
        bus.close()


def test_set_unit_properties(fake_systemd: FakeSystemd) -> None:
    unit = fake_systemd.add_unit("c1.scope")
    with systemd.connect() as sd:
        sd.set_unit_properties("c1.scope", [("CPUWeight", "t", 20), ("AllowedCPUs", "ay", b"\x01")])
        with pytest.raises(UnsupportedPropertyError) as refused:
            sd.set_unit_properties("c1.scope", [("CPUWeight", "t", 20), ("NoSuchThing", "t", 1)])
        with pytest.raises(systemd.NoSuchUnit):
            sd.set_unit_properties("nope.scope", [("CPUWeight", "t", 20)])
    assert refused.value.prop == "NoSuchThing"
    assert unit.properties == [("CPUWeight", "t", 20), ("AllowedCPUs", "ay", b"\x01")]
    assert fake_systemd.manager_calls("SetUnitProperties")[0] == ("c1.scope", True, unit.properties)


def test_start_transient_scope_errors(fake_systemd: FakeSystemd) -> None:
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
        # The job fails: JobFailedError, and the unit is reset (the fake then forgets it).
        with pytest.raises(JobFailedError) as failed:
            sd.start_transient_scope("fail.scope", [("Delegate", "b", True)])
        assert (failed.value.unit, failed.value.result) == ("fail.scope", "failed")
        assert sd.active_state("fail.scope") is None
    assert [c[0] for c in fake_systemd.manager_calls("StartTransientUnit")] == [
        "c3.scope",
        "again.scope",
        "again.scope",
        "fail.scope",
    ]
    assert ("again.scope",) in fake_systemd.manager_calls("ResetFailedUnit")
    assert ("fail.scope",) in fake_systemd.manager_calls("ResetFailedUnit")


def test_a_live_unit_of_that_name_is_not_reset(fake_systemd: FakeSystemd) -> None:
    fake_systemd.add_unit("busy.scope")
    with systemd.connect() as sd, pytest.raises(SystemdError) as exists:
        sd.start_transient_scope("busy.scope", [("Delegate", "b", True)])
    assert exists.value.dbus_name == "org.freedesktop.systemd1.UnitExists"
    assert fake_systemd.manager_calls("ResetFailedUnit") == []


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
    fake_systemd: FakeSystemd, prop: tuple[str, str, Any], message: str
) -> None:
    fake_systemd.add_unit("c1.scope")
    with systemd.connect() as sd:
        with pytest.raises(systemd.PropertyEncodingError) as bad:
            sd.start_transient_scope("c4.scope", [("Delegate", "b", True), prop])
        with pytest.raises(systemd.PropertyEncodingError):
            sd.set_unit_properties("c1.scope", [prop])
    assert not isinstance(bad.value, UnsupportedPropertyError)  # not systemd's refusal
    assert str(bad.value).startswith(f"cannot send unit property {prop[0]} as D-Bus type {prop[1]!r}: ")
    assert message in str(bad.value)
    assert not fake_systemd.manager_calls("StartTransientUnit")
    assert not fake_systemd.manager_calls("SetUnitProperties")


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


# -- what a command pays --------------------------------------------------------------------

# Modules the D-Bus path must not bring in: the other bindings and what they pull in.
NOT_LOADED = ("pystemd", "dbus_next", "asyncio", "dataclasses", "inspect", "pprint", "uuid")


def _run_against_fake_systemd(body: str) -> subprocess.CompletedProcess[str]:
    """Run `body` (indented statements using `sd`) in a fresh interpreter connected to the fake
    systemd; it prints the modules of NOT_LOADED that got imported last."""
    code = (
        "import sys\n"
        "from oci_systemd.runtime.systemd import connect\n"
        "with connect() as sd:\n"
        f"{body}"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {NOT_LOADED!r}))\n"
    )
    argv = [sys.executable, "-c", code]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)


def test_short_commands_load_no_other_binding(fake_systemd: FakeSystemd) -> None:
    fake_systemd.add_unit("c1.scope", processes=[("/c1", 1, "init")])
    out = _run_against_fake_systemd(
        "    print(sd.active_state('c1.scope'))\n"
        "    print(sd.unit_processes('c1.scope'))\n"
        "    sd.kill_unit('c1.scope', 15)\n"
        "    sd.stop_unit('c1.scope')\n"
        "    sd.reset_failed('c1.scope')\n"
    )
    assert out.stdout.splitlines() == ["active", "[('/c1', 1, 'init')]", "[]"], out.stderr


def test_create_path_loads_no_other_binding(fake_systemd: FakeSystemd) -> None:
    out = _run_against_fake_systemd(
        "    sd.start_transient_scope('c5.scope', [('Delegate', 'b', True), ('PIDs', 'au', [1]),\n"
        "                              ('DeviceAllow', 'a(ss)', [('/dev/null', 'rwm')])])\n"
        "    sd.set_unit_properties('c5.scope', [('CPUWeight', 't', 5)])\n"
    )
    assert out.stdout.splitlines() == ["[]"], out.stderr
    assert [c[0] for c in fake_systemd.manager_calls("StartTransientUnit")] == ["c5.scope"]
    assert fake_systemd.units["c5.scope"].properties[-1] == ("CPUWeight", "t", 5)


def test_cannot_connect(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/nothing-here")
    with pytest.raises(SystemdError, match="cannot connect to the systemd system bus") as exc:
        systemd.Systemd()
    assert exc.value.hint
    with pytest.raises(SystemdError, match=f"cannot connect to the D-Bus bus at unix:path={tmp_path}/x"):
        systemd.connect(f"unix:path={tmp_path}/x")


def test_without_libsystemd_connect_says_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> None:
        raise OSError("libsystemd.so.0: cannot open shared object file")

    monkeypatch.setattr(sdbus, "_LIB", None)
    monkeypatch.setattr(sdbus, "_LIB_ERROR", None)
    monkeypatch.setattr(sdbus, "_Lib", missing)
    for _ in range(2):  # tried once, the error remembered
        with pytest.raises(
            SystemdError, match=r"cannot load libsystemd's sd-bus: libsystemd\.so\.0: cannot"
        ) as exc:
            systemd.connect()
        assert exc.value.hint == "install libsystemd0 (systemd >= 237)"


def test_import_cost_stays_small() -> None:
    # Without site (as the runtime's launcher runs it), importing the package loads none of the
    # modules that cost ~8 ms on every command (annotations stay strings: TYPE_CHECKING), and
    # not ctypes either: libsystemd is loaded by the first connection.
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    code = "import sys; import oci_systemd.runtime.systemd; print(sorted(sys.modules))"
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env, cwd=repo, check=True
    )
    assert "'oci_systemd.runtime.systemd.manager'" in out.stdout
    for heavy in ("typing", "collections.abc", "contextlib", "re", "ctypes", *NOT_LOADED):
        assert f"'{heavy}'" not in out.stdout, heavy


def test_unit_path_matches_systemds_escaping() -> None:
    # The fake's paths are systemd's (bus_label_escape), so tests see what systemd answers.
    assert (
        unit_path("oci-systemd-a\\x2bb.scope")
        == "/org/freedesktop/systemd1/unit/oci_2dsystemd_2da_5cx2bb_2escope"
    )
