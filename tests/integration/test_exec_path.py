# SPDX-License-Identifier: Apache-2.0
"""exec as containerd's shim sends it for every ExecSync probe (issue 16): `exec --process F
--detach --pid-file P ID`, parsed without click, decided without D-Bus, in the container's cgroup."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import bundles
import pytest
from test_lifecycle import Container, start_sleeping, wait_for

from oci_systemd.devtools.sandbox import Sandbox

NO_BUS = "DBUS_SYSTEM_BUS_ADDRESS=unix:path=/nonexistent/bus"


@pytest.fixture
def running(sandbox: Sandbox) -> Iterator[Container]:
    c = start_sleeping(sandbox)
    yield c
    c.rt("delete", "--force", c.id)


def _process_file(c: Container, args: list[str]) -> str:
    config = json.loads((c.host_bundle / "config.json").read_text())
    (c.host_bundle / "exec.json").write_text(json.dumps(dict(config["process"], args=args)))
    return f"{c.bundle}/exec.json"


@pytest.mark.skipif(bool(os.environ.get("OCI_RUNTIME")), reason="oci-systemd's own D-Bus use")
def test_exec_asks_systemd_nothing(running: Container) -> None:
    """With the system bus out of reach, exec still works (and `state`, which asks, fails:
    the control that the unreachable bus is really used)."""
    argv = ["env", NO_BUS, *bundles.runtime_argv()]
    asked = running.sb.run([*argv, "state", running.id], capture_output=True, text=True)
    assert asked.returncode != 0, asked.stdout
    pid_file = f"{running.bundle}/exec.pid"
    proc = running.sb.run(
        [*argv, "exec", "--process", _process_file(running, ["true"]), "--detach", "--pid-file", pid_file,
         running.id],
        capture_output=True, text=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert int((running.host_bundle / "exec.pid").read_text()) > 0


def test_exec_runs_in_the_containers_cgroup(running: Container) -> None:
    init = running.sb.run(["cat", f"/proc/{running.state()['pid']}/cgroup"], capture_output=True, text=True)
    pid_file = running.host_bundle / "exec.pid"
    detached = running.rt(
        "exec", "--process", _process_file(running, ["sleep", "30"]), "--detach", "--pid-file",
        f"{running.bundle}/exec.pid", running.id,
        capture_output=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert detached.returncode == 0
    exec_pid = int(pid_file.read_text())
    mine = running.sb.run(["cat", f"/proc/{exec_pid}/cgroup"], capture_output=True, text=True)
    assert mine.stdout == init.stdout
    if not os.environ.get("OCI_RUNTIME"):
        assert init.stdout.strip().endswith("/container")  # the scope's leaf (crun's layout)


def test_exec_in_a_paused_container_is_refused(running: Container) -> None:
    """Frozen is read from cgroup.events, not from systemd's FreezerState."""
    assert running.rt("pause", running.id).returncode == 0
    try:
        wait_for(lambda: running.status() == "paused")
        proc = running.rt("exec", "--process", _process_file(running, ["true"]), running.id)
        assert proc.returncode != 0
        if not os.environ.get("OCI_RUNTIME"):  # runc exits 255 here
            assert proc.returncode == 1 and "cannot exec in a paused container" in proc.stderr
    finally:
        assert running.rt("resume", running.id).returncode == 0
    proc = running.rt("exec", "--process", _process_file(running, ["true"]), running.id)
    assert proc.returncode == 0, proc.stderr


def test_exec_passes_preserved_fds_and_nothing_else(running: Container) -> None:
    """--preserve-fds 1: fd 3 reaches the process; the helper's channel and the runtime's own
    fds do not (CVE-2024-21626's class)."""
    out = f"{running.bundle}/fd3.out"
    process = _process_file(running, ["sh", "-c", "echo via-fd3 >&3; ls /proc/self/fd >&3"])
    runtime = " ".join(bundles.runtime_argv())
    script = f"exec 3>{out}; exec {runtime} exec --preserve-fds 1 --process {process} {running.id}"
    proc = running.sb.run(["sh", "-c", script], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    lines = (running.host_bundle / "fd3.out").read_text().split()
    assert lines[0] == "via-fd3"
    # ls's own directory fd shows as one more number above 3.
    fds = sorted(int(fd) for fd in lines[1:])
    assert fds[:4] == [0, 1, 2, 3] and len(fds) <= 5, fds
