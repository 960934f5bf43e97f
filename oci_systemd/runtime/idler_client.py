# SPDX-License-Identifier: Apache-2.0
"""The runtime's end of the idler: starting one, and the start/exec handshake with it.

`spawn_idler` starts `python -I -S` on oci_systemd.container.idler with one channel fd (from
the read-only interpreter mount, interpreter.py). `send_start` and `await_started` are start's
side of the start socket; `await_exec` reads an idler's last words before execve (EXEC, then
EOF on its close-on-exec socket), handing a seccomp notify fd to the agent on the way. An
idler's `error` message comes out of every protocol step as the idler's own exception.
"""

from __future__ import annotations

import os
import sys

from oci_systemd.errors import ContainerNotRunningError, IdlerError
from oci_systemd.runtime.state import start_socket

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from oci_systemd.container.channel import Channel
    from oci_systemd.runtime.state import Record, Status


def minimal_python(
    module: str, function: str, call_args: str, *args: str, collect_cycles: bool = True
) -> list[str]:
    """argv for `python -I -S` (no site, no environment: fast and with little memory) running
    `module.function(call_args)`, with this package importable and `args` in sys.argv[1:].
    Without `collect_cycles` the cyclic garbage collector is off from the first import on: the
    idler allocates little after its imports and ends in execve (see cli/entry.py's main)."""
    pkg_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = (
        ("" if collect_cycles else "import gc; gc.disable(); ")
        + f"import sys; sys.path.insert(0, {pkg_parent!r}); "
        + f"from {module} import {function}; {function}({call_args})"
    )
    return [sys.executable, "-I", "-S", "-c", code, *args]


def spawn_idler(
    extra_fds: int, stdio: tuple[int, int] | None = None, *, detached: bool = False
) -> tuple[Channel, int]:
    """fork + exec `python -I -S` on the idler module with one channel fd; (channel, pid).
    `detached` (the unit mode): the idler is systemd's child, not ours (fork_detached).

    fds 3..3+extra_fds-1 (LISTEN_FDS, --preserve-fds) are inherited; the channel sits
    above them. Everything else we hold is close-on-exec.
    """
    from oci_systemd.container.channel import Channel

    ours, theirs = Channel.pair()
    child_fd = theirs.fileno()
    target = 3 + extra_fds + 16
    argv = minimal_python("oci_systemd.container.idler", "main", "", str(target), collect_cycles=False)
    if detached:
        from oci_systemd.runtime.service_unit import fork_detached

        pid = fork_detached()
    else:
        pid = os.fork()
    if pid == 0:  # child: nothing but fd shuffling until exec
        try:
            os.dup2(child_fd, target, inheritable=True)
            if stdio is not None:  # the container's stdout/stderr go to the journal forwarder
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.dup2(stdio[0], 1)
                os.dup2(stdio[1], 2)
            for fd in range(3, 3 + extra_fds):
                os.set_inheritable(fd, True)
            # The idler's /proc/<pid>/exe on a read-only mount (CVE-2019-5736, interpreter.py)
            from oci_systemd.runtime.interpreter import read_only_fd

            exe = read_only_fd()
            if exe >= 0:
                try:
                    os.execve(exe, argv, os.environ)
                except OSError:
                    pass
            os.execv(sys.executable, argv)
        finally:
            os._exit(127)
    theirs.close()
    return ours, pid


def await_exec(peer: Channel, agent: Callable[[int], None] | None = None) -> None:
    """The idler announces EXEC just before execve(); its socket is close-on-exec, so EOF after
    the announcement means the program runs, an error message means exec failed, and EOF
    before it means the idler died (ChannelClosed). Before EXEC, a filter with SCMP_ACT_NOTIFY
    sends its notify fd, for the `agent` (seccomp_agent, seccomp_notify.py)."""
    from oci_systemd.container import protocol

    fds = protocol.recv_exec_or_seccomp(peer)
    if fds is not None:
        _hand_to_agent(peer, fds, agent)
        protocol.recv_exec(peer)
    protocol.recv_eof(peer)


def _hand_to_agent(peer: Channel, fds: list[int], agent: Callable[[int], None] | None) -> None:
    """Give the notify fd to the seccomp agent, then let the idler go on; if that fails, the
    idler is told so (it exits) and start fails, as the spec asks."""
    from oci_systemd.container import protocol

    try:
        if agent is None or len(fds) != 1:
            raise IdlerError("the idler sent a seccomp notify fd that nobody asked for")
        agent(fds[0])
    except BaseException as exc:
        protocol.send_error(peer, exc)
        raise
    finally:
        for fd in fds:
            os.close(fd)
    protocol.send_seccomp_sent(peer)


def seccomp_agent(record: Record, pid: int, status: Status) -> Callable[[int], None] | None:
    """What sends the notify fd of process `pid` to the record's listenerPath; None without one."""
    listener = record.get("seccomp_listener")
    if not listener:
        return None
    from oci_systemd.runtime import seccomp_notify
    from oci_systemd.runtime.status import state_json

    state = state_json(record, status)
    return lambda fd: seccomp_notify.send_state(listener, pid, state, fd)


# Connecting and handing START over happen under the container's lock: bounded. (A unix
# socket's connect() blocks while the listener's backlog is full, e.g. a frozen idler.)
START_CONNECT_TIMEOUT = 5.0


def send_start(state_dir: str, cid: str) -> Channel:
    """Connect to the idler's start socket, send START and remove the socket's name (the idler
    holds no fd of the state directory, so the host side does it): from here on `state`
    reads running. Returns the connection for `await_started`."""
    from oci_systemd.container import channel, protocol
    from oci_systemd.container.channel import Channel

    path = start_socket(state_dir)
    if path is None:  # start came first, or the idler died before binding it
        raise ContainerNotRunningError(cid)
    try:
        sock = channel.connect_unix(path, timeout=START_CONNECT_TIMEOUT)
    except OSError as exc:
        raise ContainerNotRunningError(cid) from exc
    peer = Channel(sock)
    try:
        protocol.send_start(peer)
    except OSError as exc:  # the idler died under us (killed, scope stopped)
        peer.close()
        raise ContainerNotRunningError(cid) from exc
    sock.settimeout(None)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    return peer


def await_started(peer: Channel, cid: str, agent: Callable[[int], None] | None) -> None:
    """EOF on the idler's close-on-exec socket after EXEC means the exec succeeded; what the
    idler reports instead is raised as its own exception (a startContainer hook's HookError,
    exec's ExecFailedError)."""
    from oci_systemd.container import channel

    try:
        await_exec(peer, agent)
    except (channel.ChannelClosed, OSError) as exc:  # the idler died under us (killed, scope stopped)
        raise ContainerNotRunningError(cid) from exc
    finally:
        peer.close()


def reap_quietly(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
