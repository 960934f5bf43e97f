# SPDX-License-Identifier: Apache-2.0
"""journald's native and stdout-stream protocols, written against systemd's own sources.

- `send()` is sd_journal_sendv(): one datagram to /run/systemd/journal/socket, and on
  EMSGSIZE/ENOBUFS/EAGAIN the same bytes in a sealed memfd passed with SCM_RIGHTS.
- `log_event()` writes one lifecycle record with a stable MESSAGE_ID (see
  data/oci-systemd.catalog) and `OBJECT_SYSTEMD_UNIT=<scope>`, which makes
  `journalctl -u <scope>` show it when the sender is root. A scope in a user's manager is
  named by `USER_UNIT=<scope>` too: `journalctl --user -u <scope>` matches that field with
  the sender's own _UID (logs-show.c, add_matches_for_user_unit()), as it does for what the
  user's manager writes about its units; OBJECT_SYSTEMD_UNIT counts only with _UID=0.
- `stream_fd()` is sd_journal_stream_fd(). journald's stream protocol carries only an
  identifier, a unit name (honoured for root, and only as a fallback when the peer's cgroup
  can't be read), a priority and flags: it cannot put CONTAINER_ID on the entries
  (journald-stream.c::stdout_stream_log() builds them from a fixed list of fields).
- `forward_stream()` therefore is how container stdio gets CONTAINER_ID: a helper process
  reads the container's pipe and sends each line as a native entry.

Import-light on purpose (start, kill and delete log an event each; the idler may import it):
errno, os, sys and the C module `_socket` at import time (socket, struct, enum and
collections.abc would add ~5 ms to every command); fcntl is loaded for the memfd fallback.
"""

from __future__ import annotations

import errno
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Iterator, Mapping
    from typing import ClassVar
else:
    import _socket as socket  # same constants and socket type, without socket.py's enums

JOURNAL_SOCKET = "/run/systemd/journal/socket"
STDOUT_SOCKET = "/run/systemd/journal/stdout"
SYSLOG_IDENTIFIER = "oci-systemd"

# The catalog shipped with the package; install it as
# /usr/lib/systemd/catalog/oci-systemd.catalog and run `journalctl --update-catalog`.
CATALOG_PATH = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "oci-systemd.catalog"
)

# journald's LineMax= default (journald.conf(5)): longer stdout lines are split there too.
LINE_MAX = 48 * 1024
# sd-journal's SNDBUF_SIZE: larger send buffers mean fewer memfd fallbacks.
_SNDBUF_SIZE = 8 * 1024 * 1024
# Errors after which sd_journal_sendv() retries through a memfd (journal-send.c).
_MEMFD_ERRNOS = frozenset({errno.EMSGSIZE, errno.ENOBUFS, errno.EAGAIN})
# Errors meaning "no journald here": the socket is missing, or bound but nobody reads it.
_ABSENT_ERRNOS = frozenset({errno.ENOENT, errno.ECONNREFUSED, errno.ENOTDIR})
_FIELD_MAX = 64
# The unit an entry is about, named by a sender outside that unit's cgroup (see module doc).
_UNIT_FIELD = "OBJECT_SYSTEMD_UNIT"
_USER_UNIT_FIELD = "USER_UNIT"
_SUN_PATH_MAX = 107  # sizeof(sun_path) is 108, minus the NUL

FieldValue = str | bytes | int


