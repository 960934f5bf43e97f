# SPDX-License-Identifier: Apache-2.0
"""Every verb on a container whose init has exited and whose scope systemd has already collected.

containerd's CRI sends `kill --all <id> 9` while it cleans up an exited task; runc answers 0 for a
stopped container whose cgroup is gone, and a failure there makes containerd retry forever
(issue 16). Each expectation below is runc's answer (`OCI_RUNTIME=runc` runs the same file).
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import bundles
import pytest
from engines import wait_for

from oci_systemd.devtools.sandbox import Sandbox


def _exited_container(sb: Sandbox) -> str:
    """A container that ran `true` to its end; for oci-systemd, its scope is collected too."""
    conf = bundles.base_config()
    conf["process"]["args"] = ["true"]
    cid = bundles.new_container_id()
    bundle = bundles.make_bundle(
        sb.host_path(f"{bundles.INNER_WORKDIR}/bundles/{cid}"), conf, rootfs=bundles.ensure_rootfs(sb)
    )
    bundles.PENDING.append((sb, cid))
    inner = sb.inner_path(bundle)
    # The init inherits create's stdio: no pipe, or create's caller would wait for its end.
    created = bundles.run_runtime(
        sb,
        ["create", "--bundle", inner, cid],
        capture_output=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert created.returncode == 0
    assert bundles.run_runtime(sb, ["start", cid]).returncode == 0

    def status() -> str:
        proc = bundles.run_runtime(sb, ["state", cid])
        return str(json.loads(proc.stdout)["status"]) if proc.returncode == 0 else proc.stderr

    wait_for(lambda: status() == "stopped", timeout=10, what="the container stopped")
    if not os.environ.get("OCI_RUNTIME"):
        scope = f"oci-systemd-{cid}.scope"

        def load_state() -> str:
            out: subprocess.CompletedProcess[bytes] = sb.run(
                ["systemctl", "show", scope, "-p", "LoadState", "--value"], capture_output=True
            )
            return out.stdout.decode().strip()

        wait_for(lambda: load_state() == "not-found", timeout=10, what="systemd collected the scope")
    return cid


def _run(sb: Sandbox, *args: str) -> Any:
    return bundles.run_runtime(sb, list(args))


def test_kill_all_of_an_exited_container_whose_scope_is_gone_succeeds(sandbox: Sandbox) -> None:
    cid = _exited_container(sandbox)
    proc = _run(sandbox, "kill", "--all", cid, "9")
    assert proc.returncode == 0, proc.stderr
    proc = _run(sandbox, "kill", "--all", cid, "TERM")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(_run(sandbox, "state", cid).stdout)["status"] == "stopped"
    proc = _run(sandbox, "delete", cid)
    assert proc.returncode == 0, proc.stderr
    assert _run(sandbox, "state", cid).returncode != 0


@pytest.mark.parametrize(
    "verb",
    [
        ["kill", "{id}", "9"],
        ["pause", "{id}"],
        ["resume", "{id}"],
        ["update", "--resources", "{resources}", "{id}"],
        ["events", "--stats", "{id}"],
    ],
    ids=["kill", "pause", "resume", "update", "events"],
)
def test_verbs_that_need_a_live_container_say_not_running(sandbox: Sandbox, verb: list[str]) -> None:
    """runc: a plain kill, pause, resume, update and events of a stopped container fail with a
    clear message."""
    cid = _exited_container(sandbox)
    resources = f"{bundles.INNER_WORKDIR}/bundles/{cid}/resources.json"
    sandbox.host_path(resources).write_text('{"memory": {"limit": 100000000}}')
    proc = _run(sandbox, *(arg.format(id=cid, resources=resources) for arg in verb))
    assert proc.returncode == 1
    assert "not running" in proc.stderr or "not paused" in proc.stderr, proc.stderr
    assert "not loaded" not in proc.stderr
    assert _run(sandbox, "delete", cid).returncode == 0


def test_ps_state_and_forced_delete_of_a_collected_scope(sandbox: Sandbox) -> None:
    cid = _exited_container(sandbox)
    proc = _run(sandbox, "ps", "--format", "json", cid)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout or "[]") in ([], None)
    state = json.loads(_run(sandbox, "state", cid).stdout)
    assert state["status"] == "stopped" and state["pid"] == 0
    proc = _run(sandbox, "delete", "--force", cid)
    assert proc.returncode == 0, proc.stderr
    assert _run(sandbox, "delete", "--force", cid).returncode == 0
