# SPDX-License-Identifier: Apache-2.0
"""Fault injection for the reliability tests: a verb dies at a named point."""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal as _signal
else:
    import _signal  # the C module: `signal` costs every command its enums


def fault_point(name: str) -> None:
    """Die here with SIGKILL when OCI_SYSTEMD_FAULT names this point (fault-injection tests).

    Points: create:claimed, create:spawned, create:scoped, create:pid, create:built,
    start:sent, start:recorded, delete:killed, delete:stopped, delete:removed.
    """
    if os.environ.get("OCI_SYSTEMD_FAULT") == name:
        os.kill(os.getpid(), _signal.SIGKILL)