class Event(str):
    """A lifecycle event, one MESSAGE_ID each; the str is the wire string (OCI_EVENT=).

    The events are singletons (`Event.CREATED`, `event_named("CREATED")`); `EVENTS` lists them.
    A str subclass, not enum.StrEnum: enum costs every command ~1 ms at import.
    """

    __slots__ = ()

    CREATED: ClassVar[Event]
    STARTED: ClassVar[Event]
    EXEC: ClassVar[Event]
    KILLED: ClassVar[Event]
    EXITED: ClassVar[Event]
    DELETED: ClassVar[Event]
    HOOK_FAILED: ClassVar[Event]
    ERROR: ClassVar[Event]
    PAUSED: ClassVar[Event]
    RESUMED: ClassVar[Event]
    UPDATED: ClassVar[Event]

    @property
    def value(self) -> str:
        return str(self)

    @property
    def name(self) -> str:
        return self.value.upper().replace("-", "_")

    def __str__(self) -> str:
        return str.__str__(self)

    def __repr__(self) -> str:
        return f"<Event.{self.name}>"

    @property
    def message_id(self) -> str:
        return MESSAGE_IDS[self]

    @property
    def priority(self) -> int:
        return PRIORITIES.get(self, LOG_INFO)


Event.CREATED = Event("created")
Event.STARTED = Event("started")
Event.EXEC = Event("exec")
Event.KILLED = Event("killed")
Event.EXITED = Event("exited")
Event.DELETED = Event("deleted")
Event.HOOK_FAILED = Event("hook-failed")
Event.ERROR = Event("error")
Event.PAUSED = Event("paused")
Event.RESUMED = Event("resumed")
Event.UPDATED = Event("updated")
EVENTS = (
    Event.CREATED,
    Event.STARTED,
    Event.EXEC,
    Event.KILLED,
    Event.EXITED,
    Event.DELETED,
    Event.HOOK_FAILED,
    Event.ERROR,
    Event.PAUSED,
    Event.RESUMED,
    Event.UPDATED,
)
_BY_NAME = {event.name: event for event in EVENTS}


def event_named(name: str) -> Event:
    """The event called `name` ("HOOK_FAILED"); KeyError for an unknown one."""
    return _BY_NAME[name]


LOG_ERR = 3
LOG_NOTICE = 5
LOG_INFO = 6

# Generated once (uuid4().hex, like `systemd-id128 new`); never change a published one.
MESSAGE_IDS: Mapping[Event, str] = {
    Event.CREATED: "ccf2b8b69f5148459daab01cd03ab129",
    Event.STARTED: "7bf0659a27c94c88bf76e4e12191df27",
    Event.EXEC: "7892bba128d340d18e48d8e730e62575",
    Event.KILLED: "b7e680549f3b44d99a165ad04aa7065d",
    Event.EXITED: "6168ebbaa6344acb99d99ad1bebd17b1",
    Event.DELETED: "6cfd6647967a47bbb762bc0f4512556a",
    Event.HOOK_FAILED: "2d113792e71f4323bea53735511b3ece",
    Event.ERROR: "47bb823d623d46998319ec4a44f1ce7b",
    Event.PAUSED: "04a531fcecbc410b914a3dfcd9b95370",
    Event.RESUMED: "f9a4db4b82d841208be4724b0e99f97c",
    Event.UPDATED: "f524d6f148034ccfafea250231e0d311",
}

PRIORITIES: Mapping[Event, int] = {
    Event.ERROR: LOG_ERR,
    Event.HOOK_FAILED: LOG_ERR,
    Event.KILLED: LOG_NOTICE,
}


def is_valid_field_name(name: str) -> bool:
    """journald's journal_field_valid() for fields a client may set.

    1-64 characters of A-Z, 0-9 and _, not starting with a digit, and not starting with _
    (those are trusted fields journald adds itself and drops from clients).
    """
    if not 0 < len(name) <= _FIELD_MAX or name[0] == "_" or name[0].isdigit():
        return False
    return all("A" <= c <= "Z" or "0" <= c <= "9" or c == "_" for c in name)


def _value_bytes(value: FieldValue) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, bool):
        return b"1" if value else b"0"
    if isinstance(value, int):
        return str(value).encode()
    return value.encode("utf-8", "surrogateescape")


