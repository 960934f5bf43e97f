# SPDX-License-Identifier: Apache-2.0
"""packaging/launcher.py: the `python -IS` entry point finds everything site would have found."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = ROOT / "packaging" / "launcher.py"


def _write(tmp_path: Path) -> Path:
    out = tmp_path / "oci-systemd"
    subprocess.run(
        [sys.executable, str(LAUNCHER), "--python", sys.executable, "--output", str(out)], check=True
    )
    return out


def test_launcher_runs_without_site_and_finds_the_package(tmp_path: Path) -> None:
    out = _write(tmp_path)
    first = out.read_text().splitlines()[0]
    assert first == f"#!{sys.executable} -IS"  # one word of flags: the kernel passes one argument
    version = subprocess.run([str(out), "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("oci-systemd version ")
    # The click path (a command the fast path leaves to click) finds click in site-packages.
    spec = subprocess.run([str(out), "spec", "--help"], capture_output=True, text=True, check=True)
    assert "config.json" in spec.stdout


def test_launcher_lists_what_site_adds(tmp_path: Path) -> None:
    text = _write(tmp_path).read_text()
    site_packages = next(p for p in sys.path if p.endswith("site-packages"))
    assert repr(site_packages) in text
    assert "import site" not in text


def test_launcher_interpreter_skips_site(tmp_path: Path) -> None:
    out = _write(tmp_path)
    code = "import sys; print('site' in sys.modules, sys.flags.isolated)"
    probe = tmp_path / "probe"
    probe.write_text(out.read_text().split("\n", 1)[0] + "\n" + code + "\n")
    probe.chmod(0o755)
    assert subprocess.run([str(probe)], capture_output=True, text=True, check=True).stdout.split() == [
        "False",
        "1",
    ]
