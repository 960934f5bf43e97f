# SPDX-License-Identifier: Apache-2.0
import _socket
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from oci_systemd.container import channel, protocol
from oci_systemd.container.channel import Channel, ChannelClosed
from oci_systemd.errors import IdlerError


def test_roundtrip_and_error() -> None:
    a, b = Channel.pair()
    protocol.send_pid(a, 42)
    assert protocol.recv_pid(b) == 42
    protocol.send_error(b, IdlerError("boom"))
    with pytest.raises(IdlerError, match=r"^boom$"):
        protocol.recv_created(a)


def test_unexpected_type_and_eof() -> None:
    a, b = Channel.pair()
    protocol.send_created(a)
    with pytest.raises(ValueError, match="unexpected message 'created'"):
        protocol.recv_pid(b)
    a.close()
    with pytest.raises(ChannelClosed):
        protocol.recv_pid(b)


def test_sockets_are_close_on_exec() -> None:
    a, _b = Channel.pair()
    assert not os.get_inheritable(a.fileno())


def test_long_unix_paths(tmp_path: object) -> None:
    deep = os.path.join(str(tmp_path), "d" * 60, "e" * 60)
    os.makedirs(deep)
    path = os.path.join(deep, "start.sock")
    assert len(path) > 108
    srv = channel.bind_unix(path)
    srv.listen(1)
    cli = channel.connect_unix(path)
    conn, _ = srv.accept()
    cli.sendall(b"x")
    assert conn.recv(1) == b"x"
    assert not os.get_inheritable(conn.fileno())
    for s in (srv, cli, conn):
        s.close()
    assert isinstance(srv, _socket.socket) and isinstance(conn, channel.UnixSocket)


def test_wire_format_is_json_dumps_compact_with_a_big_endian_length() -> None:
    a, b = Channel.pair()
    a.send({"type": "plan", "config": {"args": ["sh", "é"], "n": 1.5, "t": True, "z": None}})
    raw = b.sock.recv(1 << 16)
    body = json.dumps(
        {"type": "plan", "config": {"args": ["sh", "é"], "n": 1.5, "t": True, "z": None}},
        separators=(",", ":"),
    ).encode()
    assert raw == len(body).to_bytes(4, "big") + body


def test_a_non_object_message_is_refused() -> None:
    a, b = Channel.pair()
    a.sock.sendall((2).to_bytes(4, "big") + b"[]")
    with pytest.raises(ValueError, match="not an object"):
        b.recv()


def test_send_fds_passes_a_descriptor() -> None:
    a, b = Channel.pair()
    r, w = os.pipe()
    channel.send_fds(a.sock, b"/dev/ptmx", [w])
    msg, fds, _flags, _addr = socket.recv_fds(socket.socket(fileno=os.dup(b.fileno())), 64, 1)
    assert msg == b"/dev/ptmx" and len(fds) == 1
    os.write(fds[0], b"ok")
    assert os.read(r, 2) == b"ok"
    for fd in (r, w, *fds):
        os.close(fd)


def test_malformed_json_is_value_error_even_without_the_json_package() -> None:
    """Past pivot_root the idler cannot import json.decoder, which the C scanner wants for
    its JSONDecodeError: a junk message must still be a ValueError the idler ignores."""
    code = (
        "import sys; sys.path.insert(0, {root!r}); from oci_systemd.container.channel import Channel\n"
        "sys.path[:] = []; sys.meta_path[:] = [m for m in sys.meta_path if 'PathFinder' not in repr(m)]\n"
        "for junk in (b'{{\"type\" 1}}', b'\"abc', b'{{\"a\":1', b'[1]'):\n"
        "    a, b = Channel.pair(); a.sock.sendall(len(junk).to_bytes(4, 'big') + junk)\n"
        "    try:\n"
        "        b.recv()\n"
        "    except ValueError as exc:\n"
        "        print(type(exc).__name__)\n"
    )
    root = str(Path(__file__).resolve().parents[2])
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code.format(root=root)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ValueError"] * 4


def test_message_with_fds() -> None:
    """The seccomp hand-over: an fd travels with a message; other messages carry none."""
    a, b = Channel.pair()
    r, w = os.pipe()
    try:
        protocol.send_seccomp(a, w)
        protocol.send_exec(a)
        fds = protocol.recv_exec_or_seccomp(b)
        assert fds is not None and len(fds) == 1
        os.write(fds[0], b"through")
        os.close(fds[0])
        assert os.read(r, 10) == b"through"
        assert protocol.recv_exec_or_seccomp(b) is None
    finally:
        for fd in (r, w):
            os.close(fd)
        a.close()
        b.close()
