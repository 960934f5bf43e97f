# SPDX-License-Identifier: Apache-2.0
"""The unit mode's pieces that need no systemd: choosing it, checking the caller, the detached
fork, the MAINPID=/BARRIER=1 handover against a fake notify socket, and the cgroup paths."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

from oci_systemd.runtime import cgroups, placement, service_unit
from oci_systemd.runtime.service_unit import PlacementError
from oci_systemd.runtime.state import Record


def test_the_scope_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OCI_SYSTEMD_PLACEMENT", raising=False)
    assert placement.choose_placement().kind == "scope"
    assert placement.choose_placement(run=True).kind == "scope"
    assert not placement.choose_placement(run=True).hands_over


def test_the_unit_mode_is_asked_for_and_only_by_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCI_SYSTEMD_PLACEMENT", "service")
    chosen = placement.choose_placement(run=True)
    assert (chosen.kind, chosen.hands_over) == ("service", True)
    with pytest.raises(PlacementError, match="is for `oci-systemd run`"):
        placement.choose_placement()
    monkeypatch.setenv("OCI_SYSTEMD_PLACEMENT", "user")
    with pytest.raises(PlacementError, match="expected one of scope, service"):
        placement.choose_placement(run=True)


def test_the_record_names_the_placement() -> None:
    assert placement.placement_of(Record(id="a")).kind == "scope"
    assert placement.placement_of(Record(id="a", placement="service")).kind == "service"
    with pytest.raises(Exception, match="unknown placement"):
        placement.placement_of(Record(id="a", placement="elsewhere"))


def test_outside_a_service_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INVOCATION_ID", raising=False)
    with pytest.raises(PlacementError, match="not run by a systemd service"):
        service_unit.calling_service()


def test_a_scope_is_not_a_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVOCATION_ID", "0" * 32)
    monkeypatch.setattr(cgroups, "cgroup_of", lambda pid: "/user.slice/session-1.scope")
    with pytest.raises(PlacementError, match=r"session-1\.scope"):
        service_unit.calling_service()


def _fake_service(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, xattrs: dict[str, str], *, notify: bool = True
) -> None:
    monkeypatch.setenv("INVOCATION_ID", "ab" * 16)
    if notify:
        monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    else:
        monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setattr(cgroups, "cgroup_of", lambda pid: "/system.slice/web.service")
    monkeypatch.setattr(cgroups, "unified_mount", lambda: os.fspath(tmp_path))
    monkeypatch.setattr(service_unit, "_xattr", lambda directory, name: xattrs.get(name))


def test_a_service_without_delegate_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_service(monkeypatch, tmp_path, {"invocation_id": "ab" * 16})
    with pytest.raises(PlacementError, match=r"web\.service has no Delegate=yes"):
        service_unit.calling_service()


def test_another_invocations_cgroup_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_service(monkeypatch, tmp_path, {"invocation_id": "cd" * 16, "delegate": "1"})
    with pytest.raises(PlacementError, match="not this invocation's"):
        service_unit.calling_service()


def test_a_service_that_is_not_type_notify_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _fake_service(monkeypatch, tmp_path, {"delegate": "1"}, notify=False)
    with pytest.raises(PlacementError, match="not Type=notify"):
        service_unit.calling_service()


def test_a_delegated_notify_service_is_the_unit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_service(monkeypatch, tmp_path, {"invocation_id": "ab" * 16, "delegate": "1"})
    assert service_unit.calling_service() == ("web.service", "system.slice")


@pytest.mark.parametrize(
    ("slice_", "path"),
    [
        ("system.slice", "system.slice"),
        ("-.slice", ""),
        (r"system-oci\x2dcontainer.slice", r"system.slice/system-oci\x2dcontainer.slice"),
        ("a-b-c.slice", "a.slice/a-b.slice/a-b-c.slice"),
    ],
)
def test_slice_path(slice_: str, path: str) -> None:
    assert service_unit.slice_path(slice_) == path


def test_leaf_cgroup() -> None:
    record = Record(id="web", scope="oci-container@web.service", slice=r"system-oci\x2dcontainer.slice")
    assert (
        service_unit.leaf_cgroup(record)
        == r"/system.slice/system-oci\x2dcontainer.slice/oci-container@web.service/container"
    )
    assert (
        service_unit.leaf_cgroup(Record(id="x", scope="x.service", slice="-.slice"))
        == "/x.service/container"
    )


def test_leaf_cgroup_as_recorded_in_a_users_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    service = "/user.slice/user-1000.slice/user@1000.service/app.slice/oci-container@web.service"
    monkeypatch.setattr(cgroups, "cgroup_of", lambda pid: service)
    assert service_unit.container_cgroup() == f"{service}/container"
    record = Record(
        id="web", scope="oci-container@web.service", slice="app.slice", cgroup=f"{service}/container"
    )
    assert service_unit.leaf_cgroup(record) == f"{service}/container"


def test_fork_detached_child_is_not_ours() -> None:
    r, w = os.pipe()
    pid = service_unit.fork_detached()
    if pid == 0:
        try:
            os.close(r)
            os.write(w, f"{os.getpid()} {os.getppid()}".encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        child, parent = (int(x) for x in f.read().split())
    assert child == pid
    assert parent != os.getpid()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, 0)


class FakeManager:
    """systemd's notify socket: records datagrams, and closes a BARRIER=1's fd (or keeps it)."""

    def __init__(self, path: str, *, answer: bool = True) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.answer = answer
        self.messages: list[str] = []
        self.kept: list[int] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            data, ancdata, _flags, _addr = self.sock.recvmsg(4096, socket.CMSG_SPACE(16))
            fds = [
                int.from_bytes(d[i : i + 4], "little") for _l, _k, d in ancdata for i in range(0, len(d), 4)
            ]
            self.messages.append(data.decode())
            if data == b"BARRIER=1":
                if self.answer:
                    for fd in fds:
                        os.close(fd)
                else:
                    self.kept += fds
                return


def test_hand_over_names_the_main_pid_and_waits_for_the_barrier(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = os.fspath(tmp_path / "notify")
    manager = FakeManager(path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setattr(service_unit, "parent_pid", lambda pid: 1)  # reparented to PID 1 already
    service_unit.hand_over(os.getpid(), ready=True, timeout=5)
    manager.thread.join(5)
    assert manager.messages == [f"MAINPID={os.getpid()}\nREADY=1\n", "BARRIER=1"]


def test_hand_over_fails_when_systemd_does_not_answer(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = os.fspath(tmp_path / "notify")
    manager = FakeManager(path, answer=False)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setattr(service_unit, "parent_pid", lambda pid: 1)  # reparented to PID 1 already
    with pytest.raises(Exception, match=r"BARRIER=1"):
        service_unit.hand_over(os.getpid(), ready=False, timeout=0.2)
    manager.thread.join(5)
    assert manager.messages[0] == f"MAINPID={os.getpid()}\n"
    for fd in manager.kept:
        os.close(fd)


class FakeSystemd:
    """The Manager calls ServiceUnit makes, answered from fixed values and recorded."""

    def __init__(self, main_pid: int) -> None:
        self.main_pid = main_pid
        self.calls: list[tuple[object, ...]] = []

    def active_state(self, name: str) -> str:
        return "active"

    def unit_properties(self, name: str, interface: str, names: list[str]) -> dict[str, object]:
        values: dict[str, object] = {"MainPID": self.main_pid, "FreezerState": b"running"}
        return {n: values[n] for n in names}

    def unit_processes(self, name: str) -> list[tuple[str, int, str]]:
        base = f"/system.slice/{name}"
        return [
            (base, 10, "oci-systemd run"),
            (f"{base}/container", 11, "sh"),
            (f"{base}/container/x", 12, "s"),
        ]

    def kill_unit(self, name: str, signal: int, *, who: str = "all") -> None:
        self.calls.append(("kill", name, signal, who))


SERVICE_RECORD = Record(
    id="web", pid=11, phase="started", scope="web.service", slice="system.slice", placement="service"
)


def test_service_state_follows_the_main_pid() -> None:
    unit = placement.placement_of(SERVICE_RECORD)
    assert unit.unit_state(FakeSystemd(11), SERVICE_RECORD) == ("active", False)  # type: ignore[arg-type]
    # The service's main process is another: it no longer runs this container.
    assert unit.unit_state(FakeSystemd(99), SERVICE_RECORD) == ("inactive", False)  # type: ignore[arg-type]


def test_service_processes_are_the_containers_and_kill_all_is_killunit_all() -> None:
    unit = placement.placement_of(SERVICE_RECORD)
    bus = FakeSystemd(11)
    assert unit.processes(bus, SERVICE_RECORD) == [11, 12]  # type: ignore[arg-type]
    unit.kill_all(bus, SERVICE_RECORD, 15, stopped=False)  # type: ignore[arg-type]
    assert bus.calls == [("kill", "web.service", 15, "all")]


def test_hand_over_waits_for_the_user_managers_adoption(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A user's manager (MANAGERPID) is a subreaper: the init is its child, not PID 1's."""
    path = os.fspath(tmp_path / "notify")
    manager = FakeManager(path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("MANAGERPID", "4242")
    parents = iter([77, 77, 4242])  # the idler still, then the manager
    asked: list[int] = []

    def parent(pid: int) -> int:
        asked.append(pid)
        return next(parents)

    monkeypatch.setattr(service_unit, "parent_pid", parent)
    service_unit.hand_over(os.getpid(), ready=False, timeout=5)
    manager.thread.join(5)
    assert len(asked) == 3  # it waited until the manager had it, and no longer
    assert manager.messages == [f"MAINPID={os.getpid()}\n", "BARRIER=1"]
