# SPDX-License-Identifier: Apache-2.0
"""An error raised in the idler reaches the runtime as the same class, message and attributes
(issue 13: "error running createContainer hook : error running createContainer hook ...")."""

from __future__ import annotations

import errno

import pytest

from oci_systemd.container import idler
from oci_systemd.container.channel import Channel, RemoteError
from oci_systemd.errors import (
    ExecFailedError,
    HookError,
    IdlerError,
    OciSystemdError,
    SpecError,
    SyscallError,
)
from oci_systemd.runtime import idler_client


def _across(exc: BaseException, *, creating: bool = False) -> OciSystemdError:
    idler_end, runtime_end = Channel.pair()
    idler._report(idler_end, exc)
    with pytest.raises(RemoteError) as info:
        runtime_end.recv()
    return idler_client.idler_failure(info.value, creating=creating)


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


def test_hook_error_is_reported_once() -> None:
    got = _across(HookError("startContainer", "/bin/false", "exit status 1"))
    assert str(got) == "error running startContainer hook /bin/false: exit status 1"
    assert isinstance(got, HookError) and (got.stage, got.path) == ("startContainer", "/bin/false")


def test_missing_program_fails_create_with_status_1_and_start_with_127() -> None:
    missing = ExecFailedError('exec: "nope": executable file not found in $PATH', err=errno.ENOENT)
    assert _across(missing).exit_code == 127
    at_create = _across(missing, creating=True)
    assert isinstance(at_create, ExecFailedError) and at_create.exit_code == 1


def test_os_errors_and_surprises_are_idler_errors() -> None:
    got = _across(FileNotFoundError(errno.ENOENT, "No such file or directory", "/x"))
    assert type(got) is IdlerError and "/x" in str(got)
    assert type(_across(RuntimeError("boom"))) is IdlerError


def test_a_report_cannot_name_a_class_outside_errors() -> None:
    assert idler_client.idler_failure(RemoteError("m", 0, "SystemExit", {})).__class__ is IdlerError
    forged = idler_client.idler_failure(RemoteError("m", 0, "HookError", {"_x": 1, "exit_code": [1]}))
    assert isinstance(forged, HookError) and not hasattr(forged, "_x") and forged.exit_code == 1
