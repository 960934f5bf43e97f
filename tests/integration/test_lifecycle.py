# SPDX-License-Identifier: Apache-2.0
"""The create/start split on systemd, end to end in the private systemd (issue: lifecycle)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import bundles
import pytest

from oci_systemd.devtools.sandbox import Sandbox

ROOT = "/run/oci-systemd"


class Container:
    """One container's bundle and id, with shortcuts to drive the runtime on it."""

    def __init__(self, sandbox: Sandbox, config: dict[str, Any]) -> None:
        self.sb = sandbox
        self.id = bundles.new_container_id()
        self.host_bundle = bundles.make_bundle(
            sandbox.host_path(f"{bundles.INNER_WORKDIR}/bundles/{self.id}"),
            config,
            rootfs=bundles.ensure_rootfs(sandbox),
        )
        self.bundle = sandbox.inner_path(self.host_bundle)
        self.scope = f"oci-systemd-{self.id}.scope"
        bundles.PENDING.append((sandbox, self.id))

    def rt(self, *args: str, **kw: Any) -> Any:
        return bundles.run_runtime(self.sb, list(args), **kw)

    def create(self, *extra: str) -> Any:
        """create with stdout/stderr to a file in the bundle (the idler inherits them)."""
        out = (self.host_bundle / "output").open("w")
        try:
            return self.rt(
                "create",
                "--bundle",
                self.bundle,
                "--pid-file",
                f"{self.bundle}/pid",
                *extra,
                self.id,
                stdout=out,
                stderr=out,
                capture_output=False,
            )
        finally:
            out.close()

    def output(self) -> str:
        return (self.host_bundle / "output").read_text()

    def state(self) -> dict[str, Any]:
        proc = self.rt("state", self.id)
        assert proc.returncode == 0, proc.stderr
        result: dict[str, Any] = json.loads(proc.stdout)
        return result

    def status(self) -> str:
        return str(self.state()["status"])

    def touch(self, inner: str) -> None:
        (self.host_bundle / "rootfs" / inner.lstrip("/")).touch()


def start_sleeping(sandbox: Sandbox) -> Container:
    """A created and started container running `sleep 1000` (delete it with --force)."""
    conf = bundles.base_config()
    conf["process"]["args"] = ["sleep", "1000"]
    c = Container(sandbox, conf)
    assert c.create().returncode == 0, c.output()
    assert c.rt("start", c.id).returncode == 0
    return c


def systemctl_show(sb: Sandbox, unit: str, prop: str) -> str:
    out: subprocess.CompletedProcess[str] = sb.run(
        ["systemctl", "show", unit, "-p", prop, "--value"], capture_output=True, text=True
    )
    return out.stdout.strip()


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def no_trace_left(sb: Sandbox, c: Container) -> None:
    assert systemctl_show(sb, c.scope, "LoadState") in ("not-found", "")
    assert not sb.host_path(f"{ROOT}/{c.id}").exists()
    ps = sb.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert c.id not in ps


def waiting_program(marker: str = "/tmp/go") -> list[str]:
    return ["sh", "-c", f"echo hello-from-container; while [ ! -e {marker} ]; do sleep 0.05; done; echo bye"]


@pytest.fixture
def make(sandbox: Sandbox) -> Callable[..., Container]:
    def factory(args: list[str] | None = None, **overrides: Any) -> Container:
        conf = bundles.merge(bundles.base_config(), overrides)
        if args is not None:
            conf["process"]["args"] = args
        return Container(sandbox, conf)

    return factory


