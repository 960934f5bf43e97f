# SPDX-License-Identifier: Apache-2.0
"""NotifyProxy between a fake container (a client socket) and a fake host NOTIFY_SOCKET."""

from __future__ import annotations

import array
import contextlib
import os
import select
import socket
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from oci_systemd.runtime import sdnotify
from oci_systemd.runtime.sdnotify import NotifyProxy


class FakeHost:
    """What systemd's notify socket receives."""

    def __init__(self, address: str, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(5)

    def recv(self) -> list[str]:
        return self.sock.recv(65536).decode().split("\n")

    def pending(self) -> bool:
        readable, _, _ = select.select([self.sock], [], [], 0)
        return bool(readable)


@pytest.fixture
def host(tmp_path: Path) -> Iterator[FakeHost]:
    path = os.fspath(tmp_path / "host.sock")
    fake = FakeHost(path, path)
    yield fake
    fake.sock.close()


@pytest.fixture
def abstract_host() -> Iterator[FakeHost]:
    name = f"oci-systemd-test-{uuid.uuid4().hex}"
    fake = FakeHost("\0" + name, "@" + name)
    yield fake
    fake.sock.close()


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[NotifyProxy]:
    directory = tmp_path / "notify"
    directory.mkdir()
    with NotifyProxy() as p:
        p.bind(directory)
        yield p


def container_send(proxy: NotifyProxy, message: bytes) -> None:
    assert proxy.path is not None
    assert sdnotify.notify(message.decode(), proxy.path)


def test_bind_creates_world_writable_socket(tmp_path: Path) -> None:
    with NotifyProxy() as p:
        path = p.bind(tmp_path)
        assert path == os.fspath(tmp_path / "notify.sock")
        st = os.stat(path)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o777
        assert p.fileno() >= 0
        assert socket.socket(fileno=os.dup(p.fileno())).getsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED)


def test_bind_replaces_stale_socket(tmp_path: Path) -> None:
    (tmp_path / "notify.sock").write_text("stale")
    with NotifyProxy() as p:
        p.bind(tmp_path)
        container_send(p, b"STATUS=hi")
        assert p.recv(5) == {"STATUS": "hi"}


def test_bind_long_path(tmp_path: Path) -> None:
    deep = tmp_path / ("a" * 60) / ("b" * 60)
    deep.mkdir(parents=True)
    with NotifyProxy() as p:
        path = p.bind(deep)
        assert len(os.fsencode(path)) > 108
        assert os.path.exists(path)
        container_send(p, b"READY=1")
        assert p.recv(5) == {"READY": "1"}


def test_recv_parses_and_times_out(proxy: NotifyProxy) -> None:
    assert proxy.recv(0.01) is None
    container_send(proxy, b"READY=1\nSTATUS=up and running\nnonsense\n=x\nERRNO=2")
    assert proxy.recv(5) == {"READY": "1", "STATUS": "up and running", "ERRNO": "2"}


def test_recv_closes_passed_fds(proxy: NotifyProxy) -> None:
    assert proxy.path is not None
    r, w = os.pipe()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        rights = array.array("i", [w]).tobytes()
        s.sendmsg([b"FDSTORE=1"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)], 0, proxy.path)
    os.close(w)
    assert proxy.recv(5) == {"FDSTORE": "1"}
    # The proxy closed its copy of the write end: the pipe reads EOF.
    assert os.read(r, 1) == b""
    os.close(r)


def test_run_until_ready_forwards_with_mainpid(proxy: NotifyProxy, host: FakeHost) -> None:
    container_send(proxy, b"STATUS=starting")
    container_send(proxy, b"MAINPID=1\nREADY=1")
    container_send(proxy, b"STATUS=after ready")
    assert proxy.run_until_ready(host.path, 4242, timeout=5)
    assert proxy.ready
    assert host.recv() == ["STATUS=starting", "MAINPID=4242"]
    # The container's own MAINPID=1 is replaced by the host pid.
    assert host.recv() == ["READY=1", "MAINPID=4242"]
    assert not host.pending()
    # The message after READY=1 is still queued for forward_forever().
    assert proxy.recv(5) == {"STATUS": "after ready"}


