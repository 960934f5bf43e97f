# SPDX-License-Identifier: Apache-2.0
"""The unit mode (docs/unit-mode.md): units/oci-container@.service, in which the container is the
service. Its init is the service's MainPID and systemd's own child, nothing of oci-systemd
stays resident, systemd sees the program's exit status, and the verbs work on the service."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bundles
import pytest
from test_lifecycle import systemctl_show, wait_for

from oci_systemd.devtools.sandbox import Sandbox

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "units"
INIT_SRC = Path(__file__).parent / "init" / "oci-test-init.c"
UNIT_FILES = ("oci-container@.service", "oci-container@.socket")
ROOT = "/run/oci-systemd"


@pytest.fixture(scope="module")
def test_init(sandbox: Sandbox) -> Path:
    """The static helper (accept on fd 3, sd_notify), compiled once per sandbox; host path."""
    out = sandbox.host_path(f"{bundles.INNER_WORKDIR}/{INIT_SRC.stem}")
    if not out.exists():
        subprocess.run(["gcc", "-static", "-O2", "-o", str(out), str(INIT_SRC)], check=True)
    return out


@pytest.fixture(scope="module")
def units(sandbox: Sandbox) -> Iterator[Path]:
    """units/oci-container@.* in the private systemd, running this checkout's runtime on bundles in
    the sandbox's /tmp; yields the bundle directory (host path)."""
    unit_dir = sandbox.host_path("/run/systemd/system")
    containers = f"{bundles.INNER_WORKDIR}/unit-containers"
    sandbox.host_path(containers).mkdir(parents=True, exist_ok=True)
    runtime = " ".join(bundles.runtime_argv())
    for unit in UNIT_FILES:
        text = (UNITS / unit).read_text().replace("/usr/bin/oci-systemd", runtime)
        text = text.replace(
            "Environment=OCI_CONTAINERS_DIR=%S/oci-containers",
            f"Environment=OCI_CONTAINERS_DIR={containers}",
        )
        (unit_dir / unit).write_text(text)
    sandbox.run(["systemctl", "daemon-reload"], check=True)
    yield sandbox.host_path(containers)
    for unit in UNIT_FILES:
        (unit_dir / unit).unlink(missing_ok=True)
    sandbox.run(["systemctl", "daemon-reload"], check=True)


class Service:
    """One oci-container@NAME: its bundle, its systemctl/journalctl views, always stopped at the end."""

    def __init__(self, sandbox: Sandbox, containers: Path, name: str) -> None:
        self.sb = sandbox
        self.name = name
        self.unit = f"oci-container@{name}.service"
        self.bundle = containers / name

    def install(
        self, args: list[str], init: Path | None = None, *, pidns: bool = True, **overrides: Any
    ) -> None:
        shutil.rmtree(self.bundle, ignore_errors=True)
        conf = bundles.merge(bundles.add_all_namespaces(bundles.base_config()), overrides)
        if not pidns:  # the idler is the init: no fork in the container decides its parent
            conf["linux"]["namespaces"] = [n for n in conf["linux"]["namespaces"] if n["type"] != "pid"]
        conf["process"]["args"] = args
        bundles.make_bundle(self.bundle, conf, rootfs=bundles.ensure_rootfs(self.sb))
        if init is not None:
            shutil.copy2(init, self.bundle / "rootfs" / "bin" / "oci-test-init")

    def dropin(self, text: str) -> None:
        directory = self.sb.host_path(f"/run/systemd/system/{self.unit}.d")
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "50-test.conf").write_text(text)
        self.sb.run(["systemctl", "daemon-reload"], check=True)

    def systemctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.sb.run(["systemctl", *args, self.unit], capture_output=True, text=True, timeout=timeout)

    def show(self, prop: str) -> str:
        return systemctl_show(self.sb, self.unit, prop)

    def journal(self) -> list[str]:
        out: subprocess.CompletedProcess[str] = self.sb.run(
            ["journalctl", "--no-pager", "-o", "cat", "-u", self.unit], capture_output=True, text=True
        )
        return out.stdout.splitlines()

    def manager_journal(self) -> str:
        """What systemd itself logged about the unit (pid 1's messages)."""
        out: subprocess.CompletedProcess[str] = self.sb.run(
            ["journalctl", "--no-pager", "-o", "cat", "_PID=1", f"UNIT={self.unit}"],
            capture_output=True,
            text=True,
        )
        return out.stdout

    def rt(self, *args: str) -> subprocess.CompletedProcess[str]:
        return bundles.run_runtime(self.sb, list(args))

    def cgroup_pids(self) -> list[int]:
        cgroup = self.show("ControlGroup")
        base = self.sb.host_path(f"/sys/fs/cgroup{cgroup}")
        pids: list[int] = []
        for dirpath, _dirs, files in os.walk(base):
            if "cgroup.procs" in files:
                pids += [int(p) for p in (Path(dirpath) / "cgroup.procs").read_text().split()]
        return pids

    def stop(self) -> None:
        self.systemctl("stop")
        self.systemctl("reset-failed")
        shutil.rmtree(self.sb.host_path(f"/run/systemd/system/{self.unit}.d"), ignore_errors=True)


