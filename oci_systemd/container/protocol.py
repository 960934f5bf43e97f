# SPDX-License-Identifier: Apache-2.0
"""The runtime <-> idler protocol: what each step sends, one function per step and side.

channel.py carries JSON objects; this module says which objects. Nobody else builds or reads a
message: the runtime calls `send_plan`, `recv_pid` ..., the idler `recv_plan`, `send_pid` ...
The types below exist for the type checker only (behind `TYPE_CHECKING`: the idler imports no
`typing`); docs/protocol.md draws the sequence.

Errors travel as data: `send_error` encodes an exception as its class name, message and plain
attributes, and every `recv_*` raises an `error` message as that same class again
(`error_from`), so what the user reads is the idler's own message, once.
"""

from __future__ import annotations

import os

from oci_systemd import errors
from oci_systemd.container.channel import ChannelClosed

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: this runs in the idler, and typing costs ~5 ms
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Literal, TypeAlias, TypedDict

    from oci_systemd.container import config
    from oci_systemd.container.channel import Channel

    class CreatePlan(TypedDict):
        """What `create` asks the idler to build."""

        exec: Literal[False]
        id: str
        config: config.Config  # validated (runtime/spec.py), with the runtime's additions
        bundle: str
        rootfs: str  # absolute, symlinks resolved
        start_socket: str  # where to bind the start socket (state.START_SOCKET)
        console_socket: str | None  # where to send the pty master, with process.terminal
        no_pivot: bool
        no_new_keyring: bool
        extra_fds: int  # fds 3.. kept for the program: LISTEN_FDS + --preserve-fds
        listen_fds: int  # of those, socket-activation fds (LISTEN_PID is set at exec)

    class ExecPlan(TypedDict):
        """What `exec` asks its helper to run: `config` holds the process and the container's
        seccomp and personality only."""

        exec: Literal[True]
        id: str
        target_pid: int  # the container's init, whose namespaces are joined
        config: config.Config
        console_socket: str | None
        extra_fds: int
        listen_fds: int

    Plan: TypeAlias = CreatePlan | ExecPlan

    class PlanMessage(TypedDict):
        type: Literal["plan"]
        plan: Plan

    class PidMessage(TypedDict):
        """USERNS (the pid whose id maps to write) and PID (the container's init)."""

        type: Literal["userns", "pid"]
        pid: int

    class Message(TypedDict):
        """The messages with no field: JOINED, MAPPED, SCOPED, CREATED, START, EXEC,
        SECCOMP (its fd rides along, SCM_RIGHTS), SECCOMP_SENT."""

        type: str

    class ErrorMessage(TypedDict):
        type: Literal["error"]
        message: str
        errno: int
        kind: str  # a class name of errors.py; "OSError" or "internal" otherwise
        attrs: dict[str, str | int | None]  # the exception's plain attributes


# Message types, in protocol order (docs/protocol.md).
PLAN = "plan"  # runtime -> idler: what to build
JOINED = "joined"  # runtime -> idler: you are in the container's scope; make the namespaces
USERNS = "userns"  # idler -> runtime: user namespace made, write the id maps
MAPPED = "mapped"  # runtime -> idler: id maps written
PID = "pid"  # idler -> runtime: host pid of the container's init
SCOPED = "scoped"  # runtime -> idler: network and runtime hooks done, go on building
CREATED = "created"  # idler -> runtime: environment ready, waiting for start
START = "start"  # start -> idler: exec the program
EXEC = "exec"  # idler -> start: calling execve now; EOF next means it worked
SECCOMP = "seccomp"  # idler -> start (or exec): the seccomp notify fd, over SCM_RIGHTS
SECCOMP_SENT = "seccomp_sent"  # start -> idler: the agent at listenerPath has it, go on
ERROR = "error"  # either way: the sender failed (send_error / error_from)


# -- receiving ----------------------------------------------------------------------------------


def _expect(msg: Mapping[str, object], kinds: tuple[str, ...]) -> None:
    """An `error` is raised as the exception it reports; any other surprise is ValueError."""
    kind = msg.get("type")
    if kind == ERROR:
        raise error_from(msg)
    if kind not in kinds:
        raise ValueError(f"unexpected message {kind!r} from peer (wanted {', '.join(kinds)})")


def _recv(chan: Channel, *kinds: str) -> Message:
    msg: Message = chan.recv()
    _expect(msg, kinds)
    return msg


def _send(chan: Channel, kind: str) -> None:
    msg: Message = {"type": kind}
    chan.send(msg)


# -- the create steps, in order -----------------------------------------------------------------


def send_plan(chan: Channel, plan: Plan) -> None:
    msg: PlanMessage = {"type": "plan", "plan": plan}
    chan.send(msg)


def recv_plan(chan: Channel) -> Plan:
    msg: PlanMessage = chan.recv()
    _expect(msg, (PLAN,))
    return msg["plan"]


def send_joined(chan: Channel) -> None:
    _send(chan, JOINED)


def recv_joined(chan: Channel) -> None:
    _recv(chan, JOINED)


def send_userns(chan: Channel, pid: int) -> None:
    msg: PidMessage = {"type": "userns", "pid": pid}
    chan.send(msg)


