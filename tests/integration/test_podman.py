# SPDX-License-Identifier: Apache-2.0
"""podman (Debian's, with conmon) driving oci-systemd inside the private systemd (issue 6).

podman runs with a private containers.conf (engines.CONTAINERS_CONF, shown in docs/podman.md):
cgroup_manager systemd, vfs storage under the sandbox's /tmp, `--network none`, and the runtime
reached through a wrapper that records every command line podman and conmon send.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import engines
import pytest
from engines import IMAGE, Podman, text

from oci_systemd.devtools.sandbox import Sandbox

RUNTIME_ROOT = "/run/oci-systemd"  # podman passes no --root: the runtime's default
# A program that ignores SIGTERM, so `stop` must use its timeout and then SIGKILL.
STUBBORN = 'trap "" TERM; echo started; while :; do sleep 0.1; done'


def _host_traces() -> dict[str, object]:
    """What podman could write on the host if the isolation failed."""
    cni = Path("/etc/cni/net.d")
    return {
        "/var/lib/containers": os.path.exists("/var/lib/containers/cache"),
        "/etc/cni/net.d": sorted(os.listdir(cni)) if cni.is_dir() else None,
    }


@pytest.fixture(scope="module")
def podman(sandbox: Sandbox) -> Iterator[Podman]:
    engines.require_binaries("podman", "conmon")
    before = _host_traces()
    p = Podman(sandbox)
    p.import_busybox()
    try:
        yield p
    finally:
        # Whatever a failing test left: containers (their scopes with them) and images.
        p("rm", "--all", "--force", "--time", "0")
        assert _host_traces() == before, "podman wrote to the host's /var/lib/containers or /etc/cni"


@pytest.fixture(autouse=True)
def _no_leftovers(sandbox: Sandbox) -> Iterator[None]:
    with engines.no_new_scopes(sandbox):
        yield


def _container_id(podman: Podman, name: str) -> str:
    proc = podman("inspect", "--format", "{{.Id}}", name)
    assert proc.returncode == 0, text(proc)
    return proc.stdout.strip()


def _no_trace(sandbox: Sandbox, cid: str) -> None:
    engines.assert_no_leftovers(sandbox, cid, runtime_roots=[RUNTIME_ROOT])


def test_run_rm_prints_output_and_returns_exit_status(sandbox: Sandbox, podman: Podman) -> None:
    proc = podman("run", "--rm", "--name", "rm-status", IMAGE, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert proc.returncode == 3, text(proc)
    assert proc.stdout == "out\n"
    assert "err" in proc.stderr

    hello = podman("run", "--rm", IMAGE, "echo", "hello from podman")
    assert hello.returncode == 0, text(hello)
    assert hello.stdout == "hello from podman\n"

    # What conmon and podman sent: runc's command line with the JSON log and systemd cgroups.
    calls = podman.calls()
    creates = [argv for argv in calls if engines.subcommand(argv) == "create"]
    assert creates, engines.format_calls(calls)
    for argv in creates:
        assert "--systemd-cgroup" in argv
        assert "--log-format=json" in argv and "--log" in argv
        assert "--bundle" in argv and "--pid-file" in argv
    assert {engines.subcommand(argv) for argv in calls} >= {"create", "start", "delete"}
    for cid in {argv[-1] for argv in creates}:
        _no_trace(sandbox, cid)


def test_detached_ps_exec_logs_stop_rm(sandbox: Sandbox, podman: Podman) -> None:
    name = "detached"
    run = podman("run", "-d", "--name", name, IMAGE, "sh", "-c", STUBBORN)
    assert run.returncode == 0, text(run)
    cid = run.stdout.strip()
    assert cid == _container_id(podman, name)

    # podman's systemd cgroup manager: cgroupsPath machine.slice:libpod:<id> -> libpod-<id>.scope.
    scope = f"libpod-{cid}.scope"
    assert engines.unit_property(sandbox, scope, "ActiveState") == "active"
    assert engines.unit_property(sandbox, scope, "Slice") == "machine.slice"
    assert engines.unit_property(sandbox, scope, "Delegate") == "yes"

    ps = podman("ps", "--format", "{{.ID}} {{.Status}}")
    assert ps.returncode == 0, text(ps)
    assert any(line.startswith(cid[:12]) and "Up" in line for line in ps.stdout.splitlines()), ps.stdout

    engines.wait_for(lambda: "started" in podman("logs", name).stdout, what="container output in logs")

    exec_plain = podman("exec", name, "sh", "-c", "echo in-exec; echo exec-err >&2; exit 4")
    assert exec_plain.returncode == 4, text(exec_plain)
    assert exec_plain.stdout == "in-exec\n"
    assert "exec-err" in exec_plain.stderr

    exec_tty = podman("exec", "-t", name, "sh", "-c", "tty; echo tty-exec")
    assert exec_tty.returncode == 0, text(exec_tty)
    assert "/dev/pts/" in exec_tty.stdout and "tty-exec" in exec_tty.stdout

    missing = podman("exec", name, "no-such-program")
    assert missing.returncode == 127, text(missing)
    assert "executable file not found" in missing.stderr

    start = time.monotonic()
    stop = podman("stop", "-t", "2", name)
    elapsed = time.monotonic() - start
    assert stop.returncode == 0, text(stop)
    assert elapsed >= 2, f"stop returned after {elapsed:.1f}s: SIGTERM was not ignored?"
    assert "resorting to SIGKILL" in stop.stderr
    state = podman("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name)
    assert state.stdout.split() == ["exited", "137"], text(state)
    # After stop, the scope is gone already (podman's cleanup deleted the runtime's container).
    engines.wait_for(
        lambda: not [u for u in engines.leftover_scopes(sandbox) if cid in u], what="scopes gone after stop"
    )

    logs = podman("logs", name)
    assert "started" in logs.stdout, text(logs)

    rm = podman("rm", name)
    assert rm.returncode == 0, text(rm)
    assert podman("ps", "-a", "--format", "{{.ID}}").stdout.split() == []
    _no_trace(sandbox, cid)

    calls = engines.calls_for(podman.calls(), cid)
    execs = [argv for argv in calls if engines.subcommand(argv) == "exec"]
    assert any("--tty" in argv and "--console-socket" in argv for argv in execs), engines.format_calls(calls)
    assert all("--process" in argv and "--detach" in argv for argv in execs)
    kills = [argv[-1] for argv in calls if engines.subcommand(argv) == "kill"]
    assert kills[:2] == ["15", "9"], engines.format_calls(calls)


def test_pause_unpause_and_update(sandbox: Sandbox, podman: Podman) -> None:
    name = "paused"
    run = podman("run", "-d", "--name", name, IMAGE, "sleep", "1000")
    assert run.returncode == 0, text(run)
    cid = run.stdout.strip()
    scope = f"libpod-{cid}.scope"

    pause = podman("pause", name)
    assert pause.returncode == 0, text(pause)
    status = podman("inspect", "--format", "{{.State.Status}}", name)
    assert status.stdout.strip() == "paused", text(status)
    assert engines.unit_property(sandbox, scope, "FreezerState") == "frozen"
    unpause = podman("unpause", name)
    assert unpause.returncode == 0, text(unpause)
    assert podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip() == "running"

    update = podman("update", "--memory", "64m", name)
    assert update.returncode == 0, text(update)
    assert engines.unit_property(sandbox, scope, "MemoryMax") == str(64 * 1024 * 1024)

    rm = podman("rm", "--force", "--time", "0", name)
    assert rm.returncode == 0, text(rm)
    _no_trace(sandbox, cid)
    subcommands = [engines.subcommand(argv) for argv in engines.calls_for(podman.calls(), cid)]
    assert {"pause", "resume", "update"} <= set(subcommands)


@pytest.mark.parametrize("program", ["no-such-program", "/no/such/program"])
def test_run_missing_program_is_not_found_127(sandbox: Sandbox, podman: Podman, program: str) -> None:
    proc = podman("run", "--rm", IMAGE, program)
    assert proc.returncode == 127, text(proc)
    # podman's "not found" class: ErrOCIRuntimeNotFound.
    assert "OCI runtime attempted to invoke a command that was not found" in proc.stderr, text(proc)


@pytest.mark.parametrize(
    ("options", "script"),
    [
        # /etc of the image holds passwd: copied up, it is still there on the writable tmpfs.
        (["--tmpfs", "/etc"], "grep -q ^root: /etc/passwd && touch /etc/new"),
        # --read-only: tmpfs (with tmpcopyup) on /tmp, /var/tmp and /run; the rest stays read-only.
        (["--read-only"], "touch /tmp/new /var/tmp/new /run/new && ! touch /etc/new 2>/dev/null"),
    ],
    ids=["tmpfs", "read-only"],
)
def test_podman_tmpfs_mounts_copy_up(
    sandbox: Sandbox, podman: Podman, options: list[str], script: str
) -> None:
    proc = podman("run", "--rm", *options, IMAGE, "sh", "-c", f"{script} && echo copied-up")
    assert proc.returncode == 0, text(proc)
    assert proc.stdout == "copied-up\n"


def test_run_missing_program_fails_and_leaves_nothing(sandbox: Sandbox, podman: Podman) -> None:
    """The part of the missing-program case that holds today: a failure, and no trace."""
    before = engines.state_entries(sandbox, RUNTIME_ROOT)
    proc = podman("run", "--rm", "--name", "missing", IMAGE, "no-such-program")
    assert proc.returncode in (126, 127), text(proc)
    assert 'exec: "no-such-program": executable file not found in $PATH' in proc.stderr
    assert podman("ps", "-a", "--format", "{{.Names}}").stdout.split() == []
    assert engines.state_entries(sandbox, RUNTIME_ROOT) == before
