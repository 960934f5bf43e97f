# SPDX-License-Identifier: Apache-2.0
"""Fault injection (issue 8, parts 1 and 2): the runtime killed half-way, systemd misbehaving.

The runtime SIGKILLs itself at a named point when OCI_SYSTEMD_FAULT names it
(`runtime.fault_point()`); a timing variant kills `create` after a random delay instead.
After every fault, `state` and `list` must tell the truth and `delete --force` must leave
nothing: no scope, no state directory, no idler, no cgroup, no mount.

The leak checks here (`assert_no_leak`, `idler_pids`) are shared with test_load.py and
test_hostile.py.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
from typing import Any

import bundles
import pytest
from test_lifecycle import ROOT, Container, no_trace_left, systemctl_show, wait_for

from oci_systemd.devtools.sandbox import Sandbox

CREATE_POINTS = ["create:claimed", "create:spawned", "create:pid", "create:scoped", "create:built"]
START_POINTS = ["start:sent", "start:recorded"]
DELETE_POINTS = ["delete:killed", "delete:stopped", "delete:removed"]
REPEAT = 3

# What a SIGKILLed runtime looks like through nsenter (it re-raises its child's signal).
KILLED = -9


# -- shared checks ------------------------------------------------------------------------


def fault_env(point: str) -> dict[str, str]:
    return {**os.environ, "OCI_SYSTEMD_FAULT": point}


def idler_pids(sb: Sandbox) -> set[int]:
    """Processes inside the sandbox still running the idler's code (waiting containers)."""
    out = sb.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True, check=True).stdout
    pids = set()
    for line in out.splitlines():
        pid, _, args = line.strip().partition(" ")
        if "oci_systemd.container.idler" in args:
            pids.add(int(pid))
    return pids


def scope_cgroup_exists(sb: Sandbox, scope: str, slice_: str = "system.slice") -> bool:
    return sb.run(["test", "-e", f"/sys/fs/cgroup/{slice_}/{scope}"]).returncode == 0


def assert_no_leak(sb: Sandbox, c: Container, idlers_before: set[int] | None = None) -> None:
    """Nothing of `c` left: scope, state dir, runtime or idler process, cgroup, mount."""
    no_trace_left(sb, c)
    assert systemctl_show(sb, c.scope, "ActiveState") in ("inactive", ""), "scope still loaded"
    assert not scope_cgroup_exists(sb, c.scope), f"cgroup of {c.scope} left behind"
    if idlers_before is not None:
        leaked = idler_pids(sb) - idlers_before
        assert not leaked, f"idler processes left behind: {sorted(leaked)}"
    mountinfo = sb.run(["cat", "/proc/self/mountinfo"], capture_output=True, text=True).stdout
    assert c.id not in mountinfo, "a mount of the container is left in the sandbox's namespace"


def list_status(sb: Sandbox, cid: str) -> str | None:
    proc = bundles.run_runtime(sb, ["list", "--format", "json"])
    assert proc.returncode == 0, proc.stderr
    for entry in json.loads(proc.stdout or "[]") or []:
        if entry["id"] == cid:
            return str(entry["status"])
    return None


def state_or_none(c: Container) -> dict[str, Any] | None:
    proc = c.rt("state", c.id)
    if proc.returncode != 0:
        assert "container does not exist" in proc.stderr, proc.stderr
        return None
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def init_alive(sb: Sandbox, pid: int) -> bool:
    return pid > 0 and sb.host_path(f"/proc/{pid}").exists() and _not_zombie(sb, pid)


def _not_zombie(sb: Sandbox, pid: int) -> bool:
    # The sandbox's /proc (its pid namespace) through the host path of its root.
    try:
        stat = sb.host_path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def assert_sane(sb: Sandbox, c: Container) -> str | None:
    """`state` and `list` agree, and never claim life for a container whose init is gone."""
    st = state_or_none(c)
    listed = list_status(sb, c.id)
    if st is None:
        assert listed is None, f"list shows {listed} for a container state does not know"
        return None
    status = str(st["status"])
    assert status in ("created", "running", "stopped", "creating"), st
    assert listed == status, f"state says {status}, list says {listed}"
    if status in ("created", "running"):
        assert init_alive(sb, int(st["pid"])), f"{status} but init {st['pid']} is gone"
    else:
        assert st["pid"] == 0
    return status