def serialize(fields: Mapping[str, FieldValue]) -> bytes:
    """Encode one entry in the native protocol (systemd.io/JOURNAL_NATIVE_PROTOCOL).

    `KEY=value\\n`, or for values holding a newline (or NUL) `KEY\\n<le64 size><value>\\n`.
    Raises ValueError for a field name journald would refuse.
    """
    parts: list[bytes] = []
    for name, value in fields.items():
        if not is_valid_field_name(name):
            raise ValueError(f"invalid journal field name: {name!r}")
        key = name.encode("ascii")
        data = _value_bytes(value)
        if b"\n" in data or b"\0" in data:
            parts += (key, b"\n", len(data).to_bytes(8, "little"), data, b"\n")
        else:
            parts += (key, b"=", data, b"\n")
    return b"".join(parts)


def needs_memfd(err: int) -> bool:
    """Whether a failed datagram should be retried through a memfd, as sd_journal_sendv() does."""
    return err in _MEMFD_ERRNOS


def _proc_fd_address(path: str) -> tuple[str, int | None]:
    """An address for `path` that fits sun_path; the returned dirfd must be closed after use."""
    if path.startswith("@") or len(os.fsencode(path)) <= _SUN_PATH_MAX:
        return ("\0" + path[1:] if path.startswith("@") else path), None
    directory, name = os.path.split(path)
    dirfd = os.open(directory or ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    return f"/proc/self/fd/{dirfd}/{name}", dirfd


def _new_socket() -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    _inc_sndbuf(sock)
    return sock


def _inc_sndbuf(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SNDBUF_SIZE)
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) < _SNDBUF_SIZE:
            # SO_SNDBUFFORCE (32) ignores net.core.wmem_max; needs CAP_NET_ADMIN.
            sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_SNDBUFFORCE", 32), _SNDBUF_SIZE)
    except OSError:
        pass


def _send_memfd(sock: socket.socket, address: str, payload: bytes) -> None:
    import fcntl  # only on this rare path

    fd = os.memfd_create("journal-data", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view) :]
        # journald maps sealed memfds without further checks (journald-native.c).
        fcntl.fcntl(
            fd,
            fcntl.F_ADD_SEALS,
            fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL,
        )
        rights = fd.to_bytes(4, sys.byteorder, signed=True)  # one C int
        sock.sendmsg([], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)], 0, address)
    finally:
        os.close(fd)


def _send_payload(sock: socket.socket, socket_path: str, payload: bytes) -> bool:
    try:
        address, dirfd = _proc_fd_address(socket_path)
    except OSError:
        return False
    try:
        try:
            sock.sendto(payload, address)
        except OSError as e:
            if e.errno is None or not needs_memfd(e.errno):
                raise
            _send_memfd(sock, address, payload)
    except OSError:
        # ENOENT/ECONNREFUSED: no journald. Anything else: logging must not break the runtime.
        return False
    finally:
        if dirfd is not None:
            os.close(dirfd)
    return True


def send(fields: Mapping[str, FieldValue], *, socket_path: str = JOURNAL_SOCKET) -> bool:
    """Send one entry to journald; False (never an exception) if it could not be delivered.

    ValueError is raised only for invalid field names, which are programming errors.
    """
    payload = serialize(fields)
    try:
        sock = _new_socket()
    except OSError:  # EMFILE and friends: still not the caller's problem
        return False
    try:
        return _send_payload(sock, socket_path, payload)
    finally:
        sock.close()


def _caller_location(depth: int) -> dict[str, FieldValue]:
    try:
        frame = sys._getframe(depth + 1)
    except ValueError:
        return {}
    code = frame.f_code
    return {"CODE_FILE": code.co_filename, "CODE_LINE": frame.f_lineno, "CODE_FUNC": code.co_name}


def unit_fields(unit: str | None, *, user_manager: bool) -> dict[str, FieldValue]:
    """The fields that make `journalctl -u UNIT` (root's unit) or `journalctl --user -u UNIT`
    (a unit of the sender's own user manager) show an entry sent from outside UNIT."""
    if not unit:
        return {}
    if user_manager:
        # OBJECT_SYSTEMD_UNIT stays: the catalog's texts name the scope by it.
        return {_UNIT_FIELD: unit, _USER_UNIT_FIELD: unit}
    return {_UNIT_FIELD: unit}


