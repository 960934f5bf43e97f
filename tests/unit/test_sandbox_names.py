# SPDX-License-Identifier: Apache-2.0
"""Sandbox name validation and the safety of the generated boot, without root."""

from __future__ import annotations

from pathlib import Path

import pytest

from oci_systemd.devtools import sandbox as sandboxes
from oci_systemd.errors import SandboxError


@pytest.mark.parametrize("name", ["default", "demo", "a", "ci-1.2_x", "A" * sandboxes.NAME_MAX])
def test_valid_names(name: str) -> None:
    assert sandboxes.validate_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", "a/b", "../etc", "a b", "näme", "x\n", "a:b", "A" * (sandboxes.NAME_MAX + 1)],
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(SandboxError, match="invalid sandbox name") as info:
        sandboxes.validate_name(name)
    assert info.value.hint


def test_paths_stay_in_their_roots() -> None:
    assert sandboxes.record_dir("demo") == Path("/var/lib/oci-systemd/sandbox/demo")
    assert sandboxes.cgroup_dir("demo") == Path("/sys/fs/cgroup/unified/oci-systemd-sandbox-demo")


def test_invalid_name_is_refused_before_anything_else() -> None:
    with pytest.raises(SandboxError, match="invalid sandbox name"):
        sandboxes.up("../x")
    with pytest.raises(SandboxError, match="invalid sandbox name"):
        sandboxes.down("a/b")


def test_up_needs_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(SandboxError, match="needs root") as info:
        sandboxes.up("demo")
    assert info.value.hint and "root" in info.value.hint


def test_unit_path_never_names_host_unit_dirs() -> None:
    # The host's unit directories once made sysinit.target wipe the machine's /tmp.
    env = sandboxes._systemd_env(Path("/var/lib/oci-systemd/sandbox/demo"))
    unit_path = env["SYSTEMD_UNIT_PATH"]
    assert not unit_path.endswith(":")
    assert unit_path.split(":") == ["/var/lib/oci-systemd/sandbox/demo/units", "/run/systemd/system"]
    assert env["container"] == "oci-systemd"


def test_generated_units(tmp_path: Path) -> None:
    sandboxes._write_units(tmp_path)
    target = (tmp_path / sandboxes.TARGET).read_text()
    assert "Requires=dbus.socket systemd-journald.socket systemd-journald-dev-log.socket" in target
    for name in ("sysinit", "basic", "default", "multi-user", "rescue", "umount"):
        assert (tmp_path / f"{name}.target").read_text().startswith("[Unit]\nDescription=")
    # The /dev/log symlink would be created on the host's /dev.
    assert "Symlinks=" not in (tmp_path / "systemd-journald-dev-log.socket").read_text()


def test_systemd_is_pid1_is_a_bool() -> None:
    assert isinstance(sandboxes.systemd_is_pid1(), bool)