def recover(sb: Sandbox, c: Container, idlers_before: set[int]) -> None:
    proc = c.rt("delete", "--force", c.id)
    assert proc.returncode == 0, proc.stderr
    assert state_or_none(c) is None
    assert_no_leak(sb, c, idlers_before)


def _container(sb: Sandbox, args: list[str], **overrides: Any) -> Container:
    conf = bundles.merge(bundles.base_config(), overrides)
    conf["process"]["args"] = args
    return Container(sb, conf)


def _create_with_env(c: Container, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    out = (c.host_bundle / "output").open("w")
    try:
        proc: subprocess.CompletedProcess[str] = c.rt(
            "create", "--bundle", c.bundle, c.id, stdout=out, stderr=out, capture_output=False, env=env
        )
        return proc
    finally:
        out.close()


# -- 1. fault points ------------------------------------------------------------------------


@pytest.mark.parametrize("rep", range(REPEAT))
@pytest.mark.parametrize("point", CREATE_POINTS)
def test_create_fault(sandbox: Sandbox, point: str, rep: int) -> None:
    before = idler_pids(sandbox)
    c = _container(sandbox, ["sleep", "1000"])
    proc = _create_with_env(c, fault_env(point))
    assert proc.returncode == KILLED, f"fault point {point} did not fire: {c.output()}"
    # The orphaned idler notices the closed channel and exits; give it the time to.
    status = assert_sane(sandbox, c)
    if point == "create:built":
        # Everything was done but the pid file: a complete, waiting container.
        assert status == "created"
    elif point == "create:claimed":
        assert status == "stopped"
    else:
        # Half-created: its init is gone (or going); never created/running.
        assert status in ("stopped", None), status
        wait_for(lambda: not (idler_pids(sandbox) - before), timeout=10)
    # A stopped leftover must also be deletable without --force.
    if status == "stopped":
        plain = c.rt("delete", c.id)
        assert plain.returncode == 0, plain.stderr
    recover(sandbox, c, before)
    # The id is free again.
    again = c.create()
    assert again.returncode == 0, c.output()
    assert c.status() == "created"
    recover(sandbox, c, before)


@pytest.mark.parametrize("rep", range(REPEAT))
@pytest.mark.parametrize("point", START_POINTS)
def test_start_fault(sandbox: Sandbox, point: str, rep: int) -> None:
    before = idler_pids(sandbox)
    c = _container(sandbox, ["sleep", "1000"])
    assert c.create().returncode == 0, c.output()
    proc = c.rt("start", c.id, env=fault_env(point))
    assert proc.returncode == KILLED, f"fault point {point} did not fire: {proc.stderr}"
    # The program was exec'd before the runtime died: it runs, and says so.
    assert assert_sane(sandbox, c) == "running"
    again = c.rt("start", c.id)
    assert again.returncode == 1 and "already running" in again.stderr
    kill = c.rt("kill", c.id, "KILL")
    assert kill.returncode == 0, kill.stderr
    wait_for(lambda: c.status() == "stopped")
    assert assert_sane(sandbox, c) == "stopped"
    recover(sandbox, c, before)


@pytest.mark.parametrize("origin", ["created", "running"])
@pytest.mark.parametrize("rep", range(REPEAT))
@pytest.mark.parametrize("point", DELETE_POINTS)
def test_delete_fault(sandbox: Sandbox, point: str, rep: int, origin: str) -> None:
    before = idler_pids(sandbox)
    c = _container(sandbox, ["sleep", "1000"])
    assert c.create().returncode == 0, c.output()
    if origin == "running":
        assert c.rt("start", c.id).returncode == 0
    pid = int(c.state()["pid"])
    proc = c.rt("delete", "--force", c.id, env=fault_env(point))
    assert proc.returncode == KILLED, f"fault point {point} did not fire: {proc.stderr}"
    status = assert_sane(sandbox, c)
    assert not init_alive(sandbox, pid)
    if point == "delete:removed":
        assert status is None
    else:
        assert status == "stopped"
        kill = c.rt("kill", c.id, "KILL")
        assert kill.returncode == 1 and "not running" in kill.stderr
    recover(sandbox, c, before)


def _timed_create(sb: Sandbox) -> float:
    c = _container(sb, ["sleep", "1000"])
    t0 = time.monotonic()
    assert c.create().returncode == 0, c.output()
    elapsed = time.monotonic() - t0
    assert c.rt("delete", "--force", c.id).returncode == 0
    return elapsed


@pytest.mark.parametrize(
    "runs", [20, pytest.param(200, marks=pytest.mark.slow)], ids=["20-runs", "200-runs"]
)
def test_create_killed_at_random_times(sandbox: Sandbox, runs: int) -> None:
    """SIGKILL `create` after a random delay: 0-300 ms, or up to a whole create if that is longer.

    `timeout --foreground` kills the runtime only, not the idler it spawned. FAULT_SEED
    replays a run.
    """
    seed = int(os.environ.get("FAULT_SEED", str(time.time_ns() % 100_000)))
    print("FAULT_SEED =", seed)
    rng = random.Random(seed)
    window = max(0.3, 1.1 * _timed_create(sandbox))
    before = idler_pids(sandbox)
    seen: dict[str, int] = {}
    for _run in range(runs):
        c = _container(sandbox, ["sleep", "1000"])
        delay = rng.uniform(0.0, window)
        argv = [
            "timeout",
            "--foreground",
            "-s",
            "KILL",
            f"{delay:.3f}",
            *bundles.runtime_argv(),
            "create",
            "--bundle",
            c.bundle,
            c.id,
        ]
        # Output to a file: a created container's idler keeps its stdio open.
        with (c.host_bundle / "output").open("w") as out:
            proc = sandbox.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=60)
        # 137: killed; 124: the timer fired just as create finished by itself (either outcome).
        assert proc.returncode in (0, 124, 137), c.output()
        status = assert_sane(sandbox, c)
        if proc.returncode == 0:
            assert status == "created"
        seen[f"{proc.returncode}:{status}"] = seen.get(f"{proc.returncode}:{status}", 0) + 1
        # A half-created container's idler exits on its own once it sees the runtime gone.
        if status != "created":
            wait_for(lambda: not (idler_pids(sandbox) - before), timeout=10)
        recover(sandbox, c, before)
    print(f"window {window:.3f}s, outcomes (rc:status): {seen}")


