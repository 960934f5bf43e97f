# SPDX-License-Identifier: Apache-2.0
"""`kill`: a signal to the container's init, or with --all to every process of its unit; runc's
signal names (`TERM`, `SIGTERM`, `15`, `SIGRTMIN+3`) parsed here, kill being their only reader."""

from __future__ import annotations

import os

from oci_systemd.errors import ContainerNotRunningError, OciSystemdError, SyscallError
from oci_systemd.runtime import status
from oci_systemd.runtime.state import Status, process_start_time
from oci_systemd.runtime.transitions import log_event

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal as _signal

    from oci_systemd.runtime.lifecycle import Runtime
    from oci_systemd.runtime.state import Record
else:
    import _signal  # the C module: `signal` costs every kill its enums


def kill(rt: Runtime, cid: str, signal: str, *, all_processes: bool = False) -> None:
    """`kill --all`: KillUnit on the unit. A plain kill signals the init through a pidfd
    after the pid + start-time check, which is also the whole status check it needs: a live
    init is a created, running or paused container (systemd 252 refuses KillUnit(who=main)
    for scopes), so it does without D-Bus, as `start` does."""
    signum = parse_signal(signal)
    with rt.store.locked(cid) as record:
        if all_processes:
            from oci_systemd.runtime.placement import placement_of

            with rt.manager as bus:
                found = status.status(rt.store, record, rt.manager)
                if not found.can_kill() and found is not Status.STOPPED:
                    raise ContainerNotRunningError(cid, found.value)
                placement_of(record).kill_all(bus, record, signum, stopped=found is Status.STOPPED)
        else:
            found = status.local_status(rt.store, record, rt.manager)
            if not found.can_kill():
                raise ContainerNotRunningError(cid, found.value)
            signal_init(record, signum)
    log_event(
        "KILLED",
        record,
        found.value,
        f"Container {cid} sent signal {signum}{' (all processes)' if all_processes else ''}",
        extra={"SIGNAL": signum},
    )


def signal_init(record: Record, signum: int) -> None:
    """Signal the container's init (the spec's target for a plain kill).

    A pidfd pins the process we checked (pid + start time), so a recycled pid can never
    receive the signal. os.pidfd_open and _signal.pidfd_send_signal, not linux.py's: ctypes
    would cost kill ~1.5 ms of imports.
    """
    pid = record["pid"]
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        raise ContainerNotRunningError(record["id"]) from None
    except OSError as exc:
        raise SyscallError.from_oserror("pidfd_open", exc) from exc
    try:
        if process_start_time(pid) != record.get("pid_start"):
            raise ContainerNotRunningError(record["id"])
        try:
            _signal.pidfd_send_signal(pidfd, signum)
        except ProcessLookupError:  # exited (a zombie) since the check
            raise ContainerNotRunningError(record["id"]) from None
        except OSError as exc:
            raise SyscallError.from_oserror("pidfd_send_signal", exc) from exc
    finally:
        os.close(pidfd)


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
