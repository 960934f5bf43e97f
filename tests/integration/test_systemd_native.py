# SPDX-License-Identifier: Apache-2.0
"""systemd-native behaviour: socket activation, sd_notify, journald, unit properties, units/."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bundles
import pytest
from test_lifecycle import Container, systemctl_show, wait_for

from oci_systemd.devtools.sandbox import Sandbox

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "units"
INIT_SRC = Path(__file__).parent / "init" / "oci-test-init.c"
MESSAGE_IDS = {
    "created": "ccf2b8b69f5148459daab01cd03ab129",
    "started": "7bf0659a27c94c88bf76e4e12191df27",
    "exited": "6168ebbaa6344acb99d99ad1bebd17b1",
    "deleted": "6cfd6647967a47bbb762bc0f4512556a",
}


def _compile_static(sandbox: Sandbox, src: Path) -> Path:
    """`src` built once per sandbox as a static binary (runs in a busybox rootfs); host path."""
    out = sandbox.host_path(f"{bundles.INNER_WORKDIR}/{src.stem}")
    if not out.exists():
        subprocess.run(["gcc", "-static", "-O2", "-o", str(out), str(src)], check=True)
    return out


@pytest.fixture(scope="module")
def test_init(sandbox: Sandbox) -> Path:
    """The static helper (accept on fd 3, sd_notify), compiled once; host path."""
    return _compile_static(sandbox, INIT_SRC)


@pytest.fixture(scope="module")
def units(sandbox: Sandbox) -> Iterator[Path]:
    """units/ installed into the private systemd, pointing at this checkout's runtime and at a
    bundle directory in the sandbox's /tmp."""
    unit_dir = sandbox.host_path("/run/systemd/system")
    containers = f"{bundles.INNER_WORKDIR}/containers"
    sandbox.host_path(containers).mkdir(parents=True, exist_ok=True)
    runtime = " ".join(bundles.runtime_argv())
    for unit in ("oci-scope@.service", "oci-scope@.socket"):
        text = (UNITS / unit).read_text().replace("/usr/bin/oci-systemd", runtime)
        text = text.replace(
            "Environment=OCI_CONTAINERS_DIR=%S/oci-containers",
            f"Environment=OCI_CONTAINERS_DIR={containers}",
        )
        (unit_dir / unit).write_text(text)
    sandbox.run(["systemctl", "daemon-reload"], check=True)
    yield sandbox.host_path(containers)
    for unit in ("oci-scope@.service", "oci-scope@.socket"):
        (unit_dir / unit).unlink(missing_ok=True)
    sandbox.run(["systemctl", "daemon-reload"], check=True)


def _install_bundle(
    containers: Path, sandbox: Sandbox, name: str, init: Path, args: list[str], **overrides: Any
) -> Path:
    bundle = containers / name
    shutil.rmtree(bundle, ignore_errors=True)
    conf = bundles.merge(bundles.base_config(), overrides)
    conf["process"]["args"] = args
    bundles.make_bundle(bundle, conf, rootfs=bundles.ensure_rootfs(sandbox))
    shutil.copy2(init, bundle / "rootfs" / "bin" / "oci-test-init")
    return bundle


def _connect(sandbox: Sandbox, path: str) -> str:
    code = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "s.settimeout(20)\n"
        f"s.connect({path!r})\n"
        "print(s.makefile().readline().strip())\n"
    )
    out: subprocess.CompletedProcess[str] = sandbox.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def _stop_unit(sandbox: Sandbox, *units: str) -> None:
    for unit in units:
        sandbox.run(["systemctl", "stop", unit], timeout=60)
        sandbox.run(["systemctl", "reset-failed", unit])


def test_socket_activation(sandbox: Sandbox, units: Path, test_init: Path) -> None:
    name = "sockact"
    _install_bundle(units, sandbox, name, test_init, ["/bin/oci-test-init", "accept-fd3"])
    try:
        sandbox.run(["systemctl", "start", f"oci-scope@{name}.socket"], check=True)
        assert systemctl_show(sandbox, f"oci-scope@{name}.service", "ActiveState") == "inactive"
        answer = _connect(sandbox, f"/run/oci-scope-{name}.sock")
        # New pid namespace: the program is pid 1 and LISTEN_PID names it as it sees itself.
        assert answer == f"LISTEN_FDS=1 LISTEN_FDNAMES={name} LISTEN_PID=1 PID=1"
        assert systemctl_show(sandbox, f"oci-scope@{name}.service", "ActiveState") == "active"
        assert systemctl_show(sandbox, f"oci-systemd-{name}.scope", "ActiveState") == "active"
        # The same container answers the next connection: the listening socket stays with it.
        assert _connect(sandbox, f"/run/oci-scope-{name}.sock").endswith("PID=1")
    finally:
        _stop_unit(sandbox, f"oci-scope@{name}.service", f"oci-scope@{name}.socket")
    wait_for(lambda: systemctl_show(sandbox, f"oci-systemd-{name}.scope", "LoadState") == "not-found")
    assert not sandbox.host_path(f"/run/oci-systemd/{name}").exists()