# -- 2. systemd faults ------------------------------------------------------------------------


def _wait_bus(sb: Sandbox) -> None:
    wait_for(lambda: sb.system_state() in ("running", "degraded"), timeout=30)


def _snapshot(containers: list[Container]) -> list[tuple[str, str, int]]:
    return [(c.id, c.status(), int(c.state()["pid"])) for c in containers]


@pytest.mark.parametrize("action", ["daemon-reload", "daemon-reexec"])
def test_daemon_reload_and_reexec_change_nothing(sandbox: Sandbox, action: str) -> None:
    before_idlers = idler_pids(sandbox)
    created = _container(sandbox, ["sleep", "1000"])
    running = _container(sandbox, ["sleep", "1000"])
    stopped = _container(sandbox, ["true"])
    for c in (created, running, stopped):
        assert c.create().returncode == 0, c.output()
    assert running.rt("start", running.id).returncode == 0
    assert stopped.rt("start", stopped.id).returncode == 0
    wait_for(lambda: stopped.status() == "stopped")
    all_three = [created, running, stopped]
    snap = _snapshot(all_three)
    assert [s for _i, s, _p in snap] == ["created", "running", "stopped"]
    listed = {c.id: list_status(sandbox, c.id) for c in all_three}

    for _ in range(2):
        sandbox.run(["systemctl", action], check=True, timeout=60)
        _wait_bus(sandbox)
        assert _snapshot(all_three) == snap
        assert {c.id: list_status(sandbox, c.id) for c in all_three} == listed
        assert systemctl_show(sandbox, running.scope, "ActiveState") == "active"

    # kill and delete still work after systemd was replaced under us.
    assert running.rt("kill", running.id, "KILL").returncode == 0
    wait_for(lambda: running.status() == "stopped")
    assert created.rt("kill", created.id, "TERM").returncode == 0
    wait_for(lambda: created.status() == "stopped")
    for c in all_three:
        proc = c.rt("delete", c.id)
        assert proc.returncode == 0, proc.stderr
        assert_no_leak(sandbox, c, before_idlers)


