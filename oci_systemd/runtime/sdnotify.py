# SPDX-License-Identifier: Apache-2.0
"""sd_notify(3) for the runtime itself, and a relay that passes a container's messages on.

Like runc, the runtime binds `notify.sock` in a per-container host directory that is
bind-mounted read-only at /run/notify in the container, whose NOTIFY_SOCKET is
/run/notify/notify.sock. The relay reads what the container sends and tells the host's
NOTIFY_SOCKET only what a container may say about its own service, in a bounded way:

- each datagram is split into tags exactly as systemd 252 does it (`split_tags`), so what
  we check is what systemd would act on (a tag after a `\\r` is a tag);
- only an allow-list of fields passes (`ALLOWED`): nothing that names a pid (MAINPID=,
  which the relay always sets itself to the container init's host pid), passes fds
  (FDSTORE=, BARRIER=) or moves the service's timeouts (EXTEND_TIMEOUT_USEC=,
  WATCHDOG_USEC=); fds passed with a message are closed;
- the relay reads at most `RECV_RATE` datagrams a second (the container's sends then block
  on the full socket: a flood costs the container, not the relay) and sends at most
  `SEND_RATE` messages a second to the host, coalesced: the last value of each field wins
  and an unchanged value is not sent again.

Only unix sockets are handled ("/path" and abstract "@name"); the vsock: addresses of
newer systemd are not.
"""

from __future__ import annotations

import array
import contextlib
import math
import os
import select
import socket
import time
from collections.abc import Iterable, Mapping

SOCKET_NAME = "notify.sock"
CONTAINER_DIRECTORY = "/run/notify"
CONTAINER_NOTIFY_SOCKET = f"{CONTAINER_DIRECTORY}/{SOCKET_NAME}"

# systemd reads at most this much per notification (NOTIFY_BUFFER_MAX = PIPE_BUF).
NOTIFY_BUFFER_MAX = 4096
_SUN_PATH_MAX = 107  # sizeof(sun_path) is 108, minus the NUL
_MAX_FDS = 768  # systemd's per-message limit on passed fds (FDSTORE=1); we close them

# What a container may tell its service, as systemd 252's service_notify_message reads it:
# field -> the values it acts on (None: any value, first occurrence in a message) and the
# longest value relayed, in UTF-8 bytes (escaped, all of them fit in NOTIFY_BUFFER_MAX).
# READY/RELOADING/STOPPING/WATCHDOG count only as exact tags.
ALLOWED: dict[str, tuple[frozenset[str] | None, int]] = {
    "READY": (frozenset({"1"}), 1),
    "RELOADING": (frozenset({"1"}), 1),
    "STOPPING": (frozenset({"1"}), 1),
    "WATCHDOG": (frozenset({"1", "trigger"}), 7),
    "STATUS": (None, 1024),
    "ERRNO": (None, 16),
    "BUSERROR": (None, 255),
}
# The service's state: one at a time, the latest wins (RELOADING=1 ... READY=1 is a reload).
_PHASES = ("READY", "RELOADING", "STOPPING")
# Pings, not state: relayed once per coalesced message whenever one came in.
_EVENTS = ("WATCHDOG",)

RECV_RATE, RECV_BURST = 100.0, 100  # datagrams read from the container per second
SEND_RATE, SEND_BURST = 5.0, 5  # messages sent to the host's systemd per second
_DRAIN_MAX = 1024  # datagrams still read once the init has exited (the queue holds fewer)


def split_tags(data: bytes) -> list[str] | None:
    """A datagram's tags as systemd 252 reads them, or None when systemd drops it whole.

    manager_dispatch_notify_fd: more than NOTIFY_BUFFER_MAX bytes or an embedded NUL (one
    trailing NUL is allowed) drops the message; strv_split_newlines() then splits on "\\n"
    and "\\r", coalescing runs of them, and a backslash takes the next byte literally
    (extract_first_word without flags): a trailing backslash fails the split, and the
    message is dropped.
    """
    if len(data) > NOTIFY_BUFFER_MAX:
        return None
    if data.endswith(b"\0"):
        data = data[:-1]
    if b"\0" in data:
        return None
    tags: list[str] = []
    word = bytearray()
    in_word = escaped = False
    for byte in data:
        if escaped:
            word.append(byte)
            escaped = False
        elif byte == 0x5C:  # backslash
            in_word = escaped = True
        elif byte in (0x0A, 0x0D):
            if in_word:
                tags.append(word.decode("utf-8", "surrogateescape"))
                word.clear()
                in_word = False
        else:
            word.append(byte)
            in_word = True
    if escaped:
        return None
    if in_word:
        tags.append(word.decode("utf-8", "surrogateescape"))
    return tags


