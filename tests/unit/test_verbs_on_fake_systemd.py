# SPDX-License-Identifier: Apache-2.0
"""state, pause, resume, update, ps, kill --all and delete against the fake systemd Manager
(fake_systemd.py), without root: the container's init is a plain child process and its scope
a unit of the fake, reached as "the system bus" (the fixture sets DBUS_SYSTEM_BUS_ADDRESS)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from oci_systemd.errors import InvalidStateError
from oci_systemd.runtime.lifecycle import Runtime
from oci_systemd.runtime.state import process_start_time
from oci_systemd.runtime.systemd import connect

from .fake_systemd import FakeSystemd

SCOPE = "oci-systemd-c1.scope"


@pytest.fixture
def container(
    tmp_path: Path, fake_systemd: FakeSystemd, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Runtime, subprocess.Popen[bytes]]]:
    """A started container c1: a record whose init is a live `sleep`, and its scope. The
    Runtime is handed its bus; the "system bus" leads nowhere, so a verb that connected on its
    own instead of using it would fail."""
    init = subprocess.Popen(["sleep", "60"])
    start = process_start_time(init.pid)
    assert start is not None
    bus = connect(fake_systemd.address)
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/no-such-bus")
    rt = Runtime(str(tmp_path / "root"), bus=bus)
    os.close(rt.store.claim("c1"))
    rt.store.write(
        "c1",
        {
            "id": "c1",
            "phase": "started",
            "pid": init.pid,
            "pid_start": start,
            "scope": SCOPE,
        },
    )
    fake_systemd.add_unit(
        SCOPE, main_pid=init.pid, processes=[(f"/system.slice/{SCOPE}", init.pid, "sleep 60")]
    )
    try:
        yield rt, init
    finally:
        init.kill()
        init.wait()
        bus.close()


def test_state_pause_resume(
    container: tuple[Runtime, subprocess.Popen[bytes]], fake_systemd: FakeSystemd
) -> None:
    rt, _init = container
    assert rt.state("c1")["status"] == "running"
    rt.pause("c1")
    assert fake_systemd.units[SCOPE].freezer_state == "frozen"
    assert rt.state("c1")["status"] == "paused"
    with pytest.raises(InvalidStateError):
        rt.pause("c1")  # not running
    rt.resume("c1")
    assert rt.state("c1")["status"] == "running"
    assert fake_systemd.manager_calls("FreezeUnit") == [(SCOPE,)]
    assert fake_systemd.manager_calls("ThawUnit") == [(SCOPE,)]


def test_update_sets_unit_properties(
    container: tuple[Runtime, subprocess.Popen[bytes]], fake_systemd: FakeSystemd
) -> None:
    rt, _init = container
    rt.update("c1", {"pids": {"limit": 42}})
    assert ("TasksMax", "t", 42) in fake_systemd.units[SCOPE].properties
    [(name, runtime, _props)] = fake_systemd.manager_calls("SetUnitProperties")
    assert (name, runtime) == (SCOPE, True)


def test_ps_and_kill_all(
    container: tuple[Runtime, subprocess.Popen[bytes]], fake_systemd: FakeSystemd
) -> None:
    rt, init = container
    assert rt.ps("c1") == [init.pid]
    rt.kill("c1", "USR1", all_processes=True)
    assert fake_systemd.units[SCOPE].signals == [("all", signal.SIGUSR1)]


def test_delete_force_stops_the_scope(
    container: tuple[Runtime, subprocess.Popen[bytes]], fake_systemd: FakeSystemd
) -> None:
    rt, _init = container
    with pytest.raises(InvalidStateError):
        rt.delete("c1")  # running
    rt.delete("c1", force=True)
    assert fake_systemd.manager_calls("KillUnit") == [(SCOPE, "all", signal.SIGKILL)]
    assert fake_systemd.manager_calls("StopUnit") == [(SCOPE, "replace")]
    assert SCOPE not in fake_systemd.units
    assert "c1" not in rt.store.ids()