@pytest.mark.parametrize("phase", ["created", "running"])
def test_systemctl_kill_reads_stopped(sandbox: Sandbox, phase: str) -> None:
    before = idler_pids(sandbox)
    c = _container(sandbox, ["sleep", "1000"])
    assert c.create().returncode == 0, c.output()
    if phase == "running":
        assert c.rt("start", c.id).returncode == 0
    assert c.status() == phase
    sandbox.run(["systemctl", "kill", "--signal=KILL", c.scope], check=True)
    wait_for(lambda: c.status() == "stopped")
    assert assert_sane(sandbox, c) == "stopped"
    proc = c.rt("delete", c.id)
    assert proc.returncode == 0, proc.stderr
    assert_no_leak(sandbox, c, before)


# A container whose init ignores SIGTERM and whose scope gives up stopping it after 0.3 s:
# `systemctl stop` ends with a SIGKILL and the scope's result "timeout", i.e. failed.
_STUBBORN = ["sh", "-c", "trap '' TERM; while :; do sleep 0.05; done"]
_FAST_TIMEOUT = {"org.systemd.property.TimeoutStopUSec": "uint64 300000"}
# Keep a failed scope loaded (the runtime's own CollectMode would garbage-collect it).
_KEEP_FAILED = {**_FAST_TIMEOUT, "org.systemd.property.CollectMode": '"inactive"'}


@pytest.mark.parametrize("keep_failed", [False, True], ids=["collected", "kept-failed"])
def test_failed_scope_never_blocks_the_id(sandbox: Sandbox, keep_failed: bool) -> None:
    before = idler_pids(sandbox)
    c = _container(sandbox, _STUBBORN, annotations=_KEEP_FAILED if keep_failed else _FAST_TIMEOUT)
    assert c.create().returncode == 0, c.output()
    assert c.rt("start", c.id).returncode == 0
    assert c.status() == "running"
    sandbox.run(["systemctl", "stop", c.scope], timeout=30)
    if keep_failed:
        assert systemctl_show(sandbox, c.scope, "ActiveState") == "failed"
        assert systemctl_show(sandbox, c.scope, "Result") == "timeout"
    assert assert_sane(sandbox, c) == "stopped"
    proc = c.rt("delete", c.id)
    assert proc.returncode == 0, proc.stderr
    assert_no_leak(sandbox, c, before)
    # Same id again, then a second failure, this time with the state directory lost as well
    # (a crash between systemd's failure and our delete): create must reset the dead unit.
    again = c.create()
    assert again.returncode == 0, c.output()
    assert c.rt("start", c.id).returncode == 0
    sandbox.run(["systemctl", "stop", c.scope], timeout=30)
    sandbox.run(["rm", "-rf", f"{ROOT}/{c.id}"], check=True)
    third = c.create()
    assert third.returncode == 0, c.output()
    assert c.status() == "created"
    assert systemctl_show(sandbox, c.scope, "ActiveState") == "active"
    assert c.rt("delete", "--force", c.id).returncode == 0
    assert_no_leak(sandbox, c, before)


def test_scope_whose_processes_all_died(sandbox: Sandbox) -> None:
    """The init is killed behind systemd's and the runtime's back: stopped, deletable, id reusable."""
    before = idler_pids(sandbox)
    c = _container(sandbox, ["sleep", "1000"])
    assert c.create().returncode == 0, c.output()
    assert c.rt("start", c.id).returncode == 0
    pid = int(c.state()["pid"])
    sandbox.run(["kill", "-KILL", str(pid)], check=True)
    wait_for(lambda: c.status() == "stopped")
    wait_for(lambda: systemctl_show(sandbox, c.scope, "ActiveState") in ("inactive", "failed", ""))
    assert c.rt("delete", c.id).returncode == 0
    assert_no_leak(sandbox, c, before)
    assert c.create().returncode == 0, c.output()
    assert c.status() == "created"
    assert c.rt("delete", "--force", c.id).returncode == 0
    assert_no_leak(sandbox, c, before)
