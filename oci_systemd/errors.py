# SPDX-License-Identifier: Apache-2.0
"""One exception hierarchy for the runtime, each class with its exit status.

Messages follow runc's wording where callers match on it (podman, containerd):
"container does not exist", "container not running", "no such file or directory",
"executable file not found", "permission denied", "operation not permitted".
Only `cli.main()` catches broadly and turns these into one log record + exit status.
"""

from __future__ import annotations

import errno as _errno
import os


class OciSystemdError(Exception):
    """Base class: `message` is what the user reads, `hint` says what to do next."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(OciSystemdError):
    exit_code = 2


class SpecError(OciSystemdError):
    """config.json is unreadable or invalid; `field` names the JSON path."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(
            f"invalid config.json: {field}: {problem}" if field else f"invalid config.json: {problem}"
        )
        self.field = field
        self.problem = problem


class InvalidIdError(OciSystemdError):
    pass


class ContainerNotFoundError(OciSystemdError):
    def __init__(self, container_id: str) -> None:
        super().__init__(f"container does not exist: {container_id}")
        self.container_id = container_id


class ContainerExistsError(OciSystemdError):
    def __init__(self, container_id: str) -> None:
        super().__init__(f"container with id exists: {container_id}")
        self.container_id = container_id


class InvalidStateError(OciSystemdError):
    """An operation is not allowed in the container's current status."""

    def __init__(self, message: str, *, status: str) -> None:
        super().__init__(message)
        self.status = status


class ContainerNotRunningError(InvalidStateError):
    def __init__(self, container_id: str, status: str = "stopped") -> None:
        super().__init__(f"container not running: {container_id}", status=status)


class SyscallError(OciSystemdError):
    """A system call failed: message in crun's shape, `` mount `/proc`: Permission denied ``."""

    def __init__(self, call: str, target: str | None, err: int) -> None:
        what = f"{call} `{target}`" if target is not None else call
        super().__init__(f"{what}: {os.strerror(err).lower() if err else 'failed'}")
        self.call = call
        self.target = target
        self.errno = err

    @classmethod
    def from_oserror(cls, call: str, exc: OSError) -> SyscallError:
        return cls(call, exc.filename if isinstance(exc.filename, str) else None, exc.errno or _errno.EIO)


class SystemdError(OciSystemdError):
    """A D-Bus call to systemd failed; the D-Bus error name is kept for callers."""

    def __init__(self, message: str, *, dbus_name: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.dbus_name = dbus_name


class JobFailedError(SystemdError):
    def __init__(self, unit: str, result: str) -> None:
        super().__init__(f"systemd job for {unit} finished with result '{result}'")
        self.unit = unit
        self.result = result


class UnsupportedPropertyError(SystemdError):
    def __init__(self, prop: str, detail: str) -> None:
        super().__init__(f"systemd rejected unit property {prop}: {detail}")
        self.prop = prop


class HookError(OciSystemdError):
    def __init__(self, stage: str, path: str, detail: str) -> None:
        super().__init__(f"error running {stage} hook {path}: {detail}")
        self.stage = stage
        self.path = path


class ExecFailedError(OciSystemdError):
    """The container's program could not be executed; exit status follows podman's classes."""

    def __init__(self, message: str, *, err: int) -> None:
        super().__init__(message)
        self.errno = err
        self.exit_code = 127 if err in (_errno.ENOENT, _errno.ENOTDIR) else 126


class IdlerError(OciSystemdError):
    """The idler failed in a way no class here names (an OSError, a bug), or went away; an
    idler's own OciSystemdError crosses the channel as itself (container/protocol.py)."""


class SandboxError(OciSystemdError):
    """The private systemd could not be booted, entered or stopped."""


class PermissionDeniedError(OciSystemdError):
    pass