def test_listen_fds_not_ours_are_ignored(sandbox: Sandbox) -> None:
    conf = bundles.base_config()
    conf["process"]["args"] = ["sh", "-c", 'echo "fds=${LISTEN_FDS:-none}"; ls /proc/self/fd']
    c = Container(sandbox, conf)
    proc = c.rt(
        "run",
        "--bundle",
        c.bundle,
        c.id,
        env={"LISTEN_FDS": "2", "LISTEN_PID": "1", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "fds=none" in proc.stdout


def test_type_notify_waits_for_ready(sandbox: Sandbox, units: Path, test_init: Path) -> None:
    name = "notifier"
    _install_bundle(
        units,
        sandbox,
        name,
        test_init,
        ["/bin/oci-test-init", "notify", "2", "READY=1"],
        annotations={"io.github.oci-systemd.notify": "container"},
    )
    unit = f"oci-scope@{name}.service"
    try:
        t0 = time.monotonic()
        sandbox.run(["systemctl", "start", unit], check=True, timeout=60)
        elapsed = time.monotonic() - t0
        assert elapsed >= 2.0, f"systemctl start returned after {elapsed:.2f}s, before READY=1"
        assert systemctl_show(sandbox, unit, "ActiveState") == "active"
        state = json.loads(bundles.run_runtime(sandbox, ["state", name]).stdout)
        assert state["status"] == "running"
        assert systemctl_show(sandbox, unit, "MainPID") == str(state["pid"])
    finally:
        _stop_unit(sandbox, unit)
    wait_for(lambda: systemctl_show(sandbox, f"oci-systemd-{name}.scope", "LoadState") == "not-found")


@pytest.mark.parametrize(("code", "restarts"), [(0, False), (1, True)])
def test_a_program_that_exits_on_its_own(
    sandbox: Sandbox, units: Path, test_init: Path, code: int, restarts: bool
) -> None:
    """Restart=on-failure as a user reads it: the program's exit 0 ends the service (ExecStop's
    kill finds no container then, which must not fail the unit), its exit 1 restarts it (the
    main process, moved to the init by MAINPID=, is `run` again when the init has exited)."""
    name = f"exits{code}"
    _install_bundle(units, sandbox, name, test_init, ["sh", "-c", f"sleep 0.3; exit {code}"])
    unit = f"oci-scope@{name}.service"
    try:
        sandbox.run(["systemctl", "start", unit], check=True, timeout=60)
        if restarts:
            # `run` took the main process back from the init when it exited: systemd saw status 1.
            wait_for(lambda: int(systemctl_show(sandbox, unit, "NRestarts") or 0) >= 1, timeout=20)
            journal = _journal_text(sandbox, "_PID=1", f"UNIT={unit}")
            assert "status=1/FAILURE" in journal
        else:
            wait_for(lambda: systemctl_show(sandbox, unit, "ActiveState") == "inactive", timeout=20)
            time.sleep(3)  # RestartSec=2: a restart would have come by now
            assert systemctl_show(sandbox, unit, "ActiveState") == "inactive"
            assert systemctl_show(sandbox, unit, "Result") == "success"
            assert systemctl_show(sandbox, unit, "NRestarts") == "0"
    finally:
        _stop_unit(sandbox, unit)
    wait_for(lambda: not sandbox.host_path(f"/run/oci-systemd/{name}").exists())


def test_type_notify_started_mode(sandbox: Sandbox, units: Path, test_init: Path) -> None:
    name = "plainsvc"
    # A program that ends on SIGTERM: ExecStop's `oci-systemd kill` stops it at once.
    _install_bundle(
        units,
        sandbox,
        name,
        test_init,
        ["sh", "-c", "trap 'exit 0' TERM; echo armed; while :; do sleep 0.1; done"],
    )
    unit = f"oci-scope@{name}.service"
    try:
        sandbox.run(["systemctl", "start", unit], check=True, timeout=60)
        assert systemctl_show(sandbox, unit, "ActiveState") == "active"
        # Active once the program runs, not once sh has its trap: a pid namespace's init ignores
        # a TERM it has no handler for, and the stop would wait out TimeoutStopSec.
        # The program lives in the scope: journald files its lines under that unit.
        wait_for(lambda: "armed" in _journal_text(sandbox, "-u", f"oci-systemd-{name}.scope"))
        t0 = time.monotonic()
        sandbox.run(["systemctl", "stop", unit], check=True, timeout=60)
        assert time.monotonic() - t0 < 10
    finally:
        _stop_unit(sandbox, unit)
    wait_for(lambda: systemctl_show(sandbox, f"oci-systemd-{name}.scope", "LoadState") == "not-found")
    assert not sandbox.host_path(f"/run/oci-systemd/{name}").exists()


def _journal_text(sandbox: Sandbox, *args: str) -> str:
    out = sandbox.run(["journalctl", "--no-pager", "-o", "cat", *args], capture_output=True, text=True)
    return str(out.stdout)


def _journal(sandbox: Sandbox, *args: str) -> list[dict[str, Any]]:
    out = sandbox.run(["journalctl", "--no-pager", "-o", "json", *args], capture_output=True, text=True)
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def test_journal_lifecycle_entries(sandbox: Sandbox) -> None:
    _out, cid = bundles.run_and_get_output(sandbox, bundles.base_config(), ["echo", "hi"])
    scope = f"oci-systemd-{cid}.scope"
    sandbox.run(["journalctl", "--sync"])
    entries = [e for e in _journal(sandbox, "-u", scope) if e.get("CONTAINER_ID") == cid]
    by_id = {e["MESSAGE_ID"]: e for e in entries}
    for event, message_id in MESSAGE_IDS.items():
        assert message_id in by_id, f"no {event} entry under journalctl -u {scope}"
    created = by_id[MESSAGE_IDS["created"]]
    assert created["OCI_STATUS"] == "created"
    assert created["OCI_BUNDLE"].endswith(cid)
    assert by_id[MESSAGE_IDS["exited"]]["EXIT_STATUS"] == "0"
    found = _journal(sandbox, f"MESSAGE_ID={MESSAGE_IDS['deleted']}", f"CONTAINER_ID={cid}")
    assert len(found) == 1


def test_container_output_printed_just_before_exit_reaches_the_journal(sandbox: Sandbox) -> None:
    """`run` deletes the container as soon as its init exits, while the forwarder may still be
    writing the last lines: delete waits for it (placement.SystemScope.destroy), not kills it."""
    conf = bundles.base_config()
    conf["annotations"] = {"io.github.oci-systemd.log": "journald"}
    script = "i=0; while [ $i -lt 3000 ]; do echo line-$i; i=$((i+1)); done"
    _out, cid = bundles.run_and_get_output(sandbox, conf, ["sh", "-c", script])
    sandbox.run(["journalctl", "--sync"])
    entries = _journal(sandbox, f"CONTAINER_ID={cid}", f"SYSLOG_IDENTIFIER={cid}")
    got = {e["MESSAGE"] for e in entries if e.get("OCI_STREAM") == "stdout"}
    assert "line-2999" in got and len(got) == 3000, f"{len(got)} of 3000 lines"


def test_container_output_to_journal(sandbox: Sandbox) -> None:
    conf = bundles.base_config()
    conf["annotations"] = {"io.github.oci-systemd.log": "journald"}
    out, cid = bundles.run_and_get_output(sandbox, conf, ["sh", "-c", "echo to-stdout; echo to-stderr >&2"])
    assert "to-stdout" not in out and "to-stderr" not in out
    sandbox.run(["journalctl", "--sync"])
    entries = _journal(sandbox, f"CONTAINER_ID={cid}", f"SYSLOG_IDENTIFIER={cid}")
    lines = {e["MESSAGE"]: e for e in entries if "OCI_STREAM" in e}
    assert lines["to-stdout"]["OCI_STREAM"] == "stdout" and lines["to-stdout"]["PRIORITY"] == "6"
    assert lines["to-stderr"]["OCI_STREAM"] == "stderr" and lines["to-stderr"]["PRIORITY"] == "3"
    shown = sandbox.run(
        ["journalctl", "--no-pager", "-o", "cat", "-u", f"oci-systemd-{cid}.scope"],
        capture_output=True,
        text=True,
    ).stdout
    assert "to-stdout" in shown


def test_resources_become_unit_properties(sandbox: Sandbox) -> None:
    conf = bundles.base_config()
    conf["process"]["args"] = ["sleep", "1000"]
    conf["linux"]["resources"] = {
        "memory": {"limit": 268435456},
        "cpu": {"shares": 512, "cpus": "0"},
        "pids": {"limit": 77},
    }
    conf["annotations"] = {"org.systemd.property.CPUQuotaPerSecUSec": "uint64 500000"}
    c = Container(sandbox, conf)
    assert c.create().returncode == 0, c.output()
    try:
        assert systemctl_show(sandbox, c.scope, "MemoryMax") == "268435456"
        assert systemctl_show(sandbox, c.scope, "CPUWeight") == "20"  # 1 + (512-2)*9999/262142
        assert systemctl_show(sandbox, c.scope, "TasksMax") == "77"
        assert systemctl_show(sandbox, c.scope, "AllowedCPUs") == "0"
        assert systemctl_show(sandbox, c.scope, "CPUQuotaPerSecUSec") == "500ms"
        upd = c.rt("update", "--memory", "128m", "--pids-limit", "50", c.id)
        assert upd.returncode == 0, upd.stderr
        assert systemctl_show(sandbox, c.scope, "MemoryMax") == "134217728"
        assert systemctl_show(sandbox, c.scope, "TasksMax") == "50"
        res = c.rt(
            "update", "--resources", "-", c.id, stdin=None, input=json.dumps({"cpu": {"shares": 1024}})
        )
        assert res.returncode == 0, res.stderr
        assert systemctl_show(sandbox, c.scope, "CPUWeight") == "39"
    finally:
        c.rt("delete", "--force", c.id)


def test_bad_property_is_named(sandbox: Sandbox) -> None:
    conf = bundles.base_config()
    conf["annotations"] = {"org.systemd.property.NoSuchProperty": "uint64 1"}
    c = Container(sandbox, conf)
    assert c.create().returncode == 1
    assert "NoSuchProperty" in c.output()
    assert systemctl_show(sandbox, c.scope, "LoadState") in ("not-found", "")


def test_pause_resume_and_events(sandbox: Sandbox) -> None:
    conf = bundles.base_config()
    conf["process"]["args"] = ["sleep", "1000"]
    c = Container(sandbox, conf)
    assert c.create().returncode == 0 and c.rt("start", c.id).returncode == 0
    try:
        assert c.rt("pause", c.id).returncode == 0
        assert c.status() == "paused"
        assert systemctl_show(sandbox, c.scope, "FreezerState") == "frozen"
        assert c.rt("resume", c.id).returncode == 0
        assert c.status() == "running"
        stats = json.loads(c.rt("events", "--stats", c.id).stdout)
        assert stats["type"] == "stats" and stats["id"] == c.id
        assert stats["data"]["pids"]["current"] >= 1
    finally:
        c.rt("delete", "--force", c.id)


# -- sd_notify abuse (issue 14, items 4-6): each test performs the attack as the container ----

ATTACK_SRC = Path(__file__).parent / "init" / "oci-notify-attack.c"


@pytest.fixture(scope="module")
def notify_attack(sandbox: Sandbox) -> Path:
    """The static sd_notify abuser (send / flood / extend), compiled once; host path."""
    return _compile_static(sandbox, ATTACK_SRC)


def _install_attacker(units: Path, sandbox: Sandbox, name: str, attack: Path, args: list[str]) -> str:
    bundle = _install_bundle(
        units,
        sandbox,
        name,
        attack,
        ["/bin/oci-notify-attack", *args],
        annotations={"io.github.oci-systemd.notify": "container"},
    )
    (bundle / "rootfs" / "bin" / "oci-test-init").rename(bundle / "rootfs" / "bin" / "oci-notify-attack")
    return f"oci-scope@{name}.service"


def _cpu_seconds(sandbox: Sandbox, cgroup: str) -> tuple[float, float]:
    """(CPU of the service's own cgroup: `oci-systemd run`, the relay; CPU of PID 1), read
    from cgroupfs and /proc, not through the busy manager."""
    out = sandbox.run(
        ["cat", f"/sys/fs/cgroup{cgroup}/cpu.stat", "/proc/1/stat"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    usage = next(line for line in out.splitlines() if line.startswith("usage_usec "))
    stat = out.splitlines()[-1].rsplit(")", 1)[1].split()
    ticks = int(stat[11]) + int(stat[12])  # utime + stime
    return int(usage.split()[1]) / 1e6, ticks / os.sysconf("SC_CLK_TCK")


def test_notify_mainpid_injection(sandbox: Sandbox, units: Path, notify_attack: Path) -> None:
    """`STATUS=x\\rMAINPID=<host pid>`: systemd splits on \\r too, so this made a root relay
    hand any host process to the service as its main pid, and `systemctl stop` killed it."""
    victim = "notify-victim.service"
    sandbox.run(["systemd-run", f"--unit={victim}", "sleep", "1000"], check=True)
    victim_pid = systemctl_show(sandbox, victim, "MainPID")
    # Two datagrams: runc relays only the first line of the first READY= one.
    injected = ["send", f"STATUS=x\rMAINPID={victim_pid}", f"READY=1\rMAINPID={victim_pid}"]
    unit = _install_attacker(units, sandbox, "mainpid", notify_attack, injected)
    try:
        sandbox.run(["systemctl", "start", unit], check=True, timeout=60)
        state = json.loads(bundles.run_runtime(sandbox, ["state", "mainpid"]).stdout)
        main_pid = systemctl_show(sandbox, unit, "MainPID")
        assert main_pid != victim_pid
        if not os.environ.get("OCI_RUNTIME"):  # runc: its own pid, and it relays READY= alone
            assert main_pid == str(state["pid"])
            assert systemctl_show(sandbox, unit, "StatusText") == "x"
        _stop_unit(sandbox, unit)
        assert systemctl_show(sandbox, victim, "ActiveState") == "active"
        assert systemctl_show(sandbox, victim, "MainPID") == victim_pid
    finally:
        _stop_unit(sandbox, unit, victim)


def test_notify_flood_is_bounded(sandbox: Sandbox, units: Path, notify_attack: Path) -> None:
    """A container flooding STATUS= cost the relay ~31 % and PID 1 ~28 % of a CPU."""
    unit = _install_attacker(units, sandbox, "flooder", notify_attack, ["flood", "2", "8"])
    try:
        sandbox.run(["systemctl", "start", unit], check=True, timeout=60)
        cgroup = systemctl_show(sandbox, unit, "ControlGroup")  # before the flood starts
        time.sleep(3)
        relay0, pid1_0 = _cpu_seconds(sandbox, cgroup)
        t0 = time.monotonic()
        time.sleep(4)
        relay1, pid1_1 = _cpu_seconds(sandbox, cgroup)
        wall = time.monotonic() - t0
        # An unrelated job through the manager, still within the flood.
        t1 = time.monotonic()
        sandbox.run(["systemd-run", "--wait", "--quiet", "true"], check=True, timeout=60)
        job = time.monotonic() - t1
        relay_share, pid1_share = (relay1 - relay0) / wall, (pid1_1 - pid1_0) / wall
        print(
            f"during the flood: relay {relay_share:.1%} of a CPU, PID 1 {pid1_share:.1%}, a job {job:.2f}s"
        )
        assert relay_share < 0.10
        assert pid1_share < 0.05
        assert job < 5
        if not os.environ.get("OCI_RUNTIME"):  # runc relays READY= alone
            assert systemctl_show(sandbox, unit, "StatusText").startswith("flood ")
    finally:
        _stop_unit(sandbox, unit)


def test_notify_extend_timeout_cannot_stall_stop(sandbox: Sandbox, units: Path, notify_attack: Path) -> None:
    """A container repeating EXTEND_TIMEOUT_USEC= (and ignoring SIGTERM) kept `systemctl stop`
    from ever finishing; TimeoutStopSec=3 must hold."""
    name = "extender"
    unit = _install_attacker(units, sandbox, name, notify_attack, ["extend"])
    dropin = sandbox.host_path(f"/run/systemd/system/oci-scope@{name}.service.d")
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "timeout.conf").write_text("[Service]\nTimeoutStopSec=3\n")
    sandbox.run(["systemctl", "daemon-reload"], check=True)
    try:
        sandbox.run(["systemctl", "start", unit], check=True, timeout=60)
        time.sleep(1)
        t0 = time.monotonic()
        try:
            sandbox.run(["systemctl", "stop", unit], timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail("systemctl stop still running after 30 s with TimeoutStopSec=3")
        elapsed = time.monotonic() - t0
        print(f"systemctl stop took {elapsed:.1f}s with TimeoutStopSec=3")
        assert elapsed < 15
    finally:
        sandbox.run(["systemctl", "kill", "-s", "KILL", unit])
        _stop_unit(sandbox, unit)
        shutil.rmtree(dropin, ignore_errors=True)
        sandbox.run(["systemctl", "daemon-reload"])
    wait_for(lambda: systemctl_show(sandbox, f"oci-systemd-{name}.scope", "LoadState") == "not-found")


def _notify_env(sandbox: Sandbox, cid: str) -> tuple[dict[str, str], socket.socket]:
    """The runtime's environment with NOTIFY_SOCKET at a datagram socket the test holds."""
    inner = f"{bundles.INNER_WORKDIR}/host-notify-{cid}.sock"
    host = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    host.bind(os.fspath(sandbox.host_path(inner)))
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "NOTIFY_SOCKET": inner, "OCI_SYSTEMD_NOTIFY": "started"}
    return env, host


def test_notify_directory_is_read_only(sandbox: Sandbox) -> None:
    """As the container's root (with CAP_MKNOD), try to plant files, a setuid binary, a device
    node, a directory, or a symlink in place of the socket in the notify directory."""
    if os.environ.get("OCI_RUNTIME"):
        pytest.skip("`runc run` waits for READY=1, which busybox cannot send (runc mounts it ro too)")
    attempts = {
        "file": "touch /run/notify/planted",
        "setuid": "cp /bin/busybox /run/notify/sh && chmod 4755 /run/notify/sh",
        "device": "mknod /run/notify/mem c 1 1",
        "directory": "mkdir /run/notify/d",
        "symlink": "rm -f /run/notify/notify.sock; ln -s /etc/passwd /run/notify/notify.sock",
    }
    script = "".join(
        f"if {cmd}; then echo OK {what}; else echo FAIL {what}; fi\n" for what, cmd in attempts.items()
    )
    script += "grep ' /run/notify ' /proc/self/mountinfo\n"
    conf = bundles.base_config()
    conf["process"]["args"] = ["sh", "-c", script]
    for kind in ("bounding", "effective", "permitted"):
        conf["process"]["capabilities"][kind].append("CAP_MKNOD")
    c = Container(sandbox, conf)
    env, host = _notify_env(sandbox, c.id)
    with host:
        proc = c.rt("run", "--bundle", c.bundle, c.id, env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line for line in lines if line.startswith(("OK", "FAIL"))] == [f"FAIL {w}" for w in attempts]
    mountinfo = next(line for line in lines if " /run/notify " in line)
    assert {"ro", "nosuid", "nodev", "noexec"} <= set(mountinfo.split()[5].split(","))
    assert "Read-only file system" in proc.stderr


def test_delete_removes_any_tree_in_the_notify_directory(sandbox: Sandbox) -> None:
    """What a container could once leave in a writable notify directory: a directory 1,100
    levels deep and a symlink to a host directory. delete removes all of it and follows nothing."""
    if os.environ.get("OCI_RUNTIME"):
        pytest.skip("plants into oci-systemd's own state directory")
    conf = bundles.base_config()
    conf["process"]["args"] = ["sleep", "1000"]
    c = Container(sandbox, conf)
    env, host = _notify_env(sandbox, c.id)
    marker = sandbox.host_path(f"{bundles.INNER_WORKDIR}/marker-{c.id}")
    marker.mkdir()
    (marker / "keep").write_text("host data")
    with host, (c.host_bundle / "output").open("w") as out:
        # The idler inherits stdout/stderr: a file, not the pipe run_runtime would wait on.
        proc = c.rt(
            "create", "--bundle", c.bundle, c.id, env=env, stdout=out, stderr=out, capture_output=False
        )
    assert proc.returncode == 0, c.output()
    notify_dir = sandbox.host_path(f"/run/oci-systemd/{c.id}/notify")
    (notify_dir / "link").symlink_to(marker)
    fd = os.open(notify_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(1100):
            os.mkdir("deep-directory-level", dir_fd=fd)
            deeper = os.open("deep-directory-level", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = deeper
        os.symlink(os.fspath(marker), "up", dir_fd=fd)
    finally:
        os.close(fd)
    proc = c.rt("delete", "--force", c.id)
    assert proc.returncode == 0, proc.stderr
    assert not sandbox.host_path(f"/run/oci-systemd/{c.id}").exists()
    assert (marker / "keep").read_text() == "host data"
    shutil.rmtree(marker)
