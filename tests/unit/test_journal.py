# SPDX-License-Identifier: Apache-2.0
"""journal.py against a fake journald: a datagram socket bound in a temporary directory."""

from __future__ import annotations

import array
import errno
import fcntl
import os
import re
import shutil
import socket
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import NotRequired, TypedDict

import pytest

from oci_systemd.errors import SyscallError
from oci_systemd.runtime import journal
from oci_systemd.runtime.journal import EVENTS, Event


def parse_native(data: bytes) -> dict[str, bytes]:
    """journald's side of the native protocol, for checking what we sent."""
    fields: dict[str, bytes] = {}
    i = 0
    while i < len(data):
        newline = data.index(b"\n", i)
        line = data[i:newline]
        if b"=" in line:
            key, _, value = line.partition(b"=")
            i = newline + 1
        else:
            key = line
            (size,) = struct.unpack_from("<Q", data, newline + 1)
            start = newline + 1 + 8
            value = data[start : start + size]
            assert data[start + size : start + size + 1] == b"\n"
            i = start + size + 1
        fields[key.decode()] = value
    return fields


class FakeJournald:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(os.fspath(path))
        self.sock.settimeout(5)

    def recv(self) -> tuple[bytes, list[int]]:
        fds = array.array("i")
        data, ancdata, _flags, _addr = self.sock.recvmsg(32 * 1024 * 1024, socket.CMSG_SPACE(4 * 4))
        for level, kind, cmsg in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(cmsg)
        return data, list(fds)

    def entry(self) -> dict[str, bytes]:
        data, fds = self.recv()
        assert fds == []
        return parse_native(data)

    def pending(self) -> bool:
        self.sock.setblocking(False)
        try:
            self.sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return False
        finally:
            self.sock.settimeout(5)
        return True


@pytest.fixture
def journald(tmp_path: Path) -> Iterator[FakeJournald]:
    fake = FakeJournald(tmp_path / "socket")
    yield fake
    fake.sock.close()


# serialisation


def test_serialize_simple_fields() -> None:
    data = journal.serialize({"MESSAGE": "hello", "PRIORITY": 6, "EMPTY": ""})
    assert data == b"MESSAGE=hello\nPRIORITY=6\nEMPTY=\n"


def test_serialize_newline_value_uses_length_prefix() -> None:
    data = journal.serialize({"MESSAGE": "two\nlines"})
    assert data == b"MESSAGE\n" + struct.pack("<Q", 9) + b"two\nlines\n"
    assert parse_native(data) == {"MESSAGE": b"two\nlines"}


def test_serialize_binary_values_round_trip() -> None:
    blob = bytes(range(256))
    data = journal.serialize({"BLOB": blob, "NUL": b"a\0b", "TEXT": "caf\u00e9"})
    assert parse_native(data) == {"BLOB": blob, "NUL": b"a\0b", "TEXT": "caf\u00e9".encode()}


def test_serialize_value_with_equals_sign_stays_simple() -> None:
    assert journal.serialize({"COMMAND": "env A=B"}) == b"COMMAND=env A=B\n"


def test_serialize_bool_and_surrogates() -> None:
    assert journal.serialize({"FLAG": True}) == b"FLAG=1\n"
    assert journal.serialize({"RAW": os.fsdecode(b"\xff")}) == b"RAW=\xff\n"


@pytest.mark.parametrize(
    "name",
    ["MESSAGE", "A", "CODE_FILE", "X1", "A_B_C", "Z" * 64, "OBJECT_SYSTEMD_UNIT"],
)
def test_valid_field_names(name: str) -> None:
    assert journal.is_valid_field_name(name)


@pytest.mark.parametrize(
    "name",
    ["", "_PID", "_", "message", "Message", "1ABC", "A-B", "A B", "A=B", "Z" * 65, "\u00c4", "A\n"],
)
def test_invalid_field_names(name: str) -> None:
    assert not journal.is_valid_field_name(name)
    with pytest.raises(ValueError, match="invalid journal field name"):
        journal.serialize({name: "x"})