def allowed_fields(tags: Iterable[str]) -> dict[str, str]:
    """The allow-listed fields of one message, in message order.

    A value field counts at its first occurrence (systemd's strv_find_startswith); of the
    phases the last one stands for the message.
    """
    fields: dict[str, str] = {}
    for tag in tags:
        key, sep, value = tag.partition("=")
        rule = ALLOWED.get(key)
        if not sep or rule is None:
            continue
        values, longest = rule
        if values is not None:
            if value not in values:
                continue
            if key in _PHASES:
                for phase in _PHASES:
                    fields.pop(phase, None)
            fields[key] = value
        elif key not in fields:
            fields[key] = _truncate(value, longest)
    return fields


def _truncate(value: str, limit: int) -> str:
    """`value` cut to at most `limit` UTF-8 bytes, at a character boundary."""
    data = value.encode("utf-8", "surrogateescape")
    if len(data) <= limit:
        return value
    end = limit
    while end > 0 and data[end] & 0xC0 == 0x80:  # a continuation byte: back off
        end -= 1
    return data[:end].decode("utf-8", "surrogateescape")


def parse(data: bytes) -> dict[str, str]:
    """`KEY=value` tags into a dict (first occurrence wins, as in systemd); {} if systemd
    would drop the message. Every field, allowed or not: see allowed_fields()."""
    fields: dict[str, str] = {}
    for tag in split_tags(data) or []:
        key, sep, value = tag.partition("=")
        if sep and key and key not in fields:
            fields[key] = value
    return fields


def _escape(value: str) -> str:
    """Backslash every separator and backslash: systemd's split reads back exactly `value`."""
    return "".join("\\" + ch if ch in "\\\n\r" else ch for ch in value)


def format_message(fields: Mapping[str, str], *, mainpid: int | None = None) -> bytes:
    """Serialise allow-listed `fields` (others are dropped), then MAINPID=<mainpid> if given.

    Values are escaped, so each field is one tag to systemd whatever it contains.
    """
    lines = [f"{k}={_escape(v)}" for k, v in allowed_fields(f"{k}={v}" for k, v in fields.items()).items()]
    if mainpid is not None:
        lines.append(f"MAINPID={mainpid}")
    return "\n".join(lines).encode("utf-8", "surrogateescape")


class _Bucket:
    """A token bucket: `rate` tokens a second, at most `burst` saved up."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def wait(self) -> float:
        """Seconds until a token is there (0: now)."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self) -> None:
        self.tokens -= 1


class _Address:
    """An address that fits sun_path: abstract '@name', a short path, or /proc/self/fd/<dir>/name."""

    def __init__(self, path: str) -> None:
        self.dirfd: int | None = None
        if path.startswith("@"):
            self.address = "\0" + path[1:]
        elif len(os.fsencode(path)) <= _SUN_PATH_MAX:
            self.address = path
        else:
            directory, name = os.path.split(path)
            self.dirfd = os.open(directory or ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            self.address = f"/proc/self/fd/{self.dirfd}/{name}"

    def __enter__(self) -> str:
        return self.address

    def __exit__(self, *exc: object) -> None:
        if self.dirfd is not None:
            os.close(self.dirfd)
            self.dirfd = None


def send_to(socket_path: str, data: bytes) -> None:
    """Send one datagram to a notify socket; raises OSError."""
    with (
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock,
        _Address(socket_path) as address,
    ):
        sock.sendto(data, address)


def notify_barrier(message: str, socket_path: str, *, timeout: float) -> bool:
    """`message`, then sd_notify_barrier(): BARRIER=1 carrying a pipe's write end, which
    systemd closes once it has processed everything sent before. True when it did within
    `timeout` seconds, False if not; OSError when the socket cannot be reached."""
    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        with (
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock,
            _Address(socket_path) as address,
        ):
            sock.connect(address)
            sock.send(message.encode())
            sock.sendmsg([b"BARRIER=1"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [w]))])
        os.close(w)
        w = -1
        poller = select.poll()
        poller.register(r, select.POLLHUP)
        return bool(poller.poll(int(timeout * 1000)))
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def notify(message: str, socket_path: str | None = None) -> bool:
    """sd_notify(0, message): True if sent, False when there is no NOTIFY_SOCKET or it failed."""
    path = socket_path if socket_path is not None else os.environ.get("NOTIFY_SOCKET")
    if not path or not (path.startswith(("/", "@"))):
        return False
    try:
        send_to(path, message.encode())
    except OSError:
        return False
    return True


