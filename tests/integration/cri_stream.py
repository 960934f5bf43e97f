# SPDX-License-Identifier: Apache-2.0
"""The streaming half of CRI's Exec, without crictl: the Exec RPC answers with a URL of
containerd's streaming server (http://127.0.0.1:<port>/exec/<token>, in containerd's network
namespace); connecting to it runs the command. The server (the kubelet's streaming package)
speaks SPDY or, asked for a websocket, Kubernetes' channel protocol: binary messages whose first
byte is the channel (1 stdout, 2 stderr, 3 the final status as a JSON metav1.Status, in
v4.channel.k8s.io). A minimal websocket client over the standard library is enough for that: the
client sends nothing but its handshake (no stdin, no tty).
"""

from __future__ import annotations

import base64
import ctypes
import io
import json
import os
import secrets
import socket
import struct
import threading
from pathlib import Path
from urllib.parse import urlsplit

from cri_client import ExecSyncResult

PROTOCOL = "v4.channel.k8s.io"
STDOUT, STDERR, ERROR = 1, 2, 3
CLOSE, CONTINUATION = 8, 0
CLONE_NEWNET = 0x40000000


class StreamError(Exception):
    pass


def run(url: str, netns: Path, timeout: float = 30) -> ExecSyncResult:
    """Connect to `url` from inside the network namespace `netns` and collect the command's
    output and exit status."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname is None or parts.port is None:
        raise StreamError(f"unexpected streaming URL {url!r}")
    with (
        connect_in(netns, (parts.hostname, parts.port), timeout) as sock,
        handshake(sock, parts.netloc, parts.path) as reader,
    ):
        return collect(reader)


def connect_in(netns: Path, address: tuple[str, int], timeout: float) -> socket.socket:
    """A TCP connection made in another network namespace: a thread of its own enters it
    (setns(2) acts on the calling thread only) and ends; the socket stays where it was made."""
    made: list[socket.socket | BaseException] = []

    def enter_and_connect() -> None:
        try:
            fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {netns}")
            finally:
                os.close(fd)
            made.append(socket.create_connection(address, timeout=timeout))
        except BaseException as exc:
            made.append(exc)

    thread = threading.Thread(target=enter_and_connect, name="cri-stream-netns")
    thread.start()
    thread.join()
    if isinstance(made[0], BaseException):
        raise StreamError(f"connect to {address} in {netns}: {made[0]}") from made[0]
    return made[0]


def handshake(sock: socket.socket, host: str, path: str) -> io.BufferedReader:
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: {PROTOCOL}\r\n\r\n"
    )
    sock.sendall(request.encode())
    # One buffered reader for the answer's head and the frames that may follow it at once.
    reader = sock.makefile("rb")
    status = reader.readline()
    if not status.startswith(b"HTTP/1.1 101"):
        raise StreamError(f"no websocket upgrade: {status + reader.read1(4096)!r}")
    while reader.readline() not in (b"\r\n", b""):
        pass
    return reader


def collect(reader: io.BufferedReader) -> ExecSyncResult:
    out = {STDOUT: bytearray(), STDERR: bytearray(), ERROR: bytearray()}
    for message in messages(reader):
        if message:
            out.setdefault(message[0], bytearray()).extend(message[1:])
    return ExecSyncResult(exit_code(bytes(out[ERROR])), bytes(out[STDOUT]), bytes(out[STDERR]))


def messages(reader: io.BufferedReader) -> list[bytes]:
    """Every data message up to a close frame or the end of the connection (server frames are
    not masked; fragments are joined)."""
    read = reader.read
    found: list[bytes] = []
    partial = bytearray()
    while True:
        head = read(2)
        if len(head) < 2:
            return found
        fin, opcode, length = head[0] & 0x80, head[0] & 0x0F, head[1] & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", read(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", read(8))
        payload = read(length)
        if opcode == CLOSE:
            return found
        if opcode > CLOSE:
            continue  # ping/pong: the command is short, no keep-alive needed
        partial.extend(payload)
        if fin:
            found.append(bytes(partial))
            partial.clear()


def exit_code(status: bytes) -> int:
    """v4's status channel: nothing or Success is 0; NonZeroExitCode carries the code."""
    if not status.strip():
        return 0
    doc = json.loads(status)
    if doc.get("status") == "Success":
        return 0
    if doc.get("reason") == "NonZeroExitCode":
        for cause in doc.get("details", {}).get("causes", []):
            if cause.get("reason") == "ExitCode":
                return int(cause["message"])
    raise StreamError(f"exec failed: {doc.get('message', doc)}")
