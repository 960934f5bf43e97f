# SPDX-License-Identifier: Apache-2.0
"""containerd (Debian's, io.containerd.runc.v2 shim) with oci-systemd as its runc binary (issue 6).

containerd runs as a transient service of the private systemd with a private config
(engines.CONTAINERD_CONFIG, shown in docs/containerd.md); `ctr run --runc-binary` sets the shim's
BinaryName option, `--runc-systemd-cgroup` its SystemdCgroup option. The busybox image comes from
`podman save --format oci-archive` + `ctr image import`: no registry.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator

import engines
import pytest
from engines import CONTAINERD_RUNTIME_ROOT, IMAGE, Containerd, Podman, text

from oci_systemd.devtools.sandbox import Sandbox

STUBBORN = 'trap "" TERM; echo started; while :; do sleep 0.1; done'
POLITE = 'trap "echo got-term; exit 7" TERM; echo started; while :; do sleep 0.1; done'


@pytest.fixture(scope="module")
def containerd(sandbox: Sandbox) -> Iterator[Containerd]:
    engines.require_binaries("containerd", "ctr", "containerd-shim-runc-v2", "podman")
    host_had = {p: os.path.exists(p) for p in ("/var/lib/containerd", "/run/containerd", "/opt/containerd")}
    c = Containerd(sandbox, unit=f"engines-containerd-{secrets.token_hex(3)}")
    c.start()
    try:
        podman = Podman(sandbox)
        podman.import_busybox()
        c.import_busybox(podman)
        yield c
    finally:
        for line in c.ctr("task", "ls", "--quiet").stdout.split():
            c.ctr("task", "kill", "--all", "--signal", "SIGKILL", line)
            c.ctr("task", "delete", "--force", line)
        for line in c.ctr("container", "ls", "--quiet").stdout.split():
            c.ctr("container", "rm", line)
        c.stop()
        assert not engines.processes_mentioning(sandbox, "containerd-shim"), "a shim outlived containerd"
        assert {p: os.path.exists(p) for p in host_had} == host_had, "containerd wrote to the host"


@pytest.fixture(autouse=True)
def _no_leftovers(sandbox: Sandbox) -> Iterator[None]:
    with engines.no_new_scopes(sandbox):
        yield


def _new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def _no_trace(sandbox: Sandbox, containerd: Containerd, cid: str) -> None:
    engines.assert_no_leftovers(sandbox, cid, runtime_roots=[CONTAINERD_RUNTIME_ROOT])
    assert cid not in containerd.ctr("container", "ls", "--quiet").stdout.split()
    bundle_dir = f"{containerd.dir}/state/io.containerd.runtime.v2.task/default/{cid}"
    assert not sandbox.host_path(bundle_dir).exists(), "the shim's bundle was left behind"


def _task_status(containerd: Containerd, cid: str) -> str:
    for line in containerd.ctr("task", "ls").stdout.splitlines()[1:]:
        fields = line.split()
        if fields and fields[0] == cid:
            return fields[2]
    return ""


def _task_pid(containerd: Containerd, cid: str) -> int:
    for line in containerd.ctr("task", "ls").stdout.splitlines()[1:]:
        fields = line.split()
        if fields and fields[0] == cid:
            return int(fields[1])
    raise AssertionError(f"task {cid} not listed")


@pytest.mark.parametrize("systemd_cgroup", [True, False], ids=["systemd-cgroup", "cgroupfs-path"])
def test_ctr_run_rm_prints_output(sandbox: Sandbox, containerd: Containerd, systemd_cgroup: bool) -> None:
    cid = _new_id("run")
    flags = containerd.run_flags(cid, systemd_cgroup=systemd_cgroup)
    proc = containerd.ctr("run", "--rm", *flags, IMAGE, cid, "sh", "-c", "echo hello-ctr; exit 3")
    assert proc.returncode == 3, text(proc)
    assert proc.stdout == "hello-ctr\n"

    calls = engines.calls_for(containerd.calls(), cid)
    create = [argv for argv in calls if engines.subcommand(argv) == "create"]
    assert len(create) == 1, engines.format_calls(calls)
    # go-runc's global options, then runc's create.
    argv = create[0]
    assert argv[:2] == ["--root", CONTAINERD_RUNTIME_ROOT], engines.format_calls(calls)
    assert "--log" in argv and argv[argv.index("--log-format") + 1] == "json"
    assert ("--systemd-cgroup" in argv) == systemd_cgroup
    assert "--bundle" in argv and "--pid-file" in argv
    assert [engines.subcommand(a) for a in calls][:2] == ["create", "start"]
    _no_trace(sandbox, containerd, cid)


def test_task_exec_ps_kill_delete(sandbox: Sandbox, containerd: Containerd) -> None:
    cid = _new_id("task")
    run = containerd.ctr("run", "-d", *containerd.run_flags(cid), IMAGE, cid, "sh", "-c", POLITE)
    assert run.returncode == 0, text(run)
    assert _task_status(containerd, cid) == "RUNNING"
    scope = f"containerd-{cid}.scope"
    assert engines.unit_property(sandbox, scope, "ActiveState") == "active"
    assert engines.unit_property(sandbox, scope, "Slice") == "system.slice"
    init = _task_pid(containerd, cid)

    exec_ = containerd.ctr("task", "exec", "--exec-id", "e1", cid, "sh", "-c", "echo in-exec; exit 5")
    assert exec_.returncode == 5, text(exec_)
    assert exec_.stdout == "in-exec\n"

    missing = containerd.ctr("task", "exec", "--exec-id", "e2", cid, "no-such-program")
    assert missing.returncode != 0, text(missing)
    assert 'exec: "no-such-program": executable file not found in $PATH' in missing.stderr

    ps = containerd.ctr("task", "ps", cid)
    assert ps.returncode == 0, text(ps)
    assert str(init) in ps.stdout.split(), ps.stdout

    kill = containerd.ctr("task", "kill", cid)  # SIGTERM
    assert kill.returncode == 0, text(kill)
    engines.wait_for(lambda: _task_status(containerd, cid) == "STOPPED", what="task stopped after SIGTERM")

    delete = containerd.ctr("task", "delete", cid)
    assert delete.returncode == 0, text(delete)
    assert "exit code 7" in delete.stderr or delete.stderr == "", text(delete)
    assert containerd.ctr("container", "rm", cid).returncode == 0
    _no_trace(sandbox, containerd, cid)

    calls = engines.calls_for(containerd.calls(), cid)
    subcommands = [engines.subcommand(argv) for argv in calls]
    wanted = {"create", "start", "exec", "ps", "kill", "delete"}
    assert wanted <= set(subcommands), engines.format_calls(calls)
    assert next(a for a in calls if engines.subcommand(a) == "kill")[-3:] == ["kill", cid, "15"]


def test_task_kill_all_sigkill_and_pause(sandbox: Sandbox, containerd: Containerd) -> None:
    cid = _new_id("killall")
    run = containerd.ctr("run", "-d", *containerd.run_flags(cid), IMAGE, cid, "sh", "-c", STUBBORN)
    assert run.returncode == 0, text(run)

    pause = containerd.ctr("task", "pause", cid)
    assert pause.returncode == 0, text(pause)
    assert _task_status(containerd, cid) == "PAUSED"
    resume = containerd.ctr("task", "resume", cid)
    assert resume.returncode == 0, text(resume)
    assert _task_status(containerd, cid) == "RUNNING"

    # SIGTERM is ignored; a SIGKILL to every process of the container ends it.
    assert containerd.ctr("task", "kill", cid).returncode == 0
    time.sleep(0.3)
    assert _task_status(containerd, cid) == "RUNNING"
    kill = containerd.ctr("task", "kill", "--all", "--signal", "SIGKILL", cid)
    assert kill.returncode == 0, text(kill)
    engines.wait_for(lambda: _task_status(containerd, cid) == "STOPPED", what="task stopped after SIGKILL")
    delete = containerd.ctr("task", "delete", cid)
    assert delete.returncode == 0, text(delete)
    assert "137" in delete.stderr, text(delete)
    assert containerd.ctr("container", "rm", cid).returncode == 0
    _no_trace(sandbox, containerd, cid)
    kills = [a for a in engines.calls_for(containerd.calls(), cid) if engines.subcommand(a) == "kill"]
    assert any("--all" in a and a[-1] == "9" for a in kills), engines.format_calls(kills)


def test_ctr_run_missing_program(sandbox: Sandbox, containerd: Containerd) -> None:
    cid = _new_id("missing")
    proc = containerd.ctr("run", "--rm", *containerd.run_flags(cid), IMAGE, cid, "no-such-program")
    assert proc.returncode != 0, text(proc)
    assert 'exec: "no-such-program": executable file not found in $PATH' in proc.stderr, text(proc)
    containerd.ctr("container", "rm", cid)
    _no_trace(sandbox, containerd, cid)


def test_ctr_run_missing_program_fails_at_create_like_runc(sandbox: Sandbox, containerd: Containerd) -> None:
    cid = _new_id("missing")
    try:
        proc = containerd.ctr("run", "--rm", *containerd.run_flags(cid), IMAGE, cid, "no-such-program")
        assert "OCI runtime create failed" in proc.stderr, text(proc)
    finally:
        containerd.ctr("container", "rm", cid)