class NotifyProxy:
    """The container's end of sd_notify: a datagram socket the container writes to, and
    the relay's state (what is pending, what systemd was told, the rate limits)."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self.path: str | None = None
        self.ready = False
        self.received = 0  # datagrams the relay read from the container
        self.forwarded = 0  # messages sent to the host
        self._pending: dict[str, str] = {}
        self._sent: dict[str, str] = {}
        self._recv_bucket = _Bucket(RECV_RATE, RECV_BURST)
        self._send_bucket = _Bucket(SEND_RATE, SEND_BURST)

    def bind(self, directory: str | os.PathLike[str]) -> str:
        """Create `<directory>/notify.sock` (mode 0777, like runc) and return its path.

        The mode comes from the umask at bind(), not a chmod by path afterwards: a path
        may be a symlink by then. Paths longer than sun_path are bound through
        /proc/self/fd/<dirfd>/.
        """
        path = os.path.join(os.fspath(directory), SOCKET_NAME)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            with _Address(path) as address:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(address)
                # The container may run as any uid; the directory guards who else gets here.
                old = os.umask(0)
                try:
                    sock.bind(address)
                finally:
                    os.umask(old)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self.path = path
        return path

    def _socket(self) -> socket.socket:
        if self._sock is None:
            raise RuntimeError("NotifyProxy.bind() was not called")
        return self._sock

    def fileno(self) -> int:
        return self._socket().fileno()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> NotifyProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def recv_raw(self, timeout: float | None = None) -> bytes | None:
        """One datagram's payload, or None on timeout; b"" for one systemd would drop as
        too long. Passed fds are closed, not forwarded."""
        sock = self._socket()
        if not _wait_readable([sock.fileno()], timeout):
            return None
        fds = array.array("i")
        data, ancdata, flags, _addr = sock.recvmsg(
            NOTIFY_BUFFER_MAX,
            socket.CMSG_SPACE(_MAX_FDS * fds.itemsize) + socket.CMSG_SPACE(12),
            socket.MSG_CMSG_CLOEXEC,
        )
        for level, kind, cmsg in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(cmsg[: len(cmsg) - len(cmsg) % fds.itemsize])
        for fd in fds:
            os.close(fd)
        return b"" if flags & socket.MSG_TRUNC else data

    def recv(self, timeout: float | None = None) -> dict[str, str] | None:
        """One notification parsed into fields, or None on timeout."""
        data = self.recv_raw(timeout)
        return None if data is None else parse(data)

    def forward(self, host_socket: str, message: Mapping[str, str], *, mainpid: int | None) -> None:
        """Send the runtime's own `message` to the host's NOTIFY_SOCKET now, with
        MAINPID=<mainpid> when given; the relay then knows systemd has been told."""
        send_to(host_socket, format_message(message, mainpid=mainpid))
        self.forwarded += 1
        self._record_sent(allowed_fields(f"{k}={v}" for k, v in message.items()))

    def _record_sent(self, fields: Mapping[str, str]) -> None:
        for key, value in fields.items():
            if key in _PHASES:
                self._sent["phase"] = key
                self.ready = self.ready or key == "READY"
            elif key not in _EVENTS:
                self._sent[key] = value

    def _take_in(self, data: bytes) -> None:
        """Merge one datagram's allowed fields into what is pending (the last value wins)."""
        for key, value in allowed_fields(split_tags(data) or []).items():
            if key in _PHASES:
                for phase in _PHASES:
                    self._pending.pop(phase, None)
            self._pending[key] = value

    def _news(self) -> dict[str, str]:
        """The pending fields systemd has not been told yet."""
        news: dict[str, str] = {}
        for key, value in self._pending.items():
            if key in _PHASES:
                if self._sent.get("phase") != key:
                    news[key] = value
            elif key in _EVENTS or self._sent.get(key) != value:
                news[key] = value
        return news

    def _flush(self, host_socket: str, mainpid: int | None, *, force: bool = False) -> float | None:
        """Send what is new if the send budget allows: None when nothing is left to send,
        else the seconds until the next try. Raises OSError when the host can't be reached
        (what was pending is dropped then)."""
        news = self._news()
        if not news:
            self._pending.clear()
            return None
        wait = self._send_bucket.wait()
        if wait > 0 and not force:
            return wait
        self._send_bucket.take()
        self._pending.clear()
        send_to(host_socket, format_message(news, mainpid=mainpid))
        self.forwarded += 1
        self._record_sent(news)
        return None

    def _relay(
        self,
        host_socket: str,
        mainpid: int | None,
        *,
        deadline: float | None,
        stop_fd: int | None,
        until_ready: bool,
    ) -> bool:
        """The relay loop: read within the read budget, send within the send budget, until
        READY=1 was sent (`until_ready`, True), `deadline` passed (False) or `stop_fd` is
        readable (queued messages are read and sent once more, then False)."""
        sock = self._socket().fileno()
        while not (until_ready and self.ready):
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return False
            timeouts = [self._flush(host_socket, mainpid), self._recv_bucket.wait() or None]
            if until_ready and self.ready:
                break
            if deadline is not None:
                timeouts.append(deadline - now)
            fds = [] if stop_fd is None else [stop_fd]
            if timeouts[1] is None:  # a read token is there: wait for the container too
                fds.append(sock)
            waits = [t for t in timeouts if t is not None]
            ready = _wait_readable(fds, min(waits) if waits else None)
            if stop_fd is not None and stop_fd in ready:
                self._drain(host_socket, mainpid)
                return False
            if sock in ready and (data := self.recv_raw(0)) is not None:
                self._recv_bucket.take()
                self.received += 1
                self._take_in(data)
        return True

    def _drain(self, host_socket: str, mainpid: int | None) -> None:
        """The container has exited: what it queued (a bounded number) goes out in one message."""
        for _ in range(_DRAIN_MAX):
            data = self.recv_raw(0)
            if data is None:
                break
            self._take_in(data)
        self._flush(host_socket, mainpid, force=True)

    def run_until_ready(
        self, host_socket: str, mainpid: int | None, *, timeout: float | None = None
    ) -> bool:
        """Relay until READY=1 was sent (True) or `timeout` passed (False).

        Raises OSError when the host socket can't be reached.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        return self._relay(host_socket, mainpid, deadline=deadline, stop_fd=None, until_ready=True)

    def forward_forever(self, host_socket: str, mainpid: int | None, stop_fd: int) -> None:
        """Relay until `stop_fd` is readable or hung up.

        `stop_fd` may be the read end of a pipe, or a pidfd of the container's init: a pidfd
        becomes readable when the process exits. Messages already queued are relayed first.
        Failures to reach the host socket are ignored here: the manager may be re-executing
        or gone, and the container must not notice.
        """
        while True:
            try:
                self._relay(host_socket, mainpid, deadline=None, stop_fd=stop_fd, until_ready=False)
                return
            except OSError:
                continue


def _wait_readable(fds: list[int], timeout: float | None) -> set[int]:
    """The subset of `fds` readable (or hung up) within `timeout` seconds (None: forever)."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    ms = None if timeout is None else math.ceil(timeout * 1000)
    events = poller.poll(ms)
    return {fd for fd, _mask in events}
