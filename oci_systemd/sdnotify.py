# SPDX-License-Identifier: Apache-2.0
"""sd_notify(3) for the runtime itself, and a proxy that passes a container's messages on.

Like runc, the runtime binds `notify.sock` in a per-container host directory that is
bind-mounted at /run/notify in the container, whose NOTIFY_SOCKET is
/run/notify/notify.sock. The proxy forwards what the container sends to the host's
NOTIFY_SOCKET, replacing any MAINPID= (a pid in the container's namespace means nothing
to the host) with the container init's host pid.

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
from collections.abc import Mapping

SOCKET_NAME = "notify.sock"
CONTAINER_DIRECTORY = "/run/notify"
CONTAINER_NOTIFY_SOCKET = f"{CONTAINER_DIRECTORY}/{SOCKET_NAME}"

# systemd reads at most this much per notification (NOTIFY_BUFFER_MAX = PIPE_BUF).
NOTIFY_BUFFER_MAX = 4096
_SUN_PATH_MAX = 107  # sizeof(sun_path) is 108, minus the NUL
_MAX_FDS = 768  # systemd's per-message limit on passed fds (FDSTORE=1); we close them


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


def parse(data: bytes) -> dict[str, str]:
    """`KEY=value` lines into a dict; lines without '=' are ignored, as systemd does."""
    fields: dict[str, str] = {}
    for line in data.decode("utf-8", "replace").split("\n"):
        key, sep, value = line.partition("=")
        if sep and key:
            fields[key] = value
    return fields


def format_message(message: bytes | str | Mapping[str, str], *, mainpid: int | None = None) -> bytes:
    """Serialise a notification; with `mainpid`, any MAINPID= in it is replaced by ours."""
    if isinstance(message, Mapping):
        lines = [f"{k}={v}" for k, v in message.items()]
    else:
        text = message.decode("utf-8", "surrogateescape") if isinstance(message, bytes) else message
        lines = [line for line in text.split("\n") if line]
    if mainpid is not None:
        lines = [line for line in lines if not line.startswith("MAINPID=")]
        lines.append(f"MAINPID={mainpid}")
    return "\n".join(lines).encode("utf-8", "surrogateescape")


def send_to(socket_path: str, data: bytes) -> None:
    """Send one datagram to a notify socket; raises OSError."""
    with (
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock,
        _Address(socket_path) as address,
    ):
        sock.sendto(data, address)


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
    """The container's end of sd_notify: a datagram socket the container writes to."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self.path: str | None = None
        self.ready = False

    def bind(self, directory: str | os.PathLike[str]) -> str:
        """Create `<directory>/notify.sock` (mode 0777, like runc) and return its path.

        Paths longer than sun_path are bound through /proc/self/fd/<dirfd>/.
        """
        path = os.path.join(os.fspath(directory), SOCKET_NAME)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            with _Address(path) as address:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(address)
                sock.bind(address)
                # The container may run as any uid; the directory's own mode guards access.
                os.chmod(address, 0o777)
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
        """One datagram's payload, or None on timeout. Passed fds are closed, not forwarded."""
        sock = self._socket()
        if not _wait_readable([sock.fileno()], timeout):
            return None
        fds = array.array("i")
        data, ancdata, _flags, _addr = sock.recvmsg(
            NOTIFY_BUFFER_MAX,
            socket.CMSG_SPACE(_MAX_FDS * fds.itemsize) + socket.CMSG_SPACE(12),
            socket.MSG_CMSG_CLOEXEC,
        )
        for level, kind, cmsg in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(cmsg[: len(cmsg) - len(cmsg) % fds.itemsize])
        for fd in fds:
            os.close(fd)
        return data

    def recv(self, timeout: float | None = None) -> dict[str, str] | None:
        """One notification parsed into fields, or None on timeout."""
        data = self.recv_raw(timeout)
        return None if data is None else parse(data)

    def forward(
        self,
        host_socket: str,
        message: bytes | str | Mapping[str, str],
        *,
        mainpid: int | None,
    ) -> None:
        """Send `message` to the host's NOTIFY_SOCKET with MAINPID=<mainpid> when given."""
        send_to(host_socket, format_message(message, mainpid=mainpid))

    def _forward_one(self, host_socket: str, data: bytes, mainpid: int | None) -> bool:
        """Forward one datagram; True if it said READY=1. Empty messages are dropped."""
        fields = parse(data)
        if not fields:
            return False
        self.forward(host_socket, data, mainpid=mainpid)
        if fields.get("READY") == "1":
            self.ready = True
            return True
        return False

    def run_until_ready(
        self, host_socket: str, mainpid: int | None, *, timeout: float | None = None
    ) -> bool:
        """Forward every message until READY=1 was forwarded (True) or `timeout` passed (False).

        Raises OSError when the host socket can't be reached.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            data = self.recv_raw(remaining)
            if data is None:
                return False
            if self._forward_one(host_socket, data, mainpid):
                return True

    def forward_forever(self, host_socket: str, mainpid: int | None, stop_fd: int) -> None:
        """Forward messages until `stop_fd` is readable or hung up.

        `stop_fd` may be the read end of a pipe, or a pidfd of the container's init: a pidfd
        becomes readable when the process exits. Messages already queued are forwarded first.
        Failures to reach the host socket are ignored here.
        """
        sock = self._socket()
        while True:
            ready = _wait_readable([sock.fileno(), stop_fd], None)
            if stop_fd in ready:
                while (data := self.recv_raw(0)) is not None:
                    self._forward_quietly(host_socket, data, mainpid)
                return
            if sock.fileno() in ready and (data := self.recv_raw(0)) is not None:
                self._forward_quietly(host_socket, data, mainpid)

    def _forward_quietly(self, host_socket: str, data: bytes, mainpid: int | None) -> None:
        # The manager may be re-executing or gone; the container must not notice.
        with contextlib.suppress(OSError):
            self._forward_one(host_socket, data, mainpid)


def _wait_readable(fds: list[int], timeout: float | None) -> set[int]:
    """The subset of `fds` readable (or hung up) within `timeout` seconds (None: forever)."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    ms = None if timeout is None else math.ceil(timeout * 1000)
    events = poller.poll(ms)
    return {fd for fd, _mask in events}
