# SPDX-License-Identifier: Apache-2.0
"""An error raised in the idler reaches the runtime as the same class, message and attributes
(issue 13: "error running createContainer hook : error running createContainer hook ...").

One encoder (protocol.error_message, used by idler._report) and one decoder
(protocol.error_from, behind every protocol.recv_*): the tests below go through the real
runtime steps (create's CreateSteps.build, start's await_started) against a fake idler on the
other end of a socketpair, which fails the way the real one does.
"""

from __future__ import annotations

import errno
import os
import threading
from typing import TYPE_CHECKING, Any

import pytest

from oci_systemd.container import idler, protocol
from oci_systemd.container.channel import Channel
from oci_systemd.errors import (
    ExecFailedError,
    HookError,
    IdlerError,
    OciSystemdError,
    SpecError,
    SyscallError,
)
from oci_systemd.runtime import idler_client
from oci_systemd.runtime.state import Record, Store
from oci_systemd.runtime.verbs import create_steps

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from oci_systemd.container.protocol import CreatePlan


def _across(exc: BaseException) -> OciSystemdError:
    """`exc` reported by the idler, as the runtime's next protocol step raises it."""
    idler_end, runtime_end = Channel.pair()
    idler._report(idler_end, exc)
    with pytest.raises(OciSystemdError) as info:
        protocol.recv_created(runtime_end)
    return info.value