def test_full_lifecycle(sandbox: Sandbox, make: Callable[..., Container]) -> None:
    c = make(waiting_program())
    assert c.create().returncode == 0, c.output()
    st = c.state()
    assert st["status"] == "created"
    assert st["pid"] > 0
    assert st["bundle"] == c.bundle
    datetime.fromisoformat(st["created"].replace("Z", "+00:00"))
    assert (c.host_bundle / "pid").read_text() == str(st["pid"])
    assert systemctl_show(sandbox, c.scope, "Delegate") == "yes"
    assert systemctl_show(sandbox, c.scope, "ActiveState") == "active"
    cgroup = systemctl_show(sandbox, c.scope, "ControlGroup")
    # Read from inside: cgroup.procs lists pids as the reader's pid namespace sees them.
    procs = sandbox.run(
        ["cat", f"/sys/fs/cgroup{cgroup}/container/cgroup.procs"], capture_output=True, text=True
    ).stdout.split()
    assert str(st["pid"]) in procs, "the idler is not in its scope's leaf cgroup"
    # Not yet started: nothing of the program ran.
    assert "hello-from-container" not in c.output()

    assert c.rt("start", c.id).returncode == 0
    assert c.status() == "running"
    wait_for(lambda: "hello-from-container" in c.output())
    ps = c.rt("ps", "--format", "json", c.id)
    assert st["pid"] in json.loads(ps.stdout)

    c.touch("/tmp/go")
    wait_for(lambda: c.status() == "stopped")
    assert c.state()["pid"] == 0
    assert "bye" in c.output()
    assert c.rt("delete", c.id).returncode == 0
    no_trace_left(sandbox, c)


def test_container_of_an_older_runtime_still_starts(
    sandbox: Sandbox, make: Callable[..., Container]
) -> None:
    """An idler created by a runtime up to 0.1.0 waits on `notify.sock`: after an upgrade the
    container still reads created and starts (the socket renamed under the waiting idler is
    what such an idler has bound)."""
    if "runc" in os.environ.get("OCI_RUNTIME", "") or "crun" in os.environ.get("OCI_RUNTIME", ""):
        pytest.skip("oci-systemd's own state directory")
    c = make(waiting_program())
    assert c.create().returncode == 0, c.output()
    state_dir = sandbox.host_path(f"{ROOT}/{c.id}")
    (state_dir / "start.sock").rename(state_dir / "notify.sock")
    assert c.status() == "created"
    assert c.rt("start", c.id).returncode == 0
    wait_for(lambda: "hello-from-container" in c.output())
    assert not (state_dir / "notify.sock").exists()
    assert c.status() == "running"
    c.touch("/tmp/go")
    wait_for(lambda: c.status() == "stopped")
    assert c.rt("delete", c.id).returncode == 0
    no_trace_left(sandbox, c)


def test_create_kill_delete_without_start(sandbox: Sandbox, make: Callable[..., Container]) -> None:
    c = make(["true"])
    assert c.create().returncode == 0, c.output()
    assert c.status() == "created"
    kill = c.rt("kill", c.id, "KILL")
    assert kill.returncode == 0, kill.stderr
    wait_for(lambda: c.status() == "stopped")
    assert c.rt("delete", c.id).returncode == 0
    no_trace_left(sandbox, c)


def test_kill_term_reaches_a_waiting_idler(sandbox: Sandbox, make: Callable[..., Container]) -> None:
    c = make(["true"])
    assert c.create().returncode == 0, c.output()
    assert c.rt("kill", c.id).returncode == 0  # default TERM
    wait_for(lambda: c.status() == "stopped")
    assert c.rt("delete", c.id).returncode == 0


def test_systemctl_stop_from_outside(sandbox: Sandbox, make: Callable[..., Container]) -> None:
    c = make(["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"])
    assert c.create().returncode == 0, c.output()
    assert c.rt("start", c.id).returncode == 0
    assert c.status() == "running"
    sandbox.run(["systemctl", "stop", c.scope], check=True)
    assert c.status() == "stopped"
    kill = c.rt("kill", c.id, "TERM")
    assert kill.returncode == 1 and "container not running" in kill.stderr
    assert c.rt("delete", c.id).returncode == 0
    no_trace_left(sandbox, c)


def test_stop_timeout_defaults_to_ten_seconds(sandbox: Sandbox, make: Callable[..., Container]) -> None:
    c = make(["sleep", "1000"])
    assert c.create().returncode == 0, c.output()
    assert systemctl_show(sandbox, c.scope, "TimeoutStopUSec") == "10s"
    d = make(["sleep", "1000"], annotations={"org.systemd.property.TimeoutStopUSec": "uint64 3000000"})
    assert d.create().returncode == 0, d.output()
    assert systemctl_show(sandbox, d.scope, "TimeoutStopUSec") == "3s"