def event_fields(
    event: Event,
    *,
    container_id: str,
    bundle: str | os.PathLike[str] | None,
    status: str | None,
    unit: str | None,
    message: str,
    extra: Mapping[str, FieldValue] | None = None,
    user_manager: bool = False,
) -> dict[str, FieldValue]:
    """The fields `log_event()` sends, without location; separate so tests can inspect them."""
    fields: dict[str, FieldValue] = {
        "MESSAGE": message,
        "PRIORITY": event.priority,
        "MESSAGE_ID": event.message_id,
        "SYSLOG_IDENTIFIER": SYSLOG_IDENTIFIER,
        "OCI_EVENT": event.value,
        "CONTAINER_ID": container_id,
    }
    if bundle is not None:
        fields["OCI_BUNDLE"] = os.fspath(bundle)
    if status is not None:
        fields["OCI_STATUS"] = str(status)
    # Verified on systemd 252: shown by `journalctl -u <unit>` for a root sender, and by
    # `journalctl --user -u <unit>` with user_manager (docs/rootless.md, "Journal").
    fields.update(unit_fields(unit, user_manager=user_manager))
    if extra:
        fields.update(extra)
    return fields


def log_event(
    event: Event,
    *,
    container_id: str,
    bundle: str | os.PathLike[str] | None,
    status: str | None,
    unit: str | None,
    message: str,
    extra: Mapping[str, FieldValue] | None = None,
    user_manager: bool = False,
    socket_path: str = JOURNAL_SOCKET,
) -> None:
    """Record a lifecycle event; extras are fields such as SIGNAL=, EXIT_STATUS=, HOOK=, COMMAND=.
    `user_manager`: `unit` is a unit of the caller's own user manager (a rootless container).

    Silently does nothing without journald. The caller's file/line/function go in CODE_*.
    """
    fields = _caller_location(1)
    fields.update(
        event_fields(
            event,
            container_id=container_id,
            bundle=bundle,
            status=status,
            unit=unit,
            message=message,
            extra=extra,
            user_manager=user_manager,
        )
    )
    send(fields, socket_path=socket_path)


def stream_header(
    identifier: str,
    *,
    unit_id: str = "",
    priority: int = LOG_INFO,
    level_prefix: bool = False,
) -> bytes:
    """The stdout-stream setup lines sd_journal_stream_fd() writes (journald-stream.c states).

    identifier, unit id, priority, level_prefix, forward_to_syslog, forward_to_kmsg,
    forward_to_console. journald honours the unit id only from root peers.
    """
    if not 0 <= priority <= 7:
        raise ValueError(f"invalid syslog priority: {priority}")
    for what, text in (("identifier", identifier), ("unit id", unit_id)):
        if "\n" in text or "\0" in text:
            raise ValueError(f"journal stream {what} must be one line: {text!r}")
    return f"{identifier}\n{unit_id}\n{priority}\n{int(level_prefix)}\n0\n0\n0\n".encode()


def stream_fd(
    identifier: str,
    *,
    priority: int = LOG_INFO,
    level_prefix: bool = False,
    unit_id: str = "",
    socket_path: str = STDOUT_SOCKET,
) -> int:
    """A write-only fd whose lines journald records with SYSLOG_IDENTIFIER=<identifier>.

    The entries get _PID/_SYSTEMD_UNIT etc. of the process that *connects* (journald reads
    SO_PEERCRED once), so connect from inside the scope (the idler) to have `journalctl -u`
    match. Stream entries cannot carry CONTAINER_ID; use forward_stream() for that.
    Raises SyscallError when journald's stream socket is unavailable.
    """
    header = stream_header(identifier, unit_id=unit_id, priority=priority, level_prefix=level_prefix)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        address, dirfd = _proc_fd_address(socket_path)
        try:
            sock.connect(address)
        finally:
            if dirfd is not None:
                os.close(dirfd)
        sock.shutdown(socket.SHUT_RD)
        _inc_sndbuf(sock)
        sock.sendall(header)
    except OSError as e:
        sock.close()
        from oci_systemd.errors import SyscallError

        raise SyscallError("connect", socket_path, e.errno or errno.EIO) from e
    return sock.detach()