@pytest.fixture
def service(request: pytest.FixtureRequest, sandbox: Sandbox, units: Path) -> Iterator[Service]:
    name = request.node.name.removeprefix("test_")
    svc = Service(sandbox, units, "".join(c for c in name if c.isalnum())[:28])
    yield svc
    svc.stop()


def _inner_pid(sb: Sandbox, pid: int) -> dict[str, str]:
    """/proc/<pid>/status of a pid as the sandbox sees it (its fields by name)."""
    out = sb.run(["cat", f"/proc/{pid}/status"], capture_output=True, text=True, check=True).stdout
    return dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)


def _cmdline(sb: Sandbox, pid: int) -> str:
    out: subprocess.CompletedProcess[str] = sb.run(
        ["cat", f"/proc/{pid}/cmdline"], capture_output=True, text=True
    )
    return out.stdout.replace("\0", " ")


LOOP = "trap 'echo got TERM; exit 0' TERM; echo hello from the container; while :; do sleep 0.1; done"


@pytest.mark.parametrize("pidns", [True, False], ids=["pidns", "hostpid"])
def test_the_container_is_the_service(service: Service, pidns: bool) -> None:
    service.install(["sh", "-c", LOOP], pidns=pidns)
    started = service.systemctl("start")
    assert started.returncode == 0, started.stderr
    assert service.show("ActiveState") == "active"
    main = int(service.show("MainPID"))
    state = json.loads(service.rt("state", service.name).stdout)
    assert state["status"] == "running"
    assert state["pid"] == main
    # systemd's own child: the runtime and the idler exited, the init was reparented to PID 1.
    assert _inner_pid(service.sb, main)["PPid"] == "1"
    wait_for(
        lambda: (
            len(service.cgroup_pids()) >= 1
            and all(
                "oci_systemd" not in _cmdline(service.sb, p) and "oci-systemd" not in _cmdline(service.sb, p)
                for p in service.cgroup_pids()
            )
        )
    )
    # In a sub-cgroup of the service's own, and no scope anywhere.
    cgroup = service.sb.run(["cat", f"/proc/{main}/cgroup"], capture_output=True, text=True).stdout
    assert cgroup.strip().endswith(f"/{service.unit}/container")
    assert systemctl_show(service.sb, f"oci-systemd-{service.name}.scope", "LoadState") == "not-found"
    journal = service.journal()
    assert "hello from the container" in journal  # the program's stdout, as the service's own
    assert f"Container {service.name} started" in journal  # and the lifecycle entries
    assert "not our child" not in service.manager_journal()
    assert main in [int(p) for p in json.loads(service.rt("ps", "--format", "json", service.name).stdout)]
    listed = json.loads(service.rt("list", "--format", "json").stdout)
    assert any(c["id"] == service.name and c["status"] == "running" for c in listed)
    refused = service.rt("delete", service.name)
    assert refused.returncode != 0 and "not stopped" in refused.stderr

    t0 = time.monotonic()
    stopped = service.systemctl("stop")
    elapsed = time.monotonic() - t0
    assert stopped.returncode == 0, stopped.stderr
    assert elapsed < 5, f"systemctl stop took {elapsed:.1f}s: SIGTERM did not reach the program"
    assert service.show("ActiveState") == "inactive"
    assert "got TERM" in service.journal()
    assert not service.sb.host_path(f"{ROOT}/{service.name}").exists()
    mounts = service.sb.run(["cat", "/proc/1/mountinfo"], capture_output=True, text=True).stdout
    assert service.sb.inner_path(service.bundle) not in mounts


