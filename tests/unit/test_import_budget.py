# SPDX-License-Identifier: Apache-2.0
"""What each hot command imports: every module below is paid by every podman/containerd call.

The heavy stdlib modules (each 1-6 ms at import on the benchmark machines, see
docs/performance.md) must stay out of the modules the short commands and `create` load.
The test imports exactly what a command imports (in a fresh `python -S`, as the entry
point would after site) and lists what came in.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# (struct is not listed: ctypes imports it, and the container side (exec's helper, the idler)
# needs ctypes for its syscalls.)
HEAVY = ("typing", "re", "json", "enum", "contextlib", "collections", "socket", "shutil")

# What each command imports (the idler's own set is pinned in test_idler_imports.py).
COMMANDS = {
    "state": [
        "oci_systemd.cli.entry",
        "oci_systemd.runtime.lifecycle",
        "oci_systemd.jsonio",
        "oci_systemd.runtime.systemd",
    ],
    "start": [
        "oci_systemd.cli.entry",
        "oci_systemd.runtime.lifecycle",
        "oci_systemd.container.channel",
        "oci_systemd.container.protocol",
        "oci_systemd.runtime.journal",
    ],
    "kill": ["oci_systemd.cli.entry", "oci_systemd.runtime.lifecycle", "oci_systemd.runtime.journal"],
    "delete": [
        "oci_systemd.cli.entry",
        "oci_systemd.runtime.lifecycle",
        "oci_systemd.runtime.journal",
        "oci_systemd.runtime.systemd",
    ],
    # exec's fast path (entry.py) and the helper it forks (idler.exec_forked); no D-Bus.
    "exec": [
        "oci_systemd.cli.entry",
        "oci_systemd.runtime.lifecycle",
        "oci_systemd.runtime.exec_process",
        "oci_systemd.runtime.spec",
        "oci_systemd.runtime.cgroups",
        "oci_systemd.container.channel",
        "oci_systemd.container.protocol",
        "oci_systemd.runtime.journal",
        "oci_systemd.container.idler",
        "oci_systemd.container.namespaces",
        "oci_systemd.container.process",
    ],
    # Create, start, the foreground wait and delete in one process.
    "run": [
        "oci_systemd.cli.entry",
        "oci_systemd.runtime.lifecycle",
        "oci_systemd.runtime.verbs.run",
        "oci_systemd.runtime.verbs.create",
        "oci_systemd.runtime.verbs.delete",
        "oci_systemd.runtime.terminal",
        "oci_systemd.runtime.journal",
        "oci_systemd.runtime.spec",
        "oci_systemd.runtime.resources",
        "oci_systemd.runtime.listen_fds",
        "oci_systemd.runtime.cgroups",
        "oci_systemd.runtime.interpreter",
        "oci_systemd.container.channel",
        "oci_systemd.container.protocol",
        "oci_systemd.runtime.systemd",
    ],
    "create": [
        "oci_systemd.cli.entry",
        "oci_systemd.runtime.lifecycle",
        "oci_systemd.runtime.journal",
        "oci_systemd.runtime.spec",
        "oci_systemd.runtime.resources",
        "oci_systemd.runtime.listen_fds",
        "oci_systemd.runtime.cgroups",
        "oci_systemd.container.channel",
        "oci_systemd.container.protocol",
        "oci_systemd.runtime.systemd",
    ],
}


def _imported(modules: list[str]) -> set[str]:
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules) + "print(' '.join(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    return set(out.stdout.split())


def test_the_runtime_side_needs_no_ctypes_package() -> None:
    # kill and start use the stdlib's syscalls (pidfd, a unix socket); the D-Bus path and run's
    # prctl go through the C module _ctypes (~1-2 ms less than the ctypes package). Only the
    # container side (exec's helper) loads ctypes.
    for command in sorted(set(COMMANDS) - {"exec"}):
        assert "ctypes" not in _imported(COMMANDS[command]), command


def test_dbus_commands_load_libsystemd_without_the_ctypes_package() -> None:
    # state, delete and create reach systemd through the C module _ctypes alone: the ctypes
    # package (struct, types, ctypes._endian) would cost each of them ~1-2 ms more.
    code = (
        "import sys\nfrom oci_systemd.runtime.systemd import bus\nbus.libsystemd()\n"
        "print(' '.join(sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    loaded = set(out.stdout.split())
    assert "_ctypes" in loaded
    assert not {"ctypes", "struct", "types"} & loaded, sorted({"ctypes", "struct", "types"} & loaded)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_hot_command_imports_no_heavy_module(command: str) -> None:
    loaded = _imported(COMMANDS[command])
    assert not loaded & set(HEAVY), f"{command} imports {sorted(loaded & set(HEAVY))}"


def test_the_check_can_see_a_heavy_import() -> None:
    assert {"json", "re"} <= _imported(["json"])


def test_exec_with_a_process_file_is_parsed_without_click(tmp_path: Path) -> None:
    """containerd's and conmon's form of exec takes entry.py's fast path (issue 16)."""
    process = tmp_path / "process.json"
    process.write_text('{"args": ["true"], "cwd": "/"}')
    argv = ["--root", str(tmp_path / "root"), "exec", "--process", str(process), "--detach", "c1"]
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "oci_systemd", *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if "|" in line}
    assert "container does not exist: c1" in out.stderr
    assert "click" not in imported and "oci_systemd.cli.app" not in imported
