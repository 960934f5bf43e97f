# SPDX-License-Identifier: Apache-2.0
"""The container's stdout and stderr as journal entries (docs/journald.md).

With the annotation io.github.oci-systemd.log=journald, create starts a small forwarder
(`python -I -S` on journal.run_forwarder) that lives in the container's unit and writes what
the container prints as entries with SYSLOG_IDENTIFIER and CONTAINER_ID = the id and
OBJECT_SYSTEMD_UNIT = the unit (and USER_UNIT = the unit for a user manager's, so that
`journalctl --user -u` shows them: journal.unit_fields()).
"""

from __future__ import annotations

import os
import sys

from oci_systemd.errors import SpecError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from oci_systemd.container import config

LOG_ANNOTATION = "io.github.oci-systemd.log"


def wanted(raw: config.Config) -> bool:
    """Whether the config asks for the forwarder; a bad annotation is a SpecError."""
    target = (raw.get("annotations") or {}).get(LOG_ANNOTATION)
    if target is None:
        return False
    if target != "journald":
        raise SpecError(f'annotations["{LOG_ANNOTATION}"]', f"expected journald, got {target!r}")
    if (raw.get("process") or {}).get("terminal"):
        raise SpecError(f'annotations["{LOG_ANNOTATION}"]', "a terminal's output goes to the console socket")
    return True


def start_forwarder(cid: str, unit: str, *, user_manager: bool = False) -> tuple[int, int, int]:
    """Fork and exec the forwarder; (its pid, the write ends for the container's stdout and
    stderr). The caller hands the write ends to the idler and closes its own copies."""
    from oci_systemd.runtime.idler_client import minimal_python

    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    args = [cid, unit, "user"] if user_manager else [cid, unit]
    argv = minimal_python("oci_systemd.runtime.journal", "run_forwarder", "sys.argv[1:]", "3", "4", *args)
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(out_r, 3, inheritable=True)
            os.dup2(err_r, 4, inheritable=True)
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.closerange(5, 65536)
            os.execv(sys.executable, argv)
        finally:
            os._exit(127)
    os.close(out_r)
    os.close(err_r)
    return pid, out_w, err_w