def test_exit_status_and_restart(service: Service) -> None:
    # At once: the program's exit may come before `run` has even returned; systemd has it.
    service.install(["sh", "-c", "echo run; exit 3"])
    service.dropin("[Service]\nRestartSec=100ms\n")
    assert service.systemctl("start").returncode == 0
    wait_for(lambda: service.show("ExecMainStatus") == "3", timeout=20)
    assert service.show("ExecMainCode") == "1"  # CLD_EXITED
    assert service.show("Result") == "exit-code"
    first = service.show("ExecMainPID")
    # Restart=on-failure: a new container runs (a new init), and fails the same way.
    wait_for(lambda: int(service.show("NRestarts") or 0) >= 1, timeout=20)
    wait_for(lambda: service.show("ExecMainPID") not in (first, "0"), timeout=20)
    assert "status=3/NOTIMPLEMENTED" in service.manager_journal()


def test_kill_by_signal_and_kill_verbs(service: Service) -> None:
    service.install(["sh", "-c", "while :; do sleep 0.1; done"])
    service.dropin("[Service]\nRestart=no\n")
    assert service.systemctl("start").returncode == 0
    main = service.show("MainPID")
    # kill --all: KillUnit(all) on the service; SIGSTOP leaves it running but stopped.
    assert service.rt("kill", "--all", service.name, "STOP").returncode == 0
    wait_for(lambda: _inner_pid(service.sb, int(main))["State"].startswith("T"))
    assert service.rt("kill", "--all", service.name, "CONT").returncode == 0
    # pause/resume freeze the service's cgroup; state reads it back.
    assert service.rt("pause", service.name).returncode == 0
    assert json.loads(service.rt("state", service.name).stdout)["status"] == "paused"
    assert service.show("FreezerState") == "frozen"
    assert service.rt("resume", service.name).returncode == 0
    assert json.loads(service.rt("state", service.name).stdout)["status"] == "running"
    killed = service.rt("kill", service.name, "KILL")
    assert killed.returncode == 0, killed.stderr
    wait_for(lambda: service.show("ActiveState") in ("failed", "inactive"))
    assert service.show("Result") == "signal"
    assert service.show("ExecMainCode") == "2"  # CLD_KILLED
    assert service.show("ExecMainStatus") == "9"
    assert service.show("ExecMainPID") == main
    wait_for(lambda: not service.sb.host_path(f"{ROOT}/{service.name}").exists())


def test_kill_signal_is_honoured(service: Service) -> None:
    service.install(["sh", "-c", "trap 'echo got USR1; exit 0' USR1; echo armed; while :; do sleep 1; done"])
    service.dropin("[Service]\nKillSignal=SIGUSR1\n")
    assert service.systemctl("start").returncode == 0
    # The unit is active once the program runs, not once sh has set its trap; a pid namespace's
    # init ignores a signal it has no handler for (runc's containers the same), so a stop that
    # came first would wait out TimeoutStopSec.
    wait_for(lambda: "armed" in service.journal())
    t0 = time.monotonic()
    assert service.systemctl("stop").returncode == 0
    assert time.monotonic() - t0 < 5
    assert "got USR1" in service.journal()


def test_ready_from_the_container(service: Service, test_init: Path) -> None:
    service.install(
        ["/bin/oci-test-init", "notify", "2", "READY=1"],
        test_init,
        annotations={"io.github.oci-systemd.notify": "container"},
    )
    t0 = time.monotonic()
    assert service.systemctl("start").returncode == 0
    elapsed = time.monotonic() - t0
    assert elapsed >= 2.0, f"systemctl start returned after {elapsed:.2f}s, before READY=1"
    assert service.show("ActiveState") == "active"
    main = int(service.show("MainPID"))
    assert json.loads(service.rt("state", service.name).stdout)["pid"] == main
    assert _inner_pid(service.sb, main)["PPid"] == "1"