# memfd fallback decision


@pytest.mark.parametrize("err", [errno.EMSGSIZE, errno.ENOBUFS, errno.EAGAIN])
def test_needs_memfd_for_size_errors(err: int) -> None:
    assert journal.needs_memfd(err)


@pytest.mark.parametrize("err", [errno.ENOENT, errno.ECONNREFUSED, errno.EPERM, errno.EINVAL])
def test_no_memfd_for_other_errors(err: int) -> None:
    assert not journal.needs_memfd(err)


# send() to a fake journald


def test_send_one_datagram(journald: FakeJournald) -> None:
    assert journal.send({"MESSAGE": "hi\nthere", "CONTAINER_ID": "c1"}, socket_path=os.fspath(journald.path))
    assert journald.entry() == {"MESSAGE": b"hi\nthere", "CONTAINER_ID": b"c1"}


def test_send_returns_false_without_journald(tmp_path: Path) -> None:
    assert journal.send({"MESSAGE": "x"}, socket_path=os.fspath(tmp_path / "missing")) is False


def test_send_returns_false_when_nobody_listens(tmp_path: Path) -> None:
    path = tmp_path / "socket"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(os.fspath(path))
    # The socket file exists, but its owner is gone: ECONNREFUSED.
    assert journal.send({"MESSAGE": "x"}, socket_path=os.fspath(path)) is False


