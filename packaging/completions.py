#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Write bash, zsh and fish completion scripts for oci-systemd, using click's own completion.

    python3 packaging/completions.py [--outdir DIR]

runs the CLI with `_OCI_SYSTEMD_COMPLETE=<shell>_source` (what `oci-systemd` itself answers
when a shell asks) and writes:

    DIR/bash/oci-systemd        -> /usr/share/bash-completion/completions/oci-systemd
    DIR/zsh/_oci-systemd        -> /usr/share/zsh/vendor-completions/_oci-systemd
    DIR/fish/oci-systemd.fish   -> /usr/share/fish/vendor_completions.d/oci-systemd.fish

The scripts are thin: at completion time they call `oci-systemd` again with
`_OCI_SYSTEMD_COMPLETE=<shell>_complete`, so they follow the installed commands.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

PROG = "oci-systemd"
COMPLETE_VAR = "_OCI_SYSTEMD_COMPLETE"
SHELLS = ("bash", "zsh", "fish")
FILENAMES = {"bash": PROG, "zsh": f"_{PROG}", "fish": f"{PROG}.fish"}
# Where Debian (and Fedora) look for vendor completions.
INSTALL_DIRS = {
    "bash": "/usr/share/bash-completion/completions",
    "zsh": "/usr/share/zsh/vendor-completions",
    "fish": "/usr/share/fish/vendor_completions.d",
}
_SOURCE_ROOT = Path(__file__).resolve().parent.parent
_MAIN = "from oci_systemd.cli.entry import main; main()"


def completion_source(shell: str, *, python: str | None = None, source_root: Path | None = None) -> str:
    """The completion script click generates for `shell` (bash, zsh or fish)."""
    if shell not in SHELLS:
        raise ValueError(f"unsupported shell {shell!r}; choose one of {', '.join(SHELLS)}")
    env = dict(os.environ)
    env[COMPLETE_VAR] = f"{shell}_source"
    root = os.fspath(source_root or _SOURCE_ROOT)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run(
        [python or sys.executable, "-c", _MAIN],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        raise RuntimeError(f"{shell} completion failed (status {proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout if proc.stdout.endswith("\n") else proc.stdout + "\n"


def write_completions(outdir: str | os.PathLike[str], *, python: str | None = None) -> list[Path]:
    written = []
    for shell in SHELLS:
        path = Path(outdir) / shell / FILENAMES[shell]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(completion_source(shell, python=python), encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write oci-systemd's bash/zsh/fish completion scripts.")
    parser.add_argument("--outdir", default="build/completions", help="output directory (build/completions)")
    parser.add_argument("--python", default=None, help="interpreter that runs the CLI (this one)")
    args = parser.parse_args(argv)
    for path in write_completions(args.outdir, python=args.python):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