def test_run_until_ready_times_out(proxy: NotifyProxy, host: FakeHost) -> None:
    container_send(proxy, b"STATUS=slow")
    assert not proxy.run_until_ready(host.path, 1, timeout=0.05)
    assert not proxy.ready
    assert host.recv() == ["STATUS=slow", "MAINPID=1"]


def test_run_until_ready_abstract_host(proxy: NotifyProxy, abstract_host: FakeHost) -> None:
    container_send(proxy, b"READY=1")
    assert proxy.run_until_ready(abstract_host.path, 77, timeout=5)
    assert abstract_host.recv() == ["READY=1", "MAINPID=77"]


def test_run_until_ready_unreachable_host_raises(proxy: NotifyProxy, tmp_path: Path) -> None:
    container_send(proxy, b"READY=1")
    with pytest.raises(OSError):
        proxy.run_until_ready(os.fspath(tmp_path / "missing"), 1, timeout=5)


def test_forward_to_long_host_path(proxy: NotifyProxy, tmp_path: Path) -> None:
    deep = tmp_path / ("h" * 60) / ("i" * 60)
    deep.mkdir(parents=True)
    path = os.fspath(deep / "host.sock")
    dirfd = os.open(deep, os.O_PATH)
    try:
        fake = FakeHost(f"/proc/self/fd/{dirfd}/host.sock", path)
    finally:
        os.close(dirfd)
    try:
        proxy.forward(path, {"READY": "1"}, mainpid=5)
        assert fake.recv() == ["READY=1", "MAINPID=5"]
    finally:
        fake.sock.close()


def test_forward_without_mainpid_keeps_message(proxy: NotifyProxy, host: FakeHost) -> None:
    proxy.forward(host.path, {"WATCHDOG": "1"}, mainpid=None)
    assert host.recv() == ["WATCHDOG=1"]


def test_forward_forever_until_stop_fd(proxy: NotifyProxy, host: FakeHost) -> None:
    r, w = os.pipe()
    thread = threading.Thread(target=proxy.forward_forever, args=(host.path, 9, r))
    thread.start()
    try:
        container_send(proxy, b"WATCHDOG=1")
        assert host.recv() == ["WATCHDOG=1", "MAINPID=9"]
        container_send(proxy, b"RELOADING=1")
        assert host.recv() == ["RELOADING=1", "MAINPID=9"]
        container_send(proxy, b"STOPPING=1")
    finally:
        os.close(w)  # EOF on the stop pipe
        thread.join(5)
    assert not thread.is_alive()
    assert host.recv() == ["STOPPING=1", "MAINPID=9"]
    os.close(r)


def test_forward_forever_survives_missing_host(proxy: NotifyProxy, tmp_path: Path) -> None:
    r, w = os.pipe()
    container_send(proxy, b"STATUS=nobody listens")
    os.write(w, b"x")
    proxy.forward_forever(os.fspath(tmp_path / "missing"), 9, r)
    os.close(r)
    os.close(w)


def test_forward_forever_stops_on_pidfd(proxy: NotifyProxy, host: FakeHost) -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    pidfd = os.pidfd_open(pid)
    try:
        proxy.forward_forever(host.path, pid, pidfd)
    finally:
        os.close(pidfd)
        os.waitpid(pid, 0)


def test_empty_messages_are_not_forwarded(proxy: NotifyProxy, host: FakeHost) -> None:
    container_send(proxy, b"\n")
    container_send(proxy, b"READY=1")
    assert proxy.run_until_ready(host.path, 3, timeout=5)
    assert host.recv() == ["READY=1", "MAINPID=3"]
    assert not host.pending()


def test_format_message() -> None:
    assert sdnotify.format_message({"READY": "1", "STATUS": "ok"}) == b"READY=1\nSTATUS=ok"
    assert sdnotify.format_message({"READY": "1", "MAINPID": "1"}, mainpid=10) == b"READY=1\nMAINPID=10"
    assert sdnotify.format_message({"STATUS": "x"}, mainpid=None) == b"STATUS=x"