def test_missing_binary_fails_create(sandbox: Sandbox, make: Callable[..., Container]) -> None:
    """As runc: a program that isn't there fails create, with the wording engines classify."""
    c = make(["/no/such/program"])
    assert c.create().returncode == 1
    assert 'exec: "/no/such/program": no such file or directory' in c.output()
    no_trace_left(sandbox, c)


def test_program_not_in_path(sandbox: Sandbox, make: Callable[..., Container]) -> None:
    c = make(["no-such-program"])
    assert c.create().returncode == 1
    assert 'exec: "no-such-program": executable file not found in $PATH' in c.output()
    no_trace_left(sandbox, c)


def test_program_vanishing_before_start_fails_start(
    sandbox: Sandbox, make: Callable[..., Container]
) -> None:
    c = make(["/bin/vanishing"])
    (c.host_bundle / "rootfs" / "bin" / "vanishing").symlink_to("busybox")
    assert c.create().returncode == 0, c.output()
    (c.host_bundle / "rootfs" / "bin" / "vanishing").unlink()
    start = c.rt("start", c.id)
    assert start.returncode == 127
    assert 'exec: "/bin/vanishing": no such file or directory' in start.stderr
    wait_for(lambda: c.status() == "stopped")
    assert c.rt("delete", c.id).returncode == 0
    no_trace_left(sandbox, c)


def test_failing_create_runtime_hook_leaves_nothing(
    sandbox: Sandbox, make: Callable[..., Container]
) -> None:
    c = make(
        ["true"],
        hooks={"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "echo nope >&2; exit 3"]}]},
    )
    proc = c.create()
    assert proc.returncode == 1
    assert "createRuntime" in c.output() and "exit status 3" in c.output()
    no_trace_left(sandbox, c)


def test_hooks_see_state_on_stdin(sandbox: Sandbox, make: Callable[..., Container]) -> None:
    log = f"{bundles.INNER_WORKDIR}/hooklog-{time.monotonic_ns()}"
    hook = {"path": "/bin/sh", "args": ["sh", "-c", f"cat >> {log}; echo >> {log}"]}
    c = make(["true"], hooks={"createRuntime": [hook], "poststart": [hook], "poststop": [hook]})
    assert c.create().returncode == 0, c.output()
    assert c.rt("start", c.id).returncode == 0
    wait_for(lambda: c.status() == "stopped")
    assert c.rt("delete", c.id).returncode == 0
    lines = [json.loads(line) for line in sandbox.host_path(log).read_text().splitlines() if line.strip()]
    assert [s["status"] for s in lines] == ["creating", "running", "stopped"]
    assert all(s["id"] == c.id and s["bundle"] == c.bundle for s in lines)


def test_state_errors_and_json_log(sandbox: Sandbox) -> None:
    log = f"{bundles.INNER_WORKDIR}/log-{time.monotonic_ns()}.json"
    proc = bundles.run_runtime(sandbox, ["--log", log, "--log-format", "json", "state", "nope"])
    assert proc.returncode == 1
    assert "container does not exist" in proc.stderr
    lines = sandbox.host_path(log).read_text().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["level"] == "error" and "container does not exist" in entry["msg"]
    datetime.fromisoformat(entry["time"].replace("Z", "+00:00"))


def test_delete_of_a_created_container_needs_no_force(
    sandbox: Sandbox, make: Callable[..., Container]
) -> None:
    """runc deletes a created container without --force (its init never ran the program):
    delete.go's `case libcontainer.Created: return killContainer(container)`."""
    c = make(["sleep", "1000"])
    assert c.create().returncode == 0
    gone = c.rt("delete", c.id)
    assert gone.returncode == 0, gone.stderr
    no_trace_left(sandbox, c)


def test_runc_wording_for_wrong_states(sandbox: Sandbox, make: Callable[..., Container]) -> None:
    c = make(["sleep", "1000"])
    assert c.create().returncode == 0
    dup = c.rt("create", "--bundle", c.bundle, c.id)
    assert dup.returncode == 1 and "exists" in dup.stderr
    assert c.rt("start", c.id).returncode == 0
    again = c.rt("start", c.id)
    assert again.returncode == 1 and "cannot start an already running container" in again.stderr
    busy = c.rt("delete", c.id)
    assert busy.returncode == 1 and "is not stopped" in busy.stderr
    assert c.rt("delete", "--force", c.id).returncode == 0
    no_trace_left(sandbox, c)
    assert c.rt("delete", "--force", c.id).returncode == 0  # runc: exit 0 for an unknown id
    missing = c.rt("delete", c.id)
    assert missing.returncode == 1 and "container does not exist" in missing.stderr
    assert c.rt("kill", c.id).returncode == 1


def test_run_returns_exit_status(sandbox: Sandbox) -> None:
    with pytest.raises(bundles.RuntimeFailedError) as info:
        bundles.run_and_get_output(sandbox, bundles.base_config(), ["sh", "-c", "echo out; exit 3"])
    assert info.value.returncode == 3
    assert "out" in info.value.output
    out, _cid = bundles.run_and_get_output(sandbox, bundles.base_config(), ["echo", "plain-output"])
    assert "plain-output" in out


def test_bad_config_leaves_nothing(sandbox: Sandbox, make: Callable[..., Container]) -> None:
    c = make(["true"])
    conf = json.loads((c.host_bundle / "config.json").read_text())
    conf["linux"]["namespaces"].append({"type": "bogus"})
    (c.host_bundle / "config.json").write_text(json.dumps(conf))
    proc = c.create()
    assert proc.returncode == 1
    assert "linux.namespaces" in c.output()
    no_trace_left(sandbox, c)


def test_twenty_in_parallel(sandbox: Sandbox, make: Callable[..., Container]) -> None:
    containers = [make(["sleep", "1000"]) for _ in range(20)]

    def up(c: Container) -> int:
        rc: int = c.create().returncode
        return rc or int(c.rt("start", c.id).returncode)

    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(up, containers)) == [0] * 20
    listed = {
        s["id"]: s for s in json.loads(bundles.run_runtime(sandbox, ["list", "--format", "json"]).stdout)
    }
    for c in containers:
        assert listed[c.id]["status"] == "running"

    def down(c: Container) -> int:
        return int(c.rt("delete", "--force", c.id).returncode)

    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(down, containers)) == [0] * 20
    units = sandbox.run(
        ["systemctl", "list-units", "--all", "--no-legend", "oci-systemd-*"], capture_output=True, text=True
    ).stdout
    assert not any(c.id in units for c in containers)


