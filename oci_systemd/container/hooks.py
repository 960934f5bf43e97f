# SPDX-License-Identifier: Apache-2.0
"""OCI hooks: run each hook of a stage with the container's state JSON on stdin.

Used by the runtime (createRuntime, poststart, poststop) and by the idler
(createContainer, startContainer), so stdlib only and subprocess imported lazily.
"""

from __future__ import annotations

import os

from oci_systemd import jsonio
from oci_systemd.errors import HookError

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: this runs in the idler, and typing costs ~5 ms
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

STAGES = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")


def run_stage(
    stage: str,
    hooks: Mapping[str, Any] | None,
    state: Mapping[str, Any],
    *,
    default_env: Sequence[str] | None = None,
) -> None:
    """Run every hook of `stage` in order; the first failure raises HookError.

    A hook without `env` gets `default_env`, or, when that is None, our own environment; an
    explicit `env`, even an empty one, is its whole environment. That is runc's behaviour (Go's
    exec.Cmd inherits only for a nil Env): the runtime's hooks inherit the runtime's environment,
    the container's (createContainer, startContainer) the process's, all runc's init has by then.
    """
    if not hooks:
        return
    entries: Sequence[Mapping[str, Any]] = hooks.get(stage) or ()
    if not entries:
        return
    payload = jsonio.dumps(state).encode()  # json.dumps' compact text, without json's re
    for hook in entries:
        run_hook(stage, hook, payload, default_env=default_env)


def _environ(env: Sequence[object]) -> dict[str, str]:
    return dict(str(e).split("=", 1) for e in env if "=" in str(e))


def run_hook(
    stage: str, hook: Mapping[str, Any], payload: bytes, *, default_env: Sequence[str] | None = None
) -> None:
    import subprocess

    path = str(hook["path"])
    args = list(hook.get("args") or [path])
    timeout = hook.get("timeout")
    env = hook.get("env") if hook.get("env") is not None else default_env
    environ = None if env is None else _environ(env)  # None: subprocess passes our own
    try:
        proc = subprocess.run(
            args,
            executable=path,
            input=payload,
            env=environ,
            capture_output=True,
            timeout=timeout,
            close_fds=True,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise HookError(stage, path, f"timed out after {timeout}s") from None
    except OSError as exc:
        raise HookError(stage, path, os.strerror(exc.errno or 0).lower()) from exc
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip() or proc.stdout.decode(errors="replace").strip()
        status = f"exit status {proc.returncode}" if proc.returncode > 0 else f"signal {-proc.returncode}"
        raise HookError(stage, path, f"{status}{': ' + detail if detail else ''}")