def recv_userns_or_pid(chan: Channel) -> tuple[bool, int]:
    """(True, pid) for USERNS: write the id maps of `pid`, then send MAPPED, and PID follows;
    (False, pid) for PID: no user namespace, `pid` is the init."""
    msg: PidMessage = chan.recv()
    _expect(msg, (USERNS, PID))
    return msg["type"] == USERNS, int(msg["pid"])


def send_mapped(chan: Channel) -> None:
    _send(chan, MAPPED)


def recv_mapped(chan: Channel) -> None:
    _recv(chan, MAPPED)


def send_pid(chan: Channel, pid: int) -> None:
    msg: PidMessage = {"type": "pid", "pid": pid}
    chan.send(msg)


def recv_pid(chan: Channel) -> int:
    msg: PidMessage = chan.recv()
    _expect(msg, (PID,))
    return int(msg["pid"])


def send_scoped(chan: Channel) -> None:
    _send(chan, SCOPED)


def recv_scoped(chan: Channel) -> None:
    _recv(chan, SCOPED)


def send_created(chan: Channel) -> None:
    _send(chan, CREATED)


def recv_created(chan: Channel) -> None:
    _recv(chan, CREATED)


# -- start (and exec's helper): START, then the last words before execve ------------------------


def send_start(chan: Channel) -> None:
    _send(chan, START)


def recv_start(chan: Channel) -> None:
    _recv(chan, START)


def send_seccomp(chan: Channel, fd: int) -> None:
    msg: Message = {"type": SECCOMP}
    chan.send_with_fds(msg, [fd])


def recv_exec_or_seccomp(chan: Channel) -> list[int] | None:
    """None for EXEC; for SECCOMP the fds that came with it (one, unless the peer misbehaves:
    the caller closes them)."""
    msg, fds = chan.recv_with_fds(max_fds=1)
    try:
        _expect(msg, (EXEC, SECCOMP))
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    if msg["type"] == EXEC:
        for fd in fds:
            os.close(fd)
        return None
    return fds


def send_seccomp_sent(chan: Channel) -> None:
    _send(chan, SECCOMP_SENT)


def recv_seccomp_sent(chan: Channel) -> None:
    _recv(chan, SECCOMP_SENT)


def send_exec(chan: Channel) -> None:
    _send(chan, EXEC)


def recv_exec(chan: Channel) -> None:
    _recv(chan, EXEC)


def recv_eof(chan: Channel) -> None:
    """After EXEC: EOF (the close-on-exec socket went with execve) means the program runs; an
    error means execve failed; anything else is a confused peer."""
    try:
        msg: Message = chan.recv()
    except ChannelClosed:
        return
    if msg.get("type") == ERROR:
        raise error_from(msg)
    raise errors.IdlerError("unexpected answer from the idler")


# -- errors as data -------------------------------------------------------------------------------
# An exception travels as its class name, message and plain attributes (errno, stage, path,
# field, hint, exit_code, ...) and is rebuilt on the other side as the same class with the same
# message: no re-wrapping, so no doubled text and no lost exit status.


def _travels(key: str, value: object) -> bool:
    """An attribute that crosses the channel: public, scalar, and not the message itself."""
    return not key.startswith("_") and key != "message" and (value is None or isinstance(value, (str, int)))


def error_message(exc: BaseException) -> ErrorMessage:
    """The one encoder: `exc` as an `error` message."""
    attrs: dict[str, str | int | None] = {}
    if isinstance(exc, errors.OciSystemdError):
        message, err, kind = exc.message, getattr(exc, "errno", 0), type(exc).__name__
        attrs = {k: v for k, v in vars(exc).items() if _travels(k, v)}
    elif isinstance(exc, OSError):
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = f"{tb.tb_frame.f_code.co_name}: " if tb is not None else ""  # which step failed
        message = f"{where}{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
        err, kind = exc.errno or 0, "OSError"
    else:
        message, err, kind = f"{type(exc).__name__}: {exc}", 0, "internal"
    return {"type": "error", "message": message, "errno": err, "kind": kind, "attrs": attrs}


def send_error(chan: Channel, exc: BaseException) -> None:
    """Report `exc` to the peer; a peer already gone is no one to tell."""
    try:
        chan.send(error_message(exc))
    except OSError:
        pass


def _error_classes(cls: type[errors.OciSystemdError]) -> dict[str, type[errors.OciSystemdError]]:
    found = {cls.__name__: cls}
    for sub in cls.__subclasses__():
        found.update(_error_classes(sub))
    return found


def error_from(msg: Mapping[str, object]) -> errors.OciSystemdError:
    """The one decoder: the exception an `error` message reports, as the sender's class when
    that is a class of errors.py (and only then: a message names no other code to run), with
    its message and attributes; an OSError or anything unexpected is an IdlerError. Built
    without calling the class's __init__, which would wrap the message a second time."""
    message = str(msg.get("message", "unknown error"))
    cls = _error_classes(errors.OciSystemdError).get(str(msg.get("kind", "")))
    if cls is None or cls.__module__ != errors.__name__:
        return errors.IdlerError(message)
    exc = cls.__new__(cls)
    errors.OciSystemdError.__init__(exc, message)
    attrs = msg.get("attrs")
    for key, value in (attrs if isinstance(attrs, dict) else {}).items():
        if _travels(key, value):
            setattr(exc, key, value)
    return exc