def test_scope_round_trip_over_dbus_from_python(sandbox: Sandbox) -> None:
    """The foundation check: a Delegate=yes scope from Python, read back, killed with KillUnit."""
    script = (
        "import subprocess, time\n"
        "from oci_systemd.runtime.systemd import connect\n"
        "p = subprocess.Popen(['sleep', '1000'])\n"
        "with connect() as sd:\n"
        "    props = [('Delegate', 'b', True), ('PIDs', 'au', [p.pid])]\n"
        "    sd.start_transient_scope('pytest-roundtrip.scope', props)\n"
        "    print(sd.active_state('pytest-roundtrip.scope'))\n"
        "    iface = 'org.freedesktop.systemd1.Scope'\n"
        "    print(sd.unit_properties('pytest-roundtrip.scope', iface, ['Delegate']))\n"
        "    sd.kill_unit('pytest-roundtrip.scope', 9)\n"
        "    p.wait()\n"
        "    for _ in range(100):\n"
        "        if sd.active_state('pytest-roundtrip.scope') is None: break\n"
        "        time.sleep(0.02)\n"
        "    print(sd.active_state('pytest-roundtrip.scope'), p.returncode)\n"
    )
    import sys

    out = sandbox.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "active"
    assert "'Delegate': True" in lines[1]
    assert lines[2] == "None -9"


def test_unknown_exec_paths_are_reported(sandbox: Sandbox) -> None:
    root = Path(sandbox.host_path(ROOT))
    before = set(root.iterdir()) if root.exists() else set()
    proc = bundles.run_runtime(sandbox, ["create", "--bundle", "/nonexistent", "x-missing-bundle"])
    assert proc.returncode == 1
    assert "no such file or directory" in proc.stderr.lower()
    after = set(root.iterdir()) if root.exists() else set()
    assert before == after