@pytest.mark.parametrize(
    "exc",
    [
        SpecError("process.cwd", "must be absolute"),
        HookError("createContainer", "/bin/false", "exit status 1"),
        SyscallError("mount", "/proc", errno.EPERM),
        ExecFailedError('exec: "x": permission denied', err=errno.EACCES),
        OciSystemdError("setrlimit RLIMIT_NOFILE: operation not permitted", hint="lower it"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_idler_errors_keep_class_message_and_attributes(exc: OciSystemdError) -> None:
    got = _across(exc)
    assert type(got) is type(exc)
    assert str(got) == str(exc) and got.message == exc.message
    assert got.exit_code == exc.exit_code
    assert vars(got) == vars(exc)


def test_a_missing_program_keeps_its_exit_status_127() -> None:
    missing = ExecFailedError('exec: "nope": executable file not found in $PATH', err=errno.ENOENT)
    assert _across(missing).exit_code == 127


def test_os_errors_and_surprises_are_idler_errors() -> None:
    got = _across(FileNotFoundError(errno.ENOENT, "No such file or directory", "/x"))
    assert type(got) is IdlerError and "/x" in str(got)
    assert type(_across(RuntimeError("boom"))) is IdlerError


def test_a_report_cannot_name_a_class_outside_errors() -> None:
    exit_report = {"type": "error", "message": "m", "errno": 0, "kind": "SystemExit", "attrs": {}}
    assert type(protocol.error_from(exit_report)) is IdlerError
    forged = protocol.error_from(
        {"type": "error", "message": "m", "kind": "HookError", "attrs": {"_x": 1, "exit_code": [1]}}
    )
    assert isinstance(forged, HookError) and not hasattr(forged, "_x") and forged.exit_code == 1


def test_the_error_of_an_older_idler_decodes_the_same() -> None:
    """`start` talks to idlers that an older runtime created: their `error` message, as it was
    written before the protocol module, is still read as the idler's exception."""
    a, b = Channel.pair()
    a.send(
        {
            "type": "error",
            "message": "error running startContainer hook /bin/false: exit status 1",
            "errno": 0,
            "kind": "HookError",
            "attrs": {"hint": None, "stage": "startContainer", "path": "/bin/false"},
        }
    )
    with pytest.raises(HookError) as info:
        protocol.recv_eof(b)
    assert (info.value.stage, str(info.value)) == (
        "startContainer",
        "error running startContainer hook /bin/false: exit status 1",
    )


# -- through the runtime's steps, against a fake idler ---------------------------------------------

HOOK_FAILED = "error running createContainer hook /bin/false: exit status 1"


class _Manager:
    def __enter__(self) -> object:
        return object()

    def __exit__(self, *exc: object) -> None:
        pass


class _Placement:
    hands_over = False  # a scope's way: the runtime stays the idler's parent

    def start(self, bus: object, record: Record, pids: list[int], props: object) -> None:
        pass

    def enter_leaf(self, idler_pid: int, forwarder_pid: int) -> None:
        pass


def _plan(tmp_path: Path) -> CreatePlan:
    return {
        "exec": False,
        "id": "c1",
        "config": {"process": {"args": ["true"]}},
        "bundle": str(tmp_path),
        "rootfs": str(tmp_path),
        "start_socket": str(tmp_path / "start.sock"),
        "console_socket": None,
        "no_pivot": False,
        "no_new_keyring": False,
        "extra_fds": 0,
        "listen_fds": 0,
    }


def _fake_idler(chan: Channel, script: Callable[[Channel], None]) -> threading.Thread:
    """The idler's side in a thread: `script` plays its steps; what it raises is reported the
    way idler.main reports it."""

    def run() -> None:
        try:
            script(chan)
        except BaseException as exc:
            idler._report(chan, exc)
        finally:
            chan.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: Callable[[Channel], None]) -> Any:
    runtime_end, idler_end = Channel.pair()
    # The "idler" is this process, which is also the "init": nothing to fork, reap or kill.
    monkeypatch.setattr(
        create_steps, "spawn_idler", lambda extra_fds, stdio, detached=False: (runtime_end, os.getpid())
    )
    store = Store(str(tmp_path / "root"))
    os.makedirs(store.dir("c1"))
    record = Record(id="c1", scope="oci-systemd-c1.scope", phase="creating")
    steps = create_steps.CreateSteps(
        store=store,
        manager=_Manager(),  # type: ignore[arg-type]
        placement=_Placement(),  # type: ignore[arg-type]
        plan=_plan(tmp_path),
        record=record,
        props=[],
    )
    thread = _fake_idler(idler_end, script)
    try:
        steps.build()
    finally:
        thread.join(5)
    return steps


def _up_to_scoped(chan: Channel) -> None:
    """What every idler does first: the plan, JOINED, its pid, SCOPED."""
    plan = protocol.recv_plan(chan)
    assert plan["exec"] is False and plan["start_socket"].endswith("start.sock")
    protocol.recv_joined(chan)
    protocol.send_pid(chan, os.getpid())
    protocol.recv_scoped(chan)


def test_create_reports_a_failing_create_container_hook_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def idler_side(chan: Channel) -> None:
        _up_to_scoped(chan)
        raise HookError("createContainer", "/bin/false", "exit status 1")

    with pytest.raises(HookError) as info:
        _build(tmp_path, monkeypatch, idler_side)
    assert str(info.value) == HOOK_FAILED and info.value.message == HOOK_FAILED
    assert (info.value.stage, info.value.path) == ("createContainer", "/bin/false")


def test_create_writes_the_id_maps_between_userns_and_mapped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The user-namespace detour, and a created container at the end."""
    written: list[int] = []
    monkeypatch.setattr(create_steps.CreateSteps, "_write_id_maps", lambda self, pid: written.append(pid))

    def idler_side(chan: Channel) -> None:
        protocol.recv_plan(chan)
        protocol.recv_joined(chan)
        protocol.send_userns(chan, 4242)
        protocol.recv_mapped(chan)
        protocol.send_pid(chan, os.getpid())
        protocol.recv_scoped(chan)
        protocol.send_created(chan)

    steps = _build(tmp_path, monkeypatch, idler_side)
    assert written == [4242]
    assert steps.record["phase"] == "created" and steps.record["pid"] == os.getpid()


def test_an_idler_that_dies_before_joined_is_heard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A console socket it cannot reach: the idler's own report, not 'exited unexpectedly'."""

    def idler_side(chan: Channel) -> None:
        protocol.recv_plan(chan)
        raise SyscallError("connect", "/run/console.sock", errno.ENOENT)

    with pytest.raises(SyscallError, match=r"^connect `/run/console.sock`: no such file or directory$"):
        _build(tmp_path, monkeypatch, idler_side)


def test_start_reports_a_failing_start_container_hook_once() -> None:
    runtime_end, idler_end = Channel.pair()

    def idler_side(chan: Channel) -> None:
        raise HookError("startContainer", "/bin/false", "exit status 1")

    thread = _fake_idler(idler_end, idler_side)
    with pytest.raises(HookError) as info:
        idler_client.await_started(runtime_end, "c1", None)
    thread.join(5)
    assert str(info.value) == "error running startContainer hook /bin/false: exit status 1"


def test_start_learns_that_exec_worked_from_eof() -> None:
    runtime_end, idler_end = Channel.pair()
    thread = _fake_idler(idler_end, protocol.send_exec)  # then the socket closes, as at execve
    idler_client.await_started(runtime_end, "c1", None)
    thread.join(5)
