# SPDX-License-Identifier: Apache-2.0
"""The private systemd itself: it boots, its journal and delegated scopes work, it leaves nothing."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import bundles
import pytest
from click.testing import CliRunner

from oci_systemd.devtools import sandbox as sandboxes
from oci_systemd.devtools import sandbox_namespaces
from oci_systemd.devtools.sandbox import Sandbox
from oci_systemd.errors import SandboxError


def _run(sb: Sandbox, argv: list[str]) -> subprocess.CompletedProcess[str]:
    return sb.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30, check=False)


def test_system_state(sandbox: Sandbox) -> None:
    assert sandbox.system_state() in ("running", "degraded")


def test_journal_answers(sandbox: Sandbox) -> None:
    proc = _run(sandbox, ["journalctl", "-n1", "--no-pager"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip(), "journal is empty"


def test_delegated_scope(sandbox: Sandbox) -> None:
    proc = _run(sandbox, ["systemd-run", "--scope", "-p", "Delegate=yes", "true"])
    assert proc.returncode == 0, proc.stderr


def test_private_tmp(sandbox: Sandbox) -> None:
    marker = f"oci-systemd-{secrets.token_hex(4)}"
    sandbox.host_path(f"/tmp/{marker}").write_text("inside\n")
    try:
        assert _run(sandbox, ["cat", f"/tmp/{marker}"]).stdout == "inside\n"
        assert not Path(f"/tmp/{marker}").exists(), "the sandbox's /tmp leaked onto the host"
    finally:
        sandbox.host_path(f"/tmp/{marker}").unlink()


def test_persistent_journal_of_its_own(sandbox: Sandbox) -> None:
    """The journal is flushed to /var/log/journal (where journald splits off each user's
    file), and that /var/log is the sandbox's tmpfs, not the host's."""
    header = _run(sandbox, ["journalctl", "--header", "-n0"]).stdout
    assert "File path: /var/log/journal/" in header, header
    assert _run(sandbox, ["findmnt", "-n", "-o", "FSTYPE", "/var/log"]).stdout.strip() == "tmpfs"
    assert os.stat(sandbox.host_path("/var/log")).st_dev != os.stat("/var/log").st_dev


@pytest.mark.parametrize("path", ["/dev/net/tun", "/dev/fuse"])
def test_users_devices_are_the_sandboxs_own(sandbox: Sandbox, path: str) -> None:
    """A user's slirp4netns and fuse-overlayfs open them: 0666 inside (as udev makes them),
    the same device, while the host's node keeps its own mode."""
    if not os.path.exists(path):
        pytest.skip(f"no {path} on this host")
    host = os.stat(path)
    proc = _run(sandbox, ["stat", "-c", "%F %a %t:%T %d:%i", path])
    assert proc.returncode == 0, proc.stderr
    device = f"{os.major(host.st_rdev):x}:{os.minor(host.st_rdev):x}"
    assert proc.stdout.split()[:5] == ["character", "special", "file", "666", device], proc.stdout
    # Another inode than the host's: a node of the sandbox's own, not the host's chmod'ed.
    assert proc.stdout.split()[5] != f"{host.st_dev}:{host.st_ino}"
    # Only the node is the sandbox's: the tmpfs it came from is gone again.
    assert not sandbox.host_path(sandbox_namespaces._DEVICE_STAGING).exists()


def _sandbox_mounts() -> list[str]:
    """Host mount table lines that mention the sandbox's records or cgroup."""
    needle = ("oci-systemd-sandbox-", os.fspath(sandboxes.RECORD_ROOT))
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return [line for line in lines if any(n in line for n in needle)]


def test_second_sandbox_side_by_side(sandbox: Sandbox) -> None:
    name = f"pytest-second-{secrets.token_hex(3)}"
    try:
        second = sandboxes.up(name)
        assert second.pid != sandbox.pid
        assert sandboxes.get(name) == second
        assert _run(second, ["systemctl", "is-system-running"]).stdout.strip() in ("running", "degraded")
    finally:
        sandboxes.down(name)
    assert sandboxes._is_gone(second.pid), f"systemd pid {second.pid} still alive"
    assert not sandboxes.cgroup_dir(name).exists()
    assert not sandboxes.record_dir(name).exists()
    assert _sandbox_mounts() == []
    # The session's sandbox is untouched by its neighbour going down.
    assert sandbox.system_state() in ("running", "degraded")


def test_down_unknown_name_fails_cleanly() -> None:
    name = f"pytest-never-{secrets.token_hex(3)}"
    with pytest.raises(SandboxError, match="no sandbox named"):
        sandboxes.down(name)
    result = CliRunner().invoke(sandboxes.sandbox, ["down", name])
    assert result.exit_code == 1
    assert "no sandbox named" in result.output


def test_up_refuses_running_name(sandbox: Sandbox) -> None:
    with pytest.raises(SandboxError, match="already running"):
        sandboxes.up(sandbox.name)


def test_cli_status_and_exec(sandbox: Sandbox) -> None:
    status = CliRunner().invoke(sandboxes.sandbox, ["status", sandbox.name])
    assert status.exit_code == 0, status.output
    assert str(sandbox.pid) in status.output
    # exec replaces the process, so drive it through a real interpreter.
    exec_argv = [
        sys.executable, "-c", "from oci_systemd.devtools.sandbox import sandbox; sandbox()",
        "exec", sandbox.name, "--", "sh", "-c", "exit 7",
    ]  # fmt: skip
    assert subprocess.run(exec_argv, stdin=subprocess.DEVNULL, timeout=30, check=False).returncode == 7


def test_bundle_is_usable_inside(sandbox: Sandbox) -> None:
    """The helpers' bundle lands in the sandbox's /tmp and its busybox rootfs runs there."""
    bundle = bundles.make_bundle(
        sandbox.host_path(f"{bundles.INNER_WORKDIR}/check-{secrets.token_hex(3)}"),
        rootfs=bundles.ensure_rootfs(sandbox),
        process={"args": ["/bin/true"]},
    )
    try:
        inner = sandbox.inner_path(bundle)
        assert inner.startswith("/tmp/")
        config = json.loads((bundle / "config.json").read_text())
        assert config["process"]["args"] == ["/bin/true"]
        assert config["process"]["terminal"] is False
        assert os.readlink(bundle / "rootfs" / "bin" / "sh") == "busybox"
        proc = _run(sandbox, ["chroot", f"{inner}/rootfs", "/bin/sh", "-c", "echo ok; id -un"])
        assert proc.stdout == "ok\nroot\n", proc.stderr
    finally:
        shutil.rmtree(bundle)
