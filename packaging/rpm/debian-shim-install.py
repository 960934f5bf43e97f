#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""%pyproject_install for the Debian shim: install the wheel(s) of WHEELDIR under BUILDROOT/usr
with the Fedora layout (/usr/lib/python3.X/site-packages), which Debian's sysconfig default
scheme (posix_local, /usr/local/...) would not give.

    debian-shim-install.py BUILDROOT WHEELDIR
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.sources import WheelFile


def main(buildroot: str, wheeldir: str) -> int:
    paths = sysconfig.get_paths("posix_prefix", vars={"base": "/usr", "platbase": "/usr"})
    destination = SchemeDictionaryDestination(
        paths, interpreter="/usr/bin/python3", script_kind="posix", destdir=buildroot
    )
    wheels = sorted(Path(wheeldir).glob("*.whl"))
    if not wheels:
        print(f"no wheel in {wheeldir}", file=sys.stderr)
        return 1
    for wheel in wheels:
        with WheelFile.open(wheel) as source:
            install(source, destination, {"INSTALLER": b"rpm"})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