def test_parse() -> None:
    assert sdnotify.parse(b"A=1\nB=x=y\n\nbad\n") == {"A": "1", "B": "x=y"}


def test_notify_uses_environment(host: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", host.path)
    assert sdnotify.notify("READY=1")
    assert host.recv() == ["READY=1"]


def test_notify_abstract(abstract_host: FakeHost) -> None:
    assert sdnotify.notify("STATUS=abstract", abstract_host.path)
    assert abstract_host.recv() == ["STATUS=abstract"]


def test_notify_without_socket(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not sdnotify.notify("READY=1")
    assert not sdnotify.notify("READY=1", os.fspath(tmp_path / "missing"))
    assert not sdnotify.notify("READY=1", "relative/path")


def test_unbound_proxy() -> None:
    with pytest.raises(RuntimeError):
        NotifyProxy().fileno()


# -- what systemd acts on (issue 14, items 4 and 5) ------------------------------------


def test_split_tags_as_systemd_252() -> None:
    """strv_split_newlines() + extract_first_word(flags=0), as manager_dispatch_notify_fd uses them."""
    split = sdnotify.split_tags
    assert split(b"STATUS=x\rMAINPID=1") == ["STATUS=x", "MAINPID=1"]
    assert split(b"\n\r\nA=1\r\r\nB=2\n") == ["A=1", "B=2"]
    assert split(b"STATUS=a\\\nb\\\\") == ["STATUS=a\nb\\"]  # a backslash takes the next byte
    assert split(b"STATUS=\"quoted'") == ["STATUS=\"quoted'"]  # quotes mean nothing
    assert split(b"READY=1\\") is None  # trailing backslash: the split fails, message dropped
    assert split(b"READY=1\0MAINPID=1") is None  # embedded NUL: dropped
    assert split(b"READY=1\0") == ["READY=1"]  # one trailing NUL is allowed
    assert split(b"A" * 4097) is None
    assert split(b"") == []


def test_format_message_escapes_separators() -> None:
    hostile = "x\rMAINPID=1\nMAINPID=2\\"
    data = sdnotify.format_message({"STATUS": hostile}, mainpid=99)
    assert sdnotify.split_tags(data) == [f"STATUS={hostile}", "MAINPID=99"]


def _host_tags(host: FakeHost) -> list[str]:
    tags = sdnotify.split_tags(host.sock.recv(65536))
    assert tags is not None
    return tags


def test_mainpid_after_carriage_return_is_not_relayed(proxy: NotifyProxy, host: FakeHost) -> None:
    """The attack: `STATUS=x\\rMAINPID=<host pid>` made systemd adopt any host process."""
    container_send(proxy, b"STATUS=x\rMAINPID=4321\nREADY=1")
    assert proxy.run_until_ready(host.path, 77, timeout=5)
    tags = _host_tags(host)
    assert [t for t in tags if t.startswith("MAINPID=")] == ["MAINPID=77"]
    assert tags == ["STATUS=x", "READY=1", "MAINPID=77"]


def test_escaped_newline_is_one_tag(proxy: NotifyProxy, host: FakeHost) -> None:
    container_send(proxy, b"READY=1\nSTATUS=a\\\nMAINPID=5")
    assert proxy.run_until_ready(host.path, 77, timeout=5)
    assert _host_tags(host) == ["READY=1", "STATUS=a\nMAINPID=5", "MAINPID=77"]


@pytest.mark.parametrize(
    "message",
    [
        b"MAINPID=1",
        b"EXTEND_TIMEOUT_USEC=100000000",
        b"WATCHDOG_USEC=1",
        b"FDSTORE=1\nFDNAME=x",
        b"FDSTOREREMOVE=1\nFDNAME=x",
        b"BARRIER=1",
        b"NOTIFYACCESS=all",
        b"READY=yes",
        b"X_CUSTOM=1",
        b"READY=1\\",  # systemd drops it whole: so do we
    ],
)
def test_denied_fields_are_not_relayed(proxy: NotifyProxy, host: FakeHost, message: bytes) -> None:
    container_send(proxy, message)
    assert not proxy.run_until_ready(host.path, 77, timeout=0.3)
    assert not host.pending()


def test_repeats_are_coalesced(proxy: NotifyProxy, host: FakeHost) -> None:
    for message in (b"READY=1\nSTATUS=up", b"READY=1", b"STATUS=up", b"WATCHDOG=1"):
        container_send(proxy, message)
    r, w = os.pipe()
    os.close(w)  # the container has exited: everything queued goes out once
    proxy.forward_forever(host.path, 7, r)
    os.close(r)
    tags = _host_tags(host)
    assert sorted(tags[:-1]) == ["READY=1", "STATUS=up", "WATCHDOG=1"]
    assert tags[-1] == "MAINPID=7"
    assert not host.pending()
    assert proxy.forwarded == 1


def test_flood_is_bounded(proxy: NotifyProxy, host: FakeHost) -> None:
    """A container sending STATUS= as fast as it can: the relay reads at most RECV_RATE a
    second (the sender blocks), sends at most SEND_RATE a second, and the last value wins."""
    path = proxy.path
    assert path is not None
    duration = 1.5
    sent = [0]

    def flood() -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.settimeout(0.05)
            end = time.monotonic() + duration
            while time.monotonic() < end:
                with contextlib.suppress(TimeoutError, BlockingIOError):
                    s.sendto(f"STATUS={sent[0]}".encode(), path)
                    sent[0] += 1
            s.settimeout(None)
            s.sendto(b"STATUS=last", path)

    sender = threading.Thread(target=flood)
    r, w = os.pipe()
    relay = threading.Thread(target=proxy.forward_forever, args=(host.path, 7, r))
    t0 = time.monotonic()
    relay.start()
    sender.start()
    sender.join()
    os.close(w)
    relay.join(10)
    elapsed = time.monotonic() - t0
    os.close(r)
    assert not relay.is_alive()
    received = []
    while host.pending():
        received.append(_host_tags(host))
    assert len(received) == proxy.forwarded
    assert proxy.received <= sdnotify.RECV_BURST + sdnotify.RECV_RATE * elapsed + 1
    assert proxy.forwarded <= sdnotify.SEND_BURST + sdnotify.SEND_RATE * elapsed + 2
    assert received[-1] == ["STATUS=last", "MAINPID=7"]


def test_bind_does_not_chmod_through_a_symlink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The race of issue 14 item 6: the socket path swapped for a symlink right after bind()
    (what a container could do in a writable notify directory) must not make the runtime
    chmod the symlink's target."""
    victim = tmp_path / "host-file"
    victim.write_text("marker")
    victim.chmod(0o600)
    real_bind = socket.socket.bind

    def bind_then_swap(sock: socket.socket, address: Any) -> None:
        real_bind(sock, address)
        if isinstance(address, str):
            os.unlink(address)
            os.symlink(victim, address)

    monkeypatch.setattr(socket.socket, "bind", bind_then_swap)
    with NotifyProxy() as p:
        p.bind(tmp_path)
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600
    assert victim.read_text() == "marker"


def test_relayed_message_fits_systemd_buffer() -> None:
    """Every allowed field at its longest, in multi-byte characters and escapes, still fits
    NOTIFY_BUFFER_MAX (systemd drops a longer message whole), and STATUS stays valid UTF-8."""
    fields = {
        "STATUS": "é\\\n" * 2000,
        "ERRNO": "\\" * 100,
        "BUSERROR": "\r" * 1000,
        "READY": "1",
        "WATCHDOG": "trigger",
    }
    data = sdnotify.format_message(fields, mainpid=2**22)
    assert len(data) <= sdnotify.NOTIFY_BUFFER_MAX
    tags = sdnotify.split_tags(data)
    assert tags is not None
    status = next(t for t in tags if t.startswith("STATUS="))
    assert len(status.encode()) <= len("STATUS=") + 1024
    status.encode("utf-8")  # no half character left: systemd ignores a STATUS that is not UTF-8
