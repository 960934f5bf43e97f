# SPDX-License-Identifier: Apache-2.0
"""The runtime <-> idler transport: length-prefixed JSON objects over a unix socket.

What the objects say is protocol.py's business (one function per step); this module only
frames them. Imported by the idler, so stdlib only and nothing heavy: the C modules `_socket`
and `_json` (through `jsonio`) instead of `socket` (enum, selectors, array: ~3.5 ms) and
`json` (re: ~3 ms), and int.to_bytes instead of `struct`. Every socket here is close-on-exec
(`_socket` creates them with SOCK_CLOEXEC): when the idler execs the container's program, the
peer reads EOF, which is how `start` learns exec worked.
"""

from __future__ import annotations

import _socket
import os
import sys

from oci_systemd import jsonio

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: this runs in the idler, and typing costs ~5 ms
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

_HEADER_SIZE = 4  # big-endian unsigned length
MAX_MESSAGE = 16 * 1024 * 1024


class ChannelClosed(Exception):
    """The peer closed the channel (for `start`: the idler exec'd the program)."""


class UnixSocket(_socket.socket):
    """`_socket.socket` plus the one method of `socket.socket` its users need: accept()."""

    def accept(self) -> tuple[UnixSocket, Any]:
        # accept4(SOCK_CLOEXEC), as socket.socket.accept; typeshed does not list _accept
        fd, address = self._accept()  # type: ignore[attr-defined]
        return UnixSocket(fileno=fd), address


class Channel:
    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock

    @classmethod
    def pair(cls) -> tuple[Channel, Channel]:
        a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
        return cls(a), cls(b)

    @classmethod
    def from_fd(cls, fd: int) -> Channel:
        return cls(_socket.socket(fileno=fd))

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def send(self, msg: Mapping[str, object]) -> None:
        self.sock.sendall(_frame(msg))

    def send_with_fds(self, msg: Mapping[str, object], fds: list[int]) -> None:
        """send(), with `fds` attached to the message's first byte (SCM_RIGHTS)."""
        message = _frame(msg)
        sent = self.sock.sendmsg([message], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, _fd_bytes(fds))])
        self.sock.sendall(message[sent:])

    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ChannelClosed()
            buf += chunk
        return bytes(buf)

    def recv(self) -> Any:
        """One message, a JSON object (ChannelClosed at EOF, ValueError for anything else).
        `Any`: what it holds is for protocol.py to check and type."""
        return self._message(self._recv_exact(_HEADER_SIZE))

    def recv_with_fds(self, *, max_fds: int = 1) -> tuple[Any, list[int]]:
        """recv(), plus the fds that came with the message (none for most messages)."""
        data, fds = recv_fds(self.sock, _HEADER_SIZE, max_fds)
        try:
            if not data:
                raise ChannelClosed()
            return self._message(data + self._recv_exact(_HEADER_SIZE - len(data))), fds
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise

    def _message(self, header: bytes) -> dict[str, object]:
        size = int.from_bytes(header, "big")
        if size > MAX_MESSAGE:
            raise ValueError(f"channel message too large: {size} bytes")
        msg = _parse(self._recv_exact(size))
        if not isinstance(msg, dict):
            raise ValueError(f"channel message is not an object: {type(msg).__name__}")
        return msg


def _frame(msg: Mapping[str, object]) -> bytes:
    data = jsonio.dumps(msg).encode()
    return len(data).to_bytes(_HEADER_SIZE, "big") + data


def _parse(data: bytes) -> Any:
    """jsonio.loads, with every malformed message as ValueError. For most syntax errors the C
    scanner imports json.decoder to raise JSONDecodeError; in an idler past pivot_root that
    import fails and the scanner surfaces a SystemError instead. The idler must still see a
    junk connection to its start socket as ValueError (ignored), not die of it."""
    try:
        return jsonio.loads(data)
    except (SystemError, ImportError) as exc:
        raise ValueError(f"channel message is not JSON ({type(exc).__name__})") from None


def _fd_bytes(fds: list[int]) -> bytes:
    """SCM_RIGHTS's payload: C ints in host order (no `array` module needed)."""
    return b"".join(fd.to_bytes(4, sys.byteorder) for fd in fds)


def send_fds(sock: _socket.socket, data: bytes, fds: list[int]) -> None:
    """socket.send_fds without `socket` and `array`."""
    sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, _fd_bytes(fds))])


def recv_fds(sock: _socket.socket, bufsize: int, max_fds: int) -> tuple[bytes, list[int]]:
    """socket.recv_fds without `socket` and `array`: up to `bufsize` bytes and the fds sent
    with them (close-on-exec: MSG_CMSG_CLOEXEC)."""
    data, ancdata, _flags, _addr = sock.recvmsg(
        bufsize, _socket.CMSG_SPACE(4 * max_fds), _socket.MSG_CMSG_CLOEXEC
    )
    fds = [
        int.from_bytes(cmsg[i : i + 4], sys.byteorder)
        for level, kind, cmsg in ancdata
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS
        for i in range(0, len(cmsg) - len(cmsg) % 4, 4)
    ]
    return data, fds


def _with_address(sock: UnixSocket, path: str, op: Callable[[_socket.socket, str], None]) -> UnixSocket:
    """Call `op(sock, address)`; a path longer than sun_path's 108 bytes goes through
    /proc/self/fd/<dirfd>/<name>. Closes the socket on failure."""
    try:
        if len(path.encode()) < 100:
            op(sock, path)
        else:
            dirfd = os.open(os.path.dirname(path), os.O_PATH | os.O_CLOEXEC)
            try:
                op(sock, f"/proc/self/fd/{dirfd}/{os.path.basename(path)}")
            finally:
                os.close(dirfd)
    except BaseException:
        sock.close()
        raise
    return sock


def connect_unix(path: str, kind: int = _socket.SOCK_STREAM, *, timeout: float | None = None) -> UnixSocket:
    """Connect; with `timeout` the connect and every later read and write are bounded by it
    (TimeoutError), until `settimeout(None)`."""
    sock = UnixSocket(_socket.AF_UNIX, kind)
    if timeout is not None:
        sock.settimeout(timeout)
    return _with_address(sock, path, _socket.socket.connect)


def bind_unix(path: str, kind: int = _socket.SOCK_STREAM, *, mode: int | None = None) -> UnixSocket:
    """Bind; with `mode` the socket file gets it from the umask at bind() (whatever the caller's
    umask), never from a chmod by path afterwards, which a swapped-in symlink could redirect."""
    if mode is None:
        return _with_address(UnixSocket(_socket.AF_UNIX, kind), path, _socket.socket.bind)
    old = os.umask(0o777 & ~mode)
    try:
        return _with_address(UnixSocket(_socket.AF_UNIX, kind), path, _socket.socket.bind)
    finally:
        os.umask(old)
