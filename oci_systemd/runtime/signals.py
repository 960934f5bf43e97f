# SPDX-License-Identifier: Apache-2.0
"""Signals: parsing runc's signal names and forwarding signals to a foreground container.

`_signal`, the C module, not `signal`: `signal` builds its enums at import (~1 ms with enum),
and kill, run and exec parse a signal name on every call.
"""

from __future__ import annotations

import os

from oci_systemd.errors import OciSystemdError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal as _signal
    from typing import Any

    from oci_systemd.runtime.terminal import Relay
else:
    import _signal


def parse_signal(text: str) -> int:
    """`TERM`, `SIGTERM`, `term`, `15`, `SIGRTMIN+3` -> signal number."""
    name = text.strip().upper()
    if name.isdigit():
        num = int(name)
        if 0 < num < _signal.SIGRTMAX + 1:
            return num
        raise OciSystemdError(f"invalid signal: {text}")
    if not name.startswith("SIG"):
        name = "SIG" + name
    if name.startswith("SIGRTMIN+") or name.startswith("SIGRTMAX-"):
        base = _signal.SIGRTMIN if name.startswith("SIGRTMIN") else _signal.SIGRTMAX
        try:
            off = int(name[9:])
        except ValueError:
            raise OciSystemdError(f"unknown signal {text!r}") from None
        num = base + off if base == _signal.SIGRTMIN else base - off
        if _signal.SIGRTMIN <= num <= _signal.SIGRTMAX:
            return num
        raise OciSystemdError(f"invalid signal: {text}")
    found = _signal_number(name)
    if found is None:
        raise OciSystemdError(f"unknown signal {text!r}")
    return found


def _signal_number(name: str) -> int | None:
    """SIGTERM -> 15, as signal.Signals[name] (aliases such as SIGIOT included)."""
    if name.startswith("SIG_") or not name.isupper():  # SIG_DFL, SIG_BLOCK... are not signals
        return None
    value = getattr(_signal, name, None)
    return int(value) if isinstance(value, int) else None


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
