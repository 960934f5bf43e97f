# SPDX-License-Identifier: Apache-2.0
"""The wait for a foreground container (run, exec without --detach), as runc's: the runtime
becomes the child subreaper, forwards signals and returns the container's exit status.

`_signal`, the C module, not `signal`: `signal` builds its enums at import (~1 ms with enum).
(kill's signal names are parsed in verbs/kill.py, its only reader.)
"""

from __future__ import annotations

import os

from oci_systemd.errors import SyscallError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal as _signal
    from typing import Any

    from oci_systemd.runtime.terminal import Relay
else:
    import _signal


PR_SET_CHILD_SUBREAPER = 36  # include/uapi/linux/prctl.h


def become_subreaper() -> None:
    """prctl(PR_SET_CHILD_SUBREAPER, 1): the container's init, a grandchild (the idler forks
    it), is re-parented to us, so `wait_forwarding_signals` can wait for it. Through libc.py
    (`_ctypes` alone): container/linux.py loads the ctypes package, ~2 ms of `run`'s imports
    for this one call."""
    from oci_systemd.runtime import libc

    if libc.function("prctl")(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise SyscallError("prctl", "PR_SET_CHILD_SUBREAPER", libc.errno())


def wait_forwarding_signals(pid: int, relay: Relay | None = None) -> int:
    """Wait for the container's init like `runc run`: forward signals, return its status.

    With a terminal `relay`, the pty is relayed until the init exits, and SIGWINCH resizes the
    pty instead of being forwarded (the kernel signals the container's foreground group)."""
    import gc

    gc.enable()  # this process now waits for as long as the container runs (cli/entry.py)
    forwarded = (
        _signal.SIGTERM,
        _signal.SIGINT,
        _signal.SIGHUP,
        _signal.SIGQUIT,
        _signal.SIGUSR1,
        _signal.SIGUSR2,
        _signal.SIGWINCH,
    )

    def forward(signum: int, _frame: Any) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for sig in forwarded:
        _signal.signal(sig, forward)
    if relay is not None:
        _signal.signal(_signal.SIGWINCH, lambda _signum, _frame: relay.resize())
        relay.run(pid)
    while True:
        try:
            got, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 0  # already reaped elsewhere; nothing to report
        except InterruptedError:
            continue
        if got == pid:
            break
    # The init is reaped: its pid may be anyone's now. What comes during the clean-up that
    # follows (systemd's SIGTERM to the service after ExecStop=, a ^C) must neither be sent
    # there nor cut the delete short; the status is already known.
    for sig in forwarded:
        _signal.signal(sig, _signal.SIG_IGN)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return 1
