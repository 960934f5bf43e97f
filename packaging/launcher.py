#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Write the `oci-systemd` launcher: a script run as `python -IS`, with the directories `site`
would have added listed in it.

    python3 packaging/launcher.py --python /usr/bin/python3 --output debian/oci-systemd/usr/bin/oci-systemd
    .venv/bin/python packaging/launcher.py --python .venv/bin/python --output .venv/bin/oci-systemd

Every runtime command is a new interpreter, and podman or containerd run several per
container. `site` costs each of them ~2 ms (docs/performance.md: processing the .pth files of
site-packages, sitecustomize), for nothing but putting site-packages on sys.path. The launcher
skips it (-S) and ignores PYTHON* variables and the user's site (-I, as the idler does), and
puts the same directories on sys.path itself: they are asked from `--python` itself, as the
difference between its sys.path with and without site, so a venv, Debian's dist-packages and
an editable checkout (a path in a .pth file) all come out right.

A setuptools console script (what pip writes) keeps working; this one is only faster.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

_PATHS = "import sys, json; print(json.dumps(sys.path))"

TEMPLATE = """#!{python} -IS
# oci-systemd launcher, written by packaging/launcher.py: the interpreter runs without site
# (-S; ~2 ms of every command) and isolated (-I); these are the directories site would add.
# No cyclic garbage collection while the modules load (oci_systemd/cli/entry.py says why).
import gc; gc.disable()  # noqa: E702
import sys

sys.path += {paths!r}
from oci_systemd.cli.entry import main

main()
"""


def site_paths(python: str) -> list[str]:
    """The sys.path entries `python` gets from site (in site's order)."""

    def ask(*flags: str) -> list[str]:
        out = subprocess.run([python, *flags, "-c", _PATHS], capture_output=True, text=True, check=True)
        return [p for p in json.loads(out.stdout) if p]

    without = set(ask("-I", "-S"))
    return [p for p in ask("-I") if p not in without]


def render(python: str, paths: list[str]) -> str:
    return TEMPLATE.format(python=python, paths=paths)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", required=True, help="the interpreter the launcher runs on")
    parser.add_argument(
        "--shebang",
        help="the interpreter path written in the launcher (default: --python), e.g. the installed "
        "path when --python is the build machine's",
    )
    parser.add_argument("--output", required=True, help="where to write the launcher (mode 0755)")
    args = parser.parse_args(argv)

    python = os.path.abspath(args.python) if os.sep in args.python else args.python
    text = render(args.shebang or python, site_paths(python))
    tmp = f"{args.output}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o755)
    os.replace(tmp, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