def _lines(read_fd: int, line_max: int) -> Iterator[tuple[bytes, bool]]:
    """(line, partial) pairs read from `read_fd` until EOF; partial lines hit line_max or EOF."""
    buffer = b""
    while True:
        try:
            chunk = os.read(read_fd, 65536)
        except OSError as e:
            if e.errno != errno.EIO:  # a pty master reads EIO once the slave side is gone
                raise
            chunk = b""
        if not chunk:
            if buffer:
                yield buffer, True
            return
        buffer += chunk
        while True:
            newline = buffer.find(b"\n", 0, line_max + 1)
            if newline >= 0:
                yield buffer[:newline], False
                buffer = buffer[newline + 1 :]
            elif len(buffer) >= line_max:
                yield buffer[:line_max], True
                buffer = buffer[line_max:]
            else:
                break


def forward_stream(
    read_fd: int,
    *,
    container_id: str,
    identifier: str,
    unit: str | None,
    stream_name: str,
    priority: int | None = None,
    user_manager: bool = False,
    socket_path: str = JOURNAL_SOCKET,
    line_max: int = LINE_MAX,
) -> None:
    """Copy a container's stdout/stderr pipe into the journal, one native entry per line.

    Each entry has MESSAGE, PRIORITY (6 for stdout, 3 for stderr unless given: docker's and
    podman's journald drivers do the same), SYSLOG_IDENTIFIER, CONTAINER_ID, OCI_STREAM and
    the unit's fields (unit_fields()); CONTAINER_PARTIAL_MESSAGE=true marks a line split at
    `line_max` or cut by EOF. Lines are sent as bytes, so non-UTF-8 output survives. When journald is
    absent the lines are dropped but the pipe is still drained, so the container never
    blocks on a full pipe. Returns at EOF; `read_fd` stays open (the caller owns it).
    """
    if priority is None:
        priority = LOG_ERR if stream_name == "stderr" else LOG_INFO
    base: dict[str, FieldValue] = {
        "PRIORITY": priority,
        "SYSLOG_IDENTIFIER": identifier,
        "CONTAINER_ID": container_id,
        "OCI_STREAM": stream_name,
        **unit_fields(unit, user_manager=user_manager),
    }
    serialize(base)  # validate once, up front
    sock = _new_socket()
    try:
        for line, partial in _lines(read_fd, line_max):
            fields = dict(base, MESSAGE=line)
            if partial:
                fields["CONTAINER_PARTIAL_MESSAGE"] = "true"
            _send_payload(sock, socket_path, serialize(fields))
    finally:
        sock.close()


def run_forwarder(argv: list[str]) -> None:
    """Entry of the log forwarder process: `<stdout fd> <stderr fd> <container id> <unit>
    [user]` ("user": the unit is the user manager's, see unit_fields()).

    One thread per stream; returns when both pipes reach EOF, i.e. when every process
    holding the container's stdout/stderr has exited.
    """
    import threading

    out_fd, err_fd, container_id, unit = int(argv[0]), int(argv[1]), argv[2], argv[3]
    user_manager = argv[4:] == ["user"]
    threads = [
        threading.Thread(
            target=forward_stream,
            args=(fd,),
            kwargs={
                "container_id": container_id,
                "identifier": container_id,
                "unit": unit,
                "stream_name": name,
                "user_manager": user_manager,
            },
        )
        for fd, name in ((out_fd, "stdout"), (err_fd, "stderr"))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