def test_socket_activation(sandbox: Sandbox, service: Service, test_init: Path) -> None:
    service.install(["/bin/oci-test-init", "accept-fd3"], test_init)
    socket_unit = f"oci-container@{service.name}.socket"
    try:
        assert sandbox.run(["systemctl", "start", socket_unit]).returncode == 0
        code = (
            "import socket\n"
            "s = socket.socket(socket.AF_UNIX)\n"
            "s.settimeout(20)\n"
            f"s.connect('/run/oci-container-{service.name}.sock')\n"
            "print(s.makefile().readline().strip())\n"
        )
        out = sandbox.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == f"LISTEN_FDS=1 LISTEN_FDNAMES={service.name} LISTEN_PID=1 PID=1"
        assert service.show("ActiveState") == "active"
        assert _inner_pid(sandbox, int(service.show("MainPID")))["PPid"] == "1"
    finally:
        sandbox.run(["systemctl", "stop", socket_unit])


def test_without_delegate_nothing_is_left(service: Service) -> None:
    service.install(["sh", "-c", LOOP])
    service.dropin("[Service]\nDelegate=no\nRestart=no\n")
    assert service.systemctl("start").returncode != 0
    assert any("has no Delegate=yes" in line for line in service.journal())
    assert not service.sb.host_path(f"{ROOT}/{service.name}").exists()


def test_outside_a_service_is_refused(sandbox: Sandbox, units: Path) -> None:
    svc = Service(sandbox, units, "outside")
    svc.install(["true"])
    cid = bundles.new_container_id()
    env = {"OCI_SYSTEMD_PLACEMENT": "service", "PATH": "/usr/bin:/bin"}
    for verb in (["run"], ["create"]):
        out = bundles.run_runtime(sandbox, [*verb, "--bundle", sandbox.inner_path(svc.bundle), cid], env=env)
        assert out.returncode == 1, out.stderr
        assert "OCI_SYSTEMD_PLACEMENT=service" in out.stderr
        assert not sandbox.host_path(f"{ROOT}/{cid}").exists()
    bad = bundles.run_runtime(
        sandbox,
        ["run", "--bundle", sandbox.inner_path(svc.bundle), cid],
        env={**env, "OCI_SYSTEMD_PLACEMENT": "elsewhere"},
    )
    assert bad.returncode == 1 and "expected one of scope, service" in bad.stderr


def test_delete_force_kills_the_container_not_the_unit_machinery(service: Service) -> None:
    service.install(["sh", "-c", LOOP])
    service.dropin("[Service]\nRestart=no\n")
    assert service.systemctl("start").returncode == 0
    cgroup = service.show("ControlGroup")
    deleted = service.rt("delete", "--force", service.name)
    assert deleted.returncode == 0, deleted.stderr
    # The container's cgroup was killed and removed; the service ended as its main process did.
    assert not service.sb.host_path(f"/sys/fs/cgroup{cgroup}/container").exists()
    wait_for(lambda: service.show("ActiveState") in ("failed", "inactive"))
    assert service.show("Result") == "signal"
    assert not service.sb.host_path(f"{ROOT}/{service.name}").exists()


def test_a_stopped_container_left_by_a_crash_does_not_block_the_start(service: Service) -> None:
    """The unit has no ExecStartPre= delete: `run` deletes a stopped record of its id itself."""
    service.install(["sh", "-c", LOOP])
    bundle = str(service.sb.inner_path(service.bundle))
    # The container inherits create's stdout/stderr: not pipes this test would wait on.
    leftover = bundles.run_runtime(
        service.sb,
        ["create", "--bundle", bundle, service.name],
        capture_output=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert leftover.returncode == 0
    try:
        assert service.rt("kill", service.name, "KILL").returncode == 0
        wait_for(lambda: json.loads(service.rt("state", service.name).stdout)["status"] == "stopped")
        started = service.systemctl("start")
        assert started.returncode == 0, started.stderr
        wait_for(lambda: service.show("ActiveState") == "active")
        assert json.loads(service.rt("state", service.name).stdout)["pid"] == int(service.show("MainPID"))
    finally:
        service.rt("delete", "--force", service.name)
