# SPDX-License-Identifier: Apache-2.0
import os
import socket

import pytest

from oci_systemd import channel
from oci_systemd.channel import Channel, ChannelClosed, RemoteError


def test_roundtrip_and_error() -> None:
    a, b = Channel.pair()
    a.send(channel.PID, pid=42)
    assert b.recv(channel.PID) == {"type": "pid", "pid": 42}
    b.send_error("boom", 2, "exec")
    with pytest.raises(RemoteError) as info:
        a.recv()
    assert (info.value.message, info.value.errno, info.value.kind) == ("boom", 2, "exec")


def test_unexpected_type_and_eof() -> None:
    a, b = Channel.pair()
    a.send(channel.CREATED)
    with pytest.raises(ValueError):
        b.recv(channel.PID)
    a.close()
    with pytest.raises(ChannelClosed):
        b.recv()


def test_sockets_are_close_on_exec() -> None:
    a, _b = Channel.pair()
    assert not os.get_inheritable(a.fileno())


def test_long_unix_paths(tmp_path: object) -> None:
    deep = os.path.join(str(tmp_path), "d" * 60, "e" * 60)
    os.makedirs(deep)
    path = os.path.join(deep, "notify.sock")
    assert len(path) > 108
    srv = channel.bind_unix(path)
    srv.listen(1)
    cli = channel.connect_unix(path)
    conn, _ = srv.accept()
    cli.sendall(b"x")
    assert conn.recv(1) == b"x"
    for s in (srv, cli, conn):
        s.close()
    assert isinstance(srv, socket.socket)