def test_send_rejects_bad_field_names_even_without_journald(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        journal.send({"_PID": "1"}, socket_path=os.fspath(tmp_path / "missing"))


def test_send_long_socket_path(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    path = deep / "socket"
    assert len(os.fsencode(path)) > 108
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dirfd = os.open(deep, os.O_PATH)
    try:
        receiver.bind(f"/proc/self/fd/{dirfd}/socket")
        receiver.settimeout(5)
        assert journal.send({"MESSAGE": "deep"}, socket_path=os.fspath(path))
        assert parse_native(receiver.recv(4096)) == {"MESSAGE": b"deep"}
    finally:
        os.close(dirfd)
        receiver.close()


def test_send_too_large_for_a_datagram_uses_sealed_memfd(journald: FakeJournald) -> None:
    # Larger than any send buffer the kernel allows (8 MiB, doubled): EMSGSIZE.
    blob = os.urandom(1024) * (20 * 1024)
    assert journal.send({"MESSAGE": "big", "BLOB": blob}, socket_path=os.fspath(journald.path))
    data, fds = journald.recv()
    assert data == b""
    assert len(fds) == 1
    fd = fds[0]
    try:
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
        expected = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL
        assert seals & expected == expected
        size = os.fstat(fd).st_size
        content = os.pread(fd, size, 0)
    finally:
        os.close(fd)
    assert parse_native(content) == {"MESSAGE": b"big", "BLOB": blob}


def test_send_memfd_path_after_emsgsize(journald: FakeJournald, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[bytes] = []

    def fake_memfd(sock: socket.socket, address: str, payload: bytes) -> None:
        sent.append(payload)

    class TooBig(socket.socket):
        def sendto(self, *args: object) -> int:
            raise OSError(errno.ENOBUFS, "No buffer space available")

    monkeypatch.setattr(journal, "_send_memfd", fake_memfd)
    monkeypatch.setattr(journal, "_new_socket", lambda: TooBig(socket.AF_UNIX, socket.SOCK_DGRAM))
    assert journal.send({"MESSAGE": "x"}, socket_path=os.fspath(journald.path))
    assert sent == [b"MESSAGE=x\n"]


# lifecycle events


def test_every_event_has_a_distinct_message_id() -> None:
    ids = [event.message_id for event in EVENTS]
    assert len(set(ids)) == len(EVENTS) == 11
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


def test_event_values_and_priorities() -> None:
    assert [e.value for e in EVENTS] == [
        "created",
        "started",
        "exec",
        "killed",
        "exited",
        "deleted",
        "hook-failed",
        "error",
        "paused",
        "resumed",
        "updated",
    ]
    assert Event.ERROR.priority == 3
    assert Event.HOOK_FAILED.priority == 3
    assert Event.KILLED.priority == 5
    assert {e.priority for e in EVENTS if e not in (Event.ERROR, Event.HOOK_FAILED, Event.KILLED)} == {6}


def test_log_event_fields(journald: FakeJournald) -> None:
    journal.log_event(
        Event.KILLED,
        container_id="c1",
        bundle=Path("/b/c1"),
        status="running",
        unit="oci-systemd-c1.scope",
        message="container c1 killed with SIGTERM",
        extra={"SIGNAL": 15},
        socket_path=os.fspath(journald.path),
    )
    entry = journald.entry()
    assert entry["MESSAGE"] == b"container c1 killed with SIGTERM"
    assert entry["PRIORITY"] == b"5"
    assert entry["MESSAGE_ID"] == Event.KILLED.message_id.encode()
    assert entry["CONTAINER_ID"] == b"c1"
    assert entry["OCI_BUNDLE"] == b"/b/c1"
    assert entry["OCI_STATUS"] == b"running"
    assert entry["OCI_EVENT"] == b"killed"
    assert entry["OBJECT_SYSTEMD_UNIT"] == b"oci-systemd-c1.scope"
    assert entry["SYSLOG_IDENTIFIER"] == b"oci-systemd"
    assert entry["SIGNAL"] == b"15"
    assert entry["CODE_FUNC"] == b"test_log_event_fields"
    assert entry["CODE_FILE"] == os.fsencode(__file__)


def test_log_event_without_unit_or_bundle(journald: FakeJournald) -> None:
    journal.log_event(
        Event.ERROR,
        container_id="c2",
        bundle=None,
        status=None,
        unit=None,
        message="boom",
        socket_path=os.fspath(journald.path),
    )
    entry = journald.entry()
    assert "OBJECT_SYSTEMD_UNIT" not in entry and "USER_UNIT" not in entry
    assert "OCI_BUNDLE" not in entry
    assert "OCI_STATUS" not in entry
    assert entry["PRIORITY"] == b"3"


def test_log_event_names_a_user_managers_unit_by_user_unit(journald: FakeJournald) -> None:
    """`journalctl --user -u` matches USER_UNIT= with the sender's _UID; OBJECT_SYSTEMD_UNIT
    (trusted from _UID=0 only) stays for the catalog's texts."""
    journal.log_event(
        Event.STARTED,
        container_id="c3",
        bundle="/b/c3",
        status="running",
        unit="oci-systemd-c3.scope",
        message="Container c3 started",
        user_manager=True,
        socket_path=os.fspath(journald.path),
    )
    entry = journald.entry()
    assert entry["USER_UNIT"] == entry["OBJECT_SYSTEMD_UNIT"] == b"oci-systemd-c3.scope"


def test_unit_fields() -> None:
    assert journal.unit_fields("u.scope", user_manager=False) == {"OBJECT_SYSTEMD_UNIT": "u.scope"}
    assert journal.unit_fields("", user_manager=True) == {}
    assert journal.unit_fields(None, user_manager=False) == {}


def test_log_event_without_journald_is_silent(tmp_path: Path) -> None:
    journal.log_event(
        Event.CREATED,
        container_id="c",
        bundle="/b",
        status="created",
        unit="u.scope",
        message="m",
        socket_path=os.fspath(tmp_path / "missing"),
    )


# the catalog


def catalog_ids(text: str) -> list[str]:
    return re.findall(r"^-- ([0-9a-f]{32})(?: \S+)?$", text, flags=re.MULTILINE)


def test_catalog_lists_every_event_once() -> None:
    text = Path(journal.CATALOG_PATH).read_text()
    ids = catalog_ids(text)
    assert sorted(ids) == sorted(e.message_id for e in EVENTS)
    assert len(ids) == len(set(ids))


def test_catalog_entries_have_headers() -> None:
    text = Path(journal.CATALOG_PATH).read_text()
    for section in re.split(r"^-- [0-9a-f]{32}\n", text, flags=re.MULTILINE)[1:]:
        headers, _, body = section.partition("\n\n")
        names = [line.split(":", 1)[0] for line in headers.splitlines()]
        assert names[:3] == ["Subject", "Defined-By", "Support"]
        assert "Defined-By: oci-systemd" in headers
        assert body.strip()
        # Only fields we actually send are referenced.
        for field in re.findall(r"@([A-Z0-9_]+)@", section):
            assert field in {
                "CONTAINER_ID",
                "OCI_BUNDLE",
                "OCI_STATUS",
                "OBJECT_SYSTEMD_UNIT",
                "SIGNAL",
                "EXIT_STATUS",
                "HOOK",
                "COMMAND",
            }


@pytest.mark.skipif(shutil.which("journalctl") is None, reason="journalctl not installed")
def test_catalog_accepted_by_journalctl(tmp_path: Path) -> None:
    # --root keeps the database away from the host's /var/lib/systemd/catalog.
    catalog_dir = tmp_path / "usr/lib/systemd/catalog"
    catalog_dir.mkdir(parents=True)
    shutil.copy(journal.CATALOG_PATH, catalog_dir)
    subprocess.run(["journalctl", f"--root={tmp_path}", "--update-catalog"], check=True)
    listed = subprocess.run(
        ["journalctl", f"--root={tmp_path}", "--list-catalog"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for event in EVENTS:
        assert f"{event.message_id} oci-systemd: " in listed


# the stdout stream protocol


def test_stream_header_matches_sd_journal_stream_fd() -> None:
    assert journal.stream_header("web", priority=6) == b"web\n\n6\n0\n0\n0\n0\n"
    assert journal.stream_header("x", unit_id="a.scope", priority=3, level_prefix=True) == (
        b"x\na.scope\n3\n1\n0\n0\n0\n"
    )


class _HeaderArgs(TypedDict):
    identifier: str
    priority: NotRequired[int]


@pytest.mark.parametrize("kwargs", [{"identifier": "a\nb"}, {"identifier": "a", "priority": 8}])
def test_stream_header_rejects(kwargs: _HeaderArgs) -> None:
    with pytest.raises(ValueError):
        journal.stream_header(**kwargs)


def test_stream_fd_writes_header(tmp_path: Path) -> None:
    path = tmp_path / "stdout"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(os.fspath(path))
    server.listen(1)
    server.settimeout(5)
    fd = journal.stream_fd("oci-systemd/c1", socket_path=os.fspath(path))
    conn, _ = server.accept()
    try:
        os.write(fd, b"line one\n")
        os.close(fd)
        conn.settimeout(5)
        received = b""
        while chunk := conn.recv(4096):
            received += chunk
        assert received == b"oci-systemd/c1\n\n6\n0\n0\n0\n0\nline one\n"
    finally:
        conn.close()
        server.close()


def test_stream_fd_without_journald(tmp_path: Path) -> None:
    with pytest.raises(SyscallError, match="connect"):
        journal.stream_fd("x", socket_path=os.fspath(tmp_path / "missing"))


# forward_stream()


def run_forwarder(journald: FakeJournald, chunks: list[bytes], **kwargs: object) -> list[dict[str, bytes]]:
    r, w = os.pipe()
    options: dict[str, object] = {
        "container_id": "c1",
        "identifier": "oci-systemd/c1",
        "unit": "oci-systemd-c1.scope",
        "stream_name": "stdout",
        "socket_path": os.fspath(journald.path),
    }
    options.update(kwargs)
    thread = threading.Thread(target=journal.forward_stream, args=(r,), kwargs=options)
    thread.start()
    for chunk in chunks:
        os.write(w, chunk)
    os.close(w)
    thread.join(10)
    assert not thread.is_alive()
    os.close(r)
    entries = []
    while journald.pending():
        entries.append(journald.entry())
    return entries


def test_forward_stream_lines(journald: FakeJournald) -> None:
    entries = run_forwarder(journald, [b"one\ntw", b"o\n\nthree"])
    assert [e["MESSAGE"] for e in entries] == [b"one", b"two", b"", b"three"]
    first = entries[0]
    assert first["CONTAINER_ID"] == b"c1"
    assert first["SYSLOG_IDENTIFIER"] == b"oci-systemd/c1"
    assert first["OBJECT_SYSTEMD_UNIT"] == b"oci-systemd-c1.scope"
    assert first["OCI_STREAM"] == b"stdout"
    assert first["PRIORITY"] == b"6"
    assert "CONTAINER_PARTIAL_MESSAGE" not in first
    # The last line had no newline before EOF.
    assert entries[-1]["CONTAINER_PARTIAL_MESSAGE"] == b"true"


def test_forward_stream_stderr_priority_and_binary(journald: FakeJournald) -> None:
    entries = run_forwarder(journald, [b"\xff\xfe bad utf-8\n"], stream_name="stderr")
    assert entries == [
        {
            "PRIORITY": b"3",
            "SYSLOG_IDENTIFIER": b"oci-systemd/c1",
            "CONTAINER_ID": b"c1",
            "OCI_STREAM": b"stderr",
            "OBJECT_SYSTEMD_UNIT": b"oci-systemd-c1.scope",
            "MESSAGE": b"\xff\xfe bad utf-8",
        }
    ]


def test_forward_stream_in_a_user_manager(journald: FakeJournald) -> None:
    [entry] = run_forwarder(journald, [b"line\n"], user_manager=True)
    assert entry["USER_UNIT"] == entry["OBJECT_SYSTEMD_UNIT"] == b"oci-systemd-c1.scope"


def test_forward_stream_splits_long_lines(journald: FakeJournald) -> None:
    entries = run_forwarder(journald, [b"a" * 25 + b"\n"], line_max=10)
    assert [e["MESSAGE"] for e in entries] == [b"a" * 10, b"a" * 10, b"a" * 5]
    assert [e.get("CONTAINER_PARTIAL_MESSAGE") for e in entries] == [b"true", b"true", None]


def test_forward_stream_drains_without_journald(tmp_path: Path) -> None:
    r, w = os.pipe()

    def write() -> None:
        os.write(w, b"x" * 1_000_000 + b"\n")
        os.close(w)

    writer = threading.Thread(target=write)
    writer.start()
    journal.forward_stream(
        r,
        container_id="c",
        identifier="i",
        unit=None,
        stream_name="stdout",
        socket_path=os.fspath(tmp_path / "missing"),
    )
    writer.join(10)
    assert not writer.is_alive()
    os.close(r)


def test_forward_stream_pty_eio_is_eof(journald: FakeJournald) -> None:
    master, slave = os.openpty()
    os.write(slave, b"from a tty\n")
    os.close(slave)
    journal.forward_stream(
        master,
        container_id="c1",
        identifier="i",
        unit=None,
        stream_name="stdout",
        socket_path=os.fspath(journald.path),
    )
    os.close(master)
    # The tty turns \n into \r\n.
    assert journald.entry()["MESSAGE"] == b"from a tty\r"


def test_catalog_path_is_packaged() -> None:
    assert Path(journal.CATALOG_PATH).is_file()
    assert Path(journal.CATALOG_PATH).parent.name == "data"


def test_in_user_manager_matches_the_placements() -> None:
    from oci_systemd.runtime.placement import _KINDS, USER_SCOPE, USER_SERVICE
    from oci_systemd.runtime.transitions import in_user_manager

    assert {kind for kind in _KINDS if in_user_manager({"placement": kind})} == {USER_SCOPE, USER_SERVICE}
    assert not in_user_manager({})  # records written before placements: root's scopes
